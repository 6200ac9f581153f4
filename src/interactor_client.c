/*
 * interactor_client.c - HTTPS calls to the Interactor platform with OAuth
 * client credentials, retries and bounded everything (see the header).
 *
 * What goes on the wire, per exchange: the request line and headers
 * (Authorization, Content-Type and Accept application/json, User-Agent,
 * X-Client-Request-Id), a JSON body for POST/PUT/PATCH; back come a status,
 * headers (read one line at a time into struct ic_headers) and a body
 * collected into a buffer capped at IC_MAX_RESPONSE (past it the transfer
 * is aborted). Failure paths: libcurl's error (TLS, proxy, connect,
 * timeout) is named with the URL's host and path, never with a header or a
 * body; the platform's error answer is quoted by code and message,
 * scrubbed; a body that is not JSON is reported by status alone.
 */
#include "interactor_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

#ifndef CN_VERSION
#define CN_VERSION "dev"
#endif

#define IC_MAX_SENSITIVE 16
#define IC_CA_MAX (4u << 20)
#define IC_DEFAULT_EXPIRES_IN 900L

struct ic_client {
	const struct config *cfg;
	pthread_mutex_t mu; /* the easy handle: one exchange at a time */
	CURL *curl;
	char errbuf[CURL_ERROR_SIZE];
	char *ca_blob; /* ca_file's PEM and the system bundle; NULL: libcurl's defaults */
	size_t ca_len;

	pthread_mutex_t token_mu; /* the token cache */
	char *token;
	struct timespec token_renew; /* CLOCK_MONOTONIC: fetch a new one from here on */

	char *sensitive[IC_MAX_SENSITIVE];
	size_t nsensitive;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

void ic_global_cleanup(void)
{
	if (global_rc == CURLE_OK)
		curl_global_cleanup();
}

/* ---- small helpers ---- */

static long long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		;
}

static unsigned random_u32(void)
{
	unsigned r = 0;
	if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
		r = (unsigned)now_ms() * 2654435761u;
	return r;
}

