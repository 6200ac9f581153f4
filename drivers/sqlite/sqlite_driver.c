/*
 * sqlite_driver.c - the SQLite driver of interactor-connector.
 *
 * Read-only in layers, each of which holds on its own:
 *  1. The guard (check, and again in execute): exactly one statement that
 *     starts with SELECT, WITH, VALUES, EXPLAIN [QUERY PLAN] or an allowed
 *     PRAGMA, compiled by SQLite itself, with only whitespace and comments
 *     after it, read-only per sqlite3_stmt_readonly(), and using no other
 *     parameters than $1..$n.
 *  2. An authorizer on every pooled connection that allows reads, functions
 *     not on a deny list and a few introspection pragmas, and denies all else
 *     (ATTACH, transactions, writes, schema changes, SQLite's internal tables,
 *     hidden tables); hidden columns read as NULL.
 *  3. The connection: SQLITE_OPEN_READONLY, PRAGMA query_only, defensive
 *     mode, no extension loading, untrusted schema, no attached databases,
 *     bounded value and statement sizes.
 * Time: a progress handler stops a statement at its deadline or on cancel().
 *
 * Threads: connections are opened SQLITE_OPEN_NOMUTEX and used by one thread
 * at a time, checked out of the source's pool. Introspection and ping use a
 * connection of their own, so they never wait for the pool.
 */
#include <sqlite3.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "connector_driver.h"
#include "../common/verdicts.h"

#define SQ_VERSION "0.1.0"
#define SQ_MAX_POOL 64u
#define SQ_MAX_WAIT_MS 2000u          /* longest wait for a free connection */
#define SQ_DEFAULT_TIMEOUT_MS 10000u  /* when neither source nor query sets one */
#define SQ_PROGRESS_OPS 100           /* VM steps between deadline checks */
/*
 * Longest string or blob, in bytes. It bounds every value a query can build
 * (printf('%.*c', n, 'x'), replace(), group_concat(), randomblob(n),
 * zeroblob(n)), so one VM step cannot run long or eat memory: this is why
 * randomblob and zeroblob are allowed. 4 MiB keeps a step under ~20 ms; answers
 * are capped far below it (64 KB), so no useful value is lost.
 */
#define SQ_LIMIT_LENGTH (4 * 1024 * 1024)
#define SQ_LIMIT_SQL_LENGTH (128 * 1024) /* the HTTP body cap is 128 KiB */
#define SQ_MAX_PARAMS 999
#define SQ_NAME_MAX 256

enum sq_stop {
	STOP_NONE,
	STOP_TIMEOUT,
	STOP_CANCEL,
};

/* The introspection pragmas a user query may run, with a table or index name. */
enum sq_pragma {
	PRAGMA_NONE,
	PRAGMA_TABLE_INFO,
	PRAGMA_TABLE_XINFO,
	PRAGMA_INDEX_LIST,
	PRAGMA_INDEX_INFO,
	PRAGMA_INDEX_XINFO,
	PRAGMA_FOREIGN_KEY_LIST,
};

static const struct {
	const char *name;
	enum sq_pragma kind;
	bool index_arg; /* the argument names an index, not a table */
} sq_pragmas[] = {
	{"table_info", PRAGMA_TABLE_INFO, false},
	{"table_xinfo", PRAGMA_TABLE_XINFO, false},
	{"index_list", PRAGMA_INDEX_LIST, false},
	{"index_info", PRAGMA_INDEX_INFO, true},
	{"index_xinfo", PRAGMA_INDEX_XINFO, true},
	{"foreign_key_list", PRAGMA_FOREIGN_KEY_LIST, false},
};

/*
 * Functions a query may never call: extension loading, file access (the
 * shell's functions, denied in case a build registers them), raw page and
 * pointer access, and fts/rtree internals that parse untrusted blobs.
 * Besides these, every sqlite_* function except sqlite_version() and
 * sqlite_source_id() is denied.
 */
static const char *const sq_denied_functions[] = {
	"load_extension", "readfile", "writefile", "edit", "fsdir", "lsmode",
	"fts3_tokenizer", "fts5", "rtreenode", "rtreedepth", "rtreecheck",
	"zipfile", "sqlar_compress", "sqlar_uncompress", "eval", "sha3_query",
	"shell_escape_crnl", "shell_idquote", "icu_load_collation",
};

/* An index of the database: what index pragmas need to hide hidden columns. */
struct sq_index {
	char *name;
	char *table;
	char **columns; /* NULL entries for expressions */
	size_t ncolumns;
};

struct sq_source;

/* One SQLite connection and the state its callbacks read. */
struct sq_conn {
	struct sq_source *src; /* borrowed */
	sqlite3 *db;
	bool busy;             /* checked out; guarded by src->pool_mu */
	bool relaxed;          /* the driver's own statements: the authorizer allows all */
	unsigned epoch;        /* src->cancel_epoch when the current request began */
	int64_t deadline_ns;   /* CLOCK_MONOTONIC; 0: none */
	enum sq_stop stop;     /* why the progress handler stopped the statement */
	char deny[320];        /* the authorizer's first reason to deny, "" when none */
	enum cn_reject deny_why; /* and its class */
	enum sq_pragma pragma; /* an allowed pragma the statement runs */
	char pragma_table[SQ_NAME_MAX]; /* the table that pragma is about */
	unsigned hidden_reads; /* hidden columns the statement being prepared reads (as NULL) */
	bool probe_hidden;     /* prepare only for metadata: hidden columns keep their origin */
};

struct sq_source {
	char *name;
	char *path; /* the database file */
	char *uri;  /* what sqlite3_open_v2 opens */
	uint32_t timeout_ms;
	void *host_ctx;
	int (*is_hidden)(void *host_ctx, const char *schema, const char *table, const char *column);

	atomic_uint cancel_epoch; /* cancel() bumps it; statements begun before stop */

	pthread_mutex_t pool_mu;
	pthread_cond_t pool_cv; /* CLOCK_MONOTONIC */
	uint32_t pool_waiting;  /* requests waiting for a connection; under pool_mu */
	struct sq_conn *conns;
	uint32_t nconns;

	pthread_mutex_t cache_mu; /* guards indexes */
	struct sq_index *indexes;
	size_t nindexes;

	/* texts check() accepted: a repeat skips the pool and the prepare.
	 * execute() guards every text again as it prepares it, so a remembered
	 * acceptance never lets anything past that the guard would stop. */
	struct verdicts verdicts;
};

/* ---------------------------------------------------------------- helpers */

static int64_t sq_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint32_t sq_budget_ms(const struct sq_source *s, uint32_t requested)
{
	if (requested)
		return requested;
	return s->timeout_ms ? s->timeout_ms : SQ_DEFAULT_TIMEOUT_MS;
}

static bool sq_is_internal(const char *name)
{
	return name && strncasecmp(name, "sqlite_", 7) == 0;
}

static bool sq_hides(const struct sq_source *s, const char *table, const char *column)
{
	if (!s->is_hidden || !table)
		return false;
	return s->is_hidden(s->host_ctx, NULL, table, column) != 0;
}

/* A short, printable excerpt of text for error messages. */
static void sq_excerpt(const char *text, char *out, size_t outlen)
{
	size_t max = outlen > 44 ? 40 : outlen - 4, n = 0;
	while (text[n] && n < max) {
		unsigned char ch = (unsigned char)text[n];
		out[n] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
		n++;
	}
	if (text[n]) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
}

/* Skip whitespace and SQL comments; an unterminated block comment runs to the end. */
static const char *sq_skip_blank(const char *p)
{
	for (;;) {
		while (*p && isspace((unsigned char)*p))
			p++;
		if (p[0] == '-' && p[1] == '-') {
			while (*p && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			const char *end = strstr(p + 2, "*/");
			p = end ? end + 2 : p + strlen(p);
		} else {
			return p;
		}
	}
}

/* Copy the word at p (letters and _) into out; returns the text after it. */
static const char *sq_word(const char *p, char *out, size_t outlen)
{
	size_t n = 0;
	while ((isalpha((unsigned char)*p) || *p == '_') && n + 1 < outlen)
		out[n++] = *p++;
	out[n] = '\0';
	while (isalpha((unsigned char)*p) || *p == '_')
		p++;
	return p;
}

static bool sq_word_in(const char *w, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(w, list[i]) == 0)
			return true;
	return false;
}

struct sq_strlist {
	char **v;
	size_t n, cap;
};

static int sq_strlist_push(struct sq_strlist *l, const char *s)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		char **v = realloc(l->v, cap * sizeof *v);
		if (!v)
			return CN_ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	char *copy = NULL;
	if (s && !(copy = strdup(s)))
		return CN_ENOMEM;
	l->v[l->n++] = copy;
	return CN_OK;
}

static void sq_strlist_clear(struct sq_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

/* ------------------------------------------------------------ authorizer */

static int sq_deny(struct sq_conn *c, enum cn_reject why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int sq_deny(struct sq_conn *c, enum cn_reject why, const char *fmt, ...)
{
	if (!c->deny[0]) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->deny, sizeof c->deny, fmt, ap);
		va_end(ap);
		c->deny_why = why;
	}
	return SQLITE_DENY;
}

