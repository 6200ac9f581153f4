/*
 * test_mongo_guard.c - the MongoDB driver's strict JSON reader and command
 * guard, without a server: every line of the attack corpus
 * (tests/fixtures/mongodb/attacks.txt) is refused with a message that says
 * what; every line of the must-allow list (allowed.txt) is accepted, with
 * and without its parameters bound; parameters bind as values ($literal in
 * expressions) and refuse what does not fit; the reader's refusals; the
 * command the guard builds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "mongo_guard.h"
#include "mongo_json.h"

/* ---- hidden objects as the tests configure them ---- */

static int t_hidden(void *ctx, const char *coll, const char *field)
{
	(void)ctx;
	if (!strcmp(coll, "secrets"))
		return 1;
	if (!field || strcmp(coll, "customers"))
		return 0;
	static const char *const h[] = {"email", "ssn", "address.street"};
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(h[i]);
		if (!strncmp(field, h[i], n) && (field[n] == '\0' || field[n] == '.'))
			return 1;
	}
	return 0;
}

static int t_under(void *ctx, const char *coll, const char *path)
{
	(void)ctx;
	return !strcmp(coll, "customers") && (!*path || !strcmp(path, "address"));
}

static const struct mg_hooks hooks = {NULL, t_hidden, t_under};

/* ---- corpus files ---- */

struct line {
	char *a, *params, *query;
	int no;
};

struct corpus {
	struct line *v;
	size_t n;
};

static void corpus_load(const char *name, struct corpus *c)
{
	char path[512];
	snprintf(path, sizeof path, "%s/tests/fixtures/mongodb/%s", CN_TEST_SOURCE_DIR, name);
	FILE *f = fopen(path, "r");
	if (!f)
		fail_msg("cannot read %s", path);
	char buf[8192];
	int no = 0;
	memset(c, 0, sizeof *c);
	while (fgets(buf, sizeof buf, f)) {
		no++;
		buf[strcspn(buf, "\n")] = '\0';
		if (!buf[0] || buf[0] == '#')
			continue;
		char *t1 = strchr(buf, '\t');
		if (!t1)
			fail_msg("%s:%d: no tab", name, no);
		*t1 = '\0';
		char *rest = t1 + 1, *t2 = strchr(rest, '\t');
		struct line l = {strdup(buf), NULL, NULL, no};
		if (t2) {
			*t2 = '\0';
			l.params = strdup(rest);
			l.query = strdup(t2 + 1);
		} else {
			l.query = strdup(rest);
		}
		c->v = realloc(c->v, (c->n + 1) * sizeof *c->v);
		c->v[c->n++] = l;
	}
	fclose(f);
}

static void corpus_free(struct corpus *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->v[i].a);
		free(c->v[i].params);
		free(c->v[i].query);
	}
	free(c->v);
}

/* Parameters from a JSON array of scalars; texts point into *keep. */
static size_t params_parse(const char *json, cJSON **keep, struct cn_value *v, size_t max)
{
	*keep = NULL;
	if (!json)
		return 0;
	cJSON *arr = cJSON_Parse(json);
	if (!cJSON_IsArray(arr))
		fail_msg("parameters are not a JSON array: %s", json);
	size_t n = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, arr) {
		assert_true(n < max);
		struct cn_value *p = &v[n++];
		if (cJSON_IsString(it)) {
			*p = (struct cn_value){.kind = CN_VAL_TEXT};
			p->u.s.ptr = it->valuestring;
			p->u.s.len = strlen(it->valuestring);
		} else if (cJSON_IsBool(it)) {
			*p = (struct cn_value){.kind = CN_VAL_BOOL, .u.b = cJSON_IsTrue(it)};
		} else if (cJSON_IsNull(it)) {
			*p = (struct cn_value){.kind = CN_VAL_NULL};
		} else if (it->valuedouble == (double)(int64_t)it->valuedouble) {
			*p = (struct cn_value){.kind = CN_VAL_INT, .u.i = (int64_t)it->valuedouble};
		} else {
			*p = (struct cn_value){.kind = CN_VAL_DOUBLE, .u.d = it->valuedouble};
		}
	}
	*keep = arr;
	return n;
}

