/*
 * cron.c - cron expressions: one table of fields drives parsing and the
 * messages; matching is a bitset test per field.
 *
 * Grammar of one field (lists of items, no spaces inside a field):
 *   field := item ("," item)*
 *   item  := ("*" | value | value "-" value) ["/" step]
 *   value := digits | name (months and weekdays only)
 *
 * cron_next walks wall-clock time forwards with the coarsest step that can
 * skip what does not match (a month, a day, an hour, a minute), then maps
 * the wall time to an instant in the zone. Near a DST change the first
 * matching wall time is not always the earliest instant, so it keeps
 * looking while a later wall time could still map to an earlier instant.
 */
#include "cron.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SECS_PER_DAY 86400
#define FIELD_MAX 256 /* bytes in one field */
/* Times cron_next accepts: years -9999..9999. */
#define TIME_LIMIT ((int64_t)10000 * 366 * SECS_PER_DAY)

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
					  "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const struct cron_field {
	const char *name;
	int min, max;
	const char *const *names; /* value = index + name_base */
	int nnames, name_base;
} fields[CRON_NFIELDS] = {
	[CRON_MINUTE] = {"minute", 0, 59, NULL, 0, 0},
	[CRON_HOUR] = {"hour", 0, 23, NULL, 0, 0},
	[CRON_DOM] = {"day-of-month", 1, 31, NULL, 0, 0},
	[CRON_MONTH] = {"month", 1, 12, month_names, 12, 1},
	[CRON_DOW] = {"day-of-week", 0, 7, day_names, 7, 0},
};

