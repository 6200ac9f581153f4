/*
 * mongo_guard.h - the MongoDB driver's command guard. It reads the
 * assistant's request (strict JSON, mongo_json.h), checks it key by key
 * against allow lists, and builds the BSON command the connector sends: the
 * caller never writes a byte of it directly. Pure: no connection, no global
 * state; safe to call from many threads at once.
 *
 * Accepted: one of find, aggregate, count, distinct as the first key (or
 * explain of one of them), each with the fields of its own allow list;
 * aggregation stages, query operators, expression operators, accumulators
 * and window operators on allow lists, sub-pipelines checked the same way
 * and kept inside the source's database. Refused, with what and where:
 * writes ($out, $merge), JavaScript ($where, $function, $accumulator, code
 * values), admin and diagnostic stages, other databases, session,
 * transaction, routing, write-concern and resource keys (the connector sets
 * maxTimeMS, batch size, read concern and read preference itself), hidden
 * collections, hidden fields named anywhere a value is read, and
 * whole-document reads ($$ROOT, $$CURRENT, joins and facets that would carry
 * whole documents) of collections with hidden fields.
 *
 * Parameters: {"$param": N} (N in 1..MG_MAX_PARAMS, alone in its object)
 * stands for parameters[N-1] as a BSON value; where an aggregation expression
 * is read it goes in as {"$literal": value}, so that a "$field" string never
 * becomes a field path. {"$date": {"$param": N}}, {"$oid": ...},
 * {"$numberDecimal": ...}, {"$numberLong": ...} and {"$uuid": ...} convert a
 * parameter to that type. A parameter never becomes a key, an operator, a
 * collection or a field name.
 */
#ifndef MONGO_GUARD_H
#define MONGO_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include <bson/bson.h>

#include "connector_driver.h"

#define MG_MAX_PARAMS 100
#define MG_MAX_NAME 255  /* collection names */
#define MG_MAX_PATH 1024 /* field paths */

/* What the guard asks about names; every member may be NULL. coll is a
 * collection of the source's database; field a path with dots ("customer.
 * email"), array positions and markers removed. */
struct mg_hooks {
	void *ctx;
	/* Non-zero when the collection (field NULL) or the field is hidden. */
	int (*is_hidden)(void *ctx, const char *coll, const char *field);
	/* Non-zero when a hidden field is known to lie strictly under path in
	 * coll ("" asks about the whole document). */
	int (*hidden_under)(void *ctx, const char *coll, const char *path);
};

enum mg_command { MG_FIND, MG_AGGREGATE, MG_COUNT, MG_DISTINCT };

struct mg_request {
	enum mg_command command; /* for explain: the explained command */
	bool explain;            /* {"explain": {...}} or aggregate's explain: true */
	char collection[MG_MAX_NAME + 1];
	/* The collection whose documents the result may carry with their own
	 * paths, hidden fields included ("" when none): the driver removes that
	 * collection's hidden fields from every returned document. */
	char scrub[MG_MAX_NAME + 1];
	char key[MG_MAX_PATH + 1]; /* distinct: its key */
	/* The command as it is sent, except what the connector adds at run time
	 * (maxTimeMS, batch size, cursor, read concern, session). */
	bson_t cmd;
	int max_param; /* highest N of {"$param": N}, 0 when none */
};

/* Parse and check text (len bytes); build out->cmd. bind: replace each
 * {"$param": N} by params[N-1] (then every parameter must be used, and a
 * parameter that does not fit its place is CN_EINVAL); without bind (the
 * check() of run_query, before parameters are known) placeholders stand in.
 * CN_OK (free out with mg_request_free), CN_EREJECTED ("pipeline[1].$out:
 * ...", its class in err->reject), CN_EINVAL (parameters) or CN_ENOMEM. On failure out needs no free. */
int mg_guard_build(const char *text, size_t len, const struct mg_hooks *hooks,
		   const struct cn_value *params, size_t nparams, bool bind, struct mg_request *out,
		   struct cn_error *err);
void mg_request_free(struct mg_request *r);

/* "2024-05-01", "2024-05-01T10:00:00Z", "2024-05-01T12:00:00.250+02:00" ->
 * milliseconds since the epoch (UTC). False when it is not such a text. */
bool mg_parse_date(const char *s, size_t n, int64_t *ms);

/* Field path without array positions and markers: "items.0.sku" ->
 * "items.sku", "a.$[].b" -> "a.b", "items[].sku" -> "items.sku". False when
 * it does not fit size. */
bool mg_path_normalize(const char *path, char *out, size_t size);

#endif
