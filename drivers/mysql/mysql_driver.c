/*
 * mysql_driver.c - the MySQL/MariaDB driver module: the ABI table and the
 * source handle's life cycle. The parts: my_guard.c (the query guard),
 * my_conn.c (dsn, connections, pins, KILL QUERY, errors), my_exec.c
 * (running a request), my_types.c (the type mapping), my_introspect.c (the
 * schema), my_names.c (what the guard knows of names).
 *
 * dsn: mysql://user:password@host:port/database?ssl-mode=...&ssl-ca=PATH,
 * or mysql://user@localhost/database?socket=/run/mysqld/mysqld.sock.
 *
 * Source options (the `options:` map of the source in the config):
 *   databases   comma-separated further databases to introspect and query
 *               (the dsn's database is always the first)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "my_guard.h"
#include "my_internal.h"

#define MY_DRIVER_VERSION "0.1.0"

static int options_parse(struct my_handle *h, const struct cn_source_info *src, struct cn_error *err)
{
	for (size_t i = 0; i < src->noptions; i++) {
		const char *k = src->option_keys[i], *v = src->option_values[i];
		if (strcmp(k, "databases") != 0)
			return cn_error_set(err, CN_ECONFIG, "source %s: unknown option '%s' for the mysql "
					    "driver (known: databases)", h->source, k);
		const char *p = v;
		while (*p) {
			size_t n = strcspn(p, ",");
			const char *a = p, *b = p + n;
			p = *b ? b + 1 : b;
			while (a < b && (*a == ' ' || *a == '\t'))
				a++;
			while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
				b--;
			if (a == b)
				continue;
			char **d = realloc(h->databases, (h->ndatabases + 1) * sizeof *d);
			if (!d)
				return cn_error_set(err, CN_ENOMEM, "out of memory");
			h->databases = d;
			if (!(d[h->ndatabases] = strndup(a, (size_t)(b - a))))
				return cn_error_set(err, CN_ENOMEM, "out of memory");
			h->ndatabases++;
		}
	}
	return CN_OK;
}

static void my_close(void *handle)
{
	struct my_handle *h = handle;
	if (!h)
		return;
	for (uint32_t i = 0; h->slots && i < h->pool.n; i++) {
		my_slot_forget_stmts(&h->slots[i]);
		mysql_close(h->slots[i].conn);
	}
	free(h->slots);
	my_killer_close(h);
	slot_pool_destroy(&h->pool);
	my_names_free(&h->names);
	pthread_mutex_destroy(&h->killer_lock);
	pthread_mutex_destroy(&h->names_lock);
	verdicts_destroy(&h->verdicts);
	my_dsn_free(h);
	free(h->source);
	free(h);
}

static int my_open(const struct cn_source_info *src, void **handle, struct cn_error *err)
{
	const char *name = src->name ? src->name : "(unnamed)";
	if (!src->dsn || !*src->dsn)
		return cn_error_set(err, CN_ECONFIG, "source %s: dsn is empty: set "
				    "mysql://user:password@host:port/database", name);
	if (!mysql_thread_safe())
		return cn_error_set(err, CN_ECONFIG, "the MySQL client library was built without "
				    "thread safety");
	struct my_handle *h = calloc(1, sizeof *h);
	if (!h)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	pthread_mutex_init(&h->killer_lock, NULL);
	pthread_mutex_init(&h->names_lock, NULL);
	verdicts_init(&h->verdicts);
	h->timeout_ms = src->timeout_ms;
	h->max_rows = MY_MAX_ROWS_PIN;
	h->host_ctx = src->host_ctx;
	h->is_hidden = src->is_hidden;
	int rc = CN_OK;
	if (!(h->source = strdup(name)) || slot_pool_init(&h->pool, src->pool_size, name) ||
	    !(h->slots = calloc(h->pool.n, sizeof *h->slots))) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = my_dsn_parse(h, src->dsn, err)) || (rc = options_parse(h, src, err)))
		goto fail;
	/* one connection now: a wrong dsn or an unreachable server shows at start-up */
	if ((rc = my_slot_ready(h, 0, err)))
		goto fail;
	*handle = h;
	return CN_OK;
fail:
	my_close(h);
	return rc;
}

static int my_ping(void *handle, struct cn_error *err)
{
	struct my_handle *h = handle;
	uint32_t slot;
	int rc = my_own_checkout(h, &slot, err);
	if (rc)
		return rc;
	if (mysql_ping(h->slots[slot].conn)) {
		char msg[400];
		MYSQL *m = h->slots[slot].conn;
		my_error_text(h, mysql_errno(m), mysql_sqlstate(m), mysql_error(m), msg, sizeof msg);
		my_slot_drop(h, slot);
		rc = cn_error_set(err, CN_EUNAVAILABLE, "%s at %s does not answer: %s",
				  h->mariadb ? "MariaDB" : "MySQL", h->target, msg);
	}
	slot_pool_checkin(&h->pool, slot);
	return rc;
}

static int my_introspect(void *handle, const struct cn_schema_builder *b, struct cn_error *err)
{
	return my_introspect_run(handle, b, err);
}

