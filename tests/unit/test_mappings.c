/* test_mappings.c - semantic mapping files: loading, errors, apply, hidden checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mappings.h"

static struct mappings *load_ok(const char *name, const char *text)
{
	struct mappings *mp = NULL;
	struct cn_error err = {0};
	int rc = mappings_load_buffer(name, text, strlen(text), &mp, &err);
	if (rc != CN_OK)
		fail_msg("%s should load: %s", name, err.message);
	assert_non_null(mp);
	return mp;
}

static const struct mapping_entry *entry(const struct mappings *mp, const char *key)
{
	for (size_t i = 0; i < mp->n; i++)
		if (strcmp(mp->entries[i].key, key) == 0)
			return &mp->entries[i];
	fail_msg("no entry '%s'", key);
	return NULL;
}

/* The entry's synonyms joined with ','. */
static void assert_synonyms(const struct mapping_entry *e, const char *want)
{
	char got[512] = "";
	for (size_t i = 0; i < e->nsynonyms; i++) {
		if (i)
			strcat(got, ",");
		strcat(got, e->synonyms[i]);
	}
	assert_string_equal(got, want);
}

/* ---- loading ---- */

static const char yaml_good[] = "# semantic mappings for the shop\n"
				"mappings:\n"
				"  customers:\n"
				"    description: Customer accounts and profiles\n"
				"    synonyms:\n"
				"      - users\n"
				"      - \"clients\"\n"
				"  customers.email: { description: 'Login email', hidden: true }\n"
				"  orders: {synonyms: purchases}\n"
				"  public.orders.total:\n"
				"    synonyms: []\n"
				"    hidden: False\n"
				"  audit: {}\n";

static void test_load_yaml(void **state)
{
	(void)state;
	struct mappings *mp = load_ok("shop.yaml", yaml_good);
	const struct mapping_entry *e;

	assert_string_equal(mp->path, "shop.yaml");
	assert_int_equal(mp->n, 5);
	assert_string_equal(mp->entries[0].key, "customers"); /* file order */
	assert_string_equal(mp->entries[4].key, "audit");

	e = entry(mp, "customers");
	assert_int_equal(e->line, 3);
	assert_string_equal(e->description, "Customer accounts and profiles");
	assert_synonyms(e, "users,clients");
	assert_false(e->hidden);

	e = entry(mp, "customers.email");
	assert_int_equal(e->line, 8);
	assert_string_equal(e->description, "Login email");
	assert_null(e->synonyms); /* not set */
	assert_true(e->hidden);

	e = entry(mp, "orders");
	assert_int_equal(e->line, 9);
	assert_null(e->description);
	assert_synonyms(e, "purchases"); /* one string is one synonym */

	e = entry(mp, "public.orders.total");
	assert_int_equal(e->line, 10);
	assert_non_null(e->synonyms); /* set, and empty */
	assert_int_equal(e->nsynonyms, 0);
	assert_false(e->hidden);

	e = entry(mp, "audit");
	assert_int_equal(e->line, 13);
	assert_null(e->description);
	assert_null(e->synonyms);
	assert_false(e->hidden);
	mappings_free(mp);
}

/* The contract's example, as Interactor's API takes it. */
static const char json_contract[] =
    "{ \"mappings\": {\n"
    "    \"customers\":            { \"description\": \"Customer accounts and profiles\", "
    "\"synonyms\": [\"users\", \"clients\"] },\n"
    "    \"customers.created_at\": { \"description\": \"When the customer signed up\", "
    "\"synonyms\": [\"signup date\"] } } }\n";

/* Tab-indented, compact separators, escapes, UTF-8: what editors and tools write. */
static const char json_tabs[] =
    "{\n"
    "\t\"mappings\": {\n"
    "\t\t\"Sales.Orders\": {\n"
    "\t\t\t\"description\":\"Orders \\\"as placed\\\" \\u00e9\\n\\/ caf\xc3\xa9\",\n"
    "\t\t\t\"synonyms\":[\"purchases\",\"sales\"],\n"
    "\t\t\t\"hidden\":true\n"
    "\t\t},\n"
    "\t\t\"x\": {\"hidden\": false, \"synonyms\": []}\n"
    "\t}\n"
    "}\n";

static void test_load_json(void **state)
{
	(void)state;
	struct mappings *mp = load_ok("contract.json", json_contract);
	const struct mapping_entry *e;

	assert_int_equal(mp->n, 2);
	e = entry(mp, "customers");
	assert_int_equal(e->line, 2);
	assert_string_equal(e->description, "Customer accounts and profiles");
	assert_synonyms(e, "users,clients");
	e = entry(mp, "customers.created_at");
	assert_int_equal(e->line, 3);
	assert_synonyms(e, "signup date");
	mappings_free(mp);

	mp = load_ok("tabs.json", json_tabs);
	assert_int_equal(mp->n, 2);
	e = entry(mp, "Sales.Orders");
	assert_int_equal(e->line, 3);
	assert_string_equal(e->description, "Orders \"as placed\" \xc3\xa9\n/ caf\xc3\xa9");
	assert_synonyms(e, "purchases,sales");
	assert_true(e->hidden);
	e = entry(mp, "x");
	assert_int_equal(e->line, 8);
	assert_false(e->hidden);
	mappings_free(mp);
}

