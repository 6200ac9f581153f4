/*
 * pg_exec.c - running one request on a pool connection.
 *
 * One pipeline batch, one round trip, extended protocol only:
 *
 *   BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ
 *   SET LOCAL statement_timeout = <ms>     (only when it differs from the
 *                                           session's, the source's budget)
 *   <the query, parameters bound>                  (single-row mode)
 *   ROLLBACK
 *   DISCARD ALL
 *   Sync
 *
 * One Sync: the batch leaves in one write and the answers come back in one,
 * one wake-up on each side. ROLLBACK ends the transaction; DISCARD ALL then
 * runs in a transaction of its own, outside any transaction block as it must.
 * Whatever the session picked up (settings, prepared statements, advisory
 * locks, LISTEN, temporary objects) is gone before the connection is reused.
 *
 * When the query fails (an error, a cancel, a timeout), the server skips the
 * rest of the batch up to the Sync, so ROLLBACK and DISCARD ALL did not run:
 * they are sent again, on their own, before the connection goes back to the
 * pool. Failed requests pay that second round trip; successful ones do not.
 * When the reset does not complete even then, the connection is closed.
 *
 * Rows stream into the sink. When it is full, the rest is cancelled with
 * PQcancel and drained. A client-side deadline (timeout + 1 s) cancels too;
 * if the server then stays silent for 2 s (rows still arriving count as an
 * answer, up to the deadline + 2 s), the connection is dropped.
 *
 * Memory: libpq's input buffer grows to hold what was read and not yet
 * parsed, and never shrinks while the connection lives. Rows are parsed
 * before the socket is read again, also while the rest of a capped result is
 * drained, so the buffer stays near its first size; a connection that had to
 * hold a row of 1 MiB or more is closed after the request instead of going
 * back to the pool with that buffer (bench/soak.sh watches the daemon's RSS).
 */
#include "pg_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_guard.h"

#define FULL_DRAIN_MS 20 /* after the sink is full, rows already on the way are read for this long */
/* A connection that received a row this large is closed after the request:
 * libpq's input buffer grew to hold the row and never shrinks, so a pooled
 * connection would keep that memory for as long as it lives. */
#define RECYCLE_ROW_BYTES (1u << 20)

enum cancel_why { CANCEL_NONE, CANCEL_FULL, CANCEL_DEADLINE, CANCEL_SHUTDOWN, CANCEL_SINK };

/* Parameters as libpq takes them. */
struct params {
	int n;
	const char **values;
	int *lengths, *formats;
	Oid *types;
	char **owned; /* NUL-terminated copies and formatted numbers */
};

struct run {
	struct pg_handle *h;
	struct pg_slot *slot;
	const struct cn_query *q;
	const struct params *p;
	const struct cn_result_sink *sink;
	uint32_t timeout_ms;
	int query_stmt; /* the query's place in the first segment: after BEGIN [, SET LOCAL] */
	unsigned gen;
	int64_t deadline, hard_deadline, full_at;
	int64_t drain_limit; /* after a cancel, the latest hard_deadline can move to */
	enum cancel_why canceled;
	bool discarding; /* no more rows wanted */
	bool full;       /* ... because the sink said CN_SINK_FULL */
	bool query_done; /* every result of the query itself has arrived */
	bool touched;    /* the sink received something */
	bool broken;     /* the connection failed */
	bool dirty;      /* the reset did not complete */
	bool big_row;    /* a row of RECYCLE_ROW_BYTES or more arrived */
	int sink_rc;
	int query_rc; /* the query's own failure */
	char query_msg[512];
	char query_state[6];
	char conn_msg[400];
	struct pg_col *cols;
	int ncols;
	struct dstr scratch;
};

/* ---- parameters ---- */

static void params_free(struct params *p)
{
	for (int i = 0; p->owned && i < p->n; i++)
		free(p->owned[i]);
	free(p->owned);
	free(p->values);
	free(p->lengths);
	free(p->formats);
	free(p->types);
}

