/*
 * test_sqlite_driver.c - the SQLite driver through its ABI, loaded the way
 * the daemon loads it, on a private copy of the demo database.
 *
 * test_layers_alone also compiles the driver's source into this program to
 * reach its internals: it runs the attack corpus on a hardened connection
 * with the guard removed, and again with the authorizer removed too.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "driver_loader.h"

#include "../../drivers/common/verdicts.c"
#include "../../drivers/sqlite/sqlite_driver.c"

/* ------------------------------------------------------------ environment */

struct env {
	struct driver_module *mod;
	const struct cn_driver *api;
	char root[256]; /* private temp directory */
	char dbdir[300]; /* holds demo.db, the database under test */
	char cwd[300];   /* the working directory while attacks run */
	char db[320];
};

static struct env E;

/* The semantic mappings of conf/mappings/demo.yaml, as the core reports them. */
static int test_is_hidden(void *ctx, const char *schema, const char *table, const char *column)
{
	int *calls = ctx;
	if (calls)
		(*calls)++;
	assert_null(schema);
	if (!table)
		return 0;
	if (strcasecmp(table, "internal_audit_log") == 0)
		return 1;
	return column && strcasecmp(table, "customers") == 0 && strcasecmp(column, "phone") == 0;
}

static int hidden_calls;

static int open_source(const char *dsn, uint32_t pool, uint32_t timeout_ms, bool mapped,
		       void **h, struct cn_error *err)
{
	struct cn_source_info src = {
		.name = "demo",
		.dsn = dsn,
		.base_dir = E.dbdir,
		.pool_size = pool,
		.timeout_ms = timeout_ms,
		.host_ctx = mapped ? &hidden_calls : NULL,
		.is_hidden = mapped ? test_is_hidden : NULL,
	};
	memset(err, 0, sizeof *err);
	return E.api->open(&src, h, err);
}

static void *open_demo(uint32_t pool, bool mapped)
{
	struct cn_error err;
	void *h = NULL;
	int rc = open_source("demo.db", pool, 5000, mapped, &h, &err);
	if (rc)
		fail_msg("open demo.db: %s", err.message);
	return h;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	char buf[8192];
	size_t n;
	assert_non_null(in);
	assert_non_null(out);
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[600];
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (e->d_type == DT_DIR)
			remove_tree(path);
		else
			unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static int group_setup(void **state)
{
	(void)state;
	struct cn_error err = {0};
	if (driver_load(CN_TEST_DRIVER_DIR, "sqlite", &E.mod, &err) != CN_OK) {
		fprintf(stderr, "driver_load: %s\n", err.message);
		return -1;
	}
	E.api = E.mod->api;
	snprintf(E.root, sizeof E.root, "/tmp/cn_sqlite_test_XXXXXX");
	if (!mkdtemp(E.root))
		return -1;
	snprintf(E.dbdir, sizeof E.dbdir, "%s/db", E.root);
	snprintf(E.cwd, sizeof E.cwd, "%s/cwd", E.root);
	snprintf(E.db, sizeof E.db, "%s/demo.db", E.dbdir);
	if (mkdir(E.dbdir, 0700) || mkdir(E.cwd, 0700))
		return -1;
	copy_file(CN_TEST_DEMO_DB, E.db);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	driver_unload(E.mod);
	remove_tree(E.root);
	return 0;
}

/* ------------------------------------------------------------ test sink */

struct tcell {
	enum cn_value_kind kind;
	bool b;
	int64_t i;
	double d;
	char *s; /* NUL-terminated copy of text, JSON, numeric and bytes */
	size_t len;
};

struct tsink {
	size_t ncols;
	char *name[32], *type[32], *otable[32], *ocolumn[32];
	struct tcell *cells;
	size_t ncells, cap;
	size_t rows;
	size_t full_after; /* answer CN_SINK_FULL after this many rows; 0: never */
	/* after the first row: tell the test (started) and, if hold, wait for release */
	bool hold;
	bool started, released;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int ts_column(void *ctx, const struct cn_column_info *col)
{
	struct tsink *t = ctx;
	assert_true(t->ncols < 32);
	assert_int_equal(t->rows, 0);
	assert_non_null(col->name);
	assert_null(col->origin_schema);
	t->name[t->ncols] = strdup(col->name);
	t->type[t->ncols] = dup_or_null(col->type); /* NULL: no declared type, no first value */
	t->otable[t->ncols] = dup_or_null(col->origin_table);
	t->ocolumn[t->ncols] = dup_or_null(col->origin_column);
	t->ncols++;
	return CN_OK;
}

static int ts_cell(void *ctx, const struct cn_value *v)
{
	struct tsink *t = ctx;
	if (t->ncells == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->cells = realloc(t->cells, t->cap * sizeof *t->cells);
		assert_non_null(t->cells);
	}
	struct tcell *c = &t->cells[t->ncells++];
	memset(c, 0, sizeof *c);
	c->kind = v->kind;
	switch (v->kind) {
	case CN_VAL_BOOL:
		c->b = v->u.b;
		break;
	case CN_VAL_INT:
		c->i = v->u.i;
		break;
	case CN_VAL_DOUBLE:
		c->d = v->u.d;
		break;
	case CN_VAL_NULL:
		break;
	default:
		assert_non_null(v->u.s.ptr);
		c->s = malloc(v->u.s.len + 1);
		memcpy(c->s, v->u.s.ptr, v->u.s.len);
		c->s[v->u.s.len] = '\0';
		c->len = v->u.s.len;
		break;
	}
	return CN_OK;
}

static int ts_row_end(void *ctx)
{
	struct tsink *t = ctx;
	assert_int_equal(t->ncells, (t->rows + 1) * t->ncols);
	t->rows++;
	if (t->rows == 1) {
		pthread_mutex_lock(&t->mu);
		t->started = true;
		pthread_cond_broadcast(&t->cv);
		while (t->hold && !t->released)
			pthread_cond_wait(&t->cv, &t->mu);
		pthread_mutex_unlock(&t->mu);
	}
	return t->full_after && t->rows >= t->full_after ? CN_SINK_FULL : CN_OK;
}

static void ts_init(struct tsink *t)
{
	memset(t, 0, sizeof *t);
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
}

static void ts_free(struct tsink *t)
{
	for (size_t i = 0; i < t->ncols; i++) {
		free(t->name[i]);
		free(t->type[i]);
		free(t->otable[i]);
		free(t->ocolumn[i]);
	}
	for (size_t i = 0; i < t->ncells; i++)
		free(t->cells[i].s);
	free(t->cells);
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->cv);
	memset(t, 0, sizeof *t);
}

static const struct tcell *ts_at(const struct tsink *t, size_t row, size_t col)
{
	assert_true(row < t->rows);
	assert_true(col < t->ncols);
	return &t->cells[row * t->ncols + col];
}

static void ts_wait_started(struct tsink *t)
{
	pthread_mutex_lock(&t->mu);
	while (!t->started)
		pthread_cond_wait(&t->cv, &t->mu);
	pthread_mutex_unlock(&t->mu);
}

static void ts_release(struct tsink *t)
{
	pthread_mutex_lock(&t->mu);
	t->released = true;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
}

static int run(void *h, const char *sql, const struct cn_value *params, size_t nparams,
	       uint32_t timeout_ms, struct tsink *t, struct cn_error *err)
{
	struct cn_result_sink sink = {t, ts_column, ts_cell, ts_row_end};
	struct cn_query q = {sql, params, nparams, timeout_ms, 1000};
	memset(err, 0, sizeof *err);
	return E.api->execute(h, &q, &sink, err);
}

/* ------------------------------------------------------------ snapshots */

struct snapshot {
	uint64_t data_hash; /* every row of every table, sqlite_schema included */
	int64_t rows;
	off_t size;
	struct timespec mtime;
	char *dbdir_files, *cwd_files;
};

static void hash_bytes(uint64_t *h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		*h ^= b[i];
		*h *= 1099511628211ull;
	}
}

static char *list_dir(const char *dir)
{
	char *names[256];
	size_t n = 0, len = 1;
	DIR *d = opendir(dir);
	struct dirent *e;
	assert_non_null(d);
	while ((e = readdir(d)) && n < 256) {
		names[n] = strdup(e->d_name);
		len += strlen(e->d_name) + 1;
		n++;
	}
	closedir(d);
	for (size_t i = 1; i < n; i++)
		for (size_t k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
			char *tmp = names[k];
			names[k] = names[k - 1];
			names[k - 1] = tmp;
		}
	char *out = calloc(1, len);
	for (size_t i = 0; i < n; i++) {
		strcat(out, names[i]);
		strcat(out, "\n");
		free(names[i]);
	}
	return out;
}

static void take_snapshot(struct snapshot *s)
{
	sqlite3 *db;
	sqlite3_stmt *tables, *rows;
	struct stat st;
	memset(s, 0, sizeof *s);
	s->data_hash = 14695981039346656037ull;
	assert_int_equal(stat(E.db, &st), 0);
	s->size = st.st_size;
	s->mtime = st.st_mtim;
	assert_int_equal(sqlite3_open_v2(E.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE type = 'table' "
					    "UNION ALL SELECT 'sqlite_schema' ORDER BY 1", -1, &tables,
					    NULL), SQLITE_OK);
	while (sqlite3_step(tables) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(tables, 0);
		char *sql = sqlite3_mprintf("SELECT * FROM \"%w\" ORDER BY 1, 2", name);
		hash_bytes(&s->data_hash, name, strlen(name));
		assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &rows, NULL), SQLITE_OK);
		while (sqlite3_step(rows) == SQLITE_ROW) {
			s->rows++;
			for (int i = 0; i < sqlite3_column_count(rows); i++) {
				int type = sqlite3_column_type(rows, i);
				const void *b = sqlite3_column_blob(rows, i);
				hash_bytes(&s->data_hash, &type, sizeof type);
				if (b)
					hash_bytes(&s->data_hash, b, (size_t)sqlite3_column_bytes(rows, i));
			}
		}
		sqlite3_finalize(rows);
		sqlite3_free(sql);
	}
	sqlite3_finalize(tables);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	s->dbdir_files = list_dir(E.dbdir);
	s->cwd_files = list_dir(E.cwd);
}

