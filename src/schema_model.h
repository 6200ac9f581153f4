/*
 * schema_model.h - the in-memory schema of one source. Drivers fill it
 * through the cn_schema_builder the model hands out (never by allocating
 * these structs); mappings add descriptions, synonyms and hidden flags; the
 * tools read it. The model owns every string in it.
 */
#ifndef CN_SCHEMA_MODEL_H
#define CN_SCHEMA_MODEL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "connector_driver.h"
#include "status.h"

struct sm_column {
	char *name;
	char *type;         /* as the database declares it; "" when none */
	bool nullable;
	char *default_expr; /* NULL when none */
	char *description;  /* database comment, replaced by a mapping's; NULL when none */
	char *comment;      /* the database comment as introspected (mappings leave it); NULL when none */
	char **synonyms;
	size_t nsynonyms;
	int pk_position;    /* 0, or 1-based position in the primary key */
	bool hidden;
};

struct sm_foreign_key {
	char *name; /* may be NULL */
	char **columns;
	char **ref_columns;
	size_t ncols;
	char *ref_schema; /* may be NULL */
	char *ref_table;
};

struct sm_index {
	char *name;
	bool unique;
	char **columns;
	size_t ncols;
};

struct sm_table {
	char *schema; /* NULL when the database has none (SQLite) */
	char *name;
	enum cn_object_kind kind;
	char *description; /* database comment, replaced by a mapping's */
	char *comment;     /* the database comment as introspected */
	char **synonyms;
	size_t nsynonyms;
	int64_t row_count; /* estimate; -1 unknown */
	bool hidden;
	struct sm_column *columns;
	size_t ncolumns;
	struct sm_foreign_key *fks;
	size_t nfks;
	struct sm_index *indexes;
	size_t nindexes;
};

struct schema_model {
	struct sm_table *tables;
	size_t ntables;
};

struct schema_model *schema_model_new(void);
void schema_model_free(struct schema_model *m); /* NULL is a no-op */

/* A builder that adds to m; valid while m lives. Builder calls copy every
 * string. column/foreign_key/index with an unknown table handle -> CN_EINVAL. */
void schema_model_builder(struct schema_model *m, struct cn_schema_builder *b);

/* Lookup by name, case-insensitive; schema NULL matches any schema. */
struct sm_table *schema_model_find_table(struct schema_model *m, const char *schema, const char *name);
struct sm_column *schema_model_find_column(struct sm_table *t, const char *name);

/* Count of visible tables. */
size_t schema_model_visible_tables(const struct schema_model *m);

/* describe_schema's answer for the visible part of the model:
 * {"tables":[{"name","schema"?,"kind":"table|view|materialized_view|collection",
 *   "description"?,"synonyms":[..],"row_count"?,"primary_key":[..],
 *   "columns":[{"name","type","nullable","default"?,"primary_key"?,"description"?,"synonyms"?}],
 *   "foreign_keys":[{"columns":[..],"references":{"schema"?,"table","columns":[..]}}],
 *   "indexes":[{"name","unique","columns":[..]}]}]}
 * Hidden tables and columns are left out, and so are foreign keys and indexes
 * that name a hidden column or reference a hidden table. filter (ntables > 0)
 * keeps only tables whose name (or schema.name) is listed, case-insensitive.
 * Returns NULL on out of memory. */
cJSON *schema_model_to_json(const struct schema_model *m, const char *const *filter, size_t nfilter);

/* "table", "view", "materialized_view" or "collection". */
const char *schema_kind_name(enum cn_object_kind kind);

/* ---- the compact index of a large schema ----
 *
 * When a whole schema does not fit one describe_schema answer, the tool
 * answers pages of a compact index instead: one entry per visible table,
 * sorted by schema and name (case-insensitive), each
 *   {"name","schema"?,"kind","columns":N,"description"?}
 * with the description cut to SCHEMA_COMPACT_DESC_MAX bytes. The entries
 * are rendered once (schema_compact_new, at refresh) so that a page is a
 * concatenation; pages are filled greedily up to a byte budget, so page
 * boundaries depend only on the model, the filter and the budget. */
#define SCHEMA_COMPACT_DESC_MAX 160

struct schema_compact;

struct schema_compact_page {
	size_t total;  /* entries that pass the prefix filter */
	size_t pages;  /* pages they fill (1 when there are none) */
	size_t first;  /* 0-based position of the page's first entry among them */
	size_t count;  /* entries on the page */
};

/* NULL on out of memory. The result does not point into m. */
struct schema_compact *schema_compact_new(const struct schema_model *m);
void schema_compact_free(struct schema_compact *c); /* NULL is a no-op */
/* Append page `page` (1-based) of the entries whose name or schema.name
 * starts with prefix (case-insensitive; NULL or "" = all) to out, as the
 * elements of a JSON array without the brackets ("{..},{..}"); no page
 * holds more than budget bytes of entries, except that one entry always
 * fits. CN_ENOTFOUND when page is past the last page (info still filled),
 * CN_ETOOBIG/CN_ENOMEM from out. */
int schema_compact_page(const struct schema_compact *c, const char *prefix, size_t page, size_t budget,
			struct buf *out, struct schema_compact_page *info) CN_MUST_USE;

#endif
