/*
 * pg_conn.c - connection settings, connecting, the connection pool, waiting
 * for results with a deadline, and error messages of the PostgreSQL driver.
 */
#include "pg_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/text.h"

/* Settings every session starts with. They are the session's defaults, so
 * DISCARD ALL (RESET ALL) returns to them after each request. The guard
 * parses with standard_conforming_strings on and UTF-8, so the server must
 * read the text the same way. */
static const char SESSION_OPTIONS[] =
	"-c DateStyle=ISO,YMD -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=1 "
	"-c bytea_output=hex -c standard_conforming_strings=on -c default_transaction_read_only=on "
	"-c idle_in_transaction_session_timeout=60000";

int64_t pg_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- messages ---- */

void pg_conn_message(struct pg_handle *h, PGconn *c, char *buf, size_t size)
{
	snprintf(buf, size, "%s", c ? PQerrorMessage(c) : "out of memory");
	text_one_line(buf);
	if (!buf[0])
		snprintf(buf, size, "no message from libpq");
	text_scrub(buf, size, h->password);
}

void pg_error_text(struct pg_handle *h, const PGresult *res, char *buf, size_t size)
{
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	const char *pos = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);
	char at[48] = "";
	if (pos)
		snprintf(at, sizeof at, " (at character %s)", pos);
	if (primary)
		snprintf(buf, size, "%s%s%s%s%s%s", primary, at, detail ? "; " : "",
			 detail ? detail : "", hint ? "; hint: " : "", hint ? hint : "");
	else
		snprintf(buf, size, "%s", PQresultErrorMessage(res));
	text_one_line(buf);
	text_scrub(buf, size, h->password);
}

int pg_sqlstate_status(const char *st)
{
	if (!st || strlen(st) != 5)
		return CN_EQUERY;
	if (!strcmp(st, "57014"))
		return CN_ETIMEOUT;
	if (!strcmp(st, "25006"))
		return CN_EREJECTED; /* read_only_sql_transaction: the read-only layer said no */
	if (!strncmp(st, "08", 2) || !strcmp(st, "57P01") || !strcmp(st, "57P02") ||
	    !strcmp(st, "57P03"))
		return CN_EUNAVAILABLE;
	if (!strncmp(st, "28", 2))
		return CN_EAUTH;
	return CN_EQUERY;
}

/* ---- connection settings ---- */

/* A password in the raw dsn (keyword form or URI), to scrub it from a
 * parse error that may echo the text. Returns a malloc'd copy or NULL. */
static char *dsn_password_guess(const char *dsn)
{
	const char *p = strstr(dsn, "password");
	if (p) {
		p += strlen("password");
		while (*p == ' ')
			p++;
		if (*p == '=') {
			p++;
			while (*p == ' ')
				p++;
			const char *q = *p == '\'' ? strchr(p + 1, '\'') : p + strcspn(p, " ");
			if (*p == '\'')
				p++;
			if (!q)
				q = p + strlen(p);
			return q > p ? strndup(p, (size_t)(q - p)) : NULL;
		}
	}
	const char *scheme = strstr(dsn, "://");
	if (!scheme)
		return NULL;
	const char *auth = scheme + 3;
	const char *at = strchr(auth, '@');
	const char *slash = strchr(auth, '/');
	if (!at || (slash && slash < at))
		return NULL;
	const char *colon = memchr(auth, ':', (size_t)(at - auth));
	return colon && at > colon + 1 ? strndup(colon + 1, (size_t)(at - colon - 1)) : NULL;
}

static int conninfo_set(struct pg_handle *h, size_t *n, const char *key, const char *val)
{
	for (size_t i = 0; i < *n; i++) {
		if (strcmp(h->keys[i], key) == 0) {
			char *v = strdup(val);
			if (!v)
				return CN_ENOMEM;
			free(h->vals[i]);
			h->vals[i] = v;
			return CN_OK;
		}
	}
	h->keys[*n] = strdup(key);
	h->vals[*n] = strdup(val);
	if (!h->keys[*n] || !h->vals[*n])
		return CN_ENOMEM;
	(*n)++;
	return CN_OK;
}

static const char *conninfo_get(const struct pg_handle *h, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(h->keys[i], key) == 0)
			return h->vals[i];
	return NULL;
}

