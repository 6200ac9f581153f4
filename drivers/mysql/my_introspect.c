/*
 * my_introspect.c - the schema of a MySQL/MariaDB source from
 * information_schema, in five statements whatever the number of tables:
 *
 *   TABLES       tables and views of the source's databases, comments,
 *                estimated row counts (InnoDB's estimate)
 *   STATISTICS   indexes with their columns in order (PRIMARY gives the
 *                primary key positions)
 *   COLUMNS      columns in order: COLUMN_TYPE as the server writes it,
 *                nullability, default, comment
 *   KEY_COLUMN_USAGE  foreign keys with the referenced table and columns
 *   SCHEMATA     the server's other databases (the guard refuses them as
 *                qualifiers)
 *
 * The database names are bound as parameters. Results arrive ordered by
 * database and table, so rows are matched to tables with a cursor.
 */
#include "my_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct index_acc {
	char *name;
	bool unique;
	char **cols;
	size_t ncols;
};

struct itable {
	int handle;           /* the builder's */
	struct my_table *t;   /* in names */
	int *pk;              /* [column] -> position, filled from STATISTICS */
	char **pk_cols;       /* PRIMARY's columns in order */
	size_t npk;
	struct index_acc *idx;
	size_t nidx;
};

struct intro {
	struct my_handle *h;
	const struct cn_schema_builder *b;
	struct cn_error *err;
	struct my_names names;
	struct itable *tabs;
	size_t cur;       /* the cursor of the ordered results */
	int rc;
	/* the foreign key being gathered */
	size_t fk_tab;
	char *fk_name, *fk_ref_db, *fk_ref_table;
	char **fk_cols, **fk_refs;
	size_t fk_n;
};

static int oom(struct intro *in)
{
	return in->rc = cn_error_set(in->err, CN_ENOMEM, "out of memory");
}

static bool str_eq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* The table (db, name) of the results, moving the cursor; n when unknown. */
static size_t find(struct intro *in, const char *db, const char *name)
{
	size_t n = in->names.ntables;
	for (size_t k = 0; k < n; k++) {
		size_t i = (in->cur + k) % n;
		if (str_eq(in->names.tables[i].db, db) && str_eq(in->names.tables[i].name, name))
			return in->cur = i;
	}
	return n;
}

static int push_str(char ***arr, size_t *n, const char *s)
{
	char **p = realloc(*arr, (*n + 1) * sizeof *p);
	if (!p)
		return CN_ENOMEM;
	*arr = p;
	if (!(p[*n] = strdup(s ? s : "")))
		return CN_ENOMEM;
	(*n)++;
	return CN_OK;
}

static void free_strs(char **arr, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(arr[i]);
	free(arr);
}

/* ---- TABLES ---- */

static int row_table(void *ctx, char **v, unsigned long *len, unsigned n)
{
	struct intro *in = ctx;
	(void)len;
	if (n < 5 || !v[0] || !v[1] || !v[2])
		return CN_OK;
	enum cn_object_kind kind;
	if (!strcmp(v[2], "BASE TABLE"))
		kind = CN_OBJ_TABLE;
	else if (!strcmp(v[2], "VIEW"))
		kind = CN_OBJ_VIEW;
	else
		return CN_OK; /* sequences, system views */
	const char *comment = v[3] && *v[3] && !(kind == CN_OBJ_VIEW && !strcmp(v[3], "VIEW")) ? v[3] : NULL;
	int64_t rows = v[4] && kind == CN_OBJ_TABLE ? strtoll(v[4], NULL, 10) : -1;
	int handle = in->b->table(in->b->ctx, v[0], v[1], kind, comment, rows);
	if (handle < 0)
		return in->rc = cn_error_set(in->err, handle, "the schema model refused table %s", v[1]);
	struct my_table *t = realloc(in->names.tables, (in->names.ntables + 1) * sizeof *t);
	struct itable *it = t ? realloc(in->tabs, (in->names.ntables + 1) * sizeof *it) : NULL;
	if (t)
		in->names.tables = t;
	if (!it)
		return oom(in);
	in->tabs = it;
	t = &in->names.tables[in->names.ntables];
	it = &in->tabs[in->names.ntables];
	memset(t, 0, sizeof *t);
	memset(it, 0, sizeof *it);
	in->names.ntables++;
	it->handle = handle;
	t->view = kind == CN_OBJ_VIEW;
	if (!(t->db = strdup(v[0])) || !(t->name = strdup(v[1])))
		return oom(in);
	return CN_OK;
}

/* ---- STATISTICS ---- */