static void test_attacks_refused(void **state)
{
	(void)state;
	struct corpus c;
	corpus_load("attacks.txt", &c);
	assert_true(c.n > 150);
	for (size_t i = 0; i < c.n; i++) {
		const struct line *l = &c.v[i];
		struct cn_value params[8];
		cJSON *keep;
		size_t np = params_parse(l->params, &keep, params, 8);
		struct mg_request req;
		struct cn_error err = {0};
		int rc = mg_guard_build(l->query, strlen(l->query), &hooks, params, np, l->params != NULL,
					&req, &err);
		if (rc == CN_OK) {
			mg_request_free(&req);
			fail_msg("attacks.txt:%d was accepted: %s", l->no, l->query);
		}
		if (rc != CN_EREJECTED && rc != CN_EINVAL)
			fail_msg("attacks.txt:%d: status %d: %s", l->no, rc, err.message);
		if (err.code != rc || !strstr(err.message, l->a))
			fail_msg("attacks.txt:%d: message '%s' lacks '%s'", l->no, err.message, l->a);
		if (rc == CN_EREJECTED && err.reject == CN_REJECT_OTHER)
			fail_msg("attacks.txt:%d: refused without a class: %s", l->no, err.message);
		cJSON_Delete(keep);
	}
	corpus_free(&c);
}

/* What each refusal counts as in the metrics. */
static const struct {
	const char *query;
	enum cn_reject why;
} classes[] = {
	{"{\"insert\": \"orders\", \"documents\": [{\"a\": 1}]}", CN_REJECT_WRITE},
	{"{\"aggregate\": \"orders\", \"pipeline\": [{\"$out\": \"copy\"}]}", CN_REJECT_WRITE},
	{"{\"aggregate\": \"orders\", \"pipeline\": [{\"$merge\": {\"into\": \"copy\"}}]}",
	 CN_REJECT_WRITE},
	{"{\"aggregate\": \"orders\", \"pipeline\": [{\"$project\": {\"x\": {\"$out\": 1}}}]}",
	 CN_REJECT_WRITE},
	{"{\"find\": \"orders\", \"writeConcern\": {\"w\": 1}}", CN_REJECT_WRITE},
	{"{\"find\": \"orders\", \"startTransaction\": true}", CN_REJECT_WRITE},
	{"{\"find\": \"orders\", \"filter\": {\"$where\": \"sleep(100)\"}}", CN_REJECT_DENIED},
	{"{\"find\": \"orders\", \"filter\": {\"a\": {\"$code\": \"x\"}}}", CN_REJECT_DENIED},
	{"{\"find\": \"orders\", \"allowDiskUse\": true}", CN_REJECT_DENIED},
	{"{\"find\": \"orders\", \"noSuchOption\": 1}", CN_REJECT_DENIED},
	{"{\"listCollections\": 1}", CN_REJECT_DENIED},
	{"{\"aggregate\": 1, \"pipeline\": []}", CN_REJECT_DENIED},
	{"{\"aggregate\": \"orders\", \"pipeline\": [{\"$currentOp\": {}}]}", CN_REJECT_DENIED},
	{"{\"aggregate\": \"orders\", \"pipeline\": [{\"$noSuchStage\": {}}]}", CN_REJECT_DENIED},
	{"{\"find\": \"orders\", \"filter\": {\"a\": {\"$noSuchOp\": 1}}}", CN_REJECT_DENIED},
	{"{\"find\": \"orders\", \"filter\": {\"$expr\": {\"$noSuchOp\": 1}}}", CN_REJECT_DENIED},
	{"{\"find\": \"orders\", \"filter\": {\"$expr\": {\"$eq\": [\"$$SYS\", 1]}}}", CN_REJECT_DENIED},
	{"{\"find\": \"system.users\"}", CN_REJECT_DENIED},
	{"{\"aggregate\": \"orders\", \"pipeline\": [{\"$lookup\": {\"from\": {\"db\": \"admin\", "
	 "\"coll\": \"system.users\"}, \"as\": \"u\", \"pipeline\": []}}]}", CN_REJECT_DENIED},
	{"{\"find\": \"secrets\"}", CN_REJECT_HIDDEN},
	{"{\"find\": \"customers\", \"filter\": {\"email\": \"a@b\"}}", CN_REJECT_HIDDEN},
	{"{\"find\": \"customers\", \"sort\": {\"address\": 1}}", CN_REJECT_HIDDEN},
	{"{\"aggregate\": \"customers\", \"pipeline\": [{\"$replaceWith\": \"$$ROOT\"}]}",
	 CN_REJECT_HIDDEN},
	{"{\"aggregate\": \"orders\", \"pipeline\": [{\"$lookup\": {\"from\": \"customers\", "
	 "\"localField\": \"customer_id\", \"foreignField\": \"_id\", \"as\": \"c\"}}]}",
	 CN_REJECT_HIDDEN},
	{"{\"find\": \"orders\", \"filter\": {\"a\": {\"$param\": 0}}}", CN_REJECT_PARAMETER},
	{"{\"find\": \"orders\", \"filter\": {\"a\": {\"$param\": 1, \"b\": 2}}}", CN_REJECT_PARAMETER},
	{"{}", CN_REJECT_STATEMENTS},
	{"", CN_REJECT_STATEMENTS},
	{"{\"find\": \"orders\"} {\"drop\": \"orders\"}", CN_REJECT_STATEMENTS},
	{"{\"find\": \"orders\"", CN_REJECT_SYNTAX},
	{"[{\"find\": \"orders\"}]", CN_REJECT_SYNTAX},
	{"{\"find\": \"orders\", \"filter\": 1}", CN_REJECT_SYNTAX},
	{"{\"find\": \"orders\", \"limit\": -1}", CN_REJECT_SYNTAX},
	{"{\"find\": \"orders\", \"filter\": {\"_id\": {\"$oid\": \"xyz\"}}}", CN_REJECT_SYNTAX},
	{"{\"aggregate\": \"orders\", \"pipeline\": [{\"$group\": {\"n\": 1}}]}", CN_REJECT_SYNTAX},
};

