/*
 * execution_store.c - answers by execution_id: claims and fresh answers in
 * memory, answers kept in a SQLite file (WAL, synchronous=NORMAL,
 * locking_mode=EXCLUSIVE) written by one background thread.
 *
 * Memory: a chained hash table of entries keyed by id, under `mu`, with the
 * condition variable `changed` for requests waiting on a running claim.
 * An entry is RUNNING (claimed, not answered) or DONE (answered). A DONE
 * entry is either queued for the writer, or "clean": a copy of a row just
 * read from SQLite, kept only while other requests wait for it. The writer
 * takes the whole queue, writes it in one transaction and then drops the
 * written entries from memory, so a later replay reads SQLite.
 *
 * Lifetime: an entry is freed when it is neither in the table, nor queued
 * (the writer reads queued entries without `mu`, so nobody changes them),
 * nor referenced by a thread that waits or looks it up with `mu` released.
 *
 * SQLite: one connection under `db_mu`; `mu` is never held while taking
 * `db_mu`. Table executions(id, state 0 running / 1 done, status, body,
 * created_at, updated_at); only done rows are written now (state 0 rows of
 * older versions read as absent and are replaced).
 *
 * Ages: a done answer is expired when now - answered > ttl_s; a running
 * claim is stale when now - claimed > stale_s. An expired answer is treated
 * as absent, a stale claim is taken over.
 *
 * A late exec_store_finish() by a request whose claim was taken over keeps
 * the answer stored first, so every retry sees the same bytes.
 *
 * Audit records (table audit) have a queue of their own under `mu`, which
 * the writer takes together with the answers' and writes in the same
 * transaction; they leave memory once written.
 */
#include "execution_store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"
#include "metrics.h"
#include "state_pg.h"

#define STORE_DEFAULT_STALE_S 120
#define STORE_BUCKETS_MIN 1024
/* Past these, finish() writes synchronously instead of queueing. */
#define STORE_QUEUE_MAX_ENTRIES 10000
#define STORE_QUEUE_MAX_BYTES (64u << 20)
#define STORE_EXPIRE_BATCH 500
#define AUDIT_QUERY_CHUNK 256 /* rows read per hold of the connection */
#define STORE_STR_(x) #x
#define STORE_STR(x) STORE_STR_(x)
#define STORE_RETRY_MS 1000
#define STORE_LINGER_MS 10 /* the writer gathers answers this long: one commit for many */
/* Write attempts after close() was asked, before queued answers are given up. */
#define STORE_STOP_TRIES 3

enum entry_state { ENTRY_RUNNING, ENTRY_DONE };

/* An audit record queued for the writer, its strings in the same allocation. */
struct audit_item {
	struct audit_item *next;
	size_t size; /* of the strings */
	struct audit_record rec;
	char strings[];
};

struct entry {
	struct entry *next;  /* hash chain */
	struct entry *qnext; /* write queue */
	uint64_t hash;
	uint64_t claim_no; /* changes at every (re)claim */
	enum entry_state state;
	bool in_table;
	bool queued; /* owned by the write queue: nobody else changes it */
	bool clean;  /* DONE copy of a stored row, kept while requests wait for it */
	unsigned refs;
	int status;
	char *body; /* owned; DONE only */
	size_t len;
	time_t claimed;
	time_t answered;
	char id[]; /* NUL-terminated */
};

struct exec_store {
	pthread_mutex_t mu;	/* guards the fields below down to `now` */
	pthread_cond_t changed; /* an entry changed state or left the table */
	pthread_cond_t work;	/* the writer has something to do */
	pthread_cond_t written; /* the writer finished an attempt */
	struct entry **buckets;
	size_t nbuckets;
	size_t nentries;
	uint64_t claims;
	struct entry *qhead, *qtail;
	long long q_since_ms; /* when the queue last became non-empty */
	size_t pending_n;     /* queued or being written */
	size_t pending_bytes; /* their bodies */
	size_t max_pending_n;
	size_t max_pending_bytes;
	struct audit_item *aqhead, *aqtail; /* audit records for the writer */
	size_t audit_pending_n;     /* queued or being written */
	size_t audit_pending_bytes; /* their strings */
	uint64_t enq_seq;     /* answers and audit records queued so far */
	uint64_t attempt_seq; /* enq_seq when the writer took its last batch */
	bool stop;
	bool hold; /* test hook: the writer takes nothing */
	bool writer_started;
	pthread_t writer;
	time_t (*now)(void);

	pthread_mutex_t db_mu; /* guards db and the statements */
	atomic_int db_waiting; /* threads other than expire() waiting for db_mu */
	_Atomic uint64_t stored; /* rows of executions: counted at open, then kept */
	sqlite3 *db;
	sqlite3_stmt *st_get;
	sqlite3_stmt *st_put;
	sqlite3_stmt *st_begin;
	sqlite3_stmt *st_commit;
	sqlite3_stmt *st_rollback;
	sqlite3_stmt *st_expire;
	sqlite3_stmt *st_audit_put;
	sqlite3_stmt *st_audit_prune;
	sqlite3_stmt *st_audit_query;

	char *path;
	struct state_pg *pg; /* state.backend postgres: every call goes there (state_pg.h) */
	uint32_t ttl_s;
	uint32_t stale_s;
	bool mu_init, db_mu_init;
};


