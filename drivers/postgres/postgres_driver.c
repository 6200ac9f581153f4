/*
 * postgres_driver.c - the PostgreSQL driver module: the ABI table and the
 * source handle's life cycle. The parts: pg_guard.c (the query guard),
 * pg_conn.c (settings, pool, errors), pg_exec.c (running a request),
 * pg_catalog.c (names of result columns), pg_introspect.c (the schema),
 * pg_types.c (type names and cell conversion).
 *
 * Source options (the `options:` map of the source in the config):
 *   schemas          comma-separated schema patterns to introspect (* is a
 *                    wildcard); default: every non-system schema
 *   exclude_schemas  comma-separated patterns to leave out
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_guard.h"
#include "pg_internal.h"

#define PG_DRIVER_VERSION "0.1.0"

static const char *const known_options[] = {"schemas", "exclude_schemas"};

/* "a*, b" -> {"a%","b"}: a text[] literal of LIKE patterns. */
static int patterns_literal(const char *list, char **out)
{
	struct dstr s = {0};
	int rc = dstr_puts(&s, "{");
	bool first = true;
	const char *p = list ? list : "";
	while (rc == CN_OK && *p) {
		size_t n = strcspn(p, ",");
		const char *a = p, *b = p + n;
		p = *b ? b + 1 : b;
		while (a < b && (*a == ' ' || *a == '\t'))
			a++;
		while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
			b--;
		if (a == b)
			continue;
		rc = dstr_puts(&s, first ? "\"" : ",\"");
		first = false;
		for (const char *c = a; rc == CN_OK && c < b; c++) {
			if (*c == '*')
				rc = dstr_puts(&s, "%");
			else if (*c == '%' || *c == '_')
				rc = dstr_printf(&s, "\\\\%c", *c); /* LIKE escape, array-escaped */
			else if (*c == '\\')
				rc = dstr_puts(&s, "\\\\\\\\");
			else if (*c == '"')
				rc = dstr_puts(&s, "\\\"");
			else
				rc = dstr_append(&s, c, 1);
		}
		if (rc == CN_OK)
			rc = dstr_puts(&s, "\"");
	}
	if (rc == CN_OK)
		rc = dstr_puts(&s, "}");
	if (rc) {
		dstr_free(&s);
		return rc;
	}
	*out = s.data;
	return CN_OK;
}

static int options_parse(struct pg_handle *h, const struct cn_source_info *src,
			 struct cn_error *err)
{
	const char *include = NULL, *exclude = NULL;
	for (size_t i = 0; i < src->noptions; i++) {
		const char *k = src->option_keys[i], *v = src->option_values[i];
		bool known = false;
		for (size_t j = 0; j < sizeof known_options / sizeof known_options[0]; j++)
			known = known || strcmp(k, known_options[j]) == 0;
		if (!known)
			return cn_error_set(err, CN_ECONFIG, "source %s: unknown option '%s' for the "
					    "postgres driver (known: schemas, exclude_schemas)",
					    h->source, k);
		if (!strcmp(k, "schemas"))
			include = v;
		else
			exclude = v;
	}
	if (patterns_literal(include, &h->include_schemas) ||
	    patterns_literal(exclude, &h->exclude_schemas))
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	return CN_OK;
}

static void pg_close(void *handle)
{
	struct pg_handle *h = handle;
	if (!h)
		return;
	for (uint32_t i = 0; h->slots && i < h->pool.n; i++) {
		PQfreeCancel(h->slots[i].cancel);
		PQfinish(h->slots[i].conn);
	}
	free(h->slots);
	pg_cat_close(h);
	slot_pool_destroy(&h->pool);
	pthread_mutex_destroy(&h->cache_lock);
	pthread_mutex_destroy(&h->meta_lock);
	verdicts_destroy(&h->verdicts);
	pg_conn_settings_free(h);
	free(h->include_schemas);
	free(h->exclude_schemas);
	free(h->source);
	free(h);
}

static void handle_init_locks(struct pg_handle *h)
{
	pthread_mutex_init(&h->cache_lock, NULL);
	pthread_mutex_init(&h->meta_lock, NULL);
	verdicts_init(&h->verdicts);
}

