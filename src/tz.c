/*
 * tz.c - a reader of TZif files (RFC 8536) and POSIX TZ rules, so that the
 * cron scheduler can work in a named zone without setenv("TZ") + tzset(),
 * which change the whole process's idea of local time under other threads.
 *
 * A zone is a sorted array of transition instants, each naming a local time
 * type (UTC offset, DST flag), plus the footer's POSIX rule for instants
 * after the last transition. Everything is read once and never changes, so
 * lookups need no lock. Only the 64-bit (version 2+) data is used; a
 * version 1 file is read from its 32-bit data.
 *
 * What is refused, with a message: files over TZ_MAX_FILE, counts that do
 * not fit the file, transitions out of order, type indexes out of range,
 * leap-second records, and footers that are not a POSIX TZ rule.
 */
#include "tz.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TZ_NAME_MAX 255
#define TZ_MAX_TYPES 256
#define SECS_PER_DAY 86400

/* A POSIX rule date: Jn (1..365, February 29 never counted), n (0..365),
 * or Mm.w.d (weekday d of week w of month m; w 5 = the last). */
struct tz_rule_date {
	char kind; /* 'J', 'N' or 'M' */
	int a, b, c;
	int32_t time; /* seconds after local midnight, -167 h .. 167 h */
};

struct tz_posix {
	int32_t std_off; /* seconds east of UTC */
	int32_t dst_off;
	bool has_dst;
	struct tz_rule_date start, end;
};

struct tz {
	char *name;
	int64_t *trans; /* ascending */
	uint8_t *trans_type;
	size_t ntrans;
	int32_t *type_off;
	size_t ntypes;
	bool has_posix;
	struct tz_posix posix;
};

/* ---- calendar ----------------------------------------------------------- */

int64_t tz_floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* Howard Hinnant's days_from_civil / civil_from_days (public domain). */
int64_t tz_days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = tz_floor_div(y, 400);
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

void tz_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = tz_floor_div(z, 146097);
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

