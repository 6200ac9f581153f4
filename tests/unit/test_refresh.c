/* test_refresh.c - refreshing a schema on a SQLite copy of the demo that the
 * test changes underneath: diffs, drift, snapshots across a restart, a
 * failed refresh keeping the old schema, what the tools and /readyz say,
 * search_schema, and describe_schema's paged index of a 5,000-table schema. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "refresh.h"
#include "request.h"
#include "tools.h"

static struct {
	char dir[64];
	char db[128];
	char state[128];
	char config[160];
} E;

static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	assert_non_null(in);
	assert_non_null(out);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	fclose(out);
}

static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		char p[512];
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static void db_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	char *msg = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
	sqlite3_close(db);
}

static int setup(void **state)
{
	(void)state;
	snprintf(E.dir, sizeof E.dir, "/tmp/cn_refresh_test_XXXXXX");
	if (!mkdtemp(E.dir))
		return -1;
	snprintf(E.db, sizeof E.db, "%s/demo.db", E.dir);
	snprintf(E.state, sizeof E.state, "%s/state.db", E.dir);
	snprintf(E.config, sizeof E.config, "%s/connector.yaml", E.dir);
	copy_file(CN_TEST_DEMO_DB, E.db);
	setenv("CN_TEST_SECRET", "refresh-test-secret-0123456789", 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	remove_tree(E.dir);
	return 0;
}

/* A connector on E.db (with the demo's mappings) and E.state. */
struct rig {
	struct config *cfg;
	struct exec_store *store;
	struct app app;
};

static time_t rig_now(void)
{
	return time(NULL);
}

static void rig_open(struct rig *r, uint32_t max_result_bytes)
{
	char text[1024];
	struct cn_error err = {0};
	snprintf(text, sizeof text,
		 "auth: { callback_secrets: [\"${CN_TEST_SECRET}\"] }\n"
		 "state: { path: \"%s\", snapshots: 3 }\n"
		 "sources:\n"
		 "  - name: demo\n"
		 "    driver: sqlite\n"
		 "    dsn: \"%s\"\n"
		 "    mappings: \"%s/conf/mappings/demo.yaml\"\n"
		 "    limits: { max_result_bytes: %u }\n"
		 "drivers: { dir: \"%s\" }\n",
		 E.state, E.db, CN_TEST_SOURCE_DIR, max_result_bytes, CN_TEST_DRIVER_DIR);
	memset(r, 0, sizeof *r);
	if (config_load_buffer(E.config, text, strlen(text), &r->cfg, &err))
		fail_msg("%s", err.message);
	if (exec_store_open(E.state, NULL, &r->store, &err))
		fail_msg("%s", err.message);
	struct sources_opts o = {.store = r->store};
	if (sources_open_with(r->cfg, &o, &r->app.sources, &err))
		fail_msg("%s", err.message);
	r->app.cfg = r->cfg;
	r->app.store = NULL; /* tools_call does not need it */
	r->app.now = rig_now;
}

static void rig_close(struct rig *r)
{
	sources_close(r->app.sources);
	exec_store_close(r->store);
	config_free(r->cfg);
}

/* Call a tool; the answer parsed (caller frees); status in *status. */
static cJSON *call(struct rig *r, const char *tool, const char *params, int *status)
{
	struct tool_result res;
	cJSON *p = cJSON_Parse(params);
	assert_non_null(p);
	tools_call(&r->app, tools_find(tool), p, &res);
	cJSON_Delete(p);
	*status = res.http_status;
	cJSON *j = cJSON_ParseWithLength(res.body, res.len);
	if (!j)
		fail_msg("%s: not JSON: %.*s", tool, (int)res.len, res.body);
	tool_result_free(&res);
	return j;
}

static const cJSON *get(const cJSON *o, const char *path)
{
	char buf[128];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save))
		o = cJSON_IsArray(o) ? cJSON_GetArrayItem(o, atoi(k))
				     : cJSON_GetObjectItemCaseSensitive(o, k);
	return o;
}

