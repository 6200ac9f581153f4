/* verdicts.c - see verdicts.h. */
#include "verdicts.h"

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

void verdicts_init(struct verdicts *vs)
{
	memset(vs->v, 0, sizeof vs->v);
	pthread_mutex_init(&vs->lock, NULL);
}

void verdicts_destroy(struct verdicts *vs)
{
	for (size_t i = 0; i < VERDICTS_N; i++) {
		free(vs->v[i].text);
		vs->v[i] = (struct verdict){0};
	}
	pthread_mutex_destroy(&vs->lock);
}

bool verdicts_get(struct verdicts *vs, const char *sql, unsigned gen, int *max_param)
{
	size_t len = strlen(sql);
	if (len > VERDICTS_MAX_TEXT)
		return false;
	uint64_t hash = text_hash(sql, len);
	bool hit = false;
	pthread_mutex_lock(&vs->lock);
	const struct verdict *v = &vs->v[hash % VERDICTS_N];
	if (v->text && v->hash == hash && v->gen == gen && v->len == len &&
	    memcmp(v->text, sql, len) == 0) {
		if (max_param)
			*max_param = v->max_param;
		hit = true;
	}
	pthread_mutex_unlock(&vs->lock);
	return hit;
}

void verdicts_put(struct verdicts *vs, const char *sql, unsigned gen, int max_param)
{
	size_t len = strlen(sql);
	if (len > VERDICTS_MAX_TEXT)
		return;
	char *text = malloc(len + 1);
	if (!text)
		return;
	memcpy(text, sql, len + 1);
	uint64_t hash = text_hash(sql, len);
	pthread_mutex_lock(&vs->lock);
	struct verdict *v = &vs->v[hash % VERDICTS_N];
	char *old = v->text;
	*v = (struct verdict){.hash = hash, .text = text, .len = len, .gen = gen, .max_param = max_param};
	pthread_mutex_unlock(&vs->lock);
	free(old);
}
