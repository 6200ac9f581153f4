/*
 * harness.c - see harness.h.
 */
#include "harness.h"

#include <glob.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

struct h_env h_env;

const char *h_env_or_complain(const char *name, const char *what, const char *start)
{
	static bool told;
	const char *v = getenv(name);
	if ((!v || !*v) && told) {
		fprintf(stderr, "*** %s is not set either\n", name);
	} else if (!v || !*v) {
		told = true;
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
	if (h_env.cleanup)
		h_env.cleanup();
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
	if (r->writer_cap && r->ended_early)
		return CN_OK; /* the row past the cap is not kept */
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
	if (r->writer_cap && r->max_rows && r->nrows >= r->max_rows) {
		/* a row past the cap: drop its cells, say full */
		r->ended_early = true;
		while (r->ncells > r->nrows * r->ncols)
			free(r->cells[--r->ncells]);
		return CN_SINK_FULL;
	}
	r->nrows++;
	if (!r->writer_cap && r->max_rows && r->nrows >= r->max_rows) {
		r->ended_early = true;
		return CN_SINK_FULL;
	}
	return CN_OK;
}

void h_sink_init(struct h_result *r, struct cn_result_sink *sink, size_t max_rows)
{
	memset(r, 0, sizeof *r);
	r->max_rows = max_rows;
	r->writer_cap = h_env.writer_cap;
	*sink = (struct cn_result_sink){r, rec_column, rec_cell, rec_row_end};
}

static int bad_column(void *ctx, const struct cn_column_info *col)
{
	(void)ctx, (void)col;
	return CN_OK;
}

static int bad_cell(void *ctx, const struct cn_value *v)
{
	(void)v;
	return ++*(int *)ctx >= 3 ? CN_ETOOBIG : CN_OK;
}

static int bad_row_end(void *ctx)
{
	(void)ctx;
	return CN_OK;
}

void h_sink_failing(struct cn_result_sink *sink, int *cells)
{
	*sink = (struct cn_result_sink){cells, bad_column, bad_cell, bad_row_end};
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

char *h_result_text(const struct h_result *r)
{
	size_t len = 1;
	for (size_t i = 0; i < r->ncells; i++)
		len += strlen(r->cells[i]) + 64;
	char *out = calloc(1, len);
	size_t w = 0;
	for (size_t row = 0; out && row < r->nrows; row++)
		for (size_t c = 0; c < r->ncols; c++)
			w += (size_t)snprintf(out + w, len - w, "%s=%s%s", r->cols[c].name,
					      h_cell(r, row, c), c + 1 == r->ncols ? "\n" : "|");
	return out;
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

void h_sleep_ms(int ms)
{
	usleep((useconds_t)ms * 1000);
}

/* ---- a recording schema builder ---- */

static void append(char **dst, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append(char **dst, const char *fmt, ...)
{
	char *add = NULL, *joined = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&add, fmt, ap) < 0)
		add = NULL;
	va_end(ap);
	if (!add || asprintf(&joined, "%s%s", *dst ? *dst : "", add) < 0)
		joined = NULL;
	free(add);
	free(*dst);
	*dst = joined;
}

static int b_table(void *ctx, const char *schema, const char *name, enum cn_object_kind kind,
		   const char *comment, int64_t rows)
{
	struct h_rec_schema *s = ctx;
	if (s->n >= 64)
		return CN_ETOOBIG;
	struct h_rec_table *t = &s->tables[s->n];
	*t = (struct h_rec_table){.schema = strdup(schema), .name = strdup(name),
				.comment = dup_or_null(comment), .kind = kind, .rows = rows};
	return s->n++;
}

static int b_column(void *ctx, int table, const char *name, const char *type, bool nullable,
		    const char *def, const char *comment, int pk)
{
	struct h_rec_schema *s = ctx;
	if (table < 0 || table >= s->n)
		return CN_EINVAL;
	append(&s->tables[table].columns, "%s %s %s %s %s %d;", name, type,
	       nullable ? "null" : "notnull", def ? def : "-", comment ? comment : "-", pk);
	return CN_OK;
}

static void join_names(char **dst, size_t n, const char *const *names)
{
	for (size_t i = 0; i < n; i++)
		append(dst, "%s%s", i ? "," : "", names[i]);
}

static int b_fk(void *ctx, int table, const char *name, size_t n, const char *const *cols,
		const char *rs, const char *rt, const char *const *rcols)
{
	struct h_rec_schema *s = ctx;
	if (table < 0 || table >= s->n)
		return CN_EINVAL;
	char **d = &s->tables[table].fks;
	append(d, "%s(", name);
	join_names(d, n, cols);
	append(d, ")->%s.%s(", rs, rt);
	join_names(d, n, rcols);
	append(d, ");");
	return CN_OK;
}

static int b_index(void *ctx, int table, const char *name, bool unique, size_t n,
		   const char *const *cols)
{
	struct h_rec_schema *s = ctx;
	if (table < 0 || table >= s->n)
		return CN_EINVAL;
	char **d = &s->tables[table].indexes;
	append(d, "%s %s(", name, unique ? "unique" : "index");
	join_names(d, n, cols);
	append(d, ");");
	return CN_OK;
}

void h_rec_free(struct h_rec_schema *s)
{
	for (int i = 0; i < s->n; i++) {
		free(s->tables[i].schema);
		free(s->tables[i].name);
		free(s->tables[i].comment);
		free(s->tables[i].columns);
		free(s->tables[i].fks);
		free(s->tables[i].indexes);
	}
	s->n = 0;
}

const struct h_rec_table *h_rec_find(const struct h_rec_schema *s, const char *schema, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (!strcmp(s->tables[i].schema, schema) && !strcmp(s->tables[i].name, name))
			return &s->tables[i];
	return NULL;
}

int h_introspect_record(void *handle, struct h_rec_schema *s, struct cn_error *err)
{
	struct cn_schema_builder b = {s, b_table, b_column, b_fk, b_index};
	memset(s, 0, sizeof *s);
	return h_env.api->introspect(handle, &b, err);
}

/* ---- corpora ---- */

static void unescape(char *s)
{
	char *w = s;
	for (const char *r = s; *r; r++) {
		if (*r != '\\' || !r[1]) {
			*w++ = *r;
			continue;
		}
		r++;
		switch (*r) {
		case 'n': *w++ = '\n'; break;
		case 'r': *w++ = '\r'; break;
		case 't': *w++ = '\t'; break;
		case 'x': {
			unsigned v = 0;
			if (sscanf(r + 1, "%2x", &v) == 1 && v) {
				*w++ = (char)v;
				r += 2;
			}
			break;
		}
		default: *w++ = *r; break;
		}
	}
	*w = '\0';
}

int h_corpus_load(const char *driver, const char *name, bool escapes, struct h_corpus *c)
{
	char path[512];
	snprintf(path, sizeof path, "%s/tests/fixtures/%s/%s", CN_TEST_SOURCE_DIR, driver, name);
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "cannot read %s\n", path);
		return -1;
	}
	char line[8192];
	int lineno = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		line[strcspn(line, "\n")] = '\0';
		if (!line[0] || line[0] == '#')
			continue;
		char *tab = strchr(line, '\t');
		if (!tab) {
			fprintf(stderr, "%s:%d: no tab between class and SQL\n", path, lineno);
			fclose(f);
			return -1;
		}
		*tab = '\0';
		if (escapes)
			unescape(tab + 1);
		struct h_entry *p = realloc(c->items, (c->n + 1) * sizeof *p);
		if (!p) {
			fclose(f);
			return -1;
		}
		c->items = p;
		c->items[c->n++] = (struct h_entry){strdup(line), strdup(tab + 1), lineno};
	}
	fclose(f);
	return 0;
}

