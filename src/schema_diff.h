/*
 * schema_diff.h - what changed in a schema, and where the mappings no
 * longer describe it.
 *
 * Snapshots: the structure of a model (tables, views and collections with
 * their kind; columns with type, nullability and primary-key position;
 * foreign keys; indexes) as JSON text, kept in the state store at each
 * refresh. Comments, mappings and row counts are not part of it: a snapshot
 * changes only when the database's structure does.
 *
 *   {"format":"interactor-connector schema snapshot","version":1,"tables":[
 *     {"schema":"crm","name":"customers","kind":"table",
 *      "columns":[{"name":"id","type":"integer","nullable":false,"pk":1},..],
 *      "foreign_keys":[{"name":..,"columns":[..],"ref_schema":..,"ref_table":..,"ref_columns":[..]}],
 *      "indexes":[{"name":..,"unique":true,"columns":[..]}]}]}
 *
 * Diffs: tables (views, collections) added, removed or changing kind;
 * columns added, removed, retyped, or changing nullability or primary-key
 * membership; primary keys, foreign keys and indexes added, removed or
 * changed. Tables are matched by schema and name, columns by name (exact,
 * as the database spells them). Hidden objects are included: diffs are for
 * the operator, never shown to the assistant.
 *
 * Drift: mapping keys that match nothing in the schema (a renamed column's
 * description is applied nowhere), and visible columns that are new since
 * the baseline (the first snapshot the connector took of the source) and
 * have no description, from a mapping or a database comment.
 */
#ifndef CN_SCHEMA_DIFF_H
#define CN_SCHEMA_DIFF_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "schema_model.h"
#include "status.h"

#define SCHEMA_SNAPSHOT_VERSION 1

/* Snapshot text of m (malloc'ed, NUL-terminated), NULL on out of memory. */
char *schema_snapshot_encode(const struct schema_model *m);
/* A model from snapshot text. CN_EINVAL (with err saying what) when the text
 * is not a snapshot of a version this code reads. */
int schema_snapshot_decode(const char *text, size_t len, struct schema_model **out,
			   struct cn_error *err) CN_MUST_USE;

enum schema_change_kind {
	CHANGE_TABLE_ADDED,
	CHANGE_TABLE_REMOVED,
	CHANGE_TABLE_KIND,
	CHANGE_COLUMN_ADDED,
	CHANGE_COLUMN_REMOVED,
	CHANGE_COLUMN_TYPE,
	CHANGE_COLUMN_NULLABLE,
	CHANGE_PRIMARY_KEY,
	CHANGE_FOREIGN_KEY_ADDED,
	CHANGE_FOREIGN_KEY_REMOVED,
	CHANGE_INDEX_ADDED,
	CHANGE_INDEX_REMOVED,
	CHANGE_INDEX_CHANGED,
};

struct schema_change {
	enum schema_change_kind kind;
	char *table;  /* "schema.name" or "name" */
	char *object; /* column, index or foreign key ("(a, b) -> t (x, y)"); NULL for the table */
	char *before; /* type, "null"/"not null", kind, key columns, index definition; NULL when none */
	char *after;
};

struct schema_diff {
	struct schema_change *items;
	size_t n;
};

/* The changes from old to new (either may be NULL: an empty schema), in
 * table order, then column order. NULL on out of memory. */
struct schema_diff *schema_diff_compute(const struct schema_model *old, const struct schema_model *new);
void schema_diff_free(struct schema_diff *d); /* NULL is a no-op */
/* "column_added", "table_removed", ... */
const char *schema_change_name(enum schema_change_kind kind);
/* One line for logs and the CLI: "column crm.customers.coupon added (text)". */
void schema_change_describe(const struct schema_change *c, char *out, size_t len);
/* [{"change":"column_added","table":..,"column"|"index"|"foreign_key":..,"before":..,"after":..,
 *   "message": schema_change_describe's line}] */
cJSON *schema_diff_to_json(const struct schema_diff *d);

enum drift_kind {
	DRIFT_UNMATCHED_MAPPING, /* key, file, line */
	DRIFT_UNDESCRIBED_COLUMN, /* table, column, type */
};

struct drift_item {
	enum drift_kind kind;
	char *key;   /* mapping key */
	char *file;  /* mapping file */
	int line;
	char *table; /* "schema.name" or "name" */
	char *column;
	char *type;
};

struct schema_drift {
	struct drift_item *items;
	size_t n, cap;
};

struct schema_drift *schema_drift_new(void);
void schema_drift_free(struct schema_drift *d); /* NULL is a no-op */
int schema_drift_add_mapping(struct schema_drift *d, const char *file, int line, const char *key) CN_MUST_USE;
/* Add the visible columns of current that are not in baseline (NULL: none
 * are new) and have no description. */
int schema_drift_add_undescribed(struct schema_drift *d, const struct schema_model *baseline,
				 const struct schema_model *current) CN_MUST_USE;
/* One line: "mapping 'customers.signup' (demo.yaml:12) matches no table or column". */
void drift_item_describe(const struct drift_item *it, char *out, size_t len);
/* [{"kind":"unmatched_mapping","key","file","line","message"} |
 *  {"kind":"undescribed_column","table","column","type","message"}] */
cJSON *schema_drift_to_json(const struct schema_drift *d);
/* The inverse, for drift read back from the state store; NULL when json is
 * not such an array (or out of memory). */
struct schema_drift *schema_drift_from_json(const cJSON *json);

#endif
