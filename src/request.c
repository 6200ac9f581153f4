#include "request.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "refresh.h"
#include "runtime.h"
#include "secrets.h"
#include "signature.h"
#include "tools.h"

#define TOOL_PREFIX "/v1/tools/"
#define STATUS_PREFIX "/v1/executions/"
#define STATUS_RETRY_S 5 /* Retry-After of a 202 */
#define DUPLICATE_WAIT_MS 25000u

/* What one tool call did: its log line, its metrics and its audit record. */
struct call {
	char exec_id[EXEC_ID_MAX + 1];
	const struct tool_entry *tool; /* NULL: the URL names no tool of the catalog */
	const char *source;          /* borrowed from the config; NULL: none used */
	const char *code;            /* error code; NULL on success */
	/* for the audit log, filled only when it is on */
	bool audited;                /* the signature verified: the call is recorded */
	char assistant_id[AUDIT_ID_MAX + 1];
	char room_id[AUDIT_ID_MAX + 1];
	char fingerprint[AUDIT_FINGERPRINT_LEN + 1]; /* "": no statement */
	char *statement;             /* malloc'ed copy with audit.include_statements */
	int64_t rows;                /* -1: no statement answered */
};

void http_response_free(struct http_response *resp)
{
	free(resp->body);
	resp->body = NULL;
	free(resp->location);
	resp->location = NULL;
}

/* Move a tool_result into the response. */
static void respond(struct http_response *resp, struct tool_result *r)
{
	resp->status = r->http_status;
	resp->body = r->body;
	resp->len = r->len;
	resp->retry_after = r->retry_after;
	r->body = NULL;
}

static void respond_error(struct http_response *resp, int status, const char *code, const char *msg)
{
	struct tool_result r = {0};
	tool_result_error(&r, status, code, "%s", msg);
	respond(resp, &r);
}

static void respond_json(struct http_response *resp, int status, cJSON *root)
{
	char *text = root ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	if (!text) {
		respond_error(resp, 500, "internal_error", "out of memory");
		return;
	}
	resp->status = status;
	resp->body = text;
	resp->len = strlen(text);
}

/* GET /healthz: the process answers; sources listed, always 200. */
static void handle_health(struct app *app, struct http_response *resp)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(root, "sources");
	int all_ok = 1;
	for (size_t i = 0; i < app->sources->n; i++) {
		struct source *s = app->sources->items[i];
		struct source_status st;
		source_status(s, &st);
		all_ok &= st.available;
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", s->cfg->name);
		cJSON_AddStringToObject(o, "status", st.available ? "available" : "unavailable");
		cJSON_AddItemToArray(arr, o);
	}
	cJSON_AddStringToObject(root, "status", all_ok ? "ok" : "degraded");
	respond_json(resp, 200, root);
}

/* GET /readyz: 200 when every source is open with a schema and its last
 * refresh worked and the state store can be written, else 503; each says
 * why. Messages are the drivers' and the store's (no DSN, no secret). */