static int param_text(struct params *p, int i, const char *s, size_t len, struct cn_error *err)
{
	if (memchr(s, '\0', len))
		return cn_error_set(err, CN_EINVAL, "parameter $%d contains a NUL byte, which "
				    "PostgreSQL text cannot hold", i + 1);
	if (!(p->owned[i] = strndup(s, len)))
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	p->values[i] = p->owned[i];
	return CN_OK;
}

static int param_number(struct params *p, int i, const struct cn_value *v, struct cn_error *err)
{
	char buf[40];
	if (v->kind == CN_VAL_INT)
		snprintf(buf, sizeof buf, "%" PRId64, v->u.i);
	else if (isnan(v->u.d))
		snprintf(buf, sizeof buf, "NaN");
	else if (isinf(v->u.d))
		snprintf(buf, sizeof buf, "%sInfinity", v->u.d < 0 ? "-" : "");
	else
		snprintf(buf, sizeof buf, "%.17g", v->u.d);
	return param_text(p, i, buf, strlen(buf), err);
}

/* Text with type OID 0 (the server infers the type from the query), bytea
 * in binary with its type, NULL as NULL. */
static int params_build(struct params *p, const struct cn_query *q, struct cn_error *err)
{
	int n = (int)q->nparams;
	*p = (struct params){.n = n};
	if (n == 0)
		return CN_OK;
	p->values = calloc((size_t)n, sizeof *p->values);
	p->lengths = calloc((size_t)n, sizeof *p->lengths);
	p->formats = calloc((size_t)n, sizeof *p->formats);
	p->types = calloc((size_t)n, sizeof *p->types);
	p->owned = calloc((size_t)n, sizeof *p->owned);
	if (!p->values || !p->lengths || !p->formats || !p->types || !p->owned)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	for (int i = 0; i < n; i++) {
		const struct cn_value *v = &q->params[i];
		int rc = CN_OK;
		switch (v->kind) {
		case CN_VAL_NULL:
			break;
		case CN_VAL_BOOL:
			p->values[i] = v->u.b ? "true" : "false";
			break;
		case CN_VAL_INT:
		case CN_VAL_DOUBLE:
			rc = param_number(p, i, v, err);
			break;
		case CN_VAL_BYTES:
			if (v->u.s.len > INT32_MAX)
				return cn_error_set(err, CN_ETOOBIG, "parameter $%d is too large", i + 1);
			p->values[i] = v->u.s.len ? v->u.s.ptr : "";
			p->lengths[i] = (int)v->u.s.len;
			p->formats[i] = 1;
			p->types[i] = 17; /* bytea */
			break;
		default:
			rc = param_text(p, i, v->u.s.ptr ? v->u.s.ptr : "", v->u.s.len, err);
			break;
		}
		if (rc)
			return rc;
	}
	return CN_OK;
}

/* ---- sending ---- */

static bool send_reset(PGconn *c)
{
	return PQsendQueryParams(c, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) &&
	       PQsendQueryParams(c, "DISCARD ALL", 0, NULL, NULL, NULL, NULL, 0) && PQpipelineSync(c);
}

/* libpq queues the statements and PQpipelineSync writes them in one go (a
 * batch past libpq's 8 KiB output buffer leaves in more pieces, as it must). */
static bool send_batch(struct run *r)
{
	PGconn *c = r->slot->conn;
	char set[64] = "";
	bool with_set = r->timeout_ms != r->h->session_timeout_ms;
	if (with_set)
		snprintf(set, sizeof set, "SET LOCAL statement_timeout = %u", r->timeout_ms);
	r->query_stmt = with_set ? 2 : 1;
	return PQenterPipelineMode(c) &&
	       PQsendQueryParams(c, "BEGIN TRANSACTION READ ONLY ISOLATION LEVEL REPEATABLE READ", 0,
				 NULL, NULL, NULL, NULL, 0) &&
	       (!with_set || PQsendQueryParams(c, set, 0, NULL, NULL, NULL, NULL, 0)) &&
	       PQsendQueryParams(c, r->q->text, r->p->n, r->p->types, r->p->values, r->p->lengths,
				 r->p->formats, 0) &&
	       send_reset(c);
}

