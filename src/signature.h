/*
 * signature.h - Interactor's callback signature: X-Interactor-Signature is
 * "sha256=" + lowercase hex HMAC-SHA256 of the raw body keyed with the
 * tool's callback secret; X-Interactor-Timestamp is ISO 8601 UTC.
 */
#ifndef CN_SIGNATURE_H
#define CN_SIGNATURE_H

#include <stddef.h>
#include <time.h>

#include "status.h"

#define SIGNATURE_HEX_LEN 64
#define SIGNATURE_HEADER_LEN (7 + SIGNATURE_HEX_LEN) /* "sha256=" + hex */

/* Parse "2026-01-20T12:00:00Z" (also fractional seconds and +hh:mm / -hh:mm
 * offsets) into a unix time. CN_EINVAL when malformed. */
int signature_parse_timestamp(const char *s, time_t *out) CN_MUST_USE;
/* Format t as "YYYY-MM-DDTHH:MM:SSZ" into out (at least 21 bytes). */
void signature_format_timestamp(time_t t, char out[21]);

/* out receives "sha256=<64 hex>" and a NUL (SIGNATURE_HEADER_LEN + 1 bytes). */
int signature_sign(const char *secret, size_t secret_len, const void *body, size_t len,
		   char out[SIGNATURE_HEADER_LEN + 1]) CN_MUST_USE;

/* Verify a callback. sig_header and ts_header may be NULL (missing).
 * Returns CN_OK, or CN_EAUTH with a short reason in err ("missing
 * X-Interactor-Signature header", "timestamp outside the 300 s tolerance",
 * "signature does not match", ...). The comparison is constant time and every
 * secret is tried (rotation). The reason never contains a secret or the
 * expected signature. */
int signature_verify(const char *const *secrets, size_t nsecrets, const void *body, size_t len,
		     const char *sig_header, const char *ts_header, time_t now,
		     unsigned tolerance_s, struct cn_error *err) CN_MUST_USE;

#endif