static const struct {
	const char *name;
	const char *expr;
} macros[] = {
	{"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
	{"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
	{"@hourly", "0 * * * *"},
};

const char *cron_field_name(enum cron_field_id f)
{
	return (unsigned)f < CRON_NFIELDS ? fields[f].name : "?";
}

/* ---- parsing ------------------------------------------------------------ */

struct parser {
	const struct cron_field *f;
	int index; /* 1-based, for messages */
	char *why;
	size_t whylen;
};

static int fail(const struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const struct parser *p, const char *fmt, ...)
{
	char what[CRON_WHY_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (p->why && p->whylen)
		snprintf(p->why, p->whylen, "field %d (%s): %s", p->index, p->f->name, what);
	return CN_EINVAL;
}

/* A printable copy of s[0..len) for messages. */
static const char *shown(char *dst, size_t n, const char *s, size_t len)
{
	size_t i = 0;
	for (; i < len && i + 1 < n && i < 32; i++)
		dst[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
	dst[i] = '\0';
	return dst;
}

/* One value (digits or a name) in s[0..len) -> *v, range not yet checked. */
static int parse_value(const struct parser *p, const char *s, size_t len, int *v)
{
	char sh[40];
	if (len == 0)
		return fail(p, "a value is missing (an item such as '1-5' or '*/2' is cut short)");
	if (isdigit((unsigned char)s[0])) {
		long n = 0;
		for (size_t i = 0; i < len; i++) {
			if (!isdigit((unsigned char)s[i]))
				return fail(p, "'%s' is not a number", shown(sh, sizeof sh, s, len));
			if (n < 100000)
				n = n * 10 + (s[i] - '0');
		}
		*v = (int)n;
		return CN_OK;
	}
	for (int i = 0; i < p->f->nnames; i++) {
		if (len == 3 && strncasecmp(s, p->f->names[i], 3) == 0) {
			*v = i + p->f->name_base;
			return CN_OK;
		}
	}
	if (p->f->names)
		return fail(p, "'%s' is not a number or a name (%s..%s)", shown(sh, sizeof sh, s, len),
			    p->f->names[0], p->f->names[p->f->nnames - 1]);
	if (s[0] == '-')
		return fail(p, "negative numbers are not allowed");
	return fail(p, "'%s' is not a number", shown(sh, sizeof sh, s, len));
}

static int check_range(const struct parser *p, int v)
{
	if (v < p->f->min || v > p->f->max)
		return fail(p, "%d is out of range %d-%d", v, p->f->min, p->f->max);
	return CN_OK;
}

/* One item of a field in s[0..len) -> bits. */
static int parse_item(const struct parser *p, const char *s, size_t len, uint64_t *bits)
{
	const char *slash = memchr(s, '/', len);
	size_t rlen = slash ? (size_t)(slash - s) : len;
	int lo, hi, step = 1, rc;
	char sh[40];

	if (slash) {
		size_t slen = len - rlen - 1;
		const char *st = slash + 1;
		if (slen == 0 || !isdigit((unsigned char)st[0]))
			return fail(p, "the step after '/' must be a whole number, not '%s'",
				    shown(sh, sizeof sh, st, slen));
		long n = 0;
		for (size_t i = 0; i < slen; i++) {
			if (!isdigit((unsigned char)st[i]))
				return fail(p, "the step after '/' must be a whole number, not '%s'",
					    shown(sh, sizeof sh, st, slen));
			if (n < 100000)
				n = n * 10 + (st[i] - '0');
		}
		if (n == 0)
			return fail(p, "a step of 0 is not allowed");
		step = (int)n;
	}
	const char *dash = rlen > 1 ? memchr(s + 1, '-', rlen - 1) : NULL;
	if (rlen == 1 && s[0] == '*') {
		lo = p->f->min;
		hi = p->f->max;
	} else if (dash) {
		if ((rc = parse_value(p, s, (size_t)(dash - s), &lo)) ||
		    (rc = parse_value(p, dash + 1, rlen - (size_t)(dash - s) - 1, &hi)))
			return rc;
		if ((rc = check_range(p, lo)) || (rc = check_range(p, hi)))
			return rc;
		if (lo > hi) {
			/* `sat-sun`, `5-0`: a weekday range may end on Sunday written as 0 */
			if (p->f == &fields[CRON_DOW] && hi == 0)
				hi = 7;
			else
				return fail(p,
					    "the range %d-%d goes backwards; write the smaller value first",
					    lo, hi);
		}
	} else {
		if ((rc = parse_value(p, s, rlen, &lo)) || (rc = check_range(p, lo)))
			return rc;
		hi = slash ? p->f->max : lo; /* `a/n` is `a-max/n` */
	}
	for (int v = lo; v <= hi; v += step)
		*bits |= 1ull << v;
	return CN_OK;
}

static int parse_field(const struct parser *p, const char *s, size_t len, uint64_t *bits)
{
	*bits = 0;
	if (len > FIELD_MAX)
		return fail(p, "is longer than %d characters", FIELD_MAX);
	for (size_t i = 0; i <= len;) {
		size_t n = 0;
		while (i + n < len && s[i + n] != ',')
			n++;
		if (n == 0)
			return fail(p, "an empty item (two commas in a row, or one at an end)");
		int rc = parse_item(p, s + i, n, bits);
		if (rc)
			return rc;
		i += n + 1;
	}
	return CN_OK;
}

static uint64_t range_mask(int lo, int hi)
{
	uint64_t m = 0;
	for (int v = lo; v <= hi; v++)
		m |= 1ull << v;
	return m;
}

int cron_parse(const char *expr, struct cron *out, char *why, size_t whylen)
{
	struct cron c = {{0}, false, false};
	const char *s = expr ? expr : "";
	if (why && whylen)
		why[0] = '\0';
	while (isspace((unsigned char)*s))
		s++;
	size_t len = strlen(s);
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	if (len && s[0] == '@') {
		size_t i = 0;
		for (; i < sizeof macros / sizeof macros[0]; i++)
			if (strlen(macros[i].name) == len && strncasecmp(s, macros[i].name, len) == 0)
				break;
		if (i == sizeof macros / sizeof macros[0]) {
			char sh[40];
			if (why && whylen)
				snprintf(why, whylen, "unknown macro '%s': use @hourly, @daily, @weekly, "
					 "@monthly, @yearly or five fields", shown(sh, sizeof sh, s, len));
			return CN_EINVAL;
		}
		s = macros[i].expr;
		len = strlen(s);
	}
	const char *start[CRON_NFIELDS + 1];
	size_t flen[CRON_NFIELDS + 1];
	int n = 0;
	for (size_t i = 0; i < len;) {
		while (i < len && isspace((unsigned char)s[i]))
			i++;
		if (i == len)
			break;
		size_t j = i;
		while (j < len && !isspace((unsigned char)s[j]))
			j++;
		if (n <= CRON_NFIELDS) {
			start[n] = s + i;
			flen[n] = j - i;
		}
		n++;
		i = j;
	}
	if (n != CRON_NFIELDS) {
		if (why && whylen)
			snprintf(why, whylen, "expected 5 fields (minute hour day-of-month month "
				 "day-of-week) or a macro such as @hourly, got %d %s", n,
				 n == 1 ? "field" : "fields");
		return CN_EINVAL;
	}
	for (int f = 0; f < CRON_NFIELDS; f++) {
		struct parser p = {&fields[f], f + 1, why, whylen};
		int rc = parse_field(&p, start[f], flen[f], &c.bits[f]);
		if (rc)
			return rc;
	}
	if (c.bits[CRON_DOW] & (1ull << 7))
		c.bits[CRON_DOW] = (c.bits[CRON_DOW] & ~(1ull << 7)) | 1ull;
	c.dom_restricted = c.bits[CRON_DOM] != range_mask(1, 31);
	c.dow_restricted = c.bits[CRON_DOW] != range_mask(0, 6);
	*out = c;
	return CN_OK;
}

/* ---- next --------------------------------------------------------------- */

/* The smallest set bit >= from and <= max, or -1. */
static int next_bit(uint64_t bits, int from, int max)
{
	for (int v = from; v <= max; v++)
		if (bits >> v & 1)
			return v;
	return -1;
}

static bool day_matches(const struct cron *c, int d, int wday)
{
	bool dom = c->bits[CRON_DOM] >> d & 1;
	bool dow = c->bits[CRON_DOW] >> wday & 1;
	if (c->dom_restricted && c->dow_restricted)
		return dom || dow;
	return dom && dow;
}

/* The first matching wall time >= from (a minute boundary), at most limit. */
static bool next_wall(const struct cron *c, int64_t from, int64_t limit, int64_t *out)
{
	int64_t days = tz_floor_div(from, SECS_PER_DAY);
	int secs = (int)(from - days * SECS_PER_DAY);
	int hour = secs / 3600, minute = secs % 3600 / 60;
	while (days * SECS_PER_DAY <= limit) {
		int64_t y;
		int m, d;
		tz_civil_from_days(days, &y, &m, &d);
		if (!(c->bits[CRON_MONTH] >> m & 1)) {
			days += tz_days_in_month(y, m) - d + 1; /* the 1st of the next month */
			hour = minute = 0;
			continue;
		}
		if (!day_matches(c, d, tz_weekday(days))) {
			days++;
			hour = minute = 0;
			continue;
		}
		int h = next_bit(c->bits[CRON_HOUR], hour, 23);
		if (h < 0) {
			days++;
			hour = minute = 0;
			continue;
		}
		if (h != hour) {
			hour = h;
			minute = 0;
		}
		int mi = next_bit(c->bits[CRON_MINUTE], minute, 59);
		if (mi < 0) {
			minute = 0;
			if (++hour > 23) {
				days++;
				hour = 0;
			}
			continue;
		}
		int64_t w = days * SECS_PER_DAY + hour * 3600 + mi * 60;
		if (w > limit)
			return false;
		*out = w;
		return true;
	}
	return false;
}

/* The larger of the offsets a day before and after wall time w. */
static int32_t offset_max_near(const struct tz *z, int64_t w)
{
	int32_t a = tz_offset(z, w - SECS_PER_DAY), b = tz_offset(z, w + SECS_PER_DAY);
	return a > b ? a : b;
}

int cron_next(const struct cron *c, const struct tz *z, int64_t after, int64_t *next)
{
	if (after < -TIME_LIMIT || after > TIME_LIMIT)
		return CN_EINVAL;
	int64_t from = tz_floor_div(tz_to_wall(z, after), 60) * 60 + 60;
	int64_t limit = from + (int64_t)CRON_MAX_YEARS * 366 * SECS_PER_DAY;
	int64_t w;
	if (!next_wall(c, from, limit, &w))
		return CN_ENOTFOUND;
	if (!z) {
		*next = w;
		return CN_OK;
	}
	/* Around a DST change a later wall time may be an earlier instant, and a
	 * repeated wall time may already have passed: keep the earliest instant
	 * after `after` among the wall times that could still beat it. */
	bool have = false;
	int64_t best = 0;
	for (;;) {
		int64_t t = tz_from_wall(z, w);
		if (t > after && (!have || t < best)) {
			best = t;
			have = true;
		}
		int64_t w2;
		if (!next_wall(c, w + 60, limit, &w2))
			break;
		if (have && w2 - offset_max_near(z, w2) >= best)
			break;
		w = w2;
	}
	if (!have)
		return CN_ENOTFOUND;
	*next = best;
	return CN_OK;
}
