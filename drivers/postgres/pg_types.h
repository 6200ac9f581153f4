/*
 * pg_types.h - PostgreSQL type OIDs to names and cell kinds, and the
 * conversion of a cell's text (as the server prints it with DateStyle ISO)
 * into a cn_value. Also an OID hash map the other parts of the driver
 * share. No connection, no locking: callers lock.
 */
#ifndef PG_TYPES_H
#define PG_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connector_driver.h"
#include "../common/dstr.h"

/* ---- OID -> pointer hash map (values owned by the caller) ---- */
struct pg_oid_map {
	uint32_t *keys; /* 0: empty slot (InvalidOid is never a key) */
	void **values;
	size_t cap, n;
};

void *pg_oid_map_get(const struct pg_oid_map *m, uint32_t key);
int pg_oid_map_put(struct pg_oid_map *m, uint32_t key, void *value); /* replaces */
/* Calls free_value (may be NULL) on every value, then empties the map. */
void pg_oid_map_clear(struct pg_oid_map *m, void (*free_value)(void *));

/* ---- type kinds ---- */
enum pg_kind {
	PG_KIND_TEXT,
	PG_KIND_INT,       /* int2/4/8, oid: CN_VAL_INT */
	PG_KIND_NUMERIC,   /* float4/8, numeric: CN_VAL_NUMERIC, text as printed */
	PG_KIND_BOOL,
	PG_KIND_JSON,      /* json, jsonb */
	PG_KIND_BYTES,     /* bytea */
	PG_KIND_TIMESTAMP, /* timestamp[tz]: ISO 8601 with 'T' */
	PG_KIND_ARRAY,     /* a JSON array built from the array text */
};

/* A built-in type: name as format_type() prints it, kind, element type. */
struct pg_builtin_type {
	uint32_t oid;
	const char *name;
	enum pg_kind kind;
	uint32_t elem; /* arrays: the element type's OID */
};

const struct pg_builtin_type *pg_builtin_type(uint32_t oid);

/* name with the type modifier the way format_type prints it for the common
 * cases ("character varying(20)", "numeric(10,2)", "character(3)"). */
int pg_type_format(struct dstr *out, uint32_t oid, const char *name, int typmod);

/* ---- cells ---- */

/* Converts one non-NULL cell. text/len is the server's text output; scratch
 * holds converted text (valid until the next call). elem_kind is used for
 * arrays only. CN_OK, CN_ENOMEM or CN_EINVAL (malformed text). */
int pg_cell_convert(enum pg_kind kind, enum pg_kind elem_kind, char delim, const char *text,
		    size_t len, struct dstr *scratch, struct cn_value *out);

#endif