static void test_load_empty(void **state)
{
	(void)state;
	static const char *const empty[] = {"mappings: {}\n", "{\"mappings\": {}}",
					    "---\nmappings: {}\n...\n"};
	for (size_t i = 0; i < sizeof empty / sizeof empty[0]; i++) {
		struct mappings *mp = load_ok("empty", empty[i]);
		assert_int_equal(mp->n, 0);
		mappings_free(mp);
	}
	mappings_free(NULL);
}

static void test_load_file(void **state)
{
	(void)state;
	char path[] = "/tmp/cn_test_mappings_XXXXXX";
	int fd = mkstemp(path);
	struct mappings *mp = NULL;
	struct cn_error err = {0};

	assert_true(fd >= 0);
	assert_int_equal(write(fd, yaml_good, sizeof yaml_good - 1), (ssize_t)(sizeof yaml_good - 1));
	close(fd);
	assert_int_equal(mappings_load(path, &mp, &err), CN_OK);
	assert_string_equal(mp->path, path);
	assert_int_equal(mp->n, 5);
	mappings_free(mp);

	/* an error in a file names the file */
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("mappings:\n  t: {hiden: true}\n", f);
	fclose(f);
	assert_int_equal(mappings_load(path, &mp, &err), CN_ECONFIG);
	assert_null(mp);
	char want[128];
	snprintf(want, sizeof want, "%s:2: mappings.t.hiden: unknown field; did you mean 'hidden'?", path);
	assert_string_equal(err.message, want);
	unlink(path);

	assert_int_equal(mappings_load(path, &mp, &err), CN_EIO);
	assert_null(mp);
	assert_non_null(strstr(err.message, path));
}

struct bad_case {
	const char *name;
	const char *text;
	const char *prefix; /* the message starts with it */
	const char *part;   /* and contains it */
};

