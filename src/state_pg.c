/*
 * state_pg.c - the execution store in PostgreSQL (state_pg.h says what it
 * promises). libpq, prepared statements, a small pool, autocommit.
 *
 * On the wire, per call:
 *  - claim: ONE statement (SQL_CLAIM): an upsert of a running row with a
 *    claim token of this process, which takes over a stale claim or an
 *    expired answer and otherwise leaves the row alone, followed in the
 *    same statement by a read of the row it left. The row says: ours (our
 *    token: claimed), answered (replay it), or running elsewhere (ask again
 *    after 20, 40, ... 200 ms until wait_ms, then EXEC_RUNNING). The unique
 *    key on id and ON CONFLICT's row lock make exactly one caller win, on
 *    any number of replicas. The read sees the statement's snapshot, so a
 *    row committed by another replica during the statement can be missed:
 *    no row at all means "ask again at once".
 *  - finish: one UPDATE (SQL_FINISH) that stores the answer while our claim
 *    stands; it returns after the commit. A claim another replica took over
 *    stores nothing and finish fails: the caller must not send an answer
 *    that is not the stored one. When the database cannot be reached the
 *    answer is kept here, its claim too, and the keeper thread stores it
 *    when the database answers again (a retry then replays it).
 *  - heartbeat: the keeper thread refreshes the claims this process holds
 *    every stale_s / 3 (one UPDATE for all of them), so a claim goes stale
 *    only when its process is gone or cannot reach the database, however
 *    long its query runs.
 *  - release: one DELETE of the row, only while it is running with our
 *    token (a replica that lost its claim to a takeover deletes nothing).
 *  - audit records: queued, and written by one thread per store in
 *    multi-row INSERTs (AUDIT_ROWS a statement, one transaction a batch).
 *  - expiry and audit pruning: on a connection of their own, under
 *    pg_try_advisory_lock (one replica at a time), EXPIRE_BATCH rows a DELETE.
 *  - snapshots: short transactions under a per-source advisory lock.
 *  - rotated secrets: one row holding the rotation document and its
 *    version; a put is a compare-and-set on the version (an UPDATE ...
 *    WHERE version = expected), so two rotate-secret runs cannot
 *    interleave. The keeper calls the daemon's beat callback every
 *    BEAT_MS (main.c reads the version, reloads when it changed and
 *    upserts this process's replicas row); the row goes at close. The
 *    document is a statement parameter: never in a message here.
 *
 * Failures: a statement that fails because its connection broke (the server
 * restarted, the backend was terminated) is run once more on a new
 * connection; every statement above may run twice with the same outcome
 * (the claim recognises its own token). Anything else is returned as an
 * error naming the store's host, port, database and user, never the dsn or
 * its password (scrubbed from libpq's messages too).
 *
 * Tables (schema interactor_connector) are created and migrated at open by
 * numbered migrations, in one transaction under pg_advisory_xact_lock, so
 * replicas that start together migrate once; a database migrated by a newer
 * connector is refused.
 */
#include "state_pg.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "../drivers/common/pg_conninfo.h"
#include "../drivers/common/text.h"
#include "buf.h"
#include "log.h"
#include "metrics.h"

#define SCHEMA "interactor_connector"
#define POOL_WAIT_MS 2000     /* a call waits this long for a free connection */
#define POLL_FIRST_MS 20      /* a claim running elsewhere is asked again after this, */
#define POLL_MAX_MS 200       /* doubling up to this */
#define EXPIRE_BATCH 1000     /* rows a DELETE of the expiry or the pruning */
#define AUDIT_ROWS 100        /* audit records an INSERT */
#define AUDIT_QUERY_CHUNK 256 /* audit rows read a statement */
#define AUDIT_QUEUE_MAX 10000 /* queued past this, audit_add writes itself */
#define AUDIT_LINGER_MS 10    /* the writer gathers records this long: one commit for many */
#define AUDIT_RETRY_MS 1000
#define AUDIT_STOP_TRIES 3
#define UNSAVED_MAX 1000             /* answers kept while the database is unreachable, */
#define UNSAVED_MAX_BYTES (64u << 20) /* and their bytes, at most */
#define UNSAVED_RETRY_MS 1000        /* the keeper tries to store them this often */
#define BEAT_MS 2000		     /* the keeper calls the beat callback this often */
/* pg_advisory locks: two int4 keys, the first ours ("cn" + 0x5754). */
#define LOCK_NS "1668178260"
#define LOCK_MIGRATE LOCK_NS ", 1"
#define LOCK_EXPIRE LOCK_NS ", 2"
#define STR_(x) #x
#define STR(x) STR_(x)

/* Session defaults of the store's connections: statements never wait
 * long (a stuck lock or a full disk fails the request, which answers 503);
 * notices (CREATE ... IF NOT EXISTS says "skipping") are not wanted. */
static const char SESSION_OPTIONS[] = "-c statement_timeout=5000 -c lock_timeout=5000 "
				      "-c idle_in_transaction_session_timeout=30000 "
				      "-c client_min_messages=warning";

/* The migrations, in order; migration i brings the schema to version i + 1.
 * Never edit one that was released: add the next. */
