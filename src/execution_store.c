/*
 * execution_store.c - answers by execution_id in a SQLite file (WAL,
 * synchronous=NORMAL) with its own connection.
 *
 * Table executions(id, state 0 running / 1 done, status, body, created_at,
 * updated_at). Every step runs in a BEGIN IMMEDIATE transaction, so claims
 * are atomic also between processes sharing the file; inside the process a
 * mutex guards the connection and is never held while waiting.
 *
 * Ages: a done row is expired when now - updated_at > ttl_s (updated_at is
 * when the answer was stored); a running row is stale when now - updated_at
 * > stale_s (updated_at is when it was claimed). An expired row is treated
 * as absent, a stale claim is taken over.
 *
 * A late exec_store_finish() by a request whose claim was taken over keeps
 * the answer stored first, so every retry sees the same bytes.
 */
#include "execution_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"

#define STORE_BUSY_TIMEOUT_MS 5000
#define STORE_POLL_MS 25
#define STORE_DEFAULT_STALE_S 120

enum exec_row_state { ROW_RUNNING = 0, ROW_DONE = 1 };

struct exec_store {
	pthread_mutex_t lock; /* guards db, the statements and now */
	sqlite3 *db;
	char *path;
	uint32_t ttl_s;
	uint32_t stale_s;
	time_t (*now)(void);
	sqlite3_stmt *st_insert;
	sqlite3_stmt *st_select;
	sqlite3_stmt *st_reclaim;
	sqlite3_stmt *st_finish;
	sqlite3_stmt *st_release;
	sqlite3_stmt *st_expire;
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS executions ("
    " id TEXT PRIMARY KEY,"
    " state INTEGER NOT NULL,"
    " status INTEGER NOT NULL,"
    " body BLOB,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS executions_updated_at ON executions(updated_at);";

static const char insert_sql[] = "INSERT INTO executions(id, state, status, body, created_at, updated_at)"
				 " VALUES (?1, 0, 0, NULL, ?2, ?2) ON CONFLICT(id) DO NOTHING";
static const char select_sql[] = "SELECT state, status, body, updated_at FROM executions WHERE id = ?1";
static const char reclaim_sql[] = "UPDATE executions SET state = 0, status = 0, body = NULL, created_at = ?2,"
				  " updated_at = ?2 WHERE id = ?1";
/* Store the answer; a row already done keeps its first answer. */
static const char finish_sql[] =
    "INSERT INTO executions(id, state, status, body, created_at, updated_at)"
    " VALUES (?1, 1, ?2, ?3, ?4, ?4) ON CONFLICT(id) DO UPDATE SET state = 1,"
    " status = excluded.status, body = excluded.body, updated_at = excluded.updated_at"
    " WHERE state = 0";
static const char release_sql[] = "DELETE FROM executions WHERE id = ?1 AND state = 0";
static const char expire_sql[] = "DELETE FROM executions WHERE updated_at < ?1";

static time_t clock_default(void)
{
	return time(NULL);
}

/* Fill err from the connection's last error (read it before any other call). */
static int store_fail(struct exec_store *s, int rc, const char *what, struct cn_error *err)
{
	int code = CN_EIO;
	int primary = rc & 0xff;
	if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
		code = CN_EBUSY;
	else if (primary == SQLITE_NOMEM)
		code = CN_ENOMEM;
	const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
	if (primary == SQLITE_NOTADB)
		return cn_error_set(err, CN_EIO,
				    "execution store %s is not a SQLite database (%s): move the "
				    "file away or configure another path",
				    s->path, msg);
	return cn_error_set(err, code, "execution store %s: %s: %s", s->path, what, msg);
}

static bool id_valid(const char *id)
{
	size_t n = id ? strnlen(id, EXEC_ID_MAX + 1) : 0;
	return n >= 1 && n <= EXEC_ID_MAX;
}

static int id_error(struct cn_error *err)
{
	return cn_error_set(err, CN_EINVAL, "execution_id must be 1 to %d bytes", EXEC_ID_MAX);
}

/* Step a statement that returns no row, then reset it. */
static int stmt_run(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		rc = SQLITE_OK;
	else if (rc == SQLITE_ROW)
		rc = SQLITE_MISUSE;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

static void stmt_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static int tx_begin(struct exec_store *s, struct cn_error *err)
{
	int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	return rc == SQLITE_OK ? CN_OK : store_fail(s, rc, "begin", err);
}

static int tx_end(struct exec_store *s, int status, struct cn_error *err)
{
	if (status != CN_OK) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return status;
	}
	int rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	if (rc == SQLITE_OK)
		return CN_OK;
	status = store_fail(s, rc, "commit", err);
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return status;
}

/* ---- opening --------------------------------------------------------- */

/* Create the file's directory (one level) when it is missing. */
static int ensure_parent_dir(const char *path, struct cn_error *err)
{
	const char *slash = strrchr(path, '/');
	if (!slash || slash == path)
		return CN_OK;
	size_t n = (size_t)(slash - path);
	char *dir = strndup(path, n);
	if (!dir)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	int rc = CN_OK;
	struct stat st;
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			rc =
			    cn_error_set(err, CN_EIO, "execution store %s: %s is not a directory", path, dir);
	} else if (errno != ENOENT || mkdir(dir, 0700) != 0) {
		rc = cn_error_set(err, CN_EIO, "execution store %s: cannot create directory %s: %s", path,
				  dir, strerror(errno));
	}
	free(dir);
	return rc;
}

/* Create the file owner-only (it holds query results) before SQLite opens
 * it; SQLite gives the -wal and -shm files the same permissions. */
static int ensure_file(const char *path, struct cn_error *err)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return cn_error_set(err, CN_EIO, "execution store %s: cannot open: %s", path,
				    strerror(errno));
	close(fd);
	return CN_OK;
}

