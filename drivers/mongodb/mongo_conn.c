/*
 * mongo_conn.c - the dsn, the client pool with a bounded wait, status
 * mapping of libmongoc errors, and what the driver knows of hidden fields.
 *
 * The dsn is a MongoDB connection string; everything libmongoc's URI takes
 * (replica sets, TLS, authSource, readPreference, readConcernLevel) is the
 * user's to set. The database of its path is the only one the source reads.
 * Unless the dsn sets them, the connector adds: appname=interactor-connector,
 * serverSelectionTimeoutMS and connectTimeoutMS of the time budget or 5 s,
 * whichever is less (an unreachable server answers 503 within the budget, not
 * after libmongoc's 30 s), and socketTimeoutMS of the budget plus 2 s (a
 * server that stops answering mid-reply cannot hold a request past it; a
 * network error that late is reported as the time limit, an earlier one as
 * the server being unreachable).
 *
 * libmongoc's pool blocks forever in mongoc_client_pool_pop(), so the
 * connector counts the clients it hands out with the drivers' slot pool
 * (drivers/common/pool.h, as the PostgreSQL and MySQL drivers do: a bounded
 * wait, 2 s or the budget, whichever is less, and cancel()'s generation),
 * and only with a slot pops with try_pop, which never blocks. A full pool
 * answers CN_EBUSY (429 with Retry-After).
 */
#include "mongo_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/text.h"

int64_t mongo_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- messages ---- */

int mongo_error_status(const bson_error_t *e, bool past_budget)
{
	switch (e->domain) {
	case MONGOC_ERROR_SERVER:
	case MONGOC_ERROR_QUERY:
		switch (e->code) {
		case 50:  /* MaxTimeMSExpired */
		case 262: /* ExceededTimeLimit */
			return CN_ETIMEOUT;
		case 6:     /* HostUnreachable */
		case 7:     /* HostNotFound */
		case 89:    /* NetworkTimeout */
		case 91:    /* ShutdownInProgress */
		case 189:   /* PrimarySteppedDown */
		case 9001:  /* SocketException */
		case 10107: /* NotWritablePrimary */
		case 11600: /* InterruptedAtShutdown */
		case 11602: /* InterruptedDueToReplStateChange */
		case 13435: /* NotPrimaryNoSecondaryOk */
		case 13436: /* NotPrimaryOrSecondary */
			return CN_EUNAVAILABLE;
		default:
			return CN_EQUERY;
		}
	case MONGOC_ERROR_STREAM:
		return past_budget ? CN_ETIMEOUT : CN_EUNAVAILABLE;
	case MONGOC_ERROR_SERVER_SELECTION:
	case MONGOC_ERROR_PROTOCOL:
	case MONGOC_ERROR_CLIENT:
	case MONGOC_ERROR_SASL:
	case MONGOC_ERROR_POOL:
		return CN_EUNAVAILABLE;
	default:
		return CN_EQUERY;
	}
}

int mongo_error_set(struct mongo_handle *h, struct cn_error *err, int status, const char *what,
		    const bson_error_t *e)
{
	char msg[400];
	snprintf(msg, sizeof msg, "%s", e && e->message[0] ? e->message : "no message from libmongoc");
	for (char *c = msg; *c; c++)
		if (*c == '\n' || *c == '\r' || *c == '\t')
			*c = ' ';
	text_scrub(msg, sizeof msg, h->password);
	if (status == CN_EQUERY)
		return cn_error_set(err, status, "%s", msg); /* the server's own message */
	return cn_error_set(err, status, "%s MongoDB at %s: %s", what, h->target, msg);
}

/* ---- the dsn ---- */

static int uri_default_int(mongoc_uri_t *uri, const char *key, int32_t value)
{
	if (mongoc_uri_has_option(uri, key))
		return CN_OK;
	return mongoc_uri_set_option_as_int32(uri, key, value) ? CN_OK : CN_ECONFIG;
}

