/*
 * test_metrics.c - the registry on its own: nothing recorded before
 * metrics_init(), label values escaped as the text format wants, histogram
 * buckets inclusive of their bound and cumulative, reject classes by name,
 * and the series cap (new series dropped and counted, old ones still
 * counting). The daemon's /metrics is tested end to end in
 * tests/e2e/test_metrics.py with Prometheus' own parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static char *render(void)
{
	struct buf b;
	buf_init(&b, 64u * 1024u * 1024u);
	assert_int_equal(metrics_render(NULL, &b), CN_OK);
	size_t len;
	return buf_steal(&b, &len);
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)); p += n)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static int teardown(void **state)
{
	(void)state;
	metrics_shutdown();
	return 0;
}

static void test_nothing_before_init(void **state)
{
	(void)state;
	metrics_tool_call("run_query", "demo", 200, NULL, 0.01, 10);
	metrics_replay();
	metrics_init();
	char *text = render();
	assert_null(strstr(text, "tool_calls_total{"));
	assert_true(has_line(text, "interactor_connector_execution_replays_total 0"));
	free(text);
}

static void test_labels_escaped(void **state)
{
	(void)state;
	metrics_init();
	metrics_rejection("a\"b\\c\nd", CN_REJECT_WRITE);
	metrics_rejection("plain", 999); /* a class this core does not know */
	metrics_rejection("plain", CN_REJECT_HIDDEN);
	char *text = render();
	assert_true(has_line(text, "interactor_connector_guard_rejections_total"
				   "{source=\"a\\\"b\\\\c\\nd\",reason=\"write\"} 1"));
	assert_true(has_line(text, "interactor_connector_guard_rejections_total"
				   "{source=\"plain\",reason=\"other\"} 1"));
	assert_true(has_line(text, "interactor_connector_guard_rejections_total"
				   "{source=\"plain\",reason=\"hidden\"} 1"));
	free(text);
}

static void test_histogram_buckets(void **state)
{
	(void)state;
	metrics_init();
	metrics_query("s", 0.001, 3);  /* on a bound: counted in it */
	metrics_query("s", 0.0011, 4); /* just above: the next one */
	metrics_query("s", 99.0, 0);   /* past the last bound: +Inf only */
	char *text = render();
	const char *h = "interactor_connector_database_duration_seconds";
	char line[200];
	snprintf(line, sizeof line, "%s_bucket{source=\"s\",le=\"0.0005\"} 0", h);
	assert_true(has_line(text, line));
	snprintf(line, sizeof line, "%s_bucket{source=\"s\",le=\"0.001\"} 1", h);
	assert_true(has_line(text, line));
	snprintf(line, sizeof line, "%s_bucket{source=\"s\",le=\"0.0025\"} 2", h);
	assert_true(has_line(text, line));
	snprintf(line, sizeof line, "%s_bucket{source=\"s\",le=\"30\"} 2", h);
	assert_true(has_line(text, line));
	snprintf(line, sizeof line, "%s_bucket{source=\"s\",le=\"+Inf\"} 3", h);
	assert_true(has_line(text, line));
	snprintf(line, sizeof line, "%s_count{source=\"s\"} 3", h);
	assert_true(has_line(text, line));
	snprintf(line, sizeof line, "%s_sum{source=\"s\"} 99.0021", h);
	assert_true(has_line(text, line));
	assert_true(has_line(text, "interactor_connector_rows_returned_total{source=\"s\"} 7"));
	free(text);
}

static void test_series_cap(void **state)
{
	(void)state;
	metrics_init();
	metrics_rejection("first", CN_REJECT_WRITE);
	for (int i = 0; i < METRICS_MAX_SERIES + 10; i++) {
		char name[32];
		snprintf(name, sizeof name, "s%d", i);
		metrics_rejection(name, CN_REJECT_SYNTAX);
	}
	metrics_rejection("first", CN_REJECT_WRITE); /* an old series still counts */
	char *text = render();
	assert_true(has_line(text, "interactor_connector_guard_rejections_total"
				   "{source=\"first\",reason=\"write\"} 2"));
	assert_true(has_line(text, "interactor_connector_metrics_series_dropped_total 11"));
	char last[120];
	snprintf(last, sizeof last, "{source=\"s%d\",", METRICS_MAX_SERIES - 1);
	assert_null(strstr(text, last));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_nothing_before_init, teardown),
		cmocka_unit_test_teardown(test_labels_escaped, teardown),
		cmocka_unit_test_teardown(test_histogram_buckets, teardown),
		cmocka_unit_test_teardown(test_series_cap, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
