/*
 * my_exec.c - running one request on a pool connection.
 *
 * On MariaDB, one round trip, binary protocol only:
 *
 *   mariadb_stmt_execute_direct(
 *     SET STATEMENT max_statement_time=<budget>, sql_select_limit=<max_rows+1>,
 *                   tx_read_only=1 FOR <the query, $n as ?>)
 *     with the parameters bound (COM_STMT_PREPARE and COM_STMT_EXECUTE leave
 *     in one write; the rows stream back unbuffered)
 *
 * The statement stays prepared on the connection (up to MY_STMT_CACHE of
 * them, the least recently used is closed): the next request with the very
 * same text is a COM_STMT_EXECUTE of it, which saves the server the parse
 * and the plan. A reset (below) deallocates them.
 *
 * SET STATEMENT makes the read-only mode, the time budget and the row cap
 * properties of this one statement: nothing an earlier statement left in the
 * session can loosen them, and the server restores them afterwards even if
 * a stored function the query called changed them. Outside one transaction
 * (autocommit), the statement is its own read-only transaction: a write
 * fails with error 1792 whatever the grants.
 *
 * The session is reset (COM_RESET_CONNECTION, then the pinned settings:
 * two more round trips) only after a query that could have left something
 * behind: one that called a function not on the guard's list of pure
 * built-ins (a stored function can set variables, take GET_LOCK locks,
 * create temporary tables), or one after which the server reported that a
 * pinned setting changed (sql_mode, character sets, time zone...). Everything else a SELECT the guard accepts can
 * do ends with the statement. tests/integration/test_mysql_exec.c proves
 * both sides: the state a stored function leaves is gone for the next
 * request, and plain queries do not pay for a reset.
 *
 * On MySQL 8 (no SET STATEMENT), the query runs between START TRANSACTION
 * READ ONLY and ROLLBACK under the session's pinned max_execution_time.
 *
 * Rows stream into the sink. When it is full, rows already on the way are
 * read for MY_FULL_DRAIN_MS; a query still sending after that is stopped
 * with KILL QUERY from the driver's second connection, and the connection
 * is closed rather than reused. The client's own deadline is the read
 * timeout (budget + 1 s): when it fires, KILL QUERY stops the server's work
 * and the connection is closed. A connection that fails before anything
 * reached the sink is retried once on a fresh one (a server restart): the
 * statement is read-only, so running it again changes nothing.
 */
#include "my_internal.h"

#include <errmsg.h>
#include <mysqld_error.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "my_guard.h"
#include "my_types.h"

struct run {
	struct my_handle *h;
	uint32_t slot;
	MYSQL *conn;
	const struct cn_query *q;
	const struct cn_result_sink *sink;
	const char *sql; /* what the server receives */
	size_t len;
	MYSQL_BIND *params;
	size_t nparams;
	uint32_t timeout_ms;
	unsigned gen;
	int64_t start;

	MYSQL_STMT *st;
	struct my_cached_stmt *cached; /* st belongs to the slot's cache */
	uint64_t hash;                 /* of sql, for the cache */
	MYSQL_RES *meta;
	struct my_col *cols;
	MYSQL_BIND *binds;
	unsigned ncols;

	bool touched;   /* the sink received something */
	bool broken;    /* the connection failed: drop it */
	bool killed;    /* KILL QUERY was sent: drop the connection */
	bool full;      /* the sink is full */
	bool discarding;
	bool reset;     /* the session must be reset before reuse */
	int64_t full_at;
	int sink_rc;
	unsigned int errnum; /* the server's or client's error, 0 when none */
	char msg[400];
};

/* ---- parameters ---- */