static bool has_column(const cJSON *answer, const char *table, const char *column)
{
	const cJSON *t, *c;
	cJSON_ArrayForEach(t, get(answer, "result.tables"))
		if (strcmp(get(t, "name")->valuestring, table) == 0)
			cJSON_ArrayForEach(c, get(t, "columns"))
				if (strcmp(get(c, "name")->valuestring, column) == 0)
					return true;
	return false;
}

static struct refresh_result refresh(struct rig *r)
{
	struct refresh_result res;
	int rc = refresh_source(r->app.sources->items[0], &res);
	if (rc)
		fail_msg("refresh failed: %s", res.error);
	return res;
}

static const struct schema_change *find_change(const struct schema_diff *d, enum schema_change_kind kind,
						const char *object)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->items[i].kind == kind && (!object || strcmp(d->items[i].object, object) == 0))
			return &d->items[i];
	return NULL;
}

static void test_changes_diffs_and_drift(void **state)
{
	(void)state;
	struct rig r;
	int status;
	rig_open(&r, 60000);
	struct source_status st;
	source_status(r.app.sources->items[0], &st);
	assert_true(st.available);
	assert_int_equal(st.drift, 0);
	assert_int_equal(st.changed_at, 0);

	/* a column added: in describe_schema, the diff and the drift */
	db_exec(E.db, "ALTER TABLE orders ADD COLUMN coupon TEXT");
	struct refresh_result res = refresh(&r);
	assert_false(res.first);
	assert_int_equal(res.diff->n, 1);
	const struct schema_change *c = find_change(res.diff, CHANGE_COLUMN_ADDED, "coupon");
	assert_non_null(c);
	assert_string_equal(c->table, "orders");
	assert_int_equal(res.view->drift->n, 1);
	assert_string_equal(res.view->drift->items[0].column, "coupon");
	assert_true(res.view->changed_at > 0);
	refresh_result_clear(&res);
	cJSON *a = call(&r, "describe_schema", "{\"source\":\"demo\"}", &status);
	assert_int_equal(status, 200);
	assert_true(has_column(a, "orders", "coupon"));
	cJSON_Delete(a);
	a = call(&r, "list_data_sources", "{}", &status);
	assert_int_equal(get(a, "result.sources.0.drift")->valueint, 1);
	assert_true(cJSON_IsString(get(a, "result.sources.0.schema_changed_at")));
	assert_true(cJSON_IsString(get(a, "result.sources.0.refreshed_at")));
	assert_null(get(a, "result.sources.0.refresh_error"));
	cJSON_Delete(a);

	/* retyped (SQLite: a table rebuilt with another declared type) */
	db_exec(E.db, "PRAGMA foreign_keys=OFF; BEGIN;"
		      "CREATE TABLE order_items_new (order_id INTEGER NOT NULL REFERENCES orders (id),"
		      " product_id INTEGER NOT NULL REFERENCES products, quantity BIGINT NOT NULL,"
		      " unit_price REAL NOT NULL, PRIMARY KEY (order_id, product_id));"
		      "INSERT INTO order_items_new SELECT * FROM order_items; DROP VIEW order_totals;"
		      "DROP TABLE order_items; ALTER TABLE order_items_new RENAME TO order_items;"
		      "CREATE INDEX order_items_product_id_idx ON order_items (product_id);"
		      "CREATE VIEW order_totals AS SELECT o.id AS order_id, o.customer_id, o.status,"
		      " o.ordered_at, count(*) AS item_count, sum(oi.quantity) AS units,"
		      " round(sum(oi.quantity * oi.unit_price), 2) AS total FROM orders AS o"
		      " JOIN order_items AS oi ON oi.order_id = o.id GROUP BY o.id; COMMIT;");
	res = refresh(&r);
	c = find_change(res.diff, CHANGE_COLUMN_TYPE, "quantity");
	assert_non_null(c);
	assert_string_equal(c->before, "INTEGER");
	assert_string_equal(c->after, "BIGINT");
	assert_int_equal(res.diff->n, 1);
	refresh_result_clear(&res);

	/* nothing changed: no diff, the change time stays */
	source_status(r.app.sources->items[0], &st);
	int64_t changed = st.changed_at;
	res = refresh(&r);
	assert_int_equal(res.diff->n, 0);
	assert_true(res.view->changed_at == changed);
	refresh_result_clear(&res);
	rig_close(&r);

	/* a restart compares with the stored snapshot: no change, same drift, same change time */
	rig_open(&r, 60000);
	source_status(r.app.sources->items[0], &st);
	assert_int_equal(st.drift, 1);
	assert_true(st.changed_at == changed);
	/* dropped while the connector was stopped */
	rig_close(&r);
	db_exec(E.db, "ALTER TABLE orders DROP COLUMN coupon");
	rig_open(&r, 60000);
	source_status(r.app.sources->items[0], &st);
	assert_int_equal(st.drift, 0);
	assert_true(st.changed_at >= changed);

	/* the drift report from the store: the last diffs, newest first, and the baseline */
	struct cn_error err = {0};
	cJSON *rep = refresh_drift_report(r.store, "demo", 10, &err);
	assert_non_null(rep);
	assert_int_equal(cJSON_GetArraySize(get(rep, "drift")), 0);
	const cJSON *hist = get(rep, "history");
	assert_int_equal(cJSON_GetArraySize(hist), 4);
	assert_string_equal(get(hist, "0.changes.0.change")->valuestring, "column_removed");
	assert_string_equal(get(hist, "2.changes.0.message")->valuestring,
			    "column orders.coupon added (TEXT)");
	assert_true(cJSON_IsTrue(get(hist, "3.baseline")));
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	refresh_print_reports(rep, f);
	fclose(f);
	assert_non_null(strstr(text, "demo: 0 drift items as of the refresh at "));
	assert_non_null(strstr(text, "    column orders.coupon added (TEXT)\n"));
	assert_non_null(strstr(text, ": baseline (the first snapshot;"));
	free(text);
	cJSON_Delete(rep);
	rig_close(&r);
}

