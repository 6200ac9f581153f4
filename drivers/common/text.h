/*
 * text.h - small text helpers drivers share: UTF-8 validation of query
 * texts, and messages made safe to show (one line, no password). Compiled
 * into each driver module that uses it.
 */
#ifndef CN_DRIVER_TEXT_H
#define CN_DRIVER_TEXT_H

#include <stddef.h>

/* Offset of the first byte of s (NUL-terminated) that is not valid UTF-8
 * (overlong forms, surrogates and code points past U+10FFFF included), or -1. */
long text_utf8_invalid_at(const unsigned char *s);
/* Replace every occurrence of secret (2 bytes or more) in buf with "***". */
void text_scrub(char *buf, size_t size, const char *secret);
/* Newlines and tabs to single spaces, runs of spaces to one, trimmed. */
void text_one_line(char *s);

#endif
