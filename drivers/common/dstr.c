/*
 * dstr.c - see dstr.h.
 */
#include "dstr.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

int dstr_append(struct dstr *s, const char *p, size_t n)
{
	if (s->len + n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 64;
		while (cap < s->len + n + 1) {
			if (cap > SIZE_MAX / 2)
				return CN_ENOMEM;
			cap *= 2;
		}
		char *d = realloc(s->data, cap);
		if (!d)
			return CN_ENOMEM;
		s->data = d;
		s->cap = cap;
	}
	if (n)
		memcpy(s->data + s->len, p, n);
	s->len += n;
	s->data[s->len] = '\0';
	return CN_OK;
}

int dstr_puts(struct dstr *s, const char *p)
{
	return dstr_append(s, p, strlen(p));
}

int dstr_printf(struct dstr *s, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return CN_EINVAL;
	if ((size_t)n < sizeof small)
		return dstr_append(s, small, (size_t)n);
	char *big = malloc((size_t)n + 1);
	if (!big)
		return CN_ENOMEM;
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	int rc = dstr_append(s, big, (size_t)n);
	free(big);
	return rc;
}

/* The escapes of dstr_json; lossy: invalid UTF-8 as \ufffd as well. */
static int json_string(struct dstr *s, const char *p, size_t n, bool lossy)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)p;
	int rc = dstr_append(s, "\"", 1);
	size_t run = 0; /* bytes copied as they are, flushed before an escape */
	for (size_t i = 0; rc == CN_OK && i < n;) {
		unsigned char c = u[i];
		char esc[7];
		size_t elen = 0, step = 1;
		if (c == '"' || c == '\\') {
			esc[0] = '\\', esc[1] = (char)c, elen = 2;
		} else if (c == '\n') {
			esc[0] = '\\', esc[1] = 'n', elen = 2;
		} else if (c == '\t') {
			esc[0] = '\\', esc[1] = 't', elen = 2;
		} else if (c == '\r') {
			esc[0] = '\\', esc[1] = 'r', elen = 2;
		} else if (c < 0x20 || c == 0x7F) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4], esc[5] = hex[c & 15], elen = 6;
		} else if (c >= 0x80 && lossy) {
			step = text_utf8_len(u + i, n - i);
			if (!step) {
				memcpy(esc, "\\ufffd", 6);
				elen = 6, step = 1;
			}
		}
		if (!elen) {
			run += step;
			i += step;
			continue;
		}
		rc = dstr_append(s, p + i - run, run);
		run = 0;
		if (rc == CN_OK)
			rc = dstr_append(s, esc, elen);
		i += step;
	}
	if (rc == CN_OK)
		rc = dstr_append(s, p + n - run, run);
	return rc ? rc : dstr_append(s, "\"", 1);
}

int dstr_json(struct dstr *s, const char *p, size_t n)
{
	return json_string(s, p, n, false);
}

int dstr_json_lossy(struct dstr *s, const char *p, size_t n)
{
	return json_string(s, p, n, true);
}

void dstr_reset(struct dstr *s)
{
	s->len = 0;
	if (s->data)
		s->data[0] = '\0';
}

void dstr_free(struct dstr *s)
{
	free(s->data);
	*s = (struct dstr){0};
}