static const char *sq_action_name(int action)
{
	switch (action) {
	case SQLITE_CREATE_INDEX: return "CREATE INDEX";
	case SQLITE_CREATE_TABLE: return "CREATE TABLE";
	case SQLITE_CREATE_TEMP_INDEX: return "CREATE TEMP INDEX";
	case SQLITE_CREATE_TEMP_TABLE: return "CREATE TEMP TABLE";
	case SQLITE_CREATE_TEMP_TRIGGER: return "CREATE TEMP TRIGGER";
	case SQLITE_CREATE_TEMP_VIEW: return "CREATE TEMP VIEW";
	case SQLITE_CREATE_TRIGGER: return "CREATE TRIGGER";
	case SQLITE_CREATE_VIEW: return "CREATE VIEW";
	case SQLITE_CREATE_VTABLE: return "CREATE VIRTUAL TABLE";
	case SQLITE_DELETE: return "DELETE";
	case SQLITE_DROP_INDEX: return "DROP INDEX";
	case SQLITE_DROP_TABLE: return "DROP TABLE";
	case SQLITE_DROP_TEMP_INDEX: return "DROP TEMP INDEX";
	case SQLITE_DROP_TEMP_TABLE: return "DROP TEMP TABLE";
	case SQLITE_DROP_TEMP_TRIGGER: return "DROP TEMP TRIGGER";
	case SQLITE_DROP_TEMP_VIEW: return "DROP TEMP VIEW";
	case SQLITE_DROP_TRIGGER: return "DROP TRIGGER";
	case SQLITE_DROP_VIEW: return "DROP VIEW";
	case SQLITE_DROP_VTABLE: return "DROP VIRTUAL TABLE";
	case SQLITE_INSERT: return "INSERT";
	case SQLITE_UPDATE: return "UPDATE";
	case SQLITE_ALTER_TABLE: return "ALTER TABLE";
	case SQLITE_REINDEX: return "REINDEX";
	case SQLITE_ANALYZE: return "ANALYZE";
	case SQLITE_COPY: return "COPY";
	default: return "this statement";
	}
}

static int sq_auth_read(struct sq_conn *c, const char *table, const char *column)
{
	struct sq_source *s = c->src;
	if (!table)
		return sq_deny(c, CN_REJECT_DENIED, "reading an unnamed table is not allowed");
	if (sq_is_internal(table))
		return sq_deny(c, CN_REJECT_DENIED, "table '%s' is not available: SQLite's internal tables "
			       "cannot be queried; use describe_schema to see the tables", table);
	if (strncasecmp(table, "pragma_", 7) == 0 || strcasecmp(table, "dbstat") == 0)
		return sq_deny(c, CN_REJECT_DENIED, "table-valued function '%s' is not available: use "
			       "PRAGMA table_info(name) or describe_schema", table);
	if (sq_hides(s, table, NULL))
		return sq_deny(c, CN_REJECT_HIDDEN, "table '%s' is not available", table);
	if (column && *column && sq_hides(s, table, column)) {
		c->hidden_reads++;
		/* The column reads as NULL; a probe statement, never stepped, keeps
		 * it so that its result columns report their origin for masking. */
		return c->probe_hidden ? SQLITE_OK : SQLITE_IGNORE;
	}
	return SQLITE_OK;
}

static int sq_auth_function(struct sq_conn *c, const char *name)
{
	if (!name)
		return SQLITE_OK;
	size_t n = sizeof sq_denied_functions / sizeof sq_denied_functions[0];
	bool internal = sq_is_internal(name) && strcasecmp(name, "sqlite_version") != 0 &&
			strcasecmp(name, "sqlite_source_id") != 0;
	if (internal || sq_word_in(name, sq_denied_functions, n))
		return sq_deny(c, CN_REJECT_DENIED, "function %s() is not allowed", name);
	return SQLITE_OK;
}

/* Copy the table an index belongs to into out; false when the index is unknown. */
static bool sq_index_table(struct sq_source *s, const char *index, char *out, size_t outlen)
{
	bool found = false;
	pthread_mutex_lock(&s->cache_mu);
	for (size_t i = 0; i < s->nindexes && !found; i++) {
		if (strcasecmp(s->indexes[i].name, index) == 0) {
			snprintf(out, outlen, "%s", s->indexes[i].table);
			found = true;
		}
	}
	pthread_mutex_unlock(&s->cache_mu);
	return found;
}

/* A PRAGMA off the list: given a value it sets something, a write, unless it
 * is a check of a table; without one it reads a setting or a list, denied,
 * unless it does work that writes the file. */
static enum cn_reject sq_pragma_class(const char *name, const char *arg)
{
	static const char *const checks[] = {"integrity_check", "quick_check", "foreign_key_check",
					     "table_list"};
	static const char *const writers[] = {"optimize", "wal_checkpoint", "incremental_vacuum"};
	if (name && sq_word_in(name, writers, sizeof writers / sizeof writers[0]))
		return CN_REJECT_WRITE;
	if (name && arg && !sq_word_in(name, checks, sizeof checks / sizeof checks[0]))
		return CN_REJECT_WRITE;
	return CN_REJECT_DENIED;
}

static int sq_auth_pragma(struct sq_conn *c, const char *name, const char *arg)
{
	size_t i, n = sizeof sq_pragmas / sizeof sq_pragmas[0];
	for (i = 0; i < n; i++)
		if (name && strcasecmp(name, sq_pragmas[i].name) == 0)
			break;
	if (i == n)
		return sq_deny(c, sq_pragma_class(name, arg), "PRAGMA %s is not allowed: the connector is "
			       "read-only; only PRAGMA table_info, table_xinfo, index_list, index_info, "
			       "index_xinfo and foreign_key_list (with a table or index name) are",
			       name ? name : "");
	if (!arg || !*arg)
		return sq_deny(c, CN_REJECT_SYNTAX, "PRAGMA %s needs a %s name, as in PRAGMA %s(name)", name,
			       sq_pragmas[i].index_arg ? "index" : "table", name);
	if (strlen(arg) >= SQ_NAME_MAX)
		return sq_deny(c, CN_REJECT_LIMIT, "PRAGMA %s: the name is too long", name);
	const char *table = arg;
	if (sq_pragmas[i].index_arg) {
		if (!sq_index_table(c->src, arg, c->pragma_table, sizeof c->pragma_table)) /* no such index */
			return sq_deny(c, CN_REJECT_SYNTAX, "index '%s' is not available", arg);
		table = c->pragma_table;
	} else {
		snprintf(c->pragma_table, sizeof c->pragma_table, "%s", arg);
	}
	if (sq_is_internal(table) || sq_hides(c->src, table, NULL))
		return sq_deny(c, sq_is_internal(table) ? CN_REJECT_DENIED : CN_REJECT_HIDDEN,
			       "table '%s' is not available", table);
	c->pragma = sq_pragmas[i].kind;
	return SQLITE_OK;
}

/* Runs while SQLite compiles a statement (never while it steps one). */
static int sq_authorize(void *ud, int action, const char *a1, const char *a2, const char *a3,
			const char *a4)
{
	struct sq_conn *c = ud;
	(void)a3;
	(void)a4;
	if (c->relaxed)
		return SQLITE_OK;
	switch (action) {
	case SQLITE_SELECT:
	case SQLITE_RECURSIVE:
		return SQLITE_OK;
	case SQLITE_READ:
		return sq_auth_read(c, a1, a2);
	case SQLITE_FUNCTION:
		return sq_auth_function(c, a2);
	case SQLITE_PRAGMA:
		return sq_auth_pragma(c, a1, a2);
	case SQLITE_ATTACH:
		return sq_deny(c, CN_REJECT_WRITE, "ATTACH is not allowed: the connector is read-only");
	case SQLITE_DETACH:
		return sq_deny(c, CN_REJECT_WRITE, "DETACH is not allowed: the connector is read-only");
	case SQLITE_TRANSACTION:
		return sq_deny(c, CN_REJECT_WRITE,
			       "%s is not allowed: each query runs on its own in a read-only connection",
			       a1 ? a1 : "a transaction");
	case SQLITE_SAVEPOINT:
		return sq_deny(c, CN_REJECT_WRITE, "SAVEPOINT and RELEASE are not allowed: each query runs "
			       "on its own in a read-only connection");
	case SQLITE_UPDATE:
		/* Also what an eponymous virtual table's constructor asks for on
		 * sqlite_master; only json_each and json_tree are built at open. */
		if (sq_is_internal(a1))
			return sq_deny(c, CN_REJECT_DENIED, "this table-valued function or virtual table "
				       "is not available: only json_each() and json_tree() are");
		return sq_deny(c, CN_REJECT_WRITE,
			       "UPDATE of '%s' is not allowed: the connector is read-only", a1 ? a1 : "");
	case SQLITE_INSERT:
	case SQLITE_DELETE:
		if (sq_is_internal(a1)) /* CREATE and DROP write sqlite_master */
			return sq_deny(c, CN_REJECT_WRITE,
				       "changing the schema is not allowed: the connector is read-only");
		return sq_deny(c, CN_REJECT_WRITE, "%s on '%s' is not allowed: the connector is read-only",
			       sq_action_name(action), a1 ? a1 : "");
	default:
		return sq_deny(c, CN_REJECT_WRITE, "%s is not allowed: the connector is read-only",
			       sq_action_name(action));
	}
}

