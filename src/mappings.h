/*
 * mappings.h - semantic mapping files in the platform's own format, YAML or
 * JSON (the body of PATCH /data-sources/{id}/semantic-mappings):
 *
 *   mappings:
 *     customers:       { description: "Customer accounts", synonyms: [users, clients] }
 *     customers.email: { description: "Login email", hidden: true }
 *
 * Keys are `table` or `table.column` (`schema.table.column` also resolves a
 * table in a named schema; a two-part key is tried as table.column first, then
 * as schema.table). Fields: description (string), synonyms (list of strings),
 * hidden (bool). Unknown fields are errors naming file, line and field.
 *
 * For a source whose driver has CN_CAP_FIELD_PATHS (documents: MongoDB) the
 * keys are `collection` or `collection.field.path` instead, of any depth up
 * to MAPPINGS_MAX_PATH_PARTS parts ("orders.customer.email"); "[]" array
 * markers as describe_schema shows them ("orders.items[].sku") may be written
 * or left out. A hidden field hides the fields under it.
 */
#ifndef CN_MAPPINGS_H
#define CN_MAPPINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "schema_model.h"
#include "status.h"

struct mapping_entry {
	char *key;
	char *description; /* NULL when not set */
	char **synonyms;
	size_t nsynonyms;
	bool hidden;
	int line;
};

#define MAPPINGS_MAX_PATH_PARTS 32

/* How keys name things: SQL's [schema.]table[.column], or a collection and a
 * field path (drivers with CN_CAP_FIELD_PATHS). */
enum mappings_keys { MAPPINGS_SQL_KEYS, MAPPINGS_FIELD_PATHS };

struct mappings {
	char *path;
	struct mapping_entry *entries;
	size_t n;
	enum mappings_keys keys;
};

/* Errors: CN_ECONFIG / CN_EIO / CN_ENOMEM with "FILE:LINE: KEY: what".
 * mappings_load and mappings_load_buffer read SQL keys. */
int mappings_load(const char *path, struct mappings **out, struct cn_error *err) CN_MUST_USE;
int mappings_load_buffer(const char *name, const void *data, size_t len, struct mappings **out,
			 struct cn_error *err) CN_MUST_USE;
int mappings_load_as(const char *path, enum mappings_keys keys, struct mappings **out,
		     struct cn_error *err) CN_MUST_USE;
int mappings_load_buffer_as(const char *name, const void *data, size_t len, enum mappings_keys keys,
			    struct mappings **out, struct cn_error *err) CN_MUST_USE;
void mappings_free(struct mappings *mp); /* NULL is a no-op */
/* Same keys, descriptions, synonyms and hidden flags (lines aside); NULLs
 * are equal to each other only. */
bool mappings_equal(const struct mappings *a, const struct mappings *b);

/* Called once per key that matches nothing in the model. */
typedef void (*mappings_warn_fn)(void *ctx, const char *file, int line, const char *key,
				 const char *message);

/* Merge into m: a mapping's description replaces the database comment,
 * synonyms are set, hidden marks the table or column. Returns the number of
 * keys that matched nothing (each reported through warn when warn != NULL). */
size_t mappings_apply(const struct mappings *mp, struct schema_model *m, mappings_warn_fn warn,
		      void *ctx);

/* Non-zero when mp hides the table (column NULL) or the column, or the
 * column's table. Case-insensitive; schema may be NULL. mp may be NULL.
 * With field paths, schema is ignored (a source reads one database) and a
 * hidden field also hides every path under it. */
int mappings_is_hidden(const struct mappings *mp, const char *schema, const char *table,
		       const char *column);

#endif