static void handle_ready(struct app *app, struct http_response *resp)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(root, "sources");
	bool all = true;
	for (size_t i = 0; i < app->sources->n; i++) {
		struct source *s = app->sources->items[i];
		struct source_status st;
		source_status(s, &st);
		cJSON *o = cJSON_CreateObject();
		char why[512];
		cJSON_AddStringToObject(o, "name", s->cfg->name);
		if (!st.available) {
			cJSON_AddStringToObject(o, "status", "unavailable");
			cJSON_AddStringToObject(o, "reason", st.error);
			all = false;
		} else if (st.refresh_error[0]) {
			char stale[700], at[21];
			signature_format_timestamp((time_t)st.refreshed_at, at);
			snprintf(stale, sizeof stale,
				 "the last schema refresh failed (%s); serving the schema read at %s",
				 st.refresh_error, at);
			cJSON_AddStringToObject(o, "status", "refresh_failed");
			cJSON_AddStringToObject(o, "reason", stale);
			all = false;
		} else if (!source_reachable(s, why, sizeof why)) {
			cJSON_AddStringToObject(o, "status", "unreachable");
			cJSON_AddStringToObject(o, "reason", why);
			all = false;
		} else {
			cJSON_AddStringToObject(o, "status", "ready");
		}
		if (st.refreshed_at) {
			cJSON_AddNumberToObject(o, "tables", (double)st.tables);
			refresh_add_time(o, "refreshed_at", st.refreshed_at);
			refresh_add_time(o, "schema_changed_at", st.changed_at);
			cJSON_AddNumberToObject(o, "drift", (double)st.drift);
		}
		if (st.refresh_error[0])
			refresh_add_time(o, "refresh_failed_at", st.refresh_failed_at);
		if (st.next_refresh_at)
			refresh_add_time(o, "next_refresh_at", st.next_refresh_at);
		cJSON_AddItemToArray(arr, o);
	}
	if (app->store) {
		/* the shared state store: without it no call can be claimed (503) */
		char why[600];
		cJSON *o = cJSON_AddObjectToObject(root, "state");
		cJSON_AddStringToObject(o, "backend", exec_store_backend(app->store));
		if (exec_store_reachable(app->store, why, sizeof why)) {
			cJSON_AddStringToObject(o, "status", "ready");
		} else {
			cJSON_AddStringToObject(o, "status", "unreachable");
			cJSON_AddStringToObject(o, "reason", why);
			all = false;
		}
	}
	cJSON_AddStringToObject(root, "status", all ? "ready" : "not_ready");
	respond_json(resp, all ? 200 : 503, root);
}

/* ---- answers kept by execution_id ---- */

/* Keep a final answer; retryable ones (429, 5xx) must run again when the
 * platform retries. An asynchronous answer is kept whatever its status (the
 * platform fetches it from the status URL), unless the daemon is stopping:
 * then a retry after the restart runs it again. */
/* Keep r as exec_id's answer (or release the claim when r must not be
 * kept). Non-zero when it could not be stored: it must not be sent then, or
 * a retry could run the execution again and answer differently. */
static int store_answer(struct exec_store *store, const char *exec_id, const struct tool_result *r,
			bool async)
{
	struct cn_error err = {0};
	bool stopping = r->error_code && strcmp(r->error_code, "shutting_down") == 0;
	bool keep = async ? !stopping : r->http_status < 500 && r->http_status != 429;
	int rc = keep ? exec_store_finish(store, exec_id, r->http_status, r->body, r->len, &err)
		      : exec_store_release(store, exec_id, &err);
	if (rc)
		log_error("execution store: %s", err.message);
	return keep ? rc : CN_OK;
}

/* <public_url>/v1/executions/<id, percent-encoded>, or NULL without a public_url. */
static char *status_url(const struct config *cfg, const char *exec_id)
{
	if (!*cfg->public_url)
		return NULL;
	struct buf b;
	buf_init(&b, 4096);
	size_t n = strlen(cfg->public_url);
	while (n && cfg->public_url[n - 1] == '/')
		n--;
	int rc = buf_append(&b, cfg->public_url, n) || buf_puts(&b, STATUS_PREFIX);
	for (const unsigned char *p = (const unsigned char *)exec_id; *p && !rc; p++)
		rc = isalnum(*p) || strchr("-._~", *p) ? buf_append(&b, p, 1)
						       : buf_printf(&b, "%%%02X", *p);
	size_t len;
	char *url = rc ? NULL : buf_steal(&b, &len);
	buf_free(&b);
	return url;
}

/* 202: still running; the answer comes from the status URL. */
static void respond_running(struct http_response *resp, const struct config *cfg, const char *exec_id,
			    struct call *call)
{
	char *url = status_url(cfg, exec_id);
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "status", "running");
	cJSON_AddStringToObject(root, "execution_id", exec_id);
	if (url)
		cJSON_AddStringToObject(root, "status_url", url);
	cJSON_AddStringToObject(root, "message",
				"the query is still running; its answer will be at status_url");
	respond_json(resp, 202, root);
	if (resp->status == 202) {
		resp->location = url;
		resp->retry_after = STATUS_RETRY_S;
		url = NULL;
	}
	free(url);
	call->code = "accepted";
}

/* ---- calls that may outlive their request ---- */

/* A call on a thread of its own: the request waits for it up to
 * server.async_after_ms, then answers 202 and leaves it (detached); the
 * thread then stores the answer. Whoever comes second (the thread finishing,
 * or the request giving up) frees it. */
