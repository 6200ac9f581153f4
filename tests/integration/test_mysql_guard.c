/*
 * test_mysql_guard.c - the read-only layers of the MySQL/MariaDB driver,
 * each on its own: the guard (check) rejects every line of the attack
 * corpus (tests/fixtures/mysql/attacks.txt); the same lines run through
 * execute() WITHOUT check, as an ALL PRIVILEGES user (root's equal) and as
 * the SELECT-only user, and afterwards every table (rows and checksum), the
 * server's tables, routines, triggers, events, users and grants, a set of
 * global variables, user-level locks, sessions and the files the corpus
 * aims at are unchanged. The must-allow list (allowed.txt) passes check()
 * and runs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "my_harness.h"

#define CORPUS_TIMEOUT_MS 500
#define ATTACK_FILE_GLOB "/tmp/cn_attack_*"

static struct h_corpus attacks, allowed;
static void *guarded; /* hides secrets and customers.phone; introspected */

static int group_setup(void **state)
{
	struct cn_error err = {0};
	if (h_setup(state) || h_corpus_load("mysql", "attacks.txt", true, &attacks) ||
	    h_corpus_load("mysql", "allowed.txt", true, &allowed))
		return -1;
	if (h_open(h_env.dsn, 2, 5000, true, &guarded, &err, NULL) != CN_OK) {
		fprintf(stderr, "open: %s\n", err.message);
		return -1;
	}
	if (h_introspect_quietly(guarded, &err) <= 0) {
		fprintf(stderr, "introspect: %s\n", err.message);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	if (h_env.api)
		h_env.api->close(guarded);
	h_corpus_free(&attacks);
	h_corpus_free(&allowed);
	return h_teardown(state);
}

/* ---- what must not change ---- */

static void snap_add(char **snap, MYSQL *a, const char *label, const char *sql)
{
	char *v = h_admin_value(a, sql);
	char *joined = NULL;
	if (!v)
		fail_msg("snapshot query failed: %s", sql);
	if (asprintf(&joined, "%s%s=%s\n", *snap ? *snap : "", label, v) < 0)
		fail_msg("out of memory");
	free(v);
	free(*snap);
	*snap = joined;
}

/* Everything the corpus could have changed, as text to compare. */
static char *snapshot(void)
{
	MYSQL *a = h_admin();
	assert_non_null(a);
	char *snap = NULL;
	assert_int_equal(h_admin_exec(a, "SET SESSION group_concat_max_len = 1000000"), 0);
	assert_int_equal(mysql_query(a, "SELECT CONCAT('`', TABLE_SCHEMA, '`.`', TABLE_NAME, '`') "
				       "FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' "
				       "AND TABLE_SCHEMA IN ('connector_test', 'connector_other') "
				       "ORDER BY 1"), 0);
	MYSQL_RES *res = mysql_store_result(a);
	assert_non_null(res);
	assert_true(mysql_num_rows(res) >= 9);
	MYSQL_ROW row;
	char **tables = calloc(mysql_num_rows(res) + 1, sizeof *tables);
	size_t n = 0;
	while ((row = mysql_fetch_row(res)))
		tables[n++] = strdup(row[0]);
	mysql_free_result(res);
	for (size_t i = 0; i < n; i++) {
		char sql[512];
		snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", tables[i]);
		snap_add(&snap, a, tables[i], sql);
		char cs[512];
		snprintf(cs, sizeof cs, "CHECKSUM TABLE %s EXTENDED", tables[i]);
		assert_int_equal(mysql_query(a, cs), 0);
		res = mysql_store_result(a);
		row = res ? mysql_fetch_row(res) : NULL;
		char *joined = NULL;
		assert_true(asprintf(&joined, "%schecksum %s=%s\n", snap, tables[i],
				     row && row[1] ? row[1] : "NULL") >= 0);
		mysql_free_result(res);
		free(snap);
		snap = joined;
		free(tables[i]);
	}
	free(tables);
	static const char *const checks[][2] = {
		{"tables", "SELECT GROUP_CONCAT(TABLE_SCHEMA, '.', TABLE_NAME, ':', TABLE_TYPE ORDER BY 1) "
			   "FROM information_schema.TABLES WHERE TABLE_SCHEMA NOT IN "
			   "('information_schema', 'performance_schema')"},
		{"databases", "SELECT GROUP_CONCAT(SCHEMA_NAME ORDER BY 1) FROM information_schema.SCHEMATA"},
		{"routines", "SELECT GROUP_CONCAT(ROUTINE_SCHEMA, '.', ROUTINE_NAME ORDER BY 1) "
			     "FROM information_schema.ROUTINES"},
		{"triggers", "SELECT COUNT(*) FROM information_schema.TRIGGERS"},
		{"events", "SELECT COUNT(*) FROM information_schema.EVENTS"},
		{"udfs", "SELECT COUNT(*) FROM mysql.func"},
		{"plugins", "SELECT GROUP_CONCAT(PLUGIN_NAME ORDER BY 1) FROM information_schema.PLUGINS "
			    "WHERE PLUGIN_STATUS = 'ACTIVE'"},
		{"users", "SELECT GROUP_CONCAT(User, '@', Host ORDER BY 1) FROM mysql.user"},
		{"privileges", "SELECT MD5(GROUP_CONCAT(Priv ORDER BY User, Host)) FROM mysql.global_priv"},
		{"db_grants", "SELECT GROUP_CONCAT(GRANTEE, TABLE_SCHEMA, PRIVILEGE_TYPE ORDER BY 1) "
			      "FROM information_schema.SCHEMA_PRIVILEGES"},
		{"globals", "SELECT GROUP_CONCAT(VARIABLE_NAME, '=', VARIABLE_VALUE ORDER BY 1) FROM "
			    "information_schema.GLOBAL_VARIABLES WHERE VARIABLE_NAME IN ('READ_ONLY', "
			    "'GENERAL_LOG', 'SQL_MODE', 'SECURE_FILE_PRIV', 'MAX_CONNECTIONS', "
			    "'EVENT_SCHEDULER', 'LOCAL_INFILE', 'LOG_BIN_TRUST_FUNCTION_CREATORS', "
			    "'TX_READ_ONLY', 'MAX_STATEMENT_TIME', 'INIT_CONNECT', 'CHARACTER_SET_SERVER', "
			    "'LOG_OUTPUT', 'SLOW_QUERY_LOG', 'WAIT_TIMEOUT', 'MAX_USER_CONNECTIONS')"},
		{"locks", "SELECT CONCAT(IFNULL(IS_USED_LOCK('cn_attack_lock'), 'free'), ' ', "
			  "IFNULL(IS_USED_LOCK('connector_leak'), 'free'))"},
		{"running", "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER LIKE "
			    "'connector\\_%' AND COMMAND NOT IN ('Sleep', 'Daemon') AND ID <> CONNECTION_ID()"},
	};
	for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
		snap_add(&snap, a, checks[i][0], checks[i][1]);
	mysql_close(a);
	return snap;
}

static void assert_same(const char *before, const char *after)
{
	if (strcmp(before, after) == 0)
		return;
	fprintf(stderr, "--- before\n%s--- after\n%s", before, after);
	fail_msg("the corpus changed the database");
}

static size_t attack_files(void)
{
	char pattern[600];
	snprintf(pattern, sizeof pattern, "%s/*", getenv("CN_TEST_MYSQL_FILES_DIR"));
	size_t n = h_files_matching(ATTACK_FILE_GLOB) + h_files_matching(pattern);
	snprintf(pattern, sizeof pattern, "%s/data/connector_test/cn_attack*",
		 getenv("CN_TEST_MYSQL_BASE_DIR"));
	return n + h_files_matching(pattern);
}

/* ---- the tests ---- */

static void test_check_rejects_every_attack(void **state)
{
	(void)state;
	assert_true(attacks.n >= 200);
	for (size_t i = 0; i < attacks.n; i++) {
		struct cn_error err = {0};
		int rc = h_env.api->check(guarded, attacks.items[i].sql, &err);
		if (rc != CN_EREJECTED || !err.message[0] || err.code != CN_EREJECTED)
			fail_msg("attacks.txt:%d accepted by check(): %s", attacks.items[i].line,
				 attacks.items[i].sql);
		if (err.reject == CN_REJECT_OTHER)
			fail_msg("attacks.txt:%d refused without a class: %s", attacks.items[i].line,
				 err.message);
	}
}

struct tally {
	int gate, read_only, other, ok;
};

static void run_corpus(const char *who, const char *dsn, struct tally *t)
{
	void *h = NULL;
	struct cn_error err = {0};
	if (h_open(dsn, 1, CORPUS_TIMEOUT_MS, false, &h, &err, NULL) != CN_OK)
		fail_msg("open as %s: %s", who, err.message);
	for (size_t i = 0; i < attacks.n; i++) {
		const struct h_entry *e = &attacks.items[i];
		struct h_result r;
		memset(&err, 0, sizeof err);
		int64_t t0 = h_now_ms();
		int rc = h_exec(h, e->sql, NULL, 0, CORPUS_TIMEOUT_MS, 100, &r, &err);
		int64_t took = h_now_ms() - t0;
		h_result_free(&r);
		if (took > 4000)
			fail_msg("attacks.txt:%d as %s took %lld ms", e->line, who, (long long)took);
		if (!strcmp(e->cls, "fails") && rc == CN_OK)
			fail_msg("attacks.txt:%d ran as %s without check(): %s", e->line, who, e->sql);
		if (rc == CN_EREJECTED && err.reject == CN_REJECT_OTHER)
			fail_msg("attacks.txt:%d as %s refused without a class: %s", e->line, who,
				 err.message);
		if (rc == CN_OK)
			t->ok++;
		else if (strstr(err.message, "READ ONLY"))
			t->read_only++;
		else if (rc == CN_EREJECTED)
			t->gate++;
		else
			t->other++;
		if (rc == CN_EREJECTED && strstr(err.message, "READ ONLY") &&
		    err.reject != CN_REJECT_WRITE)
			fail_msg("attacks.txt:%d as %s: the read-only statement's refusal is class %d",
				 e->line, who, err.reject);
	}
	h_env.api->close(h);
	fprintf(stderr, "corpus as %s: %d stopped by the statement gate, %d by the read-only "
		"statement, %d by other errors (privileges, syntax...), %d ran\n",
		who, t->gate, t->read_only, t->other, t->ok);
}

static void test_execute_without_check_changes_nothing(void **state)
{
	(void)state;
	h_system("rm -f " ATTACK_FILE_GLOB);
	char *before = snapshot();
	struct tally admin = {0}, ro = {0};
	run_corpus("connector_admin", h_env.super_dsn, &admin);
	run_corpus("connector_ro", h_env.dsn, &ro);
	assert_true(admin.gate > 150);
	char *after = snapshot();
	assert_same(before, after);
	assert_int_equal(attack_files(), 0);
	free(before);
	free(after);
}

/* The gate alone is not the only layer: writes it cannot see (a stored
 * function) meet the read-only statement, for the administrator too. */
static void test_read_only_statement_stops_what_the_gate_cannot_see(void **state)
{
	(void)state;
	char *before = snapshot();
	void *h = NULL;
	struct cn_error err = {0};
	assert_int_equal(h_open(h_env.super_dsn, 1, 5000, false, &h, &err, NULL), CN_OK);
	static const char *const writes[] = {
		"SELECT write_log('attack')",
		"SELECT id FROM orders WHERE write_log('attack') = 1",
		"WITH w AS (SELECT write_log('attack') AS x) SELECT x FROM w",
		"SELECT make_writable(), write_log('attack')",
	};
	for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
		struct h_result r;
		memset(&err, 0, sizeof err);
		assert_int_equal(h_env.api->check(guarded, writes[i], &err), CN_OK);
		int rc = h_exec(h, writes[i], NULL, 0, 5000, 0, &r, &err);
		h_result_free(&r);
		if (rc != CN_EREJECTED || !strstr(err.message, "READ ONLY") ||
		    err.reject != CN_REJECT_WRITE)
			fail_msg("%s: %d %s (class %d)", writes[i], rc, err.message, err.reject);
	}
	h_env.api->close(h);
	char *after = snapshot();
	assert_same(before, after);
	free(before);
	free(after);
}

