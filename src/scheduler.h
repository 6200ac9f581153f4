/*
 * scheduler.h - the thread that refreshes schemas: each source on its cron
 * schedule (its `refresh`, else the global one) read in `refresh_timezone`,
 * each run delayed by a random 0..refresh_jitter seconds, and on demand
 * (SIGUSR1, and the command line's requests, control.h).
 *
 * Sources are refreshed one after the other on this one thread, at nice 10
 * so that requests get the CPU first; a slow database delays the others'
 * runs but never a request. A run that comes
 * due while another is going starts when it ends; runs missed meanwhile
 * (or while the machine slept) are not made up: the next one is planned
 * from the time the last one ended. The thread wakes at least once a
 * minute, so a wall-clock step is noticed.
 */
#ifndef CN_SCHEDULER_H
#define CN_SCHEDULER_H

#include <stdbool.h>

#include "control.h"
#include "source.h"

struct scheduler;

/* Start the thread for the sources of set (whose cfg gives the schedules);
 * control (may be NULL) is where the command line's requests arrive. */
int scheduler_start(struct source_set *set, struct control *control, struct scheduler **out,
		    struct cn_error *err) CN_MUST_USE;
/* SIGUSR1: requests true looks at the command line's requests (a
 * sigqueue()d signal), false refreshes every source (a plain one). */
void scheduler_poke(struct scheduler *sc, bool requests);
/* Stop (after the refresh that runs, if any) and free. NULL is a no-op. */
void scheduler_stop(struct scheduler *sc);

/* What the command line and the daemon answer alike:
 * {"results":[refresh results]} for SOURCE or every source ("*" or NULL);
 * *failed says whether one failed. NULL with err for an unknown source. */
cJSON *scheduler_refresh_now(struct source_set *set, const char *source, bool *failed, struct cn_error *err);
/* {"reports":[drift reports]} from the state store. */
cJSON *scheduler_drift_reports(struct source_set *set, const char *source, struct cn_error *err);

#endif