struct async_call {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	bool done, detached;
	struct app app;    /* the request's copy; its generation held for the thread */
	const struct tool_entry *tool;
	cJSON *params;     /* a copy */
	struct tool_result r;
	struct timespec start;
	char exec_id[EXEC_ID_MAX + 1];
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int running; /* detached calls not finished */
} async_calls = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static double seconds_since(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void async_free(struct async_call *a)
{
	if (a->app.runtime && a->app.generation)
		runtime_release(a->app.runtime, a->app.generation);
	cJSON_Delete(a->params);
	tool_result_free(&a->r);
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mu);
	free(a);
}

static void *async_main(void *arg)
{
	struct async_call *a = arg;
	tools_call_entry(&a->app, a->tool, a->params, &a->r);
	pthread_mutex_lock(&a->mu);
	a->done = true;
	bool detached = a->detached;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
	if (!detached)
		return NULL; /* the request answers and frees */
	(void)store_answer(a->app.store, a->exec_id, &a->r, true); /* logged; the status URL says 202 until stored */
	double seconds = seconds_since(&a->start);
	metrics_tool_call(a->tool->name, a->r.source, a->r.http_status, a->r.error_code, seconds, a->r.len);
	log_request(a->exec_id, a->tool->name, a->r.source, a->r.http_status, (long)(seconds * 1000.0),
		    a->r.error_code);
	async_free(a);
	pthread_mutex_lock(&async_calls.mu);
	async_calls.running--;
	pthread_cond_broadcast(&async_calls.cv);
	pthread_mutex_unlock(&async_calls.mu);
	metrics_async(-1);
	return NULL;
}

int request_async_drain(unsigned ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&async_calls.mu);
	while (async_calls.running > 0 &&
	       pthread_cond_timedwait(&async_calls.cv, &async_calls.mu, &until) == 0)
		;
	int left = async_calls.running;
	pthread_mutex_unlock(&async_calls.mu);
	return left;
}

/* Run the call on its own thread and wait for it until async_after_ms after
 * the request began: its answer in *r (true), or answered 202 (false). On a
 * thread that cannot start, the call runs here (true). */
static bool run_async(struct app *app, const cJSON *params, struct call *call,
		      const struct timespec *began, struct tool_result *r, struct http_response *resp)
{
	struct async_call *a = calloc(1, sizeof *a);
	pthread_condattr_t ca;
	if (!a || pthread_condattr_init(&ca)) {
		free(a);
		tools_call_entry(app, call->tool, params, r);
		return true;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&a->mu, NULL);
	a->app = *app;
	a->app.async = true;
	a->tool = call->tool;
	a->start = *began;
	snprintf(a->exec_id, sizeof a->exec_id, "%s", call->exec_id);
	a->params = params ? cJSON_Duplicate(params, true) : NULL;
	if (a->app.runtime)
		runtime_hold(a->app.runtime, a->app.generation);
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	bool started = (params == NULL || a->params) && pthread_create(&t, &attr, async_main, a) == 0;
	pthread_attr_destroy(&attr);
	if (!started) {
		log_warn("execution %s: no thread for an asynchronous query; it runs within the callback",
			 call->exec_id);
		async_free(a);
		tools_call_entry(app, call->tool, params, r);
		return true;
	}
	struct timespec until = *began;
	uint32_t after = app->cfg->async_after_ms;
	until.tv_sec += after / 1000;
	until.tv_nsec += (long)(after % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&a->mu);
	while (!a->done && pthread_cond_timedwait(&a->cv, &a->mu, &until) != ETIMEDOUT)
		;
	bool done = a->done;
	if (!done) {
		a->detached = true;
		pthread_mutex_lock(&async_calls.mu);
		async_calls.running++;
		pthread_mutex_unlock(&async_calls.mu);
		metrics_async(1);
	}
	pthread_mutex_unlock(&a->mu);
	if (!done) {
		call->source = NULL;
		respond_running(resp, app->cfg, call->exec_id, call);
		return false;
	}
	*r = a->r;
	memset(&a->r, 0, sizeof a->r);
	if (r->statement && !r->statement_owned) { /* it points into a->params */
		r->statement_owned = strdup(r->statement);
		r->statement = r->statement_owned;
	}
	async_free(a);
	return true;
}

