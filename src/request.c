#include "request.h"

#include <cjson/cJSON.h>
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
#include "signature.h"
#include "tools.h"

#define TOOL_PREFIX "/v1/tools/"
#define DUPLICATE_WAIT_MS 25000u

/* What one tool call did: its log line, its metrics and its audit record. */
struct call {
	char exec_id[EXEC_ID_MAX + 1];
	const struct tool_def *tool; /* NULL: the URL names no tool of the catalog */
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
		struct source *s = &app->sources->items[i];
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
 * refresh worked, else 503; each source says why. Messages are the
 * drivers' (no DSN, no secret). */
static void handle_ready(struct app *app, struct http_response *resp)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(root, "sources");
	bool all = true;
	for (size_t i = 0; i < app->sources->n; i++) {
		struct source *s = &app->sources->items[i];
		struct source_status st;
		source_status(s, &st);
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", s->cfg->name);
		if (!st.available) {
			cJSON_AddStringToObject(o, "status", "unavailable");
			cJSON_AddStringToObject(o, "reason", st.error);
			all = false;
		} else if (st.refresh_error[0]) {
			char why[700], at[21];
			signature_format_timestamp((time_t)st.refreshed_at, at);
			snprintf(why, sizeof why,
				 "the last schema refresh failed (%s); serving the schema read at %s",
				 st.refresh_error, at);
			cJSON_AddStringToObject(o, "status", "refresh_failed");
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
	cJSON_AddStringToObject(root, "status", all ? "ready" : "not_ready");
	respond_json(resp, all ? 200 : 503, root);
}

/* The tool call proper, once the request is authentic and well formed. */
static void run_tool(struct app *app, const cJSON *params, struct http_response *resp,
		     struct call *call)
{
	const char *exec_id = call->exec_id;
	struct cn_error err = {0};
	enum exec_claim state = EXEC_CLAIMED;
	if (app->store) {
		int status = 0;
		char *body = NULL;
		size_t len = 0;
		if (exec_store_claim(app->store, exec_id, DUPLICATE_WAIT_MS, &state, &status, &body, &len,
				     &err)) {
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
		if (state == EXEC_RUNNING) {
			respond_error(resp, 429, "execution_in_progress",
				      "this execution_id is still running; retry to get its answer");
			resp->retry_after = 2;
			call->code = "execution_in_progress";
			return;
		}
	}
	struct tool_result r = {0};
	tools_call(app, call->tool, params, &r);
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
	if (app->store) {
		/* Keep final answers; retryable ones (429, 5xx) must run again. */
		int keep = r.http_status < 500 && r.http_status != 429;
		int rc = keep ? exec_store_finish(app->store, exec_id, r.http_status, r.body, r.len, &err)
			      : exec_store_release(app->store, exec_id, &err);
		if (rc)
			log_error("execution store: %s", err.message);
	}
	respond(resp, &r);
	tool_result_free(&r);
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
			struct http_response *resp, struct call *call)
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
	if (signature_verify((const char *const *)cfg->callback_secrets, cfg->nsecrets, req->body, req->len,
			     req->signature, req->timestamp, app->now(), cfg->timestamp_tolerance, &err)) {
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
		respond_error(
		    resp, 404, "unknown_tool",
		    "no such tool; tools: list_data_sources, describe_schema, search_schema, run_query");
		call->code = "unknown_tool";
		goto out;
	}
	run_tool(app, cJSON_IsObject(params) ? params : NULL, resp, call);
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

static double seconds_since(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
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
	struct call call = {.tool = tools_find(name), .rows = -1};
	metrics_inflight(1);
	if (strcmp(req->method, "POST") != 0) {
		respond_error(resp, 405, "method_not_allowed", "tool callbacks are POST requests");
		resp->allow_post = true;
		call.code = "method_not_allowed";
	} else if (!*name || strchr(name, '/')) {
		respond_error(resp, 404, "not_found", "use POST /v1/tools/{tool_name}");
		call.code = "not_found";
	} else {
		handle_tool(app, req, name, resp, &call);
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

void request_handle(struct app *app, const struct http_request *req, struct http_response *resp)
{
	memset(resp, 0, sizeof *resp);
	bool get = strcmp(req->method, "GET") == 0;
	if (strncmp(req->path, TOOL_PREFIX, strlen(TOOL_PREFIX)) == 0) {
		handle_call(app, req, resp);
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
