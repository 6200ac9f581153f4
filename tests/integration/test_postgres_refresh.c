/* test_postgres_refresh.c - schema refresh on the real PostgreSQL of
 * tests/support/pg.sh: a column added, retyped, made NOT NULL, indexed and
 * dropped by the superuser shows up in describe_schema, the diff and the
 * drift; a refresh with the server stopped keeps the old schema and says
 * why. Everything the test changes is put back, also when it fails, so the
 * other tests see the fixture as loaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pg_harness.h"
#include "refresh.h"
#include "tools.h"

static struct {
	char dir[64];
	struct config *cfg;
	struct exec_store *store;
	struct app app;
	struct source *src;
} T;

/* Undo everything this test may have done to the fixture. */
static const char put_back[] = "ALTER TABLE crm.customers DROP COLUMN IF EXISTS loyalty_tier;"
			       "ALTER TABLE crm.customers DROP COLUMN IF EXISTS referrer;"
			       "DROP TABLE IF EXISTS shop.refresh_probe;";

static void super_exec(const char *sql)
{
	PGconn *c = h_super();
	assert_non_null(c);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

static time_t now_clock(void)
{
	return time(NULL);
}

static int setup(void **state)
{
	if (h_setup(state))
		return -1;
	struct cn_error err = {0};
	char path[128], text[1024];
	snprintf(T.dir, sizeof T.dir, "/tmp/cn_pg_refresh_XXXXXX");
	if (!mkdtemp(T.dir))
		return -1;
	/* a description for a column that does not exist yet: drift until it does */
	snprintf(path, sizeof path, "%s/mappings.yaml", T.dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs("mappings:\n"
	      "  crm.customers.loyalty_tier: { description: Loyalty programme tier, synonyms: [status level] "
	      "}\n"
	      "  crm.customers.email: { description: Login email }\n",
	      f);
	fclose(f);
	setenv("CN_TEST_SECRET", "pg-refresh-test-secret-012345", 1);
	snprintf(text, sizeof text,
		 "auth: { callback_secrets: [\"${CN_TEST_SECRET}\"] }\n"
		 "state: { path: \"%s/state.db\" }\n"
		 "drivers: { dir: \"%s\" }\n"
		 "log: { level: warn }\n"
		 "sources:\n"
		 "  - { name: pg, driver: postgres, dsn: \"${CN_TEST_PG_DSN}\", mappings: \"%s\",\n"
		 "      options: { schemas: \"crm,shop\" } }\n",
		 T.dir, CN_TEST_DRIVER_DIR, path);
	/* a previous run that stopped half-way must not leave its columns behind */
	super_exec(put_back);
	char state_path[128];
	snprintf(state_path, sizeof state_path, "%s/state.db", T.dir);
	if (config_load_buffer("pg-refresh.yaml", text, strlen(text), &T.cfg, &err) ||
	    exec_store_open(state_path, NULL, &T.store, &err)) {
		fprintf(stderr, "%s\n", err.message);
		return -1;
	}
	struct sources_opts o = {.store = T.store};
	if (sources_open_with(T.cfg, &o, &T.app.sources, &err)) {
		fprintf(stderr, "%s\n", err.message);
		return -1;
	}
	T.app.cfg = T.cfg;
	T.app.now = now_clock;
	T.src = T.app.sources->items[0];
	return 0;
}

static int teardown(void **state)
{
	PGconn *c = h_super();
	if (c) {
		PQclear(PQexec(c, put_back));
		PQfinish(c);
	}
	sources_close(T.app.sources);
	exec_store_close(T.store);
	config_free(T.cfg);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", T.dir);
	h_system("%s", cmd);
	return h_teardown(state);
}

static struct refresh_result refresh_ok(void)
{
	struct refresh_result r;
	if (refresh_source(T.src, &r) != CN_OK)
		fail_msg("refresh: %s", r.error);
	return r;
}

/* The one change of r, as schema_change_describe writes it. */
static const char *only_change(const struct refresh_result *r)
{
	static char line[400];
	if (r->diff->n != 1) {
		char all[2000] = "";
		for (size_t i = 0; i < r->diff->n; i++) {
			schema_change_describe(&r->diff->items[i], line, sizeof line);
			strncat(all, line, sizeof all - strlen(all) - 2);
			strcat(all, "; ");
		}
		fail_msg("%zu changes: %s", r->diff->n, all);
	}
	schema_change_describe(&r->diff->items[0], line, sizeof line);
	return line;
}

/* The drift of the current view, one line each joined with "; ". */
static const char *drift_text(void)
{
	static char all[2000];
	char line[700];
	all[0] = '\0';
	struct source_view *v = source_view_acquire(T.src);
	for (size_t i = 0; v && i < v->drift->n; i++) {
		drift_item_describe(&v->drift->items[i], line, sizeof line);
		strncat(all, line, sizeof all - strlen(all) - 3);
		strcat(all, "; ");
	}
	source_view_release(v);
	return all;
}

/* The columns of crm.customers in describe_schema's answer, "a b c". */
static const char *customer_columns(void)
{
	static char out[1000];
	struct tool_result res;
	cJSON *p = cJSON_Parse("{\"source\":\"pg\",\"tables\":[\"crm.customers\"]}");
	tools_call(&T.app, tools_find("describe_schema"), p, &res);
	cJSON_Delete(p);
	assert_int_equal(res.http_status, 200);
	cJSON *a = cJSON_ParseWithLength(res.body, res.len);
	tool_result_free(&res);
	const cJSON *t = cJSON_GetArrayItem(
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(a, "result"), "tables"), 0);
	const cJSON *c;
	out[0] = '\0';
	cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(t, "columns")) {
		strncat(out, cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring,
			sizeof out - strlen(out) - 2);
		strcat(out, " ");
	}
	cJSON_Delete(a);
	return out;
}