static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS executions ("
    " id TEXT PRIMARY KEY,"
    " state INTEGER NOT NULL,"
    " status INTEGER NOT NULL,"
    " body BLOB,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS executions_updated_at ON executions(updated_at);"
    "CREATE TABLE IF NOT EXISTS schema_snapshots ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " source TEXT NOT NULL,"
    " taken_at INTEGER NOT NULL,"
    " checked_at INTEGER NOT NULL,"
    " baseline INTEGER NOT NULL,"
    " schema BLOB NOT NULL,"
    " diff BLOB,"
    " drift BLOB);"
    "CREATE INDEX IF NOT EXISTS schema_snapshots_source ON schema_snapshots(source, id);"
    "CREATE TABLE IF NOT EXISTS audit ("
    " id INTEGER PRIMARY KEY,"
    " at INTEGER NOT NULL," /* unix ms */
    " execution_id TEXT,"
    " assistant_id TEXT,"
    " room_id TEXT,"
    " tool TEXT,"
    " source TEXT,"
    " fingerprint TEXT,"
    " statement TEXT,"
    " row_count INTEGER,"
    " bytes INTEGER NOT NULL,"
    " status INTEGER NOT NULL,"
    " code TEXT,"
    " duration_us INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS audit_at ON audit(at);";

static const char get_sql[] = "SELECT state, status, body, updated_at FROM executions WHERE id = ?1";
/* Store an answer; a done row that has not expired keeps its first answer. */
static const char put_sql[] =
    "INSERT INTO executions(id, state, status, body, created_at, updated_at)"
    " VALUES (?1, 1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO UPDATE SET state = 1,"
    " status = excluded.status, body = excluded.body, created_at = excluded.created_at,"
    " updated_at = excluded.updated_at WHERE executions.state = 0 OR executions.updated_at < ?6";
static const char expire_sql[] =
    "DELETE FROM executions WHERE rowid IN"
    " (SELECT rowid FROM executions WHERE updated_at < ?1 LIMIT " STORE_STR(STORE_EXPIRE_BATCH) ")";

#define AUDIT_COLUMNS                                                                             \
	"at, execution_id, assistant_id, room_id, tool, source, fingerprint, statement, row_count, " \
	"bytes, status, code, duration_us"
static const char audit_put_sql[] = "INSERT INTO audit(" AUDIT_COLUMNS ")"
				    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";
static const char audit_prune_sql[] =
    "DELETE FROM audit WHERE id IN"
    " (SELECT id FROM audit WHERE at < ?1 LIMIT " STORE_STR(STORE_EXPIRE_BATCH) ")";
/* (at, id) after the cursor, oldest first: the index on at holds the rowid.
 * The filter is applied in C, so that one chunk reads a bounded number of
 * rows however few of them match. */
static const char audit_query_sql[] =
    "SELECT id, " AUDIT_COLUMNS " FROM audit WHERE (at, id) > (?1, ?2)"
    " ORDER BY at, id LIMIT " STORE_STR(AUDIT_QUERY_CHUNK);

static time_t clock_default(void)
{
	return time(NULL);
}

/* Fill err from the connection's last error (read it before any other call).
 * Call with db_mu held, or before the store is shared. */
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
	/* The store holds the file's lock from open to close, so a busy file
	 * is held by someone else. */
	if (primary == SQLITE_BUSY)
		return cn_error_set(err, CN_EBUSY,
				    "execution store %s is in use by another connector process (%s): "
				    "each connector process needs its own state file (state.path)",
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

static long long monotonic_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static long long monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait on cv until woken or until the monotonic deadline (ms). */
static void cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, long long deadline_ms)
{
	struct timespec ts = {.tv_sec = (time_t)(deadline_ms / 1000),
			      .tv_nsec = (long)(deadline_ms % 1000) * 1000000L};
	pthread_cond_timedwait(cv, mu, &ts);
}

/* Take db_mu (all but expire()): expire() lets such threads go first. */
static void db_lock(struct exec_store *s)
{
	atomic_fetch_add(&s->db_waiting, 1);
	pthread_mutex_lock(&s->db_mu);
	atomic_fetch_sub(&s->db_waiting, 1);
}

static void db_unlock(struct exec_store *s)
{
	pthread_mutex_unlock(&s->db_mu);
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

/* ---- the memory table (all with mu held) ------------------------------ */

static uint64_t id_hash(const char *id)
{
	uint64_t h = 14695981039346656037ull; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return h;
}

static struct entry *table_find(struct exec_store *s, const char *id, uint64_t hash)
{
	for (struct entry *e = s->buckets[hash & (s->nbuckets - 1)]; e; e = e->next)
		if (e->hash == hash && strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

/* Double the buckets; on allocation failure keep the longer chains. */
static void table_grow(struct exec_store *s)
{
	size_t n = s->nbuckets * 2;
	struct entry **b = calloc(n, sizeof *b);
	if (!b)
		return;
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct entry *e = s->buckets[i];
		while (e) {
			struct entry *next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
			e = next;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
}

static void table_insert(struct exec_store *s, struct entry *e)
{
	if (s->nentries >= s->nbuckets)
		table_grow(s);
	struct entry **head = &s->buckets[e->hash & (s->nbuckets - 1)];
	e->next = *head;
	*head = e;
	e->in_table = true;
	s->nentries++;
}

static void entry_free_if_unused(struct entry *e)
{
	if (e->in_table || e->queued || e->refs)
		return;
	free(e->body);
	free(e);
}

/* Take e out of the table; free it unless the writer or a waiter holds it. */
static void table_remove(struct exec_store *s, struct entry *e)
{
	if (e->in_table) {
		struct entry **p = &s->buckets[e->hash & (s->nbuckets - 1)];
		while (*p != e)
			p = &(*p)->next;
		*p = e->next;
		e->next = NULL;
		e->in_table = false;
		s->nentries--;
	}
	entry_free_if_unused(e);
}

/* A new RUNNING entry for id, in the table. NULL when out of memory. */
static struct entry *entry_claim_new(struct exec_store *s, const char *id, uint64_t hash, time_t now)
{
	size_t n = strlen(id);
	struct entry *e = calloc(1, sizeof *e + n + 1);
	if (!e)
		return NULL;
	memcpy(e->id, id, n + 1);
	e->hash = hash;
	e->state = ENTRY_RUNNING;
	e->claim_no = ++s->claims;
	e->claimed = now;
	table_insert(s, e);
	return e;
}

static bool entry_expired(const struct exec_store *s, const struct entry *e, time_t now)
{
	return (long long)now - (long long)e->answered > (long long)s->ttl_s;
}

/* Copy a DONE entry's answer for the caller (NUL-terminated). */
static int entry_copy_answer(const struct entry *e, int *status, char **body, size_t *len,
			     struct cn_error *err)
{
	char *copy = malloc(e->len + 1);
	if (!copy)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	if (e->len)
		memcpy(copy, e->body, e->len);
	copy[e->len] = '\0';
	*status = e->status;
	*body = copy;
	*len = e->len;
	return CN_OK;
}

/* Something is about to be queued (mu held): the first thing of an idle
 * spell starts the writer's countdown. */
static void queue_wake(struct exec_store *s)
{
	s->enq_seq++;
	if (s->qhead || s->aqhead)
		return; /* the writer is already counting down for this batch */
	s->q_since_ms = monotonic_ms();
	pthread_cond_signal(&s->work);
}

static void queue_push(struct exec_store *s, struct entry *e)
{
	queue_wake(s);
	e->queued = true;
	e->qnext = NULL;
	s->pending_n++;
	s->pending_bytes += e->len;
	if (s->qtail)
		s->qtail->qnext = e;
	else
		s->qhead = e;
	s->qtail = e;
}

static void audit_push(struct exec_store *s, struct audit_item *it)
{
	queue_wake(s);
	it->next = NULL;
	s->audit_pending_n++;
	s->audit_pending_bytes += it->size;
	if (s->aqtail)
		s->aqtail->next = it;
	else
		s->aqhead = it;
	s->aqtail = it;
}

/* ---- SQLite (all with db_mu held) ------------------------------------- */

/* Read id's answer. a->found is false for no row, a running row of an older
 * version, or an expired answer. */
struct stored_answer {
	bool found;
	int status;
	char *body; /* malloc'ed, NUL-terminated */
	size_t len;
	time_t answered;
};

static int db_get(struct exec_store *s, const char *id, time_t now, struct stored_answer *a,
		  struct cn_error *err)
{
	sqlite3_stmt *st = s->st_get;
	*a = (struct stored_answer){0};
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	int rc = CN_OK;
	int src = sqlite3_step(st);
	if (src == SQLITE_DONE)
		goto out;
	if (src != SQLITE_ROW) {
		rc = store_fail(s, src, "reading an answer", err);
		goto out;
	}
	sqlite3_int64 answered = sqlite3_column_int64(st, 3);
	if (sqlite3_column_int(st, 0) != 1 || (long long)now - answered > (long long)s->ttl_s)
		goto out;
	const void *blob = sqlite3_column_blob(st, 2);
	size_t n = (size_t)sqlite3_column_bytes(st, 2);
	if (!blob && n == 0 && sqlite3_errcode(s->db) == SQLITE_NOMEM) {
		rc = store_fail(s, SQLITE_NOMEM, "reading an answer", err);
		goto out;
	}
	char *copy = malloc(n + 1);
	if (!copy) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto out;
	}
	if (n)
		memcpy(copy, blob, n);
	copy[n] = '\0';
	a->status = sqlite3_column_int(st, 1);
	a->body = copy;
	a->len = n;
	a->answered = (time_t)answered;
	a->found = true;
out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

/* One answer, in the current transaction or its own; *inserted counts a
 * new row (an upsert that replaced an expired one adds none). */
static int db_put(struct exec_store *s, const struct entry *e, uint64_t *inserted,
		  struct cn_error *err)
{
	sqlite3_stmt *st = s->st_put;
	int rc = sqlite3_bind_text(st, 1, e->id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc =
		    sqlite3_bind_blob64(st, 3, e->body ? e->body : "", (sqlite3_uint64)e->len, SQLITE_STATIC);
	if (rc != SQLITE_OK) {
		/* Read the message before the reset clears it. */
		int code = store_fail(s, rc, "storing an answer", err);
		sqlite3_clear_bindings(st);
		return code;
	}
	sqlite3_bind_int(st, 2, e->status);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)e->claimed);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)e->answered);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)e->answered - (sqlite3_int64)s->ttl_s);
	/* an upsert's update leaves the last insert rowid alone */
	sqlite3_set_last_insert_rowid(s->db, 0);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		*inserted += sqlite3_last_insert_rowid(s->db) != 0;
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		return CN_OK;
	}
	int code = store_fail(s, rc, "storing an answer", err);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return code;
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
	return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* One audit record, in the current transaction or its own. */
