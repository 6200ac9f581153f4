/*
 * text.h - small text helpers drivers share: UTF-8 validation of query
 * texts, and messages made safe to show (one line, no password). Compiled
 * into each driver module that uses it.
 */
#ifndef CN_DRIVER_TEXT_H
#define CN_DRIVER_TEXT_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s (n >= 1 bytes left): 1 to 4, or 0
 * when it is not valid UTF-8 (overlong forms, surrogates, code points past
 * U+10FFFF, cut short by the end). For texts that need not end in a NUL. */
size_t text_utf8_len(const unsigned char *s, size_t n);
/* Offset of the first byte of s (NUL-terminated) that is not valid UTF-8
 * (overlong forms, surrogates and code points past U+10FFFF included), or -1. */
long text_utf8_invalid_at(const unsigned char *s);
/* The value of the hex digit c (either case), or -1. */
int text_hex_digit(int c);
/* Replace every occurrence of secret (2 bytes or more) in buf with "***". */
void text_scrub(char *buf, size_t size, const char *secret);
/* Newlines and tabs to single spaces, runs of spaces to one, trimmed. */
void text_one_line(char *s);

#endif
