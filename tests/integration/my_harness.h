/*
 * my_harness.h - the MySQL/MariaDB integration tests' harness: the
 * environment written by tests/support/mariadb.sh and a connection of the
 * ALL PRIVILEGES user to look at the server from the side (the shared part
 * is harness.h).
 */
#ifndef MY_HARNESS_H
#define MY_HARNESS_H

#include <mysql.h>

#include "harness.h"

/* Group setup for cmocka: loads the driver; fails (with a message saying
 * what to do) when the environment of mariadb.sh is missing. */
int h_setup(void **state);

/* Hidden objects for tests: the table "secrets" and "customers.phone". */
int h_hidden(void *ctx, const char *schema, const char *table, const char *column);

/* ---- the administrator's view ---- */
MYSQL *h_admin(void);
/* The first value of sql's first row (malloc'd; "NULL" for NULL), or NULL on error. */
char *h_admin_value(MYSQL *m, const char *sql);
/* Run sql; 0 on success. */
int h_admin_exec(MYSQL *m, const char *sql);
/* The support script: mariadb.sh <cmd> DIR; its exit status. */
int h_server(const char *cmd);

#endif
