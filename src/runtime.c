/*
 * runtime.c - see runtime.h.
 */
#include "runtime.h"

#include <stdlib.h>

#include "tools.h"

static struct generation *generation_new(struct config *cfg, struct source_set *sources,
					 struct tool_catalog *catalog)
{
	struct generation *g = calloc(1, sizeof *g);
	if (!g)
		return NULL;
	g->refs = 1; /* the runtime's own, while it is current */
	g->cfg = cfg;
	g->sources = sources;
	g->catalog = catalog;
	return g;
}

static void generation_free(struct generation *g)
{
	tool_catalog_free(g->catalog); /* before the sources its tools name */
	sources_close(g->sources);
	config_free(g->cfg);
	free(g);
}

int runtime_init(struct runtime *rt, struct config *cfg, struct source_set *sources,
		 struct tool_catalog *catalog)
{
	struct generation *g = generation_new(cfg, sources, catalog);
	if (!g)
		return CN_ENOMEM;
	g->number = 1;
	pthread_mutex_init(&rt->mu, NULL);
	rt->current = rt->oldest = g;
	return CN_OK;
}

/* Unlink the generations no request holds, from the oldest up to the first
 * that is held (mu held); they are freed by the caller, outside mu, since
 * closing a source closes its connections. */
static struct generation *take_unused(struct runtime *rt)
{
	struct generation *done = NULL, **tail = &done;
	while (rt->oldest && rt->oldest != rt->current && rt->oldest->refs == 0) {
		struct generation *g = rt->oldest;
		rt->oldest = g->newer;
		g->newer = NULL;
		*tail = g;
		tail = &g->newer;
	}
	return done;
}

static void free_list(struct generation *g)
{
	while (g) {
		struct generation *next = g->newer;
		generation_free(g);
		g = next;
	}
}

struct generation *runtime_acquire(struct runtime *rt)
{
	pthread_mutex_lock(&rt->mu);
	struct generation *g = rt->current;
	g->refs++;
	pthread_mutex_unlock(&rt->mu);
	return g;
}

void runtime_hold(struct runtime *rt, struct generation *g)
{
	pthread_mutex_lock(&rt->mu);
	g->refs++;
	pthread_mutex_unlock(&rt->mu);
}

void runtime_release(struct runtime *rt, struct generation *g)
{
	pthread_mutex_lock(&rt->mu);
	g->refs--;
	struct generation *done = take_unused(rt);
	pthread_mutex_unlock(&rt->mu);
	free_list(done);
}

uint64_t runtime_install(struct runtime *rt, struct config *cfg, struct source_set *sources,
			 struct tool_catalog *catalog)
{
	struct generation *g = generation_new(cfg, sources, catalog);
	if (!g)
		return 0;
	pthread_mutex_lock(&rt->mu);
	struct generation *old = rt->current;
	g->number = old->number + 1;
	old->newer = g;
	rt->current = g;
	old->refs--; /* the runtime's own */
	struct generation *done = take_unused(rt);
	pthread_mutex_unlock(&rt->mu);
	free_list(done);
	return g->number;
}

void runtime_destroy(struct runtime *rt)
{
	if (!rt->current)
		return;
	free_list(rt->oldest);
	rt->current = rt->oldest = NULL;
	pthread_mutex_destroy(&rt->mu);
}
