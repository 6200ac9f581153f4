/*
 * request.h - one HTTP request to the connector, from raw bytes to the
 * answer, independent of the HTTP library (the server, the tests and the
 * fuzzer call it alike). Order of checks for POST /v1/tools/{tool}:
 *
 *   body over REQUEST_MAX_BODY            -> 413
 *   missing/malformed signature headers   -> 401
 *   timestamp outside the tolerance       -> 401
 *   HMAC of the raw body matches no secret-> 401
 *   then JSON: malformed, no execution_id, tool_name differing from the
 *   path                                  -> 400
 *   unknown tool                          -> 404
 *   execution store: replay -> the stored answer byte for byte
 *   the tool                              -> its answer, stored by execution_id
 *
 * A run_query on a source with limits.async_timeout_ms runs on a thread of
 * its own; still running after server.async_after_ms, it is answered 202
 * with Location: <public_url>/v1/executions/<id> and the thread stores the
 * answer when it comes. That status URL (GET, or POST with the callback's
 * body) is signed like a callback and answers 202 while the execution runs,
 * then its stored answer; a retry of a running execution_id gets the same
 * 202 (once server.public_url is set) instead of running again.
 *
 * Also GET /healthz (liveness), GET /readyz (every source ready: 200, else
 * 503) and GET /metrics (metrics.h; 404 unless req->metrics_allowed).
 */
#ifndef CN_REQUEST_H
#define CN_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "app.h"

#define REQUEST_MAX_BODY (128u * 1024u)

struct http_request {
	const char *method;
	const char *path;
	const char *signature;  /* X-Interactor-Signature, NULL when absent */
	const char *timestamp;  /* X-Interactor-Timestamp */
	const char *request_id; /* X-Interactor-Request-Id */
	const char *body;       /* raw bytes, not NUL-terminated */
	size_t len;
	bool too_large;         /* the body was (or would be) over REQUEST_MAX_BODY */
	bool metrics_allowed;   /* the client may read GET /metrics (else it is 404) */
};

struct http_response {
	int status;
	char *body; /* malloc'ed */
	const char *content_type; /* static; NULL: application/json */
	char *location;  /* malloc'ed Location header (a 202's status URL), or NULL */
	size_t len;
	int retry_after; /* seconds, 0 = no header */
	bool allow_post; /* 405: send Allow: POST */
};

/* Always fills resp; logs one line per request. */
void request_handle(struct app *app, const struct http_request *req, struct http_response *resp);
void http_response_free(struct http_response *resp);

/* Shutdown: wait up to ms for the calls answered 202 that still run; returns
 * how many still do. */
int request_async_drain(unsigned ms);

#endif