static int db_audit_put(struct exec_store *s, const struct audit_record *r, struct cn_error *err)
{
	sqlite3_stmt *st = s->st_audit_put;
	const char *texts[] = {r->execution_id, r->assistant_id, r->room_id, r->tool,
			       r->source,       r->fingerprint,  r->statement};
	int src = sqlite3_bind_int64(st, 1, r->at_ms);
	for (int i = 0; src == SQLITE_OK && i < 7; i++)
		src = bind_text(st, 2 + i, texts[i]);
	if (src == SQLITE_OK)
		src = r->rows >= 0 ? sqlite3_bind_int64(st, 9, r->rows) : sqlite3_bind_null(st, 9);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 10, r->bytes);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int(st, 11, r->status);
	if (src == SQLITE_OK)
		src = bind_text(st, 12, r->code);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 13, r->duration_us);
	if (src == SQLITE_OK) {
		src = sqlite3_step(st);
		if (src == SQLITE_DONE)
			src = SQLITE_OK;
	}
	int rc = src == SQLITE_OK ? CN_OK : store_fail(s, src, "storing an audit record", err);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

static size_t audit_count(const struct audit_item *it)
{
	size_t n = 0;
	for (; it; it = it->next)
		n++;
	return n;
}

/* Write the batch (linked by qnext) and the audit records in one transaction. */
static int db_put_batch(struct exec_store *s, struct entry *batch, struct audit_item *audit,
			struct cn_error *err)
{
	long long start = monotonic_us();
	int src = stmt_run(s->st_begin);
	if (src != SQLITE_OK)
		return store_fail(s, src, "beginning a transaction", err);
	int rc = CN_OK;
	uint64_t inserted = 0;
	for (struct entry *e = batch; e && rc == CN_OK; e = e->qnext)
		rc = db_put(s, e, &inserted, err);
	for (struct audit_item *it = audit; it && rc == CN_OK; it = it->next)
		rc = db_audit_put(s, &it->rec, err);
	if (rc == CN_OK) {
		src = stmt_run(s->st_commit);
		if (src == SQLITE_OK) {
			atomic_fetch_add(&s->stored, inserted);
			metrics_store_write((double)(monotonic_us() - start) / 1e6);
			return CN_OK;
		}
		rc = store_fail(s, src, "committing answers", err);
	}
	if (!sqlite3_get_autocommit(s->db))
		stmt_run(s->st_rollback);
	return rc;
}

/* ---- the writer thread ------------------------------------------------- */

static size_t batch_count(const struct entry *batch)
{
	size_t n = 0;
	for (; batch; batch = batch->qnext)
		n++;
	return n;
}

/* After a commit, or when giving up: the audit records leave memory (mu held). */
static void audit_release(struct exec_store *s, struct audit_item *audit)
{
	while (audit) {
		struct audit_item *it = audit;
		audit = it->next;
		s->audit_pending_n--;
		s->audit_pending_bytes -= it->size;
		free(it);
	}
}

/* After a commit, or when giving up: the batch leaves memory (mu held). */
static void batch_release(struct exec_store *s, struct entry *batch)
{
	while (batch) {
		struct entry *e = batch;
		batch = e->qnext;
		e->qnext = NULL;
		e->queued = false;
		s->pending_n--;
		s->pending_bytes -= e->len;
		table_remove(s, e);
	}
}

/* Put a batch that failed back in front of the queues (mu held). */
static void batch_requeue(struct exec_store *s, struct entry *batch, struct audit_item *audit)
{
	if (audit) {
		struct audit_item *alast = audit;
		while (alast->next)
			alast = alast->next;
		alast->next = s->aqhead;
		if (!s->aqhead)
			s->aqtail = alast;
		s->aqhead = audit;
	}
	if (!batch)
		return;
	struct entry *last = batch;
	while (last->qnext)
		last = last->qnext;
	last->qnext = s->qhead;
	if (!s->qhead)
		s->qtail = last;
	s->qhead = batch;
}

/* Wait (mu held) until there is a batch of answers or audit records to
 * write; false when stopping with nothing left. retry_at_ms delays the next
 * attempt after a failure. */
static bool writer_take(struct exec_store *s, long long retry_at_ms, struct entry **batch,
			struct audit_item **audit)
{
	for (;;) {
		long long at = s->q_since_ms + STORE_LINGER_MS;
		if (at < retry_at_ms)
			at = retry_at_ms;
		bool any = s->qhead || s->aqhead;
		bool ready = any && (s->stop || (!s->hold && monotonic_ms() >= at));
		if (ready)
			break;
		if (s->stop && !any)
			return false;
		if (any && !s->hold && !s->stop)
			cond_wait_until(&s->work, &s->mu, at);
		else
			pthread_cond_wait(&s->work, &s->mu);
	}
	*batch = s->qhead;
	*audit = s->aqhead;
	s->qhead = s->qtail = NULL;
	s->aqhead = s->aqtail = NULL;
	return true;
}

/* A batch could not be written (mu held): keep it for the next attempt, or
 * give it up when close() is waiting and it failed STORE_STOP_TRIES times. */
static void writer_failed(struct exec_store *s, struct entry *batch, struct audit_item *audit,
			  const struct cn_error *err, unsigned *stop_failures, long long *retry_at)
{
	size_t n = batch_count(batch), na = audit_count(audit);
	if (s->stop && ++*stop_failures >= STORE_STOP_TRIES) {
		log_error("%s; %zu answer(s) are lost: their retries will run again; %zu audit record(s) "
			  "are lost", err->message, n, na);
		batch_release(s, batch);
		audit_release(s, audit);
		metrics_audit_dropped(na);
		return;
	}
	if (s->stop)
		log_error("%s; %zu answer(s) and %zu audit record(s) stay in memory, retrying before "
			  "closing", err->message, n, na);
	else
		log_error("%s; %zu answer(s) and %zu audit record(s) stay in memory, retrying in %d ms",
			  err->message, n, na, STORE_RETRY_MS);
	batch_requeue(s, batch, audit);
	*retry_at = monotonic_ms() + STORE_RETRY_MS;
}

/* Group commit: whatever was queued while the last batch was written, or in
 * the STORE_LINGER_MS after the first answer of an idle spell, goes in the
 * next transaction. */