static void uuid4(char out[37])
{
	unsigned char b[16];
	if (getrandom(b, sizeof b, GRND_NONBLOCK) != (ssize_t)sizeof b)
		for (size_t i = 0; i < sizeof b; i++)
			b[i] = (unsigned char)random_u32();
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* Replace every sensitive string in msg with "***". */
static void scrub(const struct ic_client *c, char *msg, size_t size)
{
	for (size_t i = 0; c && i < c->nsensitive; i++) {
		const char *s = c->sensitive[i];
		size_t sl = strlen(s);
		char *p;
		while (sl >= 2 && (p = strstr(msg, s)) != NULL) {
			size_t tail = strlen(p + sl);
			if (sl >= 3) {
				memcpy(p, "***", 3);
				memmove(p + 3, p + sl, tail + 1);
			} else {
				memmove(p, p + sl, tail + 1);
			}
		}
	}
	msg[size - 1] = '\0';
}

static int fail(const struct ic_client *c, struct cn_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(const struct ic_client *c, struct cn_error *err, int code, const char *fmt, ...)
{
	char msg[sizeof err->message];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	scrub(c, msg, sizeof msg);
	return cn_error_set(err, code, "%s", msg);
}

/* ---- pure parts ---- */

void ic_headers_init(struct ic_headers *h)
{
	memset(h, 0, sizeof *h);
	h->retry_after = -1;
}

/* value (n bytes) into dst, printable ASCII only, cut to fit. */
static void copy_value(char *dst, size_t size, const char *v, size_t n)
{
	size_t j = 0;
	for (size_t i = 0; i < n && j + 1 < size; i++)
		if (v[i] > 0x20 && v[i] < 0x7f)
			dst[j++] = v[i];
	dst[j] = '\0';
}

long ic_retry_after(const char *value, time_t now)
{
	size_t digits = strspn(value, "0123456789");
	if (digits > 0 && value[digits] == '\0') {
		if (digits > 9)
			return 999999999L;
		return strtol(value, NULL, 10);
	}
	time_t at = curl_getdate(value, &now);
	if (at == (time_t)-1)
		return -1;
	return at > now ? (long)(at - now) : 0;
}

void ic_header_line(struct ic_headers *h, const char *line, size_t len, time_t now)
{
	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		ic_headers_init(h); /* a new answer: a proxy's CONNECT reply or a 1xx came first */
		return;
	}
	const char *colon = memchr(line, ':', len);
	if (!colon)
		return;
	size_t nl = (size_t)(colon - line);
	const char *v = colon + 1;
	size_t vl = len - nl - 1;
	while (vl && (*v == ' ' || *v == '\t')) {
		v++;
		vl--;
	}
	while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' ' || v[vl - 1] == '\t'))
		vl--;
	static const struct {
		const char *name;
		size_t off, size;
	} fields[] = {
	    {"x-request-id", offsetof(struct ic_headers, request_id),
	     sizeof((struct ic_headers *)0)->request_id},
	    {"x-trace-id", offsetof(struct ic_headers, trace_id), sizeof((struct ic_headers *)0)->trace_id},
	    {"x-ratelimit-limit", offsetof(struct ic_headers, ratelimit_limit),
	     sizeof((struct ic_headers *)0)->ratelimit_limit},
	    {"x-ratelimit-remaining", offsetof(struct ic_headers, ratelimit_remaining),
	     sizeof((struct ic_headers *)0)->ratelimit_remaining},
	    {"x-ratelimit-reset", offsetof(struct ic_headers, ratelimit_reset),
	     sizeof((struct ic_headers *)0)->ratelimit_reset},
	    {"x-ratelimit-resource", offsetof(struct ic_headers, ratelimit_resource),
	     sizeof((struct ic_headers *)0)->ratelimit_resource},
	};
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		if (strlen(fields[i].name) == nl && strncasecmp(line, fields[i].name, nl) == 0) {
			copy_value((char *)h + fields[i].off, fields[i].size, v, vl);
			return;
		}
	}
	if (nl == 11 && strncasecmp(line, "retry-after", 11) == 0) {
		char value[64];
		if (vl >= sizeof value) {
			h->retry_after = -1;
			return;
		}
		memcpy(value, v, vl);
		value[vl] = '\0';
		h->retry_after = ic_retry_after(value, now);
	}
}

unsigned ic_backoff_ms(unsigned attempt, unsigned rnd)
{
	unsigned ceiling = IC_BACKOFF_BASE_MS;
	for (unsigned i = 1; i < attempt && ceiling < IC_BACKOFF_CAP_MS; i++)
		ceiling *= 2;
	if (ceiling > IC_BACKOFF_CAP_MS)
		ceiling = IC_BACKOFF_CAP_MS;
	return rnd % (ceiling + 1);
}

int ic_parse_token(const char *body, size_t len, char **token, long *expires_in, char *why, size_t n)
{
	*token = NULL;
	*expires_in = IC_DEFAULT_EXPIRES_IN;
	cJSON *root = cJSON_ParseWithLength(body, len);
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
	if (!cJSON_IsObject(data))
		data = root;
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(data, "access_token");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(data, "token_type");
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(data, "expires_in");
	int rc = CN_OK;
	if (!cJSON_IsObject(root)) {
		snprintf(why, n, "the token answer is not a JSON object");
		rc = CN_EINVAL;
	} else if (!cJSON_IsString(tok) || !*tok->valuestring || strlen(tok->valuestring) > 8192 ||
		   strpbrk(tok->valuestring, " \t\r\n")) {
		snprintf(why, n, "the token answer has no usable access_token");
		rc = CN_EINVAL;
	} else if (type && (!cJSON_IsString(type) || strcasecmp(type->valuestring, "bearer") != 0)) {
		snprintf(why, n, "the token answer's token_type is not Bearer");
		rc = CN_EINVAL;
	} else if (exp && (!cJSON_IsNumber(exp) || exp->valuedouble < 1 || exp->valuedouble > 31 * 86400.0)) {
		snprintf(why, n, "the token answer's expires_in is not a number of seconds");
		rc = CN_EINVAL;
	} else {
		if (exp)
			*expires_in = (long)exp->valuedouble;
		if (!(*token = strdup(tok->valuestring))) {
			snprintf(why, n, "out of memory");
			rc = CN_ENOMEM;
		}
	}
	cJSON_Delete(root);
	return rc;
}