static int target_build(struct mongo_handle *h)
{
	struct dstr s = {0};
	int rc = dstr_puts(&s, "hosts ");
	bool first = true;
	for (const mongoc_host_list_t *hl = mongoc_uri_get_hosts(h->uri); rc == CN_OK && hl; hl = hl->next) {
		rc = dstr_printf(&s, "%s%s", first ? "" : ",", hl->host_and_port);
		first = false;
	}
	if (rc == CN_OK && first) {
		const char *service = mongoc_uri_get_srv_hostname(h->uri);
		rc = dstr_printf(&s, "(SRV %s)", service ? service : "?");
	}
	if (rc == CN_OK)
		rc = dstr_printf(&s, " database %s", h->db);
	const char *user = mongoc_uri_get_username(h->uri);
	if (rc == CN_OK && user)
		rc = dstr_printf(&s, " user %s", user);
	if (rc) {
		dstr_free(&s);
		return rc;
	}
	h->target = s.data;
	return CN_OK;
}

/* A password in the raw dsn, to scrub it from a parse error that may echo
 * the text ("mongodb://user:PASSWORD@host"). */
static char *dsn_password_guess(const char *dsn)
{
	const char *scheme = strstr(dsn, "://");
	if (!scheme)
		return NULL;
	const char *auth = scheme + 3;
	const char *at = strrchr(auth, '@');
	const char *slash = strchr(auth, '/');
	if (!at || (slash && slash < at))
		return NULL;
	const char *colon = memchr(auth, ':', (size_t)(at - auth));
	return colon && at > colon + 1 ? strndup(colon + 1, (size_t)(at - colon - 1)) : NULL;
}

int mongo_conn_open(struct mongo_handle *h, const char *dsn, struct cn_error *err)
{
	bson_error_t e;
	h->uri = mongoc_uri_new_with_error(dsn, &e);
	if (!h->uri) {
		char msg[300];
		char *guess = dsn_password_guess(dsn);
		snprintf(msg, sizeof msg, "%s", e.message);
		text_scrub(msg, sizeof msg, guess);
		free(guess);
		return cn_error_set(err, CN_ECONFIG, "invalid MongoDB dsn: %s (write "
				    "mongodb://user:password@host:27017/database?options)", msg);
	}
	const char *pw = mongoc_uri_get_password(h->uri);
	if (pw && !(h->password = strdup(pw)))
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	const char *db = mongoc_uri_get_database(h->uri);
	if (!db || !*db)
		return cn_error_set(err, CN_ECONFIG, "the MongoDB dsn of source %s names no database: "
				    "write it as the path, mongodb://host:27017/database", h->source);
	if (!strcmp(db, "admin") || !strcmp(db, "local") || !strcmp(db, "config"))
		return cn_error_set(err, CN_ECONFIG, "source %s: the dsn's database '%s' is one of "
				    "MongoDB's own; point the source at the database with your data "
				    "(authSource=admin sets where the user is defined)", h->source, db);
	if (!(h->db = strdup(db)))
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	uint32_t t = h->timeout_ms ? h->timeout_ms : MONGO_DEFAULT_TIMEOUT_MS;
	if (t > MONGO_MAX_TIMEOUT_MS)
		t = MONGO_MAX_TIMEOUT_MS;
	if ((!mongoc_uri_get_appname(h->uri) && !mongoc_uri_set_appname(h->uri, "interactor-connector")) ||
	    uri_default_int(h->uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, (int32_t)(t < 5000 ? t : 5000)) ||
	    uri_default_int(h->uri, MONGOC_URI_CONNECTTIMEOUTMS, (int32_t)(t < 5000 ? t : 5000)) ||
	    uri_default_int(h->uri, MONGOC_URI_SOCKETTIMEOUTMS, (int32_t)(t + MONGO_CLIENT_SLACK_MS)))
		return cn_error_set(err, CN_ECONFIG, "source %s: cannot set the connector's defaults on "
				    "the MongoDB dsn", h->source);
	const mongoc_read_prefs_t *rp = mongoc_uri_get_read_prefs_t(h->uri);
	h->read_prefs = rp ? mongoc_read_prefs_copy(rp) : mongoc_read_prefs_new(MONGOC_READ_PRIMARY);
	const mongoc_read_concern_t *rc = mongoc_uri_get_read_concern(h->uri);
	h->read_concern = rc ? mongoc_read_concern_copy(rc) : mongoc_read_concern_new();
	if (!h->read_prefs || !h->read_concern || target_build(h))
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	h->pool = mongoc_client_pool_new_with_error(h->uri, &e);
	if (!h->pool)
		return mongo_error_set(h, err, CN_ECONFIG, "cannot set up the client pool for", &e);
	mongoc_client_pool_set_error_api(h->pool, MONGOC_ERROR_API_VERSION_2);
	mongoc_client_pool_max_size(h->pool, h->slots.n);
	return CN_OK;
}

