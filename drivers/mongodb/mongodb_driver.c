/*
 * mongodb_driver.c - the MongoDB driver module: the ABI table and the source
 * handle's life cycle. The parts: mongo_json.c (the strict JSON reader),
 * mongo_guard.c (the command guard, which builds the command sent),
 * mongo_conn.c (dsn, pool, errors, hidden fields), mongo_exec.c (running a
 * request), mongo_types.c (BSON as cells and JSON), mongo_introspect.c (the
 * schema, inferred from samples).
 *
 * The request text is one MongoDB read command as JSON (see mongo_guard.h
 * and docs/mongodb.md); the driver has no CN_CAP_SQL, so the core hands it a
 * `query` object printed back to JSON text. Fields are dotted paths
 * (CN_CAP_FIELD_PATHS): mapping keys read `collection.field.path`.
 *
 * Source options (the `options:` map of the source in the config):
 *   sample_size   documents sampled per collection to infer its fields
 *                 (default 1000, 0 to 100000; 0: only validators describe them)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mongo_internal.h"

#define MONGO_DRIVER_VERSION "0.1.0"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static bool initialized;

static void quiet_log(mongoc_log_level_t level, const char *domain, const char *message, void *data)
{
	/* libmongoc's own lines would break the connector's one-JSON-line log;
	 * everything that matters reaches the caller as an error */
	(void)level, (void)domain, (void)message, (void)data;
}

static void driver_init(void)
{
	mongoc_init();
	mongoc_log_set_handler(quiet_log, NULL);
	initialized = true;
}

__attribute__((destructor)) static void driver_fini(void)
{
	if (initialized)
		mongoc_cleanup();
}

static int options_parse(struct mongo_handle *h, const struct cn_source_info *src,
			 struct cn_error *err)
{
	h->sample_size = MONGO_DEFAULT_SAMPLE;
	for (size_t i = 0; i < src->noptions; i++) {
		const char *k = src->option_keys[i], *v = src->option_values[i];
		if (strcmp(k, "sample_size") != 0)
			return cn_error_set(err, CN_ECONFIG, "source %s: unknown option '%s' for the "
					    "mongodb driver (known: sample_size)", h->source, k);
		char *end;
		unsigned long n = strtoul(v, &end, 10);
		if (!*v || *end || v[0] == '-' || n > MONGO_MAX_SAMPLE)
			return cn_error_set(err, CN_ECONFIG, "source %s: options.sample_size must be an "
					    "integer from 0 to %u, not '%s'", h->source, MONGO_MAX_SAMPLE, v);
		h->sample_size = (uint32_t)n;
	}
	return CN_OK;
}

static void mongo_close(void *handle)
{
	struct mongo_handle *h = handle;
	if (!h)
		return;
	mongo_conn_close(h);
	mongo_hidden_free(h);
	slot_pool_destroy(&h->slots);
	pthread_rwlock_destroy(&h->hidden_lock);
	free(h->source);
	free(h);
}

static int mongo_ping(void *handle, struct cn_error *err)
{
	struct mongo_handle *h = handle;
	bson_t cmd = BSON_INITIALIZER, reply;
	BSON_APPEND_INT32(&cmd, "ping", 1);
	int rc = mongo_own_command(h, &cmd, &reply, "no answer from", err);
	bson_destroy(&reply);
	bson_destroy(&cmd);
	return rc;
}

static int mongo_open(const struct cn_source_info *src, void **handle, struct cn_error *err)
{
	const char *name = src->name ? src->name : "(unnamed)";
	if (!src->dsn || !*src->dsn)
		return cn_error_set(err, CN_ECONFIG, "source %s: dsn is empty: set a connection string "
				    "such as mongodb://user:password@host:27017/database", name);
	pthread_once(&init_once, driver_init);
	struct mongo_handle *h = calloc(1, sizeof *h);
	if (!h)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	pthread_rwlock_init(&h->hidden_lock, NULL);
	h->timeout_ms = src->timeout_ms;
	h->host_ctx = src->host_ctx;
	h->is_hidden = src->is_hidden;
	int rc = CN_OK;
	if (!(h->source = strdup(name)) || slot_pool_init(&h->slots, src->pool_size, name)) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = options_parse(h, src, err)) || (rc = mongo_conn_open(h, src->dsn, err)))
		goto fail;
	/* one round trip now: a wrong dsn or an unreachable server shows at start-up */
	if ((rc = mongo_ping(h, err)))
		goto fail;
	*handle = h;
	return CN_OK;