static const char *const migrations[] = {
    "CREATE TABLE " SCHEMA ".executions ("
    " id text PRIMARY KEY,"
    " state smallint NOT NULL," /* 0 running, 1 answered */
    " status integer NOT NULL,"
    " body bytea,"
    " created_at bigint NOT NULL,"
    " updated_at bigint NOT NULL," /* unix s: claimed at (running), answered at */
    " claim bigint NOT NULL);"     /* the running claim's token; 0 once answered */
    "CREATE INDEX executions_updated_at ON " SCHEMA ".executions (updated_at);"
    "CREATE TABLE " SCHEMA ".schema_snapshots ("
    " id bigserial PRIMARY KEY,"
    " source text NOT NULL,"
    " taken_at bigint NOT NULL,"
    " checked_at bigint NOT NULL,"
    " baseline boolean NOT NULL,"
    " schema bytea NOT NULL,"
    " diff text,"
    " drift text);"
    "CREATE INDEX schema_snapshots_source ON " SCHEMA ".schema_snapshots (source, id);"
    "CREATE TABLE " SCHEMA ".audit ("
    " id bigserial PRIMARY KEY,"
    " at bigint NOT NULL," /* unix ms */
    " execution_id text, assistant_id text, room_id text, tool text, source text,"
    " fingerprint text, statement text, row_count bigint, bytes bigint NOT NULL,"
    " status integer NOT NULL, code text, duration_us bigint NOT NULL);"
    "CREATE INDEX audit_at ON " SCHEMA ".audit (at, id);",
    /* 2: rotated callback secrets (one JSON document, the rotation file's
     * form, secrets.h) and which replica has loaded which version of it */
    "CREATE TABLE " SCHEMA ".secrets ("
    " id smallint PRIMARY KEY CHECK (id = 1),"
    " doc text NOT NULL,"
    " version bigint NOT NULL);"
    "CREATE TABLE " SCHEMA ".replicas ("
    " id bigint PRIMARY KEY,"		/* the process's token base */
    " secrets_version bigint NOT NULL," /* the secrets document it has loaded */
    " seen_at bigint NOT NULL);",	/* unix s of its last beat */
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

#define EXEC_TABLE SCHEMA ".executions"
/* $1 id, $2 now, $3 our token, $4 stale_s, $5 ttl_s */
static const char SQL_CLAIM[] =
    "WITH up AS (INSERT INTO " EXEC_TABLE " AS e (id, state, status, body, created_at, updated_at, claim)"
    " VALUES ($1, 0, 0, NULL, $2::bigint, $2::bigint, $3::bigint)"
    " ON CONFLICT (id) DO UPDATE SET state = 0, status = 0, body = NULL,"
    " created_at = excluded.created_at, updated_at = excluded.updated_at, claim = excluded.claim"
    " WHERE (e.state = 0 AND e.updated_at < $2::bigint - $4::bigint)"
    " OR (e.state <> 0 AND e.updated_at < $2::bigint - $5::bigint)"
    " RETURNING e.state, e.status, e.body, e.updated_at, e.claim)"
    " SELECT state, status, body, updated_at, claim FROM up"
    " UNION ALL SELECT state, status, body, updated_at, claim FROM " EXEC_TABLE
    " WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM up)";
/* $1 id, $2 status, $3 body, $4 now, $5 our claim token: stored only while
 * our claim stands. */
static const char SQL_FINISH[] =
    "UPDATE " EXEC_TABLE " SET state = 1, status = $2::integer, body = $3::bytea,"
    " updated_at = $4::bigint, claim = 0 WHERE id = $1 AND state = 0 AND claim = $5::bigint";
/* $1 now, $2 ids, $3 their tokens (arrays of the same length) */
static const char SQL_HEARTBEAT[] =
    "UPDATE " EXEC_TABLE " AS e SET updated_at = $1::bigint"
    " FROM unnest($2::text[], $3::bigint[]) AS h(id, claim)"
    " WHERE e.id = h.id AND e.state = 0 AND e.claim = h.claim";
static const char SQL_RELEASE[] =
    "DELETE FROM " EXEC_TABLE " WHERE id = $1 AND state = 0 AND claim = $2::bigint";
static const char SQL_PEEK[] = "SELECT state, status, body, updated_at FROM " EXEC_TABLE " WHERE id = $1";
static const char SQL_EXPIRE[] =
    "DELETE FROM " EXEC_TABLE " WHERE id IN (SELECT id FROM " EXEC_TABLE
    " WHERE updated_at < $1::bigint LIMIT " STR(EXPIRE_BATCH) ")";
/* rows of replicas that died without a clean stop: they stopped counting
 * after 10 s (rotation.c); gone after a day */
#define REPLICA_FORGET_S 86400
static const char SQL_REPLICAS_PRUNE[] =
    "DELETE FROM " SCHEMA ".replicas WHERE id IN (SELECT id FROM " SCHEMA ".replicas"
    " WHERE seen_at < $1::bigint LIMIT " STR(EXPIRE_BATCH) ")";
static const char SQL_PRUNE[] =
    "DELETE FROM " SCHEMA ".audit WHERE id IN (SELECT id FROM " SCHEMA ".audit"
    " WHERE at < $1::bigint LIMIT " STR(EXPIRE_BATCH) ")";
#define AUDIT_COLUMNS                                                                             \
	"at, execution_id, assistant_id, room_id, tool, source, fingerprint, statement, row_count, " \
	"bytes, status, code, duration_us"
#define AUDIT_NCOLS 13
static const char SQL_AUDIT_QUERY[] =
    "SELECT id, " AUDIT_COLUMNS " FROM " SCHEMA ".audit WHERE (at, id) > ($1::bigint, $2::bigint)"
    " ORDER BY at, id LIMIT " STR(AUDIT_QUERY_CHUNK);
static const char SQL_STATS[] =
    "SELECT greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid) FROM pg_class c"
    " WHERE c.oid = '" EXEC_TABLE "'::regclass";

/* Prepared on every connection as it opens. */
enum stmt { ST_CLAIM, ST_FINISH, ST_RELEASE, ST_PEEK, ST_AUDIT_QUERY, ST_PING, ST_HEARTBEAT, ST_COUNT };
static const struct {
	const char *name, *sql;
} stmts[ST_COUNT] = {
    [ST_CLAIM] = {"cn_claim", SQL_CLAIM},		[ST_FINISH] = {"cn_finish", SQL_FINISH},
    [ST_RELEASE] = {"cn_release", SQL_RELEASE},		[ST_PEEK] = {"cn_peek", SQL_PEEK},
    [ST_AUDIT_QUERY] = {"cn_audit_query", SQL_AUDIT_QUERY}, [ST_PING] = {"cn_ping", "SELECT 1"},
    [ST_HEARTBEAT] = {"cn_heartbeat", SQL_HEARTBEAT},
};

struct slot {
	PGconn *conn; /* NULL: not connected */
	bool busy;
};

/* A claim this process holds, with its token (for finish, release and the
 * heartbeat), and the answer finish() could not store yet, if any. */
struct held {
	struct held *next;
	int64_t token;
	char *body; /* with unsaved: the answer, malloc'ed */
	size_t len;
	int status;
	bool unsaved;
	char id[];
};

/* An audit record queued for the writer, its strings in the same allocation. */
struct audit_item {
	struct audit_item *next;
	struct audit_record rec;
	char strings[];
};

struct state_pg {
	struct pg_conninfo conninfo; /* connection settings; its password is scrubbed from every message */
	char *target;                /* "host H port P database D user U"; owned */

	pthread_mutex_t mu; /* guards slots, held, the unsaved counts, keeper_stop */
	pthread_cond_t freed, kwake;
	struct slot *slots;
	uint32_t nslots;
	struct held *held;
	size_t nunsaved, unsaved_bytes;
	bool keeper_stop, keeper_started, beat_now;
	pthread_t keeper;
	int64_t token_base;
	void (*beat_fn)(void *ctx); /* guarded by mu, as is beat_running */
	void *beat_ctx;
	bool beat_running;
	_Atomic bool reported; /* this process has a replicas row */
	_Atomic int64_t token_seq;

	uint32_t ttl_s;
	_Atomic uint32_t stale_s;
	time_t (*_Atomic now)(void);
	_Atomic uint64_t entries, bytes; /* estimates, read at open and at each expiry */

	pthread_mutex_t amu; /* guards the audit queue and the fields below */
	pthread_cond_t awork, awritten;
	struct audit_item *ahead, *atail;
	size_t apending;
	uint64_t enq_seq, attempt_seq;
	bool stop, writer_started;
	pthread_t writer;
	bool mu_init, amu_init;
};

static time_t clock_default(void)
{
	return time(NULL);
}

static long long monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long monotonic_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long long deadline_ms)
{
	struct timespec ts = {.tv_sec = (time_t)(deadline_ms / 1000),
			      .tv_nsec = (long)(deadline_ms % 1000) * 1000000L};
	pthread_cond_timedwait(cv, mu, &ts);
}

static time_t now_s(struct state_pg *p)
{
	return atomic_load(&p->now)();
}

/* ---- messages ---------------------------------------------------------- */

/* libpq's text made one line, without the password. */
static void clean_message(struct state_pg *p, const char *text, char *buf, size_t n)
{
	snprintf(buf, n, "%s", text && *text ? text : "no message from libpq");
	text_one_line(buf);
	text_scrub(buf, n, p->conninfo.password);
}

/* Why res (or the connection) failed: a broken connection or a server
 * going away is CN_EUNAVAILABLE, anything else CN_EIO. */
static int fail_res(struct state_pg *p, PGconn *c, const PGresult *res, const char *what, struct cn_error *err)
{
	char msg[400];
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	clean_message(p, primary ? primary : PQerrorMessage(c), msg, sizeof msg);
	bool gone = PQstatus(c) == CONNECTION_BAD ||
		    (state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0));
	return cn_error_set(err, gone ? CN_EUNAVAILABLE : CN_EIO, "state store at %s: %s: %s%s%s%s", p->target,
			    what, msg, state ? " (SQLSTATE " : "", state ? state : "", state ? ")" : "");
}

/* ---- connection settings ---------------------------------------------- */

/* The dsn's settings plus the store's: these defaults where the dsn sets
 * none, its session options after the user's, UTF-8 always. The
 * mechanics are drivers/common/pg_conninfo. */
static int conninfo_build(struct state_pg *p, const char *dsn, struct cn_error *err)
{
	int rc = pg_conninfo_parse(&p->conninfo, dsn,
				   "state.dsn is not a PostgreSQL connection string: " PG_CONNINFO_DSN_HINT, err);
	if (rc)
		return rc;
	static const char *const defaults[][2] = {
	    {"connect_timeout", "5"},	    {"keepalives_idle", "30"},	 {"keepalives_interval", "10"},
	    {"keepalives_count", "3"},	    {"fallback_application_name", "interactor-connector-state"},
	};
	rc = pg_conninfo_defaults(&p->conninfo, defaults, sizeof defaults / sizeof defaults[0]);
	if (rc == CN_OK)
		rc = pg_conninfo_options_add(&p->conninfo, SESSION_OPTIONS);
	if (rc == CN_OK)
		rc = pg_conninfo_set(&p->conninfo, "client_encoding", "UTF8");
	if (rc == CN_OK && !(p->target = pg_conninfo_target(&p->conninfo)))
		rc = CN_ENOMEM;
	return rc == CN_OK ? CN_OK : cn_error_set(err, CN_ENOMEM, "out of memory");
}

/* ---- connections and the pool ----------------------------------------- */

static void notice_ignore(void *arg, const PGresult *res)
{
	(void)arg;
	(void)res;
}

/* A new session with the store's statements prepared. */
static int pg_connect(struct state_pg *p, bool prepare, PGconn **out, struct cn_error *err)
{
	char msg[400];
	PGconn *c = PQconnectdbParams((const char *const *)p->conninfo.keys,
				       (const char *const *)p->conninfo.vals, 0);
	if (!c)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	if (PQstatus(c) != CONNECTION_OK) {
		clean_message(p, PQerrorMessage(c), msg, sizeof msg);
		PQfinish(c);
		return cn_error_set(err, strstr(msg, "authentication failed") ? CN_EAUTH : CN_EUNAVAILABLE,
				    "cannot connect to the state store at %s: %s", p->target, msg);
	}
	PQsetNoticeReceiver(c, notice_ignore, NULL);
	for (int i = 0; prepare && i < ST_COUNT; i++) {
		PGresult *res = PQprepare(c, stmts[i].name, stmts[i].sql, 0, NULL);
		bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
		int rc = ok ? CN_OK : fail_res(p, c, res, "preparing its statements (is the schema migrated?)", err);
		PQclear(res);
		if (rc) {
			PQfinish(c);
			return rc;
		}
	}
	*out = c;
	return CN_OK;
}