static int pg_open(const struct cn_source_info *src, void **handle, struct cn_error *err)
{
	const char *name = src->name ? src->name : "(unnamed)";
	if (!src->dsn || !*src->dsn)
		return cn_error_set(err, CN_ECONFIG, "source %s: dsn is empty: set a libpq "
				    "connection string or a postgresql:// URI", name);
	if (!PQisthreadsafe())
		return cn_error_set(err, CN_ECONFIG, "libpq was built without thread safety");
	struct pg_handle *h = calloc(1, sizeof *h);
	if (!h)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	handle_init_locks(h);
	h->timeout_ms = src->timeout_ms;
	h->host_ctx = src->host_ctx;
	h->is_hidden = src->is_hidden;
	int rc = CN_OK;
	if (!(h->source = strdup(name)) || slot_pool_init(&h->pool, src->pool_size, name) ||
	    !(h->slots = calloc(h->pool.n, sizeof *h->slots))) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = options_parse(h, src, err)) || (rc = pg_conn_settings_build(h, src->dsn, err)))
		goto fail;
	/* one connection now: a wrong dsn or an unreachable server shows at start-up */
	if ((rc = pg_slot_ready(h, &h->slots[0], err)))
		goto fail;
	*handle = h;
	return CN_OK;
fail:
	pg_close(h);
	return rc;
}

/* Run one parameterless query of the driver's own on a pool connection and
 * hand its single result to take(); what (e.g. "does not answer") opens the
 * error message. A connection that fails is dropped. */
static int pg_own_query(struct pg_handle *h, const char *sql,
			void (*take)(const PGresult *res, void *ctx), void *ctx, const char *what,
			struct cn_error *err)
{
	struct pg_slot *slot;
	uint32_t timeout = h->timeout_ms ? h->timeout_ms : PG_DEFAULT_TIMEOUT_MS;
	int rc = pg_pool_checkout(h, timeout < PG_CHECKOUT_MAX_WAIT_MS ? timeout
								    : PG_CHECKOUT_MAX_WAIT_MS,
				  pg_pool_gen(h), &slot, err);
	if (rc)
		return rc;
	rc = pg_slot_ready(h, slot, err);
	if (rc == CN_OK) {
		PGconn *c = slot->conn;
		int64_t deadline = pg_now_ms() + timeout;
		bool ok = PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, 0);
		PGresult *res = NULL;
		int results = 0;
		while (ok && (rc = pg_wait_result(c, deadline, &res)) == CN_OK && res) {
			ok = PQresultStatus(res) == PGRES_TUPLES_OK && results++ == 0;
			if (ok && take)
				take(res, ctx);
			PQclear(res);
		}
		if (!ok || rc || results != 1) {
			char msg[400];
			pg_conn_message(h, c, msg, sizeof msg);
			pg_slot_drop(h, slot);
			rc = cn_error_set(err, rc == CN_ETIMEOUT ? CN_ETIMEOUT : CN_EUNAVAILABLE,
					  "PostgreSQL at %s %s: %s", h->target, what, msg);
		}
	}
	pg_pool_checkin(h, slot);
	return rc;
}

static int pg_ping(void *handle, struct cn_error *err)
{
	return pg_own_query(handle, "SELECT 1", NULL, NULL, "does not answer", err);
}

static int pg_introspect(void *handle, const struct cn_schema_builder *b, struct cn_error *err)
{
	return pg_introspect_run(handle, b, err);
}

static int hook_is_hidden(void *ctx, const char *schema, const char *table, const char *column)
{
	struct pg_handle *h = ctx;
	return h->is_hidden ? h->is_hidden(h->host_ctx, schema, table, column) : 0;
}

static int pg_check(void *handle, const char *query, struct cn_error *err)
{
	struct pg_guard_hooks hooks = {
		.ctx = handle,
		.is_hidden = hook_is_hidden,
		.has_hidden_columns = pg_cat_has_hidden_columns,
	};
	struct pg_handle *h = handle;
	int max_param;
	unsigned gen = atomic_load(&h->rels_gen);
	if (verdicts_get(&h->verdicts, query, gen, NULL))
		return CN_OK;
	int rc = pg_guard_check(query, &hooks, &max_param, err);
	if (rc == CN_OK)
		verdicts_put(&h->verdicts, query, gen, max_param);
	return rc;
}

