/*
 * source.h - the configured data sources at run time: each has its driver
 * module, the driver's handle, its semantic mappings and a view of its
 * schema. A source whose database cannot be reached at start-up stays in
 * the set as unavailable and is opened again on the next request that needs
 * it.
 *
 * Views: what requests read of a schema (the model merged with the
 * mappings, and what a refresh builds from it: the search index, the
 * compact index, describe_schema's whole answer, the drift) is one
 * immutable struct source_view. A refresh builds the next view without any
 * lock that requests take and publishes it with a pointer swap under the
 * source's short lock; a request takes a reference with source_view_acquire
 * and finishes on the view it started with, which is freed when its last
 * reader releases it. A refresh that fails keeps the view it had and
 * records why (source_status).
 *
 * Reloads: a source is its own object, reference-counted by the sets that
 * hold it. sources_reopen() builds the set of a new configuration and keeps
 * each source whose entry did not change (same object: its connections, its
 * view, its state); the others are made new, and the old ones close when the
 * last set holding them (the requests of the old configuration) lets go. A
 * kept source whose mappings file changed gets the new mappings and a
 * refresh; the mappings it had stay alive until the old set is closed, since
 * drivers of requests still running may read them.
 *
 * Locks: `refresh_mu` serialises what changes a source (open, introspect,
 * publish: the driver ABI wants open/close/introspect one at a time) and is
 * held for the whole of a refresh; `lock` guards the fields below it and is
 * held only to copy or swap them. Never take refresh_mu with lock held.
 */
#ifndef CN_SOURCE_H
#define CN_SOURCE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "driver_loader.h"
#include "execution_store.h"
#include "mappings.h"
#include "schema_diff.h"
#include "schema_model.h"
#include "schema_search.h"
#include "status.h"

struct source_view {
	atomic_uint refs;
	struct schema_model *model;      /* merged with the mappings */
	struct schema_search *search;    /* NULL when it could not be built (logged) */
	struct schema_compact *compact;  /* NULL likewise */
	char *tables_json;  /* {"tables":[...]} of the whole visible schema; NULL when over
			       SOURCE_VIEW_JSON_MAX bytes or out of memory */
	size_t tables_json_len;
	struct schema_drift *drift;      /* never NULL */
	size_t ntables;                  /* visible tables */
	int64_t refreshed_at;            /* unix time of the introspection */
	int64_t changed_at;              /* when the structure last changed; 0: not since the baseline */
};

/* Whole-schema answers larger than the platform's 64 KB cap are never kept. */
#define SOURCE_VIEW_JSON_MAX 65536

struct source_set;

struct source {
	atomic_uint refs;                /* the sets that hold it */
	struct config *config;           /* held: the configuration it was made from */
	const struct config_source *cfg; /* its entry in config */
	struct driver_module *module;    /* held; shared with other sources of the same driver */
	/* NULL when the source has none; a reload may swap it (under refresh_mu),
	 * drivers read it from any thread */
	_Atomic(struct mappings *) mappings;
	char *base_dir;                  /* the config file's directory */
	struct exec_store *store;        /* snapshots go here; NULL: none are kept */
	bool store_read_only;            /* read baselines and snapshots, write nothing */
	void (*on_refresh)(void *ctx, struct source *s); /* after a refresh published (may be NULL) */
	void *on_refresh_ctx;

	pthread_mutex_t refresh_mu;      /* one refresh at a time, see above */
	struct schema_model *baseline;   /* the baseline's structure, under refresh_mu; NULL: none yet */
	bool baseline_loaded;            /* the store was asked for it (under refresh_mu) */
	int64_t snapshot_id;             /* the latest stored snapshot (under refresh_mu); 0: unknown */

	pthread_mutex_t lock;            /* guards the fields below */
	void *handle;                    /* NULL while unavailable */
	struct source_view *view;        /* NULL until the first refresh succeeds */
	char last_error[512];            /* why the source is unavailable */
	struct timespec retry_at;        /* CLOCK_MONOTONIC: no new attempt before it */
	char refresh_error[512];         /* why the last refresh failed; "" when it did not */
	int64_t refresh_failed_at;       /* unix time of that failure */
	int64_t next_refresh_at;         /* the scheduler's next run; 0: none planned */
	int64_t probed_at_ms;            /* CLOCK_MONOTONIC of the last ping (source_reachable) */
	bool probe_failed;
	char probe_error[512];

	pthread_mutex_t probe_mu;        /* one ping at a time; others read the last result */
};

/* /readyz pings a source at most this often. */
#define SOURCE_PROBE_MS 2000

/* After a failed attempt, a source is not tried again for this long: a dead
 * or unreachable database answers at once instead of stalling each call. */
#define SOURCE_RETRY_MS 5000

