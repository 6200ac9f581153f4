/*
 * buf.h - a bounded growable byte buffer for everything built from outside
 * input. Appends past `max` fail with CN_ETOOBIG and leave the buffer as it
 * was; the content is always NUL-terminated (the NUL is not counted in len).
 */
#ifndef CN_BUF_H
#define CN_BUF_H

#include <stddef.h>

#include "status.h"

struct buf {
	char *data; /* owned; NULL until the first append */
	size_t len;
	size_t cap;
	size_t max; /* hard limit on len */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b); /* back to empty, keeps max */
void buf_reset(struct buf *b); /* len = 0, keeps memory */
void buf_truncate(struct buf *b, size_t len); /* back to len bytes (len <= b->len) */
int buf_append(struct buf *b, const void *data, size_t len) CN_MUST_USE;
int buf_puts(struct buf *b, const char *s) CN_MUST_USE;
/* v in decimal, as printf's %lld writes it (no printf on hot paths). */
int buf_put_i64(struct buf *b, long long v) CN_MUST_USE;
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3))) CN_MUST_USE;
/* s (len bytes) as a JSON string literal with quotes; invalid UTF-8 becomes U+FFFD. */
int buf_json_string(struct buf *b, const char *s, size_t len) CN_MUST_USE;
/* Length of the valid UTF-8 sequence at s (1-4 bytes, at most avail), or 0
 * when it is not valid UTF-8 (overlong, surrogate, past U+10FFFF, cut short). */
size_t utf8_seq_len(const unsigned char *s, size_t avail);
/* Hand the data to the caller (free() it); the buffer becomes empty. */
char *buf_steal(struct buf *b, size_t *len);

#endif