static int target_build(struct pg_handle *h, size_t n)
{
	const char *host = conninfo_get(h, n, "host");
	const char *addr = conninfo_get(h, n, "hostaddr");
	const char *port = conninfo_get(h, n, "port");
	const char *db = conninfo_get(h, n, "dbname");
	const char *user = conninfo_get(h, n, "user");
	struct dstr s = {0};
	const char *where = host ? host : addr ? addr : "(local socket)";
	int rc = dstr_printf(&s, "host %s port %s database %s", where, port ? port : "5432",
			       db ? db : user ? user : "(default)");
	if (rc == CN_OK && user)
		rc = dstr_printf(&s, " user %s", user);
	if (rc) {
		dstr_free(&s);
		return rc;
	}
	h->target = s.data;
	return CN_OK;
}

static int conninfo_defaults(struct pg_handle *h, size_t *n, const char *user_options)
{
	struct dstr opts = {0};
	int rc = CN_OK;
	if (user_options && *user_options)
		rc = dstr_printf(&opts, "%s ", user_options);
	if (rc == CN_OK)
		rc = dstr_puts(&opts, SESSION_OPTIONS);
	/* The source's own time budget is the session default, so a request
	 * with that budget needs no SET LOCAL statement_timeout. */
	uint32_t t = h->timeout_ms ? h->timeout_ms : PG_DEFAULT_TIMEOUT_MS;
	h->session_timeout_ms = t > PG_MAX_TIMEOUT_MS ? PG_MAX_TIMEOUT_MS : t;
	if (rc == CN_OK)
		rc = dstr_printf(&opts, " -c statement_timeout=%u", h->session_timeout_ms);
	if (rc == CN_OK)
		rc = conninfo_set(h, n, "options", opts.data);
	dstr_free(&opts);
	static const char *const defaults[][2] = {
		{"fallback_application_name", "interactor-connector"},
		{"connect_timeout", "10"},
		{"keepalives_idle", "60"},
		{"keepalives_interval", "10"},
		{"keepalives_count", "3"},
	};
	for (size_t i = 0; rc == CN_OK && i < sizeof defaults / sizeof defaults[0]; i++)
		if (!conninfo_get(h, *n, defaults[i][0]))
			rc = conninfo_set(h, n, defaults[i][0], defaults[i][1]);
	if (rc == CN_OK)
		rc = conninfo_set(h, n, "client_encoding", "UTF8");
	return rc;
}

int pg_conninfo_build(struct pg_handle *h, const char *dsn, struct cn_error *err)
{
	char *errmsg = NULL;
	int rc = CN_OK;
	PQconninfoOption *opts = PQconninfoParse(dsn, &errmsg);
	if (!opts) {
		char msg[300];
		char *guess = dsn_password_guess(dsn);
		snprintf(msg, sizeof msg, "%s", errmsg ? errmsg : "out of memory");
		text_one_line(msg);
		text_scrub(msg, sizeof msg, guess);
		free(guess);
		PQfreemem(errmsg);
		return cn_error_set(err, CN_ECONFIG, "invalid PostgreSQL dsn: %s", msg);
	}
	size_t count = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++)
		count++;
	h->keys = calloc(count + 16, sizeof *h->keys);
	h->vals = calloc(count + 16, sizeof *h->vals);
	if (!h->keys || !h->vals) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto out;
	}
	size_t n = 0;
	const char *user_options = NULL;
	for (PQconninfoOption *o = opts; rc == CN_OK && o->keyword; o++) {
		if (!o->val || !*o->val)
			continue;
		if (!strcmp(o->keyword, "replication")) {
			rc = cn_error_set(err, CN_ECONFIG, "the PostgreSQL dsn must not set replication: "
				"replication connections cannot run queries with bound parameters");
			goto out;
		}
		if (!strcmp(o->keyword, "options")) {
			user_options = o->val;
			continue;
		}
		if (!strcmp(o->keyword, "password") && !(h->password = strdup(o->val)))
			rc = CN_ENOMEM;
		if (rc == CN_OK)
			rc = conninfo_set(h, &n, o->keyword, o->val);
	}
	if (rc == CN_OK)
		rc = conninfo_defaults(h, &n, user_options);
	if (rc == CN_OK)
		rc = target_build(h, n);
	if (rc)
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
out:
	PQconninfoFree(opts);
	return rc;
}

