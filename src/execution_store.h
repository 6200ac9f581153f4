/*
 * execution_store.h - answers kept by execution_id (Interactor's
 * idempotency key) so that a retried callback gets the first answer byte for
 * byte and never runs twice. Entries expire after the TTL (7 days).
 *
 * Protocol: exec_store_claim(); when it says EXEC_CLAIMED run the tool,
 * then exec_store_finish() with the answer (or exec_store_release() for an
 * answer that must not be kept, such as 429 or 5xx, so a retry runs again).
 * A claim older than stale_s seconds (its request hung) is taken over.
 *
 * Two backends behind this one interface, chosen at open (state.backend):
 *
 * SQLite (the default, one process). Claims and fresh answers in memory;
 * answers in a SQLite file (WAL) that this process holds exclusively from
 * open to close. A second process opening the same file gets an error
 * naming the path ("... is in use by another connector process"): several
 * replicas need the PostgreSQL backend; sharing one SQLite file between
 * processes is not supported. Claims are not stored, so after a restart an
 * id that was running when the process stopped runs again on its retry.
 * exec_store_finish() makes the answer visible to duplicates at once and
 * queues it for a background thread, which gathers answers for 10 ms and
 * writes them in one transaction; the request does not wait for the disk.
 * When that thread falls behind (10,000 answers or 64 MiB queued), finish()
 * writes the answer itself. exec_store_close() writes everything still
 * queued. If the process dies between answering and that write (normally
 * well under a second), the answer is lost and a retry runs the (read-only)
 * query again. An answer the thread cannot write is logged and kept in
 * memory for the next attempt.
 *
 * PostgreSQL (opts.dsn set; several replicas share one database). Claims,
 * answers, snapshots and audit records are rows of shared tables, so one
 * execution_id runs once whichever replica each delivery reaches; finish()
 * returns once the answer is committed; an unreachable database makes
 * claim() and finish() fail, and the caller must not run the tool without a
 * claim. state_pg.h says what else differs.
 */
#ifndef CN_EXECUTION_STORE_H
#define CN_EXECUTION_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "audit.h"
#include "status.h"

#define EXEC_STORE_TTL_S (7 * 24 * 3600)
#define EXEC_ID_MAX 200

struct exec_store;

enum exec_claim {
	EXEC_CLAIMED, /* new: the caller runs it */
	EXEC_DONE,    /* answered before: status and body are filled */
	EXEC_RUNNING, /* another request holds it and did not finish within wait_ms */
};

struct exec_store_opts {
	uint32_t ttl_s;   /* default EXEC_STORE_TTL_S when 0 */
	uint32_t stale_s; /* a running claim older than this is taken over; default 120 when 0 */
	const char *dsn;  /* non-NULL: the PostgreSQL backend at this libpq URI or key=value
			     string (sensitive: never in a message); path is then not opened */
	uint32_t pool;    /* PostgreSQL connections at most (state.pool); 0: one */
};

/* path: the SQLite file (named in messages with either backend). With
 * opts->dsn, connects and creates or migrates the PostgreSQL tables. */
int exec_store_open(const char *path, const struct exec_store_opts *opts, struct exec_store **out,
		    struct cn_error *err) CN_MUST_USE;
void exec_store_close(struct exec_store *s);
/* Wait until every answer given so far has been tried on disk. */
void exec_store_flush(struct exec_store *s);

/* Claim id, or fetch its stored answer. When another request holds the id,
 * wait up to wait_ms for it to finish. On EXEC_DONE, *body is malloc'ed
 * (caller frees). Thread-safe. */
int exec_store_claim(struct exec_store *s, const char *id, uint32_t wait_ms, enum exec_claim *state,
		     int *status, char **body, size_t *len, struct cn_error *err) CN_MUST_USE;
int exec_store_finish(struct exec_store *s, const char *id, int status, const char *body,
		      size_t len, struct cn_error *err) CN_MUST_USE;
