/*
 * mongo_json.h - the MongoDB driver's strict JSON reader. An assistant's
 * request document is parsed here, never by a lenient library: RFC 8259
 * only, and on top of it the refusals a command guard needs to trust what it
 * reads.
 *
 *   - duplicate keys in any object, at any depth (compared after decoding,
 *     so "a" and "\u0061" are the same key);
 *   - a NUL byte in a key or a string (\u0000);
 *   - a key in which an escape decodes to '$' or '.' (an operator or a path
 *     written so that it does not look like one);
 *   - a string whose first character is a '$' written as an escape (a field
 *     path or variable in disguise);
 *   - invalid UTF-8, lone surrogates, raw control characters, a byte order
 *     mark, anything after the document, a top level that is not an object;
 *   - integers outside the signed 64-bit range (no silent rounding);
 *   - nesting deeper than MJ_MAX_DEPTH, more than MJ_MAX_NODES values, a text
 *     longer than MJ_MAX_TEXT bytes.
 *
 * Every message says what and where, as a path into the document:
 * "pipeline[2].$lookup: duplicate key \"from\"".
 *
 * The tree lives in an arena freed at once by mj_doc_free(). Pure: no global
 * state; safe to call from many threads at once.
 */
#ifndef MONGO_JSON_H
#define MONGO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connector_driver.h"

#define MJ_MAX_DEPTH 64
#define MJ_MAX_NODES 20000
#define MJ_MAX_TEXT (1024u * 1024u)

enum mj_kind { MJ_NULL, MJ_BOOL, MJ_INT, MJ_DOUBLE, MJ_STRING, MJ_ARRAY, MJ_OBJECT };

struct mj_node {
	enum mj_kind kind;
	uint32_t offset;  /* byte offset of the value in the text */
	const char *key;  /* member of an object: its decoded key (NUL-terminated); else NULL */
	size_t keylen;
	union {
		bool b;
		int64_t i;
		double d;
	} v;
	const char *str; /* MJ_STRING: decoded, NUL-terminated, no NUL inside */
	size_t len;
	struct mj_node *first; /* MJ_ARRAY / MJ_OBJECT: first item or member */
	struct mj_node *next;  /* next sibling */
	size_t count;          /* items or members */
};

struct mj_arena;

struct mj_doc {
	struct mj_node *root; /* always an MJ_OBJECT */
	struct mj_arena *arena;
};

/* CN_OK with *doc filled, CN_EREJECTED with a message naming the place (and
 * a class: syntax, limit, or statements when there is not one document), or
 * CN_ENOMEM. text need not be NUL-terminated. */
int mj_parse(const char *text, size_t len, struct mj_doc *doc, struct cn_error *err);
void mj_doc_free(struct mj_doc *doc); /* a zeroed doc is a no-op */

/* The member named key of an object node, or NULL. */
const struct mj_node *mj_get(const struct mj_node *obj, const char *key);
/* "an object", "a string", ... for messages. */
const char *mj_kind_name(enum mj_kind kind);

#endif
