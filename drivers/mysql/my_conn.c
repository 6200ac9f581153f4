/*
 * my_conn.c - the MySQL/MariaDB driver's connections: the dsn, connecting
 * and pinning the session, slots, the reset after a query, KILL QUERY over
 * a second connection, errors, and statements of the driver's own.
 *
 * Every connection is opened with utf8mb4 in the handshake (a multi-byte
 * charset whose bytes never contain a quote or a backslash, so no escape
 * trick), LOCAL INFILE off, CLIENT_MULTI_STATEMENTS never set, and read and
 * write timeouts of the time budget plus a second (the client's own
 * deadline). Then one SET pins what the guard and the type mapping assume:
 *
 *   sql_mode     without ANSI_QUOTES and NO_BACKSLASH_ESCAPES (how the guard
 *                reads quotes and backslashes)
 *   time_zone    +00:00 (TIMESTAMP values in UTC)
 *   tx_read_only / transaction_read_only = 1, autocommit = 1
 *   max_statement_time (MariaDB, seconds) / max_execution_time (MySQL, ms)
 *                = the source's time budget
 *   sql_select_limit = the source's row cap + 1
 *   session_track_system_variables = the pinned settings above (the server
 *                says when a statement changed one of them; SET STATEMENT's
 *                own settings are not among them, so plain queries do not
 *                raise it)
 *
 * and a SELECT checks the character sets and the mode took. COM_RESET_CONNECTION
 * returns a session to the server's defaults (it keeps the handshake's
 * character set, so only the SET is sent again after it).
 */
#include "my_internal.h"

#include <ctype.h>
#include <errno.h>
#include <errmsg.h>
#include <mysqld_error.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../common/text.h"

int64_t my_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- messages ---- */

void my_error_text(struct my_handle *h, unsigned int errnum, const char *sqlstate,
		   const char *msg, char *buf, size_t size)
{
	if (sqlstate && *sqlstate && strcmp(sqlstate, "HY000") != 0)
		snprintf(buf, size, "error %u (%s): %s", errnum, sqlstate, msg && *msg ? msg : "no message");
	else
		snprintf(buf, size, "error %u: %s", errnum, msg && *msg ? msg : "no message");
	text_one_line(buf);
	text_scrub(buf, size, h->password);
}

/* Server errors (ER_*) and client errors (CR_*) that say something other
 * than "the query failed". */
static const struct {
	unsigned int errnum;
	int status;
} errno_status[] = {
	{ER_STATEMENT_TIMEOUT, CN_ETIMEOUT},        /* MariaDB max_statement_time */
	{3024, CN_ETIMEOUT},                        /* MySQL max_execution_time */
	{ER_LOCK_WAIT_TIMEOUT, CN_ETIMEOUT},
	{ER_QUERY_INTERRUPTED, CN_ECANCELED},       /* KILL QUERY: the caller says why */
	{ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION, CN_EREJECTED},
	{ER_ACCESS_DENIED_ERROR, CN_EAUTH},
	{ER_DBACCESS_DENIED_ERROR, CN_EAUTH},
	{ER_CON_COUNT_ERROR, CN_EBUSY},
	{ER_TOO_MANY_USER_CONNECTIONS, CN_EBUSY},
	{ER_SERVER_SHUTDOWN, CN_EUNAVAILABLE},
	{ER_CONNECTION_KILLED, CN_EUNAVAILABLE},
	{CR_CONNECTION_ERROR, CN_EUNAVAILABLE},
	{CR_CONN_HOST_ERROR, CN_EUNAVAILABLE},
	{CR_SERVER_GONE_ERROR, CN_EUNAVAILABLE},
	{CR_SERVER_LOST, CN_EUNAVAILABLE},
	{CR_SERVER_LOST_EXTENDED, CN_EUNAVAILABLE},
	{CR_UNKNOWN_HOST, CN_EUNAVAILABLE},
	{CR_SSL_CONNECTION_ERROR, CN_EUNAVAILABLE},
	{CR_OUT_OF_MEMORY, CN_ENOMEM},
};