static void test_classes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++) {
		struct mg_request req;
		struct cn_error err = {0};
		int rc = mg_guard_build(classes[i].query, strlen(classes[i].query), &hooks, NULL, 0, false,
					&req, &err);
		if (rc == CN_OK)
			mg_request_free(&req);
		if (rc != CN_EREJECTED || err.reject != (int)classes[i].why)
			fail_msg("%s: status %d, class %d, expected class %d (%s)", classes[i].query, rc,
				 err.reject, (int)classes[i].why, err.message);
	}
	/* limits: a field path, a collection name, the nesting of the text */
	char q[4096];
	int n = snprintf(q, sizeof q, "{\"find\": \"orders\", \"filter\": {\"");
	for (int i = 0; i < MG_MAX_PATH + 1; i++)
		q[n++] = 'a';
	n += snprintf(q + n, sizeof q - (size_t)n, "\": 1}}");
	struct mg_request req;
	struct cn_error err = {0};
	assert_int_equal(mg_guard_build(q, (size_t)n, &hooks, NULL, 0, false, &req, &err), CN_EREJECTED);
	assert_int_equal(err.reject, CN_REJECT_LIMIT);
	n = snprintf(q, sizeof q, "{\"find\": \"");
	for (int i = 0; i < MG_MAX_NAME + 1; i++)
		q[n++] = 'o';
	n += snprintf(q + n, sizeof q - (size_t)n, "\"}");
	memset(&err, 0, sizeof err);
	assert_int_equal(mg_guard_build(q, (size_t)n, &hooks, NULL, 0, false, &req, &err), CN_EREJECTED);
	assert_int_equal(err.reject, CN_REJECT_LIMIT);
	n = snprintf(q, sizeof q, "{\"find\": \"orders\", \"filter\": ");
	for (int i = 0; i < MJ_MAX_DEPTH; i++)
		n += snprintf(q + n, sizeof q - (size_t)n, "{\"a\": ");
	q[n++] = '1';
	for (int i = 0; i < MJ_MAX_DEPTH + 1; i++)
		q[n++] = '}';
	memset(&err, 0, sizeof err);
	assert_int_equal(mg_guard_build(q, (size_t)n, &hooks, NULL, 0, false, &req, &err), CN_EREJECTED);
	assert_int_equal(err.reject, CN_REJECT_LIMIT);
}