static void *writer_main(void *arg)
{
	struct exec_store *s = arg;
	unsigned stop_failures = 0;
	long long retry_at = 0;
	pthread_mutex_lock(&s->mu);
	struct entry *batch;
	struct audit_item *audit;
	while (writer_take(s, retry_at, &batch, &audit)) {
		uint64_t last_seq = s->enq_seq;
		pthread_mutex_unlock(&s->mu);
		struct cn_error err = {0};
		db_lock(s);
		int rc = db_put_batch(s, batch, audit, &err);
		db_unlock(s);
		pthread_mutex_lock(&s->mu);
		s->attempt_seq = last_seq;
		if (rc == CN_OK) {
			metrics_audit_written(audit_count(audit));
			batch_release(s, batch);
			audit_release(s, audit);
		} else {
			writer_failed(s, batch, audit, &err, &stop_failures, &retry_at);
		}
		pthread_cond_broadcast(&s->written);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* Wait until the writer tried everything queued before this call (mu held). */
static void store_flush_locked(struct exec_store *s)
{
	uint64_t target = s->enq_seq;
	while (s->attempt_seq < target && s->writer_started && !s->stop)
		pthread_cond_wait(&s->written, &s->mu);
}

void exec_store_flush(struct exec_store *s)
{
	if (s->pg) {
		state_pg_flush(s->pg);
		return;
	}
	pthread_mutex_lock(&s->mu);
	store_flush_locked(s);
	pthread_mutex_unlock(&s->mu);
}

/* ---- opening ----------------------------------------------------------- */

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
 * it; SQLite gives the -wal file the same permissions. */
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

/* Exclusive locking first: entering WAL then keeps the WAL index in heap
 * memory and takes the file's lock until close, so a second process fails
 * here with SQLITE_BUSY (no busy timeout: nobody else may hold it). */
/* How many answers the file holds, once at open (the metrics keep it after). */
static int store_count(struct exec_store *s, struct cn_error *err)
{
	sqlite3_stmt *st;
	int src = sqlite3_prepare_v2(s->db, "SELECT count(*) FROM executions", -1, &st, NULL);
	if (src != SQLITE_OK)
		return store_fail(s, src, "counting answers", err);
	src = sqlite3_step(st);
	if (src == SQLITE_ROW)
		atomic_store(&s->stored, (uint64_t)sqlite3_column_int64(st, 0));
	sqlite3_finalize(st);
	return src == SQLITE_ROW ? CN_OK : store_fail(s, src, "counting answers", err);
}

static int store_setup(struct exec_store *s, struct cn_error *err)
{
	bool is_wal = false;
	int rc = store_exec(s, "PRAGMA locking_mode=EXCLUSIVE", "setting exclusive locking", err);
	if (rc)
		return rc;
	int src = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", wal_callback, &is_wal, NULL);
	if (src != SQLITE_OK)
		return store_fail(s, src, "setting WAL mode", err);
	if (!is_wal)
		return cn_error_set(err, CN_EIO,
				    "execution store %s: the file system does not support WAL mode", s->path);
	rc = store_exec(s, "PRAGMA synchronous=NORMAL", "setting synchronous=NORMAL", err);
	if (rc == CN_OK)
		rc = store_exec(s, "BEGIN EXCLUSIVE; COMMIT", "locking the file", err);
	if (rc == CN_OK)
		rc = store_exec(s, schema_sql, "creating the executions table", err);
	const struct {
		const char *sql;
		sqlite3_stmt **st;
	} stmts[] = {
	    {get_sql, &s->st_get},     {put_sql, &s->st_put},	      {"BEGIN", &s->st_begin},
	    {"COMMIT", &s->st_commit}, {"ROLLBACK", &s->st_rollback}, {expire_sql, &s->st_expire},
	    {audit_put_sql, &s->st_audit_put}, {audit_prune_sql, &s->st_audit_prune},
	    {audit_query_sql, &s->st_audit_query},
	};
	for (size_t i = 0; rc == CN_OK && i < sizeof stmts / sizeof stmts[0]; i++) {
		src =
		    sqlite3_prepare_v3(s->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, stmts[i].st, NULL);
		if (src != SQLITE_OK)
			rc = store_fail(s, src, "the executions table has an unexpected shape", err);
	}
	return rc == CN_OK ? store_count(s, err) : rc;
}

static int store_init_sync(struct exec_store *s, struct cn_error *err)
{
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) != 0)
		return cn_error_set(err, CN_ENOMEM, "cannot create a condition variable");
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int ok = pthread_mutex_init(&s->mu, NULL) == 0;
	if (ok && (pthread_cond_init(&s->changed, &ca) != 0 || pthread_cond_init(&s->work, &ca) != 0 ||
		   pthread_cond_init(&s->written, &ca) != 0)) {
		pthread_mutex_destroy(&s->mu);
		ok = 0;
	}
	pthread_condattr_destroy(&ca);
	if (!ok)
		return cn_error_set(err, CN_ENOMEM, "cannot create a mutex");
	s->mu_init = true;
	if (pthread_mutex_init(&s->db_mu, NULL) != 0)
		return cn_error_set(err, CN_ENOMEM, "cannot create a mutex");
	s->db_mu_init = true;
	return CN_OK;
}

static int store_open_db(struct exec_store *s, struct cn_error *err)
{
	int rc = ensure_parent_dir(s->path, err);
	if (rc == CN_OK)
		rc = ensure_file(s->path, err);
	if (rc)
		return rc;
	int src = sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (src != SQLITE_OK)
		return store_fail(s, src, "cannot open", err);
	return store_setup(s, err);
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
	s->ttl_s = opts && opts->ttl_s ? opts->ttl_s : EXEC_STORE_TTL_S;
	s->stale_s = opts && opts->stale_s ? opts->stale_s : STORE_DEFAULT_STALE_S;
	s->now = clock_default;
	s->max_pending_n = STORE_QUEUE_MAX_ENTRIES;
	s->max_pending_bytes = STORE_QUEUE_MAX_BYTES;
	atomic_init(&s->db_waiting, 0);
	s->path = strdup(path);
	s->nbuckets = STORE_BUCKETS_MIN;
	s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
	int rc = CN_OK;
	if (!s->path || !s->buckets)
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
	if (rc == CN_OK && opts && opts->dsn)
		rc = state_pg_open(opts->dsn, opts->pool, s->ttl_s, s->stale_s, &s->pg, err);
	else if (rc == CN_OK)
		rc = store_init_sync(s, err);
	if (rc == CN_OK && !s->pg)
		rc = store_open_db(s, err);
	if (rc == CN_OK && !s->pg) {
		if (pthread_create(&s->writer, NULL, writer_main, s) != 0)
			rc = cn_error_set(err, CN_ENOMEM,
					  "execution store %s: cannot start its writer thread", path);
		else
			s->writer_started = true;
	}
	if (rc) {
		exec_store_close(s);
		return rc;
	}
	*out = s;
	return CN_OK;
}

static void store_free_entries(struct exec_store *s)
{
	for (size_t i = 0; s->buckets && i < s->nbuckets; i++) {
		struct entry *e = s->buckets[i];
		while (e) {
			struct entry *next = e->next;
			free(e->body);
			free(e);
			e = next;
		}
	}
	free(s->buckets);
}

void exec_store_close(struct exec_store *s)
{
	if (!s)
		return;
	state_pg_close(s->pg);
	if (s->writer_started) {
		pthread_mutex_lock(&s->mu);
		s->stop = true;
		pthread_cond_signal(&s->work);
		pthread_cond_broadcast(&s->written);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->writer, NULL);
	}
	sqlite3_finalize(s->st_get);
	sqlite3_finalize(s->st_put);
	sqlite3_finalize(s->st_begin);
	sqlite3_finalize(s->st_commit);
	sqlite3_finalize(s->st_rollback);
	sqlite3_finalize(s->st_expire);
	sqlite3_finalize(s->st_audit_put);
	sqlite3_finalize(s->st_audit_prune);
	sqlite3_finalize(s->st_audit_query);
	sqlite3_close_v2(s->db);
	/* The writer released every queued entry; what is left is in the table. */
	store_free_entries(s);
	if (s->mu_init) {
		pthread_cond_destroy(&s->changed);
		pthread_cond_destroy(&s->work);
		pthread_cond_destroy(&s->written);
		pthread_mutex_destroy(&s->mu);
	}
	if (s->db_mu_init)
		pthread_mutex_destroy(&s->db_mu);
	free(s->path);
	free(s);
}

