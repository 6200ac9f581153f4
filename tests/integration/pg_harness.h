/*
 * pg_harness.h - shared pieces of the PostgreSQL integration tests: the
 * environment written by tests/support/pg.sh, loading the driver module,
 * opening sources, a recording result sink and schema builder, and a
 * superuser libpq connection to look at the server from the side.
 */
#ifndef PG_HARNESS_H
#define PG_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "connector_driver.h"
#include "driver_loader.h"

#define H_MAX_COLS 64

/* Filled by h_setup(): the driver and the DSNs. */
struct h_env {
	struct driver_module *mod;
	const struct cn_driver *api;
	const char *dsn;       /* connector_ro: SELECT-only, default_transaction_read_only */
	const char *super_dsn; /* connector_admin: superuser */
	const char *env_dir;   /* the DIR given to pg.sh, for pg.sh restart */
};

extern struct h_env h_env;

/* Group setup/teardown for cmocka: loads the driver; fails (with a message
 * saying what to do) when the environment of pg.sh is missing. */
int h_setup(void **state);
int h_teardown(void **state);

/* Hidden objects for tests: "public.secrets" and "crm.customers.email". */
int h_hidden(void *ctx, const char *schema, const char *table, const char *column);

/* Open a source; options as "key", "value", ... NULL-terminated. */
int h_open(const char *dsn, uint32_t pool, uint32_t timeout_ms, bool hide, void **handle,
	   struct cn_error *err, ...);

/* ---- the recording sink ---- */
struct h_column {
	char *name, *type, *schema, *table, *column;
};

struct h_result {
	struct h_column cols[H_MAX_COLS];
	size_t ncols;
	char **cells; /* row-major; each cell "I:42", "N:1.5", "T:x", "B:true", "J:[]", "X:00ff", "NULL" */
	size_t ncells, capcells;
	size_t nrows;
	size_t max_rows; /* 0: no cap; else row_end says CN_SINK_FULL at that many rows */
	bool ended_early;
};

void h_sink_init(struct h_result *r, struct cn_result_sink *sink, size_t max_rows);
void h_result_free(struct h_result *r);
const char *h_cell(const struct h_result *r, size_t row, size_t col);
/* Column index by name, or -1. */
int h_col(const struct h_result *r, const char *name);

/* Run text with params on handle; fills res (initialised here). */
int h_exec(void *handle, const char *text, const struct cn_value *params, size_t nparams,
	   uint32_t timeout_ms, size_t max_rows, struct h_result *res, struct cn_error *err);
/* The first cell of a one-row result, copied into buf ("" on failure). */
int h_scalar(void *handle, const char *text, char *buf, size_t size);

/* ---- the superuser's view ---- */
PGconn *h_super(void);
/* The first value of sql's first row (malloc'd), or NULL on error. */
char *h_super_value(PGconn *c, const char *sql);
/* Run a shell command; its exit status. */
int h_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t h_now_ms(void);

#endif