static const struct bad_case bad_cases[] = {
    /* the top level */
    {"m.yaml", "- a\n- b\n", "m.yaml:1: mappings: ", "must be a map with the single key"},
    {"m.yaml", "just text\n", "m.yaml:1: mappings: ", "must be a map with the single key"},
    {"m.yaml", "", "m.yaml:1: mappings: missing", "mappings: {}"},
    {"m.yaml", "# only a comment\n", "m.yaml:1: mappings: missing", "mappings:"},
    {"m.yaml", "mapping:\n  a: {}\n", "m.yaml:1: mapping: unknown top-level key", "did you mean 'mappings'?"},
    {"m.yaml", "mappings: {}\nextra: 1\n", "m.yaml:2: extra: unknown top-level key", "under the single key"},
    {"m.yaml", "mappings:\n  - a\n", "m.yaml:2: mappings: ", "not a list"},
    {"m.yaml", "mappings: x\n", "m.yaml:1: mappings: ", "not a value"},
    {"m.yaml", "mappings:\n", "m.yaml:", "mappings: must be a map of table or column names"},
    {"m.json", "{\"mappings\": null}", "m.json:1: mappings: ", "not null"},
    /* entries */
    {"m.yaml", "mappings:\n  customers: Customer accounts\n",
     "m.yaml:2: mappings.customers: ", "must be a map, not a value"},
    {"m.yaml", "mappings:\n  customers:\n", "m.yaml:", "mappings.customers: must be a map, not null"},
    {"m.yaml", "mappings:\n  customers: [a]\n", "m.yaml:2: mappings.customers: ", "not a list"},
    {"m.yaml", "mappings:\n  \"\": {}\n", "m.yaml:2: mappings: ", "empty key"},
    {"m.yaml", "mappings:\n  a.b.c.d: {}\n", "m.yaml:2: mappings.a.b.c.d: ",
     "more than three parts; write `table`, `table.column` or `schema.table.column`"},
    {"m.yaml", "mappings:\n  a..b: {}\n", "m.yaml:2: mappings.a..b: ", "empty part; remove the extra dot"},
    {"m.yaml", "mappings:\n  .a: {}\n", "m.yaml:2: mappings..a: ", "empty part; remove the extra dot"},
    {"m.yaml", "mappings:\n  ok: {}\n  a.: {}\n",
     "m.yaml:3: mappings.a.: ", "empty part; remove the extra dot"},
    {"m.yaml", "mappings:\n  \"a\\0b\": {}\n", "m.yaml:2: mappings.a: ", "NUL byte"},
    {"m.yaml", "mappings:\n  Customers: {}\n  x: {}\n  customers: {}\n",
     "m.yaml:4: mappings.customers: ", "the same key as 'Customers' on line 2"},
    /* fields */
    {"m.yaml", "mappings:\n  t: {\"hidden\\0x\": true}\n", "m.yaml:2: mappings.t.hidden: ", "NUL byte"},
    {"m.yaml", "\"mappings\\0\": {}\n", "m.yaml:1: mappings: ", "NUL byte"},
    {"m.yaml", "mappings:\n  customers:\n    synonym: [a]\n",
     "m.yaml:3: mappings.customers.synonym: unknown field", "did you mean 'synonyms'?"},
    {"m.yaml", "mappings:\n  t:\n    desc: x\n", "m.yaml:3: mappings.t.desc: unknown field",
     "did you mean 'description'?"},
    {"m.yaml", "mappings:\n  t: {Hidden: true}\n", "m.yaml:2: mappings.t.Hidden: unknown field",
     "did you mean 'hidden'?"},
    {"m.yaml", "mappings:\n  t:\n    colour: red\n", "m.yaml:3: mappings.t.colour: unknown field",
     "the fields are description, synonyms and hidden"},
    {"m.yaml", "mappings:\n  t:\n    description: [a]\n",
     "m.yaml:3: mappings.t.description: ", "must be a string, not a list"},
    {"m.yaml", "mappings:\n  t:\n    description: {a: b}\n",
     "m.yaml:3: mappings.t.description: ", "not a map"},
    {"m.yaml", "mappings:\n  t: {description: null}\n", "m.yaml:2: mappings.t.description: ", "not null"},
    {"m.yaml", "mappings:\n  t: {description: true}\n",
     "m.yaml:2: mappings.t.description: ", "must be a string, not true/false; quote it"},
    {"m.yaml", "mappings:\n  t: {description: \"a\\0b\"}\n",
     "m.yaml:2: mappings.t.description: ", "NUL byte"},
    {"m.yaml", "mappings:\n  t:\n    synonyms: {a: b}\n",
     "m.yaml:3: mappings.t.synonyms: ", "must be a list of strings, not a map"},
    {"m.yaml", "mappings:\n  t:\n    synonyms:\n",
     "m.yaml:", "mappings.t.synonyms: must be a list of strings, not null"},
    {"m.yaml", "mappings:\n  t:\n    synonyms: [a, [b]]\n",
     "m.yaml:3: mappings.t.synonyms: ", "each synonym must be a string, not a list"},
    {"m.yaml", "mappings:\n  t:\n    synonyms:\n      - a\n      - {b: c}\n",
     "m.yaml:5: mappings.t.synonyms: ", "not a map"},
    {"m.yaml", "mappings:\n  t:\n    synonyms: [a, ~]\n", "m.yaml:3: mappings.t.synonyms: ", "not null"},
    {"m.yaml", "mappings:\n  t:\n    synonyms: [a, false]\n",
     "m.yaml:3: mappings.t.synonyms: ", "must be a string"},
    {"m.yaml", "mappings:\n  t:\n    synonyms: [\"\", a]\n",
     "m.yaml:3: mappings.t.synonyms: ", "a synonym is empty"},
    {"m.yaml", "mappings:\n  t: {hidden: yes}\n", "m.yaml:2: mappings.t.hidden: ", "must be true or false"},
    {"m.yaml", "mappings:\n  t: {hidden: \"true\"}\n",
     "m.yaml:2: mappings.t.hidden: ", "must be true or false"},
    {"m.yaml", "mappings:\n  t:\n    hidden: [true]\n",
     "m.yaml:3: mappings.t.hidden: ", "must be true or false"},
    {"m.yaml", "mappings:\n  t:\n    hidden:\n", "m.yaml:", "mappings.t.hidden: must be true or false"},
    {"m.json", "{\"mappings\": {\"t\": {\"hidden\": \"no\"}}}",
     "m.json:1: mappings.t.hidden: ", "must be true or false"},
    {"m.json", "{\n\"mappings\": {\n\"t\": {\n\"synonyms\": [1, {}]}}}",
     "m.json:4: mappings.t.synonyms: ", "not a map"},
    /* the parser's own errors */
    {"m.yaml", "mappings: {a: [}\n", "m.yaml:1:", ""},
    {"m.yaml", "mappings:\n  a: &x {}\n  b: *x\n", "m.yaml:2:", "anchors"},
    {"m.yaml", "mappings:\n  a: {}\n  a: {}\n", "m.yaml:3:", "duplicate key"},
    {"m.yaml", "mappings: {}\n---\nmappings: {}\n", "m.yaml:", "only one YAML document"},
    {"m.json", "{\"mappings\": {\"a\": {}}", "m.json:", "flow mapping"},
};

static void test_load_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		const struct bad_case *c = &bad_cases[i];
		struct mappings *mp = (struct mappings *)1;
		struct cn_error err = {0};
		size_t len = strlen(c->text);
		/* the NUL-byte cases carry their NUL through YAML escapes, not raw */
		int rc = mappings_load_buffer(c->name, c->text, len, &mp, &err);
		if (rc != CN_ECONFIG)
			fail_msg("case %zu (%s): rc %d, want CN_ECONFIG", i, c->text, rc);
		assert_null(mp);
		assert_int_equal(err.code, CN_ECONFIG);
		if (strncmp(err.message, c->prefix, strlen(c->prefix)) != 0 || !strstr(err.message, c->part))
			fail_msg("case %zu: message '%s' lacks prefix '%s' or '%s'", i, err.message,
				 c->prefix, c->part);
		/* every error says what to do or what was found */
		assert_true(strlen(err.message) > strlen(c->prefix));
	}
}

