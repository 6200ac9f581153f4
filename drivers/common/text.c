/*
 * text.c - see text.h.
 */
#include "text.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

size_t text_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f))
			return 0; /* overlong, surrogate */
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
			return 0; /* overlong, past U+10FFFF */
		return 4;
	}
	return 0;
}

/* Offset of the first byte that is not valid UTF-8, or -1. */
long text_utf8_invalid_at(const unsigned char *s)
{
	size_t n = strlen((const char *)s);
	for (size_t i = 0; i < n;) {
		size_t len = text_utf8_len(s + i, n - i);
		if (!len)
			return (long)i;
		i += len;
	}
	return -1;
}

int text_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
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