int exec_store_release(struct exec_store *s, const char *id, struct cn_error *err) CN_MUST_USE;
/* What the store knows of id, without claiming it (the status URL). */
enum exec_seen {
	EXEC_SEEN_NONE,    /* never seen, expired, or released to run again */
	EXEC_SEEN_RUNNING, /* claimed and not stale: status and body untouched */
	EXEC_SEEN_DONE,    /* answered: *body malloc'ed (caller frees) */
};
int exec_store_peek(struct exec_store *s, const char *id, enum exec_seen *seen, int *status,
		    char **body, size_t *len, struct cn_error *err) CN_MUST_USE;
/* A running claim older than stale_s seconds is taken over (0: the default,
 * 120 s). Asynchronous queries may run longer than that. */
void exec_store_set_stale(struct exec_store *s, uint32_t stale_s);
/* Delete entries older than the TTL, in small transactions so that claims
 * are not held up; returns how many in *removed (stored answers, and
 * claims that never finished). */
int exec_store_expire(struct exec_store *s, time_t now, uint64_t *removed, struct cn_error *err) CN_MUST_USE;

/* ---- schema snapshots ----
 *
 * The same file keeps, per source, the structure of its schema as the
 * refreshes found it (schema_diff.h): a new snapshot each time the
 * structure changed, with the diff against the one before, and the drift
 * found by the latest refresh. A source's first snapshot is its baseline
 * and is never deleted; of the others, the newest `keep` are kept. An
 * unchanged structure only moves the latest snapshot's checked_at and
 * replaces its drift. All of these are synchronous (they take the
 * connection for a moment; refreshes are rare) and thread-safe. Texts are
 * JSON and not interpreted here. */
struct exec_snapshot {
	int64_t id;
	int64_t taken_at;   /* when this structure was first seen */
	int64_t checked_at; /* the last refresh that found it */
	bool baseline;      /* the source's first snapshot */
	char *schema;       /* malloc'ed; NULL where not asked for */
	size_t schema_len;
	char *diff;         /* malloc'ed; NULL for a baseline */
	char *drift;        /* malloc'ed; NULL when none was recorded */
};

void exec_snapshot_clear(struct exec_snapshot *snap);
void exec_snapshots_free(struct exec_snapshot *v, size_t n);

/* The latest snapshot of source (baseline false) or its baseline (true),
 * schema text included; *found false when there is none. */
int exec_store_snapshot_get(struct exec_store *s, const char *source, bool baseline,
			    struct exec_snapshot *out, bool *found, struct cn_error *err) CN_MUST_USE;
/* Record a new structure; the source's first becomes its baseline. Older
 * snapshots beyond keep (baseline aside) go in the same transaction. diff
 * and drift may be NULL. *id (may be NULL) gets the new snapshot's id. */
int exec_store_snapshot_add(struct exec_store *s, const char *source, int64_t now, const char *schema,
			    size_t schema_len, const char *diff, const char *drift, uint32_t keep,
			    int64_t *id, struct cn_error *err) CN_MUST_USE;
/* The structure was found again: checked_at = now, drift replaced. */
int exec_store_snapshot_touch(struct exec_store *s, int64_t id, int64_t now, const char *drift,
			      struct cn_error *err) CN_MUST_USE;
/* The newest limit snapshots of source, newest first, without schema text
 * (*out malloc'ed; free with exec_snapshots_free). */
int exec_store_snapshot_history(struct exec_store *s, const char *source, size_t limit,
				struct exec_snapshot **out, size_t *n, struct cn_error *err) CN_MUST_USE;

/* ---- the audit log ----
 *
 * One row per tool call (audit.h says what a record holds and what never
 * goes in). exec_store_audit_add() copies the record into a queue that the
 * writer thread empties together with the answers, in the same
 * transactions: a request never waits for the disk. When the writer falls
 * behind (10,000 records queued), add() writes the record itself, as
 * finish() does with answers; nothing is dropped unless the file cannot be
 * written (then the record is kept and retried like an answer; what is
 * still unwritten when close() gives up is logged and counted in
 * audit_records_dropped_total). Rows are kept until pruned. */

/* Queue a copy of r (its id is ignored). Thread-safe. */
int exec_store_audit_add(struct exec_store *s, const struct audit_record *r, struct cn_error *err) CN_MUST_USE;
/* Delete the records that arrived before before_ms (unix ms), in small
 * transactions like exec_store_expire(); *removed (may be NULL) says how
 * many. Thread-safe. */
