/* test_cron.c - cron expressions (parse, messages, next fire times) and the
 * time zone reader behind them. tests/unit/cron_differential.py compares the
 * same code with croniter on thousands of generated expressions; this file
 * pins the rules one by one, DST included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cron.h"
#include "tz.h"

/* "2025-03-30 01:30" (UTC) -> unix time */
static int64_t utc(const char *s)
{
	int y, mo, d, h, mi;
	assert_int_equal(sscanf(s, "%d-%d-%d %d:%d", &y, &mo, &d, &h, &mi), 5);
	return tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
}

static void fmt_utc(int64_t t, char out[32])
{
	int64_t y, days = tz_floor_div(t, 86400);
	int m, d, secs = (int)(t - days * 86400);
	tz_civil_from_days(days, &y, &m, &d);
	snprintf(out, 32, "%04lld-%02d-%02d %02d:%02d", (long long)y, m, d, secs / 3600, secs % 3600 / 60);
}

/* ---- parsing ---- */

static void test_parse_valid(void **state)
{
	(void)state;
	static const char *const ok[] = {
		"* * * * *", "*/15 * * * *", "0 0 * * *", "0,30 8-18 * * mon-fri", "5 4 * * sun",
		"0 0 1 jan,JUL *", "@hourly", "@DAILY", "@weekly", "@monthly", "@yearly", "@annually",
		"@midnight", "  0  3 *  * *  ", "0\t3\t*\t*\t*", "10/5 * * * *", "0 0 * * 5-0",
		"0 0 * * sat-sun", "0 0 * * 7", "1-59/2 */3 1,15 */2 1-5", "007 00 01 01 *",
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		struct cron c;
		char why[CRON_WHY_MAX];
		if (cron_parse(ok[i], &c, why, sizeof why) != CN_OK)
			fail_msg("'%s' refused: %s", ok[i], why);
	}
}

static void test_parse_bits(void **state)
{
	(void)state;
	struct cron c;
	char why[CRON_WHY_MAX];
	assert_int_equal(cron_parse("*/20 1-3,5 10/10 jan-mar/2 sat-sun", &c, why, sizeof why), CN_OK);
	assert_true(c.bits[CRON_MINUTE] == ((1ull << 0) | (1ull << 20) | (1ull << 40)));
	assert_true(c.bits[CRON_HOUR] == ((1ull << 1) | (1ull << 2) | (1ull << 3) | (1ull << 5)));
	assert_true(c.bits[CRON_DOM] == ((1ull << 10) | (1ull << 20) | (1ull << 30)));
	assert_true(c.bits[CRON_MONTH] == ((1ull << 1) | (1ull << 3)));
	assert_true(c.bits[CRON_DOW] == ((1ull << 0) | (1ull << 6))); /* 7 folded into 0 */
	assert_true(c.dom_restricted && c.dow_restricted);

	assert_int_equal(cron_parse("0 0 1-31 * 0-7", &c, why, sizeof why), CN_OK);
	assert_false(c.dom_restricted); /* covers its range: not a restriction */
	assert_false(c.dow_restricted);
	assert_int_equal(cron_parse("@weekly", &c, why, sizeof why), CN_OK);
	assert_true(c.bits[CRON_DOW] == 1 && c.bits[CRON_MINUTE] == 1 && c.bits[CRON_HOUR] == 1);
}

