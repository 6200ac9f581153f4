/*
 * runtime.h - the configuration a daemon runs on, replaceable without a
 * restart.
 *
 * A generation is one configuration and the source set built from it.
 * Each request takes the current generation when it starts and finishes on
 * it, whatever a reload does meanwhile; a reload installs the next one
 * (built by sources_reopen(), which keeps unchanged sources) and lets go of
 * the old. Generations are freed oldest first, each once no request holds
 * it and every older one is gone: a source's replaced mappings live in the
 * set of the generation they were replaced in, and a request that started
 * two reloads ago may still read them.
 */
#ifndef CN_RUNTIME_H
#define CN_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "source.h"

struct generation {
	struct generation *newer;
	unsigned refs;            /* under the runtime's mu; the current one holds one of its own */
	uint64_t number;          /* 1 for the configuration the daemon started with */
	struct config *cfg;       /* owned */
	struct source_set *sources; /* owned */
	struct tool_catalog *catalog; /* owned; may be NULL (the built-in tools) */
};

struct runtime {
	pthread_mutex_t mu;
	struct generation *current;
	struct generation *oldest; /* the generations not yet freed, oldest first */
};

/* The first generation: takes cfg, sources and catalog. CN_OK or CN_ENOMEM
 * (and then nothing is taken). */
int runtime_init(struct runtime *rt, struct config *cfg, struct source_set *sources,
		 struct tool_catalog *catalog) CN_MUST_USE;
/* Free every generation; no request may hold one. */
void runtime_destroy(struct runtime *rt);

/* The current generation, held until runtime_release(). */
struct generation *runtime_acquire(struct runtime *rt);
void runtime_release(struct runtime *rt, struct generation *g);
/* One more hold on g, which the caller holds already (work that outlives
 * its request). */
void runtime_hold(struct runtime *rt, struct generation *g);

/* Make (cfg, sources, catalog) current (taken over). The old generation goes once its
 * requests are done. Returns the new generation's number (0 on out of
 * memory: nothing changed, nothing taken). */
uint64_t runtime_install(struct runtime *rt, struct config *cfg, struct source_set *sources,
			 struct tool_catalog *catalog);

#endif
