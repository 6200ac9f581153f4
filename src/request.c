#include "request.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "log.h"
#include "refresh.h"
#include "secrets.h"
#include "signature.h"
#include "tools.h"

#define TOOL_PREFIX "/v1/tools/"
#define DUPLICATE_WAIT_MS 25000u

void http_response_free(struct http_response *resp)
{
	free(resp->body);
	resp->body = NULL;
}

static long elapsed_ms(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000L + (now.tv_nsec - start->tv_nsec) / 1000000L;
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
static void run_tool(struct app *app, const struct tool_entry *tool, const cJSON *params,
		     const char *exec_id, struct http_response *resp, const char **source,
		     const char **error_code)
{
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
			*error_code = "store_unavailable";
			return;
		}
		if (state == EXEC_DONE) {
			resp->status = status;
			resp->body = body;
			resp->len = len;
			*error_code = "replayed";
			return;
		}
		if (state == EXEC_RUNNING) {
			respond_error(resp, 429, "execution_in_progress",
				      "this execution_id is still running; retry to get its answer");
			resp->retry_after = 2;
			*error_code = "execution_in_progress";
			return;
		}
	}
	struct tool_result r = {0};
	tools_call_entry(app, tool, params, &r);
	*source = r.source;
	*error_code = r.error_code;
	if (app->store) {
		/* Keep final answers; retryable ones (429, 5xx) must run again. */
		int keep = r.http_status < 500 && r.http_status != 429;
		int rc = keep ? exec_store_finish(app->store, exec_id, r.http_status, r.body, r.len, &err)
			      : exec_store_release(app->store, exec_id, &err);
		if (rc)
			log_error("execution store: %s", err.message);
	}
	respond(resp, &r);
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