/* ---- waiting, with cancels ---- */

/* The connection failed: remember why (the message names the target, never
 * the password); the slot is dropped when the request ends. */
static int conn_broken(struct run *r)
{
	r->broken = true;
	pg_conn_message(r->h, r->slot->conn, r->conn_msg, sizeof r->conn_msg);
	return CN_EUNAVAILABLE;
}


static void run_cancel(struct run *r, enum cancel_why why)
{
	if (r->canceled != CANCEL_NONE)
		return;
	r->canceled = why;
	pg_slot_cancel(r->h, r->slot);
	/* The grace period starts once the server has the request: PQcancel
	 * waits for the postmaster, which starts a process for it and can take
	 * seconds on a loaded machine; a connection is not given up for that. */
	int64_t now = pg_now_ms();
	r->hard_deadline = now + PG_CANCEL_GRACE_MS;
	r->drain_limit = (r->deadline > now ? r->deadline : now) + PG_CANCEL_GRACE_MS;
}

/* A result arrived after the cancel: the rows the server sent before it saw
 * the request are still being read (megabytes, when the request took long),
 * so the server is answering. The grace period runs from the last result,
 * up to the request's own deadline plus the grace period. */
static void cancel_progress(struct run *r)
{
	int64_t t = pg_now_ms() + PG_CANCEL_GRACE_MS;
	if (t > r->hard_deadline)
		r->hard_deadline = t < r->drain_limit ? t : r->drain_limit;
}

/* The next result, or NULL between statements. CN_ETIMEOUT when the server
 * did not answer even after a cancel; CN_EUNAVAILABLE when the connection
 * failed. */
static int next_result(struct run *r, PGresult **out)
{
	PGconn *c = r->slot->conn;
	for (;;) {
		if (r->discarding && !r->query_done && r->canceled == CANCEL_NONE) {
			/* Rows already on the way are read; a query still running is
			 * cancelled. The socket is read only when no whole row is left in
			 * libpq's buffer: reading ahead of the parsing made the buffer
			 * grow to megabytes on a large result, and libpq never shrinks it
			 * while the connection stays in the pool. */
			if (PQisBusy(c)) {
				if (!PQconsumeInput(c))
					goto broken;
				if (PQisBusy(c)) /* nothing whole came: the server is still producing */
					run_cancel(r, r->sink_rc < 0 ? CANCEL_SINK : CANCEL_FULL);
			}
			if (pg_now_ms() - r->full_at > FULL_DRAIN_MS)
				run_cancel(r, r->sink_rc < 0 ? CANCEL_SINK : CANCEL_FULL);
		}
		if (!PQisBusy(c)) {
			if (r->canceled != CANCEL_NONE)
				cancel_progress(r);
			*out = PQgetResult(c);
			return CN_OK;
		}
		int64_t now = pg_now_ms();
		if (r->canceled == CANCEL_NONE && pg_pool_gen(r->h) != r->gen)
			run_cancel(r, CANCEL_SHUTDOWN);
		if (r->canceled == CANCEL_NONE && now >= r->deadline)
			run_cancel(r, CANCEL_DEADLINE);
		if (r->canceled != CANCEL_NONE && now >= r->hard_deadline) {
			r->broken = true;
			snprintf(r->conn_msg, sizeof r->conn_msg,
				 "the server did not answer a cancel request within %d ms",
				 PG_CANCEL_GRACE_MS);
			return CN_ETIMEOUT;
		}
		int64_t until = r->canceled != CANCEL_NONE ? r->hard_deadline : r->deadline;
		int64_t wait = until - now;
		struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
		if (p.fd < 0)
			goto broken;
		int n = poll(&p, 1, wait > 100 ? 100 : wait < 1 ? 1 : (int)wait);
		if (n < 0 && errno != EINTR)
			goto broken;
		if (n > 0 && !PQconsumeInput(c))
			goto broken;
	}
broken:
	return conn_broken(r);
}