static int sq_progress(void *ud)
{
	struct sq_conn *c = ud;
	if (c->epoch != atomic_load(&c->src->cancel_epoch)) {
		c->stop = STOP_CANCEL;
		return 1;
	}
	if (c->deadline_ns && sq_now_ns() >= c->deadline_ns) {
		c->stop = STOP_TIMEOUT;
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------ connections */

/* Start a request on c: budget_ms 0 means no deadline. */
static void sq_conn_begin(struct sq_conn *c, unsigned epoch, uint32_t budget_ms)
{
	c->epoch = epoch;
	c->stop = STOP_NONE;
	c->deadline_ns = budget_ms ? sq_now_ns() + (int64_t)budget_ms * 1000000 : 0;
	c->deny[0] = '\0';
	c->pragma = PRAGMA_NONE;
	c->pragma_table[0] = '\0';
	sqlite3_busy_timeout(c->db, budget_ms ? (int)(budget_ms > INT_MAX ? INT_MAX : budget_ms) : 0);
}

static int sq_conn_exec_relaxed(struct sq_conn *c, const char *sql)
{
	c->relaxed = true;
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
	c->relaxed = false;
	return rc;
}

static void sq_conn_close(struct sq_conn *c)
{
	if (c->db)
		sqlite3_close_v2(c->db);
	c->db = NULL;
}

/* Open and harden one connection to s's file. */
static int sq_conn_open(struct sq_source *s, struct sq_conn *c, struct cn_error *err)
{
	memset(c, 0, sizeof *c);
	c->src = s;
	c->epoch = atomic_load(&s->cancel_epoch);
	int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
	int rc = sqlite3_open_v2(s->uri, &c->db, flags, NULL);
	if (rc != SQLITE_OK) {
		cn_error_set(err, CN_EUNAVAILABLE, "sqlite source '%s': cannot open %s: %s", s->name,
			     s->path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
		sq_conn_close(c);
		return CN_EUNAVAILABLE;
	}
	int off = 0;
	bool ok = sqlite3_db_config(c->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL) == SQLITE_OK &&
		  sqlite3_db_config(c->db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, &off) == SQLITE_OK &&
		  sqlite3_db_config(c->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, &off) == SQLITE_OK &&
		  sqlite3_db_config(c->db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, &off) == SQLITE_OK;
	if (!ok) {
		sq_conn_close(c);
		return cn_error_set(err, CN_EINTERNAL,
				    "sqlite source '%s': this SQLite library refused a hardening "
				    "setting (defensive mode, extension loading, trusted schema, "
				    "triggers)", s->name);
	}
	sqlite3_limit(c->db, SQLITE_LIMIT_ATTACHED, 0);
	sqlite3_limit(c->db, SQLITE_LIMIT_LENGTH, SQ_LIMIT_LENGTH);
	sqlite3_limit(c->db, SQLITE_LIMIT_SQL_LENGTH, SQ_LIMIT_SQL_LENGTH);
	sqlite3_limit(c->db, SQLITE_LIMIT_VARIABLE_NUMBER, SQ_MAX_PARAMS);
	sqlite3_set_authorizer(c->db, sq_authorize, c);
	sqlite3_progress_handler(c->db, SQ_PROGRESS_OPS, sq_progress, c);
	/* query_only, a probe that the file is a database, and the two eponymous
	 * virtual tables user queries may read: built now, while the authorizer
	 * is relaxed, because their constructors touch sqlite_master. */
	rc = sq_conn_exec_relaxed(c, "PRAGMA query_only = 1;"
				     "SELECT count(*) FROM sqlite_schema;"
				     "SELECT count(*) FROM json_each('[]');"
				     "SELECT count(*) FROM json_tree('[]');");
	if (rc != SQLITE_OK) {
		cn_error_set(err, CN_EUNAVAILABLE, "sqlite source '%s': cannot read %s: %s", s->name,
			     s->path, sqlite3_errmsg(c->db));
		sq_conn_close(c);
		return CN_EUNAVAILABLE;
	}
	return CN_OK;
}

/* A free pooled connection, marked busy, or NULL; pool_mu held. */
static struct sq_conn *sq_pool_take(struct sq_source *s)
{
	for (uint32_t i = 0; i < s->nconns; i++) {
		if (!s->conns[i].busy) {
			s->conns[i].busy = true;
			return &s->conns[i];
		}
	}
	return NULL;
}

/* Take a free pooled connection, waiting at most wait_ms. */
static int sq_pool_acquire(struct sq_source *s, uint32_t wait_ms, struct sq_conn **out,
			   struct cn_error *err)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += wait_ms / 1000;
	until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&s->pool_mu);
	while (!(*out = sq_pool_take(s))) {
		s->pool_waiting++;
		int rc = pthread_cond_timedwait(&s->pool_cv, &s->pool_mu, &until);
		s->pool_waiting--;
		if (rc == ETIMEDOUT) {
			*out = sq_pool_take(s);
			break;
		}
	}
	pthread_mutex_unlock(&s->pool_mu);
	if (!*out)
		return cn_error_set(err, CN_EBUSY,
				    "sqlite source '%s': all %u connections are busy; retry shortly",
				    s->name, s->nconns);
	return CN_OK;
}

static void sq_pool_release(struct sq_source *s, struct sq_conn *c)
{
	c->deadline_ns = 0;
	/* the authorizer refuses BEGIN; should one ever get through, it must not
	 * hold a read lock on the file for the next request */
	if (!sqlite3_get_autocommit(c->db))
		sq_conn_exec_relaxed(c, "ROLLBACK");
	pthread_mutex_lock(&s->pool_mu);
	c->busy = false;
	pthread_cond_signal(&s->pool_cv);
	pthread_mutex_unlock(&s->pool_mu);
}

/* ---------------------------------------------------------------- dsn */

static bool sq_uri_unreserved(unsigned char ch)
{
	return isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '/';
}

/* Percent-decode in[0..len) into a new string; NULL on a bad escape or %00. */
static char *sq_uri_decode(const char *in, size_t len)
{
	char *out = malloc(len + 1);
	size_t n = 0;
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (in[i] != '%') {
			out[n++] = in[i];
			continue;
		}
		if (i + 2 >= len) {
			free(out);
			return NULL;
		}
		char hex[3] = {in[i + 1], in[i + 2], '\0'};
		char *end;
		long v = strtol(hex, &end, 16);
		if (*end || !isxdigit((unsigned char)hex[0]) || v == 0) {
			free(out);
			return NULL;
		}
		out[n++] = (char)v;
		i += 2;
	}
	out[n] = '\0';
	return out;
}

/* Check the query part of a file: URI; only options that keep it read-only pass. */
static int sq_uri_check_options(const struct cn_source_info *src, const char *q, struct cn_error *err)
{
	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', len);
		size_t klen = eq ? (size_t)(eq - q) : len;
		const char *v = eq ? eq + 1 : q + len;
		size_t vlen = (size_t)(q + len - v);
#define SQ_OPT(k, val) (klen == strlen(k) && strncmp(q, k, klen) == 0 && \
			vlen == strlen(val) && strncmp(v, val, vlen) == 0)
		bool ok = len == 0 || SQ_OPT("mode", "ro") || SQ_OPT("immutable", "1") ||
			  SQ_OPT("immutable", "0") || SQ_OPT("nolock", "1") || SQ_OPT("nolock", "0") ||
			  SQ_OPT("cache", "private");
#undef SQ_OPT
		if (!ok)
			return cn_error_set(err, CN_ECONFIG,
					    "sqlite source '%s': URI option '%.*s' in dsn is not "
					    "supported; allowed are mode=ro, immutable=0|1, nolock=0|1 "
					    "and cache=private",
					    src->name, (int)(len > 64 ? 64 : len), q);
		q = amp ? amp + 1 : NULL;
	}
	return CN_OK;
}

/* Split a dsn into a decoded file path and URI options (both malloc'ed). */
static int sq_dsn_split(const struct cn_source_info *src, char **path, char **options,
			struct cn_error *err)
{
	const char *dsn = src->dsn;
	*path = *options = NULL;
	if (strncmp(dsn, "file:", 5) != 0) {
		*path = strdup(dsn);
		*options = strdup("");
	} else {
		const char *p = dsn + 5;
		if (p[0] == '/' && p[1] == '/') {
			const char *slash = strchr(p + 2, '/');
			size_t alen = slash ? (size_t)(slash - p - 2) : strlen(p + 2);
			if (alen && !(alen == 9 && strncmp(p + 2, "localhost", 9) == 0))
				return cn_error_set(err, CN_ECONFIG,
						    "sqlite source '%s': dsn URI names host '%.*s'; "
						    "only local files can be opened",
						    src->name, (int)(alen > 64 ? 64 : alen), p + 2);
			p += 2 + alen;
		}
		size_t plen = strcspn(p, "?#");
		*path = sq_uri_decode(p, plen);
		if (!*path)
			return cn_error_set(err, CN_ECONFIG,
					    "sqlite source '%s': dsn URI has a bad %%-escape in its "
					    "path", src->name);
		const char *q = p[plen] == '?' ? p + plen + 1 : "";
		*options = strndup(q, strcspn(q, "#"));
	}
	if (!*path || !*options) {
		free(*path);
		free(*options);
		*path = *options = NULL;
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	return CN_OK;
}

/* Resolve a relative path against base_dir (or the working directory). */
static char *sq_path_resolve(const char *base_dir, const char *path)
{
	char cwd[PATH_MAX];
	if (path[0] == '/')
		return strdup(path);
	if (!base_dir || !*base_dir)
		base_dir = getcwd(cwd, sizeof cwd) ? cwd : ".";
	size_t len = strlen(base_dir) + strlen(path) + 2;
	char *out = malloc(len);
	if (out)
		snprintf(out, len, "%s%s%s", base_dir,
			 base_dir[strlen(base_dir) - 1] == '/' ? "" : "/", path);
	return out;
}

static char *sq_uri_build(const char *path, const char *options)
{
	size_t len = 5 + strlen(path) * 3 + 1 + strlen(options) + 1;
	char *uri = malloc(len);
	if (!uri)
		return NULL;
	size_t n = (size_t)snprintf(uri, len, "file:");
	for (const char *p = path; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (sq_uri_unreserved(ch))
			uri[n++] = (char)ch;
		else
			n += (size_t)snprintf(uri + n, len - n, "%%%02X", ch);
	}
	snprintf(uri + n, len - n, "%s%s", *options ? "?" : "", options);
	return uri;
}

/* Work out s->path and s->uri from the source's dsn. */
static int sq_dsn_resolve(const struct cn_source_info *src, struct sq_source *s,
			  struct cn_error *err)
{
	char *path = NULL, *options = NULL;
	if (!src->dsn || !*src->dsn)
		return cn_error_set(err, CN_ECONFIG,
				    "sqlite source '%s': dsn is empty; set it to the path of the "
				    "database file", src->name);
	int rc = sq_dsn_split(src, &path, &options, err);
	if (rc)
		return rc;
	rc = sq_uri_check_options(src, options, err);
	if (rc)
		goto out;
	if (!*path || strcmp(path, ":memory:") == 0) {
		rc = cn_error_set(err, CN_ECONFIG,
				  "sqlite source '%s': dsn '%s' names no database file; an in-memory "
				  "database has no data", src->name, src->dsn);
		goto out;
	}
	s->path = sq_path_resolve(src->base_dir, path);
	if (!s->path || !(s->uri = sq_uri_build(s->path, options))) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto out;
	}
	struct stat st;
	if (stat(s->path, &st) != 0) {
		rc = cn_error_set(err, CN_EUNAVAILABLE,
				  "sqlite source '%s': database file %s %s (dsn '%s'); the driver "
				  "opens existing files read-only and never creates one",
				  src->name, s->path,
				  errno == ENOENT ? "does not exist" : strerror(errno), src->dsn);
		goto out;
	}
	if (!S_ISREG(st.st_mode))
		rc = cn_error_set(err, CN_ECONFIG, "sqlite source '%s': %s is not a regular file",
				  src->name, s->path);
out:
	free(path);
	free(options);
	return rc;
}

