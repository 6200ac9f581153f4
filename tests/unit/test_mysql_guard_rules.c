/*
 * test_mysql_guard_rules.c - the MySQL driver's guard on its own (no server):
 * the lexical rules case by case, the statement's shape, the rewrite of
 * $n into ? with the order parameters bind in, which queries may touch the
 * session, hidden names through hooks, and how names compare.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "my_guard.h"

static int hook_hidden_table(void *ctx, const char *name)
{
	(void)ctx;
	return my_name_eq(name, "secrets") || my_name_eq(name, "prénoms");
}

static int hook_has_hidden_columns(void *ctx, const char *table)
{
	(void)ctx;
	if (my_name_eq(table, "a_view"))
		return 2;
	return my_name_eq(table, "customers") || my_name_eq(table, "ÉLÈVES");
}

/* table NULL: any table */
static int hook_hidden_column(void *ctx, const char *table, const char *column)
{
	(void)ctx;
	return ((!table || my_name_eq(table, "customers")) && my_name_eq(column, "phone")) ||
	       ((!table || my_name_eq(table, "élèves")) && my_name_eq(column, "numéro"));
}

static int hook_hides(void *ctx)
{
	(void)ctx;
	return 1;
}

static int hook_foreign(void *ctx, const char *name)
{
	(void)ctx;
	return my_name_eq(name, "billing");
}

static const struct my_guard_hooks hooks = {
	.hidden_table = hook_hidden_table,
	.has_hidden_columns = hook_has_hidden_columns,
	.hidden_column = hook_hidden_column,
	.hides_anything = hook_hides,
	.foreign_database = hook_foreign,
};

static void test_accepts(void **state)
{
	(void)state;
	static const char *const ok[] = {
		"SELECT 1",
		"select 1;",
		"SELECT 1 ; -- done",
		"SELECT 1 ; /* done */ # really",
		"  \t\n SELECT 1",
		"(SELECT 1)",
		"((SELECT 1) UNION (SELECT 2))",
		"WITH a AS (SELECT 1 AS x) SELECT x FROM a",
		"WITH RECURSIVE a (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM a WHERE n < 3) SELECT n FROM a",
		"WITH a AS (SELECT 1), b AS (SELECT 2) (SELECT * FROM a)",
		"VALUES (1), (2)",
		"TABLE orders",
		"EXPLAIN SELECT 1",
		"EXPLAIN FORMAT=JSON SELECT 1",
		"EXPLAIN EXTENDED SELECT 1",
		"DESCRIBE SELECT 1",
		"SELECT 'a\\'b', \"a\\\"b\", 'a''b', \"a\"\"b\"",
		"SELECT '-- not a comment', '# nor this', '/* nor this */', '/*! nor this */'",
		"SELECT `a``b`, `weird; DELETE`",
		"SELECT 1--1",
		"SELECT 1 -- comment\n, 2",
		"SELECT 1 #comment\n, 2",
		"SELECT 1 /* comment */ , 2",
		"SELECT X'00ff', x'', B'01', b'', 0x1F, 0b101, N'x', n'y', _utf8mb4'z', _binary 'w'",
		"SELECT 1e10, 1.5E-3, .5, 5., 1abc, 1e",
		"SELECT \\N",
		"SELECT t.update, t.delete, t.into FROM t",
		"SELECT REPLACE('a', 'b', 'c'), INSERT('abc', 1, 1, 'x')",
		"SELECT $1, $2, $65535",
		"SELECT name FROM customers",
		"SELECT * FROM customers",
		"SELECT c.*, 2 * 3 FROM customers c",
		"SELECT COUNT(*) FROM customers",
		"SELECT id FROM orders FOR SYSTEM_TIME ALL",
		"SELECT 'touché', `naïve`, 日本",
		"SELECT * FROM a_view",
		"SELECT name FROM a_view WHERE id = 1",
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		struct cn_error err = {0};
		if (my_guard_check(ok[i], &hooks, NULL, &err) != CN_OK)
			fail_msg("refused: %s: %s", ok[i], err.message);
	}
}