/* ---- the sink ---- */

/* Stop reading rows; cancel at once unless the sink is merely full. */
static void stop_rows(struct run *r, bool at_once)
{
	r->discarding = true;
	r->full_at = pg_now_ms() - (at_once ? FULL_DRAIN_MS + 1 : 0);
}

static void sink_failed(struct run *r, int rc)
{
	if (rc == CN_SINK_FULL) {
		r->full = true;
		stop_rows(r, false);
		return;
	}
	r->sink_rc = rc < 0 ? rc : CN_EINTERNAL;
	stop_rows(r, true);
}

static void send_columns(struct run *r, const PGresult *res)
{
	int n = PQnfields(res);
	struct cn_error err = {0};
	int rc = CN_ENOMEM;
	r->cols = calloc(n ? (size_t)n : 1, sizeof *r->cols);
	if (r->cols) {
		r->ncols = n;
		rc = pg_cat_describe(r->h, res, r->cols, &err);
	}
	if (rc) {
		/* a result that cannot be described (origins unknown) is not sent */
		r->query_rc = rc;
		snprintf(r->query_msg, sizeof r->query_msg, "%s",
			 rc == CN_ENOMEM ? "out of memory" : err.message);
		stop_rows(r, true);
		return;
	}
	r->touched = true;
	for (int i = 0; i < n; i++) {
		const struct pg_col *c = &r->cols[i];
		struct cn_column_info info = {
			.name = c->name,
			.type = c->type,
			.origin_schema = c->schema,
			.origin_table = c->table,
			.origin_column = c->column,
		};
		if ((rc = r->sink->column(r->sink->ctx, &info)) < 0) {
			sink_failed(r, rc);
			return;
		}
	}
}

static void send_row(struct run *r, const PGresult *res)
{
	for (int i = 0; i < r->ncols; i++) {
		struct cn_value v = {.kind = CN_VAL_NULL};
		int rc = CN_OK;
		if (!PQgetisnull(res, 0, i)) {
			const struct pg_col *c = &r->cols[i];
			rc = pg_cell_convert(c->kind, c->elem_kind, c->delim, PQgetvalue(res, 0, i),
					     (size_t)PQgetlength(res, 0, i), &r->scratch, &v);
			if (rc == CN_EINVAL) { /* text we could not convert: pass it on as text */
				v.kind = CN_VAL_TEXT;
				v.u.s.ptr = PQgetvalue(res, 0, i);
				v.u.s.len = (size_t)PQgetlength(res, 0, i);
				rc = CN_OK;
			}
		}
		if (rc == CN_OK)
			rc = r->sink->cell(r->sink->ctx, &v);
		if (rc < 0) {
			sink_failed(r, rc);
			return;
		}
	}
	int rc = r->sink->row_end(r->sink->ctx);
	if (rc != CN_OK)
		sink_failed(r, rc);
}

static void query_result(struct run *r, const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	if ((st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) && !r->cols && !r->discarding)
		send_columns(r, res);
	if (st == PGRES_SINGLE_TUPLE && !r->discarding)
		send_row(r, res);
}

/* ---- one attempt ---- */

static void note_row_size(struct run *r, const PGresult *res)
{
	size_t bytes = 0;
	int n = PQnfields(res);
	for (int row = 0; row < PQntuples(res) && !r->big_row; row++) {
		for (int i = 0; i < n; i++)
			bytes += (size_t)PQgetlength(res, row, i);
		r->big_row = bytes >= RECYCLE_ROW_BYTES;
		bytes = 0;
	}
}

