/*
 * harness.c - see harness.h.
 */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

struct h_env h_env;

const char *h_env_or_complain(const char *name, const char *what, const char *start)
{
	const char *v = getenv(name);
	if (!v || !*v) {
		fprintf(stderr,
			"\n*** %s is not set. These integration tests need a %s server:\n"
			"***   %s\n"
			"***   (scripts/test.sh does this), then run the tests again.\n\n",
			name, what, start);
		return NULL;
	}
	return v;
}

int h_load_driver(const char *name)
{
	struct cn_error err = {0};
	if (driver_load(CN_TEST_DRIVER_DIR, name, &h_env.mod, &err) != CN_OK) {
		fprintf(stderr, "cannot load the %s driver: %s\n", name, err.message);
		return -1;
	}
	h_env.api = h_env.mod->api;
	return 0;
}

int h_teardown(void **state)
{
	(void)state;
	driver_unload(h_env.mod);
	h_env.mod = NULL;
	return 0;
}

int h_open(const char *dsn, uint32_t pool, uint32_t timeout_ms, bool hide, void **handle,
	   struct cn_error *err, ...)
{
	const char *keys[8], *vals[8];
	size_t n = 0;
	va_list ap;
	va_start(ap, err);
	const char *k;
	while (n < 8 && (k = va_arg(ap, const char *)) != NULL) {
		keys[n] = k;
		vals[n] = va_arg(ap, const char *);
		n++;
	}
	va_end(ap);
	struct cn_source_info info = {
		.name = "test",
		.dsn = dsn,
		.base_dir = ".",
		.pool_size = pool,
		.timeout_ms = timeout_ms,
		.host_ctx = NULL,
		.is_hidden = hide ? h_env.hidden : NULL,
		.option_keys = keys,
		.option_values = vals,
		.noptions = n,
	};
	return h_env.api->open(&info, handle, err);
}

/* ---- the recording sink ---- */

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int rec_column(void *ctx, const struct cn_column_info *col)
{
	struct h_result *r = ctx;
	if (r->ncols >= H_MAX_COLS)
		return CN_ETOOBIG;
	struct h_column *c = &r->cols[r->ncols++];
	c->name = dup_or_null(col->name);
	c->type = dup_or_null(col->type);
	c->schema = dup_or_null(col->origin_schema);
	c->table = dup_or_null(col->origin_table);
	c->column = dup_or_null(col->origin_column);
	return CN_OK;
}

static char *value_text(const struct cn_value *v)
{
	char *out = NULL;
	switch (v->kind) {
	case CN_VAL_NULL:
		return strdup("NULL");
	case CN_VAL_BOOL:
		return strdup(v->u.b ? "B:true" : "B:false");
	case CN_VAL_INT:
		if (asprintf(&out, "I:%lld", (long long)v->u.i) < 0)
			return NULL;
		return out;
	case CN_VAL_DOUBLE:
		if (asprintf(&out, "D:%.17g", v->u.d) < 0)
			return NULL;
		return out;
	case CN_VAL_BYTES: {
		out = malloc(2 + v->u.s.len * 2 + 1);
		if (!out)
			return NULL;
		memcpy(out, "X:", 2);
		for (size_t i = 0; i < v->u.s.len; i++)
			sprintf(out + 2 + i * 2, "%02x", (unsigned char)v->u.s.ptr[i]);
		out[2 + v->u.s.len * 2] = '\0';
		return out;
	}
	default: {
		char tag = v->kind == CN_VAL_NUMERIC ? 'N' : v->kind == CN_VAL_JSON ? 'J' : 'T';
		out = malloc(v->u.s.len + 3);
		if (!out)
			return NULL;
		out[0] = tag;
		out[1] = ':';
		memcpy(out + 2, v->u.s.ptr, v->u.s.len);
		out[v->u.s.len + 2] = '\0';
		return out;
	}
	}
}

static int rec_cell(void *ctx, const struct cn_value *v)
{
	struct h_result *r = ctx;
	if (r->ncells == r->capcells) {
		size_t cap = r->capcells ? r->capcells * 2 : 64;
		char **p = realloc(r->cells, cap * sizeof *p);
		if (!p)
			return CN_ENOMEM;
		r->cells = p;
		r->capcells = cap;
	}
	char *t = value_text(v);
	if (!t)
		return CN_ENOMEM;
	r->cells[r->ncells++] = t;
	return CN_OK;
}

static int rec_row_end(void *ctx)
{
	struct h_result *r = ctx;
	r->nrows++;
	if (r->max_rows && r->nrows >= r->max_rows) {
		r->ended_early = true;
		return CN_SINK_FULL;
	}
	return CN_OK;
}

void h_sink_init(struct h_result *r, struct cn_result_sink *sink, size_t max_rows)
{
	memset(r, 0, sizeof *r);
	r->max_rows = max_rows;
	*sink = (struct cn_result_sink){r, rec_column, rec_cell, rec_row_end};
}

void h_result_free(struct h_result *r)
{
	for (size_t i = 0; i < r->ncols; i++) {
		free(r->cols[i].name);
		free(r->cols[i].type);
		free(r->cols[i].schema);
		free(r->cols[i].table);
		free(r->cols[i].column);
	}
	for (size_t i = 0; i < r->ncells; i++)
		free(r->cells[i]);
	free(r->cells);
	memset(r, 0, sizeof *r);
}

const char *h_cell(const struct h_result *r, size_t row, size_t col)
{
	size_t i = row * r->ncols + col;
	return row < r->nrows && col < r->ncols && i < r->ncells ? r->cells[i] : "(missing)";
}

int h_col(const struct h_result *r, const char *name)
{
	for (size_t i = 0; i < r->ncols; i++)
		if (r->cols[i].name && !strcmp(r->cols[i].name, name))
			return (int)i;
	return -1;
}

int h_exec(void *handle, const char *text, const struct cn_value *params, size_t nparams,
	   uint32_t timeout_ms, size_t max_rows, struct h_result *res, struct cn_error *err)
{
	struct cn_result_sink sink;
	h_sink_init(res, &sink, max_rows);
	struct cn_query q = {
		.text = text,
		.params = params,
		.nparams = nparams,
		.timeout_ms = timeout_ms,
		.max_rows = (uint32_t)max_rows,
	};
	return h_env.api->execute(handle, &q, &sink, err);
}

int h_scalar(void *handle, const char *text, char *buf, size_t size)
{
	struct h_result r;
	struct cn_error err = {0};
	int rc = h_exec(handle, text, NULL, 0, 5000, 0, &r, &err);
	snprintf(buf, size, "%s", rc == CN_OK && r.nrows > 0 ? h_cell(&r, 0, 0) : err.message);
	h_result_free(&r);
	return rc;
}

int h_system(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	int rc = system(cmd);
	return rc == -1 ? -1 : WEXITSTATUS(rc);
}

int64_t h_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
