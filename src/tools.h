/*
 * tools.h - the tools the connector offers the assistant, their JSON Schema
 * (one catalog that both validates parameters and registers the tools with
 * Interactor), and dispatch.
 *
 *   list_data_sources  {}
 *   describe_schema    {source, tables? | page?, prefix?}
 *   search_schema      {query, source?, limit?}
 *   run_query          {source, query, parameters?, max_rows?}
 *   <curated tools>    their declared parameters (curated.h)
 *
 * A tool is registered with Interactor as interactor.tool_prefix + name
 * ("db_run_query"); a callback reaches it under either name (the prefixed
 * one is what the platform sends; the bare one is what a tool registered
 * by hand uses). The config rules make the two sets of names disjoint.
 */
#ifndef CN_TOOLS_H
#define CN_TOOLS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "app.h"
#include "json_schema.h"

#define TOOLS_MAX_PARAMS 100

struct tool_result {
	int http_status;
	char *body; /* malloc'ed JSON: {"result":...} or {"error":{...}} */
	size_t len;
	const char *error_code; /* static string, NULL on success */
	const char *source;     /* borrowed: the source the call used, for the log */
	int retry_after;        /* seconds for a 429/503, 0 when none */
	/* For the audit log (audit.h): the statement a query tool was given,
	 * borrowed from the call's parameters or the config, or statement_owned
	 * (a MongoDB command printed from an object, freed by tool_result_free);
	 * NULL for the other tools. rows: what a successful answer holds. */
	const char *statement;
	char *statement_owned;
	uint64_t rows;
};

struct tool_def {
	const char *name;
	void (*run)(struct app *app, const cJSON *params, struct tool_result *out);
	const char *description;
	const char *parameters_schema; /* JSON Schema text */
};

/* The built-in tools, ended by a NULL name. */
extern const struct tool_def tools_catalog[];
const struct tool_def *tools_find(const char *name);

/* A curated tool at run time: its declaration, and what the source's
 * guard said of its statement (checked when the catalog is checked, or at
 * first use when the source was down then). */
enum curated_verdict { CURATED_UNCHECKED, CURATED_ACCEPTED, CURATED_REFUSED };

struct curated_tool {
	const struct config_tool *cfg; /* borrowed from the config */
	size_t index;                  /* its position in cfg->tools, for messages */
	_Atomic int verdict;           /* enum curated_verdict */
};

/* One tool of a catalog. */
struct tool_entry {
	const char *name;            /* as the config names it: "run_query", "orders_by_customer" */
	char *registered_name;       /* tool_prefix + name: what Interactor knows it as */
	const char *description;
	const cJSON *schema;         /* its parameters' JSON Schema (owned by the catalog) */
	const struct tool_def *builtin;  /* a built-in tool, or NULL */
	struct curated_tool *curated;    /* a curated tool, or NULL */
	bool offered;                /* registered and listed; false: run_query with every source's
					run_query off, which still answers run_query_disabled */
};

/* The tools one configuration offers: the built-in ones (run_query offered
 * only when a source allows it) and the curated ones, in that order. */
struct tool_catalog {
	struct tool_entry *items;
	size_t n;
	cJSON **schemas;            /* owned, one per item */
	struct curated_tool *curated;
	size_t ncurated;
	const struct config *cfg;
};

/* Build the catalog of cfg. With set (sources opened, drivers loaded; may
 * be NULL), a statement written for the wrong kind of source (a document
 * for an SQL source, SQL for a document source) is a CN_ECONFIG error
 * naming file and line. */
int tool_catalog_new(const struct config *cfg, struct source_set *set, struct tool_catalog **out,
		     struct cn_error *err) CN_MUST_USE;
void tool_catalog_free(struct tool_catalog *c); /* NULL is a no-op */
/* The tool a callback names (registered or bare name), or NULL. */
const struct tool_entry *tool_catalog_find(const struct tool_catalog *c, const char *name);
/* Ask each curated tool's source guard about its statement, for the sources
 * that are available now. A refusal is CN_ECONFIG: "FILE:LINE:
 * tools[i].statement: the guard of source 's' refuses it: why". A source
 * that is down is left for the tool's first use (logged). */
int tool_catalog_check(struct tool_catalog *c, struct source_set *set, struct cn_error *err) CN_MUST_USE;
/* [{"name": registered name, "description", "parameters": schema,
 *   "callback_url": public_url + "/v1/tools/" + registered name}] (no
 * callback_url when public_url is empty); NULL on out of memory. */
cJSON *tool_catalog_to_json(const struct tool_catalog *c, const char *public_url);

/* The entry a callback's tool name resolves to in app's catalog (the
 * built-in catalog when app->catalog is NULL), or NULL. */
const struct tool_entry *tools_resolve(const struct app *app, const char *name);
/* Run an entry: parameters checked against its schema, then the tool. */
void tools_call_entry(struct app *app, const struct tool_entry *e, const cJSON *params,
		      struct tool_result *out);

/* Run a tool. params is the callback's "parameters" object (may be NULL =
 * empty). Always fills out (free with tool_result_free). */
void tools_call(struct app *app, const struct tool_def *tool, const cJSON *params,
		struct tool_result *out);
void tool_result_free(struct tool_result *r);
/* Could this call be answered asynchronously? run_query or a curated tool
 * on a source with limits.async_timeout_ms. */
bool tools_may_run_long(const struct app *app, const struct tool_entry *e, const cJSON *params);

/* Fill out with {"error":{"code":code,"message":...}}. */
void tool_result_error(struct tool_result *out, int http_status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* run_query without JSON around the parameters (the CLI's `query` uses it). */
void tools_run_query(struct app *app, const char *source, const char *sql,
		     const struct cn_value *params, size_t nparams, uint32_t max_rows,
		     struct tool_result *out);

#endif