/* The tool call proper, once the request is authentic and well formed. */
static void run_tool(struct app *app, const cJSON *params, struct http_response *resp,
		     struct call *call, const struct timespec *began)
{
	const char *exec_id = call->exec_id;
	struct cn_error err = {0};
	enum exec_claim state = EXEC_CLAIMED;
	/* with a status URL, a duplicate waits no longer than a first delivery would */
	bool can_poll = *app->cfg->public_url != '\0';
	if (app->store) {
		int status = 0;
		char *body = NULL;
		size_t len = 0;
		if (exec_store_claim(app->store, exec_id,
				     can_poll ? app->cfg->async_after_ms : DUPLICATE_WAIT_MS, &state,
				     &status, &body, &len, &err)) {
			log_error("execution store: %s", err.message);
			respond_error(resp, 503, "store_unavailable",
				      "the connector cannot record this execution; retry");
			resp->retry_after = 2;
			call->code = "store_unavailable";
			return;
		}
		if (state == EXEC_DONE) {
			resp->status = status;
			resp->body = body;
			resp->len = len;
			call->code = "replayed";
			metrics_replay();
			return;
		}
		if (state == EXEC_RUNNING && can_poll) {
			respond_running(resp, app->cfg, exec_id, call);
			return;
		}
		if (state == EXEC_RUNNING) {
			respond_error(resp, 429, "execution_in_progress",
				      "this execution_id is still running; retry to get its answer");
			resp->retry_after = 2;
			call->code = "execution_in_progress";
			return;
		}
	}
	struct tool_result r = {0};
	if (app->store && tools_may_run_long(app, call->tool, params)) {
		if (!run_async(app, params, call, began, &r, resp))
			return; /* 202: the call's thread stores the answer */
	} else {
		tools_call_entry(app, call->tool, params, &r);
	}
	call->source = r.source;
	call->code = r.error_code;
	if (call->audited && r.statement) {
		/* the statement lives in params: fingerprint (and copy) it now */
		audit_fingerprint(r.statement, strlen(r.statement), call->fingerprint);
		if (app->cfg->audit_include_statements)
			call->statement = strdup(r.statement);
		if (r.http_status == 200)
			call->rows = (int64_t)r.rows;
	}
	if (app->store && store_answer(app->store, exec_id, &r, false)) {
		respond_error(resp, 503, "store_unavailable", "the answer could not be recorded; retry: "
			      "once it is recorded a retry gets it, it is not run again");
		resp->retry_after = 2;
		call->code = "store_unavailable";
	} else {
		respond(resp, &r);
	}
	tool_result_free(&r);
}

/* Is the request signed with a secret accepted now? The secrets come from a
 * snapshot a rotation may replace meanwhile (app->secrets), else from cfg. */
static int verify(const struct app *app, const struct http_request *req, struct cn_error *err)
{
	const struct config *cfg = app->cfg;
	time_t now = app->now();
	struct secret_set *set = app->secrets ? secrets_acquire(app->secrets) : NULL;
	const char *secrets[SECRETS_MAX];
	size_t nsecrets = set ? secret_set_current(set, (int64_t)now, secrets) : cfg->nsecrets;
	int rc = signature_verify(set ? secrets : (const char *const *)cfg->callback_secrets, nsecrets,
				  req->body, req->len, req->signature, req->timestamp, now,
				  cfg->timestamp_tolerance, err);
	secret_set_release(set);
	return rc;
}

/* 404 naming the tools there are (as registered). */
static void unknown_tool(const struct app *app, struct http_response *resp)
{
	struct buf b;
	buf_init(&b, 4096);
	int rc = buf_puts(&b, "no such tool; tools:");
	if (app->catalog) {
		const char *sep = "";
		for (size_t i = 0; rc == CN_OK && i < app->catalog->n; i++) {
			if (!app->catalog->items[i].offered)
				continue;
			rc = buf_printf(&b, "%s %s", sep, app->catalog->items[i].registered_name);
			sep = ",";
		}
	} else {
		for (const struct tool_def *t = tools_catalog; rc == CN_OK && t->name; t++)
			rc = buf_printf(&b, "%s %s", t == tools_catalog ? "" : ",", t->name);
	}
	respond_error(resp, 404, "unknown_tool", rc == CN_OK ? b.data : "no such tool");
	buf_free(&b);
}

