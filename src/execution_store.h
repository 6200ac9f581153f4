/*
 * execution_store.h - answers kept by execution_id (Interactor's
 * idempotency key) so that a retried callback gets the first answer byte for
 * byte and never runs twice. Backed by a SQLite file in WAL mode; entries
 * expire after the TTL (7 days). The interface is small so that a
 * PostgreSQL-backed store can take its place for several replicas.
 *
 * Protocol: exec_store_claim(); when it says EXEC_CLAIMED run the tool,
 * then exec_store_finish() with the answer (or exec_store_release() for an
 * answer that must not be kept, such as 429 or 5xx, so a retry runs again).
 * A claim made by a process that died is taken over after stale_s seconds.
 */
#ifndef CN_EXECUTION_STORE_H
#define CN_EXECUTION_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

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
};

int exec_store_open(const char *path, const struct exec_store_opts *opts, struct exec_store **out,
		    struct cn_error *err) CN_MUST_USE;
void exec_store_close(struct exec_store *s);

/* Claim id, or fetch its stored answer. When another request holds the id,
 * wait up to wait_ms for it to finish. On EXEC_DONE, *body is malloc'ed
 * (caller frees). Thread-safe. */
int exec_store_claim(struct exec_store *s, const char *id, uint32_t wait_ms, enum exec_claim *state,
		     int *status, char **body, size_t *len, struct cn_error *err) CN_MUST_USE;
int exec_store_finish(struct exec_store *s, const char *id, int status, const char *body,
		      size_t len, struct cn_error *err) CN_MUST_USE;
int exec_store_release(struct exec_store *s, const char *id, struct cn_error *err) CN_MUST_USE;
/* Delete entries older than the TTL; returns how many in *removed. */
int exec_store_expire(struct exec_store *s, time_t now, uint64_t *removed, struct cn_error *err) CN_MUST_USE;

/* For tests: the clock the store uses (default time(NULL)). */
void exec_store_set_clock(struct exec_store *s, time_t (*now)(void));

#endif