static void test_refuses(void **state)
{
	(void)state;
	static const struct {
		const char *sql, *says;
		enum cn_reject why;
	} bad[] = {
		{"", "empty", CN_REJECT_STATEMENTS},
		{"-- x", "empty", CN_REJECT_STATEMENTS},
		{";", "empty", CN_REJECT_STATEMENTS},
		{"SELECT 1; SELECT 2", "exactly one statement", CN_REJECT_STATEMENTS},
		{"SELECT 1;;", "exactly one statement", CN_REJECT_STATEMENTS},
		{"SELECT 'a", "string is not closed", CN_REJECT_SYNTAX},
		{"SELECT \"a\\\"", "string is not closed", CN_REJECT_SYNTAX},
		{"SELECT `a", "quoted identifier is not closed", CN_REJECT_SYNTAX},
		{"SELECT /* a", "comment is not closed", CN_REJECT_SYNTAX},
		{"SELECT /* a /* b */ c */", "comment inside a comment", CN_REJECT_SYNTAX},
		{"SELECT /*! 1 */", "executable comment", CN_REJECT_DENIED},
		{"SELECT /*!50000 1 */", "executable comment", CN_REJECT_DENIED},
		{"SELECT /*M! 1 */", "executable comment", CN_REJECT_DENIED},
		{"SELECT /*M!100400 1 */", "executable comment", CN_REJECT_DENIED},
		{"SELECT /*+ NO_RANGE_OPTIMIZATION(t) */ 1", "optimizer hint", CN_REJECT_DENIED},
		{"SELECT X'0G'", "hexadecimal", CN_REJECT_SYNTAX},
		{"SELECT B'2'", "bit-value", CN_REJECT_SYNTAX},
		{"SELECT X'00", "literal is not closed", CN_REJECT_SYNTAX},
		{"SELECT ?", "? placeholder", CN_REJECT_PARAMETER},
		{"SELECT @a", "variables", CN_REJECT_DENIED},
		{"SELECT @@version", "variables", CN_REJECT_DENIED},
		{"SELECT 1 := 2", ":=", CN_REJECT_DENIED},
		{"SELECT \\G", "backslash", CN_REJECT_SYNTAX},
		{"SELECT \x01", "control character 0x01", CN_REJECT_SYNTAX},
		{"SELECT \x7f", "control character 0x7f", CN_REJECT_SYNTAX},
		{"SELECT '\xc3'", "not valid UTF-8", CN_REJECT_SYNTAX},
		{"SELECT $0", "out of range", CN_REJECT_PARAMETER},
		{"SELECT $65536", "out of range", CN_REJECT_PARAMETER},
		{"SELECT $1x", "digits only", CN_REJECT_PARAMETER},
		{"SELECT $x", "starting with $", CN_REJECT_SYNTAX},
		{"SELECT (1", "unbalanced", CN_REJECT_SYNTAX},
		{"SELECT 1)", "unbalanced", CN_REJECT_SYNTAX},
		{"UPDATE t SET a = 1", "UPDATE is not allowed", CN_REJECT_WRITE},
		{"SET @a = 1", "variables", CN_REJECT_DENIED},
		{"SET sql_mode = ''", "SET is not allowed", CN_REJECT_WRITE},
		{"SHOW TABLES", "SHOW is not allowed", CN_REJECT_DENIED},
		{"CALL p()", "CALL is not allowed", CN_REJECT_WRITE},
		{"DO 1", "DO is not allowed", CN_REJECT_WRITE},
		{"HANDLER t OPEN", "HANDLER is not allowed", CN_REJECT_WRITE},
		{"ANALYZE SELECT 1", "ANALYZE is not allowed", CN_REJECT_DENIED},
		{"EXPLAIN ANALYZE SELECT 1", "EXPLAIN ANALYZE", CN_REJECT_DENIED},
		{"EXPLAIN t", "only allowed of a SELECT", CN_REJECT_DENIED},
		{"EXPLAIN FOR CONNECTION 1", "only allowed of a SELECT", CN_REJECT_DENIED},
		{"EXPLAIN DELETE FROM t", "only allowed of a SELECT", CN_REJECT_WRITE},
		{"WITH a AS (SELECT 1) DELETE FROM t", "WITH must be followed by a SELECT", CN_REJECT_WRITE},
		{"WITH a AS (DELETE FROM t) SELECT 1", "only SELECT is allowed inside WITH", CN_REJECT_WRITE},
		{"WITH a (SELECT 1) SELECT 1", "AS ( SELECT", CN_REJECT_SYNTAX},
		{"WITH SELECT 1", "AS ( SELECT", CN_REJECT_SYNTAX},
		{"SELECT 1 INTO OUTFILE '/tmp/x'", "INTO is not allowed", CN_REJECT_WRITE},
		{"SELECT 1.INTO OUTFILE '/tmp/x'", "INTO is not allowed", CN_REJECT_WRITE},
		{"SELECT 1.5e3INTO OUTFILE '/tmp/x'", "INTO is not allowed", CN_REJECT_WRITE},
		{"SELECT .5INTO OUTFILE '/tmp/x'", "INTO is not allowed", CN_REJECT_WRITE},
		{"SELECT t. INTO OUTFILE '/tmp/x'", "INTO is not allowed", CN_REJECT_WRITE},
		{"SELECT * FROM t WHERE id = 1.FOR UPDATE", "FOR UPDATE", CN_REJECT_WRITE},
		{"SELECT 1 INTO @x", "variables", CN_REJECT_DENIED},
		{"SELECT * FROM t FOR UPDATE", "FOR UPDATE", CN_REJECT_WRITE},
		{"SELECT * FROM t FOR SHARE", "FOR SHARE", CN_REJECT_WRITE},
		{"SELECT * FROM t LOCK IN SHARE MODE", "LOCK IN SHARE MODE", CN_REJECT_WRITE},
		{"SELECT * FROM t PROCEDURE ANALYSE()", "PROCEDURE is not allowed", CN_REJECT_DENIED},
		{"SELECT NEXT VALUE FOR s", "NEXT VALUE FOR", CN_REJECT_DENIED},
		{"SELECT PREVIOUS VALUE FOR s", "PREVIOUS VALUE FOR", CN_REJECT_DENIED},
		{"SELECT INSERT INTO t VALUES (1)", "INSERT is not allowed", CN_REJECT_WRITE},
		{"SELECT SLEEP(1)", "function SLEEP()", CN_REJECT_DENIED},
		{"SELECT sleep (1)", "function sleep()", CN_REJECT_DENIED},
		{"SELECT `SLEEP`(1)", "function SLEEP()", CN_REJECT_DENIED},
		{"SELECT db.sleep(1)", "function sleep()", CN_REJECT_DENIED},
		{"SELECT Get_Lock('a', 1)", "user-level locks", CN_REJECT_DENIED},
		{"SELECT spider_direct_sql('x')", "other servers", CN_REJECT_DENIED},
		{"SELECT lib_mysqludf_sys_info()", "commands", CN_REJECT_DENIED},
		{"SELECT * FROM mysql.user", "mysql schema", CN_REJECT_DENIED},
		{"SELECT * FROM `MySQL`.user", "mysql schema", CN_REJECT_DENIED},
		{"SELECT * FROM sys.x", "sys schema", CN_REJECT_DENIED},
		{"SELECT * FROM performance_schema.threads", "performance_schema schema", CN_REJECT_DENIED},
		{"SELECT * FROM billing.invoices", "database billing is not allowed", CN_REJECT_DENIED},
		{"SELECT * FROM information_schema.tables", "information_schema", CN_REJECT_DENIED},
		{"SELECT * FROM secrets", "table secrets is not available", CN_REJECT_HIDDEN},
		{"SELECT * FROM SECRETS", "table SECRETS is not available", CN_REJECT_HIDDEN},
		{"SELECT * FROM `secrets`", "table secrets is not available", CN_REJECT_HIDDEN},
		{"SELECT * FROM PRÉNOMS", "table PRÉNOMS is not available", CN_REJECT_HIDDEN},
		{"SELECT phone FROM customers", "column phone is not available", CN_REJECT_HIDDEN},
		{"SELECT PHONE FROM customers", "column PHONE is not available", CN_REJECT_HIDDEN},
		{"SELECT c.`phone` FROM customers c", "column phone is not available", CN_REJECT_HIDDEN},
		{"SELECT id FROM customers WHERE \"phone\" = 1", "column phone is not available",
		 CN_REJECT_HIDDEN},
		{"SELECT NUMÉRO FROM élèves", "column NUMÉRO is not available", CN_REJECT_HIDDEN},
		{"SELECT phone FROM a_view", "column phone is not available", CN_REJECT_HIDDEN},
		{"SELECT x FROM a_view WHERE numéro = 1", "column numéro is not available", CN_REJECT_HIDDEN},
		{"SELECT keyring_key_store('k', 'AES', 'x')", "keys, replication, audit", CN_REJECT_DENIED},
		{"SELECT service_get_write_locks('ns', 'l', 1)", "user-level locks", CN_REJECT_DENIED},
		{"SELECT group_replication_set_as_primary('x')", "replication", CN_REJECT_DENIED},
		{"SELECT * FROM (SELECT * FROM customers) t", "* is only allowed", CN_REJECT_HIDDEN},
		{"SELECT * FROM customers UNION SELECT * FROM customers", "* is only allowed",
		 CN_REJECT_HIDDEN},
		{"(SELECT * FROM customers)", "* is only allowed", CN_REJECT_HIDDEN},
		{"SELECT * FROM customers NATURAL JOIN orders", "NATURAL JOIN", CN_REJECT_HIDDEN},
		{"EXPLAIN SELECT id FROM customers", "EXPLAIN is not allowed when", CN_REJECT_HIDDEN},
		{"TABLE customers", "TABLE is not allowed when", CN_REJECT_HIDDEN},
		{"ANALYZE TABLE t", "ANALYZE is not allowed", CN_REJECT_WRITE},
		{"GRANT ALL ON *.* TO x", "GRANT is not allowed", CN_REJECT_WRITE},
		{"HELP 'x'", "HELP is not allowed", CN_REJECT_DENIED},
		{"SELCT 1", "SELCT is not allowed", CN_REJECT_DENIED},
		{"SIGNAL SQLSTATE '45000'", "SIGNAL is not allowed", CN_REJECT_DENIED},
		{"1", "must start with SELECT", CN_REJECT_SYNTAX},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct cn_error err = {0};
		int rc = my_guard_check(bad[i].sql, &hooks, NULL, &err);
		if (rc != CN_EREJECTED || !strstr(err.message, bad[i].says))
			fail_msg("'%s': %d '%s', expected '%s'", bad[i].sql, rc, err.message, bad[i].says);
		if (err.reject != (int)bad[i].why)
			fail_msg("'%s': class %d, expected %d (%s)", bad[i].sql, err.reject,
				 (int)bad[i].why, err.message);
	}
	/* the token limit */
	static char many[2 * 20001 + 16];
	size_t n = (size_t)sprintf(many, "SELECT 1");
	for (int i = 0; i < 10001; i++)
		n += (size_t)sprintf(many + n, ",1");
	struct cn_error err = {0};
	assert_int_equal(my_guard_check(many, &hooks, NULL, &err), CN_EREJECTED);
	assert_non_null(strstr(err.message, "too long"));
	assert_int_equal(err.reject, CN_REJECT_LIMIT);
	/* the execute-time gate classes its refusals too */
	struct my_prepared p;
	memset(&err, 0, sizeof err);
	assert_int_equal(my_guard_prepare("DELETE FROM t", &p, &err), CN_EREJECTED);
	assert_int_equal(err.reject, CN_REJECT_WRITE);
	assert_int_equal(my_guard_prepare("SELECT $0", &p, &err), CN_EREJECTED);
	assert_int_equal(err.reject, CN_REJECT_PARAMETER);
}

