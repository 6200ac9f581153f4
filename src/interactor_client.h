/*
 * interactor_client.h - the connector's client of the Interactor platform's
 * API (the `interactor:` block of the config), on libcurl.
 *
 * Every call:
 *   - goes over TLS that is always verified (peer and host name); the system's
 *     CAs, plus those of interactor.ca_file when set; redirects are never
 *     followed (they would carry the bearer token elsewhere);
 *   - through interactor.proxy, or else through libcurl's proxy environment
 *     variables (https_proxy / HTTPS_PROXY, all_proxy, no_proxy);
 *   - carries "Authorization: Bearer <token>" and a fresh
 *     X-Client-Request-Id (a UUID kept across the retries of one call);
 *   - is bounded: interactor.timeout_ms per exchange, IC_TOTAL_BUDGET_MS for
 *     a call with its retries, IC_MAX_ATTEMPTS attempts, IC_MAX_RESPONSE
 *     bytes of answer.
 *
 * Tokens: OAuth client credentials (POST auth_url {"grant_type":
 * "client_credentials", "client_id", "client_secret"} -> {"data":
 * {"access_token", "token_type", "expires_in"}}), cached and fetched again
 * IC_TOKEN_MARGIN_S before they expire (half their life when it is shorter);
 * an API call answered 401 fetches a new token once and tries again.
 *
 * Retries: 429 waits the Retry-After the platform gives (seconds or an
 * HTTP date; a wait past IC_RETRY_AFTER_MAX_S is not waited, the call
 * fails saying when to try again); 5xx and transport failures (connect,
 * timeout, reset) wait an exponential backoff from IC_BACKOFF_BASE_MS,
 * capped at IC_BACKOFF_CAP_MS, with full jitter. Other 4xx are final.
 *
 * Logging: one debug line per exchange with the method, path, status,
 * duration, the platform's X-Request-Id and X-Trace-Id, our
 * X-Client-Request-Id and the X-RateLimit-* figures; a warning per retry.
 * No line, no message and no error ever holds the token, the client secret
 * or a callback secret: messages quoting the platform are scrubbed of every
 * sensitive string the client knows (ic_client_add_sensitive).
 *
 * Thread-safe: one libcurl easy handle per client, reused (keep-alive)
 * under a lock held for one exchange, never while waiting to retry.
 */
#ifndef CN_INTERACTOR_CLIENT_H
#define CN_INTERACTOR_CLIENT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "config.h"
#include "status.h"

#define IC_MAX_ATTEMPTS 6
#define IC_BACKOFF_BASE_MS 500u
#define IC_BACKOFF_CAP_MS 8000u
#define IC_RETRY_AFTER_MAX_S 60
#define IC_TOTAL_BUDGET_MS 120000u
#define IC_TOKEN_MARGIN_S 60
#define IC_MAX_RESPONSE (8u << 20)

struct ic_client;

/* A client for cfg's interactor block (cfg must outlive it). Needs
 * client_id and client_secret (CN_ECONFIG otherwise) and a readable
 * ca_file when one is set. No network traffic happens here. */
int ic_client_new(const struct config *cfg, struct ic_client **out, struct cn_error *err) CN_MUST_USE;
void ic_client_free(struct ic_client *c); /* NULL is a no-op */
/* Never let s (2 bytes or more) appear in a message (a callback secret sent
 * in a body). s is copied. */
int ic_client_add_sensitive(struct ic_client *c, const char *s) CN_MUST_USE;

struct ic_response {
	long status;	     /* the last HTTP status, 0 when none arrived */
	cJSON *body;	     /* the whole answer parsed, or NULL (empty or not JSON) */
	const cJSON *data;   /* body's "data", else body itself; borrowed */
	char request_id[80]; /* the platform's X-Request-Id of the last answer */
};
void ic_response_clear(struct ic_response *r);

/* method path (relative to api_url, e.g. "/tools") with body (NULL: none).
 * CN_OK for a 2xx answer. Otherwise, with out->status when there was one
 * and a message saying what happened (scrubbed):
 *   CN_EAUTH        the credentials were refused, or a 401 twice, or 403
 *   CN_ENOTFOUND    404
 *   CN_EINVAL       another 4xx (the platform's error code and message)
 *   CN_EBUSY        still rate limited after the retries (or told to wait too long)
 *   CN_EUNAVAILABLE 5xx or no connection after the retries; TLS failures
 *                   (with a word on ca_file), a proxy that refused
 *   CN_ETOOBIG      an answer over IC_MAX_RESPONSE */
int ic_call(struct ic_client *c, const char *method, const char *path, const cJSON *body,
	    struct ic_response *out, struct cn_error *err) CN_MUST_USE;

/* Release libcurl's global state (at the end of main). */
void ic_global_cleanup(void);

/* ---- pure parts, for the tests and the fuzzer ---- */

/* The platform's answers' headers that matter. */
struct ic_headers {
	char request_id[80];
	char trace_id[80];
	char ratelimit_limit[24];
	char ratelimit_remaining[24];
	char ratelimit_reset[24];
	char ratelimit_resource[64];
	long retry_after; /* seconds; -1 when absent or unreadable */
};
void ic_headers_init(struct ic_headers *h);
/* One raw header line as libcurl hands it ("Name: value\r\n"); values are
 * cut to fit and kept printable. now reads an HTTP-date Retry-After. */
void ic_header_line(struct ic_headers *h, const char *line, size_t len, time_t now);
/* Retry-After's value: delta seconds, or an HTTP date (seconds from now,
 * 0 when past); -1 when unreadable. */
long ic_retry_after(const char *value, time_t now);
/* The wait before attempt `attempt` (1 = the first retry) after a 5xx or a
 * transport failure: a random point in [0, min(cap, base * 2^(attempt-1))],
 * rnd being a random number. */
unsigned ic_backoff_ms(unsigned attempt, unsigned rnd);
/* A token answer: {"data": {...}} or the bare OAuth form. *token is
 * malloc'ed; *expires_in in seconds (900 when absent). CN_EINVAL with why. */
int ic_parse_token(const char *body, size_t len, char **token, long *expires_in, char *why,
		   size_t n) CN_MUST_USE;
/* "code: message" of an error answer {"error": {"code", "message"}} (or
 * {"error": "text"}), printable and cut to n; "" when there is none. */
void ic_error_text(const cJSON *body, char *out, size_t n);

#endif