static int row_index(void *ctx, char **v, unsigned long *len, unsigned n)
{
	struct intro *in = ctx;
	(void)len;
	if (n < 6 || !v[0] || !v[1] || !v[2] || !v[5])
		return CN_OK; /* an index on an expression has no column name */
	size_t i = find(in, v[0], v[1]);
	if (i == in->names.ntables)
		return CN_OK;
	struct itable *it = &in->tabs[i];
	if (!strcmp(v[2], "PRIMARY"))
		return push_str(&it->pk_cols, &it->npk, v[5]) ? oom(in) : CN_OK;
	struct index_acc *x = it->nidx ? &it->idx[it->nidx - 1] : NULL;
	if (!x || strcmp(x->name, v[2]) != 0) {
		x = realloc(it->idx, (it->nidx + 1) * sizeof *x);
		if (!x)
			return oom(in);
		it->idx = x;
		x = &it->idx[it->nidx++];
		memset(x, 0, sizeof *x);
		if (!(x->name = strdup(v[2])))
			return oom(in);
		x->unique = v[3] && !strcmp(v[3], "0");
	}
	return push_str(&x->cols, &x->ncols, v[5]) ? oom(in) : CN_OK;
}

/* ---- COLUMNS ---- */

static int row_column(void *ctx, char **v, unsigned long *len, unsigned n)
{
	struct intro *in = ctx;
	(void)len;
	if (n < 7 || !v[0] || !v[1] || !v[2])
		return CN_OK;
	size_t i = find(in, v[0], v[1]);
	if (i == in->names.ntables)
		return CN_OK;
	struct itable *it = &in->tabs[i];
	struct my_table *t = &in->names.tables[i];
	int pk = 0;
	for (size_t k = 0; k < it->npk; k++)
		if (!strcmp(it->pk_cols[k], v[2]))
			pk = (int)k + 1;
	/* MariaDB writes a NULL default as the word NULL, string defaults quoted */
	const char *def = v[5] && strcmp(v[5], "NULL") != 0 ? v[5] : NULL;
	int rc = in->b->column(in->b->ctx, it->handle, v[2], v[3] ? v[3] : "",
			       v[4] && !strcmp(v[4], "YES"), def, v[6] && *v[6] ? v[6] : NULL, pk);
	if (rc)
		return in->rc = cn_error_set(in->err, rc, "the schema model refused column %s.%s",
					     v[1], v[2]);
	return push_str(&t->columns, &t->ncolumns, v[2]) ? oom(in) : CN_OK;
}

/* ---- KEY_COLUMN_USAGE ---- */

static void fk_clear(struct intro *in)
{
	free(in->fk_name);
	free(in->fk_ref_db);
	free(in->fk_ref_table);
	free_strs(in->fk_cols, in->fk_n);
	free_strs(in->fk_refs, in->fk_n);
	in->fk_name = in->fk_ref_db = in->fk_ref_table = NULL;
	in->fk_cols = in->fk_refs = NULL;
	in->fk_n = 0;
}

static int fk_flush(struct intro *in)
{
	int rc = CN_OK;
	if (in->fk_n)
		rc = in->b->foreign_key(in->b->ctx, in->tabs[in->fk_tab].handle, in->fk_name, in->fk_n,
					(const char *const *)in->fk_cols, in->fk_ref_db,
					in->fk_ref_table, (const char *const *)in->fk_refs);
	fk_clear(in);
	if (rc)
		return in->rc = cn_error_set(in->err, rc, "the schema model refused a foreign key");
	return CN_OK;
}

static int row_fk(void *ctx, char **v, unsigned long *len, unsigned n)
{
	struct intro *in = ctx;
	(void)len;
	if (n < 7 || !v[0] || !v[1] || !v[2] || !v[3] || !v[5] || !v[6])
		return CN_OK;
	size_t i = find(in, v[0], v[1]);
	if (i == in->names.ntables)
		return CN_OK;
	if (in->fk_n && (in->fk_tab != i || strcmp(in->fk_name, v[2]) != 0)) {
		int rc = fk_flush(in);
		if (rc)
			return rc;
	}
	if (!in->fk_n) {
		in->fk_tab = i;
		if (!(in->fk_name = strdup(v[2])) || !(in->fk_ref_db = strdup(v[4] ? v[4] : v[0])) ||
		    !(in->fk_ref_table = strdup(v[5])))
			return oom(in);
	}
	size_t k = in->fk_n;
	if (push_str(&in->fk_cols, &k, v[3]))
		return oom(in);
	k = in->fk_n;
	if (push_str(&in->fk_refs, &k, v[6]))
		return oom(in);
	in->fk_n++;
	return CN_OK;
}