/* Offset of the first \u0000 escape inside a JSON string of the body, or -1.
 * cJSON decodes it into a NUL byte that C strings then cut at: a parameter
 * or a key would be silently shortened, so such a body is refused. */
static long json_nul_escape_at(const char *p, size_t n)
{
	bool in_string = false;
	for (size_t i = 0; i < n; i++) {
		if (!in_string) {
			in_string = p[i] == '"';
			continue;
		}
		if (p[i] == '"') {
			in_string = false;
		} else if (p[i] == '\\' && i + 1 < n) {
			if (p[i + 1] == 'u' && i + 5 < n && !memcmp(p + i + 2, "0000", 4))
				return (long)i;
			i++; /* the escaped character, whatever it is */
		}
	}
	return -1;
}

static void handle_tool(struct app *app, const struct http_request *req, const char *tool_name,
			const struct timespec *began, struct http_response *resp, struct call *call)
{
	struct cn_error err = {0};
	const struct config *cfg = app->cfg;
	if (req->too_large) {
		char msg[100];
		snprintf(msg, sizeof msg, "the request body is over %u bytes", REQUEST_MAX_BODY);
		respond_error(resp, 413, "payload_too_large", msg);
		call->code = "payload_too_large";
		return;
	}
	if (verify(app, req, &err)) {
		respond_error(resp, 401, "invalid_signature", err.message);
		call->code = "invalid_signature";
		return;
	}
	call->audited = app->cfg->audit_enabled && app->store;

	long nul = json_nul_escape_at(req->body, req->len);
	if (nul >= 0) {
		char msg[160];
		snprintf(msg, sizeof msg, "a string holds a NUL character (\\u0000 at byte %ld of the "
			 "body), which no query or parameter may contain", nul + 1);
		respond_error(resp, 400, "invalid_parameters", msg);
		call->code = "invalid_parameters";
		return;
	}
	cJSON *root = cJSON_ParseWithLength(req->body, req->len);
	const cJSON *exec_id, *name, *params, *ts;
	if (!root || !cJSON_IsObject(root)) {
		respond_error(resp, 400, "invalid_request", "the body is not a JSON object");
		call->code = "invalid_request";
		goto out;
	}
	if (call->audited) {
		const char *asst = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "assistant_id"));
		const char *room = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "room_id"));
		audit_copy_id(call->assistant_id, asst ? asst : "");
		audit_copy_id(call->room_id, room ? room : "");
	}
	exec_id = cJSON_GetObjectItemCaseSensitive(root, "execution_id");
	name = cJSON_GetObjectItemCaseSensitive(root, "tool_name");
	params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
	ts = cJSON_GetObjectItemCaseSensitive(root, "timestamp");
	if (!cJSON_IsString(exec_id) || !*exec_id->valuestring || strlen(exec_id->valuestring) > EXEC_ID_MAX) {
		respond_error(resp, 400, "invalid_request", "execution_id must be a non-empty string of at most 200 bytes");
		call->code = "invalid_request";
		goto out;
	}
	snprintf(call->exec_id, sizeof call->exec_id, "%s", exec_id->valuestring);
	if (req->request_id && strcmp(req->request_id, exec_id->valuestring) != 0) {
		respond_error(resp, 400, "invalid_request", "X-Interactor-Request-Id differs from execution_id");
		call->code = "invalid_request";
		goto out;
	}
	if (!cJSON_IsString(name) || strcmp(name->valuestring, tool_name) != 0) {
		respond_error(resp, 400, "invalid_request", "tool_name in the body differs from the tool in the URL");
		call->code = "invalid_request";
		goto out;
	}
	if (params && !cJSON_IsObject(params) && !cJSON_IsNull(params)) {
		respond_error(resp, 400, "invalid_parameters", "parameters must be a JSON object");
		call->code = "invalid_parameters";
		goto out;
	}
	/* The signed body's own timestamp must be fresh too: the header is not signed. */
	if (ts) {
		time_t t;
		long skew;
		if (!cJSON_IsString(ts) || signature_parse_timestamp(ts->valuestring, &t)) {
			respond_error(resp, 400, "invalid_request", "timestamp in the body is not ISO 8601");
			call->code = "invalid_request";
			goto out;
		}
		skew = (long)(app->now() - t);
		if (skew > (long)cfg->timestamp_tolerance || -skew > (long)cfg->timestamp_tolerance) {
			respond_error(resp, 401, "invalid_signature", "timestamp in the body is outside the tolerance");
			call->code = "invalid_signature";
			goto out;
		}
	}
	if (!call->tool) {
		unknown_tool(app, resp);
		call->code = "unknown_tool";
		goto out;
	}
	run_tool(app, cJSON_IsObject(params) ? params : NULL, resp, call, began);
