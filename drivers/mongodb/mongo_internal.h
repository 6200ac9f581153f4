/*
 * mongo_internal.h - what the parts of the MongoDB driver share: the source
 * handle, its client pool with a bounded wait, its knowledge of hidden
 * fields, status mapping and small helpers. Not part of the driver ABI.
 *
 * Locking: slots.lock (drivers/common/pool.h) guards which slots are out
 * and the cancel generation (the client pool itself is libmongoc's and
 * thread-safe); a popped client belongs to the thread that holds its slot.
 * hidden_lock (a read-write lock) guards the hidden-field table. Never both
 * at once.
 */
#ifndef MONGO_INTERNAL_H
#define MONGO_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#include "connector_driver.h"
#include "../common/pool.h"
#include "mongo_guard.h"
#include "mongo_types.h"

#define MONGO_MAX_TIMEOUT_MS 29000u       /* maxTimeMS is always below 30 s */
#define MONGO_DEFAULT_TIMEOUT_MS 10000u
#define MONGO_CHECKOUT_MAX_WAIT_MS 2000u  /* as the PostgreSQL driver: then 429 */
#define MONGO_CLIENT_SLACK_MS 2000u       /* socket timeout = budget + this */
#define MONGO_DEFAULT_SAMPLE 1000u
#define MONGO_MAX_SAMPLE 100000u
#define MONGO_MAX_FIELDS 500u             /* field paths listed per collection */
#define MONGO_READ_MAX_BYTES (8u << 20)   /* documents held before the sink sees them */

/* Hidden field paths known for one collection: from introspection (every
 * sampled path the mappings hide) and from results (every path the
 * scrubbing removed). */
struct mongo_hidden {
	char *coll;
	char **paths;
	size_t n, cap;
};

struct mongo_handle {
	char *source;     /* the source's name, for messages */
	char *db;         /* the dsn's database: the only one the source reads */
	char *target;     /* "hosts 127.0.0.1:27017 database d user u": no password */
	char *password;   /* kept only to scrub it from messages; owned */
	mongoc_uri_t *uri;
	mongoc_client_pool_t *pool;
	mongoc_read_prefs_t *read_prefs;     /* the dsn's, or primary */
	mongoc_read_concern_t *read_concern; /* the dsn's (level may be unset) */
	uint32_t timeout_ms;
	uint32_t sample_size;
	void *host_ctx;
	int (*is_hidden)(void *host_ctx, const char *schema, const char *table, const char *column);

	/* One slot per client libmongoc's pool may hand out (its max_size is
	 * slots.n): the bounded wait for a free one, and cancel()'s generation. */
	struct slot_pool slots;

	pthread_rwlock_t hidden_lock;
	struct mongo_hidden *hidden;
	size_t nhidden;
};

/* ---- mongo_conn.c ---- */
int64_t mongo_now_ms(void);
/* Parse and check the dsn, apply the connector's defaults, make the pool. */
int mongo_conn_open(struct mongo_handle *h, const char *dsn, struct cn_error *err);
void mongo_conn_close(struct mongo_handle *h);
/* A client (and the slot it holds) within wait_ms: CN_EBUSY when none frees
 * up, CN_ECANCELED when cancel() ran meanwhile (gen is the caller's
 * mongo_pool_gen() from before). Give both back with mongo_pool_checkin. */
int mongo_pool_checkout(struct mongo_handle *h, uint32_t wait_ms, unsigned gen, uint32_t *slot,
			mongoc_client_t **out, struct cn_error *err);
void mongo_pool_checkin(struct mongo_handle *h, uint32_t slot, mongoc_client_t *client);
unsigned mongo_pool_gen(struct mongo_handle *h);
void mongo_pool_cancel_all(struct mongo_handle *h);
/* The status for a libmongoc error: CN_ETIMEOUT (maxTimeMS expired, or a
 * socket timeout past the budget), CN_EUNAVAILABLE (no server, network,
 * shutdown, authentication), else CN_EQUERY. */
int mongo_error_status(const bson_error_t *e, bool past_budget);
/* err filled from a libmongoc error, the password scrubbed; returns the status. */
int mongo_error_set(struct mongo_handle *h, struct cn_error *err, int status, const char *what,
		    const bson_error_t *e);
/* opts gains the dsn's read concern (when it names a level). */
bool mongo_append_read_concern(struct mongo_handle *h, bson_t *opts);
/* Run one command of the driver's own on the source's database with a
 * client from the pool; reply is always initialised (bson_destroy it). */
int mongo_own_command(struct mongo_handle *h, const bson_t *cmd, bson_t *reply, const char *what,
		      struct cn_error *err);

/* ---- hidden fields (mongo_conn.c) ---- */
int mongo_hook_is_hidden(void *ctx, const char *coll, const char *field);
int mongo_hook_hidden_under(void *ctx, const char *coll, const char *path);
/* Replace what is known of coll's hidden paths (takes the strings). */
void mongo_hidden_set(struct mongo_handle *h, const char *coll, char **paths, size_t n);
/* Remember one more hidden path of coll (learned from a result). */
void mongo_hidden_learn(struct mongo_handle *h, const char *coll, const char *path);
/* Forget everything known (introspection starts over); takes the lock. */
void mongo_hidden_reset(struct mongo_handle *h);
void mongo_hidden_free(struct mongo_handle *h); /* no lock: close() only */

/* ---- mongo_exec.c / mongo_introspect.c ---- */
int mongo_exec_query(struct mongo_handle *h, const struct cn_query *q,
		     const struct cn_result_sink *sink, struct cn_error *err);
int mongo_introspect_run(struct mongo_handle *h, const struct cn_schema_builder *b,
			 struct cn_error *err);

#endif
