/*
 * my_internal.h - what the parts of the MySQL/MariaDB driver share: the
 * source handle, its connection slots, the names it learned from the
 * catalog, and small helpers. Not part of the driver ABI.
 *
 * Locking: pool.lock guards the slots' thread ids (read by cancel()); a
 * checked-out slot's connection belongs to the thread that holds it.
 * killer_lock guards the connection that sends KILL QUERY. names_lock
 * guards names; names_gen (atomic) is bumped whenever names change, which
 * also drops the remembered guard verdicts. verdicts has its own lock.
 * Order: names_lock alone; killer_lock alone; pool.lock alone.
 */
#ifndef MY_INTERNAL_H
#define MY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <mysql.h>

#include "connector_driver.h"
#include "../common/dstr.h"
#include "../common/pool.h"
#include "../common/verdicts.h"

#define MY_MAX_TIMEOUT_MS 29000u   /* below the platform's 30 s callback timeout */
#define MY_DEFAULT_TIMEOUT_MS 10000u
#define MY_CHECKOUT_MAX_WAIT_MS 2000u
#define MY_CLIENT_SLACK_MS 1000u   /* the client gives up at timeout + this (read timeout) */
#define MY_KILL_TIMEOUT_S 2u       /* connect/read/write timeout of the KILL connection */
#define MY_INTERNAL_TIMEOUT_MS 60000u /* introspection, audit */
#define MY_FULL_DRAIN_MS 20        /* rows still arriving after the sink is full: read this long */
#define MY_MAX_ROWS_PIN 1000000u

/* The sql_mode the guard reads queries under: no ANSI_QUOTES (" quotes
 * strings), no NO_BACKSLASH_ESCAPES (\ escapes in strings). */
#define MY_SQL_MODE "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"

#define MY_STMT_CACHE 8 /* prepared statements kept per connection */

/* A statement the driver prepared on a connection, kept to run again. */
struct my_cached_stmt {
	char *sql;        /* the text the server received; owned; NULL when empty */
	size_t len;
	uint64_t hash;
	MYSQL_STMT *st;
	uint64_t used;    /* the slot's clock at the last use */
};

struct my_slot {
	MYSQL *conn;              /* NULL until opened; owned */
	unsigned long thread_id;  /* the server's id of conn, for KILL QUERY */
	struct my_cached_stmt stmts[MY_STMT_CACHE];
	uint64_t clock;
};

/* A table of the source's databases as the catalog names it. */
struct my_table {
	char *db, *name;
	bool view;
	char **columns;
	size_t ncolumns;
};

/* What the guard learns from the catalog (see my_names.c). */
struct my_names {
	struct my_table *tables;
	size_t ntables;
	char **other_dbs; /* databases of the server that are not the source's */
	size_t nother;
	/* from the mappings, computed on first use after each change */
	bool hidden_known;
	bool hides_anything;
	bool hides_columns;
	bool *table_hidden;   /* [ntables] */
	bool **column_hidden; /* [ntables][ncolumns]; NULL when no column is hidden */
};

struct my_handle {
	char *source;       /* the source's name, for messages */
	/* connection settings from the dsn; password only for mysql_real_connect */
	char *host, *user, *password, *socket;
	unsigned port;
	char **databases;   /* the dsn's database first, then options.databases */
	size_t ndatabases;
	int ssl_mode;       /* enum my_ssl_mode */
	char *ssl_ca, *ssl_capath, *ssl_cert, *ssl_key;
	char *target;       /* "127.0.0.1:3306 database d user u": no password */

	uint32_t timeout_ms;  /* the source's time budget */
	uint32_t max_rows;    /* sql_select_limit of the session: the source's row cap + 1 */
	bool mariadb;         /* learned at the first connection */
	unsigned long server_version;

	void *host_ctx;
	int (*is_hidden)(void *host_ctx, const char *schema, const char *table, const char *column);

	struct slot_pool pool;
	struct my_slot *slots;

	pthread_mutex_t killer_lock;
	MYSQL *killer;

	pthread_mutex_t names_lock;
	struct my_names names;
	atomic_uint names_gen;

	/* texts the full guard accepted, under names_gen */
	struct verdicts verdicts;
};

enum my_ssl_mode { MY_SSL_DEFAULT, MY_SSL_DISABLED, MY_SSL_REQUIRED, MY_SSL_VERIFY_CA,
		   MY_SSL_VERIFY_IDENTITY };

/* ---- my_conn.c ---- */
int64_t my_now_ms(void);
/* Parse the mysql:// dsn into h. CN_ECONFIG with what is wrong (never the password). */
int my_dsn_parse(struct my_handle *h, const char *dsn, struct cn_error *err);
void my_dsn_free(struct my_handle *h);
/* Make sure the slot has a healthy, pinned connection (reconnects a broken one). */
int my_slot_ready(struct my_handle *h, uint32_t slot, struct cn_error *err);
/* Close the slot's connection (the next use reconnects). */
void my_slot_drop(struct my_handle *h, uint32_t slot);
/* Forget the slot's prepared statements; server tells whether they still
 * exist on the server (COM_STMT_CLOSE is sent) or are gone with a reset. */
void my_slot_forget_stmts(struct my_slot *s);
/* Give the session back its pinned settings after whatever a query did:
 * COM_RESET_CONNECTION, then the pins. The connection is dropped on failure. */
int my_slot_reset(struct my_handle *h, uint32_t slot);
/* KILL QUERY thread_id over the driver's second connection. */
int my_kill_query(struct my_handle *h, unsigned long thread_id);
/* cancel(): KILL QUERY every busy slot's statement. */
void my_cancel_all(struct my_handle *h);
void my_killer_close(struct my_handle *h);
/* The status for a client or server error number. */
int my_errno_status(unsigned int errnum);
/* "error 1054 (42S22): Unknown column ..." on one line, the password scrubbed. */
void my_error_text(struct my_handle *h, unsigned int errnum, const char *sqlstate,
		   const char *msg, char *buf, size_t size);
/* Run one statement of the driver's own with text parameters, every result
 * column read as text; row(ctx, values, lengths) gets NULL for SQL NULL. */
typedef int (*my_row_fn)(void *ctx, char **values, unsigned long *lengths, unsigned ncols);
int my_own_query(struct my_handle *h, MYSQL *conn, const char *sql, const char *const *params,
		 size_t nparams, my_row_fn row, void *ctx, struct cn_error *err);
/* Check out a slot and make it ready, for the driver's own statements. */
int my_own_checkout(struct my_handle *h, uint32_t *slot, struct cn_error *err);

/* ---- my_exec.c / my_introspect.c / my_names.c ---- */
int my_exec_query(struct my_handle *h, const struct cn_query *q, const struct cn_result_sink *sink,
		  struct cn_error *err);
int my_introspect_run(struct my_handle *h, const struct cn_schema_builder *b, struct cn_error *err);
/* Replace the names the guard uses (takes ownership of *n's contents). */
void my_names_set(struct my_handle *h, struct my_names *n);
void my_names_free(struct my_names *n);
/* The guard's hooks over h's names (see my_guard.h). */
struct my_guard_hooks;
void my_names_hooks(struct my_handle *h, struct my_guard_hooks *hooks);

#endif
