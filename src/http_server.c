#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_server.h"
#include "log.h"
#include "request.h"

/* libmicrohttpd's per-connection pool: request line, headers and its read and
 * write buffers (bodies are copied out as they arrive, answers are sent from
 * our own buffer). It is zeroed for every request on a kept-alive connection,
 * so it is kept small: headers beyond it get 431. */
#define HTTP_CONNECTION_MEMORY (16u * 1024u)

struct http_server {
	struct MHD_Daemon *mhd;
	struct app *app;
	atomic_int inflight;
	uint16_t port;
};

/* Per-connection state while the body arrives. */
struct upload {
	char *data;
	size_t len, cap;
	bool too_large;
};

int http_parse_listen(const char *listen, struct sockaddr_storage *ss, struct cn_error *err)
{
	char host[256];
	const char *port_s;
	memset(ss, 0, sizeof *ss);
	if (listen[0] == '[') {
		const char *end = strchr(listen, ']');
		if (!end || end[1] != ':' || (size_t)(end - listen - 1) >= sizeof host)
			goto bad;
		memcpy(host, listen + 1, (size_t)(end - listen - 1));
		host[end - listen - 1] = '\0';
		port_s = end + 2;
	} else {
		const char *colon = strrchr(listen, ':');
		if (!colon || (size_t)(colon - listen) >= sizeof host)
			goto bad;
		memcpy(host, listen, (size_t)(colon - listen));
		host[colon - listen] = '\0';
		port_s = colon + 1;
	}
	char *end;
	long port = strtol(port_s, &end, 10);
	if (!*port_s || *end || port < 0 || port > 65535)
		goto bad;
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	if (!*host || strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0) {
		v4->sin_family = AF_INET;
		v4->sin_addr.s_addr = htonl(INADDR_ANY);
		v4->sin_port = htons((uint16_t)port);
	} else if (inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
	} else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
	} else {
		goto bad;
	}
	return CN_OK;
bad:
	return cn_error_set(err, CN_EINVAL,
			    "listen address '%s' is not valid: use HOST:PORT with a numeric address, "
			    "e.g. 127.0.0.1:8080 or [::1]:8080",
			    listen);
}

static enum MHD_Result send_response(struct MHD_Connection *conn, struct http_response *r)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
	if (!resp)
		return MHD_NO;
	r->body = NULL; /* owned by MHD now */
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	if (r->retry_after > 0) {
		char v[16];
		snprintf(v, sizeof v, "%d", r->retry_after);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
	}
	if (r->allow_post)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "POST");
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct http_server *srv = cls;
	struct upload *up = *con_cls;
	(void)version;

	if (!up) {
		up = calloc(1, sizeof *up);
		if (!up)
			return MHD_NO;
		*con_cls = up;
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl) {
			char *end;
			unsigned long long n = strtoull(cl, &end, 10);
			if (*end || n > REQUEST_MAX_BODY)
				up->too_large = true;
		}
		if (!up->too_large)
			return MHD_YES; /* wait for the body */
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (up->too_large || n > REQUEST_MAX_BODY - up->len) {
			up->too_large = true;
			free(up->data);
			up->data = NULL;
			up->len = up->cap = 0;
			return MHD_YES; /* drain what was sent, answer 413 at the end */
		}
		if (up->len + n > up->cap) {
			size_t cap = up->cap ? up->cap : 4096;
			while (cap < up->len + n)
				cap *= 2;
			char *p = realloc(up->data, cap);
			if (!p)
				return MHD_NO;
			up->data = p;
			up->cap = cap;
		}
		memcpy(up->data + up->len, upload_data, n);
		up->len += n;
		return MHD_YES;
	}

	atomic_fetch_add(&srv->inflight, 1);
	struct http_request req = {
		.method = method,
		.path = url,
		.signature = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Interactor-Signature"),
		.timestamp = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Interactor-Timestamp"),
		.request_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Interactor-Request-Id"),
		.body = up->data ? up->data : "",
		.len = up->len,
		.too_large = up->too_large,
	};
	struct http_response resp;
	request_handle(srv->app, &req, &resp);
	enum MHD_Result ret = send_response(conn, &resp);
	http_response_free(&resp);
	atomic_fetch_sub(&srv->inflight, 1);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	struct upload *up = *con_cls;
	if (up) {
		free(up->data);
		free(up);
		*con_cls = NULL;
	}
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	(void)cls;
	vsnprintf(msg, sizeof msg, fmt, ap);
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	log_debug("http: %s", msg);
}

int http_server_start(struct app *app, const char *listen, unsigned max_connections,
		      struct http_server **out, struct cn_error *err)
{
	struct sockaddr_storage ss;
	int rc = http_parse_listen(listen, &ss, err);
	if (rc)
		return rc;
	struct http_server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	srv->app = app;
	atomic_init(&srv->inflight, 0);
	/* A thread per connection: a request blocks its thread while the driver
	 * runs the query, so connections sharing a worker (libmicrohttpd's thread
	 * pool binds each connection to one) would wait behind a slow query. */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			 MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	srv->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv,
				    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
				    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
				    MHD_OPTION_CONNECTION_LIMIT, max_connections,
				    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONNECTION_MEMORY,
				    MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)256,
				    MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
				    MHD_OPTION_END);
	if (!srv->mhd) {
		free(srv);
		return cn_error_set(err, CN_EIO,
				    "cannot listen on %s: the address may be in use or not local to this "
				    "machine (set server.listen or --listen)",
				    listen);
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = info ? info->port : 0;
	*out = srv;
	return CN_OK;
}

uint16_t http_server_port(const struct http_server *srv)
{
	return srv->port;
}

void http_server_stop(struct http_server *srv, unsigned drain_ms)
{
	if (!srv)
		return;
	MHD_socket fd = MHD_quiesce_daemon(srv->mhd);
	struct timespec tick = {0, 10 * 1000000L};
	for (unsigned waited = 0; atomic_load(&srv->inflight) > 0 && waited < drain_ms; waited += 10)
		nanosleep(&tick, NULL);
	if (atomic_load(&srv->inflight) > 0)
		log_warn("stopping with %d request(s) still running", atomic_load(&srv->inflight));
	MHD_stop_daemon(srv->mhd);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	free(srv);
}
