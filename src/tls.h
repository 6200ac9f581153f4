/*
 * tls.h - the server's certificate chain and key, loaded and checked with
 * GnuTLS (libmicrohttpd's own TLS library) so that they can be replaced
 * while the server runs: a reload loads the new pair and makes it current;
 * each new handshake takes the current pair through libmicrohttpd's
 * certificate callback, and connections already open keep theirs.
 *
 * GnuTLS keeps using a pair for as long as a session made with it lives, so
 * a pair that was ever current stays in memory until tls_shutdown() (one
 * pair per certificate change: a few KiB a renewal).
 */
#ifndef CN_TLS_H
#define CN_TLS_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"

#define TLS_MAX_CHAIN 16

struct tls_keys;

/* Read the PEM chain and the PEM (unencrypted) key, and check that the key
 * is the certificate's. Errors name the file and what to do. */
int tls_keys_load(const char *cert_path, const char *key_path, struct tls_keys **out,
		  struct cn_error *err) CN_MUST_USE;
void tls_keys_free(struct tls_keys *k); /* NULL is a no-op; never a current pair */
/* Same certificate and key bytes as the current pair (a reload that changed nothing). */
bool tls_keys_same_as_current(const struct tls_keys *k);
/* When the leaf certificate expires (unix time), for the log and the metrics. */
int64_t tls_keys_not_after(const struct tls_keys *k);

/* Make k the pair new handshakes get (taken over). */
void tls_set_current(struct tls_keys *k);
/* The current pair's expiry, 0 when there is none. */
int64_t tls_current_not_after(void);
/* libmicrohttpd's MHD_OPTION_HTTPS_CERT_CALLBACK (a GnuTLS retrieve
 * function; void * here so that only tls.c includes GnuTLS). */
void *tls_cert_callback(void);
/* Free every pair: the server has stopped. */
void tls_shutdown(void);

#endif