static void test_allowed_accepted(void **state)
{
	(void)state;
	struct corpus c;
	corpus_load("allowed.txt", &c);
	assert_true(c.n > 50);
	for (size_t i = 0; i < c.n; i++) {
		const struct line *l = &c.v[i];
		struct cn_value params[8];
		cJSON *keep;
		size_t np = params_parse(l->params, &keep, params, 8);
		for (int bind = 0; bind < 2; bind++) {
			struct mg_request req;
			struct cn_error err = {0};
			int rc = mg_guard_build(l->query, strlen(l->query), &hooks, params, np, bind, &req, &err);
			if (rc != CN_OK)
				fail_msg("allowed.txt:%d (bind %d) was refused: %s", l->no, bind, err.message);
			assert_int_equal(req.max_param, (int)np);
			mg_request_free(&req);
		}
		cJSON_Delete(keep);
	}
	corpus_free(&c);
}

/* ---- what the guard builds ---- */

struct build_case {
	const char *query;
	struct cn_value params[3];
	size_t nparams;
	const char *want; /* canonical-ish: bson_as_relaxed_extended_json of the command */
	const char *scrub;
};

#define TXT(text) {.kind = CN_VAL_TEXT, .u.s = {text, sizeof(text) - 1}}
#define INT(v) {.kind = CN_VAL_INT, .u.i = (v)}