void exec_store_stats(struct exec_store *s, struct exec_store_stats *out)
{
	if (s->pg) {
		state_pg_stats(s->pg, out);
		return;
	}
	memset(out, 0, sizeof *out);
	out->entries = atomic_load(&s->stored);
	pthread_mutex_lock(&s->mu);
	out->pending = s->pending_n;
	pthread_mutex_unlock(&s->mu);
	static const char *const suffixes[] = {"", "-wal"};
	for (size_t i = 0; i < 2; i++) {
		char path[4096];
		struct stat sb;
		snprintf(path, sizeof path, "%s%s", s->path, suffixes[i]);
		if (stat(path, &sb) == 0)
			out->file_bytes += (uint64_t)sb.st_size;
	}
}

bool exec_store_reachable(struct exec_store *s, char *why, size_t n)
{
	return s->pg ? state_pg_reachable(s->pg, why, n) : true;
}

const char *exec_store_backend(const struct exec_store *s)
{
	return s->pg ? "postgres" : "sqlite";
}

void exec_store_set_clock(struct exec_store *s, time_t (*now)(void))
{
	if (s->pg) {
		state_pg_set_clock(s->pg, now);
		return;
	}
	pthread_mutex_lock(&s->mu);
	s->now = now ? now : clock_default;
	pthread_mutex_unlock(&s->mu);
}

/* ---- claiming ---------------------------------------------------------- */

struct claim_out {
	enum exec_claim *state;
	int *status;
	char **body;
	size_t *len;
};

/* e is our fresh RUNNING placeholder: look id up in SQLite with mu released.
 * Returns 1 when the claim is decided (rc in *rc), 0 to look at the table
 * again (someone changed the entry meanwhile). mu held on entry and exit. */
static int claim_lookup(struct exec_store *s, struct entry *e, time_t now, const struct claim_out *o, int *rc,
			struct cn_error *err)
{
	uint64_t claim_no = e->claim_no;
	struct stored_answer a;
	e->refs++;
	pthread_mutex_unlock(&s->mu);
	db_lock(s);
	*rc = db_get(s, e->id, now, &a, err);
	db_unlock(s);
	pthread_mutex_lock(&s->mu);
	e->refs--;
	if (!e->in_table || e->state != ENTRY_RUNNING || e->claim_no != claim_no) {
		free(a.body);
		entry_free_if_unused(e);
		*rc = CN_OK;
		return 0;
	}
	if (!a.found) {
		if (*rc) {
			table_remove(s, e);
			pthread_cond_broadcast(&s->changed);
		} else {
			*o->state = EXEC_CLAIMED; /* waiters keep waiting on e */
		}
		return 1;
	}
	/* Answered before: waiters copy it from memory, the last one drops it. */
	*o->state = EXEC_DONE;
	*o->status = a.status;
	*o->len = a.len;
	*o->body = a.body;
	e->body = e->refs ? malloc(a.len + 1) : NULL;
	if (e->body) {
		memcpy(e->body, a.body, a.len + 1);
		e->len = a.len;
		e->state = ENTRY_DONE;
		e->clean = true;
		e->status = a.status;
		e->answered = a.answered;
	} else {
		table_remove(s, e); /* nobody waits, or they read SQLite themselves */
	}
	pthread_cond_broadcast(&s->changed);
	return 1;
}

/* id's entry is DONE: copy it, or treat an expired answer as absent.
 * Returns 1 when decided. */
static int claim_done(struct exec_store *s, struct entry *e, time_t now, const struct claim_out *o, int *rc,
		      struct cn_error *err)
{
	if (entry_expired(s, e, now)) {
		/* The writer still owns a queued entry; a fresh claim replaces it. */
		table_remove(s, e);
		return 0;
	}
	*rc = entry_copy_answer(e, o->status, o->body, o->len, err);
	*o->state = EXEC_DONE;
	if (*rc == CN_OK && e->clean && e->refs == 0)
		table_remove(s, e);
	return 1;
}

int exec_store_claim(struct exec_store *s, const char *id, uint32_t wait_ms, enum exec_claim *state,
		     int *status, char **body, size_t *len, struct cn_error *err)
{
	*body = NULL;
	*len = 0;
	*status = 0;
	if (!id_valid(id))
		return id_error(err);
	if (s->pg)
		return state_pg_claim(s->pg, id, wait_ms, state, status, body, len, err);
	const struct claim_out o = {state, status, body, len};
	long long deadline = monotonic_ms() + wait_ms;
	uint64_t hash = id_hash(id);
	int rc = CN_OK;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		time_t now = s->now();
		struct entry *e = table_find(s, id, hash);
		if (!e) {
			e = entry_claim_new(s, id, hash, now);
			if (!e) {
				rc = cn_error_set(err, CN_ENOMEM, "out of memory");
				break;
			}
			if (claim_lookup(s, e, now, &o, &rc, err))
				break;
			continue;
		}
		if (e->state == ENTRY_DONE) {
			if (claim_done(s, e, now, &o, &rc, err))
				break;
			continue;
		}
		long long age = (long long)now - (long long)e->claimed;
		if (age > (long long)s->stale_s) {
			log_warn("execution %s: taking over a claim %lld s old", id, age);
			e->claim_no = ++s->claims;
			e->claimed = now;
			*state = EXEC_CLAIMED;
			break;
		}
		if (monotonic_ms() >= deadline) {
			*state = EXEC_RUNNING;
			break;
		}
		e->refs++;
		cond_wait_until(&s->changed, &s->mu, deadline);
		e->refs--;
		entry_free_if_unused(e);
	}
	pthread_mutex_unlock(&s->mu);
	return rc;
}

/* ---- answering --------------------------------------------------------- */

/* e is RUNNING and the queue is full: store the answer now, with e DONE
 * meanwhile so that duplicates get it from memory. mu held on entry and exit. */
static int finish_sync(struct exec_store *s, struct entry *e, struct cn_error *err)
{
	e->refs++;
	pthread_cond_broadcast(&s->changed);
	pthread_mutex_unlock(&s->mu);
	db_lock(s);
	long long start = monotonic_us();
	uint64_t inserted = 0;
	int rc = db_put(s, e, &inserted, err);
	if (rc == CN_OK) {
		atomic_fetch_add(&s->stored, inserted);
		metrics_store_write((double)(monotonic_us() - start) / 1e6);
	}
	db_unlock(s);
	pthread_mutex_lock(&s->mu);
	e->refs--;
	/* Written (later replays read SQLite) or failed (a retry runs again). */
	table_remove(s, e);
	pthread_cond_broadcast(&s->changed);
	return rc;
}

/* With mu held: answer a RUNNING entry; takes body. */
static int finish_entry(struct exec_store *s, struct entry *e, int status, char *body, size_t len, time_t now,
			struct cn_error *err)
{
	e->state = ENTRY_DONE;
	e->status = status;
	e->body = body;
	e->len = len;
	e->answered = now;
	if (s->pending_n >= s->max_pending_n || s->pending_bytes + len > s->max_pending_bytes)
		return finish_sync(s, e, err);
	queue_push(s, e);
	pthread_cond_broadcast(&s->changed);
	return CN_OK;
}