/* A refresh that fails keeps the schema it had and says why: in the
 * result, list_data_sources and /readyz (503), until one works again. */
static void test_failed_refresh_keeps_schema(void **state)
{
	(void)state;
	struct rig r;
	int status;
	rig_open(&r, 60000);
	char moved[160];
	snprintf(moved, sizeof moved, "%s.away", E.db);
	assert_int_equal(rename(E.db, moved), 0);
	struct refresh_result res;
	assert_int_not_equal(refresh_source(r.app.sources->items[0], &res), CN_OK);
	assert_non_null(strstr(res.error, "demo.db"));
	assert_null(res.view);
	refresh_result_clear(&res);

	cJSON *a = call(&r, "describe_schema", "{\"source\":\"demo\",\"tables\":[\"customers\"]}", &status);
	assert_int_equal(status, 200); /* the old schema */
	cJSON_Delete(a);
	a = call(&r, "list_data_sources", "{}", &status);
	assert_non_null(strstr(get(a, "result.sources.0.refresh_error")->valuestring, "demo.db"));
	assert_true(cJSON_IsString(get(a, "result.sources.0.refresh_failed_at")));
	cJSON_Delete(a);

	struct http_request req = {.method = "GET", .path = "/readyz", .body = ""};
	struct http_response resp;
	request_handle(&r.app, &req, &resp);
	assert_int_equal(resp.status, 503);
	cJSON *j = cJSON_ParseWithLength(resp.body, resp.len);
	assert_string_equal(get(j, "status")->valuestring, "not_ready");
	assert_string_equal(get(j, "sources.0.status")->valuestring, "refresh_failed");
	assert_non_null(strstr(get(j, "sources.0.reason")->valuestring, "serving the schema read at"));
	assert_null(strstr(resp.body, CN_TEST_DRIVER_DIR)); /* the body says nothing of the setup */
	cJSON_Delete(j);
	http_response_free(&resp);

	assert_int_equal(rename(moved, E.db), 0);
	res = refresh(&r);
	refresh_result_clear(&res);
	request_handle(&r.app, &req, &resp);
	assert_int_equal(resp.status, 200);
	j = cJSON_ParseWithLength(resp.body, resp.len);
	assert_string_equal(get(j, "status")->valuestring, "ready");
	assert_int_equal(get(j, "sources.0.tables")->valueint, 5);
	cJSON_Delete(j);
	http_response_free(&resp);
	rig_close(&r);
}

