#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "tls.h"

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
	bool tls;
	pthread_mutex_t nets_mu; /* guards the networks: a reload replaces them */
	struct http_net allow[HTTP_MAX_ALLOW];
	size_t nallow;
	struct http_net metrics_allow[HTTP_MAX_ALLOW];
	size_t nmetrics_allow;
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

/* Does the network hold the address (bytes in network order)? */
static bool net_holds(const struct http_net *n, const unsigned char *a)
{
	int full = n->prefix / 8, rest = n->prefix % 8;
	if (memcmp(n->addr, a, (size_t)full) != 0)
		return false;
	if (!rest)
		return true;
	unsigned char mask = (unsigned char)(0xFF << (8 - rest));
	return (n->addr[full] & mask) == (a[full] & mask);
}

/* Is addr in one of the networks? An IPv4 client on an IPv6 socket arrives
 * as ::ffff:a.b.c.d and is matched as IPv4. */
static bool nets_hold(const struct http_net *nets, size_t n, const struct sockaddr *addr)
{
	if (!addr)
		return false;
	unsigned char a[16];
	int family = addr->sa_family;
	if (family == AF_INET) {
		memcpy(a, &((const struct sockaddr_in *)addr)->sin_addr, 4);
	} else if (family == AF_INET6) {
		const unsigned char *b = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
		if (!memcmp(b, mapped, sizeof mapped)) {
			family = AF_INET;
			memcpy(a, b + 12, 4);
		} else {
			memcpy(a, b, 16);
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < n; i++)
		if (nets[i].family == family && net_holds(&nets[i], a))
			return true;
	return false;
}

/* libmicrohttpd asks before it reads anything from a new connection. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
	struct http_server *srv = cls;
	(void)len;
	pthread_mutex_lock(&srv->nets_mu);
	bool ok = !srv->nallow || nets_hold(srv->allow, srv->nallow, addr);
	pthread_mutex_unlock(&srv->nets_mu);
	if (!ok)
		metrics_connection_denied();
	return ok ? MHD_YES : MHD_NO;
}

/* GET /metrics is for the operator's networks only. */
static bool metrics_allowed(struct http_server *srv, struct MHD_Connection *conn, const char *url)
{
	if (strcmp(url, "/metrics") != 0)
		return false;
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	pthread_mutex_lock(&srv->nets_mu);
	bool ok = ci && nets_hold(srv->metrics_allow, srv->nmetrics_allow, ci->client_addr);
	pthread_mutex_unlock(&srv->nets_mu);
	return ok;
}

static enum MHD_Result send_response(struct MHD_Connection *conn, struct http_response *r)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
	if (!resp)
		return MHD_NO;
	r->body = NULL; /* owned by MHD now */
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				r->content_type ? r->content_type : "application/json");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	if (r->retry_after > 0) {
		char v[16];
		snprintf(v, sizeof v, "%d", r->retry_after);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
	}
	if (r->allow_post)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "POST");
	if (r->location)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
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
		.metrics_allowed = metrics_allowed(srv, conn, url),
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

static void server_free(struct http_server *srv)
{
	pthread_mutex_destroy(&srv->nets_mu);
	free(srv);
}

/* The networks of live, under nets_mu. */
static int set_nets(struct http_server *srv, const struct http_live *live, struct cn_error *err)
{
	if (live->nallow > HTTP_MAX_ALLOW || live->nmetrics_allow > HTTP_MAX_ALLOW)
		return cn_error_set(err, CN_ECONFIG, "at most %d networks in server.allow_from and "
				    "in metrics.allow_from", HTTP_MAX_ALLOW);
	pthread_mutex_lock(&srv->nets_mu);
	if (live->nallow)
		memcpy(srv->allow, live->allow, live->nallow * sizeof *live->allow);
	srv->nallow = live->nallow;
	if (live->nmetrics_allow)
		memcpy(srv->metrics_allow, live->metrics_allow,
		       live->nmetrics_allow * sizeof *live->metrics_allow);
	srv->nmetrics_allow = live->nmetrics_allow;
	pthread_mutex_unlock(&srv->nets_mu);
	return CN_OK;
}

int http_server_update(struct http_server *srv, const struct http_live *live, struct cn_error *err)
{
	if (!live->tls != !srv->tls) {
		tls_keys_free(live->tls);
		return cn_error_set(err, CN_ECONFIG, "%s: switching between HTTP and HTTPS needs a "
				    "restart", srv->tls ? "server.tls removed" : "server.tls added");
	}
	int rc = set_nets(srv, live, err);
	if (rc) {
		tls_keys_free(live->tls);
		return rc;
	}
	if (live->tls && tls_keys_same_as_current(live->tls))
		tls_keys_free(live->tls);
	else if (live->tls)
		tls_set_current(live->tls);
	return CN_OK;
}

bool http_listen_is_loopback(const char *listen)
{
	struct sockaddr_storage ss;
	if (http_parse_listen(listen, &ss, NULL))
		return false;
	if (ss.ss_family == AF_INET)
		return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
	return IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
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

/* GnuTLS priorities: its usual choices, TLS 1.2 and 1.3 only. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

int http_server_start(struct app *app, const struct http_options *opts, struct http_server **out,
		      struct cn_error *err)
{
	struct sockaddr_storage ss;
	int rc = http_parse_listen(opts->listen, &ss, err);
	if (rc) {
		tls_keys_free(opts->live.tls);
		return rc;
	}
	bool tls = opts->live.tls != NULL;
	if (tls && !MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK)) {
		tls_keys_free(opts->live.tls);
		return cn_error_set(err, CN_ECONFIG, "this libmicrohttpd was built without TLS: "
				    "remove server.tls or put a TLS proxy in front");
	}
	struct http_server *srv = calloc(1, sizeof *srv);
	if (!srv) {
		tls_keys_free(opts->live.tls);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	srv->app = app;
	srv->tls = tls;
	atomic_init(&srv->inflight, 0);
	pthread_mutex_init(&srv->nets_mu, NULL);
	if ((rc = set_nets(srv, &opts->live, err))) {
		tls_keys_free(opts->live.tls);
		server_free(srv);
		return rc;
	}
	if (tls)
		tls_set_current(opts->live.tls); /* each handshake takes the current pair */
	/* A thread per connection: a request blocks its thread while the driver
	 * runs the query, so connections sharing a worker (libmicrohttpd's thread
	 * pool binds each connection to one) would wait behind a slow query. */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
			 MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (tls)
		flags |= MHD_USE_TLS;
	/* The TLS options go last: without MHD_USE_TLS they are not given at all. */
	srv->mhd = MHD_start_daemon(flags, 0, on_accept, srv, on_request, srv,
				    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
				    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				    MHD_OPTION_CONNECTION_TIMEOUT, opts->timeout_s ? opts->timeout_s : 10u,
				    MHD_OPTION_CONNECTION_LIMIT, opts->max_connections,
				    MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				    opts->per_address ? opts->per_address : opts->max_connections,
				    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONNECTION_MEMORY,
				    MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)256,
				    MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
				    tls ? MHD_OPTION_HTTPS_CERT_CALLBACK : MHD_OPTION_END,
				    tls_cert_callback(), MHD_OPTION_HTTPS_PRIORITIES, TLS_PRIORITIES,
				    MHD_OPTION_END);
	if (!srv->mhd) {
		server_free(srv);
		if (tls)
			tls_shutdown();
		return cn_error_set(err, CN_EIO,
				    "cannot listen on %s: the address may be in use or not local to this "
				    "machine (set server.listen or --listen)",
				    opts->listen);
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
	if (srv->tls)
		tls_shutdown();
	server_free(srv);
}