static const struct build_case builds[] = {
	/* a text parameter stays a value in a query, never an operator */
	{"{\"find\": \"orders\", \"filter\": {\"status\": {\"$param\": 1}}}", {TXT("$gt")}, 1,
	 "{ \"find\" : \"orders\", \"filter\" : { \"status\" : \"$gt\" } }", "orders"},
	{"{\"find\": \"orders\", \"filter\": {\"a\": {\"$in\": [{\"$param\": 1}, {\"$param\": 2}]}}}",
	 {TXT("{\"$ne\": 1}"), INT(7)}, 2,
	 "{ \"find\" : \"orders\", \"filter\" : { \"a\" : { \"$in\" : [ \"{\\\"$ne\\\": 1}\", 7 ] } } }",
	 "orders"},
	/* in an expression it is a $literal, so "$email" is no field path */
	{"{\"aggregate\": \"orders\", \"pipeline\": [{\"$project\": {\"x\": {\"$param\": 1}}}]}",
	 {TXT("$email")}, 1,
	 "{ \"aggregate\" : \"orders\", \"pipeline\" : [ { \"$project\" : { \"x\" : { \"$literal\" : "
	 "\"$email\" } } } ] }", ""},
	{"{\"find\": \"orders\", \"filter\": {\"$expr\": {\"$eq\": [\"$status\", {\"$param\": 1}]}}}",
	 {TXT("$$ROOT")}, 1,
	 "{ \"find\" : \"orders\", \"filter\" : { \"$expr\" : { \"$eq\" : [ \"$status\", { \"$literal\" "
	 ": \"$$ROOT\" } ] } } }", "orders"},
	/* inside $literal: the value itself, not a second $literal */
	{"{\"aggregate\": \"o\", \"pipeline\": [{\"$set\": {\"x\": {\"$literal\": {\"$param\": 1}}}}]}",
	 {TXT("$x")}, 1,
	 "{ \"aggregate\" : \"o\", \"pipeline\" : [ { \"$set\" : { \"x\" : { \"$literal\" : \"$x\" } } } ] }",
	 "o"},
	/* counts bind as numbers */
	{"{\"aggregate\": \"o\", \"pipeline\": [{\"$skip\": {\"$param\": 1}}, {\"$limit\": {\"$param\": 2}}]}",
	 {INT(3), INT(5)}, 2,
	 "{ \"aggregate\" : \"o\", \"pipeline\" : [ { \"$skip\" : 3 }, { \"$limit\" : 5 } ] }", "o"},
	/* typed parameters */
	{"{\"find\": \"o\", \"filter\": {\"d\": {\"$gte\": {\"$date\": {\"$param\": 1}}}, \"_id\": "
	 "{\"$oid\": {\"$param\": 2}}}}",
	 {TXT("2024-05-01T12:00:00.250+02:00"), TXT("65b000000000000000000002")}, 2,
	 "{ \"find\" : \"o\", \"filter\" : { \"d\" : { \"$gte\" : { \"$date\" : "
	 "\"2024-05-01T10:00:00.250Z\" } }, \"_id\" : { \"$oid\" : \"65b000000000000000000002\" } } }", "o"},
	{"{\"find\": \"o\", \"filter\": {\"p\": {\"$numberDecimal\": {\"$param\": 1}}, \"n\": "
	 "{\"$numberLong\": \"9007199254740993\"}}}",
	 {TXT("1.10")}, 1,
	 "{ \"find\" : \"o\", \"filter\" : { \"p\" : { \"$numberDecimal\" : \"1.10\" }, \"n\" : "
	 "9007199254740993 } }", "o"},
	/* batchSize, cursor: the connector's to set; explain wraps */
	{"{\"find\": \"o\", \"batchSize\": 5, \"limit\": 2}", {{0}}, 0,
	 "{ \"find\" : \"o\", \"limit\" : 2 }", "o"},
	{"{\"aggregate\": \"o\", \"pipeline\": [], \"cursor\": {\"batchSize\": 3}}", {{0}}, 0,
	 "{ \"aggregate\" : \"o\", \"pipeline\" : [  ] }", "o"},
	{"{\"explain\": {\"count\": \"o\", \"query\": {\"a\": 1}}, \"verbosity\": \"executionStats\"}",
	 {{0}}, 0,
	 "{ \"explain\" : { \"count\" : \"o\", \"query\" : { \"a\" : 1 } }, \"verbosity\" : "
	 "\"executionStats\" }", ""},
	/* a pipeline that builds new documents needs no scrubbing; an inclusion of a
	 * field that holds hidden ones keeps the collection to scrub */
	{"{\"aggregate\": \"customers\", \"pipeline\": [{\"$project\": {\"name\": 1}}]}", {{0}}, 0,
	 "{ \"aggregate\" : \"customers\", \"pipeline\" : [ { \"$project\" : { \"name\" : 1 } } ] }", ""},
	{"{\"aggregate\": \"customers\", \"pipeline\": [{\"$project\": {\"address\": 1}}]}", {{0}}, 0,
	 "{ \"aggregate\" : \"customers\", \"pipeline\" : [ { \"$project\" : { \"address\" : 1 } } ] }",
	 "customers"},
	{"{\"aggregate\": \"orders\", \"pipeline\": [{\"$group\": {\"_id\": null}}, {\"$unionWith\": "
	 "\"products\"}]}", {{0}}, 0,
	 "{ \"aggregate\" : \"orders\", \"pipeline\" : [ { \"$group\" : { \"_id\" : null } }, "
	 "{ \"$unionWith\" : \"products\" } ] }", "products"},
	/* Extended JSON values */
	{"{\"find\": \"o\", \"filter\": {\"r\": {\"$regularExpression\": {\"pattern\": \"^a\", \"options\": "
	 "\"i\"}}, \"u\": {\"$uuid\": \"0f8fad5b-d9cb-469f-a165-70867728950e\"}, \"t\": {\"$timestamp\": "
	 "{\"t\": 5, \"i\": 1}}, \"k\": {\"$minKey\": 1}}}", {{0}}, 0,
	 "{ \"find\" : \"o\", \"filter\" : { \"r\" : { \"$regularExpression\" : { \"pattern\" : \"^a\", "
	 "\"options\" : \"i\" } }, \"u\" : { \"$binary\" : { \"base64\" : \"D4+tW9nLRp+hZXCGdyiVDg==\", "
	 "\"subType\" : \"04\" } }, \"t\" : { \"$timestamp\" : { \"t\" : 5, \"i\" : 1 } }, \"k\" : { "
	 "\"$minKey\" : 1 } } }", "o"},
};

static void test_builds(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof builds / sizeof builds[0]; i++) {
		const struct build_case *b = &builds[i];
		struct mg_request req;
		struct cn_error err = {0};
		int rc = mg_guard_build(b->query, strlen(b->query), &hooks, b->params, b->nparams, true,
					&req, &err);
		if (rc)
			fail_msg("case %zu refused: %s", i, err.message);
		char *json = bson_as_relaxed_extended_json(&req.cmd, NULL);
		if (strcmp(json, b->want))
			fail_msg("case %zu:\n got  %s\n want %s", i, json, b->want);
		if (strcmp(req.scrub, b->scrub))
			fail_msg("case %zu: scrub '%s', want '%s'", i, req.scrub, b->scrub);
		bson_free(json);
		mg_request_free(&req);
	}
}

