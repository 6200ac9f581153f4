/*
 * my_names.c - the names the MySQL guard needs from the catalog: the
 * source's tables and their columns, the server's other databases, and
 * which of those the mappings hide. Introspection replaces them; what is
 * hidden is worked out on first use after that (the mappings are merged
 * after introspection returns) and compared the way the server compares
 * names (my_name_eq: case-insensitive, accents significant).
 */
#include "my_internal.h"

#include <stdlib.h>
#include <string.h>

#include "my_guard.h"

static void hidden_drop(struct my_names *n)
{
	for (size_t i = 0; n->column_hidden && i < n->ntables; i++)
		free(n->column_hidden[i]);
	free(n->table_hidden);
	free(n->column_hidden);
	n->table_hidden = NULL;
	n->column_hidden = NULL;
}

void my_names_free(struct my_names *n)
{
	for (size_t i = 0; i < n->ntables; i++) {
		struct my_table *t = &n->tables[i];
		free(t->db);
		free(t->name);
		for (size_t c = 0; c < t->ncolumns; c++)
			free(t->columns[c]);
		free(t->columns);
	}
	hidden_drop(n);
	free(n->tables);
	for (size_t i = 0; i < n->nother; i++)
		free(n->other_dbs[i]);
	free(n->other_dbs);
	memset(n, 0, sizeof *n);
}

void my_names_set(struct my_handle *h, struct my_names *n)
{
	pthread_mutex_lock(&h->names_lock);
	my_names_free(&h->names);
	h->names = *n;
	memset(n, 0, sizeof *n);
	atomic_fetch_add(&h->names_gen, 1);
	pthread_mutex_unlock(&h->names_lock);
}

/* Under names_lock: what the mappings hide, once per set of names. Out of
 * memory leaves hidden_known false, and the hooks then err on the hidden side. */
static void hidden_compute(struct my_handle *h)
{
	struct my_names *n = &h->names;
	if (n->hidden_known || !h->is_hidden)
		return;
	n->table_hidden = calloc(n->ntables ? n->ntables : 1, sizeof *n->table_hidden);
	n->column_hidden = calloc(n->ntables ? n->ntables : 1, sizeof *n->column_hidden);
	if (!n->table_hidden || !n->column_hidden) {
		hidden_drop(n);
		return;
	}
	n->hides_anything = n->hides_columns = false;
	for (size_t i = 0; i < n->ntables; i++) {
		struct my_table *t = &n->tables[i];
		n->table_hidden[i] = h->is_hidden(h->host_ctx, t->db, t->name, NULL) != 0;
		n->hides_anything |= n->table_hidden[i];
		for (size_t c = 0; c < t->ncolumns; c++) {
			if (!h->is_hidden(h->host_ctx, t->db, t->name, t->columns[c]))
				continue;
			if (!n->column_hidden[i] &&
			    !(n->column_hidden[i] = calloc(t->ncolumns, sizeof **n->column_hidden))) {
				hidden_drop(n);
				return;
			}
			n->column_hidden[i][c] = true;
			n->hides_anything = true;
			n->hides_columns = true;
		}
	}
	n->hidden_known = true;
}

/* Each hook asks the mappings directly too (by the source's databases), for
 * names the catalog did not list, then compares with the catalog's names. */
static int hook_hidden_table(void *ctx, const char *name)
{
	struct my_handle *h = ctx;
	if (!h->is_hidden)
		return 0;
	int hit = 0;
	for (size_t d = 0; !hit && d < h->ndatabases; d++)
		hit = h->is_hidden(h->host_ctx, h->databases[d], name, NULL);
	pthread_mutex_lock(&h->names_lock);
	hidden_compute(h);
	for (size_t i = 0; !hit && h->names.table_hidden && i < h->names.ntables; i++)
		hit = h->names.table_hidden[i] && my_name_eq(name, h->names.tables[i].name);
	pthread_mutex_unlock(&h->names_lock);
	return hit;
}

static int hook_has_hidden_columns(void *ctx, const char *table)
{
	struct my_handle *h = ctx;
	int hit = 0;
	if (!h->is_hidden)
		return 0;
	pthread_mutex_lock(&h->names_lock);
	hidden_compute(h);
	bool columns = !h->names.hidden_known || h->names.hides_columns;
	for (size_t i = 0; !hit && i < h->names.ntables; i++) {
		if (!my_name_eq(table, h->names.tables[i].name))
			continue;
		if (h->names.tables[i].view && columns)
			hit = 2; /* its columns may be any table's */
		else if (!h->names.hidden_known || h->names.column_hidden[i])
			hit = 1;
	}
	pthread_mutex_unlock(&h->names_lock);
	return hit;
}

static int hook_hidden_column(void *ctx, const char *table, const char *column)
{
	struct my_handle *h = ctx;
	if (!h->is_hidden)
		return 0;
	int hit = 0;
	for (size_t d = 0; table && !hit && d < h->ndatabases; d++)
		hit = h->is_hidden(h->host_ctx, h->databases[d], table, column);
	pthread_mutex_lock(&h->names_lock);
	hidden_compute(h);
	for (size_t i = 0; !hit && i < h->names.ntables; i++) {
		struct my_table *t = &h->names.tables[i];
		if (table && !my_name_eq(table, t->name))
			continue;
		for (size_t c = 0; !hit && c < t->ncolumns; c++)
			hit = (!h->names.hidden_known ||
			       (h->names.column_hidden[i] && h->names.column_hidden[i][c])) &&
			      my_name_eq(column, t->columns[c]);
	}
	pthread_mutex_unlock(&h->names_lock);
	return hit;
}

static int hook_hides_anything(void *ctx)
{
	struct my_handle *h = ctx;
	pthread_mutex_lock(&h->names_lock);
	hidden_compute(h);
	int any = h->is_hidden && (!h->names.hidden_known || h->names.hides_anything);
	pthread_mutex_unlock(&h->names_lock);
	return any;
}

static int hook_foreign_database(void *ctx, const char *name)
{
	struct my_handle *h = ctx;
	int hit = 0;
	pthread_mutex_lock(&h->names_lock);
	for (size_t i = 0; !hit && i < h->names.nother; i++)
		hit = my_name_eq(name, h->names.other_dbs[i]);
	pthread_mutex_unlock(&h->names_lock);
	return hit;
}

void my_names_hooks(struct my_handle *h, struct my_guard_hooks *hooks)
{
	*hooks = (struct my_guard_hooks){
		.ctx = h,
		.hidden_table = hook_hidden_table,
		.has_hidden_columns = hook_has_hidden_columns,
		.hidden_column = hook_hidden_column,
		.hides_anything = hook_hides_anything,
		.foreign_database = hook_foreign_database,
	};
}
