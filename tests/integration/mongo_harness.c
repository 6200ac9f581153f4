/*
 * mongo_harness.c - see mongo_harness.h.
 */
#include "mongo_harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct h_env h_env;
static mongoc_client_t *side;

static const char *env_or_complain(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v) {
		fprintf(stderr,
			"\n*** %s is not set. These integration tests need the MongoDB test server:\n"
			"***   tests/support/mongo.sh start /tmp/cn-mongo-env && . /tmp/cn-mongo-env/mongo.env\n"
			"***   (scripts/test.sh does this), then run the tests again.\n\n",
			name);
		return NULL;
	}
	return v;
}

int h_setup(void **state)
{
	(void)state;
	struct cn_error err = {0};
	h_env.uri = env_or_complain("CN_TEST_MONGO_URI");
	h_env.env_dir = env_or_complain("CN_TEST_MONGO_DIR");
	h_env.log = env_or_complain("CN_TEST_MONGO_LOG");
	if (!h_env.uri || !h_env.env_dir || !h_env.log)
		return -1;
	if (driver_load(CN_TEST_DRIVER_DIR, "mongodb", &h_env.mod, &err) != CN_OK) {
		fprintf(stderr, "cannot load the mongodb driver: %s\n", err.message);
		return -1;
	}
	h_env.api = h_env.mod->api;
	/* the driver module has run mongoc_init() for this process by now only when a
	 * source was opened; the side client needs it at once */
	mongoc_init();
	mongoc_log_set_handler(NULL, NULL);
	side = mongoc_client_new(h_env.uri);
	if (!side) {
		fprintf(stderr, "cannot make a client for %s\n", h_env.uri);
		return -1;
	}
	mongoc_client_set_error_api(side, MONGOC_ERROR_API_VERSION_2);
	return 0;
}

int h_teardown(void **state)
{
	(void)state;
	mongoc_client_destroy(side);
	side = NULL;
	mongoc_cleanup();
	driver_unload(h_env.mod);
	h_env.mod = NULL;
	return 0;
}

int h_hidden(void *ctx, const char *schema, const char *table, const char *column)
{
	(void)ctx;
	(void)schema;
	if (!table)
		return 0;
	if (!strcasecmp(table, "secrets"))
		return 1;
	if (!column || strcasecmp(table, "customers"))
		return 0;
	static const char *const h[] = {"email", "ssn", "address.street"};
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(h[i]);
		if (!strncasecmp(column, h[i], n) && (column[n] == '\0' || column[n] == '.'))
			return 1;
	}
	return 0;
}

int h_open(const char *uri, uint32_t pool, uint32_t timeout_ms, bool hide, void **handle,
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
		.name = "mongotest",
		.dsn = uri ? uri : h_env.uri,
		.base_dir = ".",
		.pool_size = pool,
		.timeout_ms = timeout_ms,
		.is_hidden = hide ? h_hidden : NULL,
		.option_keys = keys,
		.option_values = vals,
		.noptions = n,
	};
	return h_env.api->open(&info, handle, err);
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

int h_introspect_quiet(void *handle)
{
	int count = 0;
	struct cn_schema_builder b = {&count, nb_table, nb_column, nb_fk, nb_index};
	struct cn_error err = {0};
	int rc = h_env.api->introspect(handle, &b, &err);
	if (rc)
		fprintf(stderr, "introspect: %s\n", err.message);
	return rc ? rc : count;
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
	case CN_VAL_NULL: return strdup("NULL");
	case CN_VAL_BOOL: return strdup(v->u.b ? "B:true" : "B:false");
	case CN_VAL_INT: return asprintf(&out, "I:%lld", (long long)v->u.i) < 0 ? NULL : out;
	case CN_VAL_DOUBLE: return asprintf(&out, "D:%.17g", v->u.d) < 0 ? NULL : out;
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
	if (r->ended_early)
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
	if (r->ended_early)
		return CN_SINK_FULL;
	if (r->max_rows && r->nrows >= r->max_rows) {
		/* one row more than the cap: drop its cells, say full */
		r->ended_early = true;
		while (r->ncells > r->nrows * r->ncols)
			free(r->cells[--r->ncells]);
		return CN_SINK_FULL;
	}
	r->nrows++;
	return CN_OK;
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
	memset(res, 0, sizeof *res);
	res->max_rows = max_rows;
	struct cn_result_sink sink = {res, rec_column, rec_cell, rec_row_end};
	struct cn_query q = {
		.text = text,
		.params = params,
		.nparams = nparams,
		.timeout_ms = timeout_ms,
		.max_rows = (uint32_t)max_rows,
	};
	return h_env.api->execute(handle, &q, &sink, err);
}