void ic_error_text(const cJSON *body, char *out, size_t n)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(body, "error");
	const char *code = NULL, *msg = NULL;
	if (cJSON_IsString(e)) {
		msg = e->valuestring;
	} else if (cJSON_IsObject(e)) {
		code = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "code"));
		msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
	}
	char text[600];
	snprintf(text, sizeof text, "%s%s%.300s", code ? code : "", code && msg ? ": " : "", msg ? msg : "");
	size_t j = 0;
	for (size_t i = 0; text[i] && j + 1 < n; i++)
		out[j++] = (unsigned char)text[i] >= 0x20 && text[i] != 0x7f ? text[i] : ' ';
	if (n)
		out[j] = '\0';
}

/* ---- the client ---- */

static char *read_small_file(const char *path, size_t max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	struct buf b;
	buf_init(&b, max);
	char chunk[8192];
	size_t n;
	int rc = CN_OK;
	while (rc == CN_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
		rc = buf_append(&b, chunk, n);
	fclose(f);
	if (rc || !b.data) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b, len);
}

/* ca_file's certificates, then the system's bundle: ca_file adds to the system's CAs. */
static int load_ca(struct ic_client *c, struct cn_error *err)
{
	char *path = config_resolve_path(c->cfg, c->cfg->ca_file);
	size_t len = 0, syslen = 0;
	char *pem = path ? read_small_file(path, IC_CA_MAX, &len) : NULL;
	int rc = CN_OK;
	if (!pem) {
		rc = cn_error_set(err, CN_ECONFIG, "%s: interactor.ca_file: cannot read %s: %s", c->cfg->path,
				  path ? path : "?", errno ? strerror(errno) : "empty or too large");
	} else if (!strstr(pem, "-----BEGIN CERTIFICATE-----")) {
		rc = cn_error_set(err, CN_ECONFIG,
				  "%s: interactor.ca_file: %s holds no PEM certificate "
				  "(-----BEGIN CERTIFICATE-----)",
				  c->cfg->path, path);
	}
	char *sys_path = NULL, *sys = NULL;
	if (rc == CN_OK && curl_easy_getinfo(c->curl, CURLINFO_CAINFO, &sys_path) == CURLE_OK && sys_path)
		sys = read_small_file(sys_path, IC_CA_MAX, &syslen);
	if (rc == CN_OK) {
		c->ca_blob = malloc(len + syslen + 2);
		if (!c->ca_blob) {
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		} else {
			memcpy(c->ca_blob, pem, len);
			c->ca_blob[len] = '\n';
			if (sys)
				memcpy(c->ca_blob + len + 1, sys, syslen);
			c->ca_len = len + 1 + syslen;
		}
	}
	free(sys);
	free(pem);
	free(path);
	return rc;
}