out:
	cJSON_Delete(root);
}

/* GET /metrics, for the addresses server.metrics_allow_from names. */
static void handle_metrics(struct app *app, struct http_response *resp)
{
	struct buf b;
	buf_init(&b, 16u * 1024u * 1024u);
	if (metrics_render(app, &b)) {
		buf_free(&b);
		respond_error(resp, 500, "internal_error", "out of memory");
		return;
	}
	resp->status = 200;
	resp->body = buf_steal(&b, &resp->len);
	resp->content_type = METRICS_CONTENT_TYPE;
}

/* The audit record of an authenticated call (audit.h); queued, never
 * written here. */
static void audit_call(struct app *app, const struct call *call, const char *name,
		       const struct timespec *arrived, const struct http_response *resp, double seconds)
{
	char url_tool[AUDIT_ID_MAX + 1]; /* a name the catalog lacks, bounded */
	audit_copy_id(url_tool, name);
	struct audit_record r = {
		.at_ms = (int64_t)arrived->tv_sec * 1000 + arrived->tv_nsec / 1000000,
		.execution_id = *call->exec_id ? call->exec_id : NULL,
		.assistant_id = *call->assistant_id ? call->assistant_id : NULL,
		.room_id = *call->room_id ? call->room_id : NULL,
		.tool = call->tool ? call->tool->name : url_tool,
		.source = call->source,
		.fingerprint = *call->fingerprint ? call->fingerprint : NULL,
		.statement = call->statement,
		.rows = call->rows,
		.bytes = (int64_t)resp->len,
		.status = resp->status,
		.code = call->code,
		.duration_us = (int64_t)(seconds * 1e6),
	};
	struct cn_error err = {0};
	if (exec_store_audit_add(app->store, &r, &err))
		log_error("audit log: %s", err.message);
}

/* POST /v1/tools/{tool}: answered, logged and counted. */
static void handle_call(struct app *app, const struct http_request *req, struct http_response *resp)
{
	struct timespec start, arrived;
	clock_gettime(CLOCK_MONOTONIC, &start);
	clock_gettime(CLOCK_REALTIME, &arrived);
	const char *name = req->path + strlen(TOOL_PREFIX);
	struct call call = {.tool = tools_resolve(app, name), .rows = -1};
	metrics_inflight(1);
	if (strcmp(req->method, "POST") != 0) {
		respond_error(resp, 405, "method_not_allowed", "tool callbacks are POST requests");
		resp->allow_post = true;
		call.code = "method_not_allowed";
	} else if (!*name || strchr(name, '/')) {
		respond_error(resp, 404, "not_found", "use POST /v1/tools/{tool_name}");
		call.code = "not_found";
	} else {
		handle_tool(app, req, name, &start, resp, &call);
	}
	metrics_inflight(-1);
	double seconds = seconds_since(&start);
	/* the tool label only for the catalog's names: a URL must not mint series */
	metrics_tool_call(call.tool ? call.tool->name : NULL, call.source, resp->status, call.code,
			  seconds, resp->len);
	log_request(*call.exec_id ? call.exec_id : req->request_id, name, call.source, resp->status,
		    (long)(seconds * 1000.0), call.code);
	if (call.audited)
		audit_call(app, &call, name, &arrived, resp, seconds);
	free(call.statement);
}

/* GET /v1/executions/{id}, or POST with the callback's body: signed like a
 * callback; 202 while the execution runs, then its stored answer. */