int my_errno_status(unsigned int errnum)
{
	for (size_t i = 0; i < sizeof errno_status / sizeof errno_status[0]; i++)
		if (errno_status[i].errnum == errnum)
			return errno_status[i].status;
	return CN_EQUERY;
}

/* err as filled with a status of my_errno_status(), whose only refusal is
 * the read-only transaction's (error 1792): a write. Returns code. */
static int write_classed(struct cn_error *err, int code)
{
	if (err && code == CN_EREJECTED)
		err->reject = CN_REJECT_WRITE;
	return code;
}

/* ---- the dsn ---- */

static int hexval(int c)
{
	return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

/* Percent-decode s[0..n) into a new string; NULL on a bad escape, a NUL, or
 * out of memory (*bad set for the first two). */
static char *pct_decode(const char *s, size_t n, bool *bad)
{
	char *out = malloc(n + 1);
	size_t w = 0;
	*bad = false;
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int a = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
			int b = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
			if (a < 0 || b < 0 || (a == 0 && b == 0)) {
				*bad = true;
				free(out);
				return NULL;
			}
			out[w++] = (char)(a * 16 + b);
			i += 2;
		} else {
			out[w++] = s[i];
		}
	}
	out[w] = '\0';
	return out;
}

static const struct {
	const char *name;
	int mode;
} ssl_modes[] = {
	{"DISABLED", MY_SSL_DISABLED},     {"PREFERRED", MY_SSL_DEFAULT},
	{"REQUIRED", MY_SSL_REQUIRED},     {"VERIFY_CA", MY_SSL_VERIFY_CA},
	{"VERIFY_IDENTITY", MY_SSL_VERIFY_IDENTITY},
};

static int add_database(struct my_handle *h, const char *name, struct cn_error *err)
{
	char **d = realloc(h->databases, (h->ndatabases + 1) * sizeof *d);
	if (!d)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	h->databases = d;
	if (!(d[h->ndatabases] = strdup(name)))
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	h->ndatabases++;
	return CN_OK;
}

static int dsn_param(struct my_handle *h, const char *key, const char *val, struct cn_error *err)
{
	char **slot = NULL;
	if (!strcmp(key, "ssl-mode")) {
		for (size_t i = 0; i < sizeof ssl_modes / sizeof ssl_modes[0]; i++) {
			if (!strcasecmp(val, ssl_modes[i].name)) {
				h->ssl_mode = ssl_modes[i].mode;
				return CN_OK;
			}
		}
		return cn_error_set(err, CN_ECONFIG, "source %s: ssl-mode=%s is not known: use DISABLED, "
				    "PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY", h->source, val);
	}
	if (!strcmp(key, "ssl-ca"))
		slot = &h->ssl_ca;
	else if (!strcmp(key, "ssl-capath"))
		slot = &h->ssl_capath;
	else if (!strcmp(key, "ssl-cert"))
		slot = &h->ssl_cert;
	else if (!strcmp(key, "ssl-key"))
		slot = &h->ssl_key;
	else if (!strcmp(key, "socket"))
		slot = &h->socket;
	else
		return cn_error_set(err, CN_ECONFIG, "source %s: the dsn parameter '%s' is not known "
				    "(known: ssl-mode, ssl-ca, ssl-capath, ssl-cert, ssl-key, socket)",
				    h->source, key);
	free(*slot);
	if (!(*slot = strdup(val)))
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	return CN_OK;
}

