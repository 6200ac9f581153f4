/* test_refresh_swap.c - a schema refreshed over and over while requests
 * hammer the source: every answer is whole and belongs to one schema
 * version (orders with or without `coupon`, never a torn mix), nothing
 * fails, and a view is freed only after its last reader. Run under ASan
 * (build-asan) and ThreadSanitizer (scripts/test.sh builds this test alone
 * with -fsanitize=thread). CN_SWAP_SECONDS (default 3) sets how long. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"
#include "refresh.h"
#include "request.h"
#include "tools.h"

#define READERS 4

static struct {
	char dir[64];
	char db[128];
	char state[128];
	struct config *cfg;
	struct exec_store *store;
	struct app app;
	atomic_bool stop;
	atomic_long answers, with_coupon, without_coupon, refreshes, failures;
	char failure[512];
	pthread_mutex_t failure_mu;
} E;

static time_t now_clock(void)
{
	return time(NULL);
}

static void failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failed(const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&E.failure_mu);
	if (atomic_fetch_add(&E.failures, 1) == 0) {
		va_start(ap, fmt);
		vsnprintf(E.failure, sizeof E.failure, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&E.failure_mu);
}

static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	char buf[65536];
	size_t n;
	while (in && out && (n = fread(buf, 1, sizeof buf, in)) > 0)
		fwrite(buf, 1, n, out);
	if (in)
		fclose(in);
	if (out)
		fclose(out);
}

static int setup(void **state)
{
	(void)state;
	struct cn_error err = {0};
	char text[1024];
	pthread_mutex_init(&E.failure_mu, NULL);
	snprintf(E.dir, sizeof E.dir, "/tmp/cn_swap_test_XXXXXX");
	if (!mkdtemp(E.dir))
		return -1;
	snprintf(E.db, sizeof E.db, "%s/demo.db", E.dir);
	snprintf(E.state, sizeof E.state, "%s/state.db", E.dir);
	copy_file(CN_TEST_DEMO_DB, E.db);
	sqlite3 *db;
	/* WAL: the test's writer never holds up the connector's readers */
	if (sqlite3_open(E.db, &db) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK)
		return -1;
	sqlite3_close(db);
	setenv("CN_TEST_SECRET", "swap-test-secret-0123456789ab", 1);
	snprintf(text, sizeof text,
		 "auth: { callback_secrets: [\"${CN_TEST_SECRET}\"] }\n"
		 "state: { path: \"%s\" }\n"
		 "drivers: { dir: \"%s\" }\n"
		 "log: { level: warn }\n"
		 "sources:\n"
		 "  - { name: demo, driver: sqlite, dsn: \"%s\", pool: { size: 4 },\n"
		 "      mappings: \"%s/conf/mappings/demo.yaml\" }\n",
		 E.state, CN_TEST_DRIVER_DIR, E.db, CN_TEST_SOURCE_DIR);
	log_set_level(LOG_LEVEL_WARN);
	if (config_load_buffer("swap.yaml", text, strlen(text), &E.cfg, &err) ||
	    exec_store_open(E.state, NULL, &E.store, &err)) {
		fprintf(stderr, "%s\n", err.message);
		return -1;
	}
	struct sources_opts o = {.store = E.store};
	if (sources_open_with(E.cfg, &o, &E.app.sources, &err)) {
		fprintf(stderr, "%s\n", err.message);
		return -1;
	}
	E.app.cfg = E.cfg;
	E.app.now = now_clock;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	sources_close(E.app.sources);
	exec_store_close(E.store);
	config_free(E.cfg);
	DIR *d = opendir(E.dir);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		char p[512];
		snprintf(p, sizeof p, "%s/%s", E.dir, e->d_name);
		if (e->d_name[0] != '.')
			unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(E.dir);
	pthread_mutex_destroy(&E.failure_mu);
	return 0;
}

/* The columns of orders in a describe answer: 6 or 7 (with coupon). */
static int orders_columns(const cJSON *answer, bool *coupon)
{
	const cJSON *t, *c;
	*coupon = false;
	cJSON_ArrayForEach(
	    t, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(answer, "result"), "tables"))
	{
		if (strcmp(cJSON_GetObjectItemCaseSensitive(t, "name")->valuestring, "orders") != 0)
			continue;
		int n = 0;
		cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(t, "columns")) {
			n++;
			*coupon |=
			    strcmp(cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring, "coupon") == 0;
		}
		return n;
	}
	return -1;
}

