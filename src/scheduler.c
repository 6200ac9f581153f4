/*
 * scheduler.c - the refresh thread: a plan (the next run of each source,
 * as unix time, 0 for none), a condition variable it sleeps on until the
 * earliest run or a poke, and the answers to the command line.
 */
#include "scheduler.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "cron.h"
#include "log.h"
#include "refresh.h"

#define SCHEDULER_MAX_SLEEP_S 60
/* Refreshing is background work: this thread's nice value (Linux gives each
 * thread its own), so request threads get the CPU first. */
#define SCHEDULER_NICE 10

struct scheduler {
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	bool stop;
	bool poke_requests;
	bool poke_all;

	struct source_set *set;
	struct control *control;
	struct tz *zone;       /* NULL: UTC */
	struct cron *crons;    /* one per source */
	bool *scheduled;       /* false: refresh only on demand */
	int64_t *next;         /* unix time of the next run, 0: none */
	unsigned jitter;
};

static unsigned random_below(unsigned n)
{
	unsigned r;
	if (n == 0)
		return 0;
	if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
		r = (unsigned)time(NULL) * 2654435761u;
	return r % (n + 1);
}

/* The next run of source i after now, jitter added; 0 for none. */
static int64_t plan(struct scheduler *sc, size_t i, int64_t now)
{
	int64_t t;
	if (!sc->scheduled[i] || cron_next(&sc->crons[i], sc->zone, now, &t) != CN_OK)
		return 0;
	return t + random_below(sc->jitter);
}

static void set_next(struct scheduler *sc, size_t i, int64_t t)
{
	struct source *s = sc->set->items[i];
	sc->next[i] = t;
	pthread_mutex_lock(&s->lock);
	s->next_refresh_at = t;
	pthread_mutex_unlock(&s->lock);
}

/* ---- what the command line asks for ------------------------------------- */

static cJSON *unknown_source(struct source_set *set, const char *name, struct cn_error *err)
{
	char names[1024] = "";
	size_t used = 0;
	for (size_t i = 0; i < set->n && used < sizeof names; i++) {
		int w = snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
				 set->items[i]->cfg->name);
		if (w > 0)
			used += (size_t)w;
	}
	cn_error_set(err, CN_ENOTFOUND, "no source named '%.64s'; the sources are: %s", name, names);
	return NULL;
}

static bool all_sources(const char *source)
{
	return !source || !*source || strcmp(source, "*") == 0;
}

cJSON *scheduler_refresh_now(struct source_set *set, const char *source, bool *failed, struct cn_error *err)
{
	*failed = false;
	if (!all_sources(source) && !sources_find(set, source))
		return unknown_source(set, source, err);
	cJSON *root = cJSON_CreateObject();
	cJSON *arr = root ? cJSON_AddArrayToObject(root, "results") : NULL;
	for (size_t i = 0; arr && i < set->n; i++) {
		struct source *s = set->items[i];
		if (!all_sources(source) && strcmp(s->cfg->name, source) != 0)
			continue;
		struct refresh_result r;
		*failed |= refresh_source(s, &r) != CN_OK;
		cJSON *o = refresh_result_to_json(&r);
		refresh_result_clear(&r);
		if (o)
			cJSON_AddItemToArray(arr, o);
	}
	if (!arr) {
		cJSON_Delete(root);
		cn_error_set(err, CN_ENOMEM, "out of memory");
		return NULL;
	}
	return root;
}

cJSON *scheduler_drift_reports(struct source_set *set, const char *source, struct cn_error *err)
{
	if (!all_sources(source) && !sources_find(set, source))
		return unknown_source(set, source, err);
	if (!set->store) {
		cn_error_set(err, CN_EINVAL, "no state file: drift is kept with the schema snapshots");
		return NULL;
	}
	cJSON *root = cJSON_CreateObject();
	cJSON *arr = root ? cJSON_AddArrayToObject(root, "reports") : NULL;
	for (size_t i = 0; arr && i < set->n; i++) {
		const char *name = set->items[i]->cfg->name;
		if (!all_sources(source) && strcmp(name, source) != 0)
			continue;
		cJSON *r = refresh_drift_report(set->store, name, REFRESH_REPORT_HISTORY, err);
		if (!r) {
			cJSON_Delete(root);
			return NULL;
		}
		cJSON_AddItemToArray(arr, r);
	}
	if (!arr) {
		cJSON_Delete(root);
		cn_error_set(err, CN_ENOMEM, "out of memory");
		return NULL;
	}
	return root;
}

static cJSON *answer(void *ctx, const char *verb, const char *source)
{
	struct scheduler *sc = ctx;
	struct cn_error err = {0};
	bool failed;
	cJSON *a = strcmp(verb, "refresh") == 0 ? scheduler_refresh_now(sc->set, source, &failed, &err)
		   : strcmp(verb, "audit") == 0	  ? audit_answer(sc->set->store, source, &err)
						  : scheduler_drift_reports(sc->set, source, &err);
	if (!a && (a = cJSON_CreateObject()))
		cJSON_AddStringToObject(a, "error", err.message);
	return a;
}

/* ---- the thread --------------------------------------------------------- */

static void refresh_one(struct scheduler *sc, size_t i)
{
	struct refresh_result r;
	(void)refresh_source(sc->set->items[i], &r); /* logged by refresh_source */
	refresh_result_clear(&r);
}