static int dsn_query(struct my_handle *h, const char *q, struct cn_error *err)
{
	while (*q) {
		size_t n = strcspn(q, "&");
		const char *eq = memchr(q, '=', n);
		if (!eq)
			return cn_error_set(err, CN_ECONFIG, "source %s: the dsn parameter '%.*s' has no "
					    "value (write key=value)", h->source, (int)n, q);
		bool bad;
		char *key = pct_decode(q, (size_t)(eq - q), &bad);
		char *val = key ? pct_decode(eq + 1, n - (size_t)(eq - q) - 1, &bad) : NULL;
		int rc = key && val ? dsn_param(h, key, val, err)
				    : cn_error_set(err, bad ? CN_ECONFIG : CN_ENOMEM,
						   bad ? "source %s: a bad %%-escape in the dsn's parameters"
						       : "out of memory%s", bad ? h->source : "");
		free(key);
		free(val);
		if (rc)
			return rc;
		q += n;
		if (*q == '&')
			q++;
	}
	return CN_OK;
}

int my_dsn_parse(struct my_handle *h, const char *dsn, struct cn_error *err)
{
	const char *p;
	if (!strncmp(dsn, "mysql://", 8))
		p = dsn + 8;
	else if (!strncmp(dsn, "mariadb://", 10))
		p = dsn + 10;
	else
		return cn_error_set(err, CN_ECONFIG, "source %s: the dsn must be a URI: "
				    "mysql://user:password@host:port/database", h->source);
	size_t auth_end = strcspn(p, "/?");
	const char *at = NULL;
	for (const char *c = p; c < p + auth_end; c++)
		if (*c == '@')
			at = c; /* the last @ ends the user info */
	bool bad = false;
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		size_t ulen = colon ? (size_t)(colon - p) : (size_t)(at - p);
		h->user = pct_decode(p, ulen, &bad);
		if (h->user && colon)
			h->password = pct_decode(colon + 1, (size_t)(at - colon - 1), &bad);
		if (!h->user || (colon && !h->password))
			return cn_error_set(err, bad ? CN_ECONFIG : CN_ENOMEM,
					    bad ? "source %s: a bad %%-escape in the dsn's user or password"
						: "out of memory%s", bad ? h->source : "");
		p = at + 1;
		auth_end = strcspn(p, "/?");
	}
	/* host[:port], [v6]:port */
	const char *host = p, *host_end = p + auth_end, *port = NULL;
	if (*host == '[') {
		const char *close = memchr(host, ']', auth_end);
		if (!close)
			return cn_error_set(err, CN_ECONFIG, "source %s: the dsn's host [ has no ]", h->source);
		port = close[1] == ':' ? close + 2 : NULL;
		host++;
		host_end = close;
	} else {
		const char *colon = memchr(host, ':', auth_end);
		if (colon) {
			port = colon + 1;
			host_end = colon;
		}
	}
	if (port) {
		char *end;
		long v = strtol(port, &end, 10);
		if (end == port || (*end && *end != '/' && *end != '?') || v < 1 || v > 65535)
			return cn_error_set(err, CN_ECONFIG, "source %s: the dsn's port must be 1 to "
					    "65535", h->source);
		h->port = (unsigned)v;
	}
	if (host_end > host && !(h->host = pct_decode(host, (size_t)(host_end - host), &bad)))
		return cn_error_set(err, bad ? CN_ECONFIG : CN_ENOMEM, "source %s: bad host in the dsn",
				    h->source);
	p += auth_end;
	if (*p == '/') {
		p++;
		size_t n = strcspn(p, "?");
		if (n) {
			char *db = pct_decode(p, n, &bad);
			int rc = db ? add_database(h, db, err)
				    : cn_error_set(err, bad ? CN_ECONFIG : CN_ENOMEM,
						   "source %s: bad database name in the dsn", h->source);
			free(db);
			if (rc)
				return rc;
		}
		p += n;
	}
	if (*p == '?') {
		int rc = dsn_query(h, p + 1, err);
		if (rc)
			return rc;
	}
	if (!h->ndatabases)
		return cn_error_set(err, CN_ECONFIG, "source %s: the dsn names no database: "
				    "mysql://user:password@host:port/database", h->source);
	if (!h->user)
		return cn_error_set(err, CN_ECONFIG, "source %s: the dsn names no user: "
				    "mysql://user:password@host:port/database", h->source);
	struct dstr t = {0};
	int rc;
	if (h->socket)
		rc = dstr_printf(&t, "socket %s", h->socket);
	else
		rc = dstr_printf(&t, "%s:%u", h->host ? h->host : "localhost", h->port ? h->port : 3306);
	if (rc == CN_OK)
		rc = dstr_printf(&t, " database %s user %s", h->databases[0], h->user);
	if (rc) {
		dstr_free(&t);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	h->target = t.data;
	return CN_OK;
}