static void test_search_schema_tool(void **state)
{
	(void)state;
	struct rig r;
	int status;
	rig_open(&r, 60000);
	cJSON *a = call(&r, "search_schema", "{\"query\":\"signup\"}", &status);
	assert_int_equal(status, 200);
	assert_string_equal(get(a, "result.matches.0.table")->valuestring, "customers");
	assert_string_equal(get(a, "result.matches.0.column")->valuestring, "created_at");
	assert_string_equal(get(a, "result.matches.0.kind")->valuestring, "column");
	assert_string_equal(get(a, "result.matches.0.source")->valuestring, "demo");
	assert_non_null(strstr(get(a, "result.matches.0.description")->valuestring, "signed up"));
	cJSON_Delete(a);
	a = call(&r, "search_schema", "{\"query\":\"order\",\"source\":\"demo\",\"limit\":2}", &status);
	assert_int_equal(cJSON_GetArraySize(get(a, "result.matches")), 2);
	cJSON_Delete(a);
	a = call(&r, "search_schema", "{\"query\":\"phone\"}", &status);
	assert_int_equal(cJSON_GetArraySize(get(a, "result.matches")), 0); /* hidden */
	assert_non_null(strstr(get(a, "result.hint")->valuestring, "Nothing matched"));
	cJSON_Delete(a);
	a = call(&r, "search_schema", "{\"query\":\"x\",\"source\":\"nope\"}", &status);
	assert_int_equal(status, 400);
	assert_string_equal(get(a, "error.code")->valuestring, "unknown_source");
	cJSON_Delete(a);
	a = call(&r, "search_schema", "{\"query\":\"?!\"}", &status);
	assert_int_equal(status, 400);
	assert_string_equal(get(a, "error.code")->valuestring, "invalid_parameters");
	cJSON_Delete(a);
	a = call(&r, "search_schema", "{\"query\":\"x\",\"limit\":51}", &status);
	assert_int_equal(status, 400);
	cJSON_Delete(a);
	rig_close(&r);
}

/* 5,000 tables whose names alone are over 64 KB: the index pages reach
 * every one of them within the byte cap. */