static void *scheduler_main(void *arg)
{
	struct scheduler *sc = arg;
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), SCHEDULER_NICE) != 0)
		log_debug("the refresh thread keeps its priority: %s", strerror(errno));
	pthread_mutex_lock(&sc->mu);
	for (;;) {
		int64_t now = (int64_t)time(NULL), earliest = 0;
		for (size_t i = 0; i < sc->set->n; i++)
			if (sc->next[i] && (!earliest || sc->next[i] < earliest))
				earliest = sc->next[i];
		if (!sc->stop && !sc->poke_requests && !sc->poke_all && (!earliest || earliest > now)) {
			int64_t wait = earliest ? earliest - now : SCHEDULER_MAX_SLEEP_S;
			if (wait > SCHEDULER_MAX_SLEEP_S)
				wait = SCHEDULER_MAX_SLEEP_S;
			struct timespec until;
			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_sec += wait;
			pthread_cond_timedwait(&sc->cv, &sc->mu, &until);
			continue; /* look at the clock and the flags again */
		}
		if (sc->stop)
			break;
		bool requests = sc->poke_requests, all = sc->poke_all;
		sc->poke_requests = sc->poke_all = false;
		pthread_mutex_unlock(&sc->mu);
		if (requests && sc->control)
			control_serve(sc->control, "refresh drift audit", answer, sc);
		if (all) {
			log_info("SIGUSR1: refreshing every source");
			for (size_t i = 0; i < sc->set->n; i++)
				refresh_one(sc, i);
		}
		for (size_t i = 0; i < sc->set->n; i++) {
			if (!sc->next[i] || sc->next[i] > (int64_t)time(NULL))
				continue;
			refresh_one(sc, i);
			set_next(sc, i, plan(sc, i, (int64_t)time(NULL)));
		}
		pthread_mutex_lock(&sc->mu);
	}
	pthread_mutex_unlock(&sc->mu);
	return NULL;
}

static void scheduler_free(struct scheduler *sc)
{
	tz_free(sc->zone);
	free(sc->crons);
	free(sc->scheduled);
	free(sc->next);
	pthread_cond_destroy(&sc->cv);
	pthread_mutex_destroy(&sc->mu);
	free(sc);
}

int scheduler_start(struct source_set *set, struct control *control, struct scheduler **out,
		    struct cn_error *err)
{
	const struct config *cfg = set->cfg;
	*out = NULL;
	struct scheduler *sc = calloc(1, sizeof *sc);
	if (!sc)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sc->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&sc->mu, NULL);
	sc->set = set;
	sc->control = control;
	sc->jitter = cfg->refresh_jitter;
	sc->crons = calloc(set->n ? set->n : 1, sizeof *sc->crons);
	sc->scheduled = calloc(set->n ? set->n : 1, sizeof *sc->scheduled);
	sc->next = calloc(set->n ? set->n : 1, sizeof *sc->next);
	int rc = CN_OK;
	if (!sc->crons || !sc->scheduled || !sc->next)
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
	if (rc == CN_OK && cfg->refresh_timezone && strcmp(cfg->refresh_timezone, "UTC") != 0)
		rc = tz_load(cfg->refresh_timezone, &sc->zone, err);
	int64_t now = (int64_t)time(NULL);
	for (size_t i = 0; rc == CN_OK && i < set->n; i++) {
		const char *expr = config_refresh_schedule(cfg, set->items[i]->cfg);
		char why[CRON_WHY_MAX];
		if (!expr)
			continue;
		if (cron_parse(expr, &sc->crons[i], why, sizeof why)) {
			rc = cn_error_set(err, CN_ECONFIG, "source '%s': refresh '%s': %s",
					  set->items[i]->cfg->name, expr, why);
			break;
		}
		sc->scheduled[i] = true;
		set_next(sc, i, plan(sc, i, now));
		char at[21] = "never";
		if (sc->next[i]) {
			time_t t = (time_t)sc->next[i];
			struct tm tm;
			gmtime_r(&t, &tm);
			strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
		}
		log_info("source '%s': schema refresh on '%s' (%s), next at %s", set->items[i]->cfg->name,
			 expr, tz_name(sc->zone), at);
	}
	if (rc == CN_OK) {
		if (pthread_create(&sc->thread, NULL, scheduler_main, sc) != 0)
			rc = cn_error_set(err, CN_ENOMEM, "cannot start the refresh thread");
		else
			sc->started = true;
	}
	if (rc) {
		scheduler_free(sc);
		return rc;
	}
	*out = sc;
	return CN_OK;
}

void scheduler_poke(struct scheduler *sc, bool requests)
{
	if (!sc)
		return;
	pthread_mutex_lock(&sc->mu);
	if (requests)
		sc->poke_requests = true;
	else
		sc->poke_all = true;
	pthread_cond_signal(&sc->cv);
	pthread_mutex_unlock(&sc->mu);
}

void scheduler_stop(struct scheduler *sc)
{
	if (!sc)
		return;
	if (sc->started) {
		pthread_mutex_lock(&sc->mu);
		sc->stop = true;
		pthread_cond_signal(&sc->cv);
		pthread_mutex_unlock(&sc->mu);
		pthread_join(sc->thread, NULL);
	}
	scheduler_free(sc);
}
