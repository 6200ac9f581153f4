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
	text_scrub(buf, size, h->conninfo.password);
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
	text_scrub(buf, size, h->conninfo.password);
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

/* Policy of the driver: its session options after the user's, the
 * source's time budget as statement_timeout, these defaults where the dsn
 * sets none, and UTF-8 always. The mechanics are drivers/common/pg_conninfo. */
static int conninfo_policy(struct pg_handle *h)
{
	/* The source's own time budget is the session default, so a request
	 * with that budget needs no SET LOCAL statement_timeout. */
	uint32_t t = h->timeout_ms ? h->timeout_ms : PG_DEFAULT_TIMEOUT_MS;
	h->session_timeout_ms = t > PG_MAX_TIMEOUT_MS ? PG_MAX_TIMEOUT_MS : t;
	char options[sizeof SESSION_OPTIONS + 40];
	snprintf(options, sizeof options, "%s -c statement_timeout=%u", SESSION_OPTIONS,
		 h->session_timeout_ms);
	static const char *const defaults[][2] = {
		{"fallback_application_name", "interactor-connector"},
		{"connect_timeout", "10"},
		{"keepalives_idle", "60"},
		{"keepalives_interval", "10"},
		{"keepalives_count", "3"},
	};
	int rc = pg_conninfo_options_add(&h->conninfo, options);
	if (rc == CN_OK)
		rc = pg_conninfo_defaults(&h->conninfo, defaults, sizeof defaults / sizeof defaults[0]);
	if (rc == CN_OK)
		rc = pg_conninfo_set(&h->conninfo, "client_encoding", "UTF8");
	if (rc == CN_OK && !(h->target = pg_conninfo_target(&h->conninfo)))
		rc = CN_ENOMEM;
	return rc;
}

int pg_conn_settings_build(struct pg_handle *h, const char *dsn, struct cn_error *err)
{
	int rc = pg_conninfo_parse(&h->conninfo, dsn, "invalid PostgreSQL dsn: " PG_CONNINFO_DSN_HINT, err);
	if (rc)
		return rc;
	if (pg_conninfo_get(&h->conninfo, "replication"))
		return cn_error_set(err, CN_ECONFIG, "the PostgreSQL dsn must not set replication: "
				    "replication connections cannot run queries with bound parameters");
	if (conninfo_policy(h))
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	return CN_OK;
}

void pg_conn_settings_free(struct pg_handle *h)
{
	pg_conninfo_free(&h->conninfo);
	free(h->target);
	h->target = NULL;
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
 * as 2 s); conninfo_policy set 10 s unless the dsn gave one. */
static int64_t connect_timeout_ms(const struct pg_handle *h)
{
	const char *v = pg_conninfo_get(&h->conninfo, "connect_timeout");
	if (!v)
		return 10000;
	long s = strtol(v, NULL, 10);
	return s <= 0 ? 0 : (s < 2 ? 2 : s) * 1000;
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
	PGconn *c = PQconnectStartParams((const char *const *)h->conninfo.keys,
					  (const char *const *)h->conninfo.vals, 0);
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
