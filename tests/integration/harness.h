/*
 * harness.h - what the integration tests of every driver share: the
 * loaded driver, opening sources, a recording result sink, and small
 * helpers. Each driver's harness (pg_harness.h, my_harness.h,
 * mongo_harness.h) adds how to find its server and how to look at that
 * server from the side.
 */
#ifndef HARNESS_H
#define HARNESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "connector_driver.h"
#include "driver_loader.h"

#define H_MAX_COLS 64

/* Filled by the driver harness's h_setup(). */
struct h_env {
	struct driver_module *mod;
	const struct cn_driver *api;
	const char *dsn;       /* the SELECT-only user */
	const char *super_dsn; /* a user that may do anything */
	const char *env_dir;   /* the DIR given to the support script, for restarts */
	/* the hidden objects of the driver's tests, used by h_open(..., hide, ...) */
	int (*hidden)(void *ctx, const char *schema, const char *table, const char *column);
	/* The recording sink's row cap. false: row_end says CN_SINK_FULL at the
	 * max_rows-th row. true: as the core's result writer, max_rows rows are
	 * kept, the cells of one more row are dropped and its row_end says
	 * CN_SINK_FULL, so ended_early means the driver had more rows. */
	bool writer_cap;
	/* The driver harness's own clean-up, run by h_teardown before the driver
	 * is unloaded; NULL when there is none. */
	void (*cleanup)(void);
};

extern struct h_env h_env;

/* Load the named driver into h_env; -1 with a message on failure. */
int h_load_driver(const char *name);
int h_teardown(void **state);

/* The named environment variable, or NULL after printing how to set it up
 * (start is the support script's start command). */
const char *h_env_or_complain(const char *name, const char *what, const char *start);

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
	/* row-major; each cell "I:42", "D:1.5", "N:1.10", "T:x", "B:true", "J:[]", "X:00ff" or "NULL" */
	char **cells;
	size_t ncells, capcells;
	size_t nrows;
	size_t max_rows; /* 0: no cap; else row_end says CN_SINK_FULL (see h_env.writer_cap) */
	bool writer_cap; /* h_env.writer_cap when the sink was made */
	bool ended_early;
};

void h_sink_init(struct h_result *r, struct cn_result_sink *sink, size_t max_rows);
/* A sink that keeps nothing and fails the third cell with CN_ETOOBIG;
 * *cells counts the cells it was given (set it to 0 first). */
void h_sink_failing(struct cn_result_sink *sink, int *cells);
void h_result_free(struct h_result *r);
const char *h_cell(const struct h_result *r, size_t row, size_t col);
/* Column index by name, or -1. */
int h_col(const struct h_result *r, const char *name);
/* The whole result as one text, "col=cell|...|col=cell\n" per row, for
 * searching (caller frees). */
char *h_result_text(const struct h_result *r);

/* Run text with params on handle; fills res (initialised here). */
int h_exec(void *handle, const char *text, const struct cn_value *params, size_t nparams,
	   uint32_t timeout_ms, size_t max_rows, struct h_result *res, struct cn_error *err);
/* The first cell of a one-row result, copied into buf ("" on failure). */
int h_scalar(void *handle, const char *text, char *buf, size_t size);

/* ---- a recording schema builder ---- */
struct h_rec_table {
	char *schema, *name, *comment;
	enum cn_object_kind kind;
	int64_t rows;
	char *columns; /* "name type null|notnull default comment pk;" ... */
	char *fks;     /* "name(a,b)->s.t(c,d);" ... */
	char *indexes; /* "name unique(a,b);" ... */
};

struct h_rec_schema {
	struct h_rec_table tables[64];
	int n;
};

/* Introspect into s (zeroed here); the driver's status. */
int h_introspect_record(void *handle, struct h_rec_schema *s, struct cn_error *err);
void h_rec_free(struct h_rec_schema *s);
/* The table, or NULL. */
const struct h_rec_table *h_rec_find(const struct h_rec_schema *s, const char *schema,
				     const char *name);

/* ---- corpora ---- */
/* A line of tests/fixtures/<driver>/<name>: CLASS<TAB>SQL. */
struct h_entry {
	char *cls; /* attacks: the class; allowed: the parameters ("-" or "a|b") */
	char *sql;
	int line;
};

struct h_corpus {
	struct h_entry *items;
	size_t n;
};

/* Load tests/fixtures/<driver>/<name>, skipping blank lines and # comments.
 * With escapes, \n \r \t \\ and \xHH in the SQL stand for those bytes
 * (for corpora that need newlines and control characters); -1 on error. */
int h_corpus_load(const char *driver, const char *name, bool escapes, struct h_corpus *c);
void h_corpus_free(struct h_corpus *c);
/* Up to max text parameters from an allowed.txt class ("-" or "a|b");
 * *buf holds them (free it). */
size_t h_corpus_params(const char *cls, struct cn_value *params, size_t max, char **buf);
/* The number of files matching pattern (each printed to stderr). */
size_t h_files_matching(const char *pattern);
/* Introspect with a builder that only counts tables: the driver learns the
 * schema. The number of tables, or -1 with err filled. */
int h_introspect_quietly(void *handle, struct cn_error *err);

/* Open a source without hidden objects, or fail the test. */
void *h_open_or_fail(uint32_t pool, uint32_t timeout_ms, const char *dsn);

/* ---- a query run on another thread ---- */
struct h_job {
	pthread_t thread;
	void *handle;
	const char *sql;
	uint32_t timeout_ms;
	int rc;
	int64_t elapsed_ms;
	struct cn_error err;
};

void h_job_start(struct h_job *j, void *handle, const char *sql, uint32_t timeout_ms);
void h_job_join(struct h_job *j);

/* Run a shell command; its exit status. */
int h_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t h_now_ms(void);
void h_sleep_ms(int ms);

#endif
