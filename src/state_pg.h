/*
 * state_pg.h - the execution store kept in a shared PostgreSQL database
 * (state.backend: postgres), so that several connector processes behind a
 * load balancer run each execution_id once.
 *
 * Only execution_store.c calls these: each exec_store_* function of
 * execution_store.h hands its (already checked) arguments to the function
 * of the same name here when the store was opened with a dsn, and the
 * promises of execution_store.h hold unchanged, with these differences:
 *  - claims are rows of the shared table, so a retry that reaches another
 *    replica waits for (or replays) the answer of the first; a thread
 *    refreshes the claims this process holds every stale_s / 3, so a claim
 *    is taken over only when its replica died or lost the database for
 *    stale_s (state.stale_timeout), however long its query runs;
 *  - exec_store_finish() returns once the answer is committed in
 *    PostgreSQL, so the response sent after it can always be replayed. It
 *    fails when the claim was taken over (another replica's answer is the
 *    one kept) or the database cannot be reached: then the caller must not
 *    send its answer; in the second case the answer is kept in memory with
 *    its claim (1,000 answers or 64 MiB at most) and stored when the
 *    database answers again, so a retry replays it and nothing runs twice;
 *  - an unreachable database makes claim and finish fail (CN_EUNAVAILABLE,
 *    or CN_EBUSY when every pooled connection stays busy for 2 s);
 *  - expiry and audit pruning run on one replica at a time; the others
 *    return at once with nothing removed.
 * Ages are measured with this process's clock: replicas need clocks that
 * agree to well within stale_s (NTP).
 */
#ifndef CN_STATE_PG_H
#define CN_STATE_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "execution_store.h"

struct state_pg;

/* Connect (one connection at once, the others when needed), create or
 * migrate the tables, start the audit writer. dsn is a libpq URI or
 * key=value string; it and its password never appear in a message. */
int state_pg_open(const char *dsn, uint32_t pool, uint32_t ttl_s, uint32_t stale_s, struct state_pg **out,
		  struct cn_error *err) CN_MUST_USE;
void state_pg_close(struct state_pg *p);
void state_pg_flush(struct state_pg *p);
void state_pg_set_stale(struct state_pg *p, uint32_t stale_s);
void state_pg_set_clock(struct state_pg *p, time_t (*now)(void));

int state_pg_claim(struct state_pg *p, const char *id, uint32_t wait_ms, enum exec_claim *state, int *status,
		   char **body, size_t *len, struct cn_error *err) CN_MUST_USE;
int state_pg_finish(struct state_pg *p, const char *id, int status, const char *body, size_t len,
		    struct cn_error *err) CN_MUST_USE;
int state_pg_release(struct state_pg *p, const char *id, struct cn_error *err) CN_MUST_USE;
int state_pg_peek(struct state_pg *p, const char *id, enum exec_seen *seen, int *status, char **body,
		  size_t *len, struct cn_error *err) CN_MUST_USE;
int state_pg_expire(struct state_pg *p, time_t now, uint64_t *removed, struct cn_error *err) CN_MUST_USE;

int state_pg_snapshot_get(struct state_pg *p, const char *source, bool baseline, struct exec_snapshot *out,
			  bool *found, struct cn_error *err) CN_MUST_USE;
int state_pg_snapshot_add(struct state_pg *p, const char *source, int64_t now, const char *schema,
			  size_t schema_len, const char *diff, const char *drift, uint32_t keep, int64_t *id,
			  struct cn_error *err) CN_MUST_USE;
int state_pg_snapshot_touch(struct state_pg *p, int64_t id, int64_t now, const char *drift,
			    struct cn_error *err) CN_MUST_USE;
int state_pg_snapshot_history(struct state_pg *p, const char *source, size_t limit, struct exec_snapshot **out,
			      size_t *n, struct cn_error *err) CN_MUST_USE;

int state_pg_audit_add(struct state_pg *p, const struct audit_record *r, struct cn_error *err) CN_MUST_USE;
int state_pg_audit_prune(struct state_pg *p, int64_t before_ms, uint64_t *removed, struct cn_error *err) CN_MUST_USE;
int state_pg_audit_query(struct state_pg *p, const struct audit_filter *f, exec_audit_fn fn, void *ctx,
			 struct cn_error *err) CN_MUST_USE;

/* Rotated secrets and replicas: execution_store.h, exec_store_secrets_*. */
int state_pg_secrets_get(struct state_pg *p, int64_t known, char **doc, int64_t *version,
			 struct cn_error *err) CN_MUST_USE;
int state_pg_secrets_put(struct state_pg *p, const char *doc, int64_t expect, int64_t *version,
			 struct cn_error *err) CN_MUST_USE;
int state_pg_replica_report(struct state_pg *p, int64_t version, struct cn_error *err) CN_MUST_USE;
int state_pg_replica_forget(struct state_pg *p, struct cn_error *err) CN_MUST_USE;
int state_pg_replicas(struct state_pg *p, uint32_t live_s, int64_t version, uint32_t *live, uint32_t *loaded,
		      struct cn_error *err) CN_MUST_USE;
void state_pg_set_beat(struct state_pg *p, void (*fn)(void *ctx), void *ctx);

void state_pg_stats(struct state_pg *p, struct exec_store_stats *out);
/* Can a statement run now? false with why (no password in it) when not. */
bool state_pg_reachable(struct state_pg *p, char *why, size_t n);

#endif
