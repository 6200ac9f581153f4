/*
 * pg_verdict.c - the guard's recent acceptances, so that a query text the
 * full guard has already accepted is not parsed again.
 *
 * An assistant tends to send the same query text with new parameters; the
 * guard's parse and walk cost more than the rest of the request's own work.
 * Only acceptances are kept, keyed by the exact bytes of the text, with the
 * highest $n the text uses. The guard's verdict is a function of the text, the
 * source's mappings (fixed for the handle's life) and the relations cached in
 * the catalog (which tell the guard which tables have hidden columns): every
 * change to that cache bumps a generation, and an entry made under an older
 * generation is not used. A rejected text is never remembered, so it is
 * parsed, and refused, every time.
 *
 * A direct-mapped table of PG_VERDICTS entries: a colliding text replaces the
 * older one. Texts longer than PG_VERDICT_MAX_TEXT bytes are not kept.
 */
#include "pg_internal.h"

#include <stdlib.h>
#include <string.h>

static uint64_t text_hash(const char *s, size_t len)
{
	uint64_t h = 14695981039346656037ull; /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

unsigned pg_verdict_gen(struct pg_handle *h)
{
	return atomic_load(&h->rels_gen);
}

bool pg_verdict_get(struct pg_handle *h, const char *sql, int *max_param)
{
	size_t len = strlen(sql);
	if (len > PG_VERDICT_MAX_TEXT)
		return false;
	uint64_t hash = text_hash(sql, len);
	unsigned gen = pg_verdict_gen(h);
	bool hit = false;
	pthread_mutex_lock(&h->verdict_lock);
	const struct pg_verdict *v = &h->verdicts[hash % PG_VERDICTS];
	if (v->text && v->hash == hash && v->gen == gen && v->len == len &&
	    memcmp(v->text, sql, len) == 0) {
		*max_param = v->max_param;
		hit = true;
	}
	pthread_mutex_unlock(&h->verdict_lock);
	return hit;
}

void pg_verdict_put(struct pg_handle *h, const char *sql, unsigned gen, int max_param)
{
	size_t len = strlen(sql);
	if (len > PG_VERDICT_MAX_TEXT)
		return;
	char *text = malloc(len + 1);
	if (!text)
		return; /* not remembered: the next request parses it again */
	memcpy(text, sql, len + 1);
	uint64_t hash = text_hash(sql, len);
	pthread_mutex_lock(&h->verdict_lock);
	struct pg_verdict *v = &h->verdicts[hash % PG_VERDICTS];
	char *old = v->text;
	*v = (struct pg_verdict){
		.hash = hash, .text = text, .len = len, .gen = gen, .max_param = max_param};
	pthread_mutex_unlock(&h->verdict_lock);
	free(old);
}

void pg_verdict_clear(struct pg_handle *h)
{
	for (size_t i = 0; i < PG_VERDICTS; i++) {
		free(h->verdicts[i].text);
		h->verdicts[i] = (struct pg_verdict){0};
	}
}
