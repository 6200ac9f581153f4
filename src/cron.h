/*
 * cron.h - standard 5-field cron expressions, and the next time one fires.
 *
 *   minute hour day-of-month month day-of-week
 *   0-59   0-23 1-31         1-12  0-7 (0 and 7 are Sunday)
 *
 * Each field is a comma-separated list of items: `*`, a value, a range
 * `a-b`, and any of them with a step `/n`; `a/n` means `a-max/n`. Months
 * and weekdays also take their English three-letter names (`jan`, `mon`),
 * in any case. In the weekday field a range may end on Sunday as `sat-sun`
 * or `5-0`. The macros @yearly (@annually), @monthly, @weekly, @daily
 * (@midnight) and @hourly stand for their usual five fields.
 *
 * Day of month and day of week: when both are restricted (neither covers
 * its whole range), a day matches when either matches (`0 0 1 * mon` fires
 * on the 1st and on Mondays); otherwise both must match. This is croniter's
 * rule; Vixie cron instead looks at whether a field starts with `*`, which
 * differs only for fields such as `*\/2`.
 *
 * Times are wall-clock times in a zone (tz.h): a time skipped by a DST
 * change fires at the same wall time read with the offset before the change
 * (02:30 on a night that jumps from 02:00 to 03:00 fires at 03:30), and a
 * time that repeats fires once, at its first occurrence. See
 * docs/schema-refresh.md.
 */
#ifndef CN_CRON_H
#define CN_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tz.h"

/* Parsing fails with at most this much text in why. */
#define CRON_WHY_MAX 200
/* cron_next looks this many years ahead before it gives up (as croniter). */
#define CRON_MAX_YEARS 50

enum cron_field_id { CRON_MINUTE, CRON_HOUR, CRON_DOM, CRON_MONTH, CRON_DOW, CRON_NFIELDS };

/* A parsed expression: one bitset per field (bit v set when value v
 * matches; weekday 7 is folded into 0). Plain data, no allocation. */
struct cron {
	uint64_t bits[CRON_NFIELDS];
	bool dom_restricted;
	bool dow_restricted;
};

/* CN_OK, or CN_EINVAL with why saying which field is wrong and how
 * ("field 2 (hour): 24 is out of range 0-23"). */
int cron_parse(const char *expr, struct cron *out, char *why, size_t whylen) CN_MUST_USE;

/* The first time after `after` (strictly later, on a minute boundary) that
 * c fires in zone z (NULL: UTC). CN_ENOTFOUND when it never fires within
 * CRON_MAX_YEARS (`0 0 30 2 *`), CN_EINVAL for times outside years
 * -9999..9999. */
int cron_next(const struct cron *c, const struct tz *z, int64_t after, int64_t *next) CN_MUST_USE;

/* Field names, for messages and tests: "minute", "hour", ... */
const char *cron_field_name(enum cron_field_id f);

#endif
