/*
 * fuzz_mongo_guard.c - libFuzzer target for the MongoDB driver's strict JSON
 * reader and command guard (drivers/mongodb/mongo_json.c and mongo_guard.c,
 * compiled into this target). The input bytes are one request text, checked
 * as check() does (no parameters) and as execute() does (two text
 * parameters that look like operators). Checks: the guard never crashes,
 * answers only CN_OK / CN_EREJECTED / CN_EINVAL (with a message; a
 * rejection with a class other than OTHER) / CN_ENOMEM, and whatever it accepts is valid BSON whose first key is a read
 * command and in which no key anywhere is a write stage, JavaScript or a
 * routing key, and no value is JavaScript code.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mongo_guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_hidden(void *ctx, const char *coll, const char *field)
{
	(void)ctx;
	if (!strcmp(coll, "secrets"))
		return 1;
	return field && !strcmp(coll, "customers") && !strncmp(field, "email", 5);
}

static int fuzz_under(void *ctx, const char *coll, const char *path)
{
	(void)ctx;
	return !strcmp(coll, "customers") && !*path;
}

static const char *const forbidden_keys[] = {"$out", "$merge", "$where", "$function",
					     "$accumulator", "$db", "lsid", "$readPreference",
					     "writeConcern", "maxTimeMS", "$currentOp", "$code"};

static void walk(const bson_t *doc, int depth)
{
	bson_iter_t it;
	if (depth > 200 || !bson_iter_init(&it, doc))
		abort();
	while (bson_iter_next(&it)) {
		const char *k = bson_iter_key(&it);
		for (size_t i = 0; i < sizeof forbidden_keys / sizeof forbidden_keys[0]; i++)
			if (!strcmp(k, forbidden_keys[i]))
				abort();
		bson_type_t t = bson_iter_type(&it);
		if (t == BSON_TYPE_CODE || t == BSON_TYPE_CODEWSCOPE)
			abort();
		if (t == BSON_TYPE_DOCUMENT || t == BSON_TYPE_ARRAY) {
			const uint8_t *d;
			uint32_t n;
			bson_t child;
			if (t == BSON_TYPE_DOCUMENT)
				bson_iter_document(&it, &n, &d);
			else
				bson_iter_array(&it, &n, &d);
			if (!bson_init_static(&child, d, n))
				abort();
			walk(&child, depth + 1);
		}
	}
}

static void one(const char *text, size_t len, bool bind)
{
	static const struct mg_hooks hooks = {NULL, fuzz_hidden, fuzz_under};
	struct cn_value params[2] = {{.kind = CN_VAL_TEXT, .u.s = {"$where", 6}},
				     {.kind = CN_VAL_TEXT, .u.s = {"$$ROOT", 6}}};
	struct mg_request req;
	struct cn_error err = {0};
	int rc = mg_guard_build(text, len, &hooks, params, bind ? 2 : 0, bind, &req, &err);
	if (rc != CN_OK && rc != CN_EREJECTED && rc != CN_EINVAL && rc != CN_ENOMEM)
		abort();
	if ((rc == CN_EREJECTED || rc == CN_EINVAL) && (err.code != rc || !err.message[0]))
		abort();
	if (rc == CN_EREJECTED && err.reject == CN_REJECT_OTHER)
		abort();
	if (rc != CN_OK)
		return;
	if (!bson_validate(&req.cmd, BSON_VALIDATE_UTF8, NULL))
		abort();
	bson_iter_t it;
	if (!bson_iter_init(&it, &req.cmd) || !bson_iter_next(&it))
		abort();
	const char *first = bson_iter_key(&it);
	if (strcmp(first, "find") && strcmp(first, "aggregate") && strcmp(first, "count") &&
	    strcmp(first, "distinct") && strcmp(first, "explain"))
		abort();
	if (req.max_param < 0 || req.max_param > MG_MAX_PARAMS)
		abort();
	walk(&req.cmd, 0);
	mg_request_free(&req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one((const char *)data, size, false);
	one((const char *)data, size, true);
	return 0;
}
