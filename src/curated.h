/*
 * curated.h - curated tools: a fixed statement an operator reviewed, with
 * typed parameters, declared under `tools:` in the config (config.h,
 * struct config_tool). Each becomes a tool of its own beside the built-in
 * ones. This module is the pure part of them:
 *
 *   - the JSON Schema of a declaration (what the assistant sees and what
 *     the arguments are validated against): an object with one property per
 *     parameter, `required` as declared, additionalProperties false; types
 *     string, integer, number, boolean, and string with format "date" /
 *     "date-time" for date and timestamp; enum, minimum, maximum, pattern
 *     and default as declared;
 *   - the statement's placeholders: SQL's $1..$n outside string literals,
 *     quoted names and comments, or a command document's {"$param": N};
 *     they must be exactly $1..$n for the n declared parameters;
 *   - binding: validated arguments to the cn_value array the driver binds
 *     by position (dates and timestamps as text, the database converts
 *     them; a missing optional parameter binds its default, else NULL).
 *
 * The guard's verdict on the statement needs the source's driver: tools.c
 * asks for it (tool_catalog_check).
 */
#ifndef CN_CURATED_H
#define CN_CURATED_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "connector_driver.h"
#include "status.h"

/* "integer" -> CONFIG_PARAM_INTEGER; CN_EINVAL for an unknown name. */
int curated_type_from_name(const char *name, enum config_param_type *out) CN_MUST_USE;
const char *curated_type_name(enum config_param_type t);

/* A value written in the config (enum item, default, minimum, maximum) as
 * the JSON value of its type: a number for integer and number (an integer
 * must be whole and within +-2^53), true/false for boolean, a string for
 * the rest (a date or timestamp must be one). NULL with why when it does
 * not fit; the caller frees the result. */
cJSON *curated_value_from_text(enum config_param_type t, const char *text, char *why, size_t n);

/* The schema of one parameter / of the whole tool; NULL on out of memory.
 * The caller frees. */
cJSON *curated_param_schema(const struct config_tool_param *p);
cJSON *curated_tool_schema(const struct config_tool *t);

/* Which placeholders statement uses: used[N-1] is set for each N found
 * (N from 1 to CONFIG_MAX_TOOL_PARAMS). CN_EINVAL with why for $0, a
 * number past the maximum, a document that is not a JSON object or a
 * {"$param": x} whose x is not such a number. */
int curated_placeholders(const char *statement, bool document, bool used[CONFIG_MAX_TOOL_PARAMS], char *why,
			 size_t n) CN_MUST_USE;

/* The statement uses exactly $1..$n for the tool's n parameters; else
 * CN_EINVAL with why ("uses $3 but 2 parameters are declared", "parameter 2
 * (since) is declared but $2 never appears"). */
int curated_check_statement(const struct config_tool *t, char *why, size_t n) CN_MUST_USE;

/* args (the callback's parameters, already valid against
 * curated_tool_schema; NULL = none) into values[t->nparams], in order.
 * Text values point into args or into the config (defaults): keep both
 * alive while values are used. CN_EINVAL with msg for a value that passed
 * the schema and still cannot be bound (an integer past 2^53). */
int curated_bind(const struct config_tool *t, const cJSON *args, struct cn_value *values, char *msg,
		 size_t n) CN_MUST_USE;

#endif