static void bind_param(MYSQL_BIND *b, const struct cn_value *v, long long *i, double *d,
		       unsigned long *len)
{
	memset(b, 0, sizeof *b);
	switch (v->kind) {
	case CN_VAL_NULL:
		b->buffer_type = MYSQL_TYPE_NULL;
		break;
	case CN_VAL_BOOL:
		*i = v->u.b;
		b->buffer_type = MYSQL_TYPE_LONGLONG;
		b->buffer = i;
		break;
	case CN_VAL_INT:
		*i = v->u.i;
		b->buffer_type = MYSQL_TYPE_LONGLONG;
		b->buffer = i;
		break;
	case CN_VAL_DOUBLE:
		*d = v->u.d;
		b->buffer_type = MYSQL_TYPE_DOUBLE;
		b->buffer = d;
		break;
	case CN_VAL_BYTES:
		*len = v->u.s.len;
		b->buffer_type = MYSQL_TYPE_BLOB;
		b->buffer = (void *)v->u.s.ptr;
		b->buffer_length = *len;
		b->length = len;
		break;
	default: /* text, numeric text, JSON text */
		*len = v->u.s.len;
		b->buffer_type = MYSQL_TYPE_STRING;
		b->buffer = (void *)(v->u.s.ptr ? v->u.s.ptr : "");
		b->buffer_length = *len;
		b->length = len;
		break;
	}
}

struct params {
	MYSQL_BIND *b;
	long long *i;
	double *d;
	unsigned long *len;
	size_t n;
};

static void params_free(struct params *p)
{
	free(p->b);
	free(p->i);
	free(p->d);
	free(p->len);
}

static int params_build(struct params *p, const struct my_prepared *prep, const struct cn_query *q,
			struct cn_error *err)
{
	memset(p, 0, sizeof *p);
	p->n = prep->nbinds;
	if (!p->n)
		return CN_OK;
	p->b = calloc(p->n, sizeof *p->b);
	p->i = calloc(p->n, sizeof *p->i);
	p->d = calloc(p->n, sizeof *p->d);
	p->len = calloc(p->n, sizeof *p->len);
	if (!p->b || !p->i || !p->d || !p->len)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	for (size_t k = 0; k < p->n; k++)
		bind_param(&p->b[k], &q->params[prep->binds[k]], &p->i[k], &p->d[k], &p->len[k]);
	return CN_OK;
}

/* ---- the statement ---- */

static void record_conn_error(struct run *r)
{
	r->errnum = mysql_errno(r->conn);
	my_error_text(r->h, r->errnum, mysql_sqlstate(r->conn), mysql_error(r->conn), r->msg,
		      sizeof r->msg);
	r->broken = true;
}

static void record_stmt_error(struct run *r)
{
	r->errnum = mysql_stmt_errno(r->st);
	if (!r->errnum) { /* an error in place of the first row lands on the connection */
		record_conn_error(r);
		r->broken = my_errno_status(r->errnum) == CN_EUNAVAILABLE;
		return;
	}
	my_error_text(r->h, r->errnum, mysql_stmt_sqlstate(r->st), mysql_stmt_error(r->st), r->msg,
		      sizeof r->msg);
	if (my_errno_status(r->errnum) == CN_EUNAVAILABLE)
		r->broken = true;
}

static void sink_failed(struct run *r, int rc)
{
	r->discarding = true;
	r->full_at = my_now_ms();
	if (rc == CN_SINK_FULL)
		r->full = true;
	else
		r->sink_rc = rc < 0 ? rc : CN_EINTERNAL;
}

static int describe(struct run *r)
{
	r->ncols = mysql_stmt_field_count(r->st);
	if (!r->ncols)
		return CN_OK;
	r->meta = mysql_stmt_result_metadata(r->st);
	r->cols = calloc(r->ncols, sizeof *r->cols);
	r->binds = calloc(r->ncols, sizeof *r->binds);
	if (!r->meta || !r->cols || !r->binds)
		return CN_ENOMEM;
	MYSQL_FIELD *f = mysql_fetch_fields(r->meta);
	for (unsigned i = 0; i < r->ncols; i++)
		if (my_col_setup(&r->cols[i], &f[i], &r->binds[i]))
			return CN_ENOMEM;
	if (mysql_stmt_bind_result(r->st, r->binds)) {
		record_stmt_error(r);
		return CN_EQUERY;
	}
	r->touched = true;
	for (unsigned i = 0; i < r->ncols; i++) {
		/* view columns name their base table with an empty database */
		struct cn_column_info info = {
			.name = f[i].name,
			.type = r->cols[i].type,
			.origin_schema = f[i].db && *f[i].db ? f[i].db : NULL,
			.origin_table = f[i].org_table && *f[i].org_table ? f[i].org_table : NULL,
			.origin_column = f[i].org_name && *f[i].org_name && f[i].org_table &&
						 *f[i].org_table ? f[i].org_name : NULL,
		};
		int rc = r->sink->column(r->sink->ctx, &info);
		if (rc < 0) {
			sink_failed(r, rc);
			break;
		}
	}
	return CN_OK;
}

