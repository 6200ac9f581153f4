/*
 * tools.h - the tools the connector offers the assistant, their JSON Schema
 * (one catalog that both validates parameters and, later, registers the
 * tools with Interactor), and dispatch.
 *
 *   list_data_sources  {}
 *   describe_schema    {source, tables? | page?, prefix?}
 *   search_schema      {query, source?, limit?}
 *   run_query          {source, query, parameters?, max_rows?}
 */
#ifndef CN_TOOLS_H
#define CN_TOOLS_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "app.h"

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

/* The catalog, ended by a NULL name. */
extern const struct tool_def tools_catalog[];
const struct tool_def *tools_find(const char *name);

/* Run a tool. params is the callback's "parameters" object (may be NULL =
 * empty). Always fills out (free with tool_result_free). */
void tools_call(struct app *app, const struct tool_def *tool, const cJSON *params,
		struct tool_result *out);
void tool_result_free(struct tool_result *r);

/* Fill out with {"error":{"code":code,"message":...}}. */
void tool_result_error(struct tool_result *out, int http_status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* run_query without JSON around the parameters (the CLI's `query` uses it). */
void tools_run_query(struct app *app, const char *source, const char *sql,
		     const struct cn_value *params, size_t nparams, uint32_t max_rows,
		     struct tool_result *out);

/* Validate value against a JSON Schema subset: type (object, array, string,
 * integer, number, boolean, null or a list of them), properties, required,
 * additionalProperties false, items, minimum, maximum, minLength,
 * maxLength, maxItems. On failure message names the path ("parameters.max_rows:
 * must be at least 1"). */
int json_schema_check(const cJSON *schema, const cJSON *value, const char *path, char *message,
		      size_t len);

#endif