int ic_client_new(const struct config *cfg, struct ic_client **out, struct cn_error *err)
{
	*out = NULL;
	int rc = config_require_interactor(cfg, err);
	if (rc)
		return rc;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return cn_error_set(err, CN_EINTERNAL, "libcurl cannot start: %s",
				    curl_easy_strerror(global_rc));
	struct ic_client *c = calloc(1, sizeof *c);
	if (!c)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	c->cfg = cfg;
	pthread_mutex_init(&c->mu, NULL);
	pthread_mutex_init(&c->token_mu, NULL);
	c->curl = curl_easy_init();
	if (!c->curl) {
		ic_client_free(c);
		return cn_error_set(err, CN_ENOMEM, "libcurl cannot make a handle");
	}
	if (ic_client_add_sensitive(c, cfg->client_secret)) {
		ic_client_free(c);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	/* a proxy's password, if its URL has one */
	const char *scheme = cfg->proxy ? strstr(cfg->proxy, "://") : NULL;
	const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
	const char *colon = at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
	if (colon && at - colon > 2) {
		char *pw = strndup(colon + 1, (size_t)(at - colon - 1));
		rc = pw ? ic_client_add_sensitive(c, pw) : CN_ENOMEM;
		free(pw);
		if (rc) {
			ic_client_free(c);
			return cn_error_set(err, CN_ENOMEM, "out of memory");
		}
	}
	if (cfg->ca_file && *cfg->ca_file && (rc = load_ca(c, err)) != CN_OK) {
		ic_client_free(c);
		return rc;
	}
	*out = c;
	return CN_OK;
}

void ic_client_free(struct ic_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	if (c->token) {
		explicit_bzero(c->token, strlen(c->token));
		free(c->token);
	}
	for (size_t i = 0; i < c->nsensitive; i++) {
		explicit_bzero(c->sensitive[i], strlen(c->sensitive[i]));
		free(c->sensitive[i]);
	}
	free(c->ca_blob);
	pthread_mutex_destroy(&c->mu);
	pthread_mutex_destroy(&c->token_mu);
	free(c);
}

int ic_client_add_sensitive(struct ic_client *c, const char *s)
{
	if (!s || strlen(s) < 2)
		return CN_OK;
	pthread_mutex_lock(&c->token_mu);
	int rc = CN_OK;
	bool known = false;
	for (size_t i = 0; i < c->nsensitive; i++)
		known |= strcmp(c->sensitive[i], s) == 0;
	if (!known) {
		if (c->nsensitive == IC_MAX_SENSITIVE) {
			/* forget the oldest callback secret; the client secret (0) stays */
			explicit_bzero(c->sensitive[1], strlen(c->sensitive[1]));
			free(c->sensitive[1]);
			memmove(&c->sensitive[1], &c->sensitive[2],
				(IC_MAX_SENSITIVE - 2) * sizeof c->sensitive[0]);
			c->nsensitive--;
		}
		if (!(c->sensitive[c->nsensitive] = strdup(s)))
			rc = CN_ENOMEM;
		else
			c->nsensitive++;
	}
	pthread_mutex_unlock(&c->token_mu);
	return rc;
}

void ic_response_clear(struct ic_response *r)
{
	cJSON_Delete(r->body);
	memset(r, 0, sizeof *r);
}

/* ---- one exchange ---- */

struct exchange {
	struct buf body;
	struct ic_headers headers;
	long status;
	CURLcode curl_rc;
	long ms;
};

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
	struct exchange *x = ctx;
	return buf_append(&x->body, data, size * n) == CN_OK ? size * n : 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *ctx)
{
	struct exchange *x = ctx;
	ic_header_line(&x->headers, data, size * n, time(NULL));
	return size * n;
}

/* The path of url after its host, for messages and logs ("/api/v1/tools"). */
static const char *url_path(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? strchr(p + 3, '/') : NULL;
	return p ? p : url;
}

static bool header_add(struct curl_slist **list, const char *line)
{
	struct curl_slist *t = curl_slist_append(*list, line);
	if (t)
		*list = t;
	return t != NULL;
}

/* Wipe (the token is in one of them) and free a header list. */
static void headers_free(struct curl_slist *h)
{
	for (struct curl_slist *s = h; s; s = s->next)
		explicit_bzero(s->data, strlen(s->data));
	curl_slist_free_all(h);
}