static int pg_execute(void *handle, const struct cn_query *q, const struct cn_result_sink *sink,
		      struct cn_error *err)
{
	return pg_exec_query(handle, q, sink, err);
}

/* What the source's role could write if the guard and the read-only
 * transaction both failed: superuser, write grants, CREATE rights. */
static const char AUDIT_SQL[] =
	"SELECT current_user, r.rolsuper,"
	" (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
	"   WHERE c.relkind IN ('r', 'p', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
	"   AND n.nspname NOT LIKE 'pg\\_%'"
	"   AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')),"
	" (SELECT string_agg(t, ', ') FROM (SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS t"
	"   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
	"   WHERE c.relkind IN ('r', 'p', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
	"   AND n.nspname NOT LIKE 'pg\\_%'"
	"   AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')"
	"   ORDER BY 1 LIMIT 3) AS w),"
	" (SELECT count(*) FROM pg_namespace n WHERE n.nspname NOT LIKE 'pg\\_%'"
	"   AND n.nspname <> 'information_schema' AND has_schema_privilege(n.oid, 'CREATE')),"
	" has_database_privilege(current_database(), 'CREATE')"
	" FROM pg_roles r WHERE r.rolname = current_user";

struct audit_out {
	char *warning;
	size_t len;
};

static void audit_text(const PGresult *res, void *ctx)
{
	struct audit_out *out = ctx;
	char *warning = out->warning;
	size_t len = out->len;
	if (PQntuples(res) != 1 || PQnfields(res) != 6) {
		snprintf(warning, len, "cannot tell what the role may write: the privilege query "
			 "returned %d rows", PQntuples(res));
		return;
	}
	const char *user = PQgetvalue(res, 0, 0);
	bool super = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	long tables = strtol(PQgetvalue(res, 0, 2), NULL, 10);
	const char *examples = PQgetvalue(res, 0, 3);
	long schemas = strtol(PQgetvalue(res, 0, 4), NULL, 10);
	bool db_create = strcmp(PQgetvalue(res, 0, 5), "t") == 0;
	warning[0] = '\0';
	if (!super && tables == 0 && schemas == 0 && !db_create)
		return;
	size_t n = (size_t)snprintf(warning, len, "role '%s' can write:", user);
	if (super && n < len)
		n += (size_t)snprintf(warning + n, len - n, " it is a superuser;");
	if (tables && n < len)
		n += (size_t)snprintf(warning + n, len - n, " INSERT/UPDATE/DELETE/TRUNCATE on %ld table%s (%s%s);",
				      tables, tables == 1 ? "" : "s", examples, tables > 3 ? ", ..." : "");
	if (schemas && n < len)
		n += (size_t)snprintf(warning + n, len - n, " CREATE in %ld schema%s;", schemas,
				      schemas == 1 ? "" : "s");
	if (db_create && n < len)
		n += (size_t)snprintf(warning + n, len - n, " CREATE on the database;");
	if (n < len)
		snprintf(warning + n, len - n,
			 " the guard and read-only transactions still hold, but give the connector a "
			 "SELECT-only role (docs/postgres.md)");
}

static int pg_audit(void *handle, char *warning, size_t len, struct cn_error *err)
{
	struct audit_out out = {warning, len};
	warning[0] = '\0';
	return pg_own_query(handle, AUDIT_SQL, audit_text, &out,
			    "did not tell the role's privileges", err);
}

static void pg_cancel(void *handle)
{
	if (handle)
		pg_pool_cancel_all(handle);
}

static void pg_pool_stats(void *handle, struct cn_pool_stats *out)
{
	struct pg_handle *h = handle;
	slot_pool_stats(&h->pool, out);
}

static const struct cn_driver postgres_driver = {
	.abi_version = CN_DRIVER_ABI_VERSION,
	.struct_size = sizeof(struct cn_driver),
	.name = "postgres",
	.version = PG_DRIVER_VERSION,
	.caps = CN_CAP_SQL | CN_CAP_DOLLAR_PARAMS | CN_CAP_CANCEL,
	.open = pg_open,
	.close = pg_close,
	.ping = pg_ping,
	.introspect = pg_introspect,
	.check = pg_check,
	.execute = pg_execute,
	.cancel = pg_cancel,
	.audit = pg_audit,
	.pool_stats = pg_pool_stats,
};

CN_DRIVER_EXPORT(postgres_driver)