static void test_large_schema_index(void **state)
{
	(void)state;
	enum { NTABLES = 5000 };
	unlink(E.db);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(E.db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	size_t names_bytes = 0;
	for (int i = 0; i < NTABLES; i++) {
		char sql[256];
		snprintf(sql, sizeof sql,
			 "CREATE TABLE warehouse_inventory_snapshot_%05d (id INTEGER PRIMARY KEY,"
			 " sku TEXT, qty INTEGER)",
			 i);
		assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
		names_bytes += strlen("warehouse_inventory_snapshot_00000");
	}
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_true(names_bytes > 65536);

	struct rig r;
	int status;
	uint32_t cap = 60000;
	rig_open(&r, cap);
	char *seen = calloc(NTABLES, 1);
	size_t found = 0;
	size_t page = 1, pages = 0;
	for (;;) {
		char params[96];
		snprintf(params, sizeof params,
			 page == 1 ? "{\"source\":\"demo\"}" : "{\"source\":\"demo\",\"page\":%zu}", page);
		struct tool_result res;
		cJSON *p = cJSON_Parse(params);
		tools_call(&r.app, tools_find("describe_schema"), p, &res);
		cJSON_Delete(p);
		assert_int_equal(res.http_status, 200);
		assert_true(res.len <= cap);
		cJSON *a = cJSON_ParseWithLength(res.body, res.len);
		tool_result_free(&res);
		assert_string_equal(get(a, "result.mode")->valuestring, "index");
		assert_int_equal(get(a, "result.total_tables")->valueint, NTABLES);
		pages = (size_t)get(a, "result.pages")->valueint;
		const cJSON *t;
		cJSON_ArrayForEach(t, get(a, "result.tables")) {
			int i = atoi(get(t, "name")->valuestring + strlen("warehouse_inventory_snapshot_"));
			assert_int_equal(get(t, "columns")->valueint, 3);
			assert_false(seen[i]);
			seen[i] = 1;
			found++;
		}
		const cJSON *next = get(a, "result.next_page");
		if (!next) {
			assert_non_null(strstr(get(a, "result.hint")->valuestring, "This is the last page."));
			cJSON_Delete(a);
			break;
		}
		assert_non_null(strstr(get(a, "result.hint")->valuestring, "\"page\": "));
		assert_int_equal(next->valueint, (int)page + 1);
		page++;
		cJSON_Delete(a);
	}
	assert_int_equal(found, NTABLES);
	assert_int_equal(page, pages);
	free(seen);

	/* past the end; a prefix; the tables asked for, in full */
	cJSON *a = call(&r, "describe_schema", "{\"source\":\"demo\",\"page\":99}", &status);
	assert_int_equal(status, 400);
	cJSON_Delete(a);
	a = call(&r, "describe_schema",
		 "{\"source\":\"demo\",\"prefix\":\"WAREHOUSE_INVENTORY_SNAPSHOT_0421\"}", &status);
	assert_int_equal(status, 200);
	assert_int_equal(get(a, "result.total_tables")->valueint, 10);
	assert_null(get(a, "result.next_page"));
	cJSON_Delete(a);
	a = call(&r, "describe_schema",
		 "{\"source\":\"demo\",\"tables\":[\"warehouse_inventory_snapshot_04242\"]}", &status);
	assert_int_equal(status, 200);
	assert_true(has_column(a, "warehouse_inventory_snapshot_04242", "qty"));
	cJSON_Delete(a);
	a = call(&r, "describe_schema", "{\"source\":\"demo\",\"tables\":[\"x\"],\"page\":2}", &status);
	assert_int_equal(status, 400);
	cJSON_Delete(a);
	a = call(&r, "search_schema", "{\"query\":\"warehouse_inventory_snapshot_03333\"}", &status);
	assert_string_equal(get(a, "result.matches.0.table")->valuestring,
			    "warehouse_inventory_snapshot_03333");
	cJSON_Delete(a);
	rig_close(&r);
	copy_file(CN_TEST_DEMO_DB, E.db);
}

/* A small schema answers whole, as before; page or prefix ask for the index. */
static void test_small_schema_whole(void **state)
{
	(void)state;
	struct rig r;
	int status;
	rig_open(&r, 60000);
	cJSON *a = call(&r, "describe_schema", "{\"source\":\"demo\"}", &status);
	assert_int_equal(status, 200);
	assert_null(get(a, "result.mode"));
	assert_true(cJSON_IsFalse(get(a, "result.truncated")));
	assert_string_equal(get(a, "result.source")->valuestring, "demo");
	assert_int_equal(cJSON_GetArraySize(get(a, "result.tables")), 5);
	cJSON_Delete(a);
	a = call(&r, "describe_schema", "{\"source\":\"demo\",\"page\":1}", &status);
	assert_string_equal(get(a, "result.mode")->valuestring, "index");
	assert_int_equal(get(a, "result.pages")->valueint, 1);
	assert_string_equal(get(a, "result.tables.0.name")->valuestring, "customers");
	cJSON_Delete(a);
	rig_close(&r);
	/* a cap too small for the whole demo: the index, within the cap */
	rig_open(&r, 2048);
	struct tool_result res;
	cJSON *p = cJSON_Parse("{\"source\":\"demo\"}");
	tools_call(&r.app, tools_find("describe_schema"), p, &res);
	cJSON_Delete(p);
	assert_int_equal(res.http_status, 200);
	assert_true(res.len <= 2048);
	assert_non_null(strstr(res.body, "\"mode\":\"index\""));
	tool_result_free(&res);
	rig_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_changes_diffs_and_drift, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_refresh_keeps_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_search_schema_tool, setup, teardown),
		cmocka_unit_test_setup_teardown(test_small_schema_whole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_schema_index, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