/* An idle session has nothing to say: a readable socket means the server
 * closed it or is about to (restart, pg_terminate_backend), or reports a
 * setting that changed; none of these is worth keeping the session for. */
static bool idle_conn_ok(PGconn *c)
{
	struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
	return PQstatus(c) == CONNECTION_OK && pfd.fd >= 0 && poll(&pfd, 1, 0) == 0;
}

/* A free slot, connected, within POOL_WAIT_MS. Connected slots first, so
 * that a quiet store keeps one session. */
static int slot_get(struct state_pg *p, struct slot **out, struct cn_error *err)
{
	long long deadline = monotonic_ms() + POOL_WAIT_MS;
	struct slot *sl = NULL;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		for (uint32_t i = 0; i < p->nslots; i++) {
			struct slot *c = &p->slots[i];
			if (!c->busy && (!sl || (c->conn && !sl->conn)))
				sl = c;
		}
		if (sl || monotonic_ms() >= deadline)
			break;
		cond_wait_ms(&p->freed, &p->mu, deadline);
	}
	if (sl)
		sl->busy = true;
	pthread_mutex_unlock(&p->mu);
	if (!sl)
		return cn_error_set(err, CN_EBUSY,
				    "state store at %s: all %u connections stayed busy for %d ms; raise "
				    "state.pool", p->target, p->nslots, POOL_WAIT_MS);
	if (sl->conn && !idle_conn_ok(sl->conn)) {
		PQfinish(sl->conn);
		sl->conn = NULL;
	}
	int rc = sl->conn ? CN_OK : pg_connect(p, true, &sl->conn, err);
	if (rc) {
		pthread_mutex_lock(&p->mu);
		sl->busy = false;
		pthread_cond_signal(&p->freed);
		pthread_mutex_unlock(&p->mu);
		return rc;
	}
	*out = sl;
	return CN_OK;
}

/* Give the slot back; a session that broke or is left in a transaction is closed. */
static void slot_put(struct state_pg *p, struct slot *sl)
{
	if (sl->conn && (PQstatus(sl->conn) != CONNECTION_OK || PQtransactionStatus(sl->conn) != PQTRANS_IDLE)) {
		PQfinish(sl->conn);
		sl->conn = NULL;
	}
	pthread_mutex_lock(&p->mu);
	sl->busy = false;
	pthread_cond_signal(&p->freed);
	pthread_mutex_unlock(&p->mu);
}

/* Run a prepared statement with text parameters (binary where fmts says so)
 * and return its result (binary) when its status is want; else NULL and
 * err. A statement whose connection broke runs once more on a new one. */
static PGresult *run(struct state_pg *p, enum stmt st, int n, const char *const *vals, const int *lens,
		     const int *fmts, ExecStatusType want, const char *what, struct cn_error *err)
{
	for (int attempt = 0;; attempt++) {
		struct slot *sl;
		if (slot_get(p, &sl, err))
			return NULL;
		PGresult *res = PQexecPrepared(sl->conn, stmts[st].name, n, vals, lens, fmts, 1);
		if (PQresultStatus(res) == want) {
			slot_put(p, sl);
			return res;
		}
		int rc = fail_res(p, sl->conn, res, what, err);
		PQclear(res);
		slot_put(p, sl);
		if (rc != CN_EUNAVAILABLE || attempt == 1)
			return NULL;
		log_warn("%s; trying once more on a new connection", err->message);
	}
}

/* ---- reading binary results ------------------------------------------- */

/* A binary integer column (int2, int4, int8, bool). */
static int64_t col_int(const PGresult *res, int row, int col)
{
	const unsigned char *v = (const unsigned char *)PQgetvalue(res, row, col);
	int n = PQgetlength(res, row, col);
	uint64_t x = n > 0 && (v[0] & 0x80) ? ~UINT64_C(0) : 0;
	for (int i = 0; i < n && i < 8; i++)
		x = x << 8 | v[i];
	return (int64_t)x;
}

/* A malloc'ed NUL-terminated copy of a column; NULL for SQL NULL (*out
 * NULL, CN_OK). */
static int col_copy(const PGresult *res, int row, int col, char **out, size_t *len)
{
	*out = NULL;
	if (PQgetisnull(res, row, col))
		return CN_OK;
	size_t n = (size_t)PQgetlength(res, row, col);
	char *c = malloc(n + 1);
	if (!c)
		return CN_ENOMEM;
	memcpy(c, PQgetvalue(res, row, col), n);
	c[n] = '\0';
	*out = c;
	if (len)
		*len = n;
	return CN_OK;
}

