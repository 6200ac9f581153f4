/*
 * pg_guard.h - the PostgreSQL driver's query guard, on the real PostgreSQL
 * parser (libpg_query, PostgreSQL 15 grammar). Pure: no connection, no
 * global state; safe to call from many threads at once.
 *
 * pg_guard_check() is the full guard that the driver's check() runs: exactly
 * one SELECT / VALUES / set operation / WITH of selects, or EXPLAIN (without
 * ANALYZE) of one; no data-modifying CTE, SELECT INTO or locking clause; no
 * call of a denied function anywhere in the tree; no denied catalog relation;
 * no hidden table; no hidden column named where that can be told; $n
 * parameters within 1..65535.
 *
 * pg_guard_shape() is the statement gate execute() applies even when check()
 * was not called: one SELECT / VALUES / EXPLAIN statement, and the highest
 * $n it uses. Everything else is left to the read-only transaction.
 */
#ifndef PG_GUARD_H
#define PG_GUARD_H

#include "connector_driver.h"

#define PG_GUARD_MAX_PARAM 65535

/* What the guard asks about tables; every member may be NULL. schema is
 * NULL for an unqualified name (the callee then matches any schema). */
struct pg_guard_hooks {
	void *ctx;
	/* Non-zero when the table (column NULL) or the column is hidden. */
	int (*is_hidden)(void *ctx, const char *schema, const char *table, const char *column);
	/* Non-zero when the table has at least one hidden column. */
	int (*has_hidden_columns)(void *ctx, const char *schema, const char *table);
};

/* CN_OK, CN_EREJECTED with what was found and where ("function pg_sleep()
 * is not allowed (at character 8): ...") and its class in err->reject, or
 * CN_ENOMEM. sql is
 * NUL-terminated; hooks may be NULL. *max_param (may be NULL) receives the
 * highest $n used, 0 when none. */
int pg_guard_check(const char *sql, const struct pg_guard_hooks *hooks, int *max_param,
		   struct cn_error *err);

/* The execute-time statement gate: CN_OK, CN_EREJECTED (classed too) or
 * CN_ENOMEM. */
int pg_guard_shape(const char *sql, int *max_param, struct cn_error *err);

#endif