fail:
	mongo_close(h);
	return rc;
}

static int mongo_introspect(void *handle, const struct cn_schema_builder *b, struct cn_error *err)
{
	return mongo_introspect_run(handle, b, err);
}

static int mongo_check(void *handle, const char *query, struct cn_error *err)
{
	struct mg_hooks hooks = {handle, mongo_hook_is_hidden, mongo_hook_hidden_under};
	struct mg_request req;
	int rc = mg_guard_build(query, strlen(query), &hooks, NULL, 0, false, &req, err);
	if (rc == CN_OK)
		mg_request_free(&req);
	return rc;
}

static int mongo_execute(void *handle, const struct cn_query *q, const struct cn_result_sink *sink,
			 struct cn_error *err)
{
	return mongo_exec_query(handle, q, sink, err);
}

static void mongo_cancel(void *handle)
{
	if (handle)
		mongo_pool_cancel_all(handle);
}

/* ---- least privilege ---- */

/* Actions that change data or the database. */
static const char *const write_actions[] = {
	"insert", "update", "remove", "createCollection", "dropCollection", "createIndex",
	"dropIndex", "dropDatabase", "renameCollectionSameDB", "collMod", "convertToCapped",
	"emptycapped", "bypassDocumentValidation", "compact", "reIndex", "createUser", "dropUser",
	"updateUser", "grantRole", "revokeRole", "createRole", "dropRole", "enableProfiler",
	"planCacheWrite", "dropSearchIndex", "createSearchIndexes", "updateSearchIndex",
	"applyOps", "restore", "setUserWriteBlockMode",
};

/* Built-in roles that can write (on their database, or on any). */
static const char *const write_roles[] = {
	"readWrite", "dbOwner", "dbAdmin", "userAdmin", "root", "readWriteAnyDatabase",
	"dbAdminAnyDatabase", "userAdminAnyDatabase", "clusterAdmin", "clusterManager",
	"hostManager", "restore", "__system", "atlasAdmin", "enableSharding",
};

static bool listed(const char *const *list, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(list[i], s))
			return true;
	return false;
}

/* Does a privilege's resource cover the source's database? */
static bool resource_covers(const struct mongo_handle *h, bson_iter_t *res)
{
	bson_iter_t it = *res;
	if (bson_iter_find(&it, "anyResource") && bson_iter_as_bool(&it))
		return true;
	it = *res;
	if (bson_iter_find(&it, "db") && BSON_ITER_HOLDS_UTF8(&it)) {
		const char *db = bson_iter_utf8(&it, NULL);
		return !*db || !strcmp(db, h->db);
	}
	return false;
}