static const char *col_text(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* ---- claims ------------------------------------------------------------ */

/* Drop h's unsaved answer, if any. Under mu. */
static void held_forget_answer(struct state_pg *p, struct held *h)
{
	if (h->unsaved) {
		p->nunsaved--;
		p->unsaved_bytes -= h->len;
	}
	free(h->body);
	h->body = NULL;
	h->len = 0;
	h->unsaved = false;
}

static void held_add(struct state_pg *p, const char *id, int64_t token)
{
	size_t n = strlen(id);
	struct held *h = calloc(1, sizeof *h + n + 1);
	pthread_mutex_lock(&p->mu);
	for (struct held *o = p->held; o; o = o->next) {
		if (strcmp(o->id, id) == 0) { /* our own claim, stale, taken over by us */
			o->token = token;
			held_forget_answer(p, o);
			free(h);
			h = NULL;
			break;
		}
	}
	if (h) {
		h->token = token;
		memcpy(h->id, id, n + 1);
		h->next = p->held;
		p->held = h;
	}
	pthread_mutex_unlock(&p->mu);
	/* Out of memory: finish() of this id fails (the caller answers 503), and
	 * the claim, never refreshed, goes stale. */
}

/* The token of id's claim, or 0 when this process holds none. */
static int64_t held_token(struct state_pg *p, const char *id)
{
	int64_t token = 0;
	pthread_mutex_lock(&p->mu);
	for (struct held *h = p->held; h && !token; h = h->next)
		if (strcmp(h->id, id) == 0)
			token = h->token;
	pthread_mutex_unlock(&p->mu);
	return token;
}

/* Forget id's claim (when its token is still token, or any token with 0);
 * its token, or 0 when this process holds none. */
static int64_t held_take(struct state_pg *p, const char *id, int64_t token)
{
	int64_t was = 0;
	pthread_mutex_lock(&p->mu);
	for (struct held **h = &p->held; *h; h = &(*h)->next) {
		if (strcmp((*h)->id, id) == 0) {
			struct held *gone = *h;
			if (token && gone->token != token)
				break;
			*h = gone->next;
			was = gone->token;
			held_forget_answer(p, gone);
			free(gone);
			break;
		}
	}
	pthread_mutex_unlock(&p->mu);
	return was;
}

/* Keep the answer of id's claim (token) until the keeper can store it:
 * true when kept, false when too much is kept already (or no memory). */
static bool held_keep_answer(struct state_pg *p, const char *id, int64_t token, int status, const char *body,
			     size_t len)
{
	bool kept = false;
	pthread_mutex_lock(&p->mu);
	for (struct held *h = p->held; h; h = h->next) {
		if (strcmp(h->id, id) != 0 || h->token != token)
			continue;
		if (p->nunsaved < UNSAVED_MAX && p->unsaved_bytes + len <= UNSAVED_MAX_BYTES &&
		    (h->body = malloc(len ? len : 1))) {
			memcpy(h->body, body, len);
			h->len = len;
			h->status = status;
			h->unsaved = true;
			p->nunsaved++;
			p->unsaved_bytes += len;
			kept = true;
			pthread_cond_signal(&p->kwake);
		}
		break;
	}
	pthread_mutex_unlock(&p->mu);
	return kept;
}

int state_pg_claim(struct state_pg *p, const char *id, uint32_t wait_ms, enum exec_claim *state, int *status,
		   char **body, size_t *len, struct cn_error *err)
{
	long long deadline = monotonic_ms() + wait_ms;
	long pause = POLL_FIRST_MS;
	int64_t token = p->token_base + atomic_fetch_add(&p->token_seq, 1);
	char now[24], tok[24], stale[16], ttl[16];
	snprintf(tok, sizeof tok, "%lld", (long long)token);
	snprintf(stale, sizeof stale, "%u", atomic_load(&p->stale_s));
	snprintf(ttl, sizeof ttl, "%u", p->ttl_s);
	for (;;) {
		snprintf(now, sizeof now, "%lld", (long long)now_s(p));
		const char *vals[] = {id, now, tok, stale, ttl};
		PGresult *res = run(p, ST_CLAIM, 5, vals, NULL, NULL, PGRES_TUPLES_OK, "claiming an execution", err);
		if (!res)
			return err->code;
		if (PQntuples(res) == 0) { /* committed elsewhere during our statement: look again */
			PQclear(res);
			continue;
		}
		int64_t row_state = col_int(res, 0, 0);
		if (row_state == 0 && col_int(res, 0, 4) == token) {
			PQclear(res);
			held_add(p, id, token);
			*state = EXEC_CLAIMED;
			return CN_OK;
		}
		if (row_state != 0) {
			int rc = col_copy(res, 0, 2, body, len);
			if (rc == CN_OK && !*body)
				rc = (*body = calloc(1, 1)) ? CN_OK : CN_ENOMEM;
			*status = (int)col_int(res, 0, 1);
			PQclear(res);
			if (rc)
				return cn_error_set(err, rc, "out of memory");
			*state = EXEC_DONE;
			return CN_OK;
		}
		PQclear(res);
		long long left = deadline - monotonic_ms();
		if (left <= 0) {
			*state = EXEC_RUNNING;
			return CN_OK;
		}
		sleep_ms(pause < left ? pause : (long)left);
		pause = pause * 2 > POLL_MAX_MS ? POLL_MAX_MS : pause * 2;
	}
}

/* Store the answer of id's claim token; "0" rows when the claim is not ours
 * any more. NULL on failure (err set). */
static PGresult *store_answer(struct state_pg *p, const char *id, int64_t token, int status, const char *body,
			      size_t len, struct cn_error *err)
{
	char st[16], now[24], tok[24];
	snprintf(st, sizeof st, "%d", status);
	snprintf(now, sizeof now, "%lld", (long long)now_s(p));
	snprintf(tok, sizeof tok, "%lld", (long long)token);
	const char *vals[] = {id, st, len ? body : "", now, tok};
	int lens[] = {0, 0, (int)len, 0, 0}, fmts[] = {0, 0, 1, 0, 0};
	long long start = monotonic_us();
	PGresult *res = run(p, ST_FINISH, 5, vals, lens, fmts, PGRES_COMMAND_OK, "storing an answer", err);
	if (res)
		metrics_store_write((double)(monotonic_us() - start) / 1e6);
	return res;
}

int state_pg_finish(struct state_pg *p, const char *id, int status, const char *body, size_t len,
		    struct cn_error *err)
{
	if (len > INT32_MAX)
		return cn_error_set(err, CN_ETOOBIG, "execution answer is too large to store");
	int64_t token = held_token(p, id);
	if (!token)
		return cn_error_set(err, CN_EUNAVAILABLE, "execution %s: this process holds no claim on it, "
				    "so its answer is not stored", id);
	PGresult *res = store_answer(p, id, token, status, body, len, err);
	if (!res) {
		char why[sizeof err->message];
		snprintf(why, sizeof why, "%s", err->message);
		if (held_keep_answer(p, id, token, status, body, len))
			return cn_error_set(err, CN_EUNAVAILABLE, "%s; the answer of execution %s is kept and "
					    "stored when the state store answers again", why, id);
		held_take(p, id, token); /* the claim lapses after state.stale_timeout */
		return cn_error_set(err, CN_EUNAVAILABLE, "%s; the answer of execution %s is dropped "
				    "(too many answers wait to be stored already)", why, id);
	}
	held_take(p, id, token);
	bool stored = strcmp(PQcmdTuples(res), "0") != 0;
	PQclear(res);
	if (!stored)
		return cn_error_set(err, CN_EUNAVAILABLE, "execution %s: its claim was taken over by another "
				    "replica (no heartbeat for state.stale_timeout), whose answer is the one kept", id);
	return CN_OK;
}

int state_pg_release(struct state_pg *p, const char *id, struct cn_error *err)
{
	int64_t token = held_take(p, id, 0);
	if (!token)
		return CN_OK; /* not ours (any more): nothing to undo */
	char tok[24];
	snprintf(tok, sizeof tok, "%lld", (long long)token);
	const char *vals[] = {id, tok};
	PGresult *res = run(p, ST_RELEASE, 2, vals, NULL, NULL, PGRES_COMMAND_OK, "releasing a claim", err);
	PQclear(res);
	return res ? CN_OK : err->code;
}

int state_pg_peek(struct state_pg *p, const char *id, enum exec_seen *seen, int *status, char **body,
		  size_t *len, struct cn_error *err)
{
	const char *vals[] = {id};
	PGresult *res = run(p, ST_PEEK, 1, vals, NULL, NULL, PGRES_TUPLES_OK, "reading an answer", err);
	if (!res)
		return err->code;
	int rc = CN_OK;
	long long now = (long long)now_s(p);
	if (PQntuples(res) == 1) {
		long long age = now - col_int(res, 0, 3);
		if (col_int(res, 0, 0) == 0) {
			if (age <= (long long)atomic_load(&p->stale_s))
				*seen = EXEC_SEEN_RUNNING;
		} else if (age <= (long long)p->ttl_s) {
			rc = col_copy(res, 0, 2, body, len);
			if (rc == CN_OK && !*body)
				rc = (*body = calloc(1, 1)) ? CN_OK : CN_ENOMEM;
			*status = (int)col_int(res, 0, 1);
			if (rc == CN_OK)
				*seen = EXEC_SEEN_DONE;
			else
				cn_error_set(err, rc, "out of memory");
		}
	}
	PQclear(res);
	return rc;
}

/* ---- expiry and pruning: one replica at a time ------------------------- */

/* Run sql (a DELETE of at most EXPIRE_BATCH rows older than $1) until it
 * deletes fewer, on a session of its own that holds the expiry lock; a
 * replica that does not get the lock leaves the work to the one that has it. */
static int delete_batches(struct state_pg *p, const char *sql, int64_t cutoff, const char *what, uint64_t *total,
			  struct cn_error *err)
{
	PGconn *c;
	*total = 0;
	int rc = pg_connect(p, false, &c, err);
	if (rc)
		return rc;
	PGresult *res = PQexec(c, "SELECT pg_try_advisory_lock(" LOCK_EXPIRE ")");
	bool locked = PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = fail_res(p, c, res, what, err);
	PQclear(res);
	char cut[24];
	snprintf(cut, sizeof cut, "%lld", (long long)cutoff);
	const char *vals[] = {cut};
	while (rc == CN_OK && locked) {
		res = PQexecParams(c, sql, 1, NULL, vals, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			rc = fail_res(p, c, res, what, err);
			PQclear(res);
			break;
		}
		uint64_t n = strtoull(PQcmdTuples(res), NULL, 10);
		PQclear(res);
		*total += n;
		if (n < EXPIRE_BATCH)
			break;
	}
	PQfinish(c); /* and the session lock with it */
	return rc;
}

/* Row count and size of the executions table, estimated by PostgreSQL. */
static void stats_read(struct state_pg *p)
{
	struct slot *sl;
	struct cn_error err = {0};
	if (slot_get(p, &sl, &err))
		return;
	PGresult *res = PQexecParams(sl->conn, SQL_STATS, 0, NULL, NULL, NULL, NULL, 1);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		atomic_store(&p->entries, (uint64_t)col_int(res, 0, 0));
		atomic_store(&p->bytes, (uint64_t)col_int(res, 0, 1));
	}
	PQclear(res);
	slot_put(p, sl);
}

int state_pg_expire(struct state_pg *p, time_t now, uint64_t *removed, struct cn_error *err)
{
	uint64_t total = 0;
	int rc = delete_batches(p, SQL_EXPIRE, (int64_t)now - (int64_t)p->ttl_s, "expiring answers", &total, err);
	if (removed)
		*removed = total;
	uint64_t gone = 0;
	if (rc == CN_OK)
		rc = delete_batches(p, SQL_REPLICAS_PRUNE, (int64_t)now - REPLICA_FORGET_S,
				    "forgetting replicas not seen for a day", &gone, err);
	stats_read(p);
	return rc;
}

int state_pg_audit_prune(struct state_pg *p, int64_t before_ms, uint64_t *removed, struct cn_error *err)
{
	uint64_t total = 0;
	int rc = delete_batches(p, SQL_PRUNE, before_ms, "pruning the audit log", &total, err);
	if (removed)
		*removed = total;
	return rc;
}

/* ---- schema snapshots --------------------------------------------------- */

#define SNAPSHOT_COLUMNS "id, taken_at, checked_at, baseline, diff, drift"

/* Run sql with text parameters on sl's session, binary results. */
static PGresult *exec_on(struct state_pg *p, struct slot *sl, const char *sql, int n, const char *const *vals,
			 const int *lens, const int *fmts, ExecStatusType want, const char *what, struct cn_error *err)
{
	PGresult *res = PQexecParams(sl->conn, sql, n, NULL, vals, lens, fmts, 1);
	if (PQresultStatus(res) == want)
		return res;
	fail_res(p, sl->conn, res, what, err);
	PQclear(res);
	return NULL;
}

static int snapshot_row(const PGresult *res, int row, bool with_schema, struct exec_snapshot *snap)
{
	*snap = (struct exec_snapshot){
	    .id = col_int(res, row, 0),
	    .taken_at = col_int(res, row, 1),
	    .checked_at = col_int(res, row, 2),
	    .baseline = col_int(res, row, 3) != 0,
	};
	int rc = col_copy(res, row, 4, &snap->diff, NULL);
	if (!rc)
		rc = col_copy(res, row, 5, &snap->drift, NULL);
	if (!rc && with_schema)
		rc = col_copy(res, row, 6, &snap->schema, &snap->schema_len);
	if (rc)
		exec_snapshot_clear(snap);
	return rc;
}