/* exec_out receives a copy of the body's execution_id (for the log line). */
static void handle_tool(struct app *app, const struct http_request *req, const char *tool_name,
			struct http_response *resp, char exec_out[EXEC_ID_MAX + 1], const char **source,
			const char **error_code)
{
	struct cn_error err = {0};
	const struct config *cfg = app->cfg;
	if (req->too_large) {
		char msg[100];
		snprintf(msg, sizeof msg, "the request body is over %u bytes", REQUEST_MAX_BODY);
		respond_error(resp, 413, "payload_too_large", msg);
		*error_code = "payload_too_large";
		return;
	}
	/* the secrets accepted now: a snapshot a rotation may replace meanwhile */
	time_t now = app->now();
	struct secret_set *set = app->secrets ? secrets_acquire(app->secrets) : NULL;
	const char *secrets[SECRETS_MAX];
	size_t nsecrets = set ? secret_set_current(set, (int64_t)now, secrets) : cfg->nsecrets;
	int verified = signature_verify(set ? secrets : (const char *const *)cfg->callback_secrets,
					nsecrets, req->body, req->len, req->signature, req->timestamp, now,
					cfg->timestamp_tolerance, &err);
	secret_set_release(set);
	if (verified) {
		respond_error(resp, 401, "invalid_signature", err.message);
		*error_code = "invalid_signature";
		return;
	}

	long nul = json_nul_escape_at(req->body, req->len);
	if (nul >= 0) {
		char msg[160];
		snprintf(msg, sizeof msg, "a string holds a NUL character (\\u0000 at byte %ld of the "
			 "body), which no query or parameter may contain", nul + 1);
		respond_error(resp, 400, "invalid_parameters", msg);
		*error_code = "invalid_parameters";
		return;
	}
	cJSON *root = cJSON_ParseWithLength(req->body, req->len);
	const cJSON *exec_id, *name, *params, *ts;
	if (!root || !cJSON_IsObject(root)) {
		respond_error(resp, 400, "invalid_request", "the body is not a JSON object");
		*error_code = "invalid_request";
		goto out;
	}
	exec_id = cJSON_GetObjectItemCaseSensitive(root, "execution_id");
	name = cJSON_GetObjectItemCaseSensitive(root, "tool_name");
	params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
	ts = cJSON_GetObjectItemCaseSensitive(root, "timestamp");
	if (!cJSON_IsString(exec_id) || !*exec_id->valuestring || strlen(exec_id->valuestring) > EXEC_ID_MAX) {
		respond_error(resp, 400, "invalid_request", "execution_id must be a non-empty string of at most 200 bytes");
		*error_code = "invalid_request";
		goto out;
	}
	snprintf(exec_out, EXEC_ID_MAX + 1, "%s", exec_id->valuestring);
	if (req->request_id && strcmp(req->request_id, exec_id->valuestring) != 0) {
		respond_error(resp, 400, "invalid_request", "X-Interactor-Request-Id differs from execution_id");
		*error_code = "invalid_request";
		goto out;
	}
	if (!cJSON_IsString(name) || strcmp(name->valuestring, tool_name) != 0) {
		respond_error(resp, 400, "invalid_request", "tool_name in the body differs from the tool in the URL");
		*error_code = "invalid_request";
		goto out;
	}
	if (params && !cJSON_IsObject(params) && !cJSON_IsNull(params)) {
		respond_error(resp, 400, "invalid_parameters", "parameters must be a JSON object");
		*error_code = "invalid_parameters";
		goto out;
	}
	/* The signed body's own timestamp must be fresh too: the header is not signed. */
	if (ts) {
		time_t t;
		long skew;
		if (!cJSON_IsString(ts) || signature_parse_timestamp(ts->valuestring, &t)) {
			respond_error(resp, 400, "invalid_request", "timestamp in the body is not ISO 8601");
			*error_code = "invalid_request";
			goto out;
		}
		skew = (long)(app->now() - t);
		if (skew > (long)cfg->timestamp_tolerance || -skew > (long)cfg->timestamp_tolerance) {
			respond_error(resp, 401, "invalid_signature", "timestamp in the body is outside the tolerance");
			*error_code = "invalid_signature";
			goto out;
		}
	}
	const struct tool_entry *tool = tools_resolve(app, tool_name);
	if (!tool) {
		unknown_tool(app, resp);
		*error_code = "unknown_tool";
		goto out;
	}
	run_tool(app, tool, cJSON_IsObject(params) ? params : NULL, exec_id->valuestring, resp, source,
		 error_code);
out:
	cJSON_Delete(root);
}

void request_handle(struct app *app, const struct http_request *req, struct http_response *resp)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	memset(resp, 0, sizeof *resp);
	const char *source = NULL, *error_code = NULL;
	const char *tool = NULL;
	char exec_id[EXEC_ID_MAX + 1] = "";

	if (strncmp(req->path, TOOL_PREFIX, strlen(TOOL_PREFIX)) == 0) {
		tool = req->path + strlen(TOOL_PREFIX);
		if (strcmp(req->method, "POST") != 0) {
			respond_error(resp, 405, "method_not_allowed", "tool callbacks are POST requests");
			resp->allow_post = true;
			error_code = "method_not_allowed";
		} else if (!*tool || strchr(tool, '/')) {
			respond_error(resp, 404, "not_found", "use POST /v1/tools/{tool_name}");
			error_code = "not_found";
		} else {
			handle_tool(app, req, tool, resp, exec_id, &source, &error_code);
		}
	} else if (strcmp(req->path, "/healthz") == 0 && strcmp(req->method, "GET") == 0) {
		handle_health(app, resp);
		return; /* health checks are not logged: they would drown the request log */
	} else if (strcmp(req->path, "/readyz") == 0 && strcmp(req->method, "GET") == 0) {
		handle_ready(app, resp);
		return;
	} else {
		respond_error(resp, 404, "not_found", "no such endpoint; tool callbacks go to POST /v1/tools/{tool_name}");
		error_code = "not_found";
	}
	log_request(*exec_id ? exec_id : req->request_id, tool, source, resp->status, elapsed_ms(&start),
		    error_code);
}
