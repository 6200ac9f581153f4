/*
 * source.h - the configured data sources at run time: each has its driver
 * module, the driver's handle, its semantic mappings and the merged schema
 * model. A source whose database cannot be reached at start-up stays in the
 * set as unavailable and is opened again on the next request that needs it.
 */
#ifndef CN_SOURCE_H
#define CN_SOURCE_H

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "config.h"
#include "driver_loader.h"
#include "mappings.h"
#include "schema_model.h"
#include "status.h"

struct source {
	const struct config_source *cfg; /* borrowed from the config */
	struct driver_module *module;    /* shared with other sources of the same driver */
	struct mappings *mappings;       /* NULL when the source has none */
	char *base_dir;                  /* the config file's directory */

	pthread_mutex_t lock;            /* guards handle, model and last_error */
	void *handle;                    /* NULL while unavailable */
	struct schema_model *model;      /* merged; NULL until introspected */
	char last_error[512];
	struct timespec retry_at;        /* CLOCK_MONOTONIC: no new attempt before it */
};

/* After a failed attempt, a source is not tried again for this long: a dead
 * or unreachable database answers at once instead of stalling each call. */
#define SOURCE_RETRY_MS 5000

struct source_set {
	struct source *items;
	size_t n;
	struct driver_module **modules; /* one per distinct driver */
	size_t nmodules;
};

/* Load every driver and mapping file (errors here are fatal: a missing
 * module or a bad mapping file is a configuration error), then open and
 * introspect each source (a failure there only marks it unavailable and is
 * logged). */
int sources_open(const struct config *cfg, struct source_set **out, struct cn_error *err) CN_MUST_USE;
void sources_close(struct source_set *set); /* NULL is a no-op */
/* Abort running statements of every source (shutdown). */
void sources_cancel(struct source_set *set);

struct source *sources_find(struct source_set *set, const char *name);

/* Make sure the source is open and introspected; CN_EUNAVAILABLE with the
 * driver's message when it cannot be. On success *handle is the driver
 * handle (valid until sources_close). */
int source_ready(struct source *s, void **handle, struct cn_error *err) CN_MUST_USE;

/* What the source's database user could write (the driver's audit), as a
 * warning in warning (empty when nothing to say or the driver cannot tell). */
int source_audit(struct source *s, char *warning, size_t len, struct cn_error *err) CN_MUST_USE;

/* The hidden-object callback drivers and the result writer use; ctx is the source. */
int source_is_hidden(void *ctx, const char *schema, const char *table, const char *column);

/* Connect, introspect and merge mappings now (used by source_ready and
 * introspect/check-config); logs each unmatched mapping key as a warning. */
int source_refresh(struct source *s, struct cn_error *err) CN_MUST_USE;

#endif
