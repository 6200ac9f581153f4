/*
 * schema_search.h - full-text search over one source's schema, for the
 * search_schema tool: SQLite FTS5 in an in-memory database, built once per
 * refresh (off the request path) and only read afterwards.
 *
 * One document per visible table and per visible column of a visible
 * table (hidden ones are never indexed), with the fields
 *   name         the name, and camelCase names split into words
 *   synonyms     the mapping's synonyms
 *   description  the description (a mapping's, or the database comment)
 *   comment      the database comment, when a mapping replaced it
 * tokenized with the porter stemmer over unicode61 (so "orders" finds
 * "order", "signed" finds "sign", and names split at '_'), and ranked by
 * bm25 with the weights 10, 6, 3 and 2, plus a bonus for naming the object
 * or a column's table (schema_search.c). Every word of the query is a
 * prefix search ("cust" finds "customers"), and the words are OR-ed: more
 * words matched rank higher.
 */
#ifndef CN_SCHEMA_SEARCH_H
#define CN_SCHEMA_SEARCH_H

#include <stddef.h>

#include "schema_model.h"
#include "status.h"

#define SEARCH_MAX_WORDS 16
#define SEARCH_MAX_WORD 64

struct schema_search;

struct search_hit {
	const struct sm_table *table;
	const struct sm_column *column; /* NULL: the table itself */
	double score;                   /* higher is better (bm25, negated) */
};

/* Index m. The index points into m, which must outlive it (a source view
 * holds both). Errors: CN_ENOMEM, CN_EINTERNAL (SQLite without FTS5). */
int schema_search_build(const struct schema_model *m, struct schema_search **out,
			struct cn_error *err) CN_MUST_USE;
void schema_search_free(struct schema_search *s); /* NULL is a no-op */
/* Number of documents indexed. */
size_t schema_search_size(const struct schema_search *s);

/* Up to limit hits for query, best first. CN_EINVAL when the query holds no
 * word to search for. Thread-safe (queries on one index take turns). */
int schema_search_query(struct schema_search *s, const char *query, size_t limit, struct search_hit *hits,
			size_t *n, struct cn_error *err) CN_MUST_USE;

/* The FTS5 query text for a user's query ("\"signup\"* OR \"date\"*"), in
 * out; 0 words -> CN_EINVAL. Exposed for tests. */
int schema_search_fts_query(const char *query, char *out, size_t len) CN_MUST_USE;

#endif
