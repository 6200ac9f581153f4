/*
 * pg_conninfo.c - see pg_conninfo.h.
 *
 * The dsn is parsed by libpq itself (PQconninfoParse), so a URI and
 * key=value pairs mean here exactly what they mean to PQconnectdb. Its error
 * text is dropped rather than scrubbed: it quotes the offending token, which
 * can be a password or a part of one (a bad %-escape in a URI password), and
 * guessing the password out of a dsn libpq could not parse is guesswork.
 */
#include "pg_conninfo.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

static void secret_free(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

/* Room for one more keyword and the NULL after it. */
static int grow(struct pg_conninfo *ci)
{
	if (ci->n + 1 < ci->cap)
		return CN_OK;
	size_t cap = ci->cap ? ci->cap * 2 : 16;
	char **keys = realloc(ci->keys, cap * sizeof *keys);
	if (!keys)
		return CN_ENOMEM;
	memset(keys + ci->cap, 0, (cap - ci->cap) * sizeof *keys);
	ci->keys = keys;
	char **vals = realloc(ci->vals, cap * sizeof *vals);
	if (!vals)
		return CN_ENOMEM;
	memset(vals + ci->cap, 0, (cap - ci->cap) * sizeof *vals);
	ci->vals = vals;
	ci->cap = cap;
	return CN_OK;
}

int pg_conninfo_set(struct pg_conninfo *ci, const char *key, const char *val)
{
	bool is_password = strcmp(key, "password") == 0;
	char *v = strdup(val);
	char *pw = is_password ? strdup(val) : NULL;
	if (!v || (is_password && !pw))
		goto nomem;
	size_t i = 0;
	while (i < ci->n && strcmp(ci->keys[i], key) != 0)
		i++;
	if (i == ci->n) {
		char *k = strdup(key);
		if (!k || grow(ci)) {
			free(k);
			goto nomem;
		}
		ci->keys[i] = k;
		ci->n++;
	}
	if (is_password) {
		secret_free(ci->vals[i]);
		secret_free(ci->password);
		ci->password = pw;
	} else {
		free(ci->vals[i]);
	}
	ci->vals[i] = v;
	return CN_OK;
nomem:
	secret_free(v);
	secret_free(pw);
	return CN_ENOMEM;
}

const char *pg_conninfo_get(const struct pg_conninfo *ci, const char *key)
{
	for (size_t i = 0; i < ci->n; i++)
		if (strcmp(ci->keys[i], key) == 0)
			return ci->vals[i];
	return NULL;
}

int pg_conninfo_parse(struct pg_conninfo *ci, const char *dsn, const char *bad_dsn, struct cn_error *err)
{
	char *errmsg = NULL;
	PQconninfoOption *opts = PQconninfoParse(dsn, &errmsg);
	if (!opts) {
		/* no message and no options: libpq ran out of memory */
		bool nomem = !errmsg;
		if (errmsg)
			explicit_bzero(errmsg, strlen(errmsg));
		PQfreemem(errmsg);
		return nomem ? cn_error_set(err, CN_ENOMEM, "out of memory")
			     : cn_error_set(err, CN_ECONFIG, "%s", bad_dsn);
	}
	int rc = CN_OK;
	for (PQconninfoOption *o = opts; rc == CN_OK && o->keyword; o++)
		if (o->val && *o->val)
			rc = pg_conninfo_set(ci, o->keyword, o->val);
	for (PQconninfoOption *o = opts; o->keyword; o++)
		if (o->val && strcmp(o->keyword, "password") == 0)
			explicit_bzero(o->val, strlen(o->val));
	PQconninfoFree(opts);
	return rc ? cn_error_set(err, CN_ENOMEM, "out of memory") : CN_OK;
}

int pg_conninfo_defaults(struct pg_conninfo *ci, const char *const (*defaults)[2], size_t n)
{
	int rc = CN_OK;
	for (size_t i = 0; rc == CN_OK && i < n; i++)
		if (!pg_conninfo_get(ci, defaults[i][0]))
			rc = pg_conninfo_set(ci, defaults[i][0], defaults[i][1]);
	return rc;
}

int pg_conninfo_options_add(struct pg_conninfo *ci, const char *options)
{
	const char *user = pg_conninfo_get(ci, "options");
	char *merged = NULL;
	if (asprintf(&merged, "%s%s%s", user ? user : "", user ? " " : "", options) < 0)
		return CN_ENOMEM;
	int rc = pg_conninfo_set(ci, "options", merged);
	free(merged);
	return rc;
}

char *pg_conninfo_target(const struct pg_conninfo *ci)
{
	const char *host = pg_conninfo_get(ci, "host"), *addr = pg_conninfo_get(ci, "hostaddr");
	const char *port = pg_conninfo_get(ci, "port"), *db = pg_conninfo_get(ci, "dbname");
	const char *user = pg_conninfo_get(ci, "user");
	const char *where = host ? host : addr ? addr : "(local socket)";
	const char *database = db ? db : user ? user : "(default)";
	char *s = NULL;
	if (asprintf(&s, "host %s port %s database %s%s%s", where, port ? port : "5432", database,
		     user ? " user " : "", user ? user : "") < 0)
		return NULL;
	return s;
}

void pg_conninfo_free(struct pg_conninfo *ci)
{
	for (size_t i = 0; i < ci->n; i++) {
		if (strcmp(ci->keys[i], "password") == 0)
			secret_free(ci->vals[i]);
		else
			free(ci->vals[i]);
		free(ci->keys[i]);
	}
	free(ci->keys);
	free(ci->vals);
	secret_free(ci->password);
	*ci = (struct pg_conninfo){0};
}
