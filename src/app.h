/* app.h - what one running connector holds, shared by the tools, the
 * request handler and the CLI. */
#ifndef CN_APP_H
#define CN_APP_H

#include <stdbool.h>

#include "config.h"
#include "execution_store.h"
#include "source.h"

struct runtime;
struct tool_catalog;
struct secrets;

/* cfg and sources are those of one configuration. A daemon sets runtime
 * instead: each request then runs on a copy of the app with cfg, sources and
 * catalog of the generation current when it started (runtime.h). */
struct app {
	const struct config *cfg;
	struct source_set *sources;
	struct exec_store *store; /* NULL in one-shot CLI commands */
	time_t (*now)(void);      /* clock for signature checks; time() wrapper by default */
	struct tool_catalog *catalog; /* the tools offered; NULL: the built-in ones */
	struct secrets *secrets;  /* the callback secrets accepted now; NULL: cfg's list */
	struct runtime *runtime;  /* NULL: cfg, sources and catalog are fixed */
	struct generation *generation; /* in a request's copy: the generation it holds */
	bool async;               /* this call may run up to limits.async_timeout_ms */
};

#endif