/* Build a document around one entry's fields. */
static char *doc_with(const char *fields)
{
	size_t n = strlen(fields) + 64;
	char *d = malloc(n);
	assert_non_null(d);
	snprintf(d, n, "mappings:\n  t:\n%s", fields);
	return d;
}

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static int load_fields(const char *fields, struct cn_error *err)
{
	char *doc = doc_with(fields);
	struct mappings *mp = NULL;
	int rc = mappings_load_buffer("lim.yaml", doc, strlen(doc), &mp, err);
	mappings_free(mp);
	free(doc);
	return rc;
}

static void test_load_limits(void **state)
{
	(void)state;
	struct cn_error err = {0};
	char *text, *fields;
	size_t cap;

	/* description: 2000 bytes fit, 2001 do not */
	for (size_t len = 1999; len <= 2001; len++) {
		text = repeat('d', len);
		cap = len + 64;
		fields = malloc(cap);
		snprintf(fields, cap, "    description: %s\n", text);
		int rc = load_fields(fields, &err);
		assert_int_equal(rc, len <= 2000 ? CN_OK : CN_ECONFIG);
		if (rc) {
			assert_non_null(strstr(err.message, "lim.yaml:3: mappings.t.description: "));
			assert_non_null(strstr(err.message, "at most 2000 bytes"));
		}
		free(text);
		free(fields);
	}
	/* synonyms: 50 fit, 51 do not */
	for (size_t count = 49; count <= 51; count++) {
		cap = count * 8 + 64;
		fields = malloc(cap);
		size_t off = (size_t)snprintf(fields, cap, "    synonyms: [");
		for (size_t i = 0; i < count; i++)
			off += (size_t)snprintf(fields + off, cap - off, "%ss%zu", i ? ", " : "", i);
		snprintf(fields + off, cap - off, "]\n");
		int rc = load_fields(fields, &err);
		assert_int_equal(rc, count <= 50 ? CN_OK : CN_ECONFIG);
		if (rc) {
			assert_non_null(strstr(err.message, "lim.yaml:3: mappings.t.synonyms: "));
			assert_non_null(strstr(err.message, "at most 50"));
		}
		free(fields);
	}
	/* a synonym: 200 bytes fit, 201 do not */
	for (size_t len = 199; len <= 201; len++) {
		text = repeat('s', len);
		cap = len + 64;
		fields = malloc(cap);
		snprintf(fields, cap, "    synonyms:\n      - ok\n      - %s\n", text);
		int rc = load_fields(fields, &err);
		assert_int_equal(rc, len <= 200 ? CN_OK : CN_ECONFIG);
		if (rc) {
			assert_non_null(strstr(err.message, "lim.yaml:5: mappings.t.synonyms: "));
			assert_non_null(strstr(err.message, "at most 200 bytes"));
		}
		free(text);
		free(fields);
	}
}

/* A long key is cut in messages, and control bytes never reach them. */
static void test_load_error_key_is_printable(void **state)
{
	(void)state;
	char *key = repeat('k', 600);
	size_t cap = 700;
	char *doc = malloc(cap);
	struct mappings *mp = NULL;
	struct cn_error err = {0};

	assert_non_null(doc);
	snprintf(doc, cap, "mappings:\n  \"%s\": 1\n", key);
	assert_int_equal(mappings_load_buffer("k.yaml", doc, strlen(doc), &mp, &err), CN_ECONFIG);
	assert_non_null(strstr(err.message, "k.yaml:2: mappings.kkkk"));
	assert_non_null(strstr(err.message, "k: must be a map"));
	assert_true(strlen(err.message) < 300);
	snprintf(doc, cap, "mappings:\n  \"a\\tb\\x1b\": 1\n");
	assert_int_equal(mappings_load_buffer("k.yaml", doc, strlen(doc), &mp, &err), CN_ECONFIG);
	assert_non_null(strstr(err.message, "k.yaml:2: mappings.a?b?: must be a map"));
	free(doc);
	free(key);
}

/* ---- applying ---- */

struct shop {
	struct schema_model *m;
	int customers, archive, orders, audit, notes, reports, daily;
};