static void test_columns_come_and_go(void **state)
{
	(void)state;
	struct refresh_result r;
	assert_non_null(strstr(drift_text(), "mapping 'crm.customers.loyalty_tier'"));
	assert_null(strstr(customer_columns(), "loyalty_tier"));

	super_exec("ALTER TABLE crm.customers ADD COLUMN loyalty_tier text");
	r = refresh_ok();
	assert_string_equal(only_change(&r), "column crm.customers.loyalty_tier added (text)");
	refresh_result_clear(&r);
	assert_non_null(strstr(customer_columns(), "created_at loyalty_tier "));
	assert_string_equal(drift_text(), ""); /* the mapping matches now and describes it */

	super_exec("ALTER TABLE crm.customers ALTER COLUMN loyalty_tier TYPE varchar(20)");
	r = refresh_ok();
	assert_string_equal(only_change(&r),
			    "column crm.customers.loyalty_tier retyped: text -> character varying(20)");
	refresh_result_clear(&r);

	super_exec("UPDATE crm.customers SET loyalty_tier = 'basic';"
		   "ALTER TABLE crm.customers ALTER COLUMN loyalty_tier SET NOT NULL");
	r = refresh_ok();
	assert_string_equal(only_change(&r), "column crm.customers.loyalty_tier is now not null (was null)");
	refresh_result_clear(&r);

	super_exec("CREATE INDEX customers_loyalty_idx ON crm.customers (loyalty_tier)");
	r = refresh_ok();
	assert_string_equal(only_change(&r),
			    "index customers_loyalty_idx on crm.customers (loyalty_tier) added");
	refresh_result_clear(&r);

	/* a column nobody described: drift */
	super_exec("ALTER TABLE crm.customers ADD COLUMN referrer text");
	r = refresh_ok();
	assert_string_equal(only_change(&r), "column crm.customers.referrer added (text)");
	refresh_result_clear(&r);
	assert_string_equal(drift_text(),
			    "column crm.customers.referrer (text) is new since the baseline and has "
			    "no description; ");

	/* a new table, with foreign key */
	super_exec("CREATE TABLE shop.refresh_probe (id int PRIMARY KEY, customer_id int REFERENCES "
		   "crm.customers (id));"
		   "GRANT SELECT ON shop.refresh_probe TO connector_ro");
	r = refresh_ok();
	assert_string_equal(only_change(&r), "table shop.refresh_probe added");
	refresh_result_clear(&r);

	/* back as it was: dropped columns, the index with them, the mapping unmatched again */
	super_exec(put_back);
	r = refresh_ok();
	assert_int_equal(r.diff->n, 4); /* two columns, the index, the table */
	refresh_result_clear(&r);
	assert_null(strstr(customer_columns(), "loyalty_tier"));
	assert_non_null(strstr(drift_text(), "mapping 'crm.customers.loyalty_tier'"));

	/* every one of those is in the store, newest first */
	struct cn_error err = {0};
	cJSON *rep = refresh_drift_report(T.store, "pg", 10, &err);
	assert_non_null(rep);
	const cJSON *hist = cJSON_GetObjectItemCaseSensitive(rep, "history");
	assert_int_equal(cJSON_GetArraySize(hist), 8); /* 7 changes and the baseline */
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(hist, 7), "baseline")));
	cJSON_Delete(rep);
}

static void test_server_down_keeps_schema(void **state)
{
	(void)state;
	struct source_view *before = source_view_acquire(T.src);
	assert_non_null(before);
	assert_int_equal(
	    h_system("as=''; [ \"$(id -u)\" -eq 0 ] && as='runuser -u postgres --'; "
		     "$as \"$CN_TEST_PG_CTL\" -D \"$CN_TEST_PG_DATA_DIR\" -m fast -w stop >/dev/null"),
	    0);
	struct refresh_result r;
	int rc = refresh_source(T.src, &r);
	refresh_result_clear(&r);
	int restarted = h_system("'%s/tests/support/pg.sh' restart '%s'", CN_TEST_SOURCE_DIR, h_env.env_dir);
	assert_int_not_equal(rc, CN_OK);
	assert_int_equal(restarted, 0);
	assert_non_null(strstr(r.error, "connector_test"));
	assert_null(strstr(r.error, "password"));

	/* the old view stays, and the failure is on record */
	struct source_view *after = source_view_acquire(T.src);
	assert_ptr_equal(before, after);
	source_view_release(after);
	source_view_release(before);
	struct source_status st;
	source_status(T.src, &st);
	assert_true(st.available);
	assert_non_null(strstr(st.refresh_error, "connector_test"));
	assert_non_null(strstr(customer_columns(), "email"));

	r = refresh_ok();
	assert_int_equal(r.diff->n, 0);
	refresh_result_clear(&r);
	source_status(T.src, &st);
	assert_string_equal(st.refresh_error, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_columns_come_and_go),
		cmocka_unit_test(test_server_down_keeps_schema),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
