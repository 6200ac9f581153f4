/*
 * fuzz_pg_guard.c - libFuzzer target for the PostgreSQL driver's query guard
 * (drivers/postgres/pg_guard.c, compiled into this target). The input bytes
 * become one NUL-terminated query. Checks: the guard never crashes, answers
 * only CN_OK / CN_EREJECTED (with a message and a class other than OTHER) /
 * CN_ENOMEM, and whatever the full guard accepts the execute-time statement
 * gate accepts too, with the same highest parameter number.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pg_guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Hidden objects as the tests configure them. */
static int fuzz_hidden(void *ctx, const char *schema, const char *table, const char *column)
{
	(void)ctx;
	(void)schema;
	if (!strcasecmp(table, "secrets"))
		return 1;
	return column && !strcasecmp(table, "customers") && !strcasecmp(column, "email");
}

static int fuzz_has_hidden(void *ctx, const char *schema, const char *table)
{
	(void)ctx;
	(void)schema;
	return !strcasecmp(table, "customers");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *sql = malloc(size + 1);
	if (!sql)
		return 0;
	memcpy(sql, data, size);
	sql[size] = '\0';

	struct pg_guard_hooks hooks = {NULL, fuzz_hidden, fuzz_has_hidden};
	struct cn_error err = {0};
	int max_full = -1, max_gate = -1;
	int rc = pg_guard_check(sql, &hooks, &max_full, &err);
	if (rc != CN_OK && rc != CN_EREJECTED && rc != CN_ENOMEM)
		abort();
	if (rc == CN_EREJECTED &&
	    (err.code != CN_EREJECTED || !err.message[0] || err.reject == CN_REJECT_OTHER))
		abort();
	if (rc == CN_OK && (max_full < 0 || max_full > PG_GUARD_MAX_PARAM))
		abort();

	struct cn_error gerr = {0};
	int grc = pg_guard_shape(sql, &max_gate, &gerr);
	if (grc != CN_OK && grc != CN_EREJECTED && grc != CN_ENOMEM)
		abort();
	if (grc == CN_EREJECTED && gerr.reject == CN_REJECT_OTHER)
		abort();
	if (rc == CN_OK && (grc != CN_OK || max_gate != max_full))
		abort();
	free(sql);
	return 0;
}