static void shop_build(struct shop *s)
{
	struct cn_schema_builder b;
	const char *id[] = {"id"}, *cust[] = {"customer_id"}, *aud[] = {"audit_id"};

	s->m = schema_model_new();
	assert_non_null(s->m);
	schema_model_builder(s->m, &b);
	s->customers = b.table(b.ctx, "public", "customers", CN_OBJ_TABLE, "db comment", 10);
	assert_int_equal(b.column(b.ctx, s->customers, "id", "int", false, NULL, NULL, 1), CN_OK);
	assert_int_equal(b.column(b.ctx, s->customers, "email", "text", false, NULL, "db", 0), CN_OK);
	assert_int_equal(b.column(b.ctx, s->customers, "name", "text", true, NULL, NULL, 0), CN_OK);
	assert_int_equal(b.index(b.ctx, s->customers, "customers_email", true, 1, (const char *[]){"email"}),
			 CN_OK);
	s->archive = b.table(b.ctx, "archive", "customers", CN_OBJ_TABLE, NULL, -1);
	assert_int_equal(b.column(b.ctx, s->archive, "id", "int", false, NULL, NULL, 1), CN_OK);
	assert_int_equal(b.column(b.ctx, s->archive, "email", "text", false, NULL, NULL, 0), CN_OK);
	s->orders = b.table(b.ctx, "public", "orders", CN_OBJ_TABLE, NULL, -1);
	assert_int_equal(b.column(b.ctx, s->orders, "id", "int", false, NULL, NULL, 1), CN_OK);
	assert_int_equal(b.column(b.ctx, s->orders, "customer_id", "int", false, NULL, NULL, 0), CN_OK);
	assert_int_equal(b.column(b.ctx, s->orders, "total", "numeric", false, NULL, NULL, 0), CN_OK);
	assert_int_equal(b.foreign_key(b.ctx, s->orders, NULL, 1, cust, "public", "customers", id), CN_OK);
	s->audit = b.table(b.ctx, "internal", "audit", CN_OBJ_TABLE, NULL, -1);
	assert_int_equal(b.column(b.ctx, s->audit, "id", "int", false, NULL, NULL, 1), CN_OK);
	s->notes = b.table(b.ctx, "public", "notes", CN_OBJ_TABLE, NULL, -1);
	assert_int_equal(b.column(b.ctx, s->notes, "audit_id", "int", true, NULL, NULL, 0), CN_OK);
	assert_int_equal(b.foreign_key(b.ctx, s->notes, NULL, 1, aud, "internal", "audit", id), CN_OK);
	/* `reports.daily` could be this column or the table below: the column wins */
	s->reports = b.table(b.ctx, "public", "reports", CN_OBJ_VIEW, NULL, -1);
	assert_int_equal(b.column(b.ctx, s->reports, "daily", "int", true, NULL, NULL, 0), CN_OK);
	s->daily = b.table(b.ctx, "reports", "daily", CN_OBJ_TABLE, "db daily", -1);
	assert_int_equal(b.column(b.ctx, s->daily, "n", "int", true, NULL, NULL, 0), CN_OK);
}

struct warning {
	char file[64];
	int line;
	char key[64];
	char message[128];
};

struct warnings {
	struct warning w[8];
	size_t n;
};

static void collect_warning(void *ctx, const char *file, int line, const char *key, const char *message)
{
	struct warnings *ws = ctx;
	assert_true(ws->n < 8);
	struct warning *w = &ws->w[ws->n++];
	snprintf(w->file, sizeof w->file, "%s", file);
	w->line = line;
	snprintf(w->key, sizeof w->key, "%s", key);
	snprintf(w->message, sizeof w->message, "%s", message);
}

static const char shop_mappings[] = "mappings:\n"
				    "  customers:\n" /* 2 */
				    "    description: Customer accounts\n"
				    "    synonyms: [users, clients]\n"
				    "  CUSTOMERS.Email: {description: Login email, hidden: true}\n" /* 5 */
				    "  internal.audit: {hidden: true, description: Audit}\n"	    /* 6 */
				    "  public.orders.total: {synonyms: amount}\n"		    /* 7 */
				    "  reports.daily: {description: daily column}\n"		    /* 8 */
				    "  nothing: {description: x}\n"				    /* 9 */
				    "  customers.nope: {hidden: true}\n"			    /* 10 */
				    "  other.orders.total: {}\n"				    /* 11 */
				    "  public.orders: {description: Orders}\n";			    /* 12 */

