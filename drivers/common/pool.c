/*
 * pool.c - see pool.h.
 */
#include "pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int slot_pool_init(struct slot_pool *p, uint32_t n, const char *source)
{
	memset(p, 0, sizeof *p);
	p->n = n < 1 ? 1 : n > SLOT_POOL_MAX ? SLOT_POOL_MAX : n;
	pthread_condattr_t attr;
	if (pthread_condattr_init(&attr))
		return CN_ENOMEM;
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	int rc = pthread_cond_init(&p->cond, &attr);
	pthread_condattr_destroy(&attr);
	if (rc)
		return CN_ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	p->busy = calloc(p->n, sizeof *p->busy);
	p->warm = calloc(p->n, sizeof *p->warm);
	p->source = strdup(source ? source : "(unnamed)");
	if (!p->busy || !p->warm || !p->source) {
		slot_pool_destroy(p);
		return CN_ENOMEM;
	}
	return CN_OK;
}

void slot_pool_destroy(struct slot_pool *p)
{
	if (!p->n)
		return;
	free(p->busy);
	free(p->warm);
	free(p->source);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	memset(p, 0, sizeof *p);
}

unsigned slot_pool_gen(struct slot_pool *p)
{
	pthread_mutex_lock(&p->lock);
	unsigned gen = p->gen;
	pthread_mutex_unlock(&p->lock);
	return gen;
}

int slot_pool_checkout(struct slot_pool *p, uint32_t wait_ms, unsigned gen, uint32_t *slot,
		       struct cn_error *err)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += wait_ms / 1000;
	until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&p->lock);
	for (;;) {
		if (p->gen != gen) {
			pthread_mutex_unlock(&p->lock);
			return cn_error_set(err, CN_ECANCELED, "the query was canceled");
		}
		uint32_t best = p->n;
		for (uint32_t i = 0; i < p->n; i++) {
			if (!p->busy[i] && (best == p->n || (!p->warm[best] && p->warm[i])))
				best = i;
			if (best < p->n && p->warm[best])
				break;
		}
		if (best < p->n) {
			p->busy[best] = true;
			pthread_mutex_unlock(&p->lock);
			*slot = best;
			return CN_OK;
		}
		p->waiting++;
		int rc = pthread_cond_timedwait(&p->cond, &p->lock, &until);
		p->waiting--;
		if (rc == ETIMEDOUT) {
			pthread_mutex_unlock(&p->lock);
			return cn_error_set(err, CN_EBUSY,
					    "all %u connections of source %s are busy; retry shortly",
					    p->n, p->source);
		}
	}
}

void slot_pool_checkin(struct slot_pool *p, uint32_t slot)
{
	pthread_mutex_lock(&p->lock);
	p->busy[slot] = false;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

void slot_pool_set_warm(struct slot_pool *p, uint32_t slot, bool warm)
{
	pthread_mutex_lock(&p->lock);
	p->warm[slot] = warm;
	pthread_mutex_unlock(&p->lock);
}

void slot_pool_stats(struct slot_pool *p, struct cn_pool_stats *out)
{
	memset(out, 0, sizeof *out);
	if (!p->n)
		return;
	pthread_mutex_lock(&p->lock);
	out->size = p->n;
	out->waiting = p->waiting;
	for (uint32_t i = 0; i < p->n; i++) {
		out->open += p->warm[i];
		out->in_use += p->busy[i];
	}
	pthread_mutex_unlock(&p->lock);
}

void slot_pool_cancel(struct slot_pool *p, void (*fn)(void *ctx, uint32_t slot), void *ctx)
{
	pthread_mutex_lock(&p->lock);
	p->gen++;
	for (uint32_t i = 0; i < p->n; i++)
		if (p->busy[i] && fn)
			fn(ctx, i);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}