static void one_call(const char *tool, const char *params, unsigned k)
{
	struct tool_result res;
	cJSON *p = cJSON_Parse(params);
	tools_call(&E.app, tools_find(tool), p, &res);
	cJSON_Delete(p);
	cJSON *a = res.http_status == 200 ? cJSON_ParseWithLength(res.body, res.len) : NULL;
	if (!a) {
		failed("%s %s: status %d: %.*s", tool, params, res.http_status,
		       (int)(res.len > 300 ? 300 : res.len), res.body);
	} else if (strcmp(tool, "describe_schema") == 0) {
		bool coupon;
		int n = orders_columns(a, &coupon);
		if (n != (coupon ? 7 : 6))
			failed("a torn schema: orders has %d columns (coupon %d)", n, coupon);
		atomic_fetch_add(coupon ? &E.with_coupon : &E.without_coupon, 1);
	}
	(void)k;
	cJSON_Delete(a);
	tool_result_free(&res);
	atomic_fetch_add(&E.answers, 1);
}

static void *reader(void *arg)
{
	unsigned k = (unsigned)(uintptr_t)arg;
	while (!atomic_load(&E.stop)) {
		switch (k++ % 6) {
		case 0: one_call("describe_schema", "{\"source\":\"demo\"}", k); break;
		case 1:
			one_call("describe_schema", "{\"source\":\"demo\",\"tables\":[\"orders\"]}", k);
			break;
		case 2: one_call("search_schema", "{\"query\":\"order coupon date\"}", k); break;
		case 3:
			one_call("run_query",
				 "{\"source\":\"demo\",\"query\":\"SELECT * FROM orders LIMIT 3\"}", k);
			break;
		case 4: one_call("list_data_sources", "{}", k); break;
		default: {
			struct http_request req = {.method = "GET", .path = "/readyz", .body = ""};
			struct http_response resp;
			request_handle(&E.app, &req, &resp);
			if (resp.status != 200)
				failed("/readyz %d: %.*s", resp.status, (int)resp.len, resp.body);
			http_response_free(&resp);
			atomic_fetch_add(&E.answers, 1);
		}
		}
	}
	return NULL;
}

static void alter(const char *sql)
{
	sqlite3 *db;
	char *msg = NULL;
	if (sqlite3_open(E.db, &db) != SQLITE_OK)
		failed("open %s", E.db);
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		failed("%s: %s", sql, msg);
	sqlite3_free(msg);
	sqlite3_close(db);
}

static void *refresher(void *arg)
{
	(void)arg;
	struct source *s = E.app.sources->items[0];
	for (unsigned i = 0; !atomic_load(&E.stop); i++) {
		alter(i % 2 == 0 ? "ALTER TABLE orders ADD COLUMN coupon TEXT"
				 : "ALTER TABLE orders DROP COLUMN coupon");
		struct refresh_result r;
		if (refresh_source(s, &r) != CN_OK)
			failed("refresh: %s", r.error);
		else if (r.diff->n != 1)
			failed("refresh %u found %zu changes", i, r.diff->n);
		refresh_result_clear(&r);
		atomic_fetch_add(&E.refreshes, 1);
	}
	return NULL;
}

static void test_swap_under_load(void **state)
{
	(void)state;
	const char *env = getenv("CN_SWAP_SECONDS");
	int seconds = env ? atoi(env) : 3;
	pthread_t readers[READERS], writer;
	for (uintptr_t i = 0; i < READERS; i++)
		assert_int_equal(pthread_create(&readers[i], NULL, reader, (void *)i), 0);
	assert_int_equal(pthread_create(&writer, NULL, refresher, NULL), 0);
	struct timespec t = {seconds > 0 ? seconds : 1, 0};
	nanosleep(&t, NULL);
	atomic_store(&E.stop, true);
	for (int i = 0; i < READERS; i++)
		pthread_join(readers[i], NULL);
	pthread_join(writer, NULL);
	print_message("%ld answers, %ld refreshes; describe saw coupon %ld times, not %ld times\n",
		      atomic_load(&E.answers), atomic_load(&E.refreshes), atomic_load(&E.with_coupon),
		      atomic_load(&E.without_coupon));
	if (atomic_load(&E.failures))
		fail_msg("%ld failure(s), the first: %s", atomic_load(&E.failures), E.failure);
	assert_true(atomic_load(&E.refreshes) >= 4);
	assert_true(atomic_load(&E.answers) >= 50);
	assert_true(atomic_load(&E.with_coupon) > 0 && atomic_load(&E.without_coupon) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_swap_under_load, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