static void send_row(struct run *r)
{
	for (unsigned i = 0; i < r->ncols; i++) {
		struct cn_value v;
		my_col_value(&r->cols[i], &v);
		int rc = r->sink->cell(r->sink->ctx, &v);
		if (rc < 0) {
			sink_failed(r, rc);
			return;
		}
	}
	int rc = r->sink->row_end(r->sink->ctx);
	if (rc != CN_OK)
		sink_failed(r, rc);
}

static void kill_running(struct run *r)
{
	if (r->killed)
		return;
	r->killed = true;
	(void)my_kill_query(r->h, r->h->slots[r->slot].thread_id);
}

static int fetch_rows(struct run *r)
{
	for (;;) {
		int f = mysql_stmt_fetch(r->st);
		if (f == MYSQL_NO_DATA)
			return CN_OK;
		if (f == 1) {
			record_stmt_error(r);
			return CN_EQUERY;
		}
		if (f == MYSQL_DATA_TRUNCATED) {
			bool rebind = false;
			for (unsigned i = 0; i < r->ncols; i++)
				if (my_col_refetch(&r->cols[i], &r->binds[i], r->st, i, &rebind))
					return CN_ENOMEM;
			if (rebind && mysql_stmt_bind_result(r->st, r->binds)) {
				record_stmt_error(r);
				return CN_EQUERY;
			}
		}
		if (!r->discarding)
			send_row(r);
		else if (!r->killed && my_now_ms() - r->full_at > MY_FULL_DRAIN_MS)
			kill_running(r); /* the rest stops with error 1317 */
		if (r->sink_rc)
			kill_running(r);
	}
}

static bool simple(MYSQL *m, const char *sql)
{
	return mysql_real_query(m, sql, strlen(sql)) == 0;
}

static uint64_t text_hash(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
	return h;
}

/* The slot's prepared statement for this very text, or NULL. */
static struct my_cached_stmt *cache_find(struct my_slot *s, const char *sql, size_t len,
					 uint64_t hash)
{
	for (size_t i = 0; i < MY_STMT_CACHE; i++) {
		struct my_cached_stmt *c = &s->stmts[i];
		if (c->st && c->hash == hash && c->len == len && !memcmp(c->sql, sql, len)) {
			c->used = ++s->clock;
			return c;
		}
	}
	return NULL;
}

static void cache_evict(struct my_cached_stmt *c)
{
	mysql_stmt_close(c->st); /* COM_STMT_CLOSE: the server does not answer it */
	free(c->sql);
	memset(c, 0, sizeof *c);
}

/* Keep st, just run, for the next request with the same text. Only on an
 * idle connection: closing the evicted statement while a result is still
 * streaming would make libmariadb flush that result. */
static bool cache_put(struct my_slot *s, struct run *r)
{
	struct my_cached_stmt *victim = &s->stmts[0];
	for (size_t i = 0; i < MY_STMT_CACHE; i++) {
		if (!s->stmts[i].st) {
			victim = &s->stmts[i];
			break;
		}
		if (s->stmts[i].used < victim->used)
			victim = &s->stmts[i];
	}
	char *copy = malloc(r->len);
	if (!copy)
		return false;
	if (victim->st)
		cache_evict(victim);
	memcpy(copy, r->sql, r->len);
	*victim = (struct my_cached_stmt){copy, r->len, r->hash, r->st, ++s->clock};
	return true;
}