struct param_case {
	const char *query;
	struct cn_value params[2];
	size_t nparams;
	int rc;
	const char *part;
};

static const struct param_case param_cases[] = {
	{"{\"find\": \"o\", \"filter\": {\"a\": {\"$param\": 2}}}", {TXT("x"), TXT("y")}, 2, CN_EINVAL,
	 "parameters[0] is not used"},
	{"{\"find\": \"o\", \"filter\": {\"a\": {\"$param\": 3}}}", {TXT("x"), TXT("y")}, 2, CN_EINVAL,
	 "uses parameter 3 but 2 parameters were given"},
	{"{\"find\": \"o\"}", {TXT("x")}, 1, CN_EINVAL, "parameters[0] is not used"},
	{"{\"find\": \"o\", \"limit\": {\"$param\": 1}}", {TXT("5")}, 1, CN_EINVAL,
	 "parameters[0] must be a non-negative integer"},
	{"{\"aggregate\": \"o\", \"pipeline\": [{\"$limit\": {\"$param\": 1}}]}", {INT(0)}, 1, CN_EINVAL,
	 "must be a positive integer"},
	{"{\"find\": \"o\", \"filter\": {\"d\": {\"$date\": {\"$param\": 1}}}}", {TXT("yesterday")}, 1,
	 CN_EINVAL, "parameters[0] is not an ISO 8601 date"},
	{"{\"find\": \"o\", \"filter\": {\"d\": {\"$date\": {\"$param\": 1}}}}", {TXT("2024-02-30")}, 1,
	 CN_EINVAL, "ISO 8601"},
	{"{\"find\": \"o\", \"filter\": {\"i\": {\"$oid\": {\"$param\": 1}}}}", {TXT("65b0")}, 1, CN_EINVAL,
	 "parameters[0] is not an ObjectId"},
	{"{\"find\": \"o\", \"filter\": {\"i\": {\"$oid\": {\"$param\": 1}}}}", {INT(5)}, 1, CN_EINVAL,
	 "cannot become $oid"},
	{"{\"find\": \"o\", \"filter\": {\"a\": {\"$param\": 1}}}",
	 {{.kind = CN_VAL_JSON, .u.s = {"{}", 2}}}, 1, CN_EINVAL, "parameters are single values"},
	{"{\"find\": \"o\", \"filter\": {\"a\": {\"$param\": 1}}}",
	 {{.kind = CN_VAL_TEXT, .u.s = {"\xff\xfe", 2}}}, 1, CN_EINVAL, "not valid UTF-8"},
	{"{\"find\": \"o\", \"filter\": {\"a\": {\"$param\": 1}}}",
	 {{.kind = CN_VAL_NUMERIC, .u.s = {"1.5e3", 5}}}, 1, CN_OK, NULL},
	{"{\"find\": \"o\", \"filter\": {\"a\": {\"$param\": 1}}}",
	 {{.kind = CN_VAL_BYTES, .u.s = {"\0\1", 2}}}, 1, CN_OK, NULL},
	{"{\"find\": \"o\", \"filter\": {\"a\": {\"$param\": 1}, \"b\": {\"$param\": 2}}}",
	 {{.kind = CN_VAL_NULL}, {.kind = CN_VAL_DOUBLE, .u.d = 2.5}}, 2, CN_OK, NULL},
};

static void test_parameters(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof param_cases / sizeof param_cases[0]; i++) {
		const struct param_case *c = &param_cases[i];
		struct mg_request req;
		struct cn_error err = {0};
		int rc = mg_guard_build(c->query, strlen(c->query), &hooks, c->params, c->nparams, true, &req,
					&err);
		if (rc != c->rc)
			fail_msg("case %zu: status %d, want %d (%s)", i, rc, c->rc, err.message);
		if (rc == CN_OK)
			mg_request_free(&req);
		else if (!strstr(err.message, c->part))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.message, c->part);
	}
	/* more than the connector's parameters */
	struct cn_value many[MG_MAX_PARAMS + 1];
	memset(many, 0, sizeof many);
	struct mg_request req;
	struct cn_error err = {0};
	assert_int_equal(mg_guard_build("{\"find\": \"o\"}", 13, &hooks, many, MG_MAX_PARAMS + 1, true,
					&req, &err), CN_EINVAL);
}

