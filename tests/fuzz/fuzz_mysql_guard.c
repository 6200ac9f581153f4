/*
 * fuzz_mysql_guard.c - libFuzzer target for the MySQL driver's query guard
 * (drivers/mysql/my_guard.c, compiled into this target). The input bytes
 * become one NUL-terminated query. Checks: the guard never crashes, answers
 * only CN_OK / CN_EREJECTED (with a message and a class other than OTHER) /
 * CN_ENOMEM; whatever the full guard accepts the execute-time gate accepts
 * too, with the same highest parameter; the rewritten text has exactly one ?
 * per bound parameter outside quotes, no $n left outside quotes, and is no
 * longer than the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "my_guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_hidden_table(void *ctx, const char *name)
{
	(void)ctx;
	return my_name_eq(name, "secrets");
}

static int fuzz_has_hidden(void *ctx, const char *table)
{
	(void)ctx;
	return my_name_eq(table, "customers");
}

static int fuzz_hidden_column(void *ctx, const char *table, const char *column)
{
	(void)ctx;
	return my_name_eq(table, "customers") && my_name_eq(column, "phone");
}

static int fuzz_foreign(void *ctx, const char *name)
{
	(void)ctx;
	return my_name_eq(name, "billing");
}

/* ? and $digits outside quotes and comments of the rewritten text, counted
 * by a deliberately naive scan that only has to agree on texts the guard
 * accepted (comments are skipped the way the guard skips them). */
static void count_marks(const char *s, size_t *qmarks, size_t *dollars)
{
	*qmarks = *dollars = 0;
	for (size_t i = 0; s[i]; i++) {
		char c = s[i];
		if (c == '\'' || c == '"' || c == '`') {
			for (i++; s[i]; i++) {
				if (c != '`' && s[i] == '\\' && s[i + 1]) {
					i++;
				} else if (s[i] == c) {
					if (s[i + 1] == c)
						i++;
					else
						break;
				}
			}
			if (!s[i])
				return;
		} else if (c == '#' || (c == '-' && s[i + 1] == '-' &&
					(!s[i + 2] || (unsigned char)s[i + 2] <= ' '))) {
			while (s[i + 1] && s[i + 1] != '\n')
				i++;
		} else if (c == '/' && s[i + 1] == '*') {
			const char *end = strstr(s + i + 2, "*/");
			if (!end)
				return;
			i = (size_t)(end - s) + 1;
		} else if (c == '?') {
			(*qmarks)++;
		} else if (c == '$' && s[i + 1] >= '0' && s[i + 1] <= '9' &&
			   (i == 0 || !(((unsigned char)s[i - 1] >= 0x80) || s[i - 1] == '_' ||
					s[i - 1] == '$' || (s[i - 1] >= '0' && s[i - 1] <= '9') ||
					((s[i - 1] | 32) >= 'a' && (s[i - 1] | 32) <= 'z')))) {
			(*dollars)++;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *sql = malloc(size + 1);
	if (!sql)
		return 0;
	memcpy(sql, data, size);
	sql[size] = '\0';

	struct my_guard_hooks hooks = {NULL, fuzz_hidden_table, fuzz_has_hidden, fuzz_hidden_column,
				       NULL, fuzz_foreign};
	struct cn_error err = {0};
	int max_full = -1;
	int rc = my_guard_check(sql, &hooks, &max_full, &err);
	if (rc != CN_OK && rc != CN_EREJECTED && rc != CN_ENOMEM)
		abort();
	if (rc == CN_EREJECTED &&
	    (err.code != CN_EREJECTED || !err.message[0] || err.reject == CN_REJECT_OTHER))
		abort();
	if (rc == CN_OK && (max_full < 0 || max_full > MY_GUARD_MAX_PARAM))
		abort();

	struct my_prepared p;
	struct cn_error gerr = {0};
	int grc = my_guard_prepare(sql, &p, &gerr);
	if (grc != CN_OK && grc != CN_EREJECTED && grc != CN_ENOMEM)
		abort();
	if (grc == CN_EREJECTED && gerr.reject == CN_REJECT_OTHER)
		abort();
	if (rc == CN_OK && grc != CN_OK)
		abort();
	if (grc == CN_OK) {
		if (rc == CN_OK && p.max_param != max_full)
			abort();
		if (strlen(p.sql) != p.len || p.len > size)
			abort();
		size_t q, d;
		count_marks(p.sql, &q, &d);
		if (q != p.nbinds || d != 0)
			abort();
		for (size_t i = 0; i < p.nbinds; i++)
			if (p.binds[i] < 0 || p.binds[i] >= p.max_param)
				abort();
		my_prepared_free(&p);
	}
	free(sql);
	return 0;
}