static int store_exec(struct exec_store *s, const char *sql, const char *what, struct cn_error *err)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? CN_OK : store_fail(s, rc, what, err);
}

static int wal_callback(void *arg, int ncols, char **values, char **names)
{
	(void)names;
	bool *is_wal = arg;
	*is_wal = ncols == 1 && values[0] && strcmp(values[0], "wal") == 0;
	return 0;
}

static int store_setup(struct exec_store *s, struct cn_error *err)
{
	bool is_wal = false;
	sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
	int rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", wal_callback, &is_wal, NULL);
	if (rc != SQLITE_OK)
		return store_fail(s, rc, "setting WAL mode", err);
	if (!is_wal)
		return cn_error_set(err, CN_EIO,
				    "execution store %s: the file system does not support WAL mode", s->path);
	rc = store_exec(s, "PRAGMA synchronous=NORMAL", "setting synchronous=NORMAL", err);
	if (rc == CN_OK)
		rc = store_exec(s, schema_sql, "creating the executions table", err);
	const struct {
		const char *sql;
		sqlite3_stmt **st;
	} stmts[] = {
	    {insert_sql, &s->st_insert}, {select_sql, &s->st_select},	{reclaim_sql, &s->st_reclaim},
	    {finish_sql, &s->st_finish}, {release_sql, &s->st_release}, {expire_sql, &s->st_expire},
	};
	for (size_t i = 0; rc == CN_OK && i < sizeof stmts / sizeof stmts[0]; i++) {
		int src =
		    sqlite3_prepare_v3(s->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, stmts[i].st, NULL);
		if (src != SQLITE_OK)
			rc = store_fail(s, src, "the executions table has an unexpected shape", err);
	}
	return rc;
}