int exec_store_peek(struct exec_store *s, const char *id, enum exec_seen *seen, int *status,
		    char **body, size_t *len, struct cn_error *err)
{
	*seen = EXEC_SEEN_NONE;
	*body = NULL;
	*len = 0;
	*status = 0;
	if (!id_valid(id))
		return id_error(err);
	if (s->pg)
		return state_pg_peek(s->pg, id, seen, status, body, len, err);
	int rc = CN_OK;
	pthread_mutex_lock(&s->mu);
	time_t now = s->now();
	struct entry *e = table_find(s, id, id_hash(id));
	if (e && e->state == ENTRY_RUNNING &&
	    (long long)now - (long long)e->claimed <= (long long)s->stale_s) {
		*seen = EXEC_SEEN_RUNNING;
	} else if (e && e->state == ENTRY_DONE && !entry_expired(s, e, now)) {
		rc = entry_copy_answer(e, status, body, len, err);
		if (rc == CN_OK)
			*seen = EXEC_SEEN_DONE;
	}
	pthread_mutex_unlock(&s->mu);
	if (rc || *seen != EXEC_SEEN_NONE)
		return rc;
	/* not in memory: written, or never seen */
	struct stored_answer a;
	db_lock(s);
	rc = db_get(s, id, now, &a, err);
	db_unlock(s);
	if (rc == CN_OK && a.found) {
		*seen = EXEC_SEEN_DONE;
		*status = a.status;
		*body = a.body;
		*len = a.len;
	}
	return rc;
}

void exec_store_set_stale(struct exec_store *s, uint32_t stale_s)
{
	if (s->pg) {
		state_pg_set_stale(s->pg, stale_s ? stale_s : STORE_DEFAULT_STALE_S);
		return;
	}
	pthread_mutex_lock(&s->mu);
	s->stale_s = stale_s ? stale_s : STORE_DEFAULT_STALE_S;
	pthread_mutex_unlock(&s->mu);
}

int exec_store_finish(struct exec_store *s, const char *id, int status, const char *body, size_t len,
		      struct cn_error *err)
{
	if (!id_valid(id))
		return id_error(err);
	if (!body && len)
		return cn_error_set(err, CN_EINVAL, "execution answer has a length but no body");
	if (s->pg)
		return state_pg_finish(s->pg, id, status, body, len, err);
	char *copy = malloc(len ? len : 1);
	if (!copy)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	if (len)
		memcpy(copy, body, len);
	uint64_t hash = id_hash(id);
	pthread_mutex_lock(&s->mu);
	for (;;) {
		struct entry *e = table_find(s, id, hash);
		if (e && e->state == ENTRY_RUNNING) {
			int rc = finish_entry(s, e, status, copy, len, s->now(), err);
			pthread_mutex_unlock(&s->mu);
			return rc;
		}
		if (e && !entry_expired(s, e, s->now()))
			break;
		/* No claim in memory: claim it now, so that an answer already
		 * stored is found and kept. */
		pthread_mutex_unlock(&s->mu);
		enum exec_claim st;
		int old_status;
		char *old_body;
		size_t old_len;
		int rc = exec_store_claim(s, id, 0, &st, &old_status, &old_body, &old_len, err);
		if (rc || st == EXEC_DONE) {
			free(old_body);
			free(copy);
			if (rc == CN_OK)
				log_warn("execution %s was answered already; the first answer is kept", id);
			return rc;
		}
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	free(copy);
	log_warn("execution %s was answered already; the first answer is kept", id);
	return CN_OK;
}

int exec_store_release(struct exec_store *s, const char *id, struct cn_error *err)
{
	if (!id_valid(id))
		return id_error(err);
	if (s->pg)
		return state_pg_release(s->pg, id, err);
	pthread_mutex_lock(&s->mu);
	struct entry *e = table_find(s, id, id_hash(id));
	if (e && e->state == ENTRY_RUNNING) {
		table_remove(s, e);
		pthread_cond_broadcast(&s->changed);
	}
	pthread_mutex_unlock(&s->mu);
	return CN_OK;
}

/* ---- expiry ------------------------------------------------------------ */

/* Run st (a DELETE of at most STORE_EXPIRE_BATCH rows older than ?1 =
 * cutoff) until it deletes fewer, each batch its own transaction, letting
 * the callbacks that wait for the connection go first in between; *total
 * counts the rows. count (may be NULL) is the store's count of such rows,
 * kept under db_mu as the writers keep it. */
static int delete_batches(struct exec_store *s, sqlite3_stmt *st, sqlite3_int64 cutoff, _Atomic uint64_t *count,
			  const char *what, uint64_t *total, struct cn_error *err)
{
	int rc = CN_OK;
	*total = 0;
	for (;;) {
		uint64_t n = 0;
		pthread_mutex_lock(&s->db_mu);
		sqlite3_bind_int64(st, 1, cutoff);
		int src = stmt_run(st);
		if (src != SQLITE_OK)
			rc = store_fail(s, src, what, err);
		else
			n = (uint64_t)sqlite3_changes(s->db);
		if (count) {
			uint64_t had = atomic_load(count);
			atomic_store(count, had > n ? had - n : 0);
		}
		pthread_mutex_unlock(&s->db_mu);
		*total += n;
		if (rc || n < STORE_EXPIRE_BATCH)
			return rc;
		for (int i = 0; i < 1000 && atomic_load(&s->db_waiting) > 0; i++)
			sched_yield();
	}
}

/* Drop claims and answers older than cutoff from memory (mu held); counts
 * the running claims (answers are counted where they are deleted). */
static uint64_t expire_memory(struct exec_store *s, long long cutoff)
{
	uint64_t removed = 0;
	bool any = false;
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct entry *e = s->buckets[i];
		while (e) {
			struct entry *next = e->next;
			time_t t = e->state == ENTRY_RUNNING ? e->claimed : e->answered;
			if ((long long)t < cutoff) {
				removed += e->state == ENTRY_RUNNING;
				table_remove(s, e);
				any = true;
			}
			e = next;
		}
	}
	if (any)
		pthread_cond_broadcast(&s->changed);
	return removed;
}

int exec_store_expire(struct exec_store *s, time_t now, uint64_t *removed, struct cn_error *err)
{
	if (s->pg)
		return state_pg_expire(s->pg, now, removed, err);
	uint64_t total = 0;
	sqlite3_int64 cutoff = (sqlite3_int64)now - (sqlite3_int64)s->ttl_s;
	pthread_mutex_lock(&s->mu);
	store_flush_locked(s);
	pthread_mutex_unlock(&s->mu);
	int rc = delete_batches(s, s->st_expire, cutoff, &s->stored, "expiring answers", &total, err);
	pthread_mutex_lock(&s->mu);
	total += expire_memory(s, (long long)cutoff);
	pthread_mutex_unlock(&s->mu);
	if (removed)
		*removed = total;
	return rc;
}

/* ---- the audit log ----------------------------------------------------- */

/* it, which nobody else holds, written now in its own transaction: the
 * queue is full. Frees it. */
static int audit_add_sync(struct exec_store *s, struct audit_item *it, struct cn_error *err)
{
	db_lock(s);
	int rc = db_audit_put(s, &it->rec, err);
	db_unlock(s);
	free(it);
	if (rc == CN_OK)
		metrics_audit_written(1);
	else
		metrics_audit_dropped(1);
	return rc;
}

int exec_store_audit_add(struct exec_store *s, const struct audit_record *r, struct cn_error *err)
{
	if (s->pg)
		return state_pg_audit_add(s->pg, r, err);
	size_t size = audit_record_strings(r);
	struct audit_item *it = malloc(sizeof *it + size);
	if (!it) {
		metrics_audit_dropped(1);
		return cn_error_set(err, CN_ENOMEM, "out of memory: an audit record is lost");
	}
	audit_record_pack(r, it->strings, &it->rec);
	it->rec.id = 0;
	it->size = size;
	pthread_mutex_lock(&s->mu);
	if (s->audit_pending_n >= s->max_pending_n ||
	    s->audit_pending_bytes + size > s->max_pending_bytes) {
		pthread_mutex_unlock(&s->mu);
		return audit_add_sync(s, it, err);
	}
	audit_push(s, it);
	pthread_mutex_unlock(&s->mu);
	return CN_OK;
}