/* ---- the strict reader ---- */

struct raw_case {
	const char *text;
	size_t len; /* 0: strlen */
	const char *part;
};

static const struct raw_case raws[] = {
	{"{\"find\": \"o\", \"filter\": {\"a\": \"\xff\"}}", 0, "invalid UTF-8"},
	{"{\"find\": \"o\", \"filter\": {\"a\": \"\xc0\xaf\"}}", 0, "invalid UTF-8"},     /* overlong '/' */
	{"{\"find\": \"o\", \"filter\": {\"a\": \"\xed\xa0\x80\"}}", 0, "invalid UTF-8"}, /* surrogate */
	{"{\"find\": \"o\", \"filter\": {\"a\": \"\xf4\x90\x80\x80\"}}", 0, "invalid UTF-8"},
	{"{\"find\": \"o\", \"filter\": {\"a\": \"x\ty\"}}", 0, "raw control character"},
	{"\xef\xbb\xbf{\"find\": \"o\"}", 0, "byte order mark"},
	{"{\"find\": \"o\"}\0{\"drop\": \"o\"}", 28, "text after the command document"},
	{"{\"find\": \"o\", \"filter\": {\"a\": 1.}}", 0, "digits after its decimal point"},
	{"{\"find\": \"o\", \"filter\": {\"a\": 1e}}", 0, "digits in its exponent"},
	{"{\"find\": \"o\", \"filter\": {\"a\": -}}", 0, "expected a value"},
	{"{\"find\": \"o\", \"filter\": {\"a\": 1e999}}", 0, "outside the range of a double"},
	{"{\"find\": \"o\", \"filter\": {\"a\": tru}}", 0, "expected a value"},
	{"{\"find\": \"o\", \"filter\": {\"a\": \"\\u12\"}}", 0, "four hex digits"},
	{"{\"find\": \"o\", \"filter\": {\"a\": \"\\ud800\\u0041\"}}", 0, "broken surrogate pair"},
	{"{\"find\": \"o\"", 0, "not closed"},
	{"{\"find\": \"o", 0, "not closed"},
	{"{\"find\" \"o\"}", 0, "expected ':'"},
	{"{\"find\": \"o\" \"x\": 1}", 0, "expected ',' or '}'"},
	{"", 0, "is empty"},
};