int exec_store_open(const char *path, const struct exec_store_opts *opts, struct exec_store **out,
		    struct cn_error *err)
{
	*out = NULL;
	if (!path || !*path)
		return cn_error_set(err, CN_EINVAL, "execution store path is empty");
	struct exec_store *s = calloc(1, sizeof *s);
	if (!s)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	int rc = CN_OK;
	if (pthread_mutex_init(&s->lock, NULL) != 0) {
		free(s);
		return cn_error_set(err, CN_ENOMEM, "cannot create a mutex");
	}
	s->ttl_s = opts && opts->ttl_s ? opts->ttl_s : EXEC_STORE_TTL_S;
	s->stale_s = opts && opts->stale_s ? opts->stale_s : STORE_DEFAULT_STALE_S;
	s->now = clock_default;
	s->path = strdup(path);
	if (!s->path) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto out;
	}
	rc = ensure_parent_dir(path, err);
	if (rc == CN_OK)
		rc = ensure_file(path, err);
	if (rc)
		goto out;
	int src = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (src != SQLITE_OK) {
		rc = store_fail(s, src, "cannot open", err);
		goto out;
	}
	rc = store_setup(s, err);
out:
	if (rc) {
		exec_store_close(s);
		return rc;
	}
	*out = s;
	return CN_OK;
}

void exec_store_close(struct exec_store *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->st_insert);
	sqlite3_finalize(s->st_select);
	sqlite3_finalize(s->st_reclaim);
	sqlite3_finalize(s->st_finish);
	sqlite3_finalize(s->st_release);
	sqlite3_finalize(s->st_expire);
	sqlite3_close_v2(s->db);
	pthread_mutex_destroy(&s->lock);
	free(s->path);
	free(s);
}

void exec_store_set_clock(struct exec_store *s, time_t (*now)(void))
{
	pthread_mutex_lock(&s->lock);
	s->now = now ? now : clock_default;
	pthread_mutex_unlock(&s->lock);
}

/* ---- claiming -------------------------------------------------------- */

/* Make id a fresh running claim at now (an expired or stale row). */
static int claim_reclaim(struct exec_store *s, const char *id, time_t now, struct cn_error *err)
{
	sqlite3_bind_text(s->st_reclaim, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s->st_reclaim, 2, (sqlite3_int64)now);
	int rc = stmt_run(s->st_reclaim);
	return rc == SQLITE_OK ? CN_OK : store_fail(s, rc, "taking over a claim", err);
}

/* Copy the stored answer of the current select row. */
static int claim_copy_answer(struct exec_store *s, int *status, char **body, size_t *len,
			     struct cn_error *err)
{
	const void *blob = sqlite3_column_blob(s->st_select, 2);
	size_t n = (size_t)sqlite3_column_bytes(s->st_select, 2);
	if (!blob && n == 0 && sqlite3_errcode(s->db) == SQLITE_NOMEM)
		return store_fail(s, SQLITE_NOMEM, "reading an answer", err);
	char *copy = malloc(n + 1);
	if (!copy)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	if (n)
		memcpy(copy, blob, n);
	copy[n] = '\0';
	*status = sqlite3_column_int(s->st_select, 1);
	*body = copy;
	*len = n;
	return CN_OK;
}