static void test_must_allow(void **state)
{
	(void)state;
	assert_true(allowed.n >= 60);
	for (size_t i = 0; i < allowed.n; i++) {
		const struct h_entry *e = &allowed.items[i];
		struct cn_error err = {0};
		if (h_env.api->check(guarded, e->sql, &err) != CN_OK)
			fail_msg("allowed.txt:%d rejected: %s", e->line, err.message);
		struct cn_value params[4];
		char *copy;
		size_t n = h_corpus_params(e->cls, params, 4, &copy);
		struct h_result r;
		int rc = h_exec(guarded, e->sql, params, n, 5000, 0, &r, &err);
		free(copy);
		if (rc != CN_OK)
			fail_msg("allowed.txt:%d failed: %s", e->line, err.message);
		assert_true(r.ncols > 0);
		h_result_free(&r);
	}
}

static void test_rejection_messages(void **state)
{
	(void)state;
	static const struct {
		const char *sql;
		const char *message;
		enum cn_reject why;
	} cases[] = {
		{"SELECT SLEEP(1)", "function SLEEP() is not allowed (at character 8): it only waits",
		 CN_REJECT_DENIED},
		{"SELECT 'é', load_file('/etc/passwd')",
		 "function load_file() is not allowed (at character 13): it reads files", CN_REJECT_DENIED},
		{"SELECT 1; SELECT 2", "exactly one statement is allowed (at character 9)",
		 CN_REJECT_STATEMENTS},
		{"", "the query is empty", CN_REJECT_STATEMENTS},
		{"  -- nothing", "the query is empty", CN_REJECT_STATEMENTS},
		{"SELECT * FROM secrets", "table secrets is not available (at character 15)",
		 CN_REJECT_HIDDEN},
		{"SELECT c.phone FROM customers c", "column phone is not available (at character 10)",
		 CN_REJECT_HIDDEN},
		{"SELECT * FROM (SELECT * FROM customers) x", "* is only allowed in the outer SELECT",
		 CN_REJECT_HIDDEN},
		{"WITH d AS (SELECT 1) DELETE FROM audit_log",
		 "WITH must be followed by a SELECT (at character 22)", CN_REJECT_WRITE},
		{"SELECT * FROM orders FOR UPDATE", "FOR UPDATE is not allowed (at character 22)",
		 CN_REJECT_WRITE},
		{"SELECT 1 INTO OUTFILE '/tmp/x'", "INTO is not allowed (at character 10)", CN_REJECT_WRITE},
		{"EXPLAIN ANALYZE SELECT 1", "EXPLAIN ANALYZE is not allowed (at character 9)",
		 CN_REJECT_DENIED},
		{"EXPLAIN DELETE FROM audit_log", "EXPLAIN is only allowed of a SELECT query",
		 CN_REJECT_WRITE},
		{"UPDATE orders SET total = 0", "UPDATE is not allowed (at character 1)", CN_REJECT_WRITE},
		{"SELECT $0", "parameter $0 is out of range (at character 8)", CN_REJECT_PARAMETER},
		{"SELECT ?", "a ? placeholder is not allowed (at character 8): write $1",
		 CN_REJECT_PARAMETER},
		{"SELECT @@version", "variables (@name, @@name) are not allowed (at character 8)",
		 CN_REJECT_DENIED},
		{"SELECT /*!50000 1 */", "an executable comment is not allowed (at character 8)",
		 CN_REJECT_DENIED},
		{"SELECT /*+ BKA(t) */ 1", "an optimizer hint is not allowed", CN_REJECT_DENIED},
		{"SELECT '\xff'", "not valid UTF-8 (at byte 9)", CN_REJECT_SYNTAX},
		{"SELECT * FROM mysql.user", "the mysql schema is not allowed (at character 15)",
		 CN_REJECT_DENIED},
		{"SELECT * FROM connector_other.notes",
		 "database connector_other is not allowed (at character 15): it is not part of this",
		 CN_REJECT_DENIED},
		{"SELECT * FROM information_schema.TABLES", "information_schema is not allowed for this",
		 CN_REJECT_DENIED},
		{"SELEC 1", "SELEC is not allowed (at character 1): only SELECT queries can run",
		 CN_REJECT_DENIED},
		{"SELECT 'x", "the string is not closed (at character 8)", CN_REJECT_SYNTAX},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct cn_error err = {0};
		int rc = h_env.api->check(guarded, cases[i].sql, &err);
		if (rc != CN_EREJECTED || !strstr(err.message, cases[i].message))
			fail_msg("'%s': %d '%s', expected '%s'", cases[i].sql, rc, err.message,
				 cases[i].message);
		if (err.reject != (int)cases[i].why)
			fail_msg("'%s': class %d, expected %d", cases[i].sql, err.reject,
				 (int)cases[i].why);
	}
}