static void wipe_free(char *s)
{
	if (s)
		memset(s, 0, strlen(s));
	free(s);
}

void my_dsn_free(struct my_handle *h)
{
	free(h->host);
	free(h->user);
	wipe_free(h->password);
	free(h->socket);
	for (size_t i = 0; i < h->ndatabases; i++)
		free(h->databases[i]);
	free(h->databases);
	free(h->ssl_ca);
	free(h->ssl_capath);
	free(h->ssl_cert);
	free(h->ssl_key);
	free(h->target);
	h->host = h->user = h->password = h->socket = h->ssl_ca = h->ssl_capath = NULL;
	h->ssl_cert = h->ssl_key = h->target = NULL;
	h->databases = NULL;
	h->ndatabases = 0;
}

/* ---- connecting ---- */

static unsigned budget_s(uint32_t ms)
{
	return (unsigned)((ms + MY_CLIENT_SLACK_MS + 999) / 1000);
}

static int set_options(struct my_handle *h, MYSQL *m, unsigned timeout_s, unsigned connect_s)
{
	unsigned int zero = 0;
	my_bool on = 1;
	if (mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4") ||
	    mysql_optionsv(m, MYSQL_OPT_LOCAL_INFILE, &zero) ||
	    mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &connect_s) ||
	    mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &timeout_s) ||
	    mysql_optionsv(m, MYSQL_OPT_WRITE_TIMEOUT, &timeout_s) ||
	    mysql_optionsv(m, MYSQL_OPT_CONNECT_ATTR_ADD, "program_name", "interactor-connector"))
		return CN_ENOMEM;
	if (h->ssl_mode >= MY_SSL_REQUIRED && mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &on))
		return CN_ENOMEM;
	/* Connector/C checks the chain and the host name together: VERIFY_CA
	 * is as strict as VERIFY_IDENTITY here (docs/mysql.md). */
	if (h->ssl_mode >= MY_SSL_VERIFY_CA && mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on))
		return CN_ENOMEM;
	if ((h->ssl_ca && mysql_optionsv(m, MYSQL_OPT_SSL_CA, h->ssl_ca)) ||
	    (h->ssl_capath && mysql_optionsv(m, MYSQL_OPT_SSL_CAPATH, h->ssl_capath)) ||
	    (h->ssl_cert && mysql_optionsv(m, MYSQL_OPT_SSL_CERT, h->ssl_cert)) ||
	    (h->ssl_key && mysql_optionsv(m, MYSQL_OPT_SSL_KEY, h->ssl_key)))
		return CN_ENOMEM;
	return CN_OK;
}

/* A new connection (not pinned); CN_EUNAVAILABLE / CN_EAUTH naming the
 * target, never the password. */