/* ------------------------------------------------------------ index cache */

static void sq_indexes_free(struct sq_index *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].table);
		for (size_t k = 0; k < v[i].ncolumns; k++)
			free(v[i].columns[k]);
		free(v[i].columns);
	}
	free(v);
}

static int sq_index_add_column(struct sq_index *ix, const char *column)
{
	char **cols = realloc(ix->columns, (ix->ncolumns + 1) * sizeof *cols);
	if (!cols)
		return CN_ENOMEM;
	ix->columns = cols;
	cols[ix->ncolumns] = NULL;
	if (column && !(cols[ix->ncolumns] = strdup(column)))
		return CN_ENOMEM;
	ix->ncolumns++;
	return CN_OK;
}

/* Read every index of the main database with c (relaxed) into s's cache. */
static int sq_cache_load(struct sq_source *s, struct sq_conn *c, struct cn_error *err)
{
	static const char sql[] =
		"SELECT il.name, t.name, ii.name FROM pragma_table_list AS t "
		"JOIN pragma_index_list(t.name, 'main') AS il "
		"JOIN pragma_index_info(il.name, 'main') AS ii "
		"WHERE t.schema = 'main' AND t.type = 'table' ORDER BY il.name, ii.seqno";
	struct sq_index *v = NULL;
	size_t n = 0;
	sqlite3_stmt *st = NULL;
	int rc = CN_OK;
	bool relaxed = c->relaxed;
	c->relaxed = true;
	int src = sqlite3_prepare_v3(c->db, sql, -1, 0, &st, NULL);
	while (src == SQLITE_OK || src == SQLITE_ROW) {
		if ((src = sqlite3_step(st)) != SQLITE_ROW)
			break;
		const char *name = (const char *)sqlite3_column_text(st, 0);
		const char *table = (const char *)sqlite3_column_text(st, 1);
		const char *column = (const char *)sqlite3_column_text(st, 2);
		if (!name || !table)
			continue;
		if (n == 0 || strcmp(v[n - 1].name, name) != 0) {
			struct sq_index *nv = realloc(v, (n + 1) * sizeof *nv);
			if (!nv) {
				rc = CN_ENOMEM;
				break;
			}
			v = nv;
			memset(&v[n], 0, sizeof v[n]);
			n++;
			v[n - 1].name = strdup(name);
			v[n - 1].table = strdup(table);
			if (!v[n - 1].name || !v[n - 1].table) {
				rc = CN_ENOMEM;
				break;
			}
		}
		if ((rc = sq_index_add_column(&v[n - 1], column)) != CN_OK)
			break;
	}
	c->relaxed = relaxed;
	if (rc == CN_OK && src != SQLITE_DONE)
		rc = cn_error_set(err, CN_EQUERY, "sqlite source '%s': reading indexes: %s", s->name,
				  sqlite3_errmsg(c->db));
	else if (rc == CN_ENOMEM)
		cn_error_set(err, CN_ENOMEM, "out of memory");
	sqlite3_finalize(st);
	if (rc) {
		sq_indexes_free(v, n);
		return rc;
	}
	pthread_mutex_lock(&s->cache_mu);
	struct sq_index *old = s->indexes;
	size_t nold = s->nindexes;
	s->indexes = v;
	s->nindexes = n;
	pthread_mutex_unlock(&s->cache_mu);
	sq_indexes_free(old, nold);
	return CN_OK;
}

/* Whether an index touches a hidden column (or its table is hidden);
 * unknown indexes count as hidden. */
static bool sq_index_hidden(struct sq_source *s, const char *index)
{
	struct sq_strlist cols = {0};
	char table[SQ_NAME_MAX] = "";
	bool found = false, hidden = false;
	pthread_mutex_lock(&s->cache_mu);
	for (size_t i = 0; i < s->nindexes && !found; i++) {
		struct sq_index *ix = &s->indexes[i];
		if (strcasecmp(ix->name, index) != 0)
			continue;
		found = true;
		snprintf(table, sizeof table, "%s", ix->table);
		for (size_t k = 0; k < ix->ncolumns && !hidden; k++)
			if (ix->columns[k] && sq_strlist_push(&cols, ix->columns[k]) != CN_OK)
				hidden = true; /* out of memory: err on the safe side */
	}
	pthread_mutex_unlock(&s->cache_mu);
	/* is_hidden is the host's callback: never call it holding cache_mu */
	hidden = hidden || !found || sq_hides(s, table, NULL);
	for (size_t k = 0; k < cols.n && !hidden; k++)
		hidden = sq_hides(s, table, cols.v[k]);
	sq_strlist_clear(&cols);
	return hidden;
}

/* Whether a row of an allowed pragma names something hidden. */
static bool sq_pragma_row_hidden(struct sq_conn *c, sqlite3_stmt *st)
{
	struct sq_source *s = c->src;
#define COL(i) ((const char *)sqlite3_column_text(st, (i)))
	switch (c->pragma) {
	case PRAGMA_TABLE_INFO:
	case PRAGMA_TABLE_XINFO:
		return COL(1) && sq_hides(s, c->pragma_table, COL(1));
	case PRAGMA_INDEX_INFO:
	case PRAGMA_INDEX_XINFO:
		return COL(2) && sq_hides(s, c->pragma_table, COL(2));
	case PRAGMA_INDEX_LIST:
		return !COL(1) || sq_index_hidden(s, COL(1));
	case PRAGMA_FOREIGN_KEY_LIST: {
		char ref[SQ_NAME_MAX];
		snprintf(ref, sizeof ref, "%s", COL(2) ? COL(2) : "");
		return sq_is_internal(ref) || sq_hides(s, ref, NULL) ||
		       (COL(3) && sq_hides(s, c->pragma_table, COL(3))) ||
		       (COL(4) && sq_hides(s, ref, COL(4)));
	}
	case PRAGMA_NONE:
		break;
	}
#undef COL
	return false;
}

/* ------------------------------------------------------------ the guard */

static const char sq_allowed_hint[] =
	"the connector only runs read-only queries: one SELECT, WITH ... SELECT, VALUES or "
	"EXPLAIN [QUERY PLAN] statement (or PRAGMA table_info and similar)";

#define SQ_NOT_A_STATEMENT 1 /* sq_guard_keyword: no statement keyword at all */

static const char *const sq_txn_words[] = {"BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT",
					   "RELEASE"};
static const char *const sq_write_words[] = {"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE",
					     "DROP", "ALTER", "REINDEX", "ANALYZE", "VACUUM"};

/* A statement keyword of a statement that writes (or of a transaction). */
static bool sq_writes(const char *w)
{
	return sq_word_in(w, sq_txn_words, sizeof sq_txn_words / sizeof sq_txn_words[0]) ||
	       sq_word_in(w, sq_write_words, sizeof sq_write_words / sizeof sq_write_words[0]) ||
	       strcasecmp(w, "ATTACH") == 0 || strcasecmp(w, "DETACH") == 0;
}

/* Layer 1a: the statement must begin with a keyword of a read-only statement.
 * Returns CN_OK, CN_EREJECTED, or SQ_NOT_A_STATEMENT when the text does not
 * start with any statement keyword (SQLite then explains the syntax error). */
