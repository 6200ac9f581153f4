/* app.h - what one running connector holds, shared by the tools, the
 * request handler and the CLI. */
#ifndef CN_APP_H
#define CN_APP_H

#include <stdbool.h>

#include "config.h"
#include "execution_store.h"
#include "source.h"

struct runtime;

/* cfg and sources are those of one configuration. A daemon sets runtime
 * instead: each request then runs on a copy of the app with cfg and sources
 * of the generation current when it started (runtime.h). */
struct app {
	const struct config *cfg;
	struct source_set *sources;
	struct exec_store *store; /* NULL in one-shot CLI commands */
	time_t (*now)(void);      /* clock for signature checks; time() wrapper by default */
	struct runtime *runtime;  /* NULL: cfg and sources are fixed */
	struct generation *generation; /* in a request's copy: the generation it holds */
	bool async;               /* this call may run up to limits.async_timeout_ms */
};

#endif