static void exchange_run(struct ic_client *c, const char *method, const char *url, const char *body,
			 const char *bearer, const char *client_request_id, struct exchange *x)
{
	struct curl_slist *h = NULL;
	char line[9000];
	bool ok = true;
	buf_init(&x->body, IC_MAX_RESPONSE);
	ic_headers_init(&x->headers);
	x->status = 0;
	x->ms = 0;
	long long start = now_ms();

	snprintf(line, sizeof line, "X-Client-Request-Id: %s", client_request_id);
	ok = header_add(&h, line) && header_add(&h, "Accept: application/json") &&
	     (!body || header_add(&h, "Content-Type: application/json"));
	if (ok && bearer) {
		snprintf(line, sizeof line, "Authorization: Bearer %s", bearer);
		ok = header_add(&h, line);
		explicit_bzero(line, sizeof line);
	}
	if (!ok) {
		headers_free(h);
		x->curl_rc = CURLE_OUT_OF_MEMORY;
		return;
	}

	pthread_mutex_lock(&c->mu);
	CURL *e = c->curl;
	curl_easy_reset(e); /* keeps the live connection and the TLS session */
	c->errbuf[0] = '\0';
	long timeout = (long)c->cfg->api_timeout_ms;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_PROXY_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_PROXY_SSL_VERIFYHOST, 2L);
	if (c->ca_blob) {
		struct curl_blob blob = {.data = c->ca_blob, .len = c->ca_len, .flags = CURL_BLOB_NOCOPY};
		curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
		curl_easy_setopt(e, CURLOPT_PROXY_CAINFO_BLOB, &blob);
	}
	if (c->cfg->proxy && *c->cfg->proxy)
		curl_easy_setopt(e, CURLOPT_PROXY, c->cfg->proxy);
	/* else: libcurl reads https_proxy, HTTPS_PROXY, all_proxy and no_proxy itself */
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout < 10000 ? timeout : 10000L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "interactor-connector/" CN_VERSION);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	if (strcmp(method, "GET") == 0)
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	if (body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	}
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
	x->curl_rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &x->status);
	/* the header list holds the token: it goes before anyone else uses the handle */
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
	pthread_mutex_unlock(&c->mu);
	headers_free(h);
	x->ms = (long)(now_ms() - start);
}

/* What a transport failure means, and whether another attempt may help. */
static bool curl_retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM: return true;
	default: return false;
	}
}

static bool curl_tls_failure(CURLcode rc)
{
	return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
	       rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_SSL_CERTPROBLEM;
}

static void log_exchange(const char *method, const char *url, const struct exchange *x, const char *crid,
			 unsigned attempt)
{
	const struct ic_headers *h = &x->headers;
	log_debug("interactor: %s %s -> %ld in %ld ms (attempt %u; X-Request-Id %s, X-Trace-Id %s, "
		  "X-Client-Request-Id %s; rate limit %s of %s left for %s, reset at %s)",
		  method, url_path(url), x->status, x->ms, attempt, h->request_id[0] ? h->request_id : "-",
		  h->trace_id[0] ? h->trace_id : "-", crid,
		  h->ratelimit_remaining[0] ? h->ratelimit_remaining : "?",
		  h->ratelimit_limit[0] ? h->ratelimit_limit : "?",
		  h->ratelimit_resource[0] ? h->ratelimit_resource : "?",
		  h->ratelimit_reset[0] ? h->ratelimit_reset : "?");
}

/* method url with its retries. bearer_call: an API call (token attached,
 * one refetch on 401); else the token request itself. */
static int call_with_retries(struct ic_client *c, const char *method, const char *url, const char *body,
			     bool bearer_call, struct ic_response *out, struct cn_error *err);

/* A current token in *token (malloc'ed copy). force: fetch a new one even
 * if the cached one is still good. */