static void test_parse_errors(void **state)
{
	(void)state;
	static const struct {
		const char *expr;
		const char *message; /* a part of why */
	} bad[] = {
		{"", "expected 5 fields"},
		{"* * * *", "got 4 fields"},
		{"* * * * * *", "got 6 fields"},
		{"60 * * * *", "field 1 (minute): 60 is out of range 0-59"},
		{"* 24 * * *", "field 2 (hour): 24 is out of range 0-23"},
		{"* * 0 * *", "field 3 (day-of-month): 0 is out of range 1-31"},
		{"* * 32 * *", "out of range 1-31"},
		{"* * * 13 *", "field 4 (month): 13 is out of range 1-12"},
		{"* * * * 8", "field 5 (day-of-week): 8 is out of range 0-7"},
		{"*/0 * * * *", "a step of 0 is not allowed"},
		{"5-2 * * * *", "the range 5-2 goes backwards"},
		{"* * * * fri-mon", "the range 5-1 goes backwards"},
		{"* * * foo *", "'foo' is not a number or a name (jan..dec)"},
		{"* * * * monday", "'monday' is not a number or a name (sun..sat)"},
		{"jan * * * *", "field 1 (minute): 'jan' is not a number"},
		{"-5 * * * *", "negative numbers are not allowed"},
		{"1,,2 * * * *", "an empty item"},
		{"1, * * * *", "field 1 (minute): an empty item"},
		{"*/x * * * *", "the step after '/' must be a whole number"},
		{"1-2-3 * * * *", "'2-3' is not a number"},
		{"1- * * * *", "a value is missing"},
		{"*-5 * * * *", "'*' is not a number"},
		{"@reboot", "unknown macro '@reboot'"},
		{"@every 5m", "unknown macro"},
		{"? * * * *", "'?' is not a number"},
		{"0 0 L * *", "'L' is not a number"},
		{"0 0 * * 1#2", "'1#2' is not a number"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct cron c;
		char why[CRON_WHY_MAX];
		if (cron_parse(bad[i].expr, &c, why, sizeof why) != CN_EINVAL)
			fail_msg("'%s' was accepted", bad[i].expr);
		if (!strstr(why, bad[i].message))
			fail_msg("'%s': message '%s' lacks '%s'", bad[i].expr, why, bad[i].message);
	}
	/* a long expression is cut in the message, not overflowing it */
	char big[2000];
	memset(big, '1', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	struct cron c;
	char why[40];
	assert_int_equal(cron_parse(big, &c, why, sizeof why), CN_EINVAL);
	assert_true(strlen(why) < sizeof why);
}

/* ---- next fire times ---- */

struct next_case {
	const char *expr;
	const char *zone; /* NULL: UTC */
	const char *after; /* UTC */
	const char *want;  /* UTC; NULL: never */
};

static void check_next(const struct next_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct next_case *k = &cases[i];
		struct cron c;
		char why[CRON_WHY_MAX], got[32];
		struct tz *z = NULL;
		struct cn_error err = {0};
		if (k->zone && tz_load(k->zone, &z, &err))
			fail_msg("%s: %s", k->zone, err.message);
		if (cron_parse(k->expr, &c, why, sizeof why))
			fail_msg("'%s': %s", k->expr, why);
		int64_t next = 0;
		int rc = cron_next(&c, z, utc(k->after), &next);
		if (!k->want) {
			if (rc != CN_ENOTFOUND)
				fail_msg("'%s' after %s: expected never, got rc %d", k->expr, k->after, rc);
		} else {
			fmt_utc(next, got);
			if (rc != CN_OK || strcmp(got, k->want) != 0)
				fail_msg("'%s' in %s after %s: got %s (rc %d), want %s", k->expr,
					 k->zone ? k->zone : "UTC", k->after, got, rc, k->want);
		}
		tz_free(z);
	}
}

static void test_next_utc(void **state)
{
	(void)state;
	static const struct next_case cases[] = {
		{"* * * * *", NULL, "2025-01-01 00:00", "2025-01-01 00:01"}, /* strictly after */
		{"*/15 * * * *", NULL, "2025-01-01 00:14", "2025-01-01 00:15"},
		{"*/15 * * * *", NULL, "2025-01-01 23:59", "2025-01-02 00:00"},
		{"@hourly", NULL, "2025-12-31 23:30", "2026-01-01 00:00"},
		{"@daily", NULL, "2024-02-28 12:00", "2024-02-29 00:00"},
		{"@weekly", NULL, "2025-01-01 00:00", "2025-01-05 00:00"}, /* Wednesday -> Sunday */
		{"@monthly", NULL, "2025-01-31 00:00", "2025-02-01 00:00"},
		{"@yearly", NULL, "2025-06-01 00:00", "2026-01-01 00:00"},
		{"0 0 31 * *", NULL, "2025-04-01 00:00", "2025-05-31 00:00"}, /* April has no 31st */
		{"0 0 29 2 *", NULL, "2025-01-01 00:00", "2028-02-29 00:00"},
		{"0 0 29 2 *", NULL, "2096-03-01 00:00", "2104-02-29 00:00"}, /* 2100 is no leap year */
		{"0 0 30 2 *", NULL, "2025-01-01 00:00", NULL},
		/* both day fields restricted: either matches */
		{"0 0 13 * fri", NULL, "2025-01-01 00:00", "2025-01-03 00:00"},
		{"0 0 13 * fri", NULL, "2025-01-11 00:00", "2025-01-13 00:00"},
		/* one of them open: both must match */
		{"0 0 13 * *", NULL, "2025-01-01 00:00", "2025-01-13 00:00"},
		{"0 0 * * fri", NULL, "2025-01-04 00:00", "2025-01-10 00:00"},
		{"0 0 1-31 * fri", NULL, "2025-01-04 00:00", "2025-01-10 00:00"}, /* 1-31 is open */
		{"0 0 * * 7", NULL, "2025-01-01 00:00", "2025-01-05 00:00"},
		{"0 0 * * sat-sun", NULL, "2025-01-01 00:00", "2025-01-04 00:00"},
		{"30 8-18/5 * * mon-fri", NULL, "2025-01-03 18:31", "2025-01-06 08:30"},
		{"59 23 31 12 *", NULL, "2025-12-31 23:59", "2026-12-31 23:59"},
		{"0 12 * 2 *", NULL, "2025-02-28 12:00", "2026-02-01 12:00"},
	};
	check_next(cases, sizeof cases / sizeof cases[0]);
}

/* Europe/Berlin: 2025-03-30 02:00 CET -> 03:00 CEST (01:00 UTC);
 * 2025-10-26 03:00 CEST -> 02:00 CET (01:00 UTC). */
static void test_next_dst(void **state)
{
	(void)state;
	static const struct next_case cases[] = {
		/* ordinary days keep their wall-clock time across the change */
		{"0 3 * * *", "Europe/Berlin", "2025-03-29 12:00", "2025-03-30 01:00"},
		{"0 3 * * *", "Europe/Berlin", "2025-10-25 12:00", "2025-10-26 02:00"},
		{"15 10 * * *", "America/New_York", "2025-03-08 18:00", "2025-03-09 14:15"},
		/* a time in the gap fires at the same wall time read with the old offset: 03:30 */
		{"30 2 * * *", "Europe/Berlin", "2025-03-29 12:00", "2025-03-30 01:30"},
		{"30 2 * * *", "Europe/Berlin", "2025-03-30 01:30", "2025-03-31 00:30"},
		/* hourly: 02:00 does not exist, its instant is 03:00's, fired once */
		{"0 * * * *", "Europe/Berlin", "2025-03-29 23:10", "2025-03-30 00:00"},
		{"0 * * * *", "Europe/Berlin", "2025-03-30 00:00", "2025-03-30 01:00"},
		{"0 * * * *", "Europe/Berlin", "2025-03-30 01:00", "2025-03-30 02:00"},
		/* a repeated time fires once, at its first occurrence */
		{"30 2 * * *", "Europe/Berlin", "2025-10-25 12:00", "2025-10-26 00:30"},
		{"30 2 * * *", "Europe/Berlin", "2025-10-26 00:30", "2025-10-27 01:30"},
		{"0 * * * *", "Europe/Berlin", "2025-10-26 00:00", "2025-10-26 02:00"},
		{"*/30 * * * *", "Europe/Berlin", "2025-10-26 00:40", "2025-10-26 02:00"},
		{"*/30 * * * *", "Europe/Berlin", "2025-10-26 01:10", "2025-10-26 02:00"},
		/* a gap at midnight (Sao Paulo 2018-11-04 00:00 -> 01:00) */
		{"0 0 * * *", "America/Sao_Paulo", "2018-11-03 12:00", "2018-11-04 03:00"},
		/* half-hour zones and a half-hour change (Lord Howe) */
		{"0 9 * * *", "Asia/Kolkata", "2025-01-01 00:00", "2025-01-01 03:30"},
		{"0 9 * * *", "Asia/Kathmandu", "2025-01-01 00:00", "2025-01-01 03:15"},
		{"0 2 * * *", "Australia/Lord_Howe", "2025-10-04 00:00", "2025-10-04 15:30"},
		/* beyond the file's transitions: the TZ rule of its footer */
		{"0 12 1 7 *", "Europe/Berlin", "2090-01-01 00:00", "2090-07-01 10:00"},
		{"0 12 1 1 *", "Europe/Berlin", "2090-07-01 00:00", "2091-01-01 11:00"},
		{"0 12 1 1 *", "Australia/Sydney", "2090-07-01 00:00", "2091-01-01 01:00"},
	};
	check_next(cases, sizeof cases / sizeof cases[0]);
}

/* ---- the time zone reader ---- */

/* tz_offset against glibc's localtime_r for many instants and zones (this
 * test alone is single-threaded, so setenv("TZ") is safe here). */
static void test_tz_matches_libc(void **state)
{
	(void)state;
	static const char *const zones[] = {
		"Europe/Berlin", "America/New_York", "America/Sao_Paulo", "Australia/Lord_Howe",
		"Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham", "Europe/Dublin", "America/Nuuk",
		"Africa/Casablanca", "Asia/Tehran", "America/Santiago", "Pacific/Apia", "Europe/Moscow",
		"Antarctica/Troll", "America/St_Johns", "Asia/Gaza", "UTC",
	};
	unsigned seed = 12345;
	char *old = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
	for (size_t i = 0; i < sizeof zones / sizeof zones[0]; i++) {
		struct tz *z;
		struct cn_error err = {0};
		if (tz_load(zones[i], &z, &err))
			fail_msg("%s", err.message);
		char spec[80];
		snprintf(spec, sizeof spec, ":%s", zones[i]);
		setenv("TZ", spec, 1);
		tzset();
		for (int k = 0; k < 4000; k++) {
			/* 1900..2150, with a bias to the hours around changes */
			int64_t t = (int64_t)(rand_r(&seed) % 7900) * 1000000LL - 2208988800LL +
				    (int64_t)(rand_r(&seed) % 1000000);
			time_t tt = (time_t)t;
			struct tm tm;
			assert_non_null(localtime_r(&tt, &tm));
			int32_t want = (int32_t)tm.tm_gmtoff;
			int32_t got = tz_offset(z, t);
			if (got != want)
				fail_msg("%s at %lld: offset %d, libc %d", zones[i], (long long)t, got, want);
		}
		tz_free(z);
	}
	if (old) {
		setenv("TZ", old, 1);
		free(old);
	} else {
		unsetenv("TZ");
	}
	tzset();
}

static void test_tz_wall(void **state)
{
	(void)state;
	struct tz *z;
	struct cn_error err = {0};
	assert_int_equal(tz_load("Europe/Berlin", &z, &err), CN_OK);
	/* gap: 02:30 does not exist on 2025-03-30 -> 01:30 UTC (03:30 CEST) */
	assert_true(tz_from_wall(z, utc("2025-03-30 02:30")) == utc("2025-03-30 01:30"));
	/* overlap: 02:30 on 2025-10-26 twice -> the first, 00:30 UTC */
	assert_true(tz_from_wall(z, utc("2025-10-26 02:30")) == utc("2025-10-26 00:30"));
	assert_true(tz_from_wall(z, utc("2025-07-01 12:00")) == utc("2025-07-01 10:00"));
	assert_true(tz_to_wall(z, utc("2025-07-01 10:00")) == utc("2025-07-01 12:00"));
	assert_string_equal(tz_name(z), "Europe/Berlin");
	tz_free(z);
	assert_int_equal(tz_load("UTC", &z, &err), CN_OK);
	assert_int_equal(tz_offset(z, 0), 0);
	tz_free(z);
	assert_int_equal(tz_offset(NULL, 12345), 0);
}

static void test_tz_errors(void **state)
{
	(void)state;
	struct tz *z = (struct tz *)1;
	struct cn_error err = {0};
	assert_int_equal(tz_load("Europe/Berln", &z, &err), CN_ENOTFOUND);
	assert_null(z);
	assert_non_null(strstr(err.message, "unknown time zone 'Europe/Berln'"));
	static const char *const bad_names[] = {"../etc/passwd", "/etc/localtime", "Europe/../UTC",
						"Europe//Berlin", "Europe/Berlin/", "a b", ".hidden"};
	for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
		assert_int_equal(tz_load(bad_names[i], &z, &err), CN_EINVAL);
		assert_non_null(strstr(err.message, "is not a time zone name"));
	}
	/* not a TZif file */
	assert_int_equal(tz_load("zone.tab", &z, &err), CN_ECONFIG);
	assert_int_equal(tz_parse("x", "TZif", 4, &z, &err), CN_ECONFIG);
	/* POSIX rules */
	assert_int_equal(tz_parse_posix("CET-1CEST,M3.5.0,M10.5.0/3", &z, &err), CN_OK);
	assert_int_equal(tz_offset(z, utc("2030-07-01 00:00")), 7200);
	assert_int_equal(tz_offset(z, utc("2030-01-01 00:00")), 3600);
	tz_free(z);
	assert_int_equal(tz_parse_posix("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", &z, &err), CN_OK);
	assert_int_equal(tz_offset(z, utc("2030-01-01 00:00")), 11 * 3600);
	assert_int_equal(tz_offset(z, utc("2030-07-01 00:00")), 37800);
	tz_free(z);
	assert_int_equal(tz_parse_posix("<-02>2<-01>,M3.5.0/-1,M10.5.0/0", &z, &err), CN_OK);
	tz_free(z);
	static const char *const bad_rules[] = {"", "CET", "C-1", "CET-1CEST,M13.5.0,M10.5.0",
						"CET-1CEST,M3.5.0", "CET-25", "<>1", "CET-1CEST,J0,J365",
						"EST5EDT,M3.2.0/200,M11.1.0"};
	for (size_t i = 0; i < sizeof bad_rules / sizeof bad_rules[0]; i++)
		if (tz_parse_posix(bad_rules[i], &z, &err) != CN_EINVAL)
			fail_msg("'%s' was accepted", bad_rules[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_bits),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_next_utc),
		cmocka_unit_test(test_next_dst),
		cmocka_unit_test(test_tz_matches_libc),
		cmocka_unit_test(test_tz_wall),
		cmocka_unit_test(test_tz_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