static void test_apply(void **state)
{
	(void)state;
	struct shop s;
	struct warnings ws = {0};
	shop_build(&s);
	struct mappings *mp = load_ok("shop.yaml", shop_mappings);
	struct sm_table *t = s.m->tables;

	assert_int_equal(mappings_apply(mp, s.m, collect_warning, &ws), 3);

	/* description replaces the database comment; a 1-part key hits every schema */
	assert_string_equal(t[s.customers].description, "Customer accounts");
	assert_string_equal(t[s.archive].description, "Customer accounts");
	assert_int_equal(t[s.customers].nsynonyms, 2);
	assert_string_equal(t[s.customers].synonyms[1], "clients");
	assert_int_equal(t[s.archive].nsynonyms, 2);
	assert_false(t[s.customers].hidden);
	/* table.column, case-insensitive, also in every schema */
	struct sm_column *email = schema_model_find_column(&t[s.customers], "email");
	assert_string_equal(email->description, "Login email");
	assert_true(email->hidden);
	assert_true(schema_model_find_column(&t[s.archive], "email")->hidden);
	assert_false(schema_model_find_column(&t[s.customers], "name")->hidden);
	/* schema.table */
	assert_true(t[s.audit].hidden);
	assert_string_equal(t[s.audit].description, "Audit");
	assert_string_equal(t[s.orders].description, "Orders");
	/* schema.table.column */
	struct sm_column *total = schema_model_find_column(&t[s.orders], "total");
	assert_int_equal(total->nsynonyms, 1);
	assert_string_equal(total->synonyms[0], "amount");
	assert_null(total->description);
	/* a two-part key is a column before it is a table */
	assert_string_equal(t[s.reports].columns[0].description, "daily column");
	assert_string_equal(t[s.daily].description, "db daily");

	/* unmatched keys, with file and line */
	assert_int_equal(ws.n, 3);
	static const struct {
		int line;
		const char *key;
	} want[] = {{9, "nothing"}, {10, "customers.nope"}, {11, "other.orders.total"}};
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(ws.w[i].file, "shop.yaml");
		assert_int_equal(ws.w[i].line, want[i].line);
		assert_string_equal(ws.w[i].key, want[i].key);
		assert_string_equal(ws.w[i].message, "matches no table or column in the schema");
	}
	assert_int_equal(schema_model_visible_tables(s.m), 6);

	/* the describe_schema answer leaves hidden things out */
	cJSON *root = schema_model_to_json(s.m, NULL, 0);
	assert_non_null(root);
	const cJSON *tables = cJSON_GetObjectItemCaseSensitive(root, "tables");
	assert_int_equal(cJSON_GetArraySize(tables), 6);
	const cJSON *tj;
	cJSON_ArrayForEach(tj, tables)
	{
		const char *name = cJSON_GetObjectItemCaseSensitive(tj, "name")->valuestring;
		assert_string_not_equal(name, "audit");
		const cJSON *cj;
		cJSON_ArrayForEach(cj, cJSON_GetObjectItemCaseSensitive(tj, "columns"))
		    assert_string_not_equal(cJSON_GetObjectItemCaseSensitive(cj, "name")->valuestring,
					    "email");
		if (strcmp(name, "notes") == 0) /* its FK points at the hidden audit */
			assert_int_equal(
			    cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(tj, "foreign_keys")), 0);
		if (strcmp(name, "orders") == 0)
			assert_int_equal(
			    cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(tj, "foreign_keys")), 1);
		if (strcmp(name, "customers") == 0) /* the index on the hidden email goes */
			assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(tj, "indexes")),
					 0);
	}
	cJSON_Delete(root);

	/* the tables filter: a hidden table stays out even when asked for */
	const char *filter[] = {"archive.customers", "audit", "Orders"};
	root = schema_model_to_json(s.m, filter, 3);
	tables = cJSON_GetObjectItemCaseSensitive(root, "tables");
	assert_int_equal(cJSON_GetArraySize(tables), 2);
	tj = cJSON_GetArrayItem(tables, 0);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(tj, "schema")->valuestring, "archive");
	const cJSON *syn = cJSON_GetObjectItemCaseSensitive(tj, "synonyms");
	assert_int_equal(cJSON_GetArraySize(syn), 2);
	assert_string_equal(cJSON_GetArrayItem(syn, 0)->valuestring, "users");
	tj = cJSON_GetArrayItem(tables, 1);
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(tj, "name")->valuestring, "orders");
	cJSON_Delete(root);

	mappings_free(mp);
	schema_model_free(s.m);
}

static void test_apply_replaces_and_keeps(void **state)
{
	(void)state;
	struct shop s;
	shop_build(&s);
	struct mappings *first = load_ok("a.yaml", "mappings:\n  customers: {synonyms: [a, b]}\n");
	/* a later file: empty synonyms clear, no description keeps, hidden: false does not unhide */
	struct mappings *second = load_ok("b.yaml", "mappings:\n"
						    "  public.customers: {synonyms: []}\n"
						    "  customers.email: {hidden: false}\n");
	struct sm_table *c = &s.m->tables[s.customers];

	assert_int_equal(mappings_apply(first, s.m, NULL, NULL), 0);
	assert_int_equal(c->nsynonyms, 2);
	assert_string_equal(c->description, "db comment"); /* untouched without a description */
	schema_model_find_column(c, "email")->hidden = true;
	assert_int_equal(mappings_apply(second, s.m, NULL, NULL), 0);
	assert_int_equal(c->nsynonyms, 0);
	assert_int_equal(s.m->tables[s.archive].nsynonyms, 2); /* only public.customers */
	assert_true(schema_model_find_column(c, "email")->hidden);
	assert_string_equal(schema_model_find_column(c, "email")->description, "db");

	/* no warn callback: still counted */
	struct mappings *none = load_ok("c.yaml", "mappings: {x: {}, y.z: {}}\n");
	assert_int_equal(mappings_apply(none, s.m, NULL, NULL), 2);
	assert_int_equal(mappings_apply(NULL, s.m, NULL, NULL), 0);
	mappings_free(first);
	mappings_free(second);
	mappings_free(none);
	schema_model_free(s.m);
}

/* ---- hidden checks ---- */

static const char hidden_mappings[] = "mappings:\n"
				      "  customers.email: {hidden: true}\n"
				      "  Secrets: {hidden: true}\n"
				      "  internal.audit: {hidden: true}\n"
				      "  hr.staff.salary: {hidden: true}\n"
				      "  orders: {description: visible}\n"
				      "  orders.total: {hidden: false}\n";

struct hidden_case {
	const char *schema, *table, *column;
	int want;
};

