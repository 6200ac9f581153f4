/*
 * tz.h - time zones from the system's tz database (the TZif files under
 * /usr/share/zoneinfo, or $TZDIR), read into an immutable table so that
 * converting a time never touches the process's TZ or tzset() state: any
 * thread may use a loaded zone at any time.
 *
 * Times are int64 seconds since the epoch. A "wall" time is the local
 * date and time written as if it were UTC (wall = t + offset).
 *
 * Local times that do not exist or exist twice (DST changes):
 *   - in a gap (clocks jump from 02:00 to 03:00), 02:30 maps to the instant
 *     02:30 has with the offset before the gap: 03:30 after the change;
 *   - in an overlap (03:00 back to 02:00), 02:30 maps to its first
 *     occurrence (the one before the change).
 * This is how croniter (with Python's zoneinfo) and glibc's mktime with
 * tm_isdst = -1 place such times.
 *
 * Before a zone's first transition, its first local time type applies;
 * after its last one, the POSIX TZ rule at the end of the file (RFC 8536).
 * Zones with leap seconds ("right/...") are refused.
 */
#ifndef CN_TZ_H
#define CN_TZ_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define TZ_DEFAULT_DIR "/usr/share/zoneinfo"
#define TZ_MAX_FILE (1u << 20)

struct tz;

/* Load an IANA zone by name ("Europe/Berlin"); "UTC", "Etc/UTC" and "" need
 * no file. Names are checked (letters, digits, '_', '+', '-' in parts
 * separated by '/'; no part starting with '.'). Errors: CN_EINVAL (bad name),
 * CN_ENOTFOUND (no such zone), CN_ECONFIG (not a usable TZif file), CN_ENOMEM;
 * the message names the zone and says what to do. */
int tz_load(const char *name, struct tz **out, struct cn_error *err) CN_MUST_USE;
/* The same from the bytes of a TZif file (tests, fuzzing). */
int tz_parse(const char *name, const void *data, size_t len, struct tz **out,
	     struct cn_error *err) CN_MUST_USE;
/* A fixed zone from a POSIX TZ string such as "CET-1CEST,M3.5.0,M10.5.0/3". */
int tz_parse_posix(const char *spec, struct tz **out, struct cn_error *err) CN_MUST_USE;
void tz_free(struct tz *z); /* NULL is a no-op */

/* The zone's name as loaded ("UTC" for the built-in one). */
const char *tz_name(const struct tz *z);
/* Seconds east of UTC in effect at t; z NULL is UTC. */
int32_t tz_offset(const struct tz *z, int64_t t);
/* The wall time of t. */
int64_t tz_to_wall(const struct tz *z, int64_t t);
/* The instant of a wall time, gaps and overlaps placed as said above. */
int64_t tz_from_wall(const struct tz *z, int64_t wall);

/* Proleptic Gregorian calendar arithmetic, valid for any int32 year. */
int64_t tz_days_from_civil(int64_t y, int m, int d);
void tz_civil_from_days(int64_t days, int64_t *y, int *m, int *d);
/* 0 = Sunday. */
int tz_weekday(int64_t days);
int tz_days_in_month(int64_t y, int m);
/* floor(a / b) for b > 0. */
int64_t tz_floor_div(int64_t a, int64_t b);

#endif