static int sq_guard_keyword(const char *sql, struct cn_error *err)
{
	static const char *const allowed[] = {"SELECT", "WITH", "VALUES", "PRAGMA"};
	static const char *const inner[] = {"SELECT", "WITH", "VALUES"};
	char w[24];
	const char *p = sq_skip_blank(sql);
	while (*p == ';')
		p = sq_skip_blank(p + 1);
	if (!*p)
		return cn_error_reject(err, CN_REJECT_STATEMENTS,
				       "the query is empty: send one SELECT statement");
	p = sq_word(p, w, sizeof w);
	if (sq_word_in(w, allowed, 4))
		return CN_OK;
	if (strcasecmp(w, "EXPLAIN") == 0) {
		char v[24];
		const char *q = sq_word(sq_skip_blank(p), v, sizeof v);
		if (strcasecmp(v, "QUERY") == 0) {
			q = sq_word(sq_skip_blank(q), v, sizeof v);
			if (strcasecmp(v, "PLAN") == 0)
				sq_word(sq_skip_blank(q), v, sizeof v);
		}
		if (sq_word_in(v, inner, 3))
			return CN_OK;
		return cn_error_reject(err, sq_writes(v) ? CN_REJECT_WRITE : CN_REJECT_DENIED,
				       "EXPLAIN %s is not allowed: %s", v, sq_allowed_hint);
	}
	if (strcasecmp(w, "ATTACH") == 0 || strcasecmp(w, "DETACH") == 0)
		return cn_error_reject(err, CN_REJECT_WRITE, "%s is not allowed: the connector is read-only",
				       strcasecmp(w, "ATTACH") == 0 ? "ATTACH" : "DETACH");
	if (sq_word_in(w, sq_txn_words, sizeof sq_txn_words / sizeof sq_txn_words[0]))
		return cn_error_reject(err, CN_REJECT_WRITE, "transactions (%s) are not allowed: each query "
				       "runs on its own in a read-only connection", w);
	if (sq_word_in(w, sq_write_words, sizeof sq_write_words / sizeof sq_write_words[0]))
		return cn_error_reject(err, CN_REJECT_WRITE, "%s statements are not allowed: %s", w,
				       sq_allowed_hint);
	return SQ_NOT_A_STATEMENT;
}

/* $1..$999 -> 1..999; anything else -> 0. */
static int sq_param_number(const char *name)
{
	if (!name || name[0] != '$' || name[1] < '1' || name[1] > '9')
		return 0;
	int k = 0;
	for (const char *p = name + 1; *p; p++) {
		if (!isdigit((unsigned char)*p) || p - name > 3)
			return 0;
		k = k * 10 + (*p - '0');
	}
	return k;
}

/* Layer 1c: only $1..$n placeholders. */
static int sq_guard_params(sqlite3_stmt *st, struct cn_error *err)
{
	int n = sqlite3_bind_parameter_count(st);
	for (int i = 1; i <= n; i++) {
		const char *name = sqlite3_bind_parameter_name(st, i);
		if (sq_param_number(name))
			continue;
		if (!name) {
			/* a slot left empty by ?NNN is reported when ?NNN itself is */
			bool numbered = false;
			for (int k = i + 1; k <= n && !numbered; k++) {
				const char *later = sqlite3_bind_parameter_name(st, k);
				numbered = later && later[0] == '?';
			}
			if (numbered)
				continue;
		}
		char shown[48];
		sq_excerpt(name ? name : "?", shown, sizeof shown);
		return cn_error_reject(err, CN_REJECT_PARAMETER, "parameter '%s' is not supported: use "
				       "$1..$n placeholders ($1, $2, ... at most $%d) and pass their values "
				       "in order; write casts as CAST($1 AS INTEGER)", shown, SQ_MAX_PARAMS);
	}
	return CN_OK;
}

/* What a failed prepare, bind or step means, for the caller. */
static int sq_fail(struct sq_conn *c, int rc, const char *budget_note, struct cn_error *err)
{
	const char *msg = sqlite3_errmsg(c->db);
	static const char vtab[] = "vtable constructor failed: ";
	switch (rc & 0xff) {
	case SQLITE_INTERRUPT:
		if (c->stop == STOP_TIMEOUT)
			return cn_error_set(err, CN_ETIMEOUT, "query exceeded the %s time budget; "
					    "narrow it with WHERE or LIMIT, or aggregate", budget_note);
		return cn_error_set(err, CN_ECANCELED, "the query was canceled");
	case SQLITE_NOMEM:
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	case SQLITE_TOOBIG:
		return cn_error_set(err, CN_ETOOBIG, "%s (the limit is %d bytes a value and %d "
				    "bytes of SQL)", msg, SQ_LIMIT_LENGTH, SQ_LIMIT_SQL_LENGTH);
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return cn_error_set(err, CN_EBUSY, "the database is locked by a writer (%s); retry "
				    "shortly", msg);
	case SQLITE_READONLY:
		return cn_error_reject(err, CN_REJECT_WRITE, "%s: the connector is read-only", msg);
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	case SQLITE_CANTOPEN:
		return cn_error_set(err, CN_EUNAVAILABLE, "sqlite source '%s': %s", c->src->name, msg);
	case SQLITE_IOERR:
		return cn_error_set(err, CN_EIO, "sqlite source '%s': %s", c->src->name, msg);
	default:
		break;
	}
	if (strncmp(msg, vtab, sizeof vtab - 1) == 0)
		return cn_error_reject(err, CN_REJECT_DENIED, "table-valued function '%s' is not available: "
				       "only json_each() and json_tree() are", msg + sizeof vtab - 1);
	if (c->deny[0])
		return cn_error_reject(err, c->deny_why, "%s", c->deny);
	if ((rc & 0xff) == SQLITE_AUTH)
		return cn_error_reject(err, CN_REJECT_DENIED, "not authorized: %s", sq_allowed_hint);
	return cn_error_set(err, CN_EQUERY, "%s", msg);
}

/* Compile sql on c with every check of layer 1; *out is the statement to
 * step (caller finalizes) or NULL with err set. */
static int sq_guard_prepare(struct sq_conn *c, const char *sql, const char *budget_note,
			    sqlite3_stmt **out, struct cn_error *err)
{
	sqlite3_stmt *st = NULL;
	const char *tail = NULL;
	char shown[48];
	*out = NULL;
	size_t len = strlen(sql);
	if (len > SQ_LIMIT_SQL_LENGTH)
		return cn_error_reject(err, CN_REJECT_LIMIT, "the query is %zu bytes; the limit is %d", len,
				       SQ_LIMIT_SQL_LENGTH);
	int keyword = sq_guard_keyword(sql, err);
	if (keyword < 0)
		return keyword;
	c->deny[0] = '\0';
	c->pragma = PRAGMA_NONE;
	int rc, src = sqlite3_prepare_v3(c->db, sql, (int)len + 1, 0, &st, &tail);
	if (src != SQLITE_OK) {
		rc = sq_fail(c, src, budget_note, err);
		if (rc == CN_EQUERY) {
			const char *msg = sqlite3_errmsg(c->db);
			bool syntax = strstr(msg, "syntax error") || strstr(msg, "incomplete input") ||
				      strstr(msg, "unrecognized token");
			rc = cn_error_reject(err, CN_REJECT_SYNTAX, "%s%s",
					     syntax ? "syntax error: " : "invalid query: ", msg);
		}
		return rc;
	}
	if (!st)
		return cn_error_reject(err, CN_REJECT_STATEMENTS,
				       "the query is empty: send one SELECT statement");
	if (keyword == SQ_NOT_A_STATEMENT) {
		/* SQLite accepted what the guard does not know: refuse it */
		sq_excerpt(sq_skip_blank(sql), shown, sizeof shown);
		rc = cn_error_reject(err, CN_REJECT_SYNTAX, "the query must start with SELECT, WITH, "
				     "VALUES, EXPLAIN or PRAGMA; it starts with '%s'", shown);
		goto fail;
	}
	const char *rest = sq_skip_blank(tail ? tail : "");
	if (*rest) {
		sq_excerpt(rest, shown, sizeof shown);
		rc = cn_error_reject(err, CN_REJECT_STATEMENTS, "only one statement is allowed; found more "
				     "text after the first statement: '%s'", shown);
		goto fail;
	}
	if (!sqlite3_stmt_readonly(st)) {
		rc = cn_error_reject(err, CN_REJECT_WRITE, "the statement would write: %s", sq_allowed_hint);
		goto fail;
	}
	rc = sq_guard_params(st, err);
	if (rc)
		goto fail;
	*out = st;
	return CN_OK;
fail:
	sqlite3_finalize(st);
	return rc;
}

/* ---------------------------------------------------------------- execute */

static const char *const sq_kind_names[] = {
	[CN_VAL_NULL] = "NULL", [CN_VAL_BOOL] = "boolean", [CN_VAL_INT] = "integer",
	[CN_VAL_DOUBLE] = "number", [CN_VAL_NUMERIC] = "numeric", [CN_VAL_TEXT] = "text",
	[CN_VAL_JSON] = "JSON", [CN_VAL_BYTES] = "binary",
};

static int sq_bind_one(sqlite3_stmt *st, int idx, size_t k, const struct cn_value *v,
		       struct cn_error *err)
{
	int rc;
	switch (v->kind) {
	case CN_VAL_NULL:
		rc = sqlite3_bind_null(st, idx);
		break;
	case CN_VAL_BOOL:
		rc = sqlite3_bind_int(st, idx, v->u.b ? 1 : 0);
		break;
	case CN_VAL_INT:
		rc = sqlite3_bind_int64(st, idx, v->u.i);
		break;
	case CN_VAL_DOUBLE:
		rc = sqlite3_bind_double(st, idx, v->u.d);
		break;
	case CN_VAL_NUMERIC:
	case CN_VAL_TEXT:
		rc = sqlite3_bind_text64(st, idx, v->u.s.ptr ? v->u.s.ptr : "", v->u.s.len,
					 SQLITE_STATIC, SQLITE_UTF8);
		break;
	default: {
		unsigned kind = (unsigned)v->kind;
		const char *name = kind < sizeof sq_kind_names / sizeof sq_kind_names[0] &&
					   sq_kind_names[kind] ? sq_kind_names[kind] : "unknown";
		return cn_error_set(err, CN_EINVAL, "parameter $%zu: %s values cannot be bound; "
				    "pass null, a boolean, a number or text", k, name);
	}
	}
	if (rc == SQLITE_TOOBIG || rc == SQLITE_RANGE)
		return cn_error_set(err, CN_ETOOBIG, "parameter $%zu is longer than %d bytes", k,
				    SQ_LIMIT_LENGTH);
	if (rc != SQLITE_OK)
		return cn_error_set(err, CN_ENOMEM, "parameter $%zu: %s", k, sqlite3_errstr(rc));
	return CN_OK;
}