static int my_connect(struct my_handle *h, unsigned timeout_s, unsigned connect_s, MYSQL **out,
		      struct cn_error *err)
{
	MYSQL *m = mysql_init(NULL);
	if (!m || set_options(h, m, timeout_s, connect_s)) {
		mysql_close(m);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	if (!mysql_real_connect(m, h->socket ? "localhost" : h->host, h->user, h->password,
				h->databases[0], h->port, h->socket, 0)) {
		char msg[400];
		unsigned int e = mysql_errno(m);
		my_error_text(h, e, mysql_sqlstate(m), mysql_error(m), msg, sizeof msg);
		mysql_close(m);
		int code = my_errno_status(e);
		if (code != CN_EAUTH && code != CN_EBUSY)
			code = CN_EUNAVAILABLE;
		return cn_error_set(err, code, "cannot connect to %s at %s: %s",
				    h->mariadb || !h->server_version ? "MariaDB/MySQL" : "MySQL",
				    h->target, msg);
	}
	*out = m;
	return CN_OK;
}

/* The settings whose change after a query makes the driver reset the session. */
#define TRACKED "sql_mode,character_set_client,character_set_connection,character_set_results," \
		"time_zone,autocommit,lc_time_names"

static int pins_text(struct my_handle *h, char *buf, size_t size)
{
	uint32_t t = h->timeout_ms ? h->timeout_ms : MY_DEFAULT_TIMEOUT_MS;
	if (t > MY_MAX_TIMEOUT_MS)
		t = MY_MAX_TIMEOUT_MS;
	int n;
	if (h->mariadb)
		n = snprintf(buf, size, "SET SESSION sql_mode='%s', time_zone='+00:00', tx_read_only=1, "
			     "autocommit=1, max_statement_time=%u.%03u, sql_select_limit=%u, "
			     "lc_time_names='en_US', session_track_state_change=0, "
			     "session_track_system_variables='%s'",
			     MY_SQL_MODE, t / 1000, t % 1000, h->max_rows, TRACKED);
	else
		n = snprintf(buf, size, "SET SESSION sql_mode='%s', time_zone='+00:00', "
			     "transaction_read_only=1, autocommit=1, max_execution_time=%u, "
			     "sql_select_limit=%u, lc_time_names='en_US', session_track_state_change=0, "
			     "session_track_system_variables='%s'",
			     MY_SQL_MODE, t, h->max_rows, TRACKED);
	return n > 0 && (size_t)n < size ? CN_OK : CN_EINTERNAL;
}

static int conn_error(struct my_handle *h, MYSQL *m, const char *what, struct cn_error *err)
{
	char msg[400];
	unsigned int e = mysql_errno(m);
	my_error_text(h, e, mysql_sqlstate(m), mysql_error(m), msg, sizeof msg);
	int code = my_errno_status(e);
	return write_classed(err, cn_error_set(err, code == CN_EQUERY ? CN_ECONFIG : code,
					       "%s at %s %s: %s", h->mariadb ? "MariaDB" : "MySQL",
					       h->target, what, msg));
}

static int pin(struct my_handle *h, MYSQL *m, struct cn_error *err)
{
	char set[768];
	if (pins_text(h, set, sizeof set))
		return cn_error_set(err, CN_EINTERNAL, "session settings do not fit");
	if (mysql_real_query(m, set, strlen(set)))
		return conn_error(h, m, "refused the session settings", err);
	return CN_OK;
}

struct pin_check {
	struct my_handle *h;
	struct cn_error *err;
	int rc;
};

static int pin_row(void *ctx, char **v, unsigned long *len, unsigned n)
{
	struct pin_check *pc = ctx;
	(void)len;
	static const char *const names[] = {"character_set_client", "character_set_connection",
					    "character_set_results"};
	for (unsigned i = 0; i < 3 && i < n; i++)
		if (!v[i] || strcmp(v[i], "utf8mb4") != 0)
			return pc->rc = cn_error_set(pc->err, CN_ECONFIG,
						     "%s at %s runs with %s=%s; the connector needs "
						     "utf8mb4 (MariaDB 10.2+, MySQL 5.7+)",
						     pc->h->mariadb ? "MariaDB" : "MySQL", pc->h->target,
						     names[i], v[i] ? v[i] : "NULL");
	if (n < 4 || !v[3] || strstr(v[3], "ANSI_QUOTES") || strstr(v[3], "NO_BACKSLASH_ESCAPES"))
		return pc->rc = cn_error_set(pc->err, CN_ECONFIG, "%s at %s did not take the session's "
					     "sql_mode (it is %s)", pc->h->mariadb ? "MariaDB" : "MySQL",
					     pc->h->target, n >= 4 && v[3] ? v[3] : "NULL");
	return CN_OK;
}

/* A new pinned connection for a slot; learns the server's kind on the way. */
static int connect_pinned(struct my_handle *h, MYSQL **out, struct cn_error *err)
{
	uint32_t t = h->timeout_ms ? h->timeout_ms : MY_DEFAULT_TIMEOUT_MS;
	MYSQL *m;
	int rc = my_connect(h, budget_s(t > MY_MAX_TIMEOUT_MS ? MY_MAX_TIMEOUT_MS : t), 10, &m, err);
	if (rc)
		return rc;
	const char *info = mysql_get_server_info(m);
	h->mariadb = info && strstr(info, "MariaDB");
	h->server_version = mysql_get_server_version(m);
	struct pin_check pc = {h, err, CN_OK};
	if ((rc = pin(h, m, err)) == CN_OK)
		rc = my_own_query(h, m, "SELECT @@character_set_client, @@character_set_connection, "
				  "@@character_set_results, @@sql_mode", NULL, 0, pin_row, &pc, err);
	if (rc == CN_OK)
		rc = pc.rc;
	if (rc) {
		mysql_close(m);
		return rc;
	}
	*out = m;
	return CN_OK;
}

/* ---- slots ---- */

void my_slot_forget_stmts(struct my_slot *s)
{
	for (size_t i = 0; i < MY_STMT_CACHE; i++) {
		struct my_cached_stmt *c = &s->stmts[i];
		if (c->st)
			mysql_stmt_close(c->st); /* after a reset or on a closed connection: local only */
		free(c->sql);
		memset(c, 0, sizeof *c);
	}
}

void my_slot_drop(struct my_handle *h, uint32_t slot)
{
	struct my_slot *s = &h->slots[slot];
	my_slot_forget_stmts(s);
	pthread_mutex_lock(&h->pool.lock);
	MYSQL *m = s->conn;
	s->conn = NULL;
	s->thread_id = 0;
	h->pool.warm[slot] = false;
	pthread_mutex_unlock(&h->pool.lock);
	mysql_close(m);
}

/* An idle connection has nothing to say: a readable socket means the
 * server closed it (restart, wait_timeout) or said something unasked. */
static bool slot_healthy(MYSQL *m)
{
	struct pollfd p = {.fd = (int)mysql_get_socket(m), .events = POLLIN};
	if (p.fd < 0)
		return false;
	return poll(&p, 1, 0) == 0;
}

int my_slot_ready(struct my_handle *h, uint32_t slot, struct cn_error *err)
{
	struct my_slot *s = &h->slots[slot];
	if (s->conn && slot_healthy(s->conn))
		return CN_OK;
	if (s->conn)
		my_slot_drop(h, slot);
	MYSQL *m;
	int rc = connect_pinned(h, &m, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&h->pool.lock);
	s->conn = m;
	s->thread_id = mysql_thread_id(m);
	h->pool.warm[slot] = true;
	pthread_mutex_unlock(&h->pool.lock);
	return CN_OK;
}

int my_slot_reset(struct my_handle *h, uint32_t slot)
{
	struct my_slot *s = &h->slots[slot];
	struct cn_error err = {0};
	if (!s->conn)
		return CN_OK;
	/* the reset deallocates every prepared statement on the server */
	int rc = mysql_reset_connection(s->conn);
	my_slot_forget_stmts(s);
	if (rc || pin(h, s->conn, &err)) {
		my_slot_drop(h, slot);
		return CN_EUNAVAILABLE;
	}
	return CN_OK;
}

int my_own_checkout(struct my_handle *h, uint32_t *slot, struct cn_error *err)
{
	uint32_t t = h->timeout_ms ? h->timeout_ms : MY_DEFAULT_TIMEOUT_MS;
	int rc = slot_pool_checkout(&h->pool, t < MY_CHECKOUT_MAX_WAIT_MS ? t : MY_CHECKOUT_MAX_WAIT_MS,
				    slot_pool_gen(&h->pool), slot, err);
	if (rc)
		return rc;
	if ((rc = my_slot_ready(h, *slot, err)))
		slot_pool_checkin(&h->pool, *slot);
	return rc;
}

/* ---- KILL QUERY ---- */

void my_killer_close(struct my_handle *h)
{
	pthread_mutex_lock(&h->killer_lock);
	mysql_close(h->killer);
	h->killer = NULL;
	pthread_mutex_unlock(&h->killer_lock);
}

int my_kill_query(struct my_handle *h, unsigned long thread_id)
{
	char sql[64];
	int rc = CN_OK;
	snprintf(sql, sizeof sql, "KILL QUERY %lu", thread_id);
	pthread_mutex_lock(&h->killer_lock);
	for (int tries = 0; tries < 2; tries++) {
		struct cn_error err = {0};
		if (!h->killer &&
		    (rc = my_connect(h, MY_KILL_TIMEOUT_S, MY_KILL_TIMEOUT_S, &h->killer, &err)))
			break;
		if (mysql_real_query(h->killer, sql, strlen(sql)) == 0) {
			rc = CN_OK;
			break;
		}
		rc = my_errno_status(mysql_errno(h->killer));
		if (mysql_errno(h->killer) == ER_NO_SUCH_THREAD) {
			rc = CN_OK; /* the statement ended on its own */
			break;
		}
		mysql_close(h->killer); /* a killer that went stale: once more on a new one */
		h->killer = NULL;
	}
	pthread_mutex_unlock(&h->killer_lock);
	return rc;
}

struct busy_ids {
	unsigned long ids[SLOT_POOL_MAX];
	size_t n;
	struct my_handle *h;
};

static void collect_busy(void *ctx, uint32_t slot)
{
	struct busy_ids *b = ctx;
	if (b->h->slots[slot].thread_id)
		b->ids[b->n++] = b->h->slots[slot].thread_id;
}

void my_cancel_all(struct my_handle *h)
{
	struct busy_ids b = {.n = 0, .h = h};
	slot_pool_cancel(&h->pool, collect_busy, &b);
	for (size_t i = 0; i < b.n; i++)
		(void)my_kill_query(h, b.ids[i]);
}

/* ---- statements of the driver's own ---- */

struct own_cols {
	MYSQL_BIND *bind;
	char **buf;
	unsigned long *len;
	my_bool *isnull;
	char **values;
	unsigned n;
};

static void own_cols_free(struct own_cols *c)
{
	for (unsigned i = 0; c->buf && i < c->n; i++)
		free(c->buf[i]);
	free(c->bind);
	free(c->buf);
	free(c->len);
	free(c->isnull);
	free(c->values);
}

static int own_cols_init(struct own_cols *c, unsigned n)
{
	c->n = n;
	c->bind = calloc(n ? n : 1, sizeof *c->bind);
	c->buf = calloc(n ? n : 1, sizeof *c->buf);
	c->len = calloc(n ? n : 1, sizeof *c->len);
	c->isnull = calloc(n ? n : 1, sizeof *c->isnull);
	c->values = calloc(n ? n : 1, sizeof *c->values);
	if (!c->bind || !c->buf || !c->len || !c->isnull || !c->values)
		return CN_ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		if (!(c->buf[i] = malloc(256)))
			return CN_ENOMEM;
		c->bind[i].buffer_type = MYSQL_TYPE_STRING;
		c->bind[i].buffer = c->buf[i];
		c->bind[i].buffer_length = 255;
		c->bind[i].length = &c->len[i];
		c->bind[i].is_null = &c->isnull[i];
	}
	return CN_OK;
}