static void test_positions(void **state)
{
	(void)state;
	struct cn_error err = {0};
	assert_int_equal(my_guard_check("SELECT 'é', SLEEP(1)", &hooks, NULL, &err), CN_EREJECTED);
	assert_string_equal(err.message, "function SLEEP() is not allowed (at character 13): it only "
					 "waits or burns time");
	assert_int_equal(my_guard_check("SELECT\n  1 INTO @x", &hooks, NULL, &err), CN_EREJECTED);
	assert_non_null(strstr(err.message, "(at character 17)"));
}

static void test_rewrite(void **state)
{
	(void)state;
	struct my_prepared p;
	struct cn_error err = {0};
	assert_int_equal(my_guard_prepare("SELECT $2, '$1', `$1`, $1 /* $3 */, $2 ; -- $4", &p, &err),
			 CN_OK);
	assert_string_equal(p.sql, "SELECT ?, '$1', `$1`, ? /* $3 */, ? ");
	assert_int_equal(p.nbinds, 3);
	assert_int_equal(p.binds[0], 1);
	assert_int_equal(p.binds[1], 0);
	assert_int_equal(p.binds[2], 1);
	assert_int_equal(p.max_param, 2);
	assert_false(p.may_touch_session);
	assert_false(p.explain);
	my_prepared_free(&p);

	assert_int_equal(my_guard_prepare("EXPLAIN SELECT 1", &p, &err), CN_OK);
	assert_true(p.explain);
	assert_string_equal(p.sql, "EXPLAIN SELECT 1");
	my_prepared_free(&p);

	/* the execute-time gate refuses what no SELECT needs, names are not its business */
	assert_int_equal(my_guard_prepare("SELECT SLEEP(1)", &p, &err), CN_EREJECTED);
	assert_int_equal(my_guard_prepare("DELETE FROM t", &p, &err), CN_EREJECTED);
	assert_int_equal(my_guard_prepare("SELECT * FROM secrets", &p, &err), CN_OK);
	my_prepared_free(&p);
}