void mongo_conn_close(struct mongo_handle *h)
{
	if (h->pool)
		mongoc_client_pool_destroy(h->pool);
	mongoc_uri_destroy(h->uri);
	mongoc_read_prefs_destroy(h->read_prefs);
	mongoc_read_concern_destroy(h->read_concern);
	if (h->password)
		memset(h->password, 0, strlen(h->password));
	free(h->password);
	free(h->target);
	free(h->db);
	h->pool = NULL;
	h->uri = NULL;
	h->read_prefs = NULL;
	h->read_concern = NULL;
	h->password = h->target = h->db = NULL;
}

bool mongo_append_read_concern(struct mongo_handle *h, bson_t *opts)
{
	if (!mongoc_read_concern_get_level(h->read_concern))
		return true;
	return mongoc_read_concern_append(h->read_concern, opts);
}

/* ---- the pool ---- */

unsigned mongo_pool_gen(struct mongo_handle *h)
{
	return slot_pool_gen(&h->slots);
}

int mongo_pool_checkout(struct mongo_handle *h, uint32_t wait_ms, unsigned gen, uint32_t *slot,
			mongoc_client_t **out, struct cn_error *err)
{
	int rc = slot_pool_checkout(&h->slots, wait_ms, gen, slot, err);
	if (rc == CN_ECANCELED)
		return cn_error_set(err, CN_ECANCELED, "the query was canceled: the connector is "
				    "shutting down");
	if (rc)
		return rc;
	*out = mongoc_client_pool_try_pop(h->pool);
	if (!*out) { /* cannot happen while the counts agree; say busy, not worse */
		slot_pool_checkin(&h->slots, *slot);
		return cn_error_set(err, CN_EBUSY, "all %u connections of source %s are busy; "
				    "retry shortly", h->slots.n, h->source);
	}
	/* libmongoc keeps the clients it made: as many as were ever out at once */
	slot_pool_set_warm(&h->slots, *slot, true);
	return CN_OK;
}

void mongo_pool_checkin(struct mongo_handle *h, uint32_t slot, mongoc_client_t *client)
{
	mongoc_client_pool_push(h->pool, client);
	slot_pool_checkin(&h->slots, slot);
}

void mongo_pool_cancel_all(struct mongo_handle *h)
{
	slot_pool_cancel(&h->slots, NULL, NULL);
}

int mongo_own_command(struct mongo_handle *h, const bson_t *cmd, bson_t *reply, const char *what,
		      struct cn_error *err)
{
	mongoc_client_t *c;
	uint32_t slot;
	bson_init(reply);
	uint32_t t = h->timeout_ms ? h->timeout_ms : MONGO_DEFAULT_TIMEOUT_MS;
	int rc = mongo_pool_checkout(h, t < MONGO_CHECKOUT_MAX_WAIT_MS ? t : MONGO_CHECKOUT_MAX_WAIT_MS,
				     mongo_pool_gen(h), &slot, &c, err);
	if (rc)
		return rc;
	bson_error_t e;
	bson_destroy(reply);
	if (!mongoc_client_command_simple(c, h->db, cmd, h->read_prefs, reply, &e)) {
		int st = mongo_error_status(&e, false);
		rc = mongo_error_set(h, err, st == CN_EQUERY ? CN_EUNAVAILABLE : st, what, &e);
	}
	mongo_pool_checkin(h, slot, c);
	return rc;
}

/* ---- hidden fields ---- */

static struct mongo_hidden *hidden_find(struct mongo_handle *h, const char *coll)
{
	for (size_t i = 0; i < h->nhidden; i++)
		if (!strcmp(h->hidden[i].coll, coll))
			return &h->hidden[i];
	return NULL;
}

/* The mappings' answer; for a collection (field NULL) also a view whose
 * collection is hidden (introspection lists it with the path ""). */