/* After MYSQL_DATA_TRUNCATED: fetch the long columns again into bigger
 * buffers, and bind those for the next rows. */
static int own_cols_refetch(MYSQL_STMT *st, struct own_cols *c)
{
	bool grew = false;
	for (unsigned i = 0; i < c->n; i++) {
		if (c->isnull[i] || c->len[i] <= c->bind[i].buffer_length)
			continue;
		char *b = realloc(c->buf[i], c->len[i] + 1);
		if (!b)
			return CN_ENOMEM;
		c->buf[i] = b;
		c->bind[i].buffer = b;
		c->bind[i].buffer_length = c->len[i];
		grew = true;
		if (mysql_stmt_fetch_column(st, &c->bind[i], i, 0))
			return CN_EQUERY;
	}
	return grew && mysql_stmt_bind_result(st, c->bind) ? CN_EQUERY : CN_OK;
}

static int stmt_error(struct my_handle *h, MYSQL_STMT *st, const char *sql, struct cn_error *err)
{
	char msg[400];
	unsigned int e = mysql_stmt_errno(st);
	my_error_text(h, e, mysql_stmt_sqlstate(st), mysql_stmt_error(st), msg, sizeof msg);
	int code = my_errno_status(e);
	return write_classed(err, cn_error_set(err, code == CN_ECANCELED ? CN_ETIMEOUT : code,
					       "%s at %s: %.40s...: %s",
					       h->mariadb ? "MariaDB" : "MySQL", h->target, sql, msg));
}

