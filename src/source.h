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
	const struct config_source *cfg; /* borrowed from the config */
	struct source_set *set;          /* the set it belongs to */
	struct driver_module *module;    /* shared with other sources of the same driver */
	struct mappings *mappings;       /* NULL when the source has none */
	char *base_dir;                  /* the config file's directory */

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
};

/* After a failed attempt, a source is not tried again for this long: a dead
 * or unreachable database answers at once instead of stalling each call. */
#define SOURCE_RETRY_MS 5000

struct source_set {
	struct source *items;
	size_t n;
	struct driver_module **modules; /* one per distinct driver */
	size_t nmodules;
	const struct config *cfg;
	struct exec_store *store;       /* snapshots go here; NULL: none are kept */
	bool store_read_only;           /* read baselines and snapshots, write nothing (check-config) */
	/* Called (on the refreshing thread, refresh_mu held) after a refresh
	 * published a new view; set before any thread refreshes. May be NULL. */
	void (*on_refresh)(void *ctx, struct source *s);
	void *on_refresh_ctx;
};

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

/* What the source's database user could write (the driver's audit), as a
 * warning in warning (empty when nothing to say or the driver cannot tell). */
int source_audit(struct source *s, char *warning, size_t len, struct cn_error *err) CN_MUST_USE;

/* The hidden-object callback drivers and the result writer use; ctx is the source. */
int source_is_hidden(void *ctx, const char *schema, const char *table, const char *column);

#endif