/* Snapshot reads: one statement on a pooled session. */
static PGresult *snapshot_read(struct state_pg *p, const char *sql, int n, const char *const *vals,
			       struct cn_error *err)
{
	struct slot *sl;
	if (slot_get(p, &sl, err))
		return NULL;
	PGresult *res = exec_on(p, sl, sql, n, vals, NULL, NULL, PGRES_TUPLES_OK, "reading schema snapshots", err);
	slot_put(p, sl);
	return res;
}

int state_pg_snapshot_get(struct state_pg *p, const char *source, bool baseline, struct exec_snapshot *out,
			  bool *found, struct cn_error *err)
{
	static const char latest[] = "SELECT " SNAPSHOT_COLUMNS ", schema FROM " SCHEMA ".schema_snapshots"
				     " WHERE source = $1 ORDER BY id DESC LIMIT 1";
	static const char first[] = "SELECT " SNAPSHOT_COLUMNS ", schema FROM " SCHEMA ".schema_snapshots"
				    " WHERE source = $1 AND baseline ORDER BY id LIMIT 1";
	const char *vals[] = {source};
	PGresult *res = snapshot_read(p, baseline ? first : latest, 1, vals, err);
	if (!res)
		return err->code;
	int rc = CN_OK;
	if (PQntuples(res) == 1) {
		rc = snapshot_row(res, 0, true, out);
		if (rc)
			cn_error_set(err, rc, "out of memory");
		else
			*found = true;
	}
	PQclear(res);
	return rc;
}

int state_pg_snapshot_history(struct state_pg *p, const char *source, size_t limit, struct exec_snapshot **out,
			      size_t *n, struct cn_error *err)
{
	static const char sql[] = "SELECT " SNAPSHOT_COLUMNS " FROM " SCHEMA ".schema_snapshots"
				  " WHERE source = $1 ORDER BY id DESC LIMIT $2::bigint";
	char lim[24];
	snprintf(lim, sizeof lim, "%zu", limit);
	const char *vals[] = {source, lim};
	PGresult *res = snapshot_read(p, sql, 2, vals, err);
	if (!res)
		return err->code;
	int rows = PQntuples(res);
	struct exec_snapshot *v = calloc(rows ? (size_t)rows : 1, sizeof *v);
	int rc = v ? CN_OK : CN_ENOMEM;
	for (int i = 0; rc == CN_OK && i < rows; i++) {
		rc = snapshot_row(res, i, false, &v[i]);
		if (rc == CN_OK)
			(*n)++;
	}
	PQclear(res);
	if (rc) {
		exec_snapshots_free(v, *n);
		*n = 0;
		return cn_error_set(err, rc, "out of memory");
	}
	*out = v;
	return CN_OK;
}

/* Record a new structure, in one transaction under the source's advisory
 * lock. Replicas refresh on their own and may find the same change: a
 * structure byte for byte equal to the latest stored one is only touched,
 * so the history holds each change once. */
int state_pg_snapshot_add(struct state_pg *p, const char *source, int64_t now, const char *schema,
			  size_t schema_len, const char *diff, const char *drift, uint32_t keep, int64_t *id,
			  struct cn_error *err)
{
	static const char lock[] = "SELECT pg_advisory_xact_lock(" LOCK_NS ", hashtext($1))";
	static const char same[] = "SELECT id FROM " SCHEMA ".schema_snapshots WHERE id = (SELECT max(id) FROM "
				   SCHEMA ".schema_snapshots WHERE source = $1) AND schema = $2::bytea";
	static const char touch[] = "UPDATE " SCHEMA ".schema_snapshots SET checked_at = $2::bigint, "
				    "drift = $3 WHERE id = $1::bigint";
	static const char insert[] =
	    "INSERT INTO " SCHEMA ".schema_snapshots (source, taken_at, checked_at, baseline, schema, diff, drift)"
	    " VALUES ($1, $2::bigint, $2::bigint, NOT EXISTS (SELECT 1 FROM " SCHEMA ".schema_snapshots"
	    " WHERE source = $1), $3::bytea, $4, $5) RETURNING id";
	static const char prune[] =
	    "DELETE FROM " SCHEMA ".schema_snapshots WHERE source = $1 AND NOT baseline AND id NOT IN"
	    " (SELECT id FROM " SCHEMA ".schema_snapshots WHERE source = $1 AND NOT baseline"
	    " ORDER BY id DESC LIMIT $2::bigint)";
	if (schema_len > INT32_MAX)
		return cn_error_set(err, CN_ETOOBIG, "schema snapshot is too large to store");
	struct slot *sl;
	if (slot_get(p, &sl, err))
		return err->code;
	char at[24], k[16], idtext[24];
	snprintf(at, sizeof at, "%lld", (long long)now);
	snprintf(k, sizeof k, "%u", keep);
	const char *what = "storing a schema snapshot";
	int64_t new_id = 0;
	PGresult *res = PQexec(sl->conn, "BEGIN");
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		fail_res(p, sl->conn, res, what, err);
	PQclear(res);
	const char *v1[] = {source, schema};
	int l1[] = {0, (int)schema_len}, f1[] = {0, 1};
	ok = ok && (res = exec_on(p, sl, lock, 1, v1, NULL, NULL, PGRES_TUPLES_OK, what, err));
	PQclear(ok ? res : NULL);
	ok = ok && (res = exec_on(p, sl, same, 2, v1, l1, f1, PGRES_TUPLES_OK, what, err));
	bool unchanged = ok && PQntuples(res) == 1;
	if (unchanged)
		new_id = col_int(res, 0, 0);
	PQclear(ok ? res : NULL);
	if (ok && unchanged) {
		snprintf(idtext, sizeof idtext, "%lld", (long long)new_id);
		const char *v[] = {idtext, at, drift};
		ok = (res = exec_on(p, sl, touch, 3, v, NULL, NULL, PGRES_COMMAND_OK, what, err)) != NULL;
		PQclear(res);
	} else if (ok) {
		const char *v[] = {source, at, schema, diff, drift};
		int l[] = {0, 0, (int)schema_len, 0, 0}, f[] = {0, 0, 1, 0, 0};
		ok = (res = exec_on(p, sl, insert, 5, v, l, f, PGRES_TUPLES_OK, what, err)) != NULL;
		if (ok)
			new_id = col_int(res, 0, 0);
		PQclear(res);
		const char *v2[] = {source, k};
		ok = ok && (res = exec_on(p, sl, prune, 2, v2, NULL, NULL, PGRES_COMMAND_OK, what, err));
		PQclear(ok ? res : NULL);
	}
	if (ok) {
		res = PQexec(sl->conn, "COMMIT");
		ok = PQresultStatus(res) == PGRES_COMMAND_OK;
		if (!ok)
			fail_res(p, sl->conn, res, what, err);
		PQclear(res);
	}
	if (!ok && PQtransactionStatus(sl->conn) != PQTRANS_IDLE)
		PQclear(PQexec(sl->conn, "ROLLBACK"));
	slot_put(p, sl);
	if (ok && id)
		*id = new_id;
	return ok ? CN_OK : err->code;
}

int state_pg_snapshot_touch(struct state_pg *p, int64_t id, int64_t now, const char *drift, struct cn_error *err)
{
	static const char sql[] = "UPDATE " SCHEMA ".schema_snapshots SET checked_at = $2::bigint, drift = $3"
				  " WHERE id = $1::bigint";
	char idtext[24], at[24];
	snprintf(idtext, sizeof idtext, "%lld", (long long)id);
	snprintf(at, sizeof at, "%lld", (long long)now);
	const char *vals[] = {idtext, at, drift};
	struct slot *sl;
	if (slot_get(p, &sl, err))
		return err->code;
	PGresult *res = exec_on(p, sl, sql, 3, vals, NULL, NULL, PGRES_COMMAND_OK, "updating a schema snapshot", err);
	slot_put(p, sl);
	PQclear(res);
	return res ? CN_OK : err->code;
}

/* ---- the audit log ------------------------------------------------------ */

