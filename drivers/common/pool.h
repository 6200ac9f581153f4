/*
 * pool.h - the bounded set of connection slots a driver keeps for one
 * source: checkout with a bounded wait, checkin, and a cancel generation
 * that shutdown bumps so that waiting and running requests give up.
 *
 * The driver keeps its connections in an array of its own, indexed by slot;
 * the pool only knows which slots are busy and which hold an open
 * connection (warm ones are handed out first, so a pool of 16 that serves
 * one client at a time keeps one connection, not 16). lock also guards
 * whatever the driver keeps per slot for cancelling from another thread.
 * Compiled into each driver module that uses it.
 */
#ifndef CN_DRIVER_POOL_H
#define CN_DRIVER_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "connector_driver.h"

#define SLOT_POOL_MAX 256u

struct slot_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	uint32_t n;
	unsigned gen;        /* bumped by slot_pool_cancel() */
	uint32_t waiting;    /* callers waiting in slot_pool_checkout() */
	bool *busy;
	bool *warm;
	char *source;        /* the source's name, for messages */
};

/* n is clamped to 1..SLOT_POOL_MAX. CN_OK or CN_ENOMEM. */
int slot_pool_init(struct slot_pool *p, uint32_t n, const char *source);
void slot_pool_destroy(struct slot_pool *p); /* a pool never initialised (zeroed) is fine */
unsigned slot_pool_gen(struct slot_pool *p);
/* Wait up to wait_ms for a free slot: CN_OK with *slot, CN_EBUSY when none
 * frees up ("all N connections of source S are busy"), CN_ECANCELED when
 * slot_pool_cancel() ran since the caller read gen. */
int slot_pool_checkout(struct slot_pool *p, uint32_t wait_ms, unsigned gen, uint32_t *slot,
		       struct cn_error *err);
void slot_pool_checkin(struct slot_pool *p, uint32_t slot);
/* The slot holds an open connection (or no longer does). Takes the lock. */
void slot_pool_set_warm(struct slot_pool *p, uint32_t slot, bool warm);
/* Size, warm slots (open), busy slots (in use) and waiters. Takes the lock. */
void slot_pool_stats(struct slot_pool *p, struct cn_pool_stats *out);
/* Bump the generation, call fn(ctx, slot) for every busy slot with the lock
 * held, and wake every waiter. */
void slot_pool_cancel(struct slot_pool *p, void (*fn)(void *ctx, uint32_t slot), void *ctx);

#endif