int exec_store_audit_prune(struct exec_store *s, int64_t before_ms, uint64_t *removed, struct cn_error *err)
{
	if (s->pg)
		return state_pg_audit_prune(s->pg, before_ms, removed, err);
	uint64_t total = 0;
	int rc = delete_batches(s, s->st_audit_prune, before_ms, NULL, "pruning the audit log", &total, err);
	if (removed)
		*removed = total;
	return rc;
}

/* Text of column i, NULL for SQL NULL. */
static const char *column_text(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? NULL : (const char *)sqlite3_column_text(st, i);
}

/* The AUDIT_QUERY_CHUNK records after the cursor (*after_ms, *after_id),
 * which moves past them; those f selects are copied into items[*n], and
 * *read counts them all (db_mu held). */
static int audit_read_chunk(struct exec_store *s, const struct audit_filter *f, int64_t *after_ms,
			    int64_t *after_id, struct audit_item **items, size_t *n, size_t *read,
			    struct cn_error *err)
{
	sqlite3_stmt *st = s->st_audit_query;
	int rc = CN_OK;
	int src = sqlite3_bind_int64(st, 1, *after_ms);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 2, *after_id);
	while (src == SQLITE_OK || src == SQLITE_ROW) {
		src = sqlite3_step(st);
		if (src != SQLITE_ROW || *read == AUDIT_QUERY_CHUNK)
			break;
		struct audit_record r = {
		    .id = sqlite3_column_int64(st, 0),
		    .at_ms = sqlite3_column_int64(st, 1),
		    .execution_id = column_text(st, 2),
		    .assistant_id = column_text(st, 3),
		    .room_id = column_text(st, 4),
		    .tool = column_text(st, 5),
		    .source = column_text(st, 6),
		    .fingerprint = column_text(st, 7),
		    .statement = column_text(st, 8),
		    .rows = sqlite3_column_type(st, 9) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 9),
		    .bytes = sqlite3_column_int64(st, 10),
		    .status = sqlite3_column_int(st, 11),
		    .code = column_text(st, 12),
		    .duration_us = sqlite3_column_int64(st, 13),
		};
		(*read)++;
		*after_ms = r.at_ms;
		*after_id = r.id;
		if (!audit_filter_match(f, &r))
			continue;
		size_t size = audit_record_strings(&r);
		struct audit_item *it = malloc(sizeof *it + size);
		if (!it) {
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
			break;
		}
		audit_record_pack(&r, it->strings, &it->rec);
		it->size = size;
		items[(*n)++] = it;
	}
	if (rc == CN_OK && src != SQLITE_DONE && src != SQLITE_ROW)
		rc = store_fail(s, src, "reading the audit log", err);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

int exec_store_audit_query(struct exec_store *s, const struct audit_filter *f, exec_audit_fn fn, void *ctx,
			   struct cn_error *err)
{
	struct audit_item *items[AUDIT_QUERY_CHUNK];
	if (s->pg)
		return state_pg_audit_query(s->pg, f, fn, ctx, err);
	int64_t after_ms = f->after_ms, after_id = f->after_id;
	int rc = CN_OK, stop = 0;
	pthread_mutex_lock(&s->mu);
	store_flush_locked(s);
	pthread_mutex_unlock(&s->mu);
	while (rc == CN_OK && !stop) {
		size_t n = 0, read = 0;
		db_lock(s);
		rc = audit_read_chunk(s, f, &after_ms, &after_id, items, &n, &read, err);
		db_unlock(s);
		for (size_t i = 0; i < n; i++) {
			if (rc == CN_OK && !stop)
				stop = fn(ctx, &items[i]->rec);
			free(items[i]);
		}
		if (read < AUDIT_QUERY_CHUNK)
			break;
	}
	return rc;
}

/* ---- schema snapshots --------------------------------------------------- */

void exec_snapshot_clear(struct exec_snapshot *snap)
{
	if (!snap)
		return;
	free(snap->schema);
	free(snap->diff);
	free(snap->drift);
	*snap = (struct exec_snapshot){0};
}

void exec_snapshots_free(struct exec_snapshot *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		exec_snapshot_clear(&v[i]);
	free(v);
}

/* A copy of a text or blob column, NULL when the column is NULL. */
static int column_copy(sqlite3_stmt *st, int col, char **out, size_t *len)
{
	*out = NULL;
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return CN_OK;
	const void *p = sqlite3_column_blob(st, col);
	size_t n = (size_t)sqlite3_column_bytes(st, col);
	char *c = malloc(n + 1);
	if (!c)
		return CN_ENOMEM;
	if (n)
		memcpy(c, p, n);
	c[n] = '\0';
	*out = c;
	if (len)
		*len = n;
	return CN_OK;
}

/* Fill snap from a row of (id, taken_at, checked_at, baseline, diff, drift[, schema]). */
static int snapshot_row(sqlite3_stmt *st, bool with_schema, struct exec_snapshot *snap)
{
	*snap = (struct exec_snapshot){0};
	snap->id = sqlite3_column_int64(st, 0);
	snap->taken_at = sqlite3_column_int64(st, 1);
	snap->checked_at = sqlite3_column_int64(st, 2);
	snap->baseline = sqlite3_column_int(st, 3) != 0;
	int rc = column_copy(st, 4, &snap->diff, NULL);
	if (!rc)
		rc = column_copy(st, 5, &snap->drift, NULL);
	if (!rc && with_schema)
		rc = column_copy(st, 6, &snap->schema, &snap->schema_len);
	if (rc)
		exec_snapshot_clear(snap);
	return rc;
}

#define SNAPSHOT_COLUMNS "id, taken_at, checked_at, baseline, diff, drift"

int exec_store_snapshot_get(struct exec_store *s, const char *source, bool baseline,
			    struct exec_snapshot *out, bool *found, struct cn_error *err)
{
	static const char latest[] = "SELECT " SNAPSHOT_COLUMNS ", schema FROM schema_snapshots"
				     " WHERE source = ?1 ORDER BY id DESC LIMIT 1";
	static const char first[] = "SELECT " SNAPSHOT_COLUMNS ", schema FROM schema_snapshots"
				    " WHERE source = ?1 AND baseline = 1 ORDER BY id LIMIT 1";
	sqlite3_stmt *st = NULL;
	int rc = CN_OK;
	*found = false;
	*out = (struct exec_snapshot){0};
	if (s->pg)
		return state_pg_snapshot_get(s->pg, source, baseline, out, found, err);
	db_lock(s);
	int src = sqlite3_prepare_v2(s->db, baseline ? first : latest, -1, &st, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
	if (src == SQLITE_OK)
		src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		rc = snapshot_row(st, true, out);
		if (rc)
			cn_error_set(err, rc, "out of memory");
		else
			*found = true;
	} else if (src != SQLITE_DONE) {
		rc = store_fail(s, src, "reading a schema snapshot", err);
	}
	sqlite3_finalize(st);
	db_unlock(s);
	return rc;
}