int tz_weekday(int64_t days)
{
	/* 1970-01-01 was a Thursday (4) */
	int64_t w = (days + 4) % 7;
	return (int)(w < 0 ? w + 7 : w);
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int tz_days_in_month(int64_t y, int m)
{
	static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* ---- POSIX TZ rules ----------------------------------------------------- */

/* [+-]hh[:mm[:ss]] with hh <= max_h; *secs gets the signed value. */
static const char *posix_hms(const char *p, int max_h, int32_t *secs)
{
	int sign = 1;
	if (*p == '+' || *p == '-')
		sign = *p++ == '-' ? -1 : 1;
	int32_t part[3] = {0, 0, 0};
	for (int i = 0; i < 3; i++) {
		if (i > 0) {
			if (*p != ':')
				break;
			p++;
		}
		if (!isdigit((unsigned char)*p))
			return NULL;
		int v = 0, digits = 0;
		while (isdigit((unsigned char)*p) && digits < 3) {
			v = v * 10 + (*p++ - '0');
			digits++;
		}
		if (isdigit((unsigned char)*p) || (i == 0 && v > max_h) || (i > 0 && v > 59))
			return NULL;
		part[i] = v;
	}
	*secs = sign * (part[0] * 3600 + part[1] * 60 + part[2]);
	return p;
}

/* A zone abbreviation: <...> or at least three letters. */
static const char *posix_name(const char *p)
{
	const char *start = p;
	if (*p == '<') {
		p++;
		while (isalnum((unsigned char)*p) || *p == '+' || *p == '-')
			p++;
		if (*p != '>' || p - start < 4)
			return NULL;
		return p + 1;
	}
	while (isalpha((unsigned char)*p))
		p++;
	return p - start >= 3 ? p : NULL;
}

static const char *posix_number(const char *p, int lo, int hi, int *out)
{
	if (!isdigit((unsigned char)*p))
		return NULL;
	int v = 0, digits = 0;
	while (isdigit((unsigned char)*p) && digits < 4) {
		v = v * 10 + (*p++ - '0');
		digits++;
	}
	if (isdigit((unsigned char)*p) || v < lo || v > hi)
		return NULL;
	*out = v;
	return p;
}

static const char *posix_date(const char *p, struct tz_rule_date *r)
{
	if (*p == 'J') {
		r->kind = 'J';
		p = posix_number(p + 1, 1, 365, &r->a);
	} else if (*p == 'M') {
		r->kind = 'M';
		p = posix_number(p + 1, 1, 12, &r->a);
		if (p && *p == '.')
			p = posix_number(p + 1, 1, 5, &r->b);
		else
			p = NULL;
		if (p && *p == '.')
			p = posix_number(p + 1, 0, 6, &r->c);
		else
			p = NULL;
	} else {
		r->kind = 'N';
		p = posix_number(p, 0, 365, &r->a);
	}
	if (!p)
		return NULL;
	r->time = 2 * 3600;
	if (*p == '/')
		p = posix_hms(p + 1, 167, &r->time);
	return p;
}

static int tz_parse_posix_into(const char *spec, struct tz_posix *out)
{
	struct tz_posix r = {0};
	const char *p = posix_name(spec);
	int32_t v;
	if (!p || !(p = posix_hms(p, 24, &v)))
		return CN_EINVAL;
	if (v <= -SECS_PER_DAY || v >= SECS_PER_DAY)
		return CN_EINVAL;
	r.std_off = -v; /* POSIX counts west of UTC as positive */
	if (*p) {
		if (!(p = posix_name(p)))
			return CN_EINVAL;
		r.has_dst = true;
		r.dst_off = r.std_off + 3600;
		if (*p && *p != ',') {
			if (!(p = posix_hms(p, 24, &v)) || v <= -SECS_PER_DAY || v >= SECS_PER_DAY)
				return CN_EINVAL;
			r.dst_off = -v;
		}
		if (*p == ',') {
			if (!(p = posix_date(p + 1, &r.start)) || *p != ',' ||
			    !(p = posix_date(p + 1, &r.end)))
				return CN_EINVAL;
		} else {
			/* no rule given: the United States' rule, as POSIX leaves it to us */
			r.start = (struct tz_rule_date){'M', 3, 2, 0, 7200};
			r.end = (struct tz_rule_date){'M', 11, 1, 0, 7200};
		}
	}
	if (*p)
		return CN_EINVAL;
	*out = r;
	return CN_OK;
}

/* Day of the year (0-based) a rule date falls on in year y. */
static int rule_yday(const struct tz_rule_date *r, int64_t y)
{
	switch (r->kind) {
	case 'J': return r->a - 1 + (is_leap(y) && r->a >= 60);
	case 'N': return r->a;
	default: break;
	}
	int64_t first = tz_days_from_civil(y, r->a, 1);
	int day = 1 + (r->c - tz_weekday(first) + 7) % 7 + (r->b - 1) * 7;
	while (day > tz_days_in_month(y, r->a))
		day -= 7;
	return (int)(first + day - 1 - tz_days_from_civil(y, 1, 1));
}

/* The instant a rule date of year y happens; before is the offset in effect
 * just before it (the rule's time is local time then). */
static int64_t rule_instant(const struct tz_rule_date *r, int64_t y, int32_t before)
{
	int64_t day = tz_days_from_civil(y, 1, 1) + rule_yday(r, y);
	return day * SECS_PER_DAY + r->time - before;
}

static int32_t posix_offset(const struct tz_posix *r, int64_t t)
{
	if (!r->has_dst)
		return r->std_off;
	int64_t y, days = tz_floor_div(t + r->std_off, SECS_PER_DAY);
	int m, d;
	tz_civil_from_days(days, &y, &m, &d);
	int64_t start = rule_instant(&r->start, y, r->std_off);
	int64_t end = rule_instant(&r->end, y, r->dst_off);
	bool dst = start < end ? (t >= start && t < end) : !(t >= end && t < start);
	return dst ? r->dst_off : r->std_off;
}

/* ---- TZif --------------------------------------------------------------- */

struct tzif_hdr {
	char version;
	uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static int tzif_header(const unsigned char *p, size_t len, struct tzif_hdr *h)
{
	if (len < 44 || memcmp(p, "TZif", 4) != 0)
		return CN_EINVAL;
	h->version = (char)p[4];
	if (h->version != 0 && (h->version < '2' || h->version > '4'))
		return CN_EINVAL;
	h->isutcnt = be32(p + 20);
	h->isstdcnt = be32(p + 24);
	h->leapcnt = be32(p + 28);
	h->timecnt = be32(p + 32);
	h->typecnt = be32(p + 36);
	h->charcnt = be32(p + 40);
	return CN_OK;
}

/* Bytes of the data block after a header, with times of tsize bytes. */
static uint64_t tzif_block(const struct tzif_hdr *h, unsigned tsize)
{
	return (uint64_t)h->timecnt * (tsize + 1) + (uint64_t)h->typecnt * 6 + h->charcnt +
	       (uint64_t)h->leapcnt * (tsize + 4) + h->isstdcnt + h->isutcnt;
}

static int tz_fail(struct cn_error *err, int code, const char *name, const char *what)
{
	return cn_error_set(err, code, "time zone '%.64s': %s", name, what);
}

/* Read the data block at p (times of tsize bytes) into z. */
static int tzif_read_block(struct tz *z, const struct tzif_hdr *h, const unsigned char *p, unsigned tsize,
			   struct cn_error *err)
{
	if (h->typecnt == 0 || h->typecnt > TZ_MAX_TYPES)
		return tz_fail(err, CN_ECONFIG, z->name, "the file has no or too many local time types");
	if (h->leapcnt)
		return tz_fail(err, CN_ECONFIG, z->name,
			       "the file counts leap seconds (a right/ zone); use the zone without right/");
	if ((h->isstdcnt && h->isstdcnt != h->typecnt) || (h->isutcnt && h->isutcnt != h->typecnt))
		return tz_fail(err, CN_ECONFIG, z->name, "the file's indicator counts are inconsistent");
	z->trans = calloc(h->timecnt ? h->timecnt : 1, sizeof *z->trans);
	z->trans_type = calloc(h->timecnt ? h->timecnt : 1, 1);
	z->type_off = calloc(h->typecnt, sizeof *z->type_off);
	if (!z->trans || !z->trans_type || !z->type_off)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	for (uint32_t i = 0; i < h->timecnt; i++) {
		const unsigned char *q = p + (size_t)i * tsize;
		z->trans[i] = tsize == 8 ? be64(q) : (int64_t)(int32_t)be32(q);
		if (i > 0 && z->trans[i] <= z->trans[i - 1])
			return tz_fail(err, CN_ECONFIG, z->name, "the file's transitions are out of order");
	}
	p += (size_t)h->timecnt * tsize;
	for (uint32_t i = 0; i < h->timecnt; i++) {
		if (p[i] >= h->typecnt)
			return tz_fail(err, CN_ECONFIG, z->name, "a transition names an unknown time type");
		z->trans_type[i] = p[i];
	}
	p += h->timecnt;
	for (uint32_t i = 0; i < h->typecnt; i++) {
		int32_t off = (int32_t)be32(p + 6 * i);
		/* RFC 8536: -2^31 is not allowed; offsets stay within a day either way */
		if (off <= -SECS_PER_DAY || off >= SECS_PER_DAY || p[6 * i + 4] > 1 ||
		    p[6 * i + 5] >= h->charcnt)
			return tz_fail(err, CN_ECONFIG, z->name, "a local time type is malformed");
		z->type_off[i] = off;
	}
	z->ntrans = h->timecnt;
	z->ntypes = h->typecnt;
	return CN_OK;
}

static struct tz *tz_new(const char *name)
{
	struct tz *z = calloc(1, sizeof *z);
	if (z && !(z->name = strdup(name))) {
		free(z);
		return NULL;
	}
	return z;
}

int tz_parse(const char *name, const void *data, size_t len, struct tz **out, struct cn_error *err)
{
	const unsigned char *p = data;
	struct tzif_hdr h;
	*out = NULL;
	if (!name)
		name = "";
	if (tzif_header(p, len, &h))
		return tz_fail(err, CN_ECONFIG, name, "not a TZif file");
	uint64_t need = 44 + tzif_block(&h, 4);
	if (need > len)
		return tz_fail(err, CN_ECONFIG, name, "the file is cut short");
	struct tz *z = tz_new(name);
	if (!z)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	int rc;
	if (h.version == 0) {
		rc = tzif_read_block(z, &h, p + 44, 4, err);
		goto done;
	}
	p += need;
	len -= need;
	if (tzif_header(p, len, &h) || h.version == 0) {
		rc = tz_fail(err, CN_ECONFIG, name, "the version 2 header is missing");
		goto done;
	}
	need = 44 + tzif_block(&h, 8);
	if (need > len) {
		rc = tz_fail(err, CN_ECONFIG, name, "the file is cut short");
		goto done;
	}
	rc = tzif_read_block(z, &h, p + 44, 8, err);
	if (rc)
		goto done;
	p += need;
	len -= need;
	/* footer: "\n" POSIX-TZ-string "\n" (the string may be empty) */
	const unsigned char *nl = len > 1 && p[0] == '\n' ? memchr(p + 1, '\n', len - 1) : NULL;
	if (!nl) {
		rc = tz_fail(err, CN_ECONFIG, name, "the file's footer is missing");
		goto done;
	}
	size_t flen = (size_t)(nl - p - 1);
	if (flen > 0) {
		char spec[128];
		if (flen >= sizeof spec || memchr(p + 1, '\0', flen)) {
			rc = tz_fail(err, CN_ECONFIG, name, "the file's TZ rule is not readable");
			goto done;
		}
		memcpy(spec, p + 1, flen);
		spec[flen] = '\0';
		if (tz_parse_posix_into(spec, &z->posix)) {
			rc = tz_fail(err, CN_ECONFIG, name, "the file's TZ rule is not readable");
			goto done;
		}
		z->has_posix = true;
	}
done:
	if (rc) {
		tz_free(z);
		return rc;
	}
	*out = z;
	return CN_OK;
}

int tz_parse_posix(const char *spec, struct tz **out, struct cn_error *err)
{
	*out = NULL;
	struct tz *z = tz_new(spec ? spec : "");
	if (!z)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	if (!spec || tz_parse_posix_into(spec, &z->posix)) {
		tz_free(z);
		return tz_fail(err, CN_EINVAL, spec ? spec : "", "not a POSIX TZ rule");
	}
	z->has_posix = true;
	*out = z;
	return CN_OK;
}

static bool name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > TZ_NAME_MAX || name[0] == '/' || name[n - 1] == '/')
		return false;
	for (const char *p = name; *p; p++) {
		bool part_start = p == name || p[-1] == '/';
		if (part_start && (*p == '.' || *p == '/'))
			return false;
		if (!isascii((unsigned char)*p) ||
		    !(isalnum((unsigned char)*p) || strchr("/_+-.", *p)))
			return false;
	}
	return true;
}

static bool is_utc_name(const char *name)
{
	return !*name || strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0;
}

int tz_load(const char *name, struct tz **out, struct cn_error *err)
{
	*out = NULL;
	if (!name)
		name = "";
	if (is_utc_name(name)) {
		struct tz *z = tz_new("UTC");
		if (!z)
			return cn_error_set(err, CN_ENOMEM, "out of memory");
		*out = z;
		return CN_OK;
	}
	if (!name_ok(name))
		return cn_error_set(err, CN_EINVAL,
				    "'%.64s' is not a time zone name: use an IANA name such as UTC, "
				    "Europe/Berlin or America/New_York",
				    name);
	const char *dir = getenv("TZDIR");
	if (!dir || !*dir)
		dir = TZ_DEFAULT_DIR;
	char path[4096];
	if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
		return cn_error_set(err, CN_EINVAL, "time zone '%.64s': the path is too long", name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cn_error_set(err, errno == ENOENT || errno == ENOTDIR ? CN_ENOTFOUND : CN_EIO,
				    "unknown time zone '%.64s' (%s: %s): use an IANA name such as UTC, "
				    "Europe/Berlin or America/New_York",
				    name, path, strerror(errno));
	struct stat st;
	unsigned char *data = NULL;
	int rc = CN_OK;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)TZ_MAX_FILE) {
		rc = tz_fail(err, CN_ECONFIG, name, "not a regular file of the tz database");
		goto out;
	}
	size_t size = (size_t)st.st_size, got = 0;
	data = malloc(size ? size : 1);
	if (!data) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto out;
	}
	while (got < size) {
		ssize_t n = read(fd, data + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = tz_fail(err, CN_EIO, name, "cannot read the file");
			goto out;
		}
		got += (size_t)n;
	}
	rc = tz_parse(name, data, size, out, err);