int mongo_hook_is_hidden(void *ctx, const char *coll, const char *field)
{
	struct mongo_handle *h = ctx;
	if (h->is_hidden && h->is_hidden(h->host_ctx, h->db, coll, field))
		return 1;
	if (field)
		return 0;
	int blocked = 0;
	pthread_rwlock_rdlock(&h->hidden_lock);
	const struct mongo_hidden *hd = hidden_find(h, coll);
	for (size_t i = 0; hd && !blocked && i < hd->n; i++)
		blocked = hd->paths[i][0] == '\0';
	pthread_rwlock_unlock(&h->hidden_lock);
	return blocked;
}

int mongo_hook_hidden_under(void *ctx, const char *coll, const char *path)
{
	struct mongo_handle *h = ctx;
	size_t n = strlen(path);
	int found = 0;
	pthread_rwlock_rdlock(&h->hidden_lock);
	const struct mongo_hidden *hd = hidden_find(h, coll);
	for (size_t i = 0; hd && !found && i < hd->n; i++) {
		const char *p = hd->paths[i];
		found = n == 0 || (strncmp(p, path, n) == 0 && p[n] == '.');
	}
	pthread_rwlock_unlock(&h->hidden_lock);
	return found;
}

static void hidden_entry_clear(struct mongo_hidden *hd)
{
	for (size_t i = 0; i < hd->n; i++)
		free(hd->paths[i]);
	free(hd->paths);
	hd->paths = NULL;
	hd->n = hd->cap = 0;
}

static struct mongo_hidden *hidden_entry(struct mongo_handle *h, const char *coll)
{
	struct mongo_hidden *hd = hidden_find(h, coll);
	if (hd)
		return hd;
	struct mongo_hidden *v = realloc(h->hidden, (h->nhidden + 1) * sizeof *v);
	if (!v)
		return NULL;
	h->hidden = v;
	hd = &h->hidden[h->nhidden];
	*hd = (struct mongo_hidden){.coll = strdup(coll)};
	if (!hd->coll)
		return NULL;
	h->nhidden++;
	return hd;
}

void mongo_hidden_set(struct mongo_handle *h, const char *coll, char **paths, size_t n)
{
	pthread_rwlock_wrlock(&h->hidden_lock);
	struct mongo_hidden *hd = hidden_entry(h, coll);
	if (hd) {
		hidden_entry_clear(hd);
		hd->paths = paths;
		hd->n = hd->cap = n;
		paths = NULL;
	}
	pthread_rwlock_unlock(&h->hidden_lock);
	for (size_t i = 0; paths && i < n; i++) /* out of memory: dropped */
		free(paths[i]);
	free(paths);
}

void mongo_hidden_learn(struct mongo_handle *h, const char *coll, const char *path)
{
	pthread_rwlock_rdlock(&h->hidden_lock);
	const struct mongo_hidden *hd = hidden_find(h, coll);
	bool known = false;
	for (size_t i = 0; hd && !known && i < hd->n; i++)
		known = !strcmp(hd->paths[i], path);
	pthread_rwlock_unlock(&h->hidden_lock);
	if (known)
		return;
	pthread_rwlock_wrlock(&h->hidden_lock);
	struct mongo_hidden *w = hidden_entry(h, coll);
	for (size_t i = 0; w && i < w->n; i++)
		if (!strcmp(w->paths[i], path))
			w = NULL; /* another request learned it meanwhile */
	if (w && w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 8;
		char **p = realloc(w->paths, cap * sizeof *p);
		if (p) {
			w->paths = p;
			w->cap = cap;
		}
	}
	if (w && w->n < w->cap && (w->paths[w->n] = strdup(path)) != NULL)
		w->n++;
	pthread_rwlock_unlock(&h->hidden_lock);
}

void mongo_hidden_reset(struct mongo_handle *h)
{
	pthread_rwlock_wrlock(&h->hidden_lock);
	mongo_hidden_free(h);
	pthread_rwlock_unlock(&h->hidden_lock);
}

void mongo_hidden_free(struct mongo_handle *h)
{
	for (size_t i = 0; i < h->nhidden; i++) {
		hidden_entry_clear(&h->hidden[i]);
		free(h->hidden[i].coll);
	}
	free(h->hidden);
	h->hidden = NULL;
	h->nhidden = 0;
}
