/*
 * connector_driver.h - the driver ABI of interactor-connector.
 *
 * This is the only header a driver includes. A driver is a shared object
 * that exports one symbol, cn_driver_entry(), returning a pointer to a
 * static, const struct cn_driver. The core checks abi_version and
 * struct_size before it calls anything else.
 *
 * Ownership: every pointer the core passes in (source info, query, sink,
 * builder) is borrowed for the duration of the call. Strings a driver passes
 * to the sink or builder are copied by the core before the call returns.
 *
 * Threads: open/close/introspect are called from one thread at a time.
 * check/execute/ping may be called concurrently on one handle; the driver
 * serialises what it must (for example with its own connection pool).
 * cancel may be called from any thread while execute runs.
 */
#ifndef CONNECTOR_DRIVER_H
#define CONNECTOR_DRIVER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CN_DRIVER_ABI_VERSION 1u
#define CN_DRIVER_ENTRY_SYMBOL "cn_driver_entry"

/* Status codes: 0 or negative, one table that yields name and message. */
#define CN_STATUS_TABLE(X)                                               \
	X(CN_OK, 0, "ok")                                                    \
	X(CN_ENOMEM, -1, "out of memory")                                    \
	X(CN_EINVAL, -2, "invalid input")                                    \
	X(CN_EREJECTED, -3, "query rejected")                                \
	X(CN_EQUERY, -4, "query execution failed")                           \
	X(CN_ETIMEOUT, -5, "query timed out")                                \
	X(CN_EBUSY, -6, "source busy")                                       \
	X(CN_EUNAVAILABLE, -7, "data source unavailable")                    \
	X(CN_EIO, -8, "input/output error")                                  \
	X(CN_ENOTFOUND, -9, "not found")                                     \
	X(CN_EABI, -10, "driver ABI mismatch")                               \
	X(CN_ECONFIG, -11, "configuration error")                            \
	X(CN_EAUTH, -12, "authentication failed")                            \
	X(CN_ETOOBIG, -13, "too large")                                      \
	X(CN_ECANCELED, -14, "canceled")                                     \
	X(CN_EINTERNAL, -15, "internal error")

enum cn_status {
#define CN_STATUS_ENUM(name, value, msg) name = (value),
	CN_STATUS_TABLE(CN_STATUS_ENUM)
#undef CN_STATUS_ENUM
};

/* What kind of rule refused a query (CN_EREJECTED): a coarse class that
 * operators count in metrics. The message stays what the assistant reads. */
#define CN_REJECT_TABLE(X)                                                                       \
	X(CN_REJECT_OTHER, 0, "other")         /* unclassified */                                 \
	X(CN_REJECT_WRITE, 1, "write")         /* not a read: DML, DDL, locks, INTO, settings */   \
	X(CN_REJECT_STATEMENTS, 2, "statements") /* empty, or more than one statement */            \
	X(CN_REJECT_SYNTAX, 3, "syntax")       /* does not parse, not UTF-8, malformed request */  \
	X(CN_REJECT_HIDDEN, 4, "hidden")       /* a table, column or field the mappings hide */    \
	X(CN_REJECT_DENIED, 5, "denied")       /* a function, catalog, database or feature off the \
						  allow-list */                                     \
	X(CN_REJECT_PARAMETER, 6, "parameter") /* a placeholder out of range or not allowed */     \
	X(CN_REJECT_LIMIT, 7, "limit")         /* too deep, too long, too large */

enum cn_reject {
#define CN_REJECT_ENUM(name, value, label) name = (value),
	CN_REJECT_TABLE(CN_REJECT_ENUM)
#undef CN_REJECT_ENUM
};

/* A human message for the caller; code mirrors the returned status. */
struct cn_error {
	int code;
	char message[512];
	int reject; /* enum cn_reject: read with CN_EREJECTED only (the core passes 0) */
};

