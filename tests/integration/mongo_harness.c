/*
 * mongo_harness.c - see mongo_harness.h.
 */
#include "mongo_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char START[] =
	"tests/support/mongo.sh start /tmp/cn-mongo-env && . /tmp/cn-mongo-env/mongo.env";

static const char *log_path; /* the server's log: one line per command received */
static mongoc_client_t *side;

static void side_close(void)
{
	mongoc_client_destroy(side);
	side = NULL;
	mongoc_cleanup();
}

int h_setup(void **state)
{
	(void)state;
	h_env.dsn = h_env_or_complain("CN_TEST_MONGO_URI", "MongoDB test", START);
	h_env.super_dsn = h_env.dsn;
	h_env.env_dir = h_env_or_complain("CN_TEST_MONGO_DIR", "MongoDB test", START);
	log_path = h_env_or_complain("CN_TEST_MONGO_LOG", "MongoDB test", START);
	h_env.hidden = h_hidden;
	h_env.writer_cap = true;
	if (!h_env.dsn || !h_env.env_dir || !log_path || h_load_driver("mongodb"))
		return -1;
	/* the driver module has run mongoc_init() for this process by now only when a
	 * source was opened; the side client needs it at once */
	mongoc_init();
	mongoc_log_set_handler(NULL, NULL);
	h_env.cleanup = side_close;
	side = mongoc_client_new(h_env.super_dsn);
	if (!side) {
		fprintf(stderr, "cannot make a client for %s\n", h_env.super_dsn);
		return -1;
	}
	mongoc_client_set_error_api(side, MONGOC_ERROR_API_VERSION_2);
	return 0;
}

int h_hidden(void *ctx, const char *schema, const char *table, const char *column)
{
	(void)ctx;
	(void)schema;
	if (!table)
		return 0;
	if (!strcasecmp(table, "secrets"))
		return 1;
	if (!column || strcasecmp(table, "customers"))
		return 0;
	static const char *const h[] = {"email", "ssn", "address.street"};
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(h[i]);
		if (!strncasecmp(column, h[i], n) && (column[n] == '\0' || column[n] == '.'))
			return 1;
	}
	return 0;
}

/* ---- the side client ---- */

bool h_command(const char *db, const char *json, bson_t *reply)
{
	bson_error_t e;
	bson_t *cmd = bson_new_from_json((const uint8_t *)json, -1, &e);
	bson_t local;
	if (!cmd) {
		fprintf(stderr, "h_command: bad JSON %s: %s\n", json, e.message);
		if (reply)
			bson_init(reply);
		return false;
	}
	bool ok = mongoc_client_command_simple(side, db, cmd, NULL, reply ? reply : &local, &e);
	if (!ok)
		fprintf(stderr, "h_command %s: %s\n", json, e.message);
	if (!reply)
		bson_destroy(&local);
	bson_destroy(cmd);
	return ok;
}

static void append(char **buf, size_t *len, const char *s)
{
	size_t n = strlen(s);
	*buf = realloc(*buf, *len + n + 2);
	memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[(*len)++] = '\n';
	(*buf)[*len] = '\0';
}

char *h_snapshot(void)
{
	char *out = NULL;
	size_t len = 0;
	bson_error_t e;
	mongoc_database_t *db = mongoc_client_get_database(side, "connector_test");
	char **names = mongoc_database_get_collection_names_with_opts(db, NULL, &e);
	if (!names) {
		mongoc_database_destroy(db);
		return strdup("(cannot list collections)");
	}
	/* names in a stable order */
	size_t n = 0;
	while (names[n])
		n++;
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
			char *t = names[j];
			names[j] = names[j - 1];
			names[j - 1] = t;
		}
	for (size_t i = 0; i < n; i++) {
		append(&out, &len, names[i]);
		mongoc_collection_t *c = mongoc_database_get_collection(db, names[i]);
		bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
		bson_t filter = BSON_INITIALIZER;
		mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &filter, opts, NULL);
		const bson_t *doc;
		while (mongoc_cursor_next(cur, &doc)) {
			char *j = bson_as_canonical_extended_json(doc, NULL);
			append(&out, &len, j);
			bson_free(j);
		}
		if (mongoc_cursor_error(cur, &e))
			append(&out, &len, e.message);
		mongoc_cursor_destroy(cur);
		cur = mongoc_collection_find_indexes_with_opts(c, NULL);
		while (mongoc_cursor_next(cur, &doc)) {
			char *j = bson_as_canonical_extended_json(doc, NULL);
			append(&out, &len, j);
			bson_free(j);
		}
		mongoc_cursor_destroy(cur);
		bson_destroy(opts);
		bson_destroy(&filter);
		mongoc_collection_destroy(c);
	}
	bson_strfreev(names);
	mongoc_database_destroy(db);
	return out ? out : strdup("");
}

int64_t h_open_cursors(void)
{
	bson_t reply;
	bson_iter_t it;
	int64_t n = -1;
	if (h_command("admin", "{\"serverStatus\": 1}", &reply) && bson_iter_init(&it, &reply) &&
	    bson_iter_find_descendant(&it, "metrics.cursor.open.total", &it))
		n = bson_iter_as_int64(&it);
	bson_destroy(&reply);
	return n;
}

bool h_cursors_reach_zero(int ms)
{
	for (int waited = 0; waited <= ms; waited += 50) {
		if (h_open_cursors() == 0)
			return true;
		h_sleep_ms(50);
	}
	return false;
}

long h_log_size(void)
{
	FILE *f = fopen(log_path, "r");
	if (!f)
		return 0;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fclose(f);
	return n;
}

char *h_log_since(long offset)
{
	FILE *f = fopen(log_path, "r");
	if (!f)
		return strdup("");
	fseek(f, 0, SEEK_END);
	long end = ftell(f);
	if (offset > end)
		offset = 0; /* the log was replaced (resume) */
	fseek(f, offset, SEEK_SET);
	char *buf = calloc(1, (size_t)(end - offset) + 1);
	size_t n = buf ? fread(buf, 1, (size_t)(end - offset), f) : 0;
	if (buf)
		buf[n] = '\0';
	fclose(f);
	return buf;
}

bool h_failpoint(const char *mode, const char *commands, const char *data)
{
	char json[1024];
	snprintf(json, sizeof json,
		 "{\"configureFailPoint\": \"failCommand\", \"mode\": %s, \"data\": {\"failCommands\": %s, "
		 "\"appName\": \"interactor-connector\"%s%s}}",
		 mode, commands, data && *data ? ", " : "", data ? data : "");
	return h_command("admin", json, NULL);
}

bool h_failpoint_off(void)
{
	return h_command("admin", "{\"configureFailPoint\": \"failCommand\", \"mode\": \"off\"}", NULL);
}