struct source_set {
	struct source **items;          /* held */
	size_t n;
	struct driver_module **modules; /* one per distinct driver, held */
	size_t nmodules;
	const struct config *cfg;
	struct exec_store *store;       /* snapshots go here; NULL: none are kept */
	bool store_read_only;           /* read baselines and snapshots, write nothing (check-config) */
	struct mappings **retired;      /* mappings a reload replaced while this set was current */
	size_t nretired;
	void (*on_refresh)(void *ctx, struct source *s); /* given to its sources (see source) */
	void *on_refresh_ctx;
};

/* Called (on the refreshing thread, refresh_mu held) after a refresh of
 * any source of set published a new view; also given to the sources a
 * reopen of set makes. Set before any thread refreshes. */
void sources_on_refresh(struct source_set *set, void (*fn)(void *ctx, struct source *s), void *ctx);

struct sources_opts {
	struct exec_store *store; /* may be NULL */
	bool store_read_only;     /* compare with the store, never write to it */
	bool lazy;                /* do not connect at open: the first use (or refresh) does */
};

/* Load every driver and mapping file (errors here are fatal: a missing
 * module or a bad mapping file is a configuration error), then open and
 * refresh each source (a failure there only marks it unavailable and is
 * logged). sources_open is sources_open_with and no options. */
int sources_open(const struct config *cfg, struct source_set **out, struct cn_error *err) CN_MUST_USE;
int sources_open_with(const struct config *cfg, const struct sources_opts *opts, struct source_set **out,
		      struct cn_error *err) CN_MUST_USE;
void sources_close(struct source_set *set); /* NULL is a no-op */

/* What sources_reopen did, for its log line and the reload command. */
struct sources_reopen_report {
	size_t kept;       /* unchanged entries: same connections */
	size_t remapped;   /* of those, mappings that changed (and a refresh) */
	size_t opened;     /* new or changed entries */
	size_t closed;     /* entries no longer configured (closed with the old set) */
};

/* The set of cfg, keeping from old every source whose entry is the same
 * (config_source_differs) and opening the rest as sources_open_with does.
 * Mappings files are all read first: an error in any leaves old as it was.
 * old stays usable by the requests that hold it; close it after them.
 * old's store options are used. */
int sources_reopen(const struct config *cfg, struct source_set *old, struct source_set **out,
		   struct sources_reopen_report *report, struct cn_error *err) CN_MUST_USE;
/* Abort running statements of every source (shutdown). */
void sources_cancel(struct source_set *set);

struct source *sources_find(struct source_set *set, const char *name);

/* Make sure the source is open and has a view; CN_EUNAVAILABLE with the
 * driver's message when it cannot be. On success *handle is the driver
 * handle (valid until sources_close). Returns at once when the source is
 * ready, also while a refresh of it runs. */
int source_ready(struct source *s, void **handle, struct cn_error *err) CN_MUST_USE;

/* A reference to the source's current view (NULL when it has none yet);
 * pair with source_view_release. */
struct source_view *source_view_acquire(struct source *s);
void source_view_release(struct source_view *v); /* NULL is a no-op */
/* Publish v (its one reference passes to the source); the old view goes
 * when its readers are done. */
void source_view_publish(struct source *s, struct source_view *v);
/* A view of m (taken over) with its indexes built; NULL on out of memory.
 * drift is taken over too (NULL: an empty one). */
struct source_view *source_view_build(struct schema_model *m, struct schema_drift *drift,
				      int64_t refreshed_at, int64_t changed_at);

/* A snapshot of what list_data_sources and /readyz show. */
struct source_status {
	bool available;           /* open, with a view */
	char error[512];          /* why not available, "" when it is */
	char refresh_error[512];  /* the last refresh failed: why; "" otherwise */
	int64_t refresh_failed_at;
	int64_t refreshed_at;     /* of the view; 0: none */
	int64_t changed_at;
	int64_t next_refresh_at;
	size_t drift;
	size_t tables;
};
void source_status(struct source *s, struct source_status *out);

/* Open the driver handle when it is not open (refresh_mu held). */
int source_connect(struct source *s, struct cn_error *err) CN_MUST_USE;
/* Record a failed refresh (keeps the view); refresh_mu held. */
void source_refresh_failed(struct source *s, const char *why);

/* Does the source's database answer? A ping at most every SOURCE_PROBE_MS
 * (one at a time: a caller that finds one running gets the last result).
 * False with the driver's message in why. For /readyz. */
bool source_reachable(struct source *s, char *why, size_t len);

/* What the source's database user could write (the driver's audit), as a
 * warning in warning (empty when nothing to say or the driver cannot tell). */
int source_audit(struct source *s, char *warning, size_t len, struct cn_error *err) CN_MUST_USE;

/* The hidden-object callback drivers and the result writer use; ctx is the source. */
int source_is_hidden(void *ctx, const char *schema, const char *table, const char *column);

#endif