out:
	free(data);
	close(fd);
	return rc;
}

void tz_free(struct tz *z)
{
	if (!z)
		return;
	free(z->name);
	free(z->trans);
	free(z->trans_type);
	free(z->type_off);
	free(z);
}

const char *tz_name(const struct tz *z)
{
	return z ? z->name : "UTC";
}

/* ---- conversions -------------------------------------------------------- */

int32_t tz_offset(const struct tz *z, int64_t t)
{
	if (!z)
		return 0;
	if (z->ntrans == 0 || t >= z->trans[z->ntrans - 1]) {
		if (z->has_posix)
			return posix_offset(&z->posix, t);
		if (z->ntrans == 0)
			return z->ntypes ? z->type_off[0] : 0;
		return z->type_off[z->trans_type[z->ntrans - 1]];
	}
	if (t < z->trans[0])
		return z->type_off[0];
	size_t lo = 0, hi = z->ntrans - 1; /* trans[lo] <= t < trans[hi] */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (z->trans[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return z->type_off[z->trans_type[lo]];
}

int64_t tz_to_wall(const struct tz *z, int64_t t)
{
	return t + tz_offset(z, t);
}

int64_t tz_from_wall(const struct tz *z, int64_t wall)
{
	if (!z)
		return wall;
	/* The offsets a day before and after: around a change they differ. */
	int32_t before = tz_offset(z, wall - SECS_PER_DAY);
	int32_t after = tz_offset(z, wall + SECS_PER_DAY);
	int64_t t1 = wall - before, t2 = wall - after;
	bool v1 = tz_to_wall(z, t1) == wall, v2 = tz_to_wall(z, t2) == wall;
	if (v1 && v2)
		return t1 < t2 ? t1 : t2; /* repeated: the first occurrence */
	if (v2)
		return t2;
	return t1; /* valid, or in a gap: the offset before the gap */
}