static void test_what_may_touch_the_session(void **state)
{
	(void)state;
	static const struct {
		const char *sql;
		bool touches;
	} cases[] = {
		{"SELECT COUNT(*), SUM(x), CONCAT(a, b), NOW() FROM t", false},
		{"SELECT IF(a, b, c), COALESCE(a, b), DATE_FORMAT(d, '%Y') FROM t", false},
		{"SELECT * FROM t WHERE a IN (1, 2) AND EXISTS (SELECT 1) AND b IN (SELECT 1)", false},
		{"SELECT * FROM t JOIN u USING (id) WHERE x NOT IN (1)", false},
		{"WITH c AS (SELECT 1) SELECT * FROM c", false},
		{"SELECT my_func(1)", true},
		{"SELECT db.concat(1)", true},
		{"SELECT `concat`(1)", true},
		{"SELECT concat (1)", true},   /* a space: it might name a stored function */
		{"SELECT CONCAT(a, my_func(b)) FROM t", true},
		{"WITH c (n) AS (SELECT 1) SELECT n FROM c", true}, /* errs on resetting */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct my_prepared p;
		struct cn_error err = {0};
		assert_int_equal(my_guard_prepare(cases[i].sql, &p, &err), CN_OK);
		if (p.may_touch_session != cases[i].touches)
			fail_msg("%s: may_touch_session %d", cases[i].sql, p.may_touch_session);
		my_prepared_free(&p);
	}
}

static void test_name_eq(void **state)
{
	(void)state;
	assert_true(my_name_eq("Customers", "cUSTOMERS"));
	assert_true(my_name_eq("CAFÉ", "café"));
	assert_true(my_name_eq("ŁÓDŹ", "łódź"));
	assert_true(my_name_eq("ΣΟΦΊΑ", "σοφία"));
	assert_true(my_name_eq("МОСКВА", "москва"));
	assert_true(my_name_eq("ＡＢＣ", "ａｂｃ"));
	assert_true(my_name_eq("ẞ", "ẞ"));
	assert_false(my_name_eq("cafe", "café"));
	assert_false(my_name_eq("abc", "abcd"));
	assert_false(my_name_eq("", "a"));
	assert_true(my_name_eq("", ""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepts),
		cmocka_unit_test(test_refuses),
		cmocka_unit_test(test_positions),
		cmocka_unit_test(test_rewrite),
		cmocka_unit_test(test_what_may_touch_the_session),
		cmocka_unit_test(test_name_eq),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
