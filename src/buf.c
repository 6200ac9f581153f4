#include "buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max < SIZE_MAX / 2 ? max : SIZE_MAX / 2; /* len + more + 1 never wraps */
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_reset(struct buf *b)
{
	buf_truncate(b, 0);
}

void buf_truncate(struct buf *b, size_t len)
{
	if (len > b->len)
		return;
	b->len = len;
	if (b->data)
		b->data[len] = '\0';
}

/* Room for `more` bytes plus the NUL. */
static int buf_reserve(struct buf *b, size_t more)
{
	if (more > b->max || b->len > b->max - more)
		return CN_ETOOBIG;
	size_t need = b->len + more + 1;
	if (need <= b->cap)
		return CN_OK;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	char *p = realloc(b->data, cap);
	if (!p)
		return CN_ENOMEM;
	b->data = p;
	b->cap = cap;
	return CN_OK;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	int rc = buf_reserve(b, len);
	if (rc)
		return rc;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return CN_OK;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_put_i64(struct buf *b, long long v)
{
	char tmp[24], *p = tmp + sizeof tmp;
	unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	return buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return CN_EINVAL;
	int rc = buf_reserve(b, (size_t)n);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return CN_OK;
}

size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (avail < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

int buf_json_string(struct buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t start = b->len;
	int rc = buf_append(b, "\"", 1);
	size_t i = 0;
	while (rc == 0 && i < len) {
		size_t run = i;
		/* copy plain runs in one append */
		while (run < len && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
			run++;
		if (run > i) {
			rc = buf_append(b, s + i, run - i);
			i = run;
			continue;
		}
		unsigned char c = p[i];
		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};
			rc = buf_append(b, esc, 2);
			i++;
		} else if (c < 0x20) {
			char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			switch (c) {
			case '\n': rc = buf_append(b, "\\n", 2); break;
			case '\r': rc = buf_append(b, "\\r", 2); break;
			case '\t': rc = buf_append(b, "\\t", 2); break;
			default: rc = buf_append(b, esc, 6); break;
			}
			i++;
		} else {
			size_t n = utf8_seq_len(p + i, len - i);
			if (n == 0) {
				rc = buf_append(b, "\xef\xbf\xbd", 3);
				i++;
			} else {
				rc = buf_append(b, s + i, n);
				i += n;
			}
		}
	}
	if (rc == 0)
		rc = buf_append(b, "\"", 1);
	if (rc)
		buf_truncate(b, start);
	return rc;
}

char *buf_steal(struct buf *b, size_t *len)
{
	char *p = b->data;
	if (!p) {
		p = calloc(1, 1);
	}
	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}