int exec_store_snapshot_add(struct exec_store *s, const char *source, int64_t now, const char *schema,
			    size_t schema_len, const char *diff, const char *drift, uint32_t keep,
			    int64_t *id, struct cn_error *err)
{
	static const char insert[] =
	    "INSERT INTO schema_snapshots(source, taken_at, checked_at, baseline, schema, diff, drift)"
	    " VALUES (?1, ?2, ?2, NOT EXISTS (SELECT 1 FROM schema_snapshots WHERE source = ?1),"
	    " ?3, ?4, ?5)";
	static const char prune[] =
	    "DELETE FROM schema_snapshots WHERE source = ?1 AND baseline = 0 AND id NOT IN"
	    " (SELECT id FROM schema_snapshots WHERE source = ?1 AND baseline = 0"
	    " ORDER BY id DESC LIMIT ?2)";
	if (s->pg)
		return state_pg_snapshot_add(s->pg, source, now, schema, schema_len, diff, drift, keep, id, err);
	sqlite3_stmt *st = NULL;
	db_lock(s);
	int rc = store_exec(s, "BEGIN IMMEDIATE", "beginning a transaction", err);
	if (rc)
		goto out;
	int src = sqlite3_prepare_v2(s->db, insert, -1, &st, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 2, now);
	if (src == SQLITE_OK)
		src = sqlite3_bind_blob64(st, 3, schema, (sqlite3_uint64)schema_len, SQLITE_STATIC);
	if (src == SQLITE_OK)
		src = diff ? sqlite3_bind_text(st, 4, diff, -1, SQLITE_STATIC) : sqlite3_bind_null(st, 4);
	if (src == SQLITE_OK)
		src = drift ? sqlite3_bind_text(st, 5, drift, -1, SQLITE_STATIC) : sqlite3_bind_null(st, 5);
	if (src == SQLITE_OK)
		src = sqlite3_step(st);
	if (src != SQLITE_DONE) {
		rc = store_fail(s, src, "storing a schema snapshot", err);
		sqlite3_finalize(st);
		goto rollback;
	}
	sqlite3_finalize(st);
	if (id)
		*id = sqlite3_last_insert_rowid(s->db);
	st = NULL;
	src = sqlite3_prepare_v2(s->db, prune, -1, &st, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 2, keep);
	if (src == SQLITE_OK)
		src = sqlite3_step(st);
	sqlite3_finalize(st);
	if (src != SQLITE_DONE) {
		rc = store_fail(s, src, "pruning schema snapshots", err);
		goto rollback;
	}
	rc = store_exec(s, "COMMIT", "committing a schema snapshot", err);
	if (rc == CN_OK)
		goto out;
rollback:
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
	db_unlock(s);
	return rc;
}

int exec_store_snapshot_touch(struct exec_store *s, int64_t id, int64_t now, const char *drift,
			      struct cn_error *err)
{
	if (s->pg)
		return state_pg_snapshot_touch(s->pg, id, now, drift, err);
	sqlite3_stmt *st = NULL;
	db_lock(s);
	int src = sqlite3_prepare_v2(
	    s->db, "UPDATE schema_snapshots SET checked_at = ?2, drift = ?3 WHERE id = ?1", -1, &st, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 1, id);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 2, now);
	if (src == SQLITE_OK)
		src = drift ? sqlite3_bind_text(st, 3, drift, -1, SQLITE_STATIC) : sqlite3_bind_null(st, 3);
	if (src == SQLITE_OK)
		src = sqlite3_step(st);
	int rc = src == SQLITE_DONE ? CN_OK : store_fail(s, src, "updating a schema snapshot", err);
	sqlite3_finalize(st);
	db_unlock(s);
	return rc;
}

int exec_store_snapshot_history(struct exec_store *s, const char *source, size_t limit,
				struct exec_snapshot **out, size_t *n, struct cn_error *err)
{
	static const char sql[] = "SELECT " SNAPSHOT_COLUMNS " FROM schema_snapshots WHERE source = ?1"
				  " ORDER BY id DESC LIMIT ?2";
	*out = NULL;
	*n = 0;
	if (s->pg)
		return state_pg_snapshot_history(s->pg, source, limit, out, n, err);
	sqlite3_stmt *st = NULL;
	struct exec_snapshot *v = calloc(limit ? limit : 1, sizeof *v);
	int rc = CN_OK;
	if (!v)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	db_lock(s);
	int src = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
	if (src == SQLITE_OK)
		src = sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
	while (src == SQLITE_OK || src == SQLITE_ROW) {
		src = sqlite3_step(st);
		if (src != SQLITE_ROW)
			break;
		if (*n == limit)
			continue;
		if (snapshot_row(st, false, &v[*n])) {
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
			break;
		}
		(*n)++;
	}
	if (!rc && src != SQLITE_DONE)
		rc = store_fail(s, src, "reading schema snapshots", err);
	sqlite3_finalize(st);
	db_unlock(s);
	if (rc) {
		exec_snapshots_free(v, *n);
		*n = 0;
		return rc;
	}
	*out = v;
	return CN_OK;
}

/* ---- test hooks -------------------------------------------------------- */

void exec_store_test_hold_writer(struct exec_store *s, bool hold)
{
	pthread_mutex_lock(&s->mu);
	s->hold = hold;
	pthread_cond_signal(&s->work);
	pthread_mutex_unlock(&s->mu);
}

void exec_store_test_set_limits(struct exec_store *s, size_t max_entries, size_t max_bytes)
{
	pthread_mutex_lock(&s->mu);
	s->max_pending_n = max_entries;
	s->max_pending_bytes = max_bytes;
	pthread_mutex_unlock(&s->mu);
}

void exec_store_test_pending(struct exec_store *s, size_t *entries, size_t *bytes)
{
	pthread_mutex_lock(&s->mu);
	*entries = s->pending_n;
	*bytes = s->pending_bytes;
	pthread_mutex_unlock(&s->mu);
}

/* SQLite refuses blobs longer than max_len: makes the writer fail. */
void exec_store_test_audit_pending(struct exec_store *s, size_t *records)
{
	pthread_mutex_lock(&s->mu);
	*records = s->audit_pending_n;
	pthread_mutex_unlock(&s->mu);
}

void exec_store_test_limit_length(struct exec_store *s, int max_len)
{
	pthread_mutex_lock(&s->db_mu);
	sqlite3_limit(s->db, SQLITE_LIMIT_LENGTH, max_len);
	pthread_mutex_unlock(&s->db_mu);
}

/* ---- rotated callback secrets (PostgreSQL only) ---- */

static int secrets_unsupported(struct cn_error *err)
{
	return cn_error_set(err, CN_EINVAL,
			    "shared callback secrets need state.backend: postgres; with SQLite they are "
			    "in the rotation file");
}

int exec_store_secrets_get(struct exec_store *s, int64_t known, char **doc, int64_t *version,
			   struct cn_error *err)
{
	return s->pg ? state_pg_secrets_get(s->pg, known, doc, version, err) : secrets_unsupported(err);
}

int exec_store_secrets_put(struct exec_store *s, const char *doc, int64_t expect, int64_t *version,
			   struct cn_error *err)
{
	return s->pg ? state_pg_secrets_put(s->pg, doc, expect, version, err) : secrets_unsupported(err);
}

int exec_store_replica_report(struct exec_store *s, int64_t version, struct cn_error *err)
{
	return s->pg ? state_pg_replica_report(s->pg, version, err) : secrets_unsupported(err);
}

int exec_store_replicas(struct exec_store *s, uint32_t live_s, int64_t version, uint32_t *live,
			uint32_t *loaded, struct cn_error *err)
{
	return s->pg ? state_pg_replicas(s->pg, live_s, version, live, loaded, err)
		     : secrets_unsupported(err);
}

void exec_store_set_beat(struct exec_store *s, void (*fn)(void *ctx), void *ctx)
{
	if (s->pg)
		state_pg_set_beat(s->pg, fn, ctx);
}