/* ---- SCHEMATA ---- */

static int row_schema(void *ctx, char **v, unsigned long *len, unsigned n)
{
	struct intro *in = ctx;
	(void)len;
	if (n < 1 || !v[0])
		return CN_OK;
	for (size_t i = 0; i < in->h->ndatabases; i++)
		if (!strcmp(in->h->databases[i], v[0]))
			return CN_OK;
	if (!strcmp(v[0], "information_schema"))
		return CN_OK; /* the guard has a rule of its own for it */
	return push_str(&in->names.other_dbs, &in->names.nother, v[0]) ? oom(in) : CN_OK;
}

/* ---- the run ---- */

static int run(struct intro *in, MYSQL *conn, const char *head, const char *tail, my_row_fn row)
{
	struct my_handle *h = in->h;
	struct dstr sql = {0};
	int rc = dstr_printf(&sql, "%s", head);
	for (size_t i = 0; rc == CN_OK && i < h->ndatabases; i++)
		rc = dstr_printf(&sql, "%s?", i ? ", " : "");
	if (rc == CN_OK)
		rc = dstr_printf(&sql, "%s", tail);
	if (rc) {
		dstr_free(&sql);
		return oom(in);
	}
	in->cur = 0;
	rc = my_own_query(h, conn, sql.data, (const char *const *)h->databases, h->ndatabases, row,
			  in, in->err);
	dstr_free(&sql);
	if (rc == CN_OK)
		rc = in->rc;
	return rc;
}

static int emit_indexes(struct intro *in)
{
	for (size_t i = 0; i < in->names.ntables; i++) {
		struct itable *it = &in->tabs[i];
		for (size_t k = 0; k < it->nidx; k++) {
			struct index_acc *x = &it->idx[k];
			int rc = in->b->index(in->b->ctx, it->handle, x->name, x->unique, x->ncols,
					      (const char *const *)x->cols);
			if (rc)
				return cn_error_set(in->err, rc, "the schema model refused index %s",
						    x->name);
		}
	}
	return CN_OK;
}

static void tabs_free(struct intro *in)
{
	for (size_t i = 0; in->tabs && i < in->names.ntables; i++) {
		struct itable *it = &in->tabs[i];
		free_strs(it->pk_cols, it->npk);
		for (size_t k = 0; k < it->nidx; k++) {
			free(it->idx[k].name);
			free_strs(it->idx[k].cols, it->idx[k].ncols);
		}
		free(it->idx);
	}
	free(in->tabs);
	in->tabs = NULL;
}

int my_introspect_run(struct my_handle *h, const struct cn_schema_builder *b, struct cn_error *err)
{
	struct intro in = {.h = h, .b = b, .err = err};
	uint32_t slot;
	int rc = my_own_checkout(h, &slot, err);
	if (rc)
		return rc;
	MYSQL *conn = h->slots[slot].conn;
	rc = run(&in, conn,
		 "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, TABLE_COMMENT, TABLE_ROWS "
		 "FROM information_schema.TABLES WHERE TABLE_SCHEMA IN (",
		 ") ORDER BY TABLE_SCHEMA, TABLE_NAME", row_table);
	if (rc == CN_OK)
		rc = run(&in, conn,
			 "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, NON_UNIQUE, SEQ_IN_INDEX, "
			 "COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA IN (",
			 ") ORDER BY TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX", row_index);
	if (rc == CN_OK)
		rc = run(&in, conn,
			 "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, "
			 "COLUMN_DEFAULT, COLUMN_COMMENT FROM information_schema.COLUMNS "
			 "WHERE TABLE_SCHEMA IN (",
			 ") ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION", row_column);
	if (rc == CN_OK)
		rc = emit_indexes(&in);
	if (rc == CN_OK)
		rc = run(&in, conn,
			 "SELECT TABLE_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, "
			 "REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME "
			 "FROM information_schema.KEY_COLUMN_USAGE WHERE REFERENCED_TABLE_NAME IS NOT NULL "
			 "AND TABLE_SCHEMA IN (",
			 ") ORDER BY TABLE_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION", row_fk);
	if (rc == CN_OK)
		rc = fk_flush(&in);
	if (rc == CN_OK) {
		in.cur = 0;
		rc = my_own_query(h, conn, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA", NULL, 0,
				  row_schema, &in, err);
		if (rc == CN_OK)
			rc = in.rc;
	}
	slot_pool_checkin(&h->pool, slot);
	fk_clear(&in);
	tabs_free(&in);
	if (rc == CN_OK)
		my_names_set(h, &in.names);
	my_names_free(&in.names);
	return rc;
}
