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

struct mappings {
	char *path;
	struct mapping_entry *entries;
	size_t n;
};

/* Errors: CN_ECONFIG / CN_EIO / CN_ENOMEM with "FILE:LINE: KEY: what". */
int mappings_load(const char *path, struct mappings **out, struct cn_error *err) CN_MUST_USE;
int mappings_load_buffer(const char *name, const void *data, size_t len, struct mappings **out,
			 struct cn_error *err) CN_MUST_USE;
void mappings_free(struct mappings *mp); /* NULL is a no-op */

/* Called once per key that matches nothing in the model. */
typedef void (*mappings_warn_fn)(void *ctx, const char *file, int line, const char *key,
				 const char *message);

/* Merge into m: a mapping's description replaces the database comment,
 * synonyms are set, hidden marks the table or column. Returns the number of
 * keys that matched nothing (each reported through warn when warn != NULL). */
size_t mappings_apply(const struct mappings *mp, struct schema_model *m, mappings_warn_fn warn,
		      void *ctx);

/* Non-zero when mp hides the table (column NULL) or the column, or the
 * column's table. Case-insensitive; schema may be NULL. mp may be NULL. */
int mappings_is_hidden(const struct mappings *mp, const char *schema, const char *table,
		       const char *column);

#endif