/* A source that hides nothing may read information_schema; one that is not
 * introspected yet still refuses hidden names (the mappings are asked
 * directly), and a remembered acceptance is forgotten when the names change. */
static void test_names_and_remembered_verdicts(void **state)
{
	(void)state;
	void *open_src = NULL, *fresh = NULL;
	struct cn_error err = {0};
	assert_int_equal(h_open(h_env.dsn, 1, 5000, false, &open_src, &err, NULL), CN_OK);
	assert_true(h_introspect_quietly(open_src, &err) > 0);
	assert_int_equal(h_env.api->check(open_src, "SELECT COUNT(*) FROM information_schema.TABLES",
					  &err), CN_OK);
	assert_int_equal(h_env.api->check(open_src, "SELECT phone FROM customers", &err), CN_OK);
	h_env.api->close(open_src);

	assert_int_equal(h_open(h_env.dsn, 1, 5000, true, &fresh, &err, NULL), CN_OK);
	assert_int_equal(h_env.api->check(fresh, "SELECT * FROM secrets", &err), CN_EREJECTED);
	assert_int_equal(h_env.api->check(fresh, "SELECT c.phone FROM customers c", &err), CN_OK);
	/* introspection teaches the driver that customers has a hidden column */
	assert_true(h_introspect_quietly(fresh, &err) > 0);
	memset(&err, 0, sizeof err);
	assert_int_equal(h_env.api->check(fresh, "SELECT c.phone FROM customers c", &err), CN_EREJECTED);
	assert_non_null(strstr(err.message, "column phone is not available"));
	h_env.api->close(fresh);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_rejects_every_attack),
		cmocka_unit_test(test_rejection_messages),
		cmocka_unit_test(test_must_allow),
		cmocka_unit_test(test_names_and_remembered_verdicts),
		cmocka_unit_test(test_read_only_statement_stops_what_the_gate_cannot_see),
		cmocka_unit_test(test_execute_without_check_changes_nothing),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
