/*
 * verdicts.h - a driver's memory of the query texts its guard accepted, so
 * that a text an assistant sends again is not parsed again.
 *
 * Only acceptances are kept, keyed by the exact bytes of the text, with the
 * highest $n the text uses and a generation the driver chooses: an entry is
 * used only under the generation it was made in, so a driver whose guard
 * depends on something that changes (what it knows of the tables) bumps its
 * generation when that changes. A rejected text is never remembered: it is
 * parsed, and refused, every time.
 *
 * A direct-mapped table of VERDICTS_N entries under one mutex: a colliding
 * text replaces the older one. Texts longer than VERDICTS_MAX_TEXT bytes are
 * not kept. Compiled into each driver module that uses it.
 */
#ifndef CN_DRIVER_VERDICTS_H
#define CN_DRIVER_VERDICTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VERDICTS_N 64
#define VERDICTS_MAX_TEXT 4096u

struct verdict {
	uint64_t hash;
	char *text; /* owned; NULL when the entry is empty */
	size_t len;
	unsigned gen;
	int max_param;
};

struct verdicts {
	pthread_mutex_t lock;
	struct verdict v[VERDICTS_N];
};

void verdicts_init(struct verdicts *vs);
void verdicts_destroy(struct verdicts *vs);
/* True when the guard accepted exactly this text under generation gen;
 * *max_param (may be NULL) then receives what was put with it. */
bool verdicts_get(struct verdicts *vs, const char *sql, unsigned gen, int *max_param);
/* Remember an acceptance; gen is the generation read before the guard ran.
 * Out of memory: nothing is remembered. */
void verdicts_put(struct verdicts *vs, const char *sql, unsigned gen, int max_param);

#endif