static int send_statement(struct run *r)
{
	struct my_slot *s = &r->h->slots[r->slot];
	r->hash = text_hash(r->sql, r->len);
	struct my_cached_stmt *c = cache_find(s, r->sql, r->len, r->hash);
	if (c) {
		r->st = c->st;
		r->cached = c;
		if ((r->nparams && mysql_stmt_bind_param(r->st, r->params)) || mysql_stmt_execute(r->st)) {
			record_stmt_error(r);
			return CN_EQUERY;
		}
		return CN_OK;
	}
	if (!(r->st = mysql_stmt_init(r->conn)))
		return CN_ENOMEM;
	unsigned int count = (unsigned int)r->nparams;
	if (mysql_stmt_attr_set(r->st, STMT_ATTR_PREBIND_PARAMS, &count) ||
	    (r->nparams && mysql_stmt_bind_param(r->st, r->params)) ||
	    mariadb_stmt_execute_direct(r->st, r->sql, r->len)) {
		record_stmt_error(r);
		return CN_EQUERY;
	}
	return CN_OK;
}

static int attempt(struct run *r)
{
	int rc;
	if (!r->h->mariadb && !simple(r->conn, "START TRANSACTION READ ONLY")) {
		record_conn_error(r);
		return CN_EQUERY;
	}
	rc = send_statement(r);
	if (rc == CN_OK && (rc = describe(r)) == CN_OK && r->ncols)
		rc = fetch_rows(r);
	unsigned int status = 0;
	if (!r->broken && !mariadb_get_infov(r->conn, MARIADB_CONNECTION_SERVER_STATUS, &status) &&
	    (status & SERVER_SESSION_STATE_CHANGED))
		r->reset = true;
	if (!r->broken && !r->h->mariadb && !simple(r->conn, "ROLLBACK"))
		r->broken = true;
	return rc;
}

static void run_cleanup(struct run *r, int rc)
{
	for (unsigned i = 0; r->cols && i < r->ncols; i++)
		my_col_free(&r->cols[i]);
	free(r->cols);
	free(r->binds);
	mysql_free_result(r->meta);
	bool healthy = rc == CN_OK && !r->broken && !r->killed;
	if (r->cached && !healthy) {
		cache_evict(r->cached); /* after a failure, prepare afresh next time */
	} else if (r->cached) {
		mysql_stmt_free_result(r->st);
	} else if (r->st) {
		/* a session that is reset loses its statements anyway */
		if (!healthy || r->reset || mysql_stmt_free_result(r->st) ||
		    !cache_put(&r->h->slots[r->slot], r))
			mysql_stmt_close(r->st);
	}
	r->cols = NULL;
	r->binds = NULL;
	r->meta = NULL;
	r->st = NULL;
	r->cached = NULL;
}

/* The request's status once the statement is done. */
static int run_status(struct run *r, int rc, struct cn_error *err)
{
	int64_t elapsed = my_now_ms() - r->start;
	bool canceled = slot_pool_gen(&r->h->pool) != r->gen;
	if (r->sink_rc < 0)
		return cn_error_set(err, r->sink_rc, "the result could not be written (status %d)",
				    r->sink_rc);
	if (r->full)
		return CN_OK; /* every row the sink wanted arrived; the rest was stopped */
	if (rc == CN_OK)
		return CN_OK;
	if (rc == CN_ENOMEM)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	int st = my_errno_status(r->errnum);
	if (canceled && (st == CN_ECANCELED || r->broken))
		return cn_error_set(err, CN_ECANCELED, "the query was canceled: the connector is "
				    "shutting down");
	if (st == CN_ETIMEOUT || (r->broken && elapsed >= (int64_t)r->timeout_ms))
		return cn_error_set(err, CN_ETIMEOUT, "the query ran longer than its time limit of "
				    "%u ms and was stopped", r->timeout_ms);
	if (r->broken)
		return cn_error_set(err, CN_EUNAVAILABLE, "lost the connection to %s at %s: %s",
				    r->h->mariadb ? "MariaDB" : "MySQL", r->h->target, r->msg);
	if (st == CN_EREJECTED)
		return cn_error_reject(err, CN_REJECT_WRITE, "the read-only session refused it: %s",
				       r->msg);
	return cn_error_set(err, st == CN_ECANCELED ? CN_EQUERY : st, "%s", r->msg);
}