static void record_error(struct run *r, const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	snprintf(r->query_state, sizeof r->query_state, "%s", state ? state : "");
	pg_error_text(r->h, res, r->query_msg, sizeof r->query_msg);
	r->query_rc = pg_sqlstate_status(state);
	/* cancel() may have reached the server before this thread noticed it */
	if (r->query_rc == CN_ETIMEOUT && r->canceled == CANCEL_NONE && pg_pool_gen(r->h) != r->gen)
		r->canceled = CANCEL_SHUTDOWN;
}

/* Reads one segment's results up to its Sync. The batch's segment (query
 * true) holds BEGIN, [SET,] the query, ROLLBACK and DISCARD ALL; a reset
 * segment only the last two. *reset_ok: both of those completed. */
static int read_segment(struct run *r, bool query, bool *reset_ok)
{
	PGconn *c = r->slot->conn;
	int stmt = 0, resets = 0;
	int first_reset = query ? r->query_stmt + 1 : 0;
	bool single = false;
	for (;;) {
		if (query && stmt == r->query_stmt && !single) {
			PQsetSingleRowMode(c);
			single = true;
		}
		PGresult *res;
		int rc = next_result(r, &res);
		if (rc)
			return rc;
		if (!res) { /* the end of one statement's results */
			if (PQstatus(c) == CONNECTION_BAD)
				return conn_broken(r);
			if (query && stmt == r->query_stmt)
				r->query_done = true;
			stmt++;
			continue;
		}
		ExecStatusType st = PQresultStatus(res);
		switch (st) {
		case PGRES_PIPELINE_SYNC:
			PQclear(res);
			r->query_done = true;
			*reset_ok = resets == 2;
			return CN_OK;
		case PGRES_PIPELINE_ABORTED:
			break;
		case PGRES_COMMAND_OK:
			if (stmt >= first_reset)
				resets++;
			break;
		case PGRES_SINGLE_TUPLE:
		case PGRES_TUPLES_OK:
			note_row_size(r, res);
			if (query && stmt == r->query_stmt)
				query_result(r, res);
			break;
		case PGRES_FATAL_ERROR:
			if (query && stmt <= r->query_stmt && !r->query_rc)
				record_error(r, res);
			break;
		default: /* COPY and the like cannot occur after the statement gate */
			r->dirty = r->broken = true;
			snprintf(r->conn_msg, sizeof r->conn_msg, "unexpected %s from the server",
				 PQresStatus(st));
			PQclear(res);
			return CN_EUNAVAILABLE;
		}
		PQclear(res);
		if (PQstatus(c) == CONNECTION_BAD)
			return conn_broken(r);
	}
}

/* Reads the batch; when the query's failure skipped the reset, runs it. */
static int read_batch(struct run *r)
{
	PGconn *c = r->slot->conn;
	bool reset_ok = false;
	int rc = read_segment(r, true, &reset_ok);
	if (rc == CN_OK && !reset_ok) {
		if (!send_reset(c))
			return conn_broken(r);
		rc = read_segment(r, false, &reset_ok);
		if (rc == CN_OK && !reset_ok)
			r->dirty = true;
	}
	if (rc == CN_OK && !PQexitPipelineMode(c))
		r->dirty = true;
	return rc;
}

static int attempt(struct run *r)
{
	return send_batch(r) ? read_batch(r) : conn_broken(r);
}