/* Fill err (may be NULL) and return code, so a driver can write
 * `return cn_error_set(err, CN_EQUERY, "no such table: %s", t);` */
static inline int cn_error_set(struct cn_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static inline int cn_error_set(struct cn_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		err->code = code;
		vsnprintf(err->message, sizeof err->message, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* cn_error_set for a rejection: also records its class. */
static inline int cn_error_reject(struct cn_error *err, enum cn_reject why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static inline int cn_error_reject(struct cn_error *err, enum cn_reject why, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		err->code = CN_EREJECTED;
		err->reject = (int)why;
		vsnprintf(err->message, sizeof err->message, fmt, ap);
		va_end(ap);
	}
	return CN_EREJECTED;
}

/* A typed value: a query parameter or a result cell. Text is not
 * NUL-terminated unless said; len is always set. */
enum cn_value_kind {
	CN_VAL_NULL,
	CN_VAL_BOOL,
	CN_VAL_INT,     /* u.i */
	CN_VAL_DOUBLE,  /* u.d */
	CN_VAL_NUMERIC, /* u.s: a number exactly as the database prints it */
	CN_VAL_TEXT,    /* u.s: UTF-8 text */
	CN_VAL_JSON,    /* u.s: a JSON document, embedded as JSON */
	CN_VAL_BYTES,   /* u.s: binary, written as base64 */
};

struct cn_value {
	enum cn_value_kind kind;
	union {
		bool b;
		int64_t i;
		double d;
		struct {
			const char *ptr;
			size_t len;
		} s;
	} u;
};

/* One result column. origin_* name the table column the value comes from
 * (NULL for expressions); the core masks hidden columns by origin. */
struct cn_column_info {
	const char *name;
	const char *type;
	const char *origin_schema;
	const char *origin_table;
	const char *origin_column;
};

#define CN_SINK_FULL 1 /* row_end: caps reached, stop reading rows */

/* Where a driver pushes results: every column first, then for each row
 * one cell per column in order followed by row_end. */
struct cn_result_sink {
	void *ctx;
	int (*column)(void *ctx, const struct cn_column_info *col);
	int (*cell)(void *ctx, const struct cn_value *value);
	/* CN_OK to continue, CN_SINK_FULL to stop (not an error), or < 0 */
	int (*row_end)(void *ctx);
};

enum cn_object_kind {
	CN_OBJ_TABLE,
	CN_OBJ_VIEW,
	CN_OBJ_MATVIEW,
	CN_OBJ_COLLECTION,
};

/* How a driver fills the core's schema model. table() returns a table
 * handle >= 0 (or a negative status) to pass to the other calls. Any
 * string may be NULL where it does not apply. */
struct cn_schema_builder {
	void *ctx;
	int (*table)(void *ctx, const char *schema, const char *name, enum cn_object_kind kind,
		     const char *comment, int64_t row_estimate /* -1: unknown */);
	int (*column)(void *ctx, int table, const char *name, const char *type, bool nullable,
		      const char *default_expr, const char *comment,
		      int pk_position /* 0: not in the primary key, else 1-based */);
	int (*foreign_key)(void *ctx, int table, const char *name, size_t ncols,
			   const char *const *columns, const char *ref_schema, const char *ref_table,
			   const char *const *ref_columns);
	int (*index)(void *ctx, int table, const char *name, bool unique, size_t ncols,
		     const char *const *columns);
};

/* A source as the core hands it to open(). */
struct cn_source_info {
	const char *name;
	const char *dsn;      /* after ${ENV} expansion */
	const char *base_dir; /* directory of the config file: resolve relative paths here */
	uint32_t pool_size;   /* connections the driver may keep (>= 1) */
	uint32_t timeout_ms;  /* default statement time budget */
	void *host_ctx;
	/* Non-zero when the semantic mappings hide this table (column NULL) or
	 * column. Drivers deny reading hidden tables and blank hidden columns.
	 * Thread-safe and lock-free: drivers may call it from any thread. */
	int (*is_hidden)(void *host_ctx, const char *schema, const char *table, const char *column);
	/* Driver-specific settings from the source's `options:` map, in file
	 * order (list values joined with ","); noptions may be 0. */
	const char *const *option_keys;
	const char *const *option_values;
	size_t noptions;
};

/* One request: parameters are bound, never spliced into the text. */
struct cn_query {
	const char *text; /* NUL-terminated SQL, or a request document for non-SQL drivers */
	const struct cn_value *params;
	size_t nparams;
	uint32_t timeout_ms; /* time budget for this statement */
	uint32_t max_rows;   /* a hint: the sink enforces the cap */
};

/* A source's connections as pool_stats() reports them. */
struct cn_pool_stats {
	uint32_t size;    /* connections the driver may keep */
	uint32_t open;    /* connections open now */
	uint32_t in_use;  /* checked out by a request */
	uint32_t waiting; /* requests waiting for a free connection */
};

/* Capabilities: callers test bits, never driver names. */
#define CN_CAP_SQL (1u << 0)           /* query text is SQL */
#define CN_CAP_DOLLAR_PARAMS (1u << 1) /* $1..$n placeholders */
#define CN_CAP_CANCEL (1u << 2)        /* cancel() stops running statements */
/* Columns are dotted field paths of documents ("customer.email"): mapping
 * keys read `collection.field.path`, and is_hidden() gets such paths. */
#define CN_CAP_FIELD_PATHS (1u << 3)

struct cn_driver {
	uint32_t abi_version; /* CN_DRIVER_ABI_VERSION */
	uint32_t struct_size; /* sizeof(struct cn_driver) as the driver was built */
	const char *name;     /* must equal the module's name: "sqlite" */
	const char *version;
	uint32_t caps;

	int (*open)(const struct cn_source_info *src, void **handle, struct cn_error *err);
	void (*close)(void *handle); /* NULL handle is a no-op */
	int (*ping)(void *handle, struct cn_error *err);
	int (*introspect)(void *handle, const struct cn_schema_builder *b, struct cn_error *err);
	/* The guard: CN_OK, or CN_EREJECTED with a reason an assistant can act on
	 * (or CN_EBUSY / CN_ETIMEOUT / CN_ECANCELED / CN_EUNAVAILABLE when the
	 * driver needs a connection to judge the query and cannot get one). */
	int (*check)(void *handle, const char *query, struct cn_error *err);
	/* CN_OK (also when the sink said full), CN_EREJECTED, CN_EQUERY, CN_ETIMEOUT,
	 * CN_EBUSY (no connection free in time), CN_EUNAVAILABLE, CN_ECANCELED. */
	int (*execute)(void *handle, const struct cn_query *q, const struct cn_result_sink *sink,
		       struct cn_error *err);
	void (*cancel)(void *handle); /* abort every running statement (shutdown) */
	/* Least privilege (optional, may be NULL): CN_OK with warning[0] == '\0'
	 * when the source's database user cannot write, or CN_OK with a warning
	 * that says what it can write and what to do. check-config prints it and
	 * serve logs it. */
	int (*audit)(void *handle, char *warning, size_t len, struct cn_error *err);
	/* Connections, for metrics (optional, may be NULL). Called from any
	 * thread at any time; must not wait for the database. */
	void (*pool_stats)(void *handle, struct cn_pool_stats *out);

	void *reserved[6]; /* room to grow without breaking the ABI: keep NULL */
};

typedef const struct cn_driver *(*cn_driver_entry_fn)(void);

/* In the driver: CN_DRIVER_EXPORT(my_driver_table) */
#define CN_DRIVER_EXPORT(table)                                                  \
	__attribute__((visibility("default"))) const struct cn_driver *cn_driver_entry(void); \
	__attribute__((visibility("default"))) const struct cn_driver *cn_driver_entry(void) \
	{                                                                        \
		return &(table);                                                 \
	}

#endif