int exec_store_audit_prune(struct exec_store *s, int64_t before_ms, uint64_t *removed,
			   struct cn_error *err) CN_MUST_USE;
/* Hand fn, oldest first ((at_ms, id) order), every record f selects, after
 * writing what is queued; fn returns non-zero to stop. The record and its
 * strings live only during the call. The file is read a few hundred rows at
 * a time and let go of in between, so requests are not held up; fn is
 * called with nothing locked. Thread-safe. */
typedef int (*exec_audit_fn)(void *ctx, const struct audit_record *r);
int exec_store_audit_query(struct exec_store *s, const struct audit_filter *f, exec_audit_fn fn, void *ctx,
			   struct cn_error *err) CN_MUST_USE;

/* ---- rotated callback secrets (PostgreSQL only) ----
 *
 * With the PostgreSQL backend the replicas share one rotation document (the
 * JSON of secrets_file_format(), secrets.h) instead of a file each, with a
 * version that goes up by one at each put, and each running daemon keeps a
 * row saying which version it has loaded and when it was last seen. The
 * SQLite backend has none of this: each returns CN_EINVAL. The document
 * holds secrets: it never appears in a message. */

/* The document (*doc malloc'ed, caller wipes and frees) and its version; *doc
 * NULL when its version is known (the caller has it loaded) or when there is
 * none yet (*version 0). */
int exec_store_secrets_get(struct exec_store *s, int64_t known, char **doc, int64_t *version,
			   struct cn_error *err) CN_MUST_USE;
/* Replace the document when its version is still expect (0: there is none
 * yet); *version gets the new one. CN_EBUSY when another put came first. */
int exec_store_secrets_put(struct exec_store *s, const char *doc, int64_t expect, int64_t *version,
			   struct cn_error *err) CN_MUST_USE;
/* This process runs and has loaded version (its row, upserted; removed at
 * close). A daemon calls it at every beat. */
int exec_store_replica_report(struct exec_store *s, int64_t version, struct cn_error *err) CN_MUST_USE;
/* Of the replicas seen within live_s seconds, how many (*live) and how many
 * have loaded version or a later one (*loaded). */
int exec_store_replicas(struct exec_store *s, uint32_t live_s, int64_t version, uint32_t *live,
			uint32_t *loaded, struct cn_error *err) CN_MUST_USE;
/* fn(ctx) every 2 s on the store's own thread from now on (NULL: stop;
 * returns after a call under way). fn may call the store. A no-op with SQLite. */
void exec_store_set_beat(struct exec_store *s, void (*fn)(void *ctx), void *ctx);

/* For the metrics: answers in the file (kept from a count at open), answers
 * waiting for the writer, bytes of the file and its WAL. PostgreSQL: the
 * server's estimates of the executions table's rows and bytes, read at open
 * and at each expire(); nothing pending. Thread-safe. */
struct exec_store_stats {
	uint64_t entries;
	uint64_t pending;
	uint64_t file_bytes;
};
void exec_store_stats(struct exec_store *s, struct exec_store_stats *out);

/* "sqlite" or "postgres". */
const char *exec_store_backend(const struct exec_store *s);
/* Whether the store can be written now (always for SQLite); why (no secret
 * in it) when not. For /readyz; may wait up to a few seconds. */
bool exec_store_reachable(struct exec_store *s, char *why, size_t n);

/* For tests: the clock the store uses (default time(NULL)). */
void exec_store_set_clock(struct exec_store *s, time_t (*now)(void));

/* Test hooks of the SQLite backend: not for the daemon. With the writer held, exec_store_expire()
 * would wait for it. */
void exec_store_test_hold_writer(struct exec_store *s, bool hold);
void exec_store_test_set_limits(struct exec_store *s, size_t max_entries, size_t max_bytes);
void exec_store_test_pending(struct exec_store *s, size_t *entries, size_t *bytes);
void exec_store_test_audit_pending(struct exec_store *s, size_t *records);
void exec_store_test_limit_length(struct exec_store *s, int max_len);

#endif