static void test_strict_reader(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof raws / sizeof raws[0]; i++) {
		const struct raw_case *c = &raws[i];
		struct mj_doc doc;
		struct cn_error err = {0};
		size_t len = c->len ? c->len : strlen(c->text);
		int rc = mj_parse(c->text, len, &doc, &err);
		if (rc == CN_OK) {
			mj_doc_free(&doc);
			fail_msg("case %zu was accepted", i);
		}
		assert_int_equal(rc, CN_EREJECTED);
		if (!strstr(err.message, c->part))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.message, c->part);
		/* not one document is about statements; the rest is syntax */
		bool one = strstr(c->part, "after the command") || strstr(c->part, "empty");
		assert_int_equal(err.reject, one ? CN_REJECT_STATEMENTS : CN_REJECT_SYNTAX);
	}
	/* nesting and size limits */
	char deep[1024];
	size_t k = 0;
	k += (size_t)sprintf(deep, "{\"find\": \"o\", \"filter\": ");
	for (int i = 0; i < MJ_MAX_DEPTH; i++)
		k += (size_t)sprintf(deep + k, "{\"a\": ");
	k += (size_t)sprintf(deep + k, "1");
	for (int i = 0; i < MJ_MAX_DEPTH + 1; i++)
		deep[k++] = '}';
	deep[k] = '\0';
	struct mj_doc doc;
	struct cn_error err = {0};
	assert_int_equal(mj_parse(deep, k, &doc, &err), CN_EREJECTED);
	assert_non_null(strstr(err.message, "nested deeper than 64 levels"));
	assert_int_equal(err.reject, CN_REJECT_LIMIT);
	size_t big = MJ_MAX_NODES * 2 + 64;
	char *arr = malloc(big * 2 + 64);
	size_t w = (size_t)sprintf(arr, "{\"find\": \"o\", \"filter\": {\"a\": {\"$in\": [");
	for (size_t i = 0; i < MJ_MAX_NODES + 5; i++)
		w += (size_t)sprintf(arr + w, "%s1", i ? "," : "");
	w += (size_t)sprintf(arr + w, "]}}}");
	assert_int_equal(mj_parse(arr, w, &doc, &err), CN_EREJECTED);
	assert_non_null(strstr(err.message, "more than 20000 values"));
	assert_int_equal(err.reject, CN_REJECT_LIMIT);
	free(arr);
	/* a large object's duplicate keys are found (the sorted path) */
	char *obj = malloc(40 * 64 + 64);
	w = (size_t)sprintf(obj, "{\"find\": \"o\", \"filter\": {");
	for (int i = 0; i < 40; i++)
		w += (size_t)sprintf(obj + w, "%s\"k%d\": 1", i ? ", " : "", i % 39);
	w += (size_t)sprintf(obj + w, "}}");
	assert_int_equal(mj_parse(obj, w, &doc, &err), CN_EREJECTED);
	assert_non_null(strstr(err.message, "filter: duplicate key \"k0\""));
	assert_int_equal(err.reject, CN_REJECT_SYNTAX);
	free(obj);
	/* what is accepted: escapes that are not '$' or '.', every number form */
	const char *good = "{\"find\": \"o\", \"filter\": {\"na\\u006de\": \"\\u00e9\\ud83d\\ude00\\\"\\/\", "
			   "\"n\": [0, -0, 1.5e3, -2E-2, 9223372036854775807, -9223372036854775808]}}";
	assert_int_equal(mj_parse(good, strlen(good), &doc, &err), CN_OK);
	const struct mj_node *f = mj_get(doc.root, "filter");
	assert_string_equal(f->first->key, "name");
	assert_string_equal(f->first->str, "\xc3\xa9\xf0\x9f\x98\x80\"/");
	const struct mj_node *n = f->first->next->first;
	assert_int_equal(n->kind, MJ_INT);
	assert_int_equal(n->next->next->kind, MJ_DOUBLE);
	assert_true(n->next->next->next->next->v.i == INT64_MAX);
	mj_doc_free(&doc);
}

/* ---- helpers ---- */

static void test_dates_and_paths(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		int64_t ms;
	} good[] = {
		{"1970-01-01", 0},
		{"1970-01-01T00:00:00Z", 0},
		{"2024-02-29T12:34:56.789Z", 1709210096789},
		{"2024-05-01T12:00:00+02:00", 1714557600000},
		{"2024-05-01t12:00:00-0130", 1714570200000},
		{"1969-12-31T23:59:59.999Z", -1},
		{"2000-01-01 00:00Z", 946684800000},
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		int64_t ms;
		if (!mg_parse_date(good[i].s, strlen(good[i].s), &ms) || ms != good[i].ms)
			fail_msg("%s: got %lld", good[i].s, (long long)ms);
	}
	static const char *const bad[] = {"2023-02-29", "2024-13-01", "2024-01-01T10:00", "24-01-01",
					  "2024-01-01T25:00:00Z", "2024-01-01T10:00:00.Z",
					  "2024-01-01T10:00:00Zjunk", ""};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int64_t ms;
		if (mg_parse_date(bad[i], strlen(bad[i]), &ms))
			fail_msg("'%s' was read as a date", bad[i]);
	}
	char out[64];
	assert_true(mg_path_normalize("items.0.sku", out, sizeof out));
	assert_string_equal(out, "items.sku");
	assert_true(mg_path_normalize("a.$[].b.$[x].c.$", out, sizeof out));
	assert_string_equal(out, "a.b.c");
	assert_true(mg_path_normalize("items[].tags[][]", out, sizeof out));
	assert_string_equal(out, "items.tags");
	assert_true(mg_path_normalize("x1.2y", out, sizeof out));
	assert_string_equal(out, "x1.2y");
	assert_false(mg_path_normalize("abcdefgh.ijklmnop", out, 8));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attacks_refused),
		cmocka_unit_test(test_classes),
		cmocka_unit_test(test_allowed_accepted),
		cmocka_unit_test(test_builds),
		cmocka_unit_test(test_parameters),
		cmocka_unit_test(test_strict_reader),
		cmocka_unit_test(test_dates_and_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
