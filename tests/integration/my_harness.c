/*
 * my_harness.c - see my_harness.h.
 */
#include "my_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char START[] =
	"tests/support/mariadb.sh start /tmp/cn-my-env && . /tmp/cn-my-env/mysql.env";

static const char *admin_password, *port, *support;

int h_setup(void **state)
{
	(void)state;
	h_env.dsn = h_env_or_complain("CN_TEST_MYSQL_DSN", "MariaDB", START);
	h_env.super_dsn = h_env_or_complain("CN_TEST_MYSQL_ADMIN_DSN", "MariaDB", START);
	h_env.env_dir = h_env_or_complain("CN_TEST_MYSQL_DIR", "MariaDB", START);
	admin_password = h_env_or_complain("CN_TEST_MYSQL_ADMIN_PASSWORD", "MariaDB", START);
	port = h_env_or_complain("CN_TEST_MYSQL_PORT", "MariaDB", START);
	support = h_env_or_complain("CN_TEST_MYSQL_SUPPORT", "MariaDB", START);
	h_env.hidden = h_hidden;
	if (!h_env.dsn || !h_env.super_dsn || !h_env.env_dir || !admin_password || !port || !support)
		return -1;
	return h_load_driver("mysql");
}

int h_hidden(void *ctx, const char *schema, const char *table, const char *column)
{
	(void)ctx;
	(void)schema;
	if (!table)
		return 0;
	if (!strcasecmp(table, "secrets"))
		return 1;
	return column && !strcasecmp(table, "customers") && !strcasecmp(column, "phone");
}

MYSQL *h_admin(void)
{
	MYSQL *m = mysql_init(NULL);
	mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	if (!mysql_real_connect(m, "127.0.0.1", "connector_admin", admin_password, "connector_test",
				(unsigned)atoi(port), NULL, 0)) {
		fprintf(stderr, "admin connection failed: %s\n", mysql_error(m));
		mysql_close(m);
		return NULL;
	}
	return m;
}

char *h_admin_value(MYSQL *m, const char *sql)
{
	if (mysql_query(m, sql)) {
		fprintf(stderr, "admin query failed: %s: %s\n", sql, mysql_error(m));
		return NULL;
	}
	MYSQL_RES *res = mysql_store_result(m);
	char *v = NULL;
	MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
	if (row)
		v = strdup(row[0] ? row[0] : "NULL");
	mysql_free_result(res);
	return v;
}

int h_admin_exec(MYSQL *m, const char *sql)
{
	if (mysql_query(m, sql)) {
		fprintf(stderr, "admin statement failed: %s: %s\n", sql, mysql_error(m));
		return -1;
	}
	MYSQL_RES *res = mysql_store_result(m);
	mysql_free_result(res);
	return 0;
}

int h_server(const char *cmd)
{
	return h_system("%s %s %s >/dev/null", support, cmd, h_env.env_dir);
}
