/*
 * pg_harness.h - the PostgreSQL integration tests' harness: the environment
 * written by tests/support/pg.sh and a superuser libpq connection to look
 * at the server from the side (the shared part is harness.h).
 */
#ifndef PG_HARNESS_H
#define PG_HARNESS_H

#include <libpq-fe.h>

#include "harness.h"

/* Group setup for cmocka: loads the driver; fails (with a message saying
 * what to do) when the environment of pg.sh is missing. */
int h_setup(void **state);

/* Hidden objects for tests: "public.secrets" and "crm.customers.email". */
int h_hidden(void *ctx, const char *schema, const char *table, const char *column);

/* ---- the superuser's view ---- */
PGconn *h_super(void);
/* The first value of sql's first row (malloc'd), or NULL on error. */
char *h_super_value(PGconn *c, const char *sql);

#endif