void pg_conninfo_free(struct pg_handle *h)
{
	for (size_t i = 0; h->keys && h->keys[i]; i++) {
		if (h->vals[i] && !strcmp(h->keys[i], "password"))
			memset(h->vals[i], 0, strlen(h->vals[i]));
		free(h->keys[i]);
		free(h->vals[i]);
	}
	free(h->keys);
	free(h->vals);
	free(h->target);
	if (h->password)
		memset(h->password, 0, strlen(h->password));
	free(h->password);
	h->keys = h->vals = NULL;
	h->target = h->password = NULL;
}

/* ---- connecting ---- */

static void notice_ignore(void *arg, const PGresult *res)
{
	(void)arg;
	(void)res;
}

static int session_check(struct pg_handle *h, PGconn *c, struct cn_error *err)
{
	static const char *const expect[][2] = {
		{"client_encoding", "UTF8"},
		{"standard_conforming_strings", "on"},
		{"DateStyle", "ISO"},
		{"integer_datetimes", "on"},
	};
	for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
		const char *v = PQparameterStatus(c, expect[i][0]);
		if (!v || strncmp(v, expect[i][1], strlen(expect[i][1])) != 0)
			return cn_error_set(err, CN_ECONFIG,
					    "PostgreSQL at %s runs with %s=%s; the connector needs %s",
					    h->target, expect[i][0], v ? v : "(unset)", expect[i][1]);
	}
	return CN_OK;
}

/* The dsn's connect_timeout in ms (libpq's rules: 0 waits for ever, 1 counts
 * as 2 s); conninfo_defaults set 10 s unless the dsn gave one. */
static int64_t connect_timeout_ms(const struct pg_handle *h)
{
	for (size_t i = 0; h->keys && h->keys[i]; i++) {
		if (strcmp(h->keys[i], "connect_timeout") == 0) {
			long s = strtol(h->vals[i], NULL, 10);
			return s <= 0 ? 0 : (s < 2 ? 2 : s) * 1000;
		}
	}
	return 10000;
}

/* Connects with the notice receiver in place before the first byte is read.
 *
 * The server may send a notice while the session starts: a WARNING when it
 * cannot apply a role's or database's setting, or "terminating connection
 * because of crash of another server process" with a DETAIL and a HINT when a
 * backend is told to quit during a crash restart. With PQconnectdbParams the
 * receiver can only be set once the connection is made, so such a notice
 * went to libpq's default processor, which prints it raw on stderr: into the
 * daemon's JSON log. PQconnectStartParams returns the connection before it
 * talks to the server; this polls it to the end, under the dsn's
 * connect_timeout for the whole attempt (libpq ignores connect_timeout when
 * the caller polls). *timed_out: the deadline passed. */
static PGconn *connect_quiet(struct pg_handle *h, bool *timed_out)
{
	*timed_out = false;
	PGconn *c = PQconnectStartParams((const char *const *)h->keys, (const char *const *)h->vals, 0);
	if (!c)
		return NULL;
	PQsetNoticeReceiver(c, notice_ignore, NULL);
	if (PQstatus(c) == CONNECTION_BAD)
		return c;
	int64_t timeout = connect_timeout_ms(h);
	int64_t deadline = pg_now_ms() + timeout;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING; /* as the libpq manual says to begin */
	while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
		struct pollfd p = {.fd = PQsocket(c),
				   .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
		if (p.fd < 0)
			break;
		int64_t left = timeout ? deadline - pg_now_ms() : 1000;
		if (left <= 0) {
			*timed_out = true;
			break;
		}
		int n = poll(&p, 1, left > 1000 ? 1000 : (int)left);
		if (n < 0 && errno != EINTR)
			break;
		if (n > 0)
			st = PQconnectPoll(c);
	}
	return c;
}