static int get_token(struct ic_client *c, bool force, char **token, struct cn_error *err)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&c->token_mu);
	bool fresh = c->token && !force &&
		     (now.tv_sec < c->token_renew.tv_sec ||
		      (now.tv_sec == c->token_renew.tv_sec && now.tv_nsec < c->token_renew.tv_nsec));
	*token = fresh ? strdup(c->token) : NULL;
	pthread_mutex_unlock(&c->token_mu);
	if (fresh)
		return *token ? CN_OK : cn_error_set(err, CN_ENOMEM, "out of memory");

	cJSON *req = cJSON_CreateObject();
	char *text = NULL;
	if (req && cJSON_AddStringToObject(req, "grant_type", "client_credentials") &&
	    cJSON_AddStringToObject(req, "client_id", c->cfg->client_id) &&
	    cJSON_AddStringToObject(req, "client_secret", c->cfg->client_secret))
		text = cJSON_PrintUnformatted(req);
	if (req) {
		cJSON *sec = cJSON_GetObjectItemCaseSensitive(req, "client_secret");
		if (cJSON_IsString(sec))
			explicit_bzero(sec->valuestring, strlen(sec->valuestring));
	}
	cJSON_Delete(req);
	if (!text)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	struct ic_response r = {0};
	int rc = call_with_retries(c, "POST", c->cfg->auth_url, text, false, &r, err);
	explicit_bzero(text, strlen(text));
	free(text);
	if (rc) {
		ic_response_clear(&r);
		return rc;
	}
	char *tok = NULL, why[200];
	long expires_in = 0;
	char *printed = r.body ? cJSON_PrintUnformatted(r.body) : NULL;
	rc = printed ? ic_parse_token(printed, strlen(printed), &tok, &expires_in, why, sizeof why)
		     : (snprintf(why, sizeof why, "the token answer is not JSON"), CN_EINVAL);
	if (printed) {
		explicit_bzero(printed, strlen(printed));
		free(printed);
	}
	ic_response_clear(&r);
	if (rc)
		return fail(c, err, CN_EAUTH, "POST %s: %s", url_path(c->cfg->auth_url), why);
	if (ic_client_add_sensitive(c, tok)) {
		explicit_bzero(tok, strlen(tok));
		free(tok);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	/* renew a minute before the end, or halfway through a short life */
	long margin = expires_in / 2 < IC_TOKEN_MARGIN_S ? expires_in / 2 : IC_TOKEN_MARGIN_S;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&c->token_mu);
	if (c->token) {
		explicit_bzero(c->token, strlen(c->token));
		free(c->token);
	}
	c->token = tok;
	c->token_renew = now;
	c->token_renew.tv_sec += expires_in - margin;
	*token = strdup(tok);
	pthread_mutex_unlock(&c->token_mu);
	log_debug("interactor: new access token, valid for %ld s", expires_in);
	return *token ? CN_OK : cn_error_set(err, CN_ENOMEM, "out of memory");
}

static void drop_token(struct ic_client *c, const char *used)
{
	pthread_mutex_lock(&c->token_mu);
	if (c->token && used && strcmp(c->token, used) == 0) {
		explicit_bzero(c->token, strlen(c->token));
		free(c->token);
		c->token = NULL;
	}
	pthread_mutex_unlock(&c->token_mu);
}

static void free_token(char *t)
{
	if (t) {
		explicit_bzero(t, strlen(t));
		free(t);
	}
}