static void handle_status(struct app *app, const struct http_request *req, struct http_response *resp)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	const char *id = req->path + strlen(STATUS_PREFIX);
	const struct config *cfg = app->cfg;
	struct call call = {0};
	struct cn_error err = {0};
	cJSON *root = NULL;
	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0) {
		respond_error(resp, 405, "method_not_allowed", "use GET (or POST the callback's body)");
		call.code = "method_not_allowed";
	} else if (!*id || strlen(id) > EXEC_ID_MAX) {
		respond_error(resp, 404, "not_found", "use GET /v1/executions/{execution_id}");
		call.code = "not_found";
	} else if (req->too_large) {
		respond_error(resp, 413, "payload_too_large", "the request body is too large");
		call.code = "payload_too_large";
	} else if (verify(app, req, &err)) {
		respond_error(resp, 401, "invalid_signature", err.message);
		call.code = "invalid_signature";
	} else if (req->len && (!(root = cJSON_ParseWithLength(req->body, req->len)) ||
				!cJSON_IsObject(root))) {
		respond_error(resp, 400, "invalid_request", "the body is not a JSON object");
		call.code = "invalid_request";
	} else if (root && cJSON_GetObjectItemCaseSensitive(root, "execution_id") &&
		   !(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, "execution_id")) &&
		     strcmp(cJSON_GetObjectItemCaseSensitive(root, "execution_id")->valuestring, id) == 0)) {
		respond_error(resp, 400, "invalid_request", "execution_id in the body differs from the URL");
		call.code = "invalid_request";
	} else {
		enum exec_seen seen = EXEC_SEEN_NONE;
		int status = 0;
		char *body = NULL;
		size_t len = 0;
		if (app->store && exec_store_peek(app->store, id, &seen, &status, &body, &len, &err)) {
			log_error("execution store: %s", err.message);
			respond_error(resp, 503, "store_unavailable", "the connector cannot read its "
				      "executions now; retry");
			resp->retry_after = 2;
			call.code = "store_unavailable";
		} else if (seen == EXEC_SEEN_DONE) {
			resp->status = status;
			resp->body = body;
			resp->len = len;
		} else if (seen == EXEC_SEEN_RUNNING) {
			respond_running(resp, cfg, id, &call);
		} else {
			respond_error(resp, 404, "unknown_execution",
				      "no execution with this id is known here: it never ran, ran more "
				      "than 7 days ago, or ended in an error that a retry runs again");
			call.code = "unknown_execution";
		}
	}
	cJSON_Delete(root);
	double seconds = seconds_since(&start);
	metrics_tool_call("execution_status", NULL, resp->status, call.code, seconds, resp->len);
	log_request(id, "execution_status", NULL, resp->status, (long)(seconds * 1000.0), call.code);
}

static void route(struct app *app, const struct http_request *req, struct http_response *resp)
{
	bool get = strcmp(req->method, "GET") == 0;
	if (strncmp(req->path, TOOL_PREFIX, strlen(TOOL_PREFIX)) == 0) {
		handle_call(app, req, resp);
	} else if (strncmp(req->path, STATUS_PREFIX, strlen(STATUS_PREFIX)) == 0) {
		handle_status(app, req, resp);
	} else if (get && strcmp(req->path, "/healthz") == 0) {
		handle_health(app, resp); /* probes are not logged: they would drown the log */
	} else if (get && strcmp(req->path, "/readyz") == 0) {
		handle_ready(app, resp);
	} else if (get && strcmp(req->path, "/metrics") == 0 && req->metrics_allowed) {
		handle_metrics(app, resp);
	} else {
		respond_error(resp, 404, "not_found",
			      "no such endpoint; tool callbacks go to POST /v1/tools/{tool_name}");
		log_request(req->request_id, NULL, NULL, resp->status, 0, "not_found");
	}
}

void request_handle(struct app *app, const struct http_request *req, struct http_response *resp)
{
	memset(resp, 0, sizeof *resp);
	if (!app->runtime) {
		route(app, req, resp);
		return;
	}
	/* the whole request on one configuration, whatever a reload does meanwhile */
	struct generation *g = runtime_acquire(app->runtime);
	struct app now = *app;
	now.cfg = g->cfg;
	now.sources = g->sources;
	now.catalog = g->catalog;
	now.generation = g;
	route(&now, req, resp);
	runtime_release(app->runtime, g);
}