/* INSERT of up to AUDIT_ROWS records from *it on, which moves past them. */
static int audit_insert(struct state_pg *p, struct slot *sl, struct audit_item **it, struct cn_error *err)
{
	enum { TEXTS = 7 };
	char nums[AUDIT_ROWS][6][24];
	const char *vals[AUDIT_ROWS * AUDIT_NCOLS];
	struct buf sql;
	buf_init(&sql, 64 * 1024);
	int rc = buf_puts(&sql, "INSERT INTO " SCHEMA ".audit (" AUDIT_COLUMNS ") VALUES ");
	int n = 0;
	for (; rc == CN_OK && *it && n < AUDIT_ROWS; *it = (*it)->next, n++) {
		const struct audit_record *r = &(*it)->rec;
		const char **v = &vals[n * AUDIT_NCOLS];
		const char *texts[TEXTS] = {r->execution_id, r->assistant_id, r->room_id, r->tool,
					    r->source,       r->fingerprint,  r->statement};
		snprintf(nums[n][0], 24, "%lld", (long long)r->at_ms);
		snprintf(nums[n][1], 24, "%lld", (long long)r->rows);
		snprintf(nums[n][2], 24, "%lld", (long long)r->bytes);
		snprintf(nums[n][3], 24, "%d", r->status);
		snprintf(nums[n][4], 24, "%lld", (long long)r->duration_us);
		v[0] = nums[n][0];
		for (int i = 0; i < TEXTS; i++)
			v[1 + i] = texts[i];
		v[8] = r->rows >= 0 ? nums[n][1] : NULL;
		v[9] = nums[n][2];
		v[10] = nums[n][3];
		v[11] = r->code;
		v[12] = nums[n][4];
		int b = n * AUDIT_NCOLS;
		rc = buf_printf(&sql, "%s($%d::bigint", n ? ", " : "", b + 1);
		for (int i = 2; rc == CN_OK && i <= AUDIT_NCOLS; i++)
			rc = buf_printf(&sql, ", $%d%s", b + i,
					i == 9 || i == 10 || i == 13 ? "::bigint" : i == 11 ? "::integer" : "");
		if (rc == CN_OK)
			rc = buf_puts(&sql, ")");
	}
	if (rc) {
		buf_free(&sql);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	PGresult *res = exec_on(p, sl, sql.data, n * AUDIT_NCOLS, vals, NULL, NULL, PGRES_COMMAND_OK,
				"storing audit records", err);
	buf_free(&sql);
	PQclear(res);
	return res ? CN_OK : err->code;
}

/* Write the list in one transaction. */
static int audit_write(struct state_pg *p, struct audit_item *list, struct cn_error *err)
{
	struct slot *sl;
	if (slot_get(p, &sl, err))
		return err->code;
	long long start = monotonic_us();
	PGresult *res = PQexec(sl->conn, "BEGIN");
	int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? CN_OK : fail_res(p, sl->conn, res, "storing audit records", err);
	PQclear(res);
	for (struct audit_item *it = list; rc == CN_OK && it;)
		rc = audit_insert(p, sl, &it, err);
	if (rc == CN_OK) {
		res = PQexec(sl->conn, "COMMIT");
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			rc = fail_res(p, sl->conn, res, "committing audit records", err);
		PQclear(res);
	}
	if (rc && PQstatus(sl->conn) == CONNECTION_OK && PQtransactionStatus(sl->conn) != PQTRANS_IDLE)
		PQclear(PQexec(sl->conn, "ROLLBACK"));
	slot_put(p, sl);
	if (rc == CN_OK)
		metrics_store_write((double)(monotonic_us() - start) / 1e6);
	return rc;
}

static size_t audit_free_list(struct audit_item *list)
{
	size_t n = 0;
	while (list) {
		struct audit_item *next = list->next;
		free(list);
		list = next;
		n++;
	}
	return n;
}

/* Group commit of the queued records; a batch that fails goes back in
 * front of the queue and is tried again after AUDIT_RETRY_MS; once close()
 * asked, AUDIT_STOP_TRIES failures give it up (logged and counted). */
static void *audit_writer(void *arg)
{
	struct state_pg *p = arg;
	unsigned stop_failures = 0;
	long long not_before = 0, since = 0;
	pthread_mutex_lock(&p->amu);
	for (;;) {
		if (!p->ahead && p->stop)
			break;
		if (!p->ahead) {
			pthread_cond_wait(&p->awork, &p->amu);
			since = monotonic_ms();
			continue;
		}
		long long at = since + AUDIT_LINGER_MS > not_before ? since + AUDIT_LINGER_MS : not_before;
		if (!p->stop && monotonic_ms() < at) {
			cond_wait_ms(&p->awork, &p->amu, at);
			continue;
		}
		struct audit_item *list = p->ahead, *last = p->atail;
		uint64_t seq = p->enq_seq;
		bool stopping = p->stop;
		p->ahead = p->atail = NULL;
		pthread_mutex_unlock(&p->amu);
		struct cn_error err = {0};
		int rc = audit_write(p, list, &err);
		size_t n = 0;
		if (rc == CN_OK || (stopping && ++stop_failures >= AUDIT_STOP_TRIES)) {
			n = audit_free_list(list);
			if (rc == CN_OK)
				metrics_audit_written(n);
			else {
				log_error("%s; %zu audit record(s) are lost", err.message, n);
				metrics_audit_dropped(n);
			}
		} else {
			log_error("%s; the audit records stay in memory, retrying in %d ms", err.message,
				  AUDIT_RETRY_MS);
		}
		pthread_mutex_lock(&p->amu);
		if (n) {
			p->apending -= n;
		} else {
			last->next = p->ahead;
			if (!p->ahead)
				p->atail = last;
			p->ahead = list;
			not_before = monotonic_ms() + AUDIT_RETRY_MS;
		}
		since = monotonic_ms();
		p->attempt_seq = seq;
		pthread_cond_broadcast(&p->awritten);
	}
	pthread_mutex_unlock(&p->amu);
	return NULL;
}

int state_pg_audit_add(struct state_pg *p, const struct audit_record *r, struct cn_error *err)
{
	size_t size = audit_record_strings(r);
	struct audit_item *it = malloc(sizeof *it + size);
	if (!it) {
		metrics_audit_dropped(1);
		return cn_error_set(err, CN_ENOMEM, "out of memory: an audit record is lost");
	}
	audit_record_pack(r, it->strings, &it->rec);
	it->next = NULL;
	pthread_mutex_lock(&p->amu);
	if (p->apending >= AUDIT_QUEUE_MAX || !p->writer_started) {
		pthread_mutex_unlock(&p->amu);
		int rc = audit_write(p, it, err);
		free(it);
		if (rc == CN_OK)
			metrics_audit_written(1);
		else
			metrics_audit_dropped(1);
		return rc;
	}
	if (p->atail)
		p->atail->next = it;
	else
		p->ahead = it;
	p->atail = it;
	p->apending++;
	p->enq_seq++;
	pthread_cond_signal(&p->awork);
	pthread_mutex_unlock(&p->amu);
	return CN_OK;
}

void state_pg_flush(struct state_pg *p)
{
	pthread_mutex_lock(&p->amu);
	uint64_t target = p->enq_seq;
	while (p->attempt_seq < target && p->writer_started)
		pthread_cond_wait(&p->awritten, &p->amu);
	pthread_mutex_unlock(&p->amu);
}

int state_pg_audit_query(struct state_pg *p, const struct audit_filter *f, exec_audit_fn fn, void *ctx,
			 struct cn_error *err)
{
	int64_t after_ms = f->after_ms, after_id = f->after_id;
	state_pg_flush(p);
	for (;;) {
		char a[24], b[24];
		snprintf(a, sizeof a, "%lld", (long long)after_ms);
		snprintf(b, sizeof b, "%lld", (long long)after_id);
		const char *vals[] = {a, b};
		PGresult *res = run(p, ST_AUDIT_QUERY, 2, vals, NULL, NULL, PGRES_TUPLES_OK, "reading the audit log", err);
		if (!res)
			return err->code;
		int rows = PQntuples(res), stop = 0;
		/* fn is called with the connection given back: the result is ours */
		for (int i = 0; i < rows && !stop; i++) {
			struct audit_record r = {
			    .id = col_int(res, i, 0),
			    .at_ms = col_int(res, i, 1),
			    .execution_id = col_text(res, i, 2),
			    .assistant_id = col_text(res, i, 3),
			    .room_id = col_text(res, i, 4),
			    .tool = col_text(res, i, 5),
			    .source = col_text(res, i, 6),
			    .fingerprint = col_text(res, i, 7),
			    .statement = col_text(res, i, 8),
			    .rows = PQgetisnull(res, i, 9) ? -1 : col_int(res, i, 9),
			    .bytes = col_int(res, i, 10),
			    .status = (int)col_int(res, i, 11),
			    .code = col_text(res, i, 12),
			    .duration_us = col_int(res, i, 13),
			};
			after_ms = r.at_ms;
			after_id = r.id;
			if (audit_filter_match(f, &r))
				stop = fn(ctx, &r);
		}
		PQclear(res);
		if (stop || rows < AUDIT_QUERY_CHUNK)
			return CN_OK;
	}
}

/* ---- opening ------------------------------------------------------------- */

/* Create or bring the tables up to SCHEMA_VERSION, in one transaction that
 * holds the migration lock: replicas starting together wait for the first,
 * then find nothing to do. */
static int migrate(struct state_pg *p, PGconn *c, struct cn_error *err)
{
	const char *what = "creating its tables";
	/* a migration may take long on big tables: the others wait for it */
	PGresult *res = PQexec(c, "BEGIN; SET LOCAL lock_timeout = '120s'; SET LOCAL statement_timeout = '600s';"
				  "SELECT pg_advisory_xact_lock(" LOCK_MIGRATE ");"
				  "CREATE SCHEMA IF NOT EXISTS " SCHEMA ";"
				  "CREATE TABLE IF NOT EXISTS " SCHEMA ".schema_version ("
				  " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
				  "SELECT coalesce(max(version), 0) FROM " SCHEMA ".schema_version");
	int rc = CN_OK;
	int version = 0;
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = fail_res(p, c, res, what, err);
	else
		version = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (rc == CN_OK && version > SCHEMA_VERSION)
		rc = cn_error_set(err, CN_ECONFIG,
				  "state store at %s: its tables are at version %d, newer than this connector "
				  "knows (%d): upgrade this connector to the version the other replicas run",
				  p->target, version, SCHEMA_VERSION);
	for (int v = version; rc == CN_OK && v < SCHEMA_VERSION; v++) {
		res = PQexec(c, migrations[v]);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			rc = fail_res(p, c, res, "migrating its tables", err);
		PQclear(res);
		char sql[128];
		snprintf(sql, sizeof sql, "INSERT INTO " SCHEMA ".schema_version (version) VALUES (%d)", v + 1);
		if (rc == CN_OK) {
			res = PQexec(c, sql);
			if (PQresultStatus(res) != PGRES_COMMAND_OK)
				rc = fail_res(p, c, res, "migrating its tables", err);
			PQclear(res);
			log_info("state store at %s: tables migrated to version %d", p->target, v + 1);
		}
	}
	res = PQexec(c, rc == CN_OK ? "COMMIT" : "ROLLBACK");
	if (rc == CN_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = fail_res(p, c, res, "committing its tables", err);
	PQclear(res);
	return rc;
}

/* ---- the keeper: heartbeats and answers not stored yet ------------------ */

/* Append s to a PostgreSQL array literal being built in b ("{" first). */
static int array_add(struct buf *b, const char *s, bool first)
{
	int rc = buf_puts(b, first ? "\"" : ",\"");
	for (; rc == CN_OK && *s; s++)
		rc = (*s == '"' || *s == '\\') ? buf_printf(b, "\\%c", *s) : buf_append(b, s, 1);
	return rc ? rc : buf_puts(b, "\"");
}

/* Refresh every claim this process holds, in one statement. */
static void heartbeat(struct state_pg *p, bool *failing)
{
	struct buf ids, tokens;
	buf_init(&ids, 64u << 20);
	buf_init(&tokens, 64u << 20);
	int rc = buf_puts(&ids, "{") || buf_puts(&tokens, "{") ? CN_ENOMEM : CN_OK;
	size_t n = 0;
	pthread_mutex_lock(&p->mu);
	for (struct held *h = p->held; h && rc == CN_OK; h = h->next, n++)
		rc = array_add(&ids, h->id, n == 0) ||
		     buf_printf(&tokens, "%s%lld", n ? "," : "", (long long)h->token) ? CN_ENOMEM : CN_OK;
	pthread_mutex_unlock(&p->mu);
	if (rc == CN_OK && n && !(buf_puts(&ids, "}") || buf_puts(&tokens, "}"))) {
		char now[24];
		snprintf(now, sizeof now, "%lld", (long long)now_s(p));
		const char *vals[] = {now, ids.data, tokens.data};
		struct cn_error err = {0};
		PGresult *res = run(p, ST_HEARTBEAT, 3, vals, NULL, NULL, PGRES_COMMAND_OK,
				    "refreshing its claims", &err);
		if (!res && !*failing)
			log_warn("%s; running executions lose their claims after state.stale_timeout", err.message);
		else if (res && *failing)
			log_info("state store at %s: claims refreshed again", p->target);
		*failing = res == NULL;
		PQclear(res);
	}
	buf_free(&ids);
	buf_free(&tokens);
}

/* Store the answers finish() had to keep, oldest claim last; stop at the
 * first failure (the database is still unreachable). */
static void store_unsaved(struct state_pg *p)
{
	for (;;) {
		char *id = NULL, *body = NULL;
		size_t len = 0;
		int status = 0;
		int64_t token = 0;
		pthread_mutex_lock(&p->mu);
		for (struct held *h = p->held; h; h = h->next) {
			if (h->unsaved) {
				id = strdup(h->id);
				body = h->body; /* taken from h while it is being stored */
				len = h->len;
				status = h->status;
				token = h->token;
				h->body = NULL;
				h->unsaved = false;
				p->nunsaved--;
				p->unsaved_bytes -= len;
				break;
			}
		}
		pthread_mutex_unlock(&p->mu);
		if (!id) {
			free(body);
			return;
		}
		struct cn_error err = {0};
		PGresult *res = store_answer(p, id, token, status, body, len, &err);
		if (!res) {
			bool kept = held_keep_answer(p, id, token, status, body, len);
			free(body);
			free(id);
			if (!kept) /* its claim was dropped meanwhile */
				continue;
			return;
		}
		if (strcmp(PQcmdTuples(res), "0") == 0)
			log_warn("execution %s: its claim was taken over while the state store was unreachable; "
				 "the answer kept here was never sent and is dropped", id);
		else
			log_info("execution %s: its answer, kept while the state store was unreachable, is "
				 "stored; a retry replays it", id);
		PQclear(res);
		held_take(p, id, token);
		free(body);
		free(id);
	}
}

static void *keeper_main(void *arg)
{
	struct state_pg *p = arg;
	bool failing = false;
	long long next_beat = 0, next_store = 0, next_cb = 0;
	pthread_mutex_lock(&p->mu);
	while (!p->keeper_stop) {
		if (p->beat_now) { /* stale_s changed: beat now, then at its new pace */
			p->beat_now = false;
			next_beat = 0;
		}
		long long now = monotonic_ms(), wake = next_beat;
		void (*fn)(void *) = p->beat_fn;
		void *ctx = p->beat_ctx;
		if (fn && next_cb < wake)
			wake = next_cb;
		if (!p->nunsaved)
			next_store = 0;
		else if (!next_store)
			next_store = now + UNSAVED_RETRY_MS;
		if (next_store && next_store < wake)
			wake = next_store;
		if (now < wake) {
			cond_wait_ms(&p->kwake, &p->mu, wake);
			continue;
		}
		bool call = fn && now >= next_cb;
		p->beat_running = call;
		pthread_mutex_unlock(&p->mu);
		if (now >= next_beat) {
			uint32_t every_ms = atomic_load(&p->stale_s) * 1000u / 3u;
			heartbeat(p, &failing);
			next_beat = monotonic_ms() + (every_ms < 500 ? 500 : every_ms);
		}
		if (next_store && now >= next_store) {
			store_unsaved(p);
			next_store = 0;
		}
		if (call) {
			fn(ctx);
			next_cb = monotonic_ms() + BEAT_MS;
		}
		pthread_mutex_lock(&p->mu);
		p->beat_running = false;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int sync_init(struct state_pg *p)
{
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) != 0)
		return CN_ENOMEM;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int rc = CN_ENOMEM;
	if (pthread_mutex_init(&p->mu, NULL) == 0) {
		if (pthread_cond_init(&p->freed, &ca) == 0 && pthread_cond_init(&p->kwake, &ca) == 0) {
			p->mu_init = true;
			rc = CN_OK;
		} else {
			pthread_mutex_destroy(&p->mu); /* (a cond that did init is leaked: never on Linux) */
		}
	}
	if (rc == CN_OK && pthread_mutex_init(&p->amu, NULL) == 0) {
		if (pthread_cond_init(&p->awork, &ca) == 0 && pthread_cond_init(&p->awritten, &ca) == 0)
			p->amu_init = true;
	}
	pthread_condattr_destroy(&ca);
	return p->amu_init ? CN_OK : CN_ENOMEM;
}

int state_pg_open(const char *dsn, uint32_t pool, uint32_t ttl_s, uint32_t stale_s, struct state_pg **out,
		  struct cn_error *err)
{
	*out = NULL;
	struct state_pg *p = calloc(1, sizeof *p);
	if (!p)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	p->ttl_s = ttl_s;
	atomic_init(&p->stale_s, stale_s);
	atomic_init(&p->now, clock_default);
	atomic_init(&p->token_seq, 1);
	p->nslots = pool ? pool : 1;
	p->slots = calloc(p->nslots, sizeof *p->slots);
	/* tokens of different processes differ: a random base, 2^62 apart at most */
	uint64_t r = 0;
	if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
		r = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid() << 32;
	p->token_base = (int64_t)(r >> 2) + 1;
	int rc = !p->slots || sync_init(p) ? cn_error_set(err, CN_ENOMEM, "out of memory") : CN_OK;
	if (rc == CN_OK)
		rc = conninfo_build(p, dsn, err);
	PGconn *c = NULL;
	if (rc == CN_OK)
		rc = pg_connect(p, false, &c, err);
	if (rc == CN_OK)
		rc = migrate(p, c, err);
	PQfinish(c);
	if (rc == CN_OK) {
		stats_read(p);
		if (pthread_create(&p->writer, NULL, audit_writer, p) != 0)
			rc = cn_error_set(err, CN_ENOMEM, "state store: cannot start its audit writer thread");
		else
			p->writer_started = true;
	}
	if (rc == CN_OK) {
		if (pthread_create(&p->keeper, NULL, keeper_main, p) != 0)
			rc = cn_error_set(err, CN_ENOMEM, "state store: cannot start its heartbeat thread");
		else
			p->keeper_started = true;
	}
	if (rc) {
		state_pg_close(p);
		return rc;
	}
	*out = p;
	return CN_OK;
}

void state_pg_close(struct state_pg *p)
{
	if (!p)
		return;
	if (p->keeper_started) {
		pthread_mutex_lock(&p->mu);
		p->keeper_stop = true;
		pthread_cond_signal(&p->kwake);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->keeper, NULL);
		store_unsaved(p); /* a last try */
		if (p->nunsaved)
			log_error("state store at %s: %zu answer(s) could not be stored and are lost (never "
				  "sent: a retry runs them again once their claims go stale)", p->target, p->nunsaved);
	}
	if (atomic_load(&p->reported)) { /* rotate-secret stops waiting for this process */
		struct cn_error err = {0};
		if (state_pg_replica_forget(p, &err))
			log_warn("%s", err.message);
	}
	if (p->writer_started) {
		pthread_mutex_lock(&p->amu);
		p->stop = true;
		pthread_cond_signal(&p->awork);
		pthread_mutex_unlock(&p->amu);
		pthread_join(p->writer, NULL);
	}
	for (uint32_t i = 0; p->slots && i < p->nslots; i++)
		PQfinish(p->slots[i].conn);
	free(p->slots);
	while (p->held) {
		struct held *next = p->held->next;
		free(p->held->body);
		free(p->held);
		p->held = next;
	}
	audit_free_list(p->ahead);
	if (p->mu_init) {
		pthread_cond_destroy(&p->freed);
		pthread_cond_destroy(&p->kwake);
		pthread_mutex_destroy(&p->mu);
	}
	if (p->amu_init) {
		pthread_cond_destroy(&p->awork);
		pthread_cond_destroy(&p->awritten);
		pthread_mutex_destroy(&p->amu);
	}
	pg_conninfo_free(&p->conninfo);
	free(p->target);
	free(p);
}

void state_pg_set_stale(struct state_pg *p, uint32_t stale_s)
{
	atomic_store(&p->stale_s, stale_s);
	pthread_mutex_lock(&p->mu);
	p->beat_now = true;
	pthread_cond_signal(&p->kwake);
	pthread_mutex_unlock(&p->mu);
}

void state_pg_set_clock(struct state_pg *p, time_t (*now)(void))
{
	atomic_store(&p->now, now ? now : clock_default);
}

void state_pg_stats(struct state_pg *p, struct exec_store_stats *out)
{
	memset(out, 0, sizeof *out);
	out->entries = atomic_load(&p->entries);
	out->file_bytes = atomic_load(&p->bytes);
}

bool state_pg_reachable(struct state_pg *p, char *why, size_t n)
{
	struct cn_error err = {0};
	PGresult *res = run(p, ST_PING, 0, NULL, NULL, NULL, PGRES_TUPLES_OK, "checking the connection", &err);
	PQclear(res);
	if (!res)
		snprintf(why, n, "%s", err.message);
	return res != NULL;
}

/* ---- rotated secrets and the replicas that loaded them ------------------ */

/* One statement on a pooled session; NULL and err unless its status is want. */
static PGresult *exec_pooled(struct state_pg *p, const char *sql, int n, const char *const *vals,
			     ExecStatusType want, const char *what, struct cn_error *err)
{
	struct slot *sl;
	if (slot_get(p, &sl, err))
		return NULL;
	PGresult *res = exec_on(p, sl, sql, n, vals, NULL, NULL, want, what, err);
	slot_put(p, sl);
	return res;
}

int state_pg_secrets_get(struct state_pg *p, int64_t known, char **doc, int64_t *version,
			 struct cn_error *err)
{
	static const char sql[] = "SELECT version, CASE WHEN version <> $1::bigint THEN doc END FROM " SCHEMA
				  ".secrets WHERE id = 1";
	char k[24];
	snprintf(k, sizeof k, "%lld", (long long)known);
	const char *vals[] = {k};
	*doc = NULL;
	*version = 0;
	PGresult *res = exec_pooled(p, sql, 1, vals, PGRES_TUPLES_OK, "reading the callback secrets", err);
	if (!res)
		return err->code;
	int rc = CN_OK;
	if (PQntuples(res) == 1) {
		*version = col_int(res, 0, 0);
		size_t len = 0;
		rc = col_copy(res, 0, 1, doc, &len);
		if (rc)
			cn_error_set(err, rc, "out of memory");
		/* the result holds the secrets: wipe them before it goes */
		if (!PQgetisnull(res, 0, 1))
			explicit_bzero(PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
	}
	PQclear(res);
	return rc;
}

int state_pg_secrets_put(struct state_pg *p, const char *doc, int64_t expect, int64_t *version,
			 struct cn_error *err)
{
	static const char insert[] = "INSERT INTO " SCHEMA ".secrets (id, doc, version) VALUES (1, $1, 1)"
				     " ON CONFLICT (id) DO NOTHING RETURNING version";
	static const char update[] = "UPDATE " SCHEMA ".secrets SET doc = $1, version = version + 1"
				     " WHERE id = 1 AND version = $2::bigint RETURNING version";
	char e[24];
	snprintf(e, sizeof e, "%lld", (long long)expect);
	const char *vals[] = {doc, e};
	PGresult *res = exec_pooled(p, expect ? update : insert, expect ? 2 : 1, vals, PGRES_TUPLES_OK,
				    "storing the callback secrets", err);
	if (!res)
		return err->code;
	int rc = CN_OK;
	if (PQntuples(res) == 1)
		*version = col_int(res, 0, 0);
	else
		rc = cn_error_set(err, CN_EBUSY,
				  "state store at %s: the callback secrets changed since they were read "
				  "(version %lld): another rotate-secret ran meanwhile; run it again",
				  p->target, (long long)expect);
	PQclear(res);
	return rc;
}

int state_pg_replica_report(struct state_pg *p, int64_t version, struct cn_error *err)
{
	static const char sql[] =
	    "INSERT INTO " SCHEMA ".replicas (id, secrets_version, seen_at)"
	    " VALUES ($1::bigint, $2::bigint, $3::bigint) ON CONFLICT (id) DO UPDATE"
	    " SET secrets_version = excluded.secrets_version, seen_at = excluded.seen_at";
	char id[24], v[24], now[24];
	snprintf(id, sizeof id, "%lld", (long long)p->token_base);
	snprintf(v, sizeof v, "%lld", (long long)version);
	snprintf(now, sizeof now, "%lld", (long long)now_s(p));
	const char *vals[] = {id, v, now};
	PGresult *res = exec_pooled(p, sql, 3, vals, PGRES_COMMAND_OK, "reporting this replica", err);
	PQclear(res);
	if (res)
		atomic_store(&p->reported, true);
	return res ? CN_OK : err->code;
}

int state_pg_replica_forget(struct state_pg *p, struct cn_error *err)
{
	static const char sql[] = "DELETE FROM " SCHEMA ".replicas WHERE id = $1::bigint";
	char id[24];
	snprintf(id, sizeof id, "%lld", (long long)p->token_base);
	const char *vals[] = {id};
	PGresult *res = exec_pooled(p, sql, 1, vals, PGRES_COMMAND_OK, "removing this replica", err);
	PQclear(res);
	if (res)
		atomic_store(&p->reported, false);
	return res ? CN_OK : err->code;
}

int state_pg_replicas(struct state_pg *p, uint32_t live_s, int64_t version, uint32_t *live, uint32_t *loaded,
		      struct cn_error *err)
{
	static const char sql[] = "SELECT count(*), count(*) FILTER (WHERE secrets_version >= $2::bigint)"
				  " FROM " SCHEMA ".replicas WHERE seen_at >= $1::bigint";
	char since[24], v[24];
	snprintf(since, sizeof since, "%lld", (long long)now_s(p) - (long long)live_s);
	snprintf(v, sizeof v, "%lld", (long long)version);
	const char *vals[] = {since, v};
	PGresult *res = exec_pooled(p, sql, 2, vals, PGRES_TUPLES_OK, "counting the replicas", err);
	if (!res)
		return err->code;
	*live = (uint32_t)col_int(res, 0, 0);
	*loaded = (uint32_t)col_int(res, 0, 1);
	PQclear(res);
	return CN_OK;
}

void state_pg_set_beat(struct state_pg *p, void (*fn)(void *ctx), void *ctx)
{
	pthread_mutex_lock(&p->mu);
	while (p->beat_running) { /* the caller may free ctx once this returns */
		pthread_mutex_unlock(&p->mu);
		sleep_ms(10);
		pthread_mutex_lock(&p->mu);
	}
	p->beat_fn = fn;
	p->beat_ctx = ctx;
	pthread_cond_signal(&p->kwake);
	pthread_mutex_unlock(&p->mu);
}
