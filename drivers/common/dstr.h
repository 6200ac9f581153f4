/*
 * dstr.h - a growable string for drivers: always NUL-terminated once
 * something was added; the owner frees it with dstr_free. Compiled into
 * each driver module that uses it, with text.c.
 */
#ifndef CN_DRIVER_DSTR_H
#define CN_DRIVER_DSTR_H

#include <stddef.h>

#include "connector_driver.h"

struct dstr {
	char *data; /* owned */
	size_t len, cap;
};

int dstr_append(struct dstr *s, const char *p, size_t n); /* CN_OK or CN_ENOMEM */
int dstr_puts(struct dstr *s, const char *p);
int dstr_printf(struct dstr *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* p (n bytes, UTF-8) as a JSON string literal with the quotes. */
int dstr_json(struct dstr *s, const char *p, size_t n);
/* p (n bytes, any) as a JSON string literal with the quotes: as dstr_json,
 * but a byte that does not start a valid UTF-8 sequence becomes \ufffd
 * (for values a server does not promise to be UTF-8). */
int dstr_json_lossy(struct dstr *s, const char *p, size_t n);
void dstr_reset(struct dstr *s);
void dstr_free(struct dstr *s);

#endif