void h_corpus_free(struct h_corpus *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->items[i].cls);
		free(c->items[i].sql);
	}
	free(c->items);
	memset(c, 0, sizeof *c);
}

size_t h_corpus_params(const char *cls, struct cn_value *params, size_t max, char **buf)
{
	size_t n = 0;
	char *save = NULL;
	*buf = strdup(cls);
	for (char *p = *buf && strcmp(*buf, "-") ? strtok_r(*buf, "|", &save) : NULL; p && n < max;
	     p = strtok_r(NULL, "|", &save))
		params[n++] = (struct cn_value){.kind = CN_VAL_TEXT, .u.s = {p, strlen(p)}};
	return n;
}

size_t h_files_matching(const char *pattern)
{
	glob_t g;
	size_t n = 0;
	if (glob(pattern, 0, NULL, &g) == 0) {
		n = g.gl_pathc;
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, "file exists: %s\n", g.gl_pathv[i]);
		globfree(&g);
	}
	return n;
}

static int nb_table(void *c, const char *s, const char *n, enum cn_object_kind k, const char *cm,
		    int64_t r)
{
	(void)s, (void)n, (void)k, (void)cm, (void)r;
	return (*(int *)c)++;
}
static int nb_column(void *c, int t, const char *n, const char *ty, bool nl, const char *d,
		     const char *cm, int pk)
{
	(void)c, (void)t, (void)n, (void)ty, (void)nl, (void)d, (void)cm, (void)pk;
	return CN_OK;
}
static int nb_fk(void *c, int t, const char *n, size_t k, const char *const *a, const char *s,
		 const char *r, const char *const *b)
{
	(void)c, (void)t, (void)n, (void)k, (void)a, (void)s, (void)r, (void)b;
	return CN_OK;
}
static int nb_index(void *c, int t, const char *n, bool u, size_t k, const char *const *a)
{
	(void)c, (void)t, (void)n, (void)u, (void)k, (void)a;
	return CN_OK;
}

int h_introspect_quietly(void *handle, struct cn_error *err)
{
	int tables = 0;
	struct cn_schema_builder b = {&tables, nb_table, nb_column, nb_fk, nb_index};
	return h_env.api->introspect(handle, &b, err) == CN_OK ? tables : -1;
}

/* ---- helpers that fail the test ---- */

void *h_open_or_fail(uint32_t pool, uint32_t timeout_ms, const char *dsn)
{
	void *handle = NULL;
	struct cn_error err = {0};
	if (h_open(dsn, pool, timeout_ms, false, &handle, &err, NULL) != CN_OK)
		fail_msg("open failed: %s", err.message);
	return handle;
}

static void *job_main(void *arg)
{
	struct h_job *j = arg;
	struct h_result r;
	int64_t t0 = h_now_ms();
	j->rc = h_exec(j->handle, j->sql, NULL, 0, j->timeout_ms, 0, &r, &j->err);
	j->elapsed_ms = h_now_ms() - t0;
	h_result_free(&r);
	return NULL;
}

void h_job_start(struct h_job *j, void *handle, const char *sql, uint32_t timeout_ms)
{
	memset(j, 0, sizeof *j);
	j->handle = handle;
	j->sql = sql;
	j->timeout_ms = timeout_ms;
	assert_int_equal(pthread_create(&j->thread, NULL, job_main, j), 0);
}

void h_job_join(struct h_job *j)
{
	pthread_join(j->thread, NULL);
}