int pg_connect(struct pg_handle *h, PGconn **out, struct cn_error *err)
{
	char msg[400];
	bool timed_out;
	PGconn *c = connect_quiet(h, &timed_out);
	if (!c)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	if (PQstatus(c) != CONNECTION_OK) {
		if (timed_out)
			snprintf(msg, sizeof msg, "timeout expired after %lld s",
				 (long long)(connect_timeout_ms(h) / 1000));
		else
			pg_conn_message(h, c, msg, sizeof msg);
		int code = strstr(msg, "authentication failed") ? CN_EAUTH : CN_EUNAVAILABLE;
		PQfinish(c);
		return cn_error_set(err, code, "cannot connect to PostgreSQL at %s: %s", h->target, msg);
	}
	int rc = session_check(h, c, err);
	if (rc) {
		PQfinish(c);
		return rc;
	}
	*out = c;
	return CN_OK;
}

/* ---- the pool ---- */

unsigned pg_pool_gen(struct pg_handle *h)
{
	return slot_pool_gen(&h->pool);
}

int pg_pool_checkout(struct pg_handle *h, uint32_t wait_ms, unsigned gen, struct pg_slot **out,
		     struct cn_error *err)
{
	uint32_t i;
	int rc = slot_pool_checkout(&h->pool, wait_ms, gen, &i, err);
	if (rc == CN_OK)
		*out = &h->slots[i];
	return rc;
}

void pg_pool_checkin(struct pg_handle *h, struct pg_slot *slot)
{
	slot_pool_checkin(&h->pool, (uint32_t)(slot - h->slots));
}

void pg_slot_drop(struct pg_handle *h, struct pg_slot *slot)
{
	pthread_mutex_lock(&h->pool.lock);
	PGcancel *pc = slot->cancel;
	slot->cancel = NULL;
	h->pool.warm[slot - h->slots] = false;
	pthread_mutex_unlock(&h->pool.lock);
	PQfreeCancel(pc);
	PQfinish(slot->conn);
	slot->conn = NULL;
}

/* An idle connection has nothing to say: a readable socket means the server
 * closed it (restart, idle timeout) or reported something; read it and look. */
static bool slot_healthy(PGconn *c)
{
	if (PQstatus(c) != CONNECTION_OK || PQpipelineStatus(c) != PQ_PIPELINE_OFF)
		return false;
	struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
	if (p.fd < 0)
		return false;
	if (poll(&p, 1, 0) > 0) {
		if (!PQconsumeInput(c))
			return false;
		PGnotify *n;
		while ((n = PQnotifies(c)) != NULL)
			PQfreemem(n);
	}
	return PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE;
}

int pg_slot_ready(struct pg_handle *h, struct pg_slot *slot, struct cn_error *err)
{
	if (slot->conn && slot_healthy(slot->conn))
		return CN_OK;
	if (slot->conn)
		pg_slot_drop(h, slot);
	PGconn *c;
	int rc = pg_connect(h, &c, err);
	if (rc)
		return rc;
	PGcancel *pc = PQgetCancel(c);
	if (!pc) {
		PQfinish(c);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&h->pool.lock);
	slot->conn = c;
	slot->cancel = pc;
	h->pool.warm[slot - h->slots] = true;
	pthread_mutex_unlock(&h->pool.lock);
	return CN_OK;
}

void pg_slot_cancel(struct pg_handle *h, struct pg_slot *slot)
{
	char buf[256];
	(void)h;
	/* only this thread replaces slot->cancel, so no lock is needed to read it */
	if (slot->cancel)
		PQcancel(slot->cancel, buf, sizeof buf);
}

/* Under pool.lock, for each busy slot. */
static void cancel_slot(void *ctx, uint32_t i)
{
	struct pg_handle *h = ctx;
	char buf[256];
	if (h->slots[i].cancel)
		PQcancel(h->slots[i].cancel, buf, sizeof buf);
}

void pg_pool_cancel_all(struct pg_handle *h)
{
	slot_pool_cancel(&h->pool, cancel_slot, h);
}

int pg_wait_result(PGconn *c, int64_t deadline, PGresult **out)
{
	for (;;) {
		if (!PQisBusy(c)) {
			*out = PQgetResult(c);
			return CN_OK;
		}
		int64_t left = deadline - pg_now_ms();
		if (left <= 0)
			return CN_ETIMEOUT;
		struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
		if (p.fd < 0)
			return CN_EUNAVAILABLE;
		int n = poll(&p, 1, left > 100 ? 100 : (int)left);
		if (n < 0 && errno != EINTR)
			return CN_EUNAVAILABLE;
		if (n > 0 && !PQconsumeInput(c))
			return CN_EUNAVAILABLE;
	}
}