static void assert_same_snapshot(const struct snapshot *a, const struct snapshot *b)
{
	assert_true(a->data_hash == b->data_hash);
	assert_int_equal(a->rows, b->rows);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->mtime.tv_sec, b->mtime.tv_sec);
	assert_int_equal(a->mtime.tv_nsec, b->mtime.tv_nsec);
	assert_string_equal(a->dbdir_files, b->dbdir_files);
	assert_string_equal(a->cwd_files, b->cwd_files);
}

static void free_snapshot(struct snapshot *s)
{
	free(s->dbdir_files);
	free(s->cwd_files);
}

/* ------------------------------------------------------------ tests */

static void test_module(void **state)
{
	(void)state;
	assert_string_equal(E.api->name, "sqlite");
	assert_int_equal(E.api->caps, CN_CAP_SQL | CN_CAP_DOLLAR_PARAMS | CN_CAP_CANCEL);
	assert_non_null(E.api->ping);
	assert_non_null(E.api->cancel);
	E.api->close(NULL); /* a no-op */
}

/* Every entry must be refused by check() and by execute() on its own. */
static const struct attack {
	const char *sql;
	const char *reason; /* a substring of the message */
	bool guard_only;    /* harmless below the guard: SQLite runs the first statement only */
} attacks[] = {
	/* writes of every kind */
	{"INSERT INTO customers (name, email, country, created_at) VALUES ('x', 'x@x', 'US', 'now')",
	 "INSERT statements are not allowed", false},
	{"UPDATE products SET price = 0", "UPDATE statements are not allowed", false},
	{"DELETE FROM orders", "DELETE statements are not allowed", false},
	{"REPLACE INTO products (id, sku, name, category, price, created_at) "
	 "VALUES (1, 'a', 'b', 'c', 1, 'd')", "REPLACE statements are not allowed", false},
	{"INSERT INTO products (id, sku, name, category, price, created_at) VALUES "
	 "(1, 'a', 'b', 'c', 1, 'd') ON CONFLICT (id) DO UPDATE SET price = 0", "not allowed", false},
	{"INSERT OR REPLACE INTO order_items VALUES (1, 1, 1, 0)", "INSERT statements", false},
	{"WITH x AS (SELECT 1) DELETE FROM orders", "DELETE on 'orders' is not allowed", false},
	{"WITH x AS (SELECT 1) INSERT INTO orders SELECT * FROM orders",
	 "INSERT on 'orders' is not allowed", false},
	{"WITH x(id) AS (SELECT 1) UPDATE products SET price = 1 WHERE id IN (SELECT id FROM x)",
	 "UPDATE of 'products' is not allowed", false},
	{"DELETE FROM orders WHERE id = 1 RETURNING *", "DELETE statements", false},
	{"UPDATE customers SET name = 'x' RETURNING id, phone", "UPDATE statements", false},
	{"INSERT INTO products DEFAULT VALUES RETURNING id", "INSERT statements", false},
	{"DROP TABLE customers", "DROP statements", false},
	{"DROP VIEW order_totals", "DROP statements", false},
	{"DROP INDEX products_sku_key", "DROP statements", false},
	{"ALTER TABLE customers ADD COLUMN note TEXT", "ALTER statements", false},
	{"ALTER TABLE customers RENAME TO clients", "ALTER statements", false},
	{"CREATE TABLE evil (x)", "CREATE statements", false},
	{"CREATE TEMP TABLE t AS SELECT * FROM customers", "CREATE statements", false},
	{"CREATE TEMPORARY VIEW v AS SELECT 1", "CREATE statements", false},
	{"CREATE TEMP TRIGGER tr AFTER INSERT ON customers BEGIN SELECT 1; END", "CREATE statements", false},
	{"CREATE INDEX ix ON customers (name)", "CREATE statements", false},
	{"CREATE VIRTUAL TABLE f USING fts5(x)", "CREATE statements", false},
	{"REINDEX", "REINDEX statements", false},
	{"ANALYZE", "ANALYZE statements", false},
	{"VACUUM", "VACUUM statements", false},
	{"VACUUM INTO 'pwned_vacuum.db'", "VACUUM statements", false},
	{"EXPLAIN DELETE FROM orders", "EXPLAIN DELETE is not allowed", false},
	{"EXPLAIN QUERY PLAN INSERT INTO products DEFAULT VALUES", "EXPLAIN INSERT is not allowed", false},
	/* more than one statement */
	{"SELECT 1; DROP TABLE customers", "only one statement is allowed", true},
	{"SELECT 1;DELETE FROM orders", "only one statement is allowed", true},
	{"SELECT ';' AS x; DELETE FROM orders", "only one statement is allowed", true},
	{"SELECT 'a'';b' AS x ; UPDATE products SET price = 0", "only one statement is allowed", true},
	{"SELECT 1 /* ; */ ; UPDATE products SET price = 0", "only one statement is allowed", true},
	{"SELECT 1 -- ;\n; DROP TABLE orders", "only one statement is allowed", true},
	{"SELECT 1;\n\t\n   SELECT 2", "only one statement is allowed", true},
	{"   SELECT 1   ;   /* c */  ATTACH 'pwned.db' AS p", "only one statement is allowed", true},
	{"SELECT \"a;b\" FROM (SELECT 1 AS \"a;b\");\nPRAGMA query_only = 0",
	 "only one statement is allowed", true},
	{"VALUES (1);-- x\nDETACH main", "only one statement is allowed", true},
	/* ATTACH and DETACH */
	{"ATTACH DATABASE 'pwned.db' AS pwned", "ATTACH is not allowed: the connector is read-only", false},
	{"aTtAcH 'pwned.db' AS p", "ATTACH is not allowed", false},
	{"/* hi */ ATTACH /* x */ 'pwned.db' -- c\n AS p", "ATTACH is not allowed", false},
	{"-- lead\nattach\n'file:pwned2.db?mode=rwc'\nas\np", "ATTACH is not allowed", false},
	{"  \t\n;ATTACH 'pwned.db' AS p", "ATTACH is not allowed", false},
	{"DETACH DATABASE main", "DETACH is not allowed", false},
	/* pragmas */
	{"PRAGMA query_only = 0", "PRAGMA query_only is not allowed", false},
	{"PRAGMA query_only=OFF", "PRAGMA query_only is not allowed", false},
	{"PRAGMA writable_schema = 1", "PRAGMA writable_schema is not allowed", false},
	{"PRAGMA journal_mode = WAL", "PRAGMA journal_mode is not allowed", false},
	{"PRAGMA main.journal_mode=DELETE", "PRAGMA journal_mode is not allowed", false},
	{"PRAGMA trusted_schema = 1", "PRAGMA trusted_schema is not allowed", false},
	{"PRAGMA user_version = 7", "PRAGMA user_version is not allowed", false},
	{"PRAGMA database_list", "PRAGMA database_list is not allowed", false},
	{"pragma   TABLE_INFO", "needs a table name", false},
	{"PRAGMA table_info(internal_audit_log)", "table 'internal_audit_log' is not available", false},
	{"PRAGMA table_info = sqlite_master", "table 'sqlite_master' is not available", false},
	{"PRAGMA index_info(no_such_index)", "index 'no_such_index' is not available", false},
	{"SELECT * FROM pragma_table_info('internal_audit_log')", "is not available", false},
	{"SELECT name FROM pragma_table_list", "is not available", false},
	{"SELECT * FROM pragma_query_only", "is not available", false},
	/* dangerous functions */
	{"SELECT load_extension('/tmp/evil.so')", "function load_extension() is not allowed", false},
	{"SELECT LOAD_EXTENSION('x', 'y')", "function load_extension() is not allowed", false},
	{"SELECT readfile('/etc/passwd')", "readfile", false},
	{"SELECT writefile('pwned.txt', 'x')", "writefile", false},
	{"SELECT edit('x')", "edit", false},
	{"SELECT fts3_tokenizer('simple')", "function fts3_tokenizer() is not allowed", false},
	{"SELECT sqlite_compileoption_get(0)", "function sqlite_compileoption_get() is not allowed", false},
	/* SQLite's internals and hidden objects */
	{"SELECT * FROM sqlite_schema", "table 'sqlite_master' is not available", false},
	{"SELECT sql FROM sqlite_master WHERE name = 'internal_audit_log'", "is not available", false},
	{"SELECT * FROM main.sqlite_master", "is not available", false},
	{"SELECT * FROM SQLITE_TEMP_MASTER", "is not available", false},
	{"SELECT * FROM sqlite_stat1", "table 'sqlite_stat1' is not available", false},
	{"SELECT name FROM (SELECT * FROM sqlite_schema)", "is not available", false},
	{"SELECT * FROM dbstat", "is not available", false},
	{"SELECT * FROM sqlite_dbpage", "sqlite_dbpage", false},
	{"SELECT * FROM internal_audit_log", "table 'internal_audit_log' is not available", false},
	{"SELECT c.name, a.action FROM customers AS c JOIN internal_audit_log AS a ON a.id = c.id",
	 "table 'internal_audit_log' is not available", false},
	{"WITH a AS (SELECT * FROM Internal_Audit_Log) SELECT count(*) FROM a", "is not available", false},
	/* transactions */
	{"BEGIN", "transactions (BEGIN) are not allowed", false},
	{"BEGIN IMMEDIATE", "transactions (BEGIN) are not allowed", false},
	{"COMMIT", "transactions (COMMIT) are not allowed", false},
	{"ROLLBACK", "transactions (ROLLBACK) are not allowed", false},
	{"END TRANSACTION", "transactions (END) are not allowed", false},
	{"SAVEPOINT sp1", "transactions (SAVEPOINT) are not allowed", false},
	{"RELEASE sp1", "transactions (RELEASE) are not allowed", false},
	/* parameters other than $1..$n */
	{"SELECT * FROM customers WHERE id = ?", "parameter '?' is not supported", true},
	{"SELECT * FROM customers WHERE id = ?1", "parameter '?1' is not supported", true},
	{"SELECT * FROM customers WHERE id = ?3", "parameter '?3' is not supported", true},
	{"SELECT * FROM customers WHERE id = :id", "parameter ':id' is not supported", true},
	{"SELECT * FROM customers WHERE id = @id", "parameter '@id' is not supported", true},
	{"SELECT * FROM customers WHERE id = $id", "parameter '$id' is not supported", true},
	{"SELECT $1::int", "use $1..$n", true},
	{"SELECT $0", "parameter '$0' is not supported", true},
	{"SELECT $01", "parameter '$01' is not supported", true},
	{"SELECT $1000", "parameter '$1000' is not supported", true},
	/* nothing to run */
	{"", "the query is empty", true},
	{"   -- only a comment\n /* and another */", "the query is empty", true},
	{";", "the query is empty", true},
};

