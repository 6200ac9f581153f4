/*
 * pg_internal.h - what the parts of the PostgreSQL driver share: the source
 * handle, its connection pool, its catalog caches (type and relation names by
 * OID) and small helpers. Not part of the driver ABI.
 *
 * Locking: pool.lock (drivers/common/pool.h) guards which slots are busy,
 * their cancel objects and the cancel generation; a checked-out slot's
 * connection belongs to the thread that
 * holds it. cache_lock guards types and rels. meta_lock guards meta, the
 * connection used for catalog look-ups while a pool connection is busy
 * streaming a result. Order: meta_lock before cache_lock; pool.lock alone.
 * verdicts has its own lock, taken alone; rels_gen is atomic.
 */
#ifndef PG_INTERNAL_H
#define PG_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "connector_driver.h"
#include "pg_types.h"
#include "../common/pg_conninfo.h"
#include "../common/pool.h"
#include "../common/verdicts.h"

#define PG_MAX_TIMEOUT_MS 29000u   /* statement_timeout is always below 30 s */
#define PG_DEFAULT_TIMEOUT_MS 10000u
#define PG_CHECKOUT_MAX_WAIT_MS 2000u
#define PG_CANCEL_GRACE_MS 2000    /* after a cancel, how long to wait for the server */
#define PG_CLIENT_SLACK_MS 1000    /* client deadline = timeout + this */
#define PG_INTERNAL_TIMEOUT_MS 60000u /* introspection and catalog look-ups */

struct pg_slot {
	PGconn *conn;     /* NULL until opened; owned */
	PGcancel *cancel; /* for conn; owned; read by cancel() under pool.lock */
};

/* A relation whose origin result columns name. */
struct pg_rel {
	uint32_t oid;
	char *schema, *name;
	int natts;
	char **attnames; /* [attnum - 1]; NULL for dropped columns */
};

/* A type the built-in table does not know. */
struct pg_type_entry {
	uint32_t oid;
	char *name; /* format_type(oid, NULL) */
	char typtype, category, delim;
	uint32_t base; /* domains: typbasetype */
	uint32_t elem; /* arrays: typelem */
};

struct pg_handle {
	char *source;         /* the source's name, for messages */
	struct pg_conninfo conninfo; /* for PQconnectStartParams; its password is scrubbed from messages */
	char *target;         /* "host 127.0.0.1 port 5432 database x user y": no password; owned */
	uint32_t timeout_ms;
	uint32_t session_timeout_ms; /* statement_timeout every session starts with */
	void *host_ctx;
	int (*is_hidden)(void *host_ctx, const char *schema, const char *table, const char *column);
	char *include_schemas; /* text[] literal of LIKE patterns; "{}" for every schema */
	char *exclude_schemas;

	struct slot_pool pool;
	struct pg_slot *slots; /* [pool.n] */

	pthread_mutex_t cache_lock;
	struct pg_oid_map types; /* oid -> struct pg_type_entry */
	struct pg_oid_map rels;  /* oid -> struct pg_rel */
	atomic_uint rels_gen;    /* bumped by every change to rels */

	/* texts the full guard accepted, under rels_gen: what the guard knows of
	 * hidden columns comes from rels */
	struct verdicts verdicts;

	pthread_mutex_t meta_lock;
	PGconn *meta;
};

/* One result column, described for the sink (strings owned). */
struct pg_col {
	char *name, *type, *schema, *table, *column;
	enum pg_kind kind, elem_kind;
	char delim;
};

/* ---- pg_conn.c ---- */
int64_t pg_now_ms(void);
/* Parse dsn, add the settings every session needs. */
int pg_conn_settings_build(struct pg_handle *h, const char *dsn, struct cn_error *err);
void pg_conn_settings_free(struct pg_handle *h);
/* A new connection, checked (UTF8, standard strings, ISO dates); CN_EUNAVAILABLE
 * or CN_EAUTH with a message naming the target (never the password). */
int pg_connect(struct pg_handle *h, PGconn **out, struct cn_error *err);
/* Wait up to wait_ms for a free slot: CN_EBUSY when none frees up,
 * CN_ECANCELED when cancel() ran meanwhile (gen is the caller's view). */
int pg_pool_checkout(struct pg_handle *h, uint32_t wait_ms, unsigned gen, struct pg_slot **out,
		     struct cn_error *err);
void pg_pool_checkin(struct pg_handle *h, struct pg_slot *slot);
unsigned pg_pool_gen(struct pg_handle *h);
/* Make sure the slot has a healthy connection (reconnects a broken one). */
int pg_slot_ready(struct pg_handle *h, struct pg_slot *slot, struct cn_error *err);
/* Close the slot's connection (the next use reconnects). */
void pg_slot_drop(struct pg_handle *h, struct pg_slot *slot);
/* PQcancel the slot's running statement (the owner thread calls this). */
void pg_slot_cancel(struct pg_handle *h, struct pg_slot *slot);
/* cancel(): every checked-out connection. */
void pg_pool_cancel_all(struct pg_handle *h);
/* Wait for the next result until deadline (monotonic ms): CN_OK with *out
 * (NULL between statements), CN_ETIMEOUT, or CN_EUNAVAILABLE when the
 * connection failed. */
int pg_wait_result(PGconn *c, int64_t deadline, PGresult **out);
/* The server's error as one line: message, detail, hint, position. */
void pg_error_text(struct pg_handle *h, const PGresult *res, char *buf, size_t size);
/* libpq's connection message as one line, password scrubbed. */
void pg_conn_message(struct pg_handle *h, PGconn *c, char *buf, size_t size);
/* Status for a SQLSTATE of a failed query. */
int pg_sqlstate_status(const char *sqlstate);

/* ---- pg_catalog.c ---- */
/* Describe the result's columns into cols (ncols = PQnfields), looking up
 * unknown types and relations on the meta connection. */
int pg_cat_describe(struct pg_handle *h, const PGresult *res, struct pg_col *cols,
		    struct cn_error *err);
void pg_cols_free(struct pg_col *cols, int ncols);
/* Replace or add a relation (takes ownership of rel). */
int pg_cat_put_rel(struct pg_handle *h, struct pg_rel *rel);
void pg_rel_free(void *rel);
void pg_type_entry_free(void *t);
/* The guard's hook: does any cached table of that name have hidden columns? */
int pg_cat_has_hidden_columns(void *handle, const char *schema, const char *table);
void pg_cat_close(struct pg_handle *h);

/* ---- pg_exec.c / pg_introspect.c ---- */
int pg_exec_query(struct pg_handle *h, const struct cn_query *q, const struct cn_result_sink *sink,
		  struct cn_error *err);
int pg_introspect_run(struct pg_handle *h, const struct cn_schema_builder *b, struct cn_error *err);

#endif