static uint32_t effective_timeout(const struct my_handle *h, const struct cn_query *q)
{
	uint32_t t = q->timeout_ms ? q->timeout_ms : h->timeout_ms;
	if (t == 0)
		t = MY_DEFAULT_TIMEOUT_MS;
	return t > MY_MAX_TIMEOUT_MS ? MY_MAX_TIMEOUT_MS : t;
}

/* The text the server receives: on MariaDB the per-statement settings first. */
static int statement_text(const struct my_handle *h, const struct my_prepared *p, uint32_t timeout,
			  uint32_t max_rows, struct dstr *out)
{
	int rc = CN_OK;
	if (h->mariadb)
		rc = dstr_printf(out, "SET STATEMENT max_statement_time=%u.%03u, sql_select_limit=%u, "
				   "tx_read_only=1 FOR ", timeout / 1000, timeout % 1000, max_rows);
	return rc ? rc : dstr_append(out, p->sql, p->len);
}

int my_exec_query(struct my_handle *h, const struct cn_query *q, const struct cn_result_sink *sink,
		  struct cn_error *err)
{
	struct my_prepared prep;
	int rc = my_guard_prepare(q->text, &prep, err);
	if (rc)
		return rc;
	struct params p = {0};
	struct dstr text = {0};
	if ((size_t)prep.max_param != q->nparams) {
		rc = cn_error_set(err, CN_EINVAL, "the query uses %d parameter%s ($1..$%d) but %zu %s "
				  "given", prep.max_param, prep.max_param == 1 ? "" : "s", prep.max_param,
				  q->nparams, q->nparams == 1 ? "was" : "were");
		goto out;
	}
	uint32_t timeout = effective_timeout(h, q);
	uint32_t max_rows = q->max_rows && q->max_rows < MY_MAX_ROWS_PIN ? q->max_rows + 1
									  : MY_MAX_ROWS_PIN;
	if ((rc = params_build(&p, &prep, q, err)))
		goto out;
	unsigned gen = slot_pool_gen(&h->pool);
	uint32_t slot;
	uint32_t wait = timeout < MY_CHECKOUT_MAX_WAIT_MS ? timeout : MY_CHECKOUT_MAX_WAIT_MS;
	if ((rc = slot_pool_checkout(&h->pool, wait, gen, &slot, err)))
		goto out;
	for (int tries = 0; tries < 2; tries++) {
		if ((rc = my_slot_ready(h, slot, err)))
			break;
		/* the server's kind is known once a connection exists */
		text.len = 0;
		if ((rc = statement_text(h, &prep, timeout, max_rows, &text))) {
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
			break;
		}
		struct run r = {.h = h, .slot = slot, .conn = h->slots[slot].conn, .q = q, .sink = sink,
				.sql = text.data, .len = text.len, .params = p.b, .nparams = p.n,
				.timeout_ms = timeout, .gen = gen, .start = my_now_ms()};
		r.reset = prep.may_touch_session;
		int arc = attempt(&r);
		if (r.broken && !r.killed && arc != CN_OK && my_now_ms() - r.start >= (int64_t)timeout)
			kill_running(&r); /* the client's deadline: stop the server's work too */
		rc = run_status(&r, arc, err);
		bool retry = r.broken && !r.touched && !r.killed && tries == 0 &&
			     slot_pool_gen(&h->pool) == gen;
		run_cleanup(&r, arc);
		if (r.broken || r.killed)
			my_slot_drop(h, slot);
		else if (r.reset)
			(void)my_slot_reset(h, slot);
		if (!retry)
			break;
		if (err)
			memset(err, 0, sizeof *err);
	}
	slot_pool_checkin(&h->pool, slot);
out:
	dstr_free(&text);
	params_free(&p);
	my_prepared_free(&prep);
	return rc;
}