/* Refused by check() and by execute(), with the same class, never OTHER. */
static void assert_refused(void *h, const char *sql, const char *reason)
{
	struct cn_error err = {0};
	struct tsink t;
	int rc = E.api->check(h, sql, &err);
	if (rc != CN_EREJECTED || err.code != CN_EREJECTED || !strstr(err.message, reason))
		fail_msg("check(%s) = %d '%s', expected CN_EREJECTED with '%s'", sql, rc, err.message,
			 reason);
	int why = err.reject;
	if (why == CN_REJECT_OTHER)
		fail_msg("check(%s) refused without a class: %s", sql, err.message);
	ts_init(&t);
	rc = run(h, sql, NULL, 0, 2000, &t, &err);
	if (rc != CN_EREJECTED || !strstr(err.message, reason))
		fail_msg("execute(%s) = %d '%s', expected CN_EREJECTED with '%s'", sql, rc,
			 err.message, reason);
	if (err.reject != why)
		fail_msg("execute(%s) refused as class %d, check() as %d", sql, err.reject, why);
	assert_int_equal(t.rows, 0);
	ts_free(&t);
}

static void test_attacks_refused(void **state)
{
	(void)state;
	char before_cwd[512], sql[700];
	struct snapshot before, after;
	assert_true(sizeof attacks / sizeof attacks[0] >= 30);
	assert_non_null(getcwd(before_cwd, sizeof before_cwd));
	assert_int_equal(chdir(E.cwd), 0);
	take_snapshot(&before);
	void *h = open_demo(2, true);
	for (size_t i = 0; i < sizeof attacks / sizeof attacks[0]; i++)
		assert_refused(h, attacks[i].sql, attacks[i].reason);
	/* paths that would be created next to the database */
	snprintf(sql, sizeof sql, "ATTACH '%s/evil.db' AS evil", E.dbdir);
	assert_refused(h, sql, "ATTACH is not allowed");
	snprintf(sql, sizeof sql, "VACUUM INTO '%s/copy.db'", E.dbdir);
	assert_refused(h, sql, "VACUUM statements are not allowed");
	snprintf(sql, sizeof sql, "SELECT 1; VACUUM INTO 'file:%s/copy2.db'", E.dbdir);
	assert_refused(h, sql, "only one statement is allowed");
	E.api->close(h);
	take_snapshot(&after);
	assert_int_equal(chdir(before_cwd), 0);
	assert_same_snapshot(&before, &after);
	assert_true(before.rows > 600);
	free_snapshot(&before);
	free_snapshot(&after);
}

/* What each refusal counts as in the metrics. */
static void test_classes(void **state)
{
	(void)state;
	static const struct {
		const char *sql;
		enum cn_reject why;
	} cases[] = {
		{"INSERT INTO products DEFAULT VALUES", CN_REJECT_WRITE},
		{"WITH x AS (SELECT 1) DELETE FROM orders", CN_REJECT_WRITE},
		{"ATTACH 'pwned.db' AS p", CN_REJECT_WRITE},
		{"BEGIN", CN_REJECT_WRITE},
		{"EXPLAIN DELETE FROM orders", CN_REJECT_WRITE},
		{"PRAGMA user_version = 7", CN_REJECT_WRITE},
		{"PRAGMA journal_mode(WAL)", CN_REJECT_WRITE},
		{"PRAGMA wal_checkpoint", CN_REJECT_WRITE},
		{"PRAGMA user_version", CN_REJECT_DENIED},
		{"PRAGMA database_list", CN_REJECT_DENIED},
		{"PRAGMA integrity_check(customers)", CN_REJECT_DENIED},
		{"EXPLAIN PRAGMA table_info(customers)", CN_REJECT_DENIED},
		{"SELECT load_extension('x')", CN_REJECT_DENIED},
		{"SELECT * FROM sqlite_master", CN_REJECT_DENIED},
		{"SELECT * FROM pragma_table_info('customers')", CN_REJECT_DENIED},
		{"PRAGMA table_info(sqlite_master)", CN_REJECT_DENIED},
		{"SELECT * FROM internal_audit_log", CN_REJECT_HIDDEN},
		{"PRAGMA table_info(internal_audit_log)", CN_REJECT_HIDDEN},
		{"SELECT * FROM customers WHERE id = ?", CN_REJECT_PARAMETER},
		{"SELECT * FROM customers WHERE id = :id", CN_REJECT_PARAMETER},
		{"", CN_REJECT_STATEMENTS},
		{"SELECT 1; SELECT 2", CN_REJECT_STATEMENTS},
		{"SELEC 1", CN_REJECT_SYNTAX},
		{"SELECT * FROM no_such_table", CN_REJECT_SYNTAX},
		{"PRAGMA table_info", CN_REJECT_SYNTAX},
		{"PRAGMA index_info(no_such_index)", CN_REJECT_SYNTAX},
	};
	void *h = open_demo(1, true);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct cn_error err = {0};
		int rc = E.api->check(h, cases[i].sql, &err);
		if (rc != CN_EREJECTED || err.reject != (int)cases[i].why)
			fail_msg("check(%s) = %d, class %d, expected class %d (%s)", cases[i].sql, rc,
				 err.reject, (int)cases[i].why, err.message);
	}
	/* limits: the text, a pragma's name */
	static char big[SQ_LIMIT_SQL_LENGTH + 64], pragma[SQ_NAME_MAX + 32];
	int n = snprintf(big, sizeof big, "SELECT 1");
	memset(big + n, ' ', SQ_LIMIT_SQL_LENGTH);
	big[n + SQ_LIMIT_SQL_LENGTH] = '\0';
	n = snprintf(pragma, sizeof pragma, "PRAGMA table_info(");
	memset(pragma + n, 'a', SQ_NAME_MAX);
	memcpy(pragma + n + SQ_NAME_MAX, ")", 2);
	const char *limits[] = {big, pragma};
	for (size_t i = 0; i < 2; i++) {
		struct cn_error err = {0};
		assert_int_equal(E.api->check(h, limits[i], &err), CN_EREJECTED);
		if (err.reject != CN_REJECT_LIMIT)
			fail_msg("case %zu: class %d (%s)", i, err.reject, err.message);
	}
	E.api->close(h);
}

/* Every entry must pass check() and run with execute(). */
static const struct allowed {
	const char *sql;
	size_t nparams;
	struct cn_value params[2];
	long rows; /* -1: at least one */
} allowed[] = {
	{"SELECT 'a;b' AS x", 0, {{0}}, 1},
	{"SELECT 'DROP TABLE customers' AS x, '--' AS y, '/*' AS z, '; ATTACH' AS w", 0, {{0}}, 1},
	{"-- leading comment\nSELECT id FROM customers WHERE id = 1", 0, {{0}}, 1},
	{"/* block */ SELECT 1 /* after */", 0, {{0}}, 1},
	{"SELECT 1;", 0, {{0}}, 1},
	{"SELECT 1;  \n\t -- trailing\n /* more */  ", 0, {{0}}, 1},
	{"select\n\tcount(*)\nfrom\n\tproducts\n;\n", 0, {{0}}, 1},
	{"WITH d AS (SELECT * FROM orders WHERE status = 'delivered') SELECT count(*) FROM d", 0,
	 {{0}}, 1},
	{"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n LIMIT 5", 0,
	 {{0}}, 5},
	{"SELECT customer_id, count(*) OVER (PARTITION BY customer_id) AS c, "
	 "row_number() OVER (ORDER BY id) AS r FROM orders ORDER BY id LIMIT 10", 0, {{0}}, 10},
	{"SELECT name FROM customers WHERE id IN "
	 "(SELECT customer_id FROM orders WHERE status = 'cancelled')", 0, {{0}}, -1},
	{"SELECT c.name, o.id FROM customers AS c JOIN orders AS o ON o.customer_id = c.id "
	 "LEFT JOIN order_items AS oi ON oi.order_id = o.id LIMIT 7", 0, {{0}}, 7},
	{"SELECT 1 UNION SELECT 2 UNION ALL SELECT 2", 0, {{0}}, 3},
	{"VALUES (1, 'a'), (2, 'b')", 0, {{0}}, 2},
	{"EXPLAIN QUERY PLAN SELECT * FROM orders WHERE customer_id = 3", 0, {{0}}, -1},
	{"EXPLAIN SELECT 1", 0, {{0}}, -1},
	{"SELECT * FROM customers WHERE id = $1 OR id = $1 + $2", 2,
	 {{.kind = CN_VAL_INT, .u.i = 1}, {.kind = CN_VAL_INT, .u.i = 1}}, 2},
	{"SELECT * FROM customers WHERE name LIKE $1", 1,
	 {{.kind = CN_VAL_TEXT, .u.s = {"A%", 2}}}, -1},
	{"SELECT 1 AS \"delete\", 2 AS \"update\", 3 AS [drop], 4 AS `insert`, 5 AS \"attach;\"", 0,
	 {{0}}, 1},
	{"SELECT json_extract(preferences, '$.language') AS lang, json_array(1, 2) "
	 "FROM customers WHERE id = 1", 0, {{0}}, 1},
	{"SELECT key, value FROM json_each('{\"a\":1,\"b\":[2,3]}')", 0, {{0}}, 2},
	{"SELECT j.fullkey FROM customers AS c, json_tree(c.preferences) AS j WHERE c.id = 2", 0,
	 {{0}}, 3},
	{"SELECT date(ordered_at), strftime('%Y-%m', ordered_at), "
	 "julianday('2024-01-01') - julianday(ordered_at) FROM orders LIMIT 3", 0, {{0}}, 3},
	{"SELECT * FROM order_totals ORDER BY total DESC LIMIT 3", 0, {{0}}, 3},
	{"SELECT printf('%.2f', sum(total)) FROM order_totals", 0, {{0}}, 1},
	{"SELECT length(randomblob(16)), zeroblob(4), sqlite_version()", 0, {{0}}, 1},
	{"PRAGMA table_info(customers)", 0, {{0}}, 8}, /* phone is hidden */
	{"PRAGMA index_list(customers)", 0, {{0}}, 1},
	{"PRAGMA index_info(products_sku_key)", 0, {{0}}, 1},
	{"PRAGMA foreign_key_list(order_items)", 0, {{0}}, 2},
};

