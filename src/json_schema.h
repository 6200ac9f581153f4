/*
 * json_schema.h - the subset of JSON Schema the connector validates tool
 * parameters with: the built-in tools' schemas (tools.c) and the ones
 * generated from curated tool declarations (curated.c).
 *
 * Keywords: type (object, array, string, integer, number, boolean, null or
 * a list of them), properties, required, additionalProperties false, items,
 * minimum, maximum, minLength, maxLength, maxItems, enum (a value equal to
 * one of the listed ones), pattern (a POSIX extended regular expression,
 * regcomp with REG_EXTENDED, searched anywhere in the string as JSON
 * Schema's ECMA-262 patterns are: anchor it with ^...$), format "date"
 * (YYYY-MM-DD) and "date-time" (ISO 8601 / RFC 3339, the zone optional),
 * and default (not applied to values; json_schema_check_defaults checks
 * that each default fits its own schema). Unknown keywords are ignored.
 */
#ifndef CN_JSON_SCHEMA_H
#define CN_JSON_SCHEMA_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* Validate value against schema. CN_OK, or CN_EINVAL with a message that
 * names the path ("parameters.max_rows: must be at least 1"); a pattern
 * that does not compile is CN_EINVAL too ("...: the schema's pattern is not
 * a valid regular expression"). Thread-safe. */
int json_schema_check(const cJSON *schema, const cJSON *value, const char *path, char *message,
		      size_t len) CN_MUST_USE;

/* Every "default" inside schema (its properties', recursively) against the
 * schema that holds it; message as above, path naming the default. */
int json_schema_check_defaults(const cJSON *schema, const char *path, char *message, size_t len) CN_MUST_USE;

/* "2024-02-29": a real calendar date, four-digit year. */
bool json_schema_is_date(const char *s);
/* "2024-02-29T13:05:00", with optional fraction (up to 9 digits) and an
 * optional zone "Z" / "+hh:mm" / "-hh:mm"; 'T' or 't' between the parts. */
bool json_schema_is_date_time(const char *s);

#endif