static int call_with_retries(struct ic_client *c, const char *method, const char *url, const char *body,
			     bool bearer_call, struct ic_response *out, struct cn_error *err)
{
	char crid[37], what[700] = "", platform[400];
	uuid4(crid);
	long long start = now_ms();
	bool refetched = false;
	int rc = CN_EUNAVAILABLE;
	memset(out, 0, sizeof *out);
	for (unsigned attempt = 1;; attempt++) {
		char *token = NULL;
		if (bearer_call && (rc = get_token(c, false, &token, err)) != CN_OK)
			return rc;
		struct exchange x;
		exchange_run(c, method, url, body, token, crid, &x);
		log_exchange(method, url, &x, crid, attempt);
		out->status = x.status;
		snprintf(out->request_id, sizeof out->request_id, "%s", x.headers.request_id);
		cJSON *parsed = x.body.data ? cJSON_ParseWithLength(x.body.data, x.body.len) : NULL;
		buf_free(&x.body);
		unsigned wait = 0;
		bool retry = false;
		ic_error_text(parsed, platform, sizeof platform);
		if (x.curl_rc == CURLE_WRITE_ERROR) {
			cJSON_Delete(parsed);
			free_token(token);
			return fail(c, err, CN_ETOOBIG, "%s %s: the answer is over %u bytes", method,
				    url_path(url), IC_MAX_RESPONSE);
		}
		if (x.curl_rc != CURLE_OK) {
			const char *why = c->errbuf[0] ? c->errbuf : curl_easy_strerror(x.curl_rc);
			if (curl_tls_failure(x.curl_rc)) {
				cJSON_Delete(parsed);
				free_token(token);
				return fail(
				    c, err, CN_EUNAVAILABLE,
				    "%s %s: TLS failed: %s; the platform's certificate must be trusted: "
				    "if a proxy inspects TLS or the platform uses a private CA, set "
				    "interactor.ca_file to that CA's PEM file",
				    method, url, why);
			}
			snprintf(what, sizeof what, "%s %s: %s", method, url, why);
			rc = CN_EUNAVAILABLE;
			retry = curl_retryable(x.curl_rc);
			wait = ic_backoff_ms(attempt, random_u32());
		} else if (x.status >= 200 && x.status < 300) {
			free_token(token);
			out->body = parsed;
			const cJSON *data = cJSON_GetObjectItemCaseSensitive(parsed, "data");
			out->data = data ? data : parsed;
			return CN_OK;
		} else if (x.status == 401 && bearer_call && !refetched) {
			/* the token expired or was revoked: one new one, then once more */
			drop_token(c, token);
			refetched = true;
			retry = true;
			rc = CN_EAUTH;
			snprintf(what, sizeof what, "%s %s: 401 %s", method, url_path(url), platform);
			log_info("interactor: %s %s answered 401 (%s); fetching a new token", method,
				 url_path(url), platform[0] ? platform : "unauthorized");
		} else if (x.status == 429) {
			rc = CN_EBUSY;
			long ra = x.headers.retry_after;
			if (ra > IC_RETRY_AFTER_MAX_S) {
				cJSON_Delete(parsed);
				free_token(token);
				return fail(c, err, CN_EBUSY,
					    "%s %s: rate limited (%s); the platform asks to "
					    "wait %ld s: try again later",
					    method, url_path(url), platform[0] ? platform : "429", ra);
			}
			wait = ra >= 0 ? (unsigned)ra * 1000u : ic_backoff_ms(attempt, random_u32());
			retry = true;
			snprintf(what, sizeof what, "%s %s: rate limited (429 %s)", method, url_path(url),
				 platform);
		} else if (x.status >= 500) {
			rc = CN_EUNAVAILABLE;
			retry = true;
			wait = ic_backoff_ms(attempt, random_u32());
			snprintf(what, sizeof what, "%s %s: the platform answered %ld %s", method,
				 url_path(url), x.status, platform);
		} else {
			cJSON_Delete(parsed);
			free_token(token);
			if (!bearer_call && (x.status == 400 || x.status == 401 || x.status == 403))
				return fail(c, err, CN_EAUTH,
					    "the platform refused the client credentials "
					    "(%ld %s) at %s: check interactor.client_id and "
					    "interactor.client_secret",
					    x.status, platform[0] ? platform : "unauthorized", url);
			if (x.status == 401 || x.status == 403)
				return fail(c, err, CN_EAUTH, "%s %s: %ld %s%s", method, url_path(url),
					    x.status, platform[0] ? platform : "unauthorized",
					    x.status == 401 ? " (a new token was refused too)"
							    : "; the client lacks the permission");
			return fail(c, err, x.status == 404 ? CN_ENOTFOUND : CN_EINVAL, "%s %s: %ld %s",
				    method, url_path(url), x.status,
				    platform[0] ? platform : "(no error message)");
		}
		cJSON_Delete(parsed);
		free_token(token);
		long long spent = now_ms() - start;
		if (!retry || attempt >= IC_MAX_ATTEMPTS || spent + wait > IC_TOTAL_BUDGET_MS)
			return fail(c, err, rc, "%s (gave up after %u attempt%s in %lld ms)", what, attempt,
				    attempt == 1 ? "" : "s", spent);
		if (x.status != 401)
			log_warn("interactor: %s; retrying in %u ms (attempt %u of %d)", what, wait,
				 attempt + 1, IC_MAX_ATTEMPTS);
		sleep_ms(wait);
	}
}

int ic_call(struct ic_client *c, const char *method, const char *path, const cJSON *body,
	    struct ic_response *out, struct cn_error *err)
{
	char *text = body ? cJSON_PrintUnformatted(body) : NULL;
	char *url = NULL;
	const char *base = c->cfg->api_url;
	size_t bl = strlen(base);
	while (bl && base[bl - 1] == '/')
		bl--;
	if ((body && !text) || asprintf(&url, "%.*s%s", (int)bl, base, path) < 0) {
		free(text);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	int rc = call_with_retries(c, method, url, text, true, out, err);
	if (text) {
		explicit_bzero(text, strlen(text)); /* a body may hold a callback secret */
		free(text);
	}
	free(url);
	return rc;
}