static void test_allowed(void **state)
{
	(void)state;
	void *h = open_demo(2, true);
	assert_true(sizeof allowed / sizeof allowed[0] >= 15);
	for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
		const struct allowed *a = &allowed[i];
		struct cn_error err = {0};
		struct tsink t;
		int rc = E.api->check(h, a->sql, &err);
		if (rc != CN_OK)
			fail_msg("check(%s) = %d '%s'", a->sql, rc, err.message);
		ts_init(&t);
		rc = run(h, a->sql, a->params, a->nparams, 2000, &t, &err);
		if (rc != CN_OK)
			fail_msg("execute(%s) = %d '%s'", a->sql, rc, err.message);
		if ((a->rows < 0 && t.rows == 0) || (a->rows >= 0 && t.rows != (size_t)a->rows))
			fail_msg("execute(%s) gave %zu rows, expected %ld", a->sql, t.rows, a->rows);
		ts_free(&t);
	}
	E.api->close(h);
}

static void test_syntax_errors(void **state)
{
	(void)state;
	static const struct {
		const char *sql, *reason;
	} cases[] = {
		{"SELEC 1", "syntax error: near \"SELEC\": syntax error"},
		{"(SELECT 1)", "syntax error: near \"(\": syntax error"},
		{"SELECT FROM WHERE", "syntax error: near \"FROM\": syntax error"},
		{"SELECT 'unterminated", "syntax error: unrecognized token"},
		{"SELECT (1", "syntax error: incomplete input"},
		{"SELECT * FROM no_such_table", "invalid query: no such table: no_such_table"},
		{"SELECT no_such_column FROM customers", "no such column: no_such_column"},
	};
	void *h = open_demo(1, true);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_refused(h, cases[i].sql, cases[i].reason);
	E.api->close(h);
}

static void test_parameters(void **state)
{
	(void)state;
	static const struct {
		const char *sql;
		size_t n;
		int rc;
		const char *reason;
	} counts[] = {
		{"SELECT $1, $2", 3, CN_EINVAL, "the query uses $1..$2 but 3 parameters were given"},
		{"SELECT $1, $2", 1, CN_EINVAL, "the query uses $1..$2 but 1 parameter was given"},
		{"SELECT $1, $3", 3, CN_EINVAL, "the query does not use $2"},
		{"SELECT 1", 1, CN_EINVAL, "the query uses no parameters but 1 were given"},
		{"SELECT $2", 2, CN_EINVAL, "the query does not use $1"},
		{"SELECT $1 + $1, $2", 2, CN_OK, ""},
	};
	struct cn_value three[3] = {{.kind = CN_VAL_INT, .u.i = 1}, {.kind = CN_VAL_INT, .u.i = 2},
				    {.kind = CN_VAL_INT, .u.i = 3}};
	void *h = open_demo(1, true);
	struct cn_error err;
	struct tsink t;
	for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
		ts_init(&t);
		int rc = run(h, counts[i].sql, three, counts[i].n, 2000, &t, &err);
		if (rc != counts[i].rc || !strstr(err.message, counts[i].reason))
			fail_msg("%s with %zu: %d '%s'", counts[i].sql, counts[i].n, rc, err.message);
		ts_free(&t);
	}

	/* types round trip */
	static const char text[] = "h\xc3\xa9llo, 'world'; DROP TABLE x";
	struct cn_value p[7] = {
		{.kind = CN_VAL_NULL},
		{.kind = CN_VAL_BOOL, .u.b = true},
		{.kind = CN_VAL_INT, .u.i = -9007199254740993LL},
		{.kind = CN_VAL_DOUBLE, .u.d = 2.5},
		{.kind = CN_VAL_TEXT, .u.s = {text, sizeof text - 1}},
		{.kind = CN_VAL_NUMERIC, .u.s = {"12.50", 5}},
		{.kind = CN_VAL_TEXT, .u.s = {"abcdef", 3}}, /* not NUL-terminated at len */
	};
	ts_init(&t);
	assert_int_equal(run(h, "SELECT $1, $2, $3, $4, $5, $6, typeof($6), $7, $6 = 12.5", p, 7, 2000,
			     &t, &err), CN_OK);
	assert_int_equal(t.rows, 1);
	assert_int_equal(ts_at(&t, 0, 0)->kind, CN_VAL_NULL);
	assert_int_equal(ts_at(&t, 0, 1)->kind, CN_VAL_INT);
	assert_int_equal(ts_at(&t, 0, 1)->i, 1);
	assert_int_equal(ts_at(&t, 0, 2)->kind, CN_VAL_INT);
	assert_true(ts_at(&t, 0, 2)->i == -9007199254740993LL);
	assert_int_equal(ts_at(&t, 0, 3)->kind, CN_VAL_DOUBLE);
	assert_true(ts_at(&t, 0, 3)->d == 2.5);
	assert_int_equal(ts_at(&t, 0, 4)->kind, CN_VAL_TEXT);
	assert_int_equal(ts_at(&t, 0, 4)->len, sizeof text - 1);
	assert_string_equal(ts_at(&t, 0, 4)->s, text);
	assert_string_equal(ts_at(&t, 0, 5)->s, "12.50");
	assert_string_equal(ts_at(&t, 0, 6)->s, "text");
	assert_string_equal(ts_at(&t, 0, 7)->s, "abc");
	assert_int_equal(ts_at(&t, 0, 8)->i, 0); /* text, compared as text */
	/* expressions have no declared type: the first row's storage class types them */
	assert_null(t.type[0]); /* NULL: unknown */
	static const char *const ptypes[] = {NULL, "INTEGER", "INTEGER", "REAL", "TEXT", "TEXT",
					     "TEXT", "TEXT", "INTEGER"};
	for (size_t i = 1; i < 9; i++)
		assert_string_equal(t.type[i], ptypes[i]);
	ts_free(&t);

	/* numeric text meets a REAL column's affinity */
	struct cn_value price = {.kind = CN_VAL_NUMERIC, .u.s = {"34.50", 5}};
	ts_init(&t);
	assert_int_equal(run(h, "SELECT sku FROM products WHERE price = $1", &price, 1, 2000, &t,
			     &err), CN_OK);
	assert_int_equal(t.rows, 1);
	assert_string_equal(ts_at(&t, 0, 0)->s, "BK-1001");
	ts_free(&t);

	/* kinds that cannot be bound */
	struct cn_value bad[2] = {{.kind = CN_VAL_JSON, .u.s = {"{}", 2}},
				  {.kind = CN_VAL_BYTES, .u.s = {"ab", 2}}};
	for (size_t i = 0; i < 2; i++) {
		ts_init(&t);
		assert_int_equal(run(h, "SELECT $1", &bad[i], 1, 2000, &t, &err), CN_EINVAL);
		assert_non_null(strstr(err.message, "parameter $1"));
		assert_non_null(strstr(err.message, "cannot be bound"));
		ts_free(&t);
	}
	E.api->close(h);
}