/* Every $k of the statement has a value and every value is used. */
static int sq_bind(sqlite3_stmt *st, const struct cn_query *q, struct cn_error *err)
{
	bool used[SQ_MAX_PARAMS + 1] = {false};
	int maxk = 0, n = sqlite3_bind_parameter_count(st);
	for (int i = 1; i <= n; i++) {
		int k = sq_param_number(sqlite3_bind_parameter_name(st, i));
		used[k] = true;
		maxk = k > maxk ? k : maxk;
	}
	if (q->nparams > SQ_MAX_PARAMS || (size_t)maxk != q->nparams) {
		if (maxk == 0)
			return cn_error_set(err, CN_EINVAL, "the query uses no parameters but %zu "
					    "were given", q->nparams);
		return cn_error_set(err, CN_EINVAL, "the query uses $1..$%d but %zu parameter%s "
				    "given", maxk, q->nparams, q->nparams == 1 ? " was" : "s were");
	}
	for (size_t k = 1; k <= q->nparams; k++) {
		if (!used[k])
			return cn_error_set(err, CN_EINVAL, "the query does not use $%zu: number the "
					    "parameters $1..$%zu and use each at least once", k,
					    q->nparams);
		char name[8];
		snprintf(name, sizeof name, "$%zu", k);
		int rc = sq_bind_one(st, sqlite3_bind_parameter_index(st, name), k, &q->params[k - 1],
				     err);
		if (rc)
			return rc;
	}
	return CN_OK;
}

static bool sq_type_is(const char *decl, const char *a, const char *b)
{
	return decl && (strcasecmp(decl, a) == 0 || (b && strcasecmp(decl, b) == 0));
}

/* The type a column without a declared type (an expression) reports: the
 * storage class of its value in the first row, NULL (unknown) when that is
 * NULL or there is no row. SQLite types values, not expressions, so a later
 * row may hold another class; the first row is what the result shows first. */
static const char *sq_storage_type(sqlite3_stmt *st, int i, bool have_row)
{
	if (!have_row)
		return NULL;
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_INTEGER: return "INTEGER";
	case SQLITE_FLOAT: return "REAL";
	case SQLITE_TEXT: return "TEXT";
	case SQLITE_BLOB: return "BLOB";
	default: return NULL;
	}
}

/* Columns of st; their type and origin come from meta (a probe of the same
 * text in which hidden columns were not blanked) when it is given. have_row:
 * st stands on its first row, whose values type the expressions. */
static int sq_push_columns(sqlite3_stmt *st, sqlite3_stmt *meta, bool have_row,
			   const struct cn_result_sink *sink, struct cn_error *err)
{
	int n = sqlite3_column_count(st);
	if (!meta || sqlite3_column_count(meta) != n)
		meta = st;
	for (int i = 0; i < n; i++) {
		const char *decl = sqlite3_column_decltype(meta, i);
		struct cn_column_info col = {
			.name = sqlite3_column_name(st, i),
			.type = decl ? decl : sq_storage_type(st, i, have_row),
			.origin_schema = NULL,
			.origin_table = sqlite3_column_table_name(meta, i),
			.origin_column = sqlite3_column_origin_name(meta, i),
		};
		if (!col.name)
			return cn_error_set(err, CN_ENOMEM, "out of memory");
		int rc = sink->column(sink->ctx, &col);
		if (rc < 0)
			return cn_error_set(err, rc, "the result sink refused column '%s'", col.name);
	}
	return CN_OK;
}

static void sq_cell(sqlite3_stmt *st, int i, struct cn_value *v)
{
	const char *decl = sqlite3_column_decltype(st, i);
	memset(v, 0, sizeof *v);
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_INTEGER:
		v->u.i = sqlite3_column_int64(st, i);
		v->kind = CN_VAL_INT;
		if (sq_type_is(decl, "BOOLEAN", "BOOL") && (v->u.i == 0 || v->u.i == 1)) {
			v->kind = CN_VAL_BOOL;
			v->u.b = v->u.i == 1;
		}
		break;
	case SQLITE_FLOAT:
		v->kind = CN_VAL_DOUBLE;
		v->u.d = sqlite3_column_double(st, i);
		break;
	case SQLITE_TEXT:
		v->kind = sq_type_is(decl, "JSON", NULL) ? CN_VAL_JSON : CN_VAL_TEXT;
		v->u.s.ptr = (const char *)sqlite3_column_text(st, i);
		v->u.s.len = (size_t)sqlite3_column_bytes(st, i);
		break;
	case SQLITE_BLOB:
		v->kind = CN_VAL_BYTES;
		v->u.s.ptr = sqlite3_column_blob(st, i);
		v->u.s.len = (size_t)sqlite3_column_bytes(st, i);
		if (!v->u.s.ptr)
			v->u.s.ptr = "";
		break;
	default:
		v->kind = CN_VAL_NULL;
		break;
	}
}

/* Steps st to its next row that is shown: SQLITE_ROW, SQLITE_DONE or an error. */
static int sq_step_shown(struct sq_conn *c, sqlite3_stmt *st)
{
	for (;;) {
		int rc = sqlite3_step(st);
		if (rc != SQLITE_ROW || c->pragma == PRAGMA_NONE || !sq_pragma_row_hidden(c, st))
			return rc;
	}
}

/* Push rows from the one step_rc stands on until done, the sink is full, or
 * an error. */
static int sq_push_rows(struct sq_conn *c, sqlite3_stmt *st, int step_rc, const char *budget_note,
			const struct cn_result_sink *sink, struct cn_error *err)
{
	int n = sqlite3_column_count(st);
	for (int rc = step_rc;; rc = sq_step_shown(c, st)) {
		if (rc == SQLITE_DONE)
			return CN_OK;
		if (rc != SQLITE_ROW)
			return sq_fail(c, rc, budget_note, err);
		for (int i = 0; i < n; i++) {
			struct cn_value v;
			sq_cell(st, i, &v);
			if (v.kind != CN_VAL_NULL && v.kind != CN_VAL_INT && v.kind != CN_VAL_BOOL &&
			    v.kind != CN_VAL_DOUBLE && !v.u.s.ptr)
				return cn_error_set(err, CN_ENOMEM, "out of memory");
			rc = sink->cell(sink->ctx, &v);
			if (rc < 0)
				return cn_error_set(err, rc, "the result sink refused a value");
		}
		rc = sink->row_end(sink->ctx);
		if (rc < 0)
			return cn_error_set(err, rc, "the result sink refused a row");
		if (rc > 0)
			return CN_OK; /* CN_SINK_FULL: the caps are reached */
	}
}

static int sq_execute(void *handle, const struct cn_query *q, const struct cn_result_sink *sink,
		      struct cn_error *err)
{
	struct sq_source *s = handle;
	struct sq_conn *c = NULL;
	sqlite3_stmt *st = NULL, *meta = NULL;
	char note[32];
	if (!s || !q || !q->text || !sink || !sink->column || !sink->cell || !sink->row_end ||
	    (q->nparams && !q->params))
		return cn_error_set(err, CN_EINVAL, "execute: missing query, parameters or sink");
	unsigned epoch = atomic_load(&s->cancel_epoch);
	uint32_t budget = sq_budget_ms(s, q->timeout_ms);
	snprintf(note, sizeof note, "%u ms", budget);
	int rc = sq_pool_acquire(s, budget < SQ_MAX_WAIT_MS ? budget : SQ_MAX_WAIT_MS, &c, err);
	if (rc)
		return rc;
	sq_conn_begin(c, epoch, budget);
	c->hidden_reads = 0;
	rc = sq_guard_prepare(c, q->text, note, &st, err);
	if (rc)
		goto out;
	rc = sq_bind(st, q, err);
	if (rc)
		goto out;
	if (c->hidden_reads) {
		/* Blanked columns lost their origin: learn it from a probe that is
		 * prepared, never stepped, so the core can leave them out. */
		c->probe_hidden = true;
		if (sqlite3_prepare_v3(c->db, q->text, -1, 0, &meta, NULL) != SQLITE_OK)
			meta = NULL;
		c->probe_hidden = false;
	}
	/* the first row is read before the columns go out: it types the expressions */
	int step_rc = sq_step_shown(c, st);
	if (step_rc != SQLITE_ROW && step_rc != SQLITE_DONE) {
		sqlite3_finalize(meta);
		rc = sq_fail(c, step_rc, note, err);
		goto out;
	}
	rc = sq_push_columns(st, meta, step_rc == SQLITE_ROW, sink, err);
	sqlite3_finalize(meta);
	if (rc)
		goto out;
	rc = sq_push_rows(c, st, step_rc, note, sink, err);
out:
	sqlite3_finalize(st);
	sq_pool_release(s, c);
	return rc;
}

static int sq_check(void *handle, const char *query, struct cn_error *err)
{
	struct sq_source *s = handle;
	struct sq_conn *c = NULL;
	sqlite3_stmt *st = NULL;
	char note[32];
	if (!s || !query)
		return cn_error_set(err, CN_EINVAL, "check: missing query");
	if (verdicts_get(&s->verdicts, query, 0, NULL))
		return CN_OK;
	unsigned epoch = atomic_load(&s->cancel_epoch);
	uint32_t budget = sq_budget_ms(s, 0);
	snprintf(note, sizeof note, "%u ms", budget);
	int rc = sq_pool_acquire(s, budget < SQ_MAX_WAIT_MS ? budget : SQ_MAX_WAIT_MS, &c, err);
	if (rc)
		return rc;
	sq_conn_begin(c, epoch, budget);
	rc = sq_guard_prepare(c, query, note, &st, err);
	sqlite3_finalize(st);
	sq_pool_release(s, c);
	if (rc == CN_OK)
		verdicts_put(&s->verdicts, query, 0, 0);
	return rc;
}

