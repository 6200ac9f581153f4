/*
 * http_server.h - the callback endpoint on libmicrohttpd: a thread per
 * connection (up to max_connections; more are closed at once), bodies
 * collected up to REQUEST_MAX_BODY (a larger Content-Length is answered 413
 * before the body is read), each request handed to request_handle().
 * Stopping stops accepting, lets in-flight requests finish (bounded), then
 * closes.
 */
#ifndef CN_HTTP_SERVER_H
#define CN_HTTP_SERVER_H

#include <stdint.h>
#include <sys/socket.h>

#include "app.h"

struct http_server;

/* listen is "host:port" or "[v6]:port"; port 0 picks a free one. */
int http_server_start(struct app *app, const char *listen, unsigned max_connections,
		      struct http_server **out, struct cn_error *err) CN_MUST_USE;
uint16_t http_server_port(const struct http_server *srv);
/* Stop accepting, wait up to drain_ms for in-flight requests, then free. */
void http_server_stop(struct http_server *srv, unsigned drain_ms);

/* Split "host:port" / "[v6]:port" into a socket address. */
int http_parse_listen(const char *listen, struct sockaddr_storage *ss, struct cn_error *err) CN_MUST_USE;

#endif