int my_own_query(struct my_handle *h, MYSQL *conn, const char *sql, const char *const *params,
		 size_t nparams, my_row_fn row, void *ctx, struct cn_error *err)
{
	MYSQL_STMT *st = mysql_stmt_init(conn);
	struct own_cols c = {0};
	MYSQL_BIND *pb = NULL;
	unsigned long *plen = NULL;
	int rc = CN_OK;
	if (!st)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	if (nparams) {
		pb = calloc(nparams, sizeof *pb);
		plen = calloc(nparams, sizeof *plen);
		if (!pb || !plen) {
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < nparams; i++) {
			plen[i] = strlen(params[i]);
			pb[i].buffer_type = MYSQL_TYPE_STRING;
			pb[i].buffer = (void *)params[i];
			pb[i].buffer_length = plen[i];
			pb[i].length = &plen[i];
		}
	}
	unsigned int count = (unsigned int)nparams;
	if (mysql_stmt_attr_set(st, STMT_ATTR_PREBIND_PARAMS, &count) ||
	    (nparams && mysql_stmt_bind_param(st, pb)) ||
	    mariadb_stmt_execute_direct(st, sql, strlen(sql))) {
		rc = stmt_error(h, st, sql, err);
		goto out;
	}
	unsigned n = mysql_stmt_field_count(st);
	if ((rc = own_cols_init(&c, n))) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto out;
	}
	if (n && mysql_stmt_bind_result(st, c.bind)) {
		rc = stmt_error(h, st, sql, err);
		goto out;
	}
	while (n) {
		int f = mysql_stmt_fetch(st);
		if (f == MYSQL_NO_DATA)
			break;
		if (f == 1) {
			rc = stmt_error(h, st, sql, err);
			break;
		}
		if (f == MYSQL_DATA_TRUNCATED && (rc = own_cols_refetch(st, &c))) {
			rc = cn_error_set(err, rc, "reading the result of %.40s... failed", sql);
			break;
		}
		for (unsigned i = 0; i < n; i++) {
			c.values[i] = c.isnull[i] ? NULL : c.buf[i];
			if (!c.isnull[i])
				c.buf[i][c.len[i] < c.bind[i].buffer_length ? c.len[i] : c.bind[i].buffer_length] = '\0';
		}
		if (row && (rc = row(ctx, c.values, c.len, n)))
			break;
	}
out:
	own_cols_free(&c);
	free(pb);
	free(plen);
	mysql_stmt_close(st);
	return rc;
}
