/*
 * text.c - see text.h.
 */
#include "text.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Offset of the first byte that is not valid UTF-8, or -1. */
long text_utf8_invalid_at(const unsigned char *s)
{
	const unsigned char *p = s;
	while (*p) {
		unsigned c = *p;
		int n;
		unsigned min;
		if (c < 0x80) {
			p++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			n = 1, min = 0x80, c &= 0x1F;
		} else if ((c & 0xF0) == 0xE0) {
			n = 2, min = 0x800, c &= 0x0F;
		} else if ((c & 0xF8) == 0xF0) {
			n = 3, min = 0x10000, c &= 0x07;
		} else {
			return p - s;
		}
		for (int i = 1; i <= n; i++) {
			if ((p[i] & 0xC0) != 0x80)
				return p - s;
			c = (c << 6) | (p[i] & 0x3F);
		}
		if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
			return p - s;
		p += n + 1;
	}
	return -1;
}

/* Replace every occurrence of secret in buf with "***". */
void text_scrub(char *buf, size_t size, const char *secret)
{
	size_t n = secret ? strlen(secret) : 0;
	if (n < 2 || !strstr(buf, secret))
		return;
	char out[1024];
	size_t w = 0;
	for (const char *r = buf; *r && w + 4 < sizeof out;) {
		if (strncmp(r, secret, n) == 0) {
			memcpy(out + w, "***", 3);
			w += 3;
			r += n;
		} else {
			out[w++] = *r++;
		}
	}
	out[w] = '\0';
	snprintf(buf, size, "%s", out);
}

/* Newlines and tabs to single spaces, trimmed. */
void text_one_line(char *s)
{
	char *w = s;
	bool space = true;
	for (char *r = s; *r; r++) {
		char c = (*r == '\n' || *r == '\t' || *r == '\r') ? ' ' : *r;
		if (c == ' ' && space)
			continue;
		space = c == ' ';
		*w++ = c;
	}
	while (w > s && w[-1] == ' ')
		w--;
	*w = '\0';
}
