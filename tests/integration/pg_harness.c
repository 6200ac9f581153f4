/*
 * pg_harness.c - see pg_harness.h.
 */
#include "pg_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char START[] = "tests/support/pg.sh start /tmp/cn-pg-env && . /tmp/cn-pg-env/pg.env";

int h_setup(void **state)
{
	(void)state;
	h_env.dsn = h_env_or_complain("CN_TEST_PG_DSN", "PostgreSQL", START);
	h_env.super_dsn = h_env_or_complain("CN_TEST_PG_SUPER_DSN", "PostgreSQL", START);
	h_env.env_dir = h_env_or_complain("CN_TEST_PG_DIR", "PostgreSQL", START);
	h_env.hidden = h_hidden;
	if (!h_env.dsn || !h_env.super_dsn || !h_env.env_dir)
		return -1;
	return h_load_driver("postgres");
}

int h_hidden(void *ctx, const char *schema, const char *table, const char *column)
{
	(void)ctx;
	if (!table)
		return 0;
	if (!strcasecmp(table, "secrets") && (!schema || !strcasecmp(schema, "public")))
		return 1;
	return column && !strcasecmp(table, "customers") && (!schema || !strcasecmp(schema, "crm")) &&
	       !strcasecmp(column, "email");
}

/* ---- the superuser's view ---- */

PGconn *h_super(void)
{
	PGconn *c = PQconnectdb(h_env.super_dsn);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "superuser connection failed: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

char *h_super_value(PGconn *c, const char *sql)
{
	PGresult *res = PQexec(c, sql);
	char *v = NULL;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
		v = strdup(PQgetisnull(res, 0, 0) ? "NULL" : PQgetvalue(res, 0, 0));
	else if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fprintf(stderr, "superuser query failed: %s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
	return v;
}