static const struct hidden_case hidden_cases[] = {
    /* table.column */
    {NULL, "customers", "email", 1},
    {"public", "CUSTOMERS", "EMAIL", 1},
    {NULL, "customers", "name", 0},
    {NULL, "customers", NULL, 0},
    {NULL, "customer", "email", 0},
    {NULL, "customers", "emails", 0},
    {NULL, "customers", "emai", 0},
    /* a hidden table hides its columns, in any schema */
    {NULL, "secrets", NULL, 1},
    {"x", "SECRETS", "any", 1},
    {NULL, "secret", NULL, 0},
    /* schema.table */
    {"internal", "audit", NULL, 1},
    {"INTERNAL", "Audit", "id", 1},
    {"public", "audit", NULL, 0},
    {NULL, "audit", "id", 1}, /* schema unknown: err on the hidden side */
    /* schema.table.column */
    {"hr", "staff", "salary", 1},
    {"HR", "Staff", "SALARY", 1},
    {"hr", "staff", "name", 0},
    {"hr", "staff", NULL, 0},
    {"other", "staff", "salary", 0},
    {NULL, "staff", "salary", 1},
    /* hidden: false hides nothing */
    {NULL, "orders", "total", 0},
    {NULL, "orders", NULL, 0},
    {NULL, NULL, NULL, 0},
};

static void test_is_hidden(void **state)
{
	(void)state;
	struct mappings *mp = load_ok("hidden.yaml", hidden_mappings);
	for (size_t i = 0; i < sizeof hidden_cases / sizeof hidden_cases[0]; i++) {
		const struct hidden_case *c = &hidden_cases[i];
		int got = mappings_is_hidden(mp, c->schema, c->table, c->column) != 0;
		if (got != c->want)
			fail_msg("is_hidden(%s, %s, %s) = %d, want %d", c->schema ? c->schema : "NULL",
				 c->table ? c->table : "NULL", c->column ? c->column : "NULL", got, c->want);
	}
	assert_int_equal(mappings_is_hidden(NULL, NULL, "secrets", NULL), 0);
	mappings_free(mp);
}

/* is_hidden agrees with what apply marks on the model. */
static void test_is_hidden_matches_apply(void **state)
{
	(void)state;
	struct shop s;
	shop_build(&s);
	struct mappings *mp = load_ok("shop.yaml", shop_mappings);
	assert_int_equal(mappings_apply(mp, s.m, NULL, NULL), 3);
	for (size_t i = 0; i < s.m->ntables; i++) {
		const struct sm_table *t = &s.m->tables[i];
		assert_int_equal(mappings_is_hidden(mp, t->schema, t->name, NULL) != 0, t->hidden);
		for (size_t j = 0; j < t->ncolumns; j++) {
			const struct sm_column *c = &t->columns[j];
			assert_int_equal(mappings_is_hidden(mp, t->schema, t->name, c->name) != 0,
					 t->hidden || c->hidden);
		}
	}
	mappings_free(mp);
	schema_model_free(s.m);
}


/* ---- field paths (document sources: MongoDB) ---- */

static const char path_mappings[] = "mappings:\n"
				    "  orders: {description: Orders of the shop}\n"
				    "  orders.customer.email: {hidden: true, description: never shown}\n"
				    "  orders.items[].price: {description: Unit price}\n"
				    "  orders.items.sku: {synonyms: [article]}\n"
				    "  Customers.Address: {hidden: true}\n"
				    "  a.b.c.d.e.f: {description: deep}\n"
				    "  secrets: {hidden: true}\n"
				    "  system.profile.op: {description: dotted collection}\n";

static struct mappings *load_paths(const char *text)
{
	struct mappings *mp = NULL;
	struct cn_error err = {0};
	if (mappings_load_buffer_as("p.yaml", text, strlen(text), MAPPINGS_FIELD_PATHS, &mp, &err))
		fail_msg("should load: %s", err.message);
	assert_int_equal(mp->keys, MAPPINGS_FIELD_PATHS);
	return mp;
}

static void test_field_path_keys_load(void **state)
{
	(void)state;
	struct mappings *mp = load_paths(path_mappings);
	assert_int_equal(mp->n, 8);
	mappings_free(mp);
	/* deeper than SQL allows, up to 32 parts */
	char deep[400] = "mappings:\n  c";
	for (int i = 0; i < 31; i++)
		strcat(deep, ".f");
	strcat(deep, ": {hidden: true}\n");
	mappings_free(load_paths(deep));

	static const struct {
		const char *text, *part;
	} bad[] = {
		{"mappings:\n  a..b: {}\n", "empty part"},
		{"mappings:\n  a.[]: {}\n", "empty part"},
		{"mappings:\n  .a: {}\n", "empty part"},
		{"mappings:\n  \"\": {}\n", "`collection` or `collection.field`"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct mappings *m = NULL;
		struct cn_error err = {0};
		assert_int_equal(mappings_load_buffer_as("p.yaml", bad[i].text, strlen(bad[i].text),
							 MAPPINGS_FIELD_PATHS, &m, &err), CN_ECONFIG);
		if (!strstr(err.message, bad[i].part))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.message, bad[i].part);
	}
	char over[600] = "mappings:\n  c";
	for (int i = 0; i < 32; i++)
		strcat(over, ".f");
	strcat(over, ": {}\n");
	struct mappings *m = NULL;
	struct cn_error err = {0};
	assert_int_equal(mappings_load_buffer_as("p.yaml", over, strlen(over), MAPPINGS_FIELD_PATHS, &m,
						 &err), CN_ECONFIG);
	assert_non_null(strstr(err.message, "more than 32 parts"));
	/* SQL keys keep their three-part limit */
	assert_int_equal(mappings_load_buffer("p.yaml", path_mappings, strlen(path_mappings), &m, &err),
			 CN_ECONFIG);
	assert_non_null(strstr(err.message, "more than three parts"));
}

