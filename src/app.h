/* app.h - what one running connector holds, shared by the tools, the
 * request handler and the CLI. */
#ifndef CN_APP_H
#define CN_APP_H

#include "config.h"
#include "execution_store.h"
#include "source.h"

struct tool_catalog;
struct secrets;

struct app {
	const struct config *cfg;
	struct source_set *sources;
	struct exec_store *store; /* NULL in one-shot CLI commands */
	time_t (*now)(void);      /* clock for signature checks; time() wrapper by default */
	struct tool_catalog *catalog; /* the tools offered; NULL: the built-in ones */
	struct secrets *secrets;  /* the callback secrets accepted now; NULL: cfg's list */
};

#endif