/* The request's status once the batch is read. */
static int run_status(struct run *r, int rc, struct cn_error *err)
{
	if (r->canceled == CANCEL_SHUTDOWN)
		return cn_error_set(err, CN_ECANCELED, "the query was canceled: the connector is "
				    "shutting down");
	if (r->canceled == CANCEL_DEADLINE || (rc == CN_ETIMEOUT && r->canceled != CANCEL_FULL))
		return cn_error_set(err, CN_ETIMEOUT, "the query ran longer than its time limit of "
				    "%u ms and was canceled", r->timeout_ms);
	if (r->sink_rc < 0)
		return cn_error_set(err, r->sink_rc, "the result could not be written (status %d)",
				    r->sink_rc);
	if (r->full)
		return CN_OK; /* every row the sink wanted arrived; the rest was cancelled */
	if (rc == CN_EUNAVAILABLE || (rc && r->broken)) {
		return cn_error_set(err, CN_EUNAVAILABLE, "lost the connection to PostgreSQL at %s: %s",
				    r->h->target, r->conn_msg);
	}
	if (r->query_rc) {
		if (r->query_rc == CN_ETIMEOUT)
			return cn_error_set(err, CN_ETIMEOUT, "the query ran longer than its time limit "
					    "of %u ms and was canceled", r->timeout_ms);
		if (r->query_rc == CN_EREJECTED) /* 25006: the read-only transaction refused a write */
			return cn_error_reject(err, CN_REJECT_WRITE, "%s", r->query_msg);
		return cn_error_set(err, r->query_rc, "%s", r->query_msg);
	}
	return CN_OK;
}

static uint32_t effective_timeout(const struct pg_handle *h, const struct cn_query *q)
{
	uint32_t t = q->timeout_ms ? q->timeout_ms : h->timeout_ms;
	if (t == 0)
		t = PG_DEFAULT_TIMEOUT_MS;
	return t > PG_MAX_TIMEOUT_MS ? PG_MAX_TIMEOUT_MS : t;
}

int pg_exec_query(struct pg_handle *h, const struct cn_query *q, const struct cn_result_sink *sink,
		  struct cn_error *err)
{
	/* The statement gate, unless the full guard accepted this very text. */
	int max_param = 0, rc = CN_OK;
	if (!verdicts_get(&h->verdicts, q->text, atomic_load(&h->rels_gen), &max_param) &&
	    (rc = pg_guard_shape(q->text, &max_param, err)))
		return rc;
	if ((size_t)max_param != q->nparams)
		return cn_error_set(err, CN_EINVAL, "the query uses %d parameter%s ($1..$%d) but %zu "
				    "%s given", max_param, max_param == 1 ? "" : "s", max_param,
				    q->nparams, q->nparams == 1 ? "was" : "were");
	struct params p;
	rc = params_build(&p, q, err);
	if (rc)
		goto out_params;
	uint32_t timeout = effective_timeout(h, q);
	unsigned gen = pg_pool_gen(h);
	struct pg_slot *slot;
	uint32_t wait = timeout < PG_CHECKOUT_MAX_WAIT_MS ? timeout : PG_CHECKOUT_MAX_WAIT_MS;
	if ((rc = pg_pool_checkout(h, wait, gen, &slot, err)))
		goto out_params;
	for (int tries = 0; tries < 2; tries++) {
		if ((rc = pg_slot_ready(h, slot, err)))
			break;
		struct run r = {.h = h, .slot = slot, .q = q, .p = &p, .sink = sink,
				.timeout_ms = timeout, .gen = gen};
		r.deadline = pg_now_ms() + timeout + PG_CLIENT_SLACK_MS;
		int arc = attempt(&r);
		rc = run_status(&r, arc, err);
		bool retry = r.broken && !r.touched && r.canceled == CANCEL_NONE && tries == 0;
		if (r.broken || r.dirty || r.big_row)
			pg_slot_drop(h, slot);
		pg_cols_free(r.cols, r.ncols);
		dstr_free(&r.scratch);
		if (!retry)
			break;
		if (err)
			memset(err, 0, sizeof *err);
		/* the connection failed before anything reached the sink: nothing was
		 * committed (the transaction is read-only and never commits), so the
		 * query runs again on a fresh connection */
	}
	pg_pool_checkin(h, slot);
out_params:
	params_free(&p);
	return rc;
}