/* ---- the side client ---- */

bool h_command(const char *db, const char *json, bson_t *reply)
{
	bson_error_t e;
	bson_t *cmd = bson_new_from_json((const uint8_t *)json, -1, &e);
	bson_t local;
	if (!cmd) {
		fprintf(stderr, "h_command: bad JSON %s: %s\n", json, e.message);
		if (reply)
			bson_init(reply);
		return false;
	}
	bool ok = mongoc_client_command_simple(side, db, cmd, NULL, reply ? reply : &local, &e);
	if (!ok)
		fprintf(stderr, "h_command %s: %s\n", json, e.message);
	if (!reply)
		bson_destroy(&local);
	bson_destroy(cmd);
	return ok;
}

static void append(char **buf, size_t *len, const char *s)
{
	size_t n = strlen(s);
	*buf = realloc(*buf, *len + n + 2);
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[(*len)++] = '\n';
	(*buf)[*len] = '\0';
}

char *h_snapshot(void)
{
	char *out = NULL;
	size_t len = 0;
	bson_error_t e;
	mongoc_database_t *db = mongoc_client_get_database(side, "connector_test");
	char **names = mongoc_database_get_collection_names_with_opts(db, NULL, &e);
	if (!names) {
		mongoc_database_destroy(db);
		return strdup("(cannot list collections)");
	}
	/* names in a stable order */
	size_t n = 0;
	while (names[n])
		n++;
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			char *t = names[j];
			names[j] = names[j - 1];
			names[j - 1] = t;
		}
	for (size_t i = 0; i < n; i++) {
		append(&out, &len, names[i]);
		mongoc_collection_t *c = mongoc_database_get_collection(db, names[i]);
		bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
		bson_t filter = BSON_INITIALIZER;
		mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &filter, opts, NULL);
		const bson_t *doc;
		while (mongoc_cursor_next(cur, &doc)) {
			char *j = bson_as_canonical_extended_json(doc, NULL);
			append(&out, &len, j);
			bson_free(j);
		}
		if (mongoc_cursor_error(cur, &e))
			append(&out, &len, e.message);
		mongoc_cursor_destroy(cur);
		cur = mongoc_collection_find_indexes_with_opts(c, NULL);
		while (mongoc_cursor_next(cur, &doc)) {
			char *j = bson_as_canonical_extended_json(doc, NULL);
			append(&out, &len, j);
			bson_free(j);
		}
		mongoc_cursor_destroy(cur);
		bson_destroy(opts);
		bson_destroy(&filter);
		mongoc_collection_destroy(c);
	}
	bson_strfreev(names);
	mongoc_database_destroy(db);
	return out ? out : strdup("");
}

int64_t h_open_cursors(void)
{
	bson_t reply;
	bson_iter_t it;
	int64_t n = -1;
	if (h_command("admin", "{\"serverStatus\": 1}", &reply) && bson_iter_init(&it, &reply) &&
	    bson_iter_find_descendant(&it, "metrics.cursor.open.total", &it))
		n = bson_iter_as_int64(&it);
	bson_destroy(&reply);
	return n;
}

bool h_cursors_reach_zero(int ms)
{
	for (int waited = 0; waited <= ms; waited += 50) {
		if (h_open_cursors() == 0)
			return true;
		h_sleep_ms(50);
	}
	return false;
}

long h_log_size(void)
{
	FILE *f = fopen(h_env.log, "r");
	if (!f)
		return 0;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fclose(f);
	return n;
}

char *h_log_since(long offset)
{
	FILE *f = fopen(h_env.log, "r");
	if (!f)
		return strdup("");
	fseek(f, 0, SEEK_END);
	long end = ftell(f);
	if (offset > end)
		offset = 0; /* the log was replaced (resume) */
	fseek(f, offset, SEEK_SET);
	char *buf = calloc(1, (size_t)(end - offset) + 1);
	size_t n = buf ? fread(buf, 1, (size_t)(end - offset), f) : 0;
	if (buf)
		buf[n] = '\0';
	fclose(f);
	return buf;
}

bool h_failpoint(const char *mode, const char *commands, const char *data)
{
	char json[1024];
	snprintf(json, sizeof json,
		 "{\"configureFailPoint\": \"failCommand\", \"mode\": %s, \"data\": {\"failCommands\": %s, "
		 "\"appName\": \"interactor-connector\"%s%s}}",
		 mode, commands, data && *data ? ", " : "", data ? data : "");
	return h_command("admin", json, NULL);
}

bool h_failpoint_off(void)
{
	return h_command("admin", "{\"configureFailPoint\": \"failCommand\", \"mode\": \"off\"}", NULL);
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