static const struct hidden_case path_hidden_cases[] = {
    {"connector_test", "orders", "customer.email", 1},
    {NULL, "orders", "customer.email", 1},
    {"any_db", "ORDERS", "Customer.Email", 1},     /* schema ignored, case-insensitive */
    {NULL, "orders", "customer.email.domain", 1},  /* under a hidden field */
    {NULL, "orders", "customer", 0},               /* the parent is not hidden itself */
    {NULL, "orders", "customer.name", 0},
    {NULL, "orders", "customer.emailx", 0},
    {NULL, "orders", NULL, 0},
    {NULL, "orders", "items.price", 0},
    {NULL, "customers", "address", 1},
    {NULL, "customers", "address.street", 1},
    {NULL, "customers", "addresses", 0},
    {NULL, "secrets", NULL, 1},
    {NULL, "secrets", "anything.at.all", 1},
    {NULL, "secret", NULL, 0},
    {NULL, "customer", "email", 0}, /* orders.customer.email is not collection customer */
    {"orders", "customer", "email", 0},
};

static void test_field_path_is_hidden(void **state)
{
	(void)state;
	struct mappings *mp = load_paths(path_mappings);
	for (size_t i = 0; i < sizeof path_hidden_cases / sizeof path_hidden_cases[0]; i++) {
		const struct hidden_case *c = &path_hidden_cases[i];
		int got = mappings_is_hidden(mp, c->schema, c->table, c->column);
		if (got != c->want)
			fail_msg("case %zu: is_hidden(%s, %s, %s) = %d, want %d", i, c->schema ? c->schema : "NULL",
				 c->table, c->column ? c->column : "NULL", got, c->want);
	}
	mappings_free(mp);
	/* the same file read with SQL keys means schema orders, table customer, column email */
	struct mappings *sql = load_ok("s.yaml", "mappings:\n  orders.customer.email: {hidden: true}\n");
	assert_int_equal(mappings_is_hidden(sql, "orders", "customer", "email"), 1);
	assert_int_equal(mappings_is_hidden(sql, NULL, "orders", "customer.email"), 0);
	mappings_free(sql);
}

static void test_field_path_apply(void **state)
{
	(void)state;
	struct schema_model *m = schema_model_new();
	struct cn_schema_builder b;
	schema_model_builder(m, &b);
	int o = b.table(b.ctx, "connector_test", "orders", CN_OBJ_COLLECTION, "sampled", 60);
	static const char *const cols[] = {"_id", "customer", "customer.email", "customer.email.domain",
					   "customer.name", "items", "items[]", "items[].price",
					   "items[].sku"};
	for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
		assert_int_equal(b.column(b.ctx, o, cols[i], "string", true, NULL, "present", 0), CN_OK);
	int p = b.table(b.ctx, "connector_test", "system.profile", CN_OBJ_COLLECTION, NULL, -1);
	assert_int_equal(b.column(b.ctx, p, "op", "string", true, NULL, NULL, 0), CN_OK);

	struct mappings *mp = load_paths(path_mappings);
	/* customers, a.b.c.d.e.f and secrets match nothing here */
	assert_int_equal(mappings_apply(mp, m, NULL, NULL), 3);
	struct sm_table *t = &m->tables[o];
	assert_string_equal(t->description, "Orders of the shop");
	assert_true(schema_model_find_column(t, "customer.email")->hidden);
	assert_true(schema_model_find_column(t, "customer.email.domain")->hidden);
	assert_false(schema_model_find_column(t, "customer")->hidden);
	assert_false(schema_model_find_column(t, "customer.name")->hidden);
	assert_string_equal(schema_model_find_column(t, "items[].price")->description, "Unit price");
	assert_int_equal(schema_model_find_column(t, "items[].sku")->nsynonyms, 1);
	assert_string_equal(schema_model_find_column(&m->tables[p], "op")->description,
			    "dotted collection");
	cJSON *root = schema_model_to_json(m, NULL, 0);
	char *text = cJSON_PrintUnformatted(root);
	assert_null(strstr(text, "email"));
	assert_non_null(strstr(text, "customer.name"));
	free(text);
	cJSON_Delete(root);
	mappings_free(mp);
	schema_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_load_yaml),
	    cmocka_unit_test(test_load_json),
	    cmocka_unit_test(test_load_empty),
	    cmocka_unit_test(test_load_file),
	    cmocka_unit_test(test_load_errors),
	    cmocka_unit_test(test_load_limits),
	    cmocka_unit_test(test_load_error_key_is_printable),
	    cmocka_unit_test(test_apply),
	    cmocka_unit_test(test_apply_replaces_and_keeps),
	    cmocka_unit_test(test_is_hidden),
	    cmocka_unit_test(test_is_hidden_matches_apply),
	    cmocka_unit_test(test_field_path_keys_load),
	    cmocka_unit_test(test_field_path_is_hidden),
	    cmocka_unit_test(test_field_path_apply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
