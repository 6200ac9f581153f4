/*
 * mongo_harness.h - shared pieces of the MongoDB integration tests: the
 * environment written by tests/support/mongo.sh, loading the driver module,
 * opening sources, a recording result sink and schema builder, and a client
 * of its own (plain libmongoc, not the driver) to look at the test server
 * from the side: collection contents, open cursors, fail points, roles, the
 * server's command log.
 */
#ifndef MONGO_HARNESS_H
#define MONGO_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#include "connector_driver.h"
#include "driver_loader.h"

#define H_MAX_COLS 64

struct h_env {
	struct driver_module *mod;
	const struct cn_driver *api;
	const char *uri;     /* mongodb://127.0.0.1:PORT/connector_test */
	const char *env_dir; /* the DIR given to mongo.sh, for pause/resume */
	const char *log;     /* the server's log: one line per command received */
};

extern struct h_env h_env;

/* cmocka group setup/teardown: loads the driver; fails (saying what to do)
 * when the environment of mongo.sh is missing. */
int h_setup(void **state);
int h_teardown(void **state);

/* Hidden in the tests: collection secrets; customers.email, customers.ssn,
 * customers.address.street (and what lies under them). */
int h_hidden(void *ctx, const char *schema, const char *table, const char *column);

/* Open a source on h_env.uri (uri NULL) or uri; options "key", "value", ...
 * NULL-terminated. */
int h_open(const char *uri, uint32_t pool, uint32_t timeout_ms, bool hide, void **handle,
	   struct cn_error *err, ...);
/* Introspect into a builder that only counts (fills the driver's knowledge
 * of hidden fields); returns the number of tables or a negative status. */
int h_introspect_quiet(void *handle);

/* ---- the recording sink ---- */
struct h_column {
	char *name, *type, *schema, *table, *column;
};

struct h_result {
	struct h_column cols[H_MAX_COLS];
	size_t ncols;
	char **cells; /* row-major: "I:42", "D:1.5", "N:1.10", "T:x", "B:true", "J:{}", "X:00ff", "NULL" */
	size_t ncells, capcells;
	size_t nrows;
	size_t max_rows; /* 0: no cap; else row_end says CN_SINK_FULL past that many rows */
	bool ended_early;
};

void h_result_free(struct h_result *r);
const char *h_cell(const struct h_result *r, size_t row, size_t col);
int h_col(const struct h_result *r, const char *name);
/* The whole result as one text, "col=cell|..." per row, for searching. */
char *h_result_text(const struct h_result *r);

/* Run text with params (q->max_rows = max_rows, the sink caps at max_rows too). */
int h_exec(void *handle, const char *text, const struct cn_value *params, size_t nparams,
	   uint32_t timeout_ms, size_t max_rows, struct h_result *res, struct cn_error *err);

/* ---- the side client ---- */
/* A command given as JSON (Extended JSON) on db; reply may be NULL. */
bool h_command(const char *db, const char *json, bson_t *reply);
/* Every collection of connector_test (documents by _id, indexes, options) as
 * one canonical text: equal texts, equal database. Caller frees. */
char *h_snapshot(void);
/* serverStatus metrics.cursor.open.total, or -1. */
int64_t h_open_cursors(void);
/* Poll h_open_cursors() until it is 0, up to ms. */
bool h_cursors_reach_zero(int ms);
/* Bytes in the server log now, and the log's text from an offset (caller frees). */
long h_log_size(void);
char *h_log_since(long offset);
/* The fail point: failCommand for commands (JSON array text), with data
 * fields (JSON object members text, e.g. "\"blockConnection\": true, ..."). */
bool h_failpoint(const char *mode, const char *commands, const char *data);
bool h_failpoint_off(void);

int h_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t h_now_ms(void);
void h_sleep_ms(int ms);

#endif
