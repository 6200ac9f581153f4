/*
 * pg_conninfo.h - libpq connection settings built from a dsn: the keyword
 * and value arrays PQconnectdbParams takes, the password to scrub from
 * messages, and the "host H port P database D user U" string that names the
 * server in messages. Shared by the PostgreSQL driver (drivers/postgres/) and
 * the PostgreSQL state store (src/state_pg.c); compiled into both.
 *
 * Only the mechanics live here. Which defaults, which session options and
 * what a bad dsn is called in an error stay with each caller.
 *
 * A struct pg_conninfo starts zeroed ({0}); pg_conninfo_free returns it to
 * that state and is a no-op on a zeroed one.
 */
#ifndef CN_DRIVER_PG_CONNINFO_H
#define CN_DRIVER_PG_CONNINFO_H

#include <stddef.h>

#include "connector_driver.h"

/* What a good dsn looks like, for the end of a caller's bad-dsn message. */
#define PG_CONNINFO_DSN_HINT                                                                                 \
	"write a URI such as postgresql://user:password@host:5432/dbname, or key=value pairs"

struct pg_conninfo {
	char **keys, **vals; /* NULL-terminated, for PQconnectdbParams; owned */
	size_t n, cap;	     /* keywords set; slots allocated (the NULL included) */
	char *password;	     /* the password keyword's value, to scrub from messages; owned */
};

/* Parses dsn (a URI or key=value pairs) into ci, which must be zeroed: every
 * keyword the dsn gives a non-empty value, "options" included as written.
 * libpq's parse error is never shown (it may quote the dsn, password and
 * all): a dsn libpq refuses gives CN_ECONFIG with bad_dsn as the message, as
 * is. CN_ENOMEM with "out of memory". On failure ci holds what was set so
 * far: pg_conninfo_free it. */
int pg_conninfo_parse(struct pg_conninfo *ci, const char *dsn, const char *bad_dsn, struct cn_error *err)
    __attribute__((warn_unused_result));

/* The value of key, or NULL when unset. Owned by ci. */
const char *pg_conninfo_get(const struct pg_conninfo *ci, const char *key);

/* Sets key to val (copies both), replacing a value already set; setting
 * "password" also replaces ci->password. CN_OK or CN_ENOMEM. */
int pg_conninfo_set(struct pg_conninfo *ci, const char *key, const char *val)
    __attribute__((warn_unused_result));

/* Sets each {key, value} of defaults[0..n) whose key is still unset: the
 * dsn's own values win. CN_OK or CN_ENOMEM. */
int pg_conninfo_defaults(struct pg_conninfo *ci, const char *const (*defaults)[2], size_t n)
    __attribute__((warn_unused_result));

/* Appends options (command-line options for the server, "-c name=value
 * ...") after the dsn's own, a space between, so that ours win where both
 * set the same name. CN_OK or CN_ENOMEM. */
int pg_conninfo_options_add(struct pg_conninfo *ci, const char *options) __attribute__((warn_unused_result));

/* "host H port P database D user U" for messages, never the password: host
 * or hostaddr or "(local socket)", port or 5432, dbname or user or
 * "(default)", " user U" only when a user is set. A malloc'd string the
 * caller frees, or NULL when out of memory. */
char *pg_conninfo_target(const struct pg_conninfo *ci);

/* Zeroes the password (ci->password and the password value), frees all and
 * leaves ci zeroed. */
void pg_conninfo_free(struct pg_conninfo *ci);

#endif