/* One attempt, in a transaction: insert a claim, or read what is there. */
static int claim_once(struct exec_store *s, const char *id, enum exec_claim *state, int *status, char **body,
		      size_t *len, struct cn_error *err)
{
	time_t now = s->now();
	int rc = tx_begin(s, err);
	if (rc)
		return rc;
	sqlite3_bind_text(s->st_insert, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s->st_insert, 2, (sqlite3_int64)now);
	int src = stmt_run(s->st_insert);
	if (src != SQLITE_OK) {
		rc = store_fail(s, src, "claiming", err);
		goto out;
	}
	if (sqlite3_changes(s->db) == 1) {
		*state = EXEC_CLAIMED;
		goto out;
	}
	sqlite3_bind_text(s->st_select, 1, id, -1, SQLITE_STATIC);
	src = sqlite3_step(s->st_select);
	if (src != SQLITE_ROW) {
		/* The insert conflicted, so the row exists in this transaction. */
		rc = src == SQLITE_DONE ? cn_error_set(err, CN_EINTERNAL,
						       "execution store %s: a conflicting row "
						       "vanished inside a transaction",
						       s->path)
					: store_fail(s, src, "reading a claim", err);
		goto out;
	}
	int row_state = sqlite3_column_int(s->st_select, 0);
	long long age = (long long)now - sqlite3_column_int64(s->st_select, 3);
	if (row_state == ROW_DONE && age <= (long long)s->ttl_s) {
		rc = claim_copy_answer(s, status, body, len, err);
		*state = EXEC_DONE;
	} else if (row_state == ROW_DONE || age > (long long)s->stale_s) {
		stmt_done(s->st_select);
		if (row_state != ROW_DONE)
			log_warn("execution %s: taking over a claim %lld s old", id, age);
		rc = claim_reclaim(s, id, now, err);
		*state = EXEC_CLAIMED;
	} else {
		*state = EXEC_RUNNING;
	}
out:
	stmt_done(s->st_select);
	return tx_end(s, rc, err);
}

static long long monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long long ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int exec_store_claim(struct exec_store *s, const char *id, uint32_t wait_ms, enum exec_claim *state,
		     int *status, char **body, size_t *len, struct cn_error *err)
{
	*body = NULL;
	*len = 0;
	*status = 0;
	if (!id_valid(id))
		return id_error(err);
	long long deadline = monotonic_ms() + wait_ms;
	for (;;) {
		pthread_mutex_lock(&s->lock);
		int rc = claim_once(s, id, state, status, body, len, err);
		pthread_mutex_unlock(&s->lock);
		if (rc || *state != EXEC_RUNNING)
			return rc;
		long long left = deadline - monotonic_ms();
		if (left <= 0)
			return CN_OK;
		/* Not holding the lock: the holder can finish meanwhile. */
		sleep_ms(left < STORE_POLL_MS ? left : STORE_POLL_MS);
	}
}

int exec_store_finish(struct exec_store *s, const char *id, int status, const char *body, size_t len,
		      struct cn_error *err)
{
	if (!id_valid(id))
		return id_error(err);
	if (!body && len)
		return cn_error_set(err, CN_EINVAL, "execution answer has a length but no body");
	pthread_mutex_lock(&s->lock);
	time_t now = s->now();
	sqlite3_stmt *st = s->st_finish;
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, status);
	sqlite3_bind_blob64(st, 3, body ? body : "", (sqlite3_uint64)len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)now);
	int src = stmt_run(st);
	int rc = CN_OK;
	if (src != SQLITE_OK)
		rc = store_fail(s, src, "storing an answer", err);
	else if (sqlite3_changes(s->db) == 0)
		log_warn("execution %s was answered already; the first answer is kept", id);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int exec_store_release(struct exec_store *s, const char *id, struct cn_error *err)
{
	if (!id_valid(id))
		return id_error(err);
	pthread_mutex_lock(&s->lock);
	sqlite3_bind_text(s->st_release, 1, id, -1, SQLITE_STATIC);
	int src = stmt_run(s->st_release);
	int rc = src == SQLITE_OK ? CN_OK : store_fail(s, src, "releasing a claim", err);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int exec_store_expire(struct exec_store *s, time_t now, uint64_t *removed, struct cn_error *err)
{
	if (removed)
		*removed = 0;
	pthread_mutex_lock(&s->lock);
	sqlite3_bind_int64(s->st_expire, 1, (sqlite3_int64)now - (sqlite3_int64)s->ttl_s);
	int src = stmt_run(s->st_expire);
	int rc = CN_OK;
	if (src != SQLITE_OK)
		rc = store_fail(s, src, "expiring answers", err);
	else if (removed)
		*removed = (uint64_t)sqlite3_changes(s->db);
	pthread_mutex_unlock(&s->lock);
	return rc;
}