static void sq_cancel(void *handle)
{
	struct sq_source *s = handle;
	if (s)
		atomic_fetch_add(&s->cancel_epoch, 1u);
}

/* ------------------------------------------------------------ introspect */

struct sq_table {
	char *name;
	bool view;
	bool without_rowid;
};

/* Prepare one of the driver's own statements (c relaxed) with ?1 = arg. */
static int sq_own_prepare(struct sq_conn *c, const char *sql, const char *arg, sqlite3_stmt **st,
			  struct cn_error *err)
{
	int rc = sqlite3_prepare_v3(c->db, sql, -1, 0, st, NULL);
	if (rc == SQLITE_OK && arg)
		rc = sqlite3_bind_text(*st, 1, arg, -1, SQLITE_TRANSIENT);
	if (rc != SQLITE_OK) {
		cn_error_set(err, CN_EQUERY, "sqlite source '%s': introspection failed: %s",
			     c->src->name, sqlite3_errmsg(c->db));
		sqlite3_finalize(*st);
		*st = NULL;
		return CN_EQUERY;
	}
	return CN_OK;
}

static int sq_own_done(struct sq_conn *c, int src, struct cn_error *err)
{
	if (src == SQLITE_DONE)
		return CN_OK;
	return cn_error_set(err, CN_EQUERY, "sqlite source '%s': introspection failed: %s",
			    c->src->name, sqlite3_errmsg(c->db));
}

static void sq_tables_free(struct sq_table *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(t[i].name);
	free(t);
}

static int sq_list_tables(struct sq_conn *c, struct sq_table **out, size_t *nout,
			  struct cn_error *err)
{
	static const char sql[] =
		"SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main' "
		"AND type IN ('table', 'view', 'virtual') "
		"AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name";
	struct sq_table *t = NULL;
	size_t n = 0;
	sqlite3_stmt *st;
	int rc = sq_own_prepare(c, sql, NULL, &st, err), src;
	if (rc)
		return rc;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		struct sq_table *nt = realloc(t, (n + 1) * sizeof *nt);
		const char *name = (const char *)sqlite3_column_text(st, 0);
		const char *type = (const char *)sqlite3_column_text(st, 1);
		if (!nt || !(nt[n].name = strdup(name ? name : ""))) {
			t = nt ? nt : t;
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
			break;
		}
		t = nt;
		t[n].view = type && strcmp(type, "view") == 0;
		t[n].without_rowid = sqlite3_column_int(st, 2) != 0;
		n++;
	}
	if (!rc)
		rc = sq_own_done(c, src, err);
	sqlite3_finalize(st);
	if (rc) {
		sq_tables_free(t, n);
		return rc;
	}
	*out = t;
	*nout = n;
	return CN_OK;
}

/* count(*) under the source's time budget; -1 when it does not finish. */
static int64_t sq_count_rows(struct sq_conn *c, const char *table)
{
	int64_t count = -1;
	char *sql = sqlite3_mprintf("SELECT count(*) FROM main.\"%w\"", table);
	sqlite3_stmt *st = NULL;
	if (!sql)
		return -1;
	c->deadline_ns = sq_now_ns() + (int64_t)sq_budget_ms(c->src, 0) * 1000000;
	if (sqlite3_prepare_v3(c->db, sql, -1, 0, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		count = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_free(sql);
	c->deadline_ns = 0;
	c->stop = STOP_NONE;
	return count;
}

struct sq_column {
	char *name, *type, *dflt;
	bool notnull;
	int pk;
};

static void sq_columns_free(struct sq_column *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].type);
		free(v[i].dflt);
	}
	free(v);
}

static char *sq_dup_col(sqlite3_stmt *st, int i, bool *oom)
{
	const char *s = (const char *)sqlite3_column_text(st, i);
	char *copy = s ? strdup(s) : NULL;
	if (s && !copy)
		*oom = true;
	return copy;
}

static int sq_emit_columns(struct sq_conn *c, const struct cn_schema_builder *b, int tid,
			   const struct sq_table *t, struct cn_error *err)
{
	static const char sql[] = "SELECT name, type, \"notnull\", dflt_value, pk, hidden "
				  "FROM pragma_table_xinfo(?1, 'main') WHERE hidden <> 1";
	struct sq_column *v = NULL;
	size_t n = 0, npk = 0;
	bool oom = false;
	sqlite3_stmt *st;
	int rc = sq_own_prepare(c, sql, t->name, &st, err), src;
	if (rc)
		return rc;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		struct sq_column *nv = realloc(v, (n + 1) * sizeof *nv);
		if (!nv) {
			oom = true;
			break;
		}
		v = nv;
		v[n].name = sq_dup_col(st, 0, &oom);
		v[n].type = sq_dup_col(st, 1, &oom);
		v[n].dflt = sq_dup_col(st, 3, &oom);
		v[n].notnull = sqlite3_column_int(st, 2) != 0;
		v[n].pk = sqlite3_column_int(st, 4);
		npk += v[n].pk > 0;
		n++;
		if (oom)
			break;
	}
	rc = oom ? cn_error_set(err, CN_ENOMEM, "out of memory") : sq_own_done(c, src, err);
	sqlite3_finalize(st);
	for (size_t i = 0; i < n && !rc; i++) {
		/* INTEGER PRIMARY KEY is the rowid, and WITHOUT ROWID keys are NOT NULL */
		bool rowid = !t->view && !t->without_rowid && npk == 1 && v[i].pk == 1 &&
			     v[i].type && strcasecmp(v[i].type, "INTEGER") == 0;
		bool nullable = !v[i].notnull && !rowid && !(t->without_rowid && v[i].pk > 0);
		rc = b->column(b->ctx, tid, v[i].name ? v[i].name : "", v[i].type ? v[i].type : "",
			       nullable, v[i].dflt, NULL, v[i].pk);
		if (rc < 0)
			cn_error_set(err, rc, "schema builder refused column %s.%s", t->name,
				     v[i].name ? v[i].name : "");
		else
			rc = CN_OK;
	}
	sq_columns_free(v, n);
	return rc;
}

/* The primary key columns of table, in key order. */
static int sq_primary_key(struct sq_conn *c, const char *table, struct sq_strlist *out,
			  struct cn_error *err)
{
	static const char sql[] = "SELECT name FROM pragma_table_info(?1, 'main') "
				  "WHERE pk > 0 ORDER BY pk";
	sqlite3_stmt *st;
	int rc = sq_own_prepare(c, sql, table, &st, err), src;
	if (rc)
		return rc;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		if (sq_strlist_push(out, (const char *)sqlite3_column_text(st, 0)) != CN_OK) {
			sqlite3_finalize(st);
			return cn_error_set(err, CN_ENOMEM, "out of memory");
		}
	}
	rc = sq_own_done(c, src, err);
	sqlite3_finalize(st);
	return rc;
}