static void audit_text(const struct mongo_handle *h, const bson_t *reply, char *warning, size_t len)
{
	bson_iter_t it, users, roles, privs;
	struct dstr who = {0}, r = {0}, acts = {0};
	if (bson_iter_init(&it, reply) && bson_iter_find_descendant(&it, "authInfo.authenticatedUsers", &users) &&
	    BSON_ITER_HOLDS_ARRAY(&users) && bson_iter_recurse(&users, &users)) {
		while (bson_iter_next(&users)) {
			bson_iter_t u;
			if (BSON_ITER_HOLDS_DOCUMENT(&users) && bson_iter_recurse(&users, &u) &&
			    bson_iter_find(&u, "user") && BSON_ITER_HOLDS_UTF8(&u))
				dstr_printf(&who, "%s'%s'", who.len ? ", " : "", bson_iter_utf8(&u, NULL));
		}
	}
	if (bson_iter_init(&it, reply) &&
	    bson_iter_find_descendant(&it, "authInfo.authenticatedUserRoles", &roles) &&
	    BSON_ITER_HOLDS_ARRAY(&roles) && bson_iter_recurse(&roles, &roles)) {
		while (bson_iter_next(&roles)) {
			bson_iter_t x, d;
			if (!BSON_ITER_HOLDS_DOCUMENT(&roles) || !bson_iter_recurse(&roles, &x))
				continue;
			d = x;
			const char *role = bson_iter_find(&x, "role") && BSON_ITER_HOLDS_UTF8(&x)
						   ? bson_iter_utf8(&x, NULL) : "";
			const char *db = bson_iter_find(&d, "db") && BSON_ITER_HOLDS_UTF8(&d)
						 ? bson_iter_utf8(&d, NULL) : "";
			bool any_db = strstr(role, "AnyDatabase") || !strcmp(role, "root") ||
				      !strcmp(role, "__system") || !strcmp(role, "restore") ||
				      !strncmp(role, "cluster", 7) || !strcmp(role, "hostManager");
			if (listed(write_roles, sizeof write_roles / sizeof write_roles[0], role) &&
			    (any_db || !strcmp(db, h->db)))
				dstr_printf(&r, "%s%s@%s", r.len ? ", " : "", role, db);
		}
	}
	if (bson_iter_init(&it, reply) &&
	    bson_iter_find_descendant(&it, "authInfo.authenticatedUserPrivileges", &privs) &&
	    BSON_ITER_HOLDS_ARRAY(&privs) && bson_iter_recurse(&privs, &privs)) {
		while (bson_iter_next(&privs)) {
			bson_iter_t p, res, actions;
			if (!BSON_ITER_HOLDS_DOCUMENT(&privs) || !bson_iter_recurse(&privs, &p))
				continue;
			bson_iter_t q = p;
			if (!bson_iter_find(&q, "resource") || !BSON_ITER_HOLDS_DOCUMENT(&q) ||
			    !bson_iter_recurse(&q, &res) || !resource_covers(h, &res))
				continue;
			q = p;
			if (!bson_iter_find(&q, "actions") || !BSON_ITER_HOLDS_ARRAY(&q) ||
			    !bson_iter_recurse(&q, &actions))
				continue;
			while (bson_iter_next(&actions)) {
				if (!BSON_ITER_HOLDS_UTF8(&actions))
					continue;
				const char *a = bson_iter_utf8(&actions, NULL);
				if (listed(write_actions, sizeof write_actions / sizeof write_actions[0], a) &&
				    !(acts.data && strstr(acts.data, a)))
					dstr_printf(&acts, "%s%s", acts.len ? ", " : "", a);
			}
		}
	}
	warning[0] = '\0';
	if (!who.len)
		snprintf(warning, len, "no user is authenticated on MongoDB at %s: a server without "
			 "access control lets anyone who reaches it write; enable authorization and give "
			 "the connector a user with only the read role (docs/mongodb.md)", h->target);
	else if (r.len || acts.len)
		snprintf(warning, len, "user %s can write to database '%s':%s%s%s%s; the guard still "
			 "holds, but give the connector a user with only the read role (docs/mongodb.md)",
			 who.data, h->db, r.len ? " roles " : "", r.len ? r.data : "",
			 acts.len ? (r.len ? "; actions " : " actions ") : "", acts.len ? acts.data : "");
	dstr_free(&who);
	dstr_free(&r);
	dstr_free(&acts);
}

static int mongo_audit(void *handle, char *warning, size_t len, struct cn_error *err)
{
	struct mongo_handle *h = handle;
	bson_t cmd = BSON_INITIALIZER, reply;
	warning[0] = '\0';
	BSON_APPEND_INT32(&cmd, "connectionStatus", 1);
	BSON_APPEND_BOOL(&cmd, "showPrivileges", true);
	int rc = mongo_own_command(h, &cmd, &reply, "did not tell the user's privileges:", err);
	if (rc == CN_OK)
		audit_text(h, &reply, warning, len);
	bson_destroy(&reply);
	bson_destroy(&cmd);
	return rc;
}

static void mongo_pool_stats(void *handle, struct cn_pool_stats *out)
{
	struct mongo_handle *h = handle;
	slot_pool_stats(&h->slots, out);
}

static const struct cn_driver mongodb_driver = {
	.abi_version = CN_DRIVER_ABI_VERSION,
	.struct_size = sizeof(struct cn_driver),
	.name = "mongodb",
	.version = MONGO_DRIVER_VERSION,
	.caps = CN_CAP_FIELD_PATHS,
	.open = mongo_open,
	.close = mongo_close,
	.ping = mongo_ping,
	.introspect = mongo_introspect,
	.check = mongo_check,
	.execute = mongo_execute,
	.cancel = mongo_cancel,
	.audit = mongo_audit,
	.pool_stats = mongo_pool_stats,
};

CN_DRIVER_EXPORT(mongodb_driver)
