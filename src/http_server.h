/*
 * http_server.h - the callback endpoint on libmicrohttpd: a thread per
 * connection (up to max_connections; more are closed at once), bodies
 * collected up to REQUEST_MAX_BODY (a larger Content-Length is answered 413
 * before the body is read), each request handed to request_handle().
 * Stopping stops accepting, lets in-flight requests finish (bounded), then
 * closes.
 *
 * Facing the internet: HTTPS with TLS 1.2 or 1.3 only when a certificate is
 * given; a connection from outside allow_from is closed before anything is
 * read; one client address holds at most per_address connections (the
 * others stay free for Interactor); a connection silent for timeout_s
 * seconds before its request has arrived is closed.
 */
#ifndef CN_HTTP_SERVER_H
#define CN_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "app.h"
#include "tls.h"

struct http_server;

#define HTTP_MAX_ALLOW 64

/* A client network: family AF_INET or AF_INET6, address bytes, prefix bits. */
struct http_net {
	int family;
	unsigned char addr[16];
	int prefix;
};

/* What a reload may change while the server runs. */
struct http_live {
	const struct http_net *allow;         /* nallow 0: every address */
	size_t nallow;
	const struct http_net *metrics_allow; /* who may GET /metrics; none: nobody */
	size_t nmetrics_allow;
	struct tls_keys *tls;                 /* taken over; NULL: plain HTTP */
};

struct http_options {
	const char *listen;          /* "host:port" or "[v6]:port"; port 0 picks a free one */
	unsigned max_connections;
	unsigned per_address;        /* connections one client address may hold */
	unsigned timeout_s;          /* silence allowed before the request has arrived */
	struct http_live live;
};

/* opts->live.tls is taken over, also on error. */
int http_server_start(struct app *app, const struct http_options *opts, struct http_server **out,
		      struct cn_error *err) CN_MUST_USE;
/* True when the server listens on a loopback address only. */
bool http_listen_is_loopback(const char *listen);
uint16_t http_server_port(const struct http_server *srv);
/* A reload: new networks now, a new certificate for the next handshakes
 * (live->tls taken over, also on error). Plain HTTP cannot become HTTPS, nor
 * the reverse, without a restart: CN_ECONFIG says so and nothing changes. */
int http_server_update(struct http_server *srv, const struct http_live *live,
		       struct cn_error *err) CN_MUST_USE;
/* Stop accepting, wait up to drain_ms for in-flight requests, then free. */
void http_server_stop(struct http_server *srv, unsigned drain_ms);

/* Split "host:port" / "[v6]:port" into a socket address. */
int http_parse_listen(const char *listen, struct sockaddr_storage *ss, struct cn_error *err) CN_MUST_USE;

#endif