static void test_typed_cells(void **state)
{
	(void)state;
	void *h = open_demo(1, true);
	struct cn_error err;
	struct tsink t;
	ts_init(&t);
	assert_int_equal(run(h, "SELECT c.id, c.name, c.is_active, c.preferences, c.city, p.price, "
			     "x'00ff' AS raw, p.in_stock, 1.0 / 4 AS quarter "
			     "FROM customers AS c, products AS p WHERE c.id = 13 AND p.id = 4",
			     NULL, 0, 2000, &t, &err), CN_OK);
	assert_int_equal(t.ncols, 9);
	assert_int_equal(t.rows, 1);
	static const char *const types[] = {"INTEGER", "TEXT", "BOOLEAN", "JSON", "TEXT", "REAL",
					    "BLOB", "BOOLEAN", "REAL"};
	for (size_t i = 0; i < 9; i++)
		assert_string_equal(t.type[i], types[i]);
	assert_int_equal(ts_at(&t, 0, 0)->kind, CN_VAL_INT);
	assert_int_equal(ts_at(&t, 0, 0)->i, 13);
	assert_int_equal(ts_at(&t, 0, 1)->kind, CN_VAL_TEXT);
	assert_int_equal(ts_at(&t, 0, 2)->kind, CN_VAL_BOOL);
	assert_true(ts_at(&t, 0, 2)->b);
	assert_int_equal(ts_at(&t, 0, 3)->kind, CN_VAL_JSON);
	assert_non_null(strstr(ts_at(&t, 0, 3)->s, "\"newsletter\""));
	assert_int_equal(ts_at(&t, 0, 4)->kind, CN_VAL_NULL); /* city of customer 13 */
	assert_int_equal(ts_at(&t, 0, 5)->kind, CN_VAL_DOUBLE);
	assert_true(ts_at(&t, 0, 5)->d == 19.99);
	assert_int_equal(ts_at(&t, 0, 6)->kind, CN_VAL_BYTES);
	assert_int_equal(ts_at(&t, 0, 6)->len, 2);
	assert_memory_equal(ts_at(&t, 0, 6)->s, "\x00\xff", 2);
	assert_int_equal(ts_at(&t, 0, 7)->kind, CN_VAL_BOOL);
	assert_false(ts_at(&t, 0, 7)->b); /* product 4 is out of stock */
	assert_int_equal(ts_at(&t, 0, 8)->kind, CN_VAL_DOUBLE);
	assert_string_equal(t.otable[0], "customers");
	assert_string_equal(t.ocolumn[0], "id");
	assert_string_equal(t.otable[5], "products");
	assert_string_equal(t.ocolumn[5], "price");
	assert_null(t.otable[6]);
	assert_null(t.ocolumn[6]);
	assert_null(t.otable[8]);
	ts_free(&t);

	/* an empty blob is bytes of length 0, not NULL */
	ts_init(&t);
	assert_int_equal(run(h, "SELECT x''", NULL, 0, 2000, &t, &err), CN_OK);
	assert_int_equal(ts_at(&t, 0, 0)->kind, CN_VAL_BYTES);
	assert_int_equal(ts_at(&t, 0, 0)->len, 0);
	ts_free(&t);
	E.api->close(h);
}

/* A computed column is typed by its declared type when it has one (a column
 * passed through), else by the storage class of its first value; with no
 * first value (no rows, or NULL) its type is null, never "". */
static void test_computed_column_types(void **state)
{
	(void)state;
	void *h = open_demo(1, true);
	struct cn_error err;
	struct tsink t;
	static const struct {
		const char *sql;
		const char *types[4];
	} cases[] = {
		{"SELECT count(*), sum(price), max(name), group_concat(sku) FROM products",
		 {"INTEGER", "REAL", "TEXT", "TEXT"}},
		{"SELECT id * 2, name || '!', price / 2, zeroblob(2) FROM products WHERE id = 1",
		 {"INTEGER", "TEXT", "REAL", "BLOB"}},
		{"SELECT id, id * 2, NULL AS nada, name || '!' FROM products WHERE id = -1",
		 {"INTEGER", NULL, NULL, NULL}},
		{"SELECT count(*), NULL AS nada, max(name), (SELECT 1.5) FROM products WHERE id = -1",
		 {"INTEGER", NULL, NULL, "REAL"}},
		{"SELECT c.id, c.city, coalesce(c.city, 'none'), typeof(c.city) FROM customers AS c "
		 "WHERE c.id = 13", {"INTEGER", "TEXT", "TEXT", "TEXT"}},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		ts_init(&t);
		int rc = run(h, cases[i].sql, NULL, 0, 2000, &t, &err);
		if (rc != CN_OK)
			fail_msg("%s: %d %s", cases[i].sql, rc, err.message);
		assert_int_equal(t.ncols, 4);
		for (int k = 0; k < 4; k++) {
			const char *want = cases[i].types[k], *got = t.type[k];
			if (want ? !got || strcmp(want, got) != 0 : got != NULL)
				fail_msg("%s: column %d typed %s, expected %s", cases[i].sql, k,
					 got ? got : "null", want ? want : "null");
		}
		ts_free(&t);
	}
	/* an error at the first row still fails the query, with no columns sent */
	ts_init(&t);
	assert_int_equal(run(h, "SELECT abs(-9223372036854775807 - 1)", NULL, 0, 2000, &t, &err),
			 CN_EQUERY);
	assert_int_equal(t.ncols, 0);
	ts_free(&t);
	E.api->close(h);
}

/* Origins follow aliases, subqueries and views. Without mappings here, so
 * the hidden column is not blanked by the authorizer. */
static void test_column_origin(void **state)
{
	(void)state;
	void *h = open_demo(1, false);
	struct cn_error err;
	struct tsink t;
	ts_init(&t);
	assert_int_equal(run(h, "SELECT phone AS p, s.e, t.total, upper(name) AS u FROM customers "
			     "JOIN (SELECT id AS sid, email AS e FROM customers) AS s ON s.sid = "
			     "customers.id JOIN order_totals AS t ON t.customer_id = customers.id "
			     "LIMIT 1", NULL, 0, 2000, &t, &err), CN_OK);
	assert_string_equal(t.name[0], "p");
	assert_string_equal(t.otable[0], "customers");
	assert_string_equal(t.ocolumn[0], "phone");
	assert_string_equal(t.type[0], "TEXT");
	assert_int_equal(ts_at(&t, 0, 0)->kind, CN_VAL_TEXT);
	assert_string_equal(t.otable[1], "customers");
	assert_string_equal(t.ocolumn[1], "email");
	assert_null(t.otable[2]); /* a view's aggregate is an expression */
	assert_null(t.otable[3]);
	assert_string_equal(t.type[3], "TEXT"); /* upper(name): the value's storage class */
	ts_free(&t);
	E.api->close(h);
}

/* The audit names a database file this process could write; the file is
 * opened read-only either way. */
static void test_audit(void **state)
{
	(void)state;
	char path[512], warning[600];
	struct cn_error err;
	snprintf(path, sizeof path, "%s/demo.db", E.dbdir);
	void *h = open_demo(1, false);
	assert_non_null(E.api->audit);
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(E.api->audit(h, warning, sizeof warning, &err), CN_OK);
	assert_non_null(strstr(warning, path));
	assert_non_null(strstr(warning, "writable"));
	assert_int_equal(chmod(path, 0444), 0);
	assert_int_equal(E.api->audit(h, warning, sizeof warning, &err), CN_OK);
	if (geteuid() != 0) /* root may write any file */
		assert_string_equal(warning, "");
	assert_int_equal(chmod(path, 0644), 0);
	E.api->close(h);
}

static void test_hidden_objects(void **state)
{
	(void)state;
	struct cn_error err;
	struct tsink t;
	void *mapped = open_demo(1, true), *plain = open_demo(1, false);

	/* the hidden column reads as NULL, wherever it appears */
	hidden_calls = 0;
	ts_init(&t);
	assert_int_equal(run(mapped, "SELECT id, phone, email, (SELECT phone FROM customers "
			     "WHERE id = 2) AS p2, count(*) OVER () FROM customers "
			     "WHERE phone LIKE '+1%' OR id = 1", NULL, 0, 2000, &t, &err), CN_OK);
	assert_true(hidden_calls > 0);
	assert_int_equal(t.rows, 1); /* the filter on phone sees NULL too */
	assert_int_equal(ts_at(&t, 0, 0)->i, 1);
	assert_int_equal(ts_at(&t, 0, 1)->kind, CN_VAL_NULL);
	assert_int_equal(ts_at(&t, 0, 2)->kind, CN_VAL_TEXT);
	assert_int_equal(ts_at(&t, 0, 3)->kind, CN_VAL_NULL);
	ts_free(&t);
	ts_init(&t);
	assert_int_equal(run(mapped, "SELECT * FROM customers WHERE id = 1", NULL, 0, 2000, &t, &err),
			 CN_OK);
	assert_string_equal(t.name[3], "phone");
	assert_int_equal(ts_at(&t, 0, 3)->kind, CN_VAL_NULL);
	ts_free(&t);

	/* a blanked column still reports its origin (from a probe that is never
	 * stepped), so the core can leave it out, aliased or not */
	ts_init(&t);
	assert_int_equal(run(mapped, "SELECT phone AS contact, upper(phone) AS u FROM customers "
			     "WHERE id = 1", NULL, 0, 2000, &t, &err), CN_OK);
	assert_string_equal(t.name[0], "contact");
	assert_string_equal(t.otable[0], "customers");
	assert_string_equal(t.ocolumn[0], "phone");
	assert_string_equal(t.type[0], "TEXT");
	assert_int_equal(ts_at(&t, 0, 0)->kind, CN_VAL_NULL);
	assert_null(t.otable[1]);
	assert_int_equal(ts_at(&t, 0, 1)->kind, CN_VAL_NULL);
	ts_free(&t);

	/* without mappings the same data is there: hiding comes from is_hidden */
	ts_init(&t);
	assert_int_equal(run(plain, "SELECT phone FROM customers WHERE id = 1", NULL, 0, 2000, &t,
			     &err), CN_OK);
	assert_string_equal(ts_at(&t, 0, 0)->s, "+1-555-7919");
	ts_free(&t);
	ts_init(&t);
	assert_int_equal(run(plain, "SELECT count(*) FROM internal_audit_log", NULL, 0, 2000, &t,
			     &err), CN_OK);
	assert_int_equal(ts_at(&t, 0, 0)->i, 20);
	ts_free(&t);
	ts_init(&t);
	assert_int_equal(run(plain, "PRAGMA table_info(customers)", NULL, 0, 2000, &t, &err), CN_OK);
	assert_int_equal(t.rows, 9);
	ts_free(&t);

	/* the hidden table is refused, even through a subquery */
	ts_init(&t);
	assert_int_equal(run(mapped, "SELECT (SELECT max(id) FROM internal_audit_log)", NULL, 0, 2000,
			     &t, &err), CN_EREJECTED);
	assert_string_equal(err.message, "table 'internal_audit_log' is not available");
	ts_free(&t);

	/* pragma rows that name the hidden column are left out */
	ts_init(&t);
	assert_int_equal(run(mapped, "PRAGMA table_xinfo(customers)", NULL, 0, 2000, &t, &err), CN_OK);
	assert_int_equal(t.rows, 8);
	for (size_t r = 0; r < t.rows; r++)
		assert_string_not_equal(ts_at(&t, r, 1)->s, "phone");
	ts_free(&t);
	E.api->close(mapped);
	E.api->close(plain);
}