static int sq_flush_fk(struct sq_conn *c, const struct cn_schema_builder *b, int tid,
		       const char *table, const char *ref, struct sq_strlist *from,
		       struct sq_strlist *to, struct cn_error *err)
{
	bool implicit = false;
	for (size_t i = 0; i < to->n; i++)
		implicit = implicit || !to->v[i];
	if (implicit) {
		/* REFERENCES t without columns: t's primary key (or its rowid) */
		struct sq_strlist pk = {0};
		int rc = sq_primary_key(c, ref, &pk, err);
		if (rc) {
			sq_strlist_clear(&pk);
			return rc;
		}
		sq_strlist_clear(to);
		for (size_t i = 0; i < from->n && !rc; i++)
			rc = sq_strlist_push(to, pk.n == from->n ? pk.v[i] : "rowid");
		sq_strlist_clear(&pk);
		if (rc)
			return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	int rc = b->foreign_key(b->ctx, tid, NULL, from->n, (const char *const *)from->v, NULL, ref,
				(const char *const *)to->v);
	if (rc < 0)
		return cn_error_set(err, rc, "schema builder refused a foreign key of %s", table);
	return CN_OK;
}

static int sq_emit_fks(struct sq_conn *c, const struct cn_schema_builder *b, int tid,
		       const char *table, struct cn_error *err)
{
	static const char sql[] = "SELECT id, \"table\", \"from\", \"to\" "
				  "FROM pragma_foreign_key_list(?1, 'main') ORDER BY id, seq";
	struct sq_strlist from = {0}, to = {0};
	char *ref = NULL;
	int id = -1, src = SQLITE_DONE;
	sqlite3_stmt *st;
	int rc = sq_own_prepare(c, sql, table, &st, err);
	if (rc)
		return rc;
	while (!rc && (src = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_int(st, 0) != id && from.n) {
			rc = sq_flush_fk(c, b, tid, table, ref, &from, &to, err);
			sq_strlist_clear(&from);
			sq_strlist_clear(&to);
			if (rc)
				break;
		}
		id = sqlite3_column_int(st, 0);
		free(ref);
		const char *parent = (const char *)sqlite3_column_text(st, 1);
		ref = strdup(parent ? parent : "");
		if (!ref || sq_strlist_push(&from, (const char *)sqlite3_column_text(st, 2)) ||
		    sq_strlist_push(&to, (const char *)sqlite3_column_text(st, 3)))
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	if (!rc)
		rc = sq_own_done(c, src, err);
	sqlite3_finalize(st);
	if (!rc && from.n)
		rc = sq_flush_fk(c, b, tid, table, ref, &from, &to, err);
	sq_strlist_clear(&from);
	sq_strlist_clear(&to);
	free(ref);
	return rc;
}

/* The columns of one index; expressions are shown as "(expression)". */
static int sq_index_columns(struct sq_conn *c, const char *index, struct sq_strlist *out,
			    struct cn_error *err)
{
	static const char sql[] = "SELECT name FROM pragma_index_info(?1, 'main') ORDER BY seqno";
	sqlite3_stmt *st;
	int rc = sq_own_prepare(c, sql, index, &st, err), src;
	if (rc)
		return rc;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		if (sq_strlist_push(out, name ? name : "(expression)") != CN_OK) {
			sqlite3_finalize(st);
			return cn_error_set(err, CN_ENOMEM, "out of memory");
		}
	}
	rc = sq_own_done(c, src, err);
	sqlite3_finalize(st);
	return rc;
}

/* An autoindex of a UNIQUE constraint is named <table>_<columns>_key. */
static char *sq_index_name(const char *table, const char *name, const struct sq_strlist *cols)
{
	if (strncmp(name, "sqlite_autoindex_", 17) != 0)
		return strdup(name);
	size_t len = strlen(table) + 5;
	for (size_t i = 0; i < cols->n; i++)
		len += strlen(cols->v[i]) + 1;
	char *out = malloc(len);
	if (!out)
		return NULL;
	size_t n = (size_t)snprintf(out, len, "%s", table);
	for (size_t i = 0; i < cols->n; i++)
		n += (size_t)snprintf(out + n, len - n, "_%s", cols->v[i]);
	snprintf(out + n, len - n, "_key");
	return out;
}

static int sq_emit_indexes(struct sq_conn *c, const struct cn_schema_builder *b, int tid,
			   const char *table, struct cn_error *err)
{
	/* a primary key's own index adds nothing to the key itself */
	static const char sql[] = "SELECT name, \"unique\" FROM pragma_index_list(?1, 'main') "
				  "WHERE origin <> 'pk' ORDER BY name";
	struct sq_strlist names = {0}, uniq = {0}, cols = {0};
	sqlite3_stmt *st;
	int rc = sq_own_prepare(c, sql, table, &st, err), src;
	if (rc)
		return rc;
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		/* uniq holds "" for unique indexes and NULL for the others */
		const char *u = sqlite3_column_int(st, 1) ? "" : NULL;
		if (sq_strlist_push(&names, (const char *)sqlite3_column_text(st, 0)) != CN_OK ||
		    sq_strlist_push(&uniq, u) != CN_OK) {
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
			break;
		}
	}
	if (!rc)
		rc = sq_own_done(c, src, err);
	sqlite3_finalize(st);
	for (size_t i = 0; i < names.n && i < uniq.n && !rc; i++) {
		rc = sq_index_columns(c, names.v[i], &cols, err);
		char *shown = rc ? NULL : sq_index_name(table, names.v[i], &cols);
		if (!rc && !shown)
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		if (!rc) {
			int brc = b->index(b->ctx, tid, shown, uniq.v[i] != NULL, cols.n,
					   (const char *const *)cols.v);
			if (brc < 0)
				rc = cn_error_set(err, brc, "schema builder refused index %s", shown);
		}
		free(shown);
		sq_strlist_clear(&cols);
	}
	sq_strlist_clear(&names);
	sq_strlist_clear(&uniq);
	return rc;
}

static int sq_introspect_table(struct sq_conn *c, const struct cn_schema_builder *b,
			       const struct sq_table *t, struct cn_error *err)
{
	int64_t rows = t->view ? -1 : sq_count_rows(c, t->name);
	int tid = b->table(b->ctx, NULL, t->name, t->view ? CN_OBJ_VIEW : CN_OBJ_TABLE, NULL, rows);
	if (tid < 0)
		return cn_error_set(err, tid, "schema builder refused table %s", t->name);
	int rc = sq_emit_columns(c, b, tid, t, err);
	if (!rc && !t->view)
		rc = sq_emit_fks(c, b, tid, t->name, err);
	if (!rc && !t->view)
		rc = sq_emit_indexes(c, b, tid, t->name, err);
	return rc;
}

static int sq_introspect(void *handle, const struct cn_schema_builder *b, struct cn_error *err)
{
	struct sq_source *s = handle;
	struct sq_conn c;
	struct sq_table *tables = NULL;
	size_t n = 0;
	if (!s || !b || !b->table || !b->column || !b->foreign_key || !b->index)
		return cn_error_set(err, CN_EINVAL, "introspect: missing schema builder");
	int rc = sq_conn_open(s, &c, err);
	if (rc)
		return rc;
	c.relaxed = true; /* the driver's own statements, never a user's */
	rc = sq_list_tables(&c, &tables, &n, err);
	for (size_t i = 0; i < n && !rc; i++)
		rc = sq_introspect_table(&c, b, &tables[i], err);
	if (!rc)
		rc = sq_cache_load(s, &c, err);
	sq_tables_free(tables, n);
	sq_conn_close(&c);
	return rc;
}

/* ---------------------------------------------------------- open / close */

static int sq_ping(void *handle, struct cn_error *err)
{
	struct sq_source *s = handle;
	struct sq_conn c;
	struct stat st;
	if (!s)
		return cn_error_set(err, CN_EINVAL, "ping: no source");
	if (stat(s->path, &st) != 0)
		return cn_error_set(err, CN_EUNAVAILABLE, "sqlite source '%s': database file %s: %s",
				    s->name, s->path, strerror(errno));
	int rc = sq_conn_open(s, &c, err);
	if (rc)
		return rc;
	sq_conn_close(&c);
	return CN_OK;
}

static void sq_close(void *handle)
{
	struct sq_source *s = handle;
	if (!s)
		return;
	for (uint32_t i = 0; s->conns && i < s->nconns; i++)
		sq_conn_close(&s->conns[i]);
	free(s->conns);
	sq_indexes_free(s->indexes, s->nindexes);
	pthread_mutex_destroy(&s->pool_mu);
	pthread_cond_destroy(&s->pool_cv);
	pthread_mutex_destroy(&s->cache_mu);
	verdicts_destroy(&s->verdicts);
	free(s->name);
	free(s->path);
	free(s->uri);
	free(s);
}

static int sq_source_init(struct sq_source *s, const struct cn_source_info *src)
{
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) != 0)
		return CN_ENOMEM;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int rc = pthread_cond_init(&s->pool_cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0)
		return CN_ENOMEM;
	pthread_mutex_init(&s->pool_mu, NULL);
	pthread_mutex_init(&s->cache_mu, NULL);
	verdicts_init(&s->verdicts);
	atomic_init(&s->cancel_epoch, 0u);
	s->timeout_ms = src->timeout_ms;
	s->host_ctx = src->host_ctx;
	s->is_hidden = src->is_hidden;
	s->name = strdup(src->name ? src->name : "sqlite");
	return s->name ? CN_OK : CN_ENOMEM;
}

static int sq_open(const struct cn_source_info *src, void **handle, struct cn_error *err)
{
	struct sq_conn probe;
	*handle = NULL;
	if (!src)
		return cn_error_set(err, CN_EINVAL, "open: no source");
	struct sq_source *s = calloc(1, sizeof *s);
	if (!s)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	if (sq_source_init(s, src) != CN_OK) {
		free(s->name);
		free(s); /* pthread objects need no destruction on failure paths */
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	int rc = sq_dsn_resolve(src, s, err);
	if (rc)
		goto fail;
	/* the driver's own connection: the index cache for pragma checks */
	rc = sq_conn_open(s, &probe, err);
	if (rc)
		goto fail;
	rc = sq_cache_load(s, &probe, err);
	sq_conn_close(&probe);
	if (rc)
		goto fail;
	uint32_t n = src->pool_size ? src->pool_size : 1;
	n = n > SQ_MAX_POOL ? SQ_MAX_POOL : n;
	s->conns = calloc(n, sizeof *s->conns);
	if (!s->conns) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto fail;
	}
	for (; s->nconns < n; s->nconns++) {
		rc = sq_conn_open(s, &s->conns[s->nconns], err);
		if (rc)
			goto fail;
	}
	*handle = s;
	return CN_OK;
fail:
	sq_close(s);
	return rc;
}

/* The file is opened read-only whatever its mode; a file this process's
 * user cannot write is one more layer. */
static int sq_audit(void *handle, char *warning, size_t len, struct cn_error *err)
{
	struct sq_source *s = handle;
	(void)err;
	warning[0] = '\0';
	if (s && access(s->path, W_OK) == 0)
		snprintf(warning, len,
			 "the database file %s is writable by this process's user%s; the connector opens "
			 "it read-only, but a file it cannot write is one more layer (run the connector as "
			 "a user with read access only)",
			 s->path, geteuid() == 0 ? " (root)" : "");
	return CN_OK;
}

/* Every pooled connection is opened with the source and stays open. */
static void sq_pool_stats(void *handle, struct cn_pool_stats *out)
{
	struct sq_source *s = handle;
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&s->pool_mu);
	out->size = out->open = s->nconns;
	out->waiting = s->pool_waiting;
	for (uint32_t i = 0; i < s->nconns; i++)
		out->in_use += s->conns[i].busy;
	pthread_mutex_unlock(&s->pool_mu);
}

static const struct cn_driver sq_driver = {
	.abi_version = CN_DRIVER_ABI_VERSION,
	.struct_size = sizeof(struct cn_driver),
	.name = "sqlite",
	.version = SQ_VERSION,
	.caps = CN_CAP_SQL | CN_CAP_DOLLAR_PARAMS | CN_CAP_CANCEL,
	.open = sq_open,
	.close = sq_close,
	.ping = sq_ping,
	.audit = sq_audit,
	.introspect = sq_introspect,
	.check = sq_check,
	.execute = sq_execute,
	.cancel = sq_cancel,
	.pool_stats = sq_pool_stats,
};

CN_DRIVER_EXPORT(sq_driver)