static int my_check(void *handle, const char *query, struct cn_error *err)
{
	struct my_handle *h = handle;
	struct my_guard_hooks hooks;
	unsigned gen = atomic_load(&h->names_gen);
	if (verdicts_get(&h->verdicts, query, gen, NULL))
		return CN_OK;
	my_names_hooks(h, &hooks);
	int max_param;
	int rc = my_guard_check(query, &hooks, &max_param, err);
	if (rc == CN_OK)
		verdicts_put(&h->verdicts, query, gen, max_param);
	return rc;
}

static int my_execute(void *handle, const struct cn_query *q, const struct cn_result_sink *sink,
		      struct cn_error *err)
{
	return my_exec_query(handle, q, sink, err);
}

static void my_cancel(void *handle)
{
	if (handle)
		my_cancel_all(handle);
}

/* ---- least privilege ---- */

/* Privileges that write, reach files, or administer the server. */
static const char *const risky_privs[] = {
	"ALL PRIVILEGES", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX",
	"CREATE VIEW", "CREATE ROUTINE", "ALTER ROUTINE", "TRIGGER", "EVENT", "LOCK TABLES",
	"FILE", "SUPER", "PROCESS", "RELOAD", "SHUTDOWN", "CREATE USER", "DELETE HISTORY",
	"GRANT OPTION", "CREATE TABLESPACE", "BINLOG ADMIN", "CONNECTION ADMIN",
	"READ_ONLY ADMIN", "REPLICATION MASTER ADMIN", "SYSTEM_VARIABLES_ADMIN",
};

struct audit {
	char found[512];
	size_t n;
	struct my_handle *h;
};

static void audit_add(struct audit *a, const char *priv)
{
	if (strstr(a->found, priv))
		return;
	if (a->n < sizeof a->found)
		a->n += (size_t)snprintf(a->found + a->n, sizeof a->found - a->n, "%s%s",
					 a->n ? ", " : "", priv);
}

/* One line of SHOW GRANTS: "GRANT <privileges> ON <what> TO <who> [WITH
 * GRANT OPTION]". Only the privilege names are read; the line itself
 * (which may hold a password hash) is never kept. */
static int audit_row(void *ctx, char **v, unsigned long *len, unsigned n)
{
	struct audit *a = ctx;
	(void)len;
	if (n < 1 || !v[0] || strncmp(v[0], "GRANT ", 6) != 0)
		return CN_OK;
	if (strstr(v[0], " WITH GRANT OPTION"))
		audit_add(a, "GRANT OPTION");
	const char *on = strstr(v[0], " ON ");
	if (!on)
		return CN_OK; /* a role granted: its privileges appear on lines of their own */
	char privs[1024];
	snprintf(privs, sizeof privs, "%.*s", (int)(on - v[0] - 6), v[0] + 6);
	/* drop column lists: UPDATE (a, b) */
	char *w = privs;
	int depth = 0;
	for (const char *r = privs; *r; r++) {
		if (*r == '(')
			depth++;
		else if (*r == ')')
			depth--;
		else if (depth == 0)
			*w++ = *r;
	}
	*w = '\0';
	char *save = NULL;
	for (char *tok = strtok_r(privs, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ')
			tok++;
		size_t l = strlen(tok);
		while (l && tok[l - 1] == ' ')
			tok[--l] = '\0';
		for (size_t i = 0; i < sizeof risky_privs / sizeof risky_privs[0]; i++)
			if (!strcmp(tok, risky_privs[i]))
				audit_add(a, tok);
	}
	return CN_OK;
}

static int my_audit(void *handle, char *warning, size_t len, struct cn_error *err)
{
	struct my_handle *h = handle;
	struct audit a = {.h = h};
	uint32_t slot;
	warning[0] = '\0';
	int rc = my_own_checkout(h, &slot, err);
	if (rc)
		return rc;
	rc = my_own_query(h, h->slots[slot].conn, "SHOW GRANTS", NULL, 0, audit_row, &a, err);
	slot_pool_checkin(&h->pool, slot);
	if (rc == CN_OK && a.n)
		snprintf(warning, len, "user '%s' can write or administer: %s; the guard and read-only "
			 "statements still hold, but give the connector a SELECT-only user "
			 "(docs/mysql.md)", h->user, a.found);
	return rc;
}

static void my_pool_stats(void *handle, struct cn_pool_stats *out)
{
	struct my_handle *h = handle;
	slot_pool_stats(&h->pool, out);
}

static const struct cn_driver mysql_driver = {
	.abi_version = CN_DRIVER_ABI_VERSION,
	.struct_size = sizeof(struct cn_driver),
	.name = "mysql",
	.version = MY_DRIVER_VERSION,
	.caps = CN_CAP_SQL | CN_CAP_DOLLAR_PARAMS | CN_CAP_CANCEL,
	.open = my_open,
	.close = my_close,
	.ping = my_ping,
	.introspect = my_introspect,
	.check = my_check,
	.execute = my_execute,
	.cancel = my_cancel,
	.audit = my_audit,
	.pool_stats = my_pool_stats,
};

CN_DRIVER_EXPORT(mysql_driver)

/* mysql_init() sets up libmariadb's client state once per process; the
 * library gives it back only in mysql_library_end(), so the module does when
 * it is unloaded (the last source of the driver closed). */
__attribute__((destructor)) static void my_module_unload(void)
{
	mysql_library_end();
}