static const char endless[] =
	"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r";

/* check() remembers the texts it accepted (drivers/common/verdicts.c); a
 * rejected text is refused every time, and execute() guards every text again,
 * so a remembered acceptance lets nothing through when the database changes
 * under it. */
static void test_remembered_check(void **state)
{
	(void)state;
	char path[400];
	snprintf(path, sizeof path, "%s/verdicts.db", E.dbdir);
	sqlite3 *w = NULL;
	assert_int_equal(sqlite3_open(path, &w), SQLITE_OK);
	assert_int_equal(sqlite3_exec(w, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
				      "INSERT INTO notes VALUES (1, 'visible');"
				      "CREATE TABLE internal_audit_log (id INTEGER, secret TEXT);"
				      "INSERT INTO internal_audit_log VALUES (1, 'hidden');",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	void *h = NULL;
	struct cn_error err;
	assert_int_equal(open_source("verdicts.db", 1, 5000, true, &h, &err), CN_OK);
	const char *sql = "SELECT * FROM notes";
	for (int i = 0; i < 3; i++)
		assert_int_equal(E.api->check(h, sql, &err), CN_OK);
	for (int i = 0; i < 3; i++) {
		memset(&err, 0, sizeof err);
		assert_int_equal(E.api->check(h, "SELECT * FROM internal_audit_log", &err), CN_EREJECTED);
		assert_string_equal(err.message, "table 'internal_audit_log' is not available");
	}

	/* the table becomes a view over the hidden one */
	assert_int_equal(sqlite3_exec(w, "DROP TABLE notes; CREATE VIEW notes AS "
				      "SELECT id, secret AS body FROM internal_audit_log;",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(w);
	assert_int_equal(E.api->check(h, sql, &err), CN_OK); /* remembered */
	struct tsink t;
	ts_init(&t);
	assert_int_equal(run(h, sql, NULL, 0, 2000, &t, &err), CN_EREJECTED);
	assert_string_equal(err.message, "table 'internal_audit_log' is not available");
	assert_int_equal(t.rows, 0);
	ts_free(&t);
	E.api->close(h);
}

static void test_timeout(void **state)
{
	(void)state;
	void *h = open_demo(1, true);
	struct cn_error err;
	struct tsink t;
	ts_init(&t);
	int64_t start = now_ms();
	assert_int_equal(run(h, endless, NULL, 0, 200, &t, &err), CN_ETIMEOUT);
	int64_t took = now_ms() - start;
	assert_true(took >= 190 && took < 1500);
	assert_non_null(strstr(err.message, "query exceeded the 200 ms time budget"));
	assert_int_equal(t.rows, 0);
	ts_free(&t);
	/* the connection is usable again */
	ts_init(&t);
	assert_int_equal(run(h, "SELECT 1", NULL, 0, 200, &t, &err), CN_OK);
	assert_int_equal(t.rows, 1);
	ts_free(&t);
	E.api->close(h);
}

struct job {
	void *h;
	const char *sql;
	uint32_t timeout_ms;
	struct tsink sink;
	struct cn_error err;
	int rc;
};

static void *job_run(void *arg)
{
	struct job *j = arg;
	j->rc = run(j->h, j->sql, NULL, 0, j->timeout_ms, &j->sink, &j->err);
	/* a statement that stops before its first row must not leave waiters hanging */
	pthread_mutex_lock(&j->sink.mu);
	j->sink.started = true;
	pthread_cond_broadcast(&j->sink.cv);
	pthread_mutex_unlock(&j->sink.mu);
	return NULL;
}

static void test_cancel(void **state)
{
	(void)state;
	struct job j = {.sql = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
			       "SELECT n FROM r WHERE n = 1 OR n < 0",
			.timeout_ms = 8000}; /* a broken cancel fails, not hangs */
	pthread_t th;
	j.h = open_demo(2, true);
	ts_init(&j.sink);
	assert_int_equal(pthread_create(&th, NULL, job_run, &j), 0);
	ts_wait_started(&j.sink); /* the first row is out; it keeps looking for more */
	int64_t start = now_ms();
	E.api->cancel(j.h);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_true(now_ms() - start < 1000);
	assert_int_equal(j.rc, CN_ECANCELED);
	assert_int_equal(j.err.code, CN_ECANCELED);
	assert_int_equal(j.sink.rows, 1);
	ts_free(&j.sink);

	/* cancel stops what runs, not what comes after */
	struct tsink t;
	struct cn_error err;
	ts_init(&t);
	assert_int_equal(run(j.h, "SELECT count(*) FROM orders", NULL, 0, 2000, &t, &err), CN_OK);
	assert_int_equal(ts_at(&t, 0, 0)->i, 150);
	ts_free(&t);
	E.api->close(j.h);
}

static void test_sink_full(void **state)
{
	(void)state;
	void *h = open_demo(1, true);
	struct cn_error err;
	struct tsink t;
	ts_init(&t);
	t.full_after = 5;
	assert_int_equal(run(h, "SELECT id FROM orders ORDER BY id", NULL, 0, 2000, &t, &err), CN_OK);
	assert_int_equal(t.rows, 5);
	assert_int_equal(t.ncells, 5);
	assert_int_equal(ts_at(&t, 4, 0)->i, 5);
	ts_free(&t);
	E.api->close(h);
}

static void test_pool_exhaustion(void **state)
{
	(void)state;
	struct job j = {.sql = "SELECT id FROM orders", .timeout_ms = 30000};
	pthread_t th;
	struct cn_error err;
	struct tsink t;
	j.h = open_demo(1, true);
	ts_init(&j.sink);
	j.sink.hold = true;
	assert_int_equal(pthread_create(&th, NULL, job_run, &j), 0);
	ts_wait_started(&j.sink); /* holds the only connection */

	ts_init(&t);
	int64_t start = now_ms();
	assert_int_equal(run(j.h, "SELECT 1", NULL, 0, 300, &t, &err), CN_EBUSY);
	int64_t took = now_ms() - start;
	assert_true(took >= 250 && took < 1500);
	assert_non_null(strstr(err.message, "busy"));
	ts_free(&t);
	/* the wait is bounded by 2 s even when the budget is longer */
	ts_init(&t);
	start = now_ms();
	assert_int_equal(run(j.h, "SELECT 1", NULL, 0, 20000, &t, &err), CN_EBUSY);
	took = now_ms() - start;
	assert_true(took >= 1900 && took < 3000);
	ts_free(&t);
	assert_int_equal(E.api->check(j.h, "SELECT 1", &err), CN_EBUSY);

	ts_release(&j.sink);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(j.rc, CN_OK);
	assert_int_equal(j.sink.rows, 150);
	ts_free(&j.sink);
	ts_init(&t);
	assert_int_equal(run(j.h, "SELECT 1", NULL, 0, 300, &t, &err), CN_OK);
	ts_free(&t);
	E.api->close(j.h);
}

/* ------------------------------------------------------------ test builder */

struct tb_column {
	char *name, *type, *dflt;
	bool nullable;
	int pk;
};

struct tb_fk {
	size_t n;
	char *cols[4], *refcols[4], *ref;
};

struct tb_index {
	char *name;
	bool unique;
	size_t n;
	char *cols[4];
};

struct tb_table {
	char *name;
	enum cn_object_kind kind;
	int64_t rows;
	struct tb_column cols[16];
	size_t ncols;
	struct tb_fk fks[4];
	size_t nfks;
	struct tb_index idx[6];
	size_t nidx;
};

struct tbuilder {
	struct tb_table t[16];
	size_t n;
};

static int tb_table(void *ctx, const char *schema, const char *name, enum cn_object_kind kind,
		    const char *comment, int64_t rows)
{
	struct tbuilder *b = ctx;
	assert_null(schema);
	assert_null(comment);
	if (b->n == 16)
		return CN_EINVAL;
	struct tb_table *t = &b->t[b->n];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	t->kind = kind;
	t->rows = rows;
	return (int)b->n++;
}

static int tb_column(void *ctx, int table, const char *name, const char *type, bool nullable,
		     const char *dflt, const char *comment, int pk)
{
	struct tbuilder *b = ctx;
	assert_true(table >= 0 && (size_t)table < b->n);
	assert_null(comment);
	struct tb_table *t = &b->t[table];
	if (t->ncols == 16)
		return CN_EINVAL;
	struct tb_column *c = &t->cols[t->ncols++];
	c->name = strdup(name);
	c->type = strdup(type);
	c->dflt = dup_or_null(dflt);
	c->nullable = nullable;
	c->pk = pk;
	return CN_OK;
}

static int tb_fk(void *ctx, int table, const char *name, size_t n, const char *const *cols,
		 const char *ref_schema, const char *ref, const char *const *refcols)
{
	struct tbuilder *b = ctx;
	assert_true(table >= 0 && (size_t)table < b->n);
	assert_null(name);
	assert_null(ref_schema);
	struct tb_table *t = &b->t[table];
	if (t->nfks == 4 || n > 4)
		return CN_EINVAL;
	struct tb_fk *f = &t->fks[t->nfks++];
	f->n = n;
	f->ref = strdup(ref);
	for (size_t i = 0; i < n; i++) {
		f->cols[i] = strdup(cols[i]);
		f->refcols[i] = strdup(refcols[i]);
	}
	return CN_OK;
}

static int tb_index(void *ctx, int table, const char *name, bool unique, size_t n,
		    const char *const *cols)
{
	struct tbuilder *b = ctx;
	assert_true(table >= 0 && (size_t)table < b->n);
	struct tb_table *t = &b->t[table];
	if (t->nidx == 6 || n > 4)
		return CN_EINVAL;
	struct tb_index *x = &t->idx[t->nidx++];
	x->name = strdup(name);
	x->unique = unique;
	x->n = n;
	for (size_t i = 0; i < n; i++)
		x->cols[i] = strdup(cols[i]);
	return CN_OK;
}

static void tb_free(struct tbuilder *b)
{
	for (size_t i = 0; i < b->n; i++) {
		struct tb_table *t = &b->t[i];
		free(t->name);
		for (size_t k = 0; k < t->ncols; k++) {
			free(t->cols[k].name);
			free(t->cols[k].type);
			free(t->cols[k].dflt);
		}
		for (size_t k = 0; k < t->nfks; k++) {
			free(t->fks[k].ref);
			for (size_t c = 0; c < t->fks[k].n; c++) {
				free(t->fks[k].cols[c]);
				free(t->fks[k].refcols[c]);
			}
		}
		for (size_t k = 0; k < t->nidx; k++) {
			free(t->idx[k].name);
			for (size_t c = 0; c < t->idx[k].n; c++)
				free(t->idx[k].cols[c]);
		}
	}
}

static const struct tb_table *tb_find(const struct tbuilder *b, const char *name)
{
	for (size_t i = 0; i < b->n; i++)
		if (strcmp(b->t[i].name, name) == 0)
			return &b->t[i];
	fail_msg("table %s was not introspected", name);
	return NULL;
}

static const struct tb_column *tb_col(const struct tb_table *t, const char *name)
{
	for (size_t i = 0; i < t->ncols; i++)
		if (strcmp(t->cols[i].name, name) == 0)
			return &t->cols[i];
	fail_msg("column %s.%s was not introspected", t->name, name);
	return NULL;
}

static const struct tb_index *tb_idx(const struct tb_table *t, const char *name)
{
	for (size_t i = 0; i < t->nidx; i++)
		if (strcmp(t->idx[i].name, name) == 0)
			return &t->idx[i];
	fail_msg("index %s of %s was not introspected", name, t->name);
	return NULL;
}

static void test_introspect(void **state)
{
	(void)state;
	static struct tbuilder tb;
	struct cn_schema_builder b = {&tb, tb_table, tb_column, tb_fk, tb_index};
	struct cn_error err = {0};
	void *h = open_demo(1, true);
	memset(&tb, 0, sizeof tb);
	hidden_calls = 0;
	if (E.api->introspect(h, &b, &err) != CN_OK)
		fail_msg("introspect: %s", err.message);
	assert_int_equal(hidden_calls, 0); /* the model, not the driver, applies mappings */

	/* every table and the view, in name order, no sqlite_stat1 */
	static const char *const names[] = {"customers", "internal_audit_log", "order_items",
					    "order_totals", "orders", "products"};
	assert_int_equal(tb.n, 6);
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(tb.t[i].name, names[i]);

	const struct tb_table *c = tb_find(&tb, "customers");
	assert_int_equal(c->kind, CN_OBJ_TABLE);
	assert_int_equal(c->rows, 60);
	assert_int_equal(c->ncols, 9);
	assert_string_equal(c->cols[0].name, "id");
	assert_string_equal(c->cols[0].type, "INTEGER");
	assert_int_equal(c->cols[0].pk, 1);
	assert_false(c->cols[0].nullable); /* INTEGER PRIMARY KEY is the rowid */
	assert_false(tb_col(c, "email")->nullable);
	assert_true(tb_col(c, "city")->nullable);
	assert_int_equal(tb_col(c, "city")->pk, 0);
	assert_string_equal(tb_col(c, "is_active")->type, "BOOLEAN");
	assert_string_equal(tb_col(c, "is_active")->dflt, "1");
	assert_null(tb_col(c, "city")->dflt);
	assert_string_equal(tb_col(c, "preferences")->type, "JSON");
	tb_col(c, "phone"); /* hidden columns are still in the model */
	assert_int_equal(c->nfks, 0);
	assert_int_equal(c->nidx, 1);
	assert_string_equal(c->idx[0].name, "customers_email_key"); /* UNIQUE's autoindex */
	assert_true(c->idx[0].unique);
	assert_int_equal(c->idx[0].n, 1);
	assert_string_equal(c->idx[0].cols[0], "email");

	const struct tb_table *v = tb_find(&tb, "order_totals");
	assert_int_equal(v->kind, CN_OBJ_VIEW);
	assert_int_equal(v->rows, -1);
	assert_int_equal(v->ncols, 7);
	assert_string_equal(v->cols[0].name, "order_id");
	assert_int_equal(v->nfks + v->nidx, 0);

	const struct tb_table *oi = tb_find(&tb, "order_items");
	assert_int_equal(oi->rows, 377);
	assert_int_equal(tb_col(oi, "order_id")->pk, 1);
	assert_int_equal(tb_col(oi, "product_id")->pk, 2);
	assert_int_equal(tb_col(oi, "quantity")->pk, 0);
	assert_int_equal(oi->nfks, 2);
	for (size_t i = 0; i < 2; i++) {
		const struct tb_fk *f = &oi->fks[i];
		assert_int_equal(f->n, 1);
		bool to_orders = strcmp(f->ref, "orders") == 0;
		assert_true(to_orders || strcmp(f->ref, "products") == 0);
		assert_string_equal(f->cols[0], to_orders ? "order_id" : "product_id");
		assert_string_equal(f->refcols[0], "id"); /* omitted in the DDL for products */
	}
	assert_int_equal(oi->nidx, 1); /* the primary key's own index is left out */
	assert_string_equal(oi->idx[0].name, "order_items_product_id_idx");
	assert_false(oi->idx[0].unique);

	const struct tb_table *o = tb_find(&tb, "orders");
	assert_int_equal(o->rows, 150);
	assert_int_equal(o->nfks, 1);
	assert_string_equal(o->fks[0].ref, "customers");
	assert_string_equal(o->fks[0].cols[0], "customer_id");
	assert_string_equal(o->fks[0].refcols[0], "id");
	assert_string_equal(tb_col(o, "status")->dflt, "'pending'");
	const struct tb_index *x = tb_idx(o, "orders_status_ordered_at_idx");
	assert_false(x->unique);
	assert_int_equal(x->n, 2);
	assert_string_equal(x->cols[0], "status");
	assert_string_equal(x->cols[1], "ordered_at");
	assert_false(tb_idx(o, "orders_customer_id_idx")->unique);

	const struct tb_table *p = tb_find(&tb, "products");
	assert_int_equal(p->rows, 24);
	assert_true(tb_idx(p, "products_sku_key")->unique);
	assert_false(tb_idx(p, "products_category_idx")->unique);
	assert_string_equal(tb_col(p, "price")->type, "REAL");

	assert_int_equal(tb_find(&tb, "internal_audit_log")->rows, 20);
	tb_free(&tb);

	/* a builder error stops introspection with its status */
	struct tbuilder *full = calloc(1, sizeof *full);
	full->n = 16;
	struct cn_schema_builder fb = {full, tb_table, tb_column, tb_fk, tb_index};
	assert_int_equal(E.api->introspect(h, &fb, &err), CN_EINVAL);
	assert_non_null(strstr(err.message, "schema builder refused table"));
	free(full);
	E.api->close(h);
}

static void test_open_errors(void **state)
{
	(void)state;
	char dir[400], notdb[400], copy[400];
	snprintf(dir, sizeof dir, "%s/subdir", E.dbdir);
	snprintf(notdb, sizeof notdb, "%s/notes.txt", E.dbdir);
	assert_int_equal(mkdir(dir, 0700), 0);
	FILE *f = fopen(notdb, "w");
	assert_non_null(f);
	fputs("these are not the pages you are looking for\n", f);
	fclose(f);
	char missing[400], missing_uri[420];
	snprintf(missing, sizeof missing, "%s/nope.db", E.dbdir);
	snprintf(missing_uri, sizeof missing_uri, "file://localhost%s/nope.db", E.dbdir);

	static const struct {
		const char *dsn;
		int rc;
		const char *reason;
	} cases[] = {
		{"nope.db", CN_EUNAVAILABLE, "/db/nope.db does not exist (dsn 'nope.db')"},
		{"file:nope.db?mode=ro", CN_EUNAVAILABLE, "/db/nope.db does not exist"},
		{"", CN_ECONFIG, "dsn is empty"},
		{":memory:", CN_ECONFIG, "names no database file"},
		{"file::memory:", CN_ECONFIG, "names no database file"},
		{"file:demo.db?mode=rwc", CN_ECONFIG, "URI option 'mode=rwc' in dsn is not supported"},
		{"file:demo.db?vfs=unix-none", CN_ECONFIG, "URI option 'vfs=unix-none'"},
		{"file://db.example.com/demo.db", CN_ECONFIG, "names host 'db.example.com'"},
		{"file:demo%2.db", CN_ECONFIG, "bad %-escape"},
		{"subdir", CN_ECONFIG, "is not a regular file"},
		{"notes.txt", CN_EUNAVAILABLE, "file is not a database"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct cn_error err;
		void *h = (void *)1;
		int rc = open_source(cases[i].dsn, 1, 1000, true, &h, &err);
		if (rc != cases[i].rc || !strstr(err.message, cases[i].reason))
			fail_msg("open(%s) = %d '%s'", cases[i].dsn, rc, err.message);
		assert_null(h);
	}
	/* an absolute path in a URI */
	struct cn_error err;
	void *h;
	assert_int_equal(open_source(missing_uri, 1, 1000, true, &h, &err), CN_EUNAVAILABLE);
	assert_non_null(strstr(err.message, missing));
	assert_int_equal(access(missing, F_OK), -1); /* never created */

	/* the forms that work: relative, absolute, URI with read-only options */
	static const char *const good[] = {"demo.db", "file:demo.db", "file:demo.db?immutable=1",
					   "file:./demo.db?mode=ro&cache=private"};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		if (open_source(good[i], 1, 1000, true, &h, &err) != CN_OK)
			fail_msg("open(%s): %s", good[i], err.message);
		assert_int_equal(E.api->ping(h, &err), CN_OK);
		E.api->close(h);
	}
	assert_int_equal(open_source(E.db, 2, 1000, true, &h, &err), CN_OK);
	E.api->close(h);

	/* ping notices the file going away */
	snprintf(copy, sizeof copy, "%s/gone.db", E.dbdir);
	copy_file(E.db, copy);
	assert_int_equal(open_source("gone.db", 1, 1000, true, &h, &err), CN_OK);
	assert_int_equal(E.api->ping(h, &err), CN_OK);
	assert_int_equal(unlink(copy), 0);
	assert_int_equal(E.api->ping(h, &err), CN_EUNAVAILABLE);
	assert_non_null(strstr(err.message, "gone.db"));
	E.api->close(h);

	unlink(notdb);
	rmdir(dir);
}

/* How one layer alone treats sql on c: 0 ran (harmlessly), 1 refused while
 * compiling, 2 refused while running; msg gets SQLite's message. Like the
 * driver, it runs only the first statement of the text. */
static int layer_run(struct sq_conn *c, const char *sql, char *msg, size_t msglen)
{
	sqlite3_stmt *st = NULL;
	sq_conn_begin(c, atomic_load(&c->src->cancel_epoch), 2000);
	int rc = sqlite3_prepare_v3(c->db, sql, -1, 0, &st, NULL);
	if (rc != SQLITE_OK) {
		snprintf(msg, msglen, "%s", sqlite3_errmsg(c->db));
		return 1;
	}
	while (st && (rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	snprintf(msg, msglen, "%s", st && rc != SQLITE_DONE ? sqlite3_errmsg(c->db) : "");
	sqlite3_finalize(st);
	return st && rc != SQLITE_DONE ? 2 : 0;
}

static int pragma_value(struct sq_conn *c, const char *sql)
{
	sqlite3_stmt *st;
	int v = -1;
	c->relaxed = true;
	assert_int_equal(sqlite3_prepare_v2(c->db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	c->relaxed = false;
	return v;
}

/* Layer 3 as every pooled connection is set up. */
static void test_connection_hardening(void **state)
{
	(void)state;
	struct cn_error err;
	void *h;
	int v = -1;
	assert_int_equal(open_source("demo.db", 3, 2000, true, &h, &err), CN_OK);
	struct sq_source *s = h;
	assert_int_equal(s->nconns, 3);
	for (uint32_t i = 0; i < s->nconns; i++) {
		struct sq_conn *c = &s->conns[i];
		assert_int_equal(sqlite3_db_readonly(c->db, "main"), 1);
		assert_int_equal(pragma_value(c, "PRAGMA query_only"), 1);
		assert_int_equal(pragma_value(c, "PRAGMA trusted_schema"), 0);
		assert_int_equal(sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, -1, &v), SQLITE_OK);
		assert_int_equal(v, 1);
		assert_int_equal(sqlite3_db_config(c->db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, -1, &v),
				 SQLITE_OK);
		assert_int_equal(v, 0);
		assert_int_equal(sqlite3_limit(c->db, SQLITE_LIMIT_ATTACHED, -1), 0);
		assert_int_equal(sqlite3_limit(c->db, SQLITE_LIMIT_LENGTH, -1), 4 * 1024 * 1024);
		assert_int_equal(sqlite3_limit(c->db, SQLITE_LIMIT_SQL_LENGTH, -1), 128 * 1024);
		assert_int_equal(sqlite3_limit(c->db, SQLITE_LIMIT_VARIABLE_NUMBER, -1), 999);
		assert_false(c->busy);
	}
	/* a transaction that got through would be rolled back before reuse */
	struct sq_conn *c = NULL;
	assert_int_equal(sq_pool_acquire(s, 100, &c, &err), CN_OK);
	assert_int_equal(sq_conn_exec_relaxed(c, "BEGIN; SELECT count(*) FROM orders;"), SQLITE_OK);
	assert_false(sqlite3_get_autocommit(c->db));
	sq_pool_release(s, c);
	assert_true(sqlite3_get_autocommit(c->db));
	E.api->close(h);
}

static void test_layers_alone(void **state)
{
	(void)state;
	char before_cwd[512], msg[512];
	struct snapshot before, after;
	struct cn_error err;
	void *h;
	assert_non_null(getcwd(before_cwd, sizeof before_cwd));
	assert_int_equal(chdir(E.cwd), 0);
	take_snapshot(&before);
	assert_int_equal(open_source("demo.db", 1, 2000, true, &h, &err), CN_OK);
	struct sq_conn *c = &((struct sq_source *)h)->conns[0];

	/* layer 2, the authorizer on a hardened connection, without the guard:
	 * it refuses all but what only the guard is for */
	for (size_t i = 0; i < sizeof attacks / sizeof attacks[0]; i++) {
		const struct attack *a = &attacks[i];
		int how = layer_run(c, a->sql, msg, sizeof msg);
		if (a->guard_only)
			continue;
		if (how == 0 || strstr(msg, "syntax error"))
			fail_msg("the authorizer alone let '%s' through (%d, '%s')", a->sql, how, msg);
		assert_true(sqlite3_get_autocommit(c->db));
	}
	/* VACUUM compiles, but its ATTACH is refused while it runs */
	assert_int_equal(layer_run(c, "VACUUM INTO 'pwned.db'", msg, sizeof msg), 2);
	assert_string_equal(c->deny, "ATTACH is not allowed: the connector is read-only");

	/* layer 1 alone, the authorizer off: writes behind WITH get past the
	 * keyword check, and sqlite3_stmt_readonly() refuses them */
	static const char *const hidden_writes[] = {
		"WITH x AS (SELECT 1) DELETE FROM orders",
		"WITH x AS (SELECT 1) INSERT INTO orders SELECT * FROM orders",
		"WITH x(id) AS (SELECT 1) UPDATE products SET price = 1 WHERE id IN (SELECT id FROM x)",
	};
	c->relaxed = true;
	for (size_t i = 0; i < sizeof hidden_writes / sizeof hidden_writes[0]; i++) {
		sqlite3_stmt *st = (sqlite3_stmt *)1;
		memset(&err, 0, sizeof err);
		assert_int_equal(sq_guard_prepare(c, hidden_writes[i], "1 ms", &st, &err), CN_EREJECTED);
		assert_null(st);
		assert_non_null(strstr(err.message, "the statement would write"));
		assert_int_equal(err.reject, CN_REJECT_WRITE);
	}
	c->relaxed = false;

	/* layer 3 alone: the authorizer off. Settings a statement may change
	 * (query_only, trusted_schema, a transaction) do change, so this runs
	 * last on a connection of its own; the file must stay as it was. */
	c->relaxed = true;
	for (size_t i = 0; i < sizeof attacks / sizeof attacks[0]; i++)
		layer_run(c, attacks[i].sql, msg, sizeof msg);
	static const char *const writes[] = {
		"PRAGMA query_only = 0",
		"INSERT INTO customers (name, email, country, created_at) VALUES ('x', 'y', 'US', 'z')",
		"UPDATE products SET price = 0",
		"DELETE FROM orders",
		"DROP TABLE order_items",
		"CREATE TABLE evil (x)",
		"PRAGMA journal_mode = WAL",
		"PRAGMA user_version = 7",
		"VACUUM",
		"VACUUM INTO 'pwned.db'",
		"ATTACH 'pwned.db' AS p",
	};
	for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
		int how = layer_run(c, writes[i], msg, sizeof msg);
		if (i > 0 && how == 0)
			fail_msg("the read-only connection alone let '%s' through", writes[i]);
	}
	/* what it refuses (SQLITE_READONLY) the driver reports as a write */
	sqlite3_stmt *ro = NULL;
	assert_int_equal(sqlite3_prepare_v2(c->db, "DELETE FROM orders", -1, &ro, NULL), SQLITE_OK);
	int src = sqlite3_step(ro);
	memset(&err, 0, sizeof err);
	assert_int_equal(sq_fail(c, src, "1 ms", &err), CN_EREJECTED);
	assert_int_equal(err.reject, CN_REJECT_WRITE);
	assert_non_null(strstr(err.message, "the connector is read-only"));
	sqlite3_finalize(ro);
	E.api->close(h);
	take_snapshot(&after);
	assert_int_equal(chdir(before_cwd), 0);
	assert_same_snapshot(&before, &after);
	free_snapshot(&before);
	free_snapshot(&after);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_module),
		cmocka_unit_test(test_attacks_refused),
		cmocka_unit_test(test_classes),
		cmocka_unit_test(test_layers_alone),
		cmocka_unit_test(test_connection_hardening),
		cmocka_unit_test(test_allowed),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_parameters),
		cmocka_unit_test(test_typed_cells),
		cmocka_unit_test(test_computed_column_types),
		cmocka_unit_test(test_column_origin),
		cmocka_unit_test(test_hidden_objects),
		cmocka_unit_test(test_remembered_check),
		cmocka_unit_test(test_audit),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_sink_full),
		cmocka_unit_test(test_pool_exhaustion),
		cmocka_unit_test(test_introspect),
		cmocka_unit_test(test_open_errors),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
