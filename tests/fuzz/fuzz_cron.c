/*
 * fuzz_cron.c - the cron parser and the time zone reader from arbitrary
 * bytes. The first byte picks what the rest is:
 *   'c' (and anything else)  a cron expression: parse; when it parses, the
 *                            next fire times in UTC and in a zone built from
 *                            a fixed POSIX rule must be later than the start
 *   'z'                      a TZif file: parse; when it parses, offsets and
 *                            wall-time round trips at several instants
 *   'p'                      a POSIX TZ rule
 * Invariants that must hold are checked with abort().
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int64_t instants[] = {-2208988800LL, 0, 1743296400LL, 1761440400LL, 2147483647LL,
				   4102444800LL, 253402300799LL};

static void check_zone(const struct tz *z)
{
	for (size_t i = 0; i < sizeof instants / sizeof instants[0]; i++) {
		int32_t off = tz_offset(z, instants[i]);
		if (off <= -86400 || off >= 86400)
			abort();
		int64_t w = tz_to_wall(z, instants[i]);
		int64_t back = tz_from_wall(z, w);
		/* a wall time maps back to an instant with that wall time, or into a gap */
		if (back - w <= -86400 || back - w >= 86400)
			abort();
	}
}

static void fuzz_cron(const char *text, const struct tz *zone)
{
	struct cron c;
	char why[CRON_WHY_MAX];
	why[0] = 'x';
	if (cron_parse(text, &c, why, sizeof why) != CN_OK) {
		if (why[0] == '\0' || strlen(why) >= sizeof why)
			abort(); /* a refusal always says why */
		return;
	}
	for (size_t i = 0; i < sizeof instants / sizeof instants[0]; i++) {
		int64_t next;
		if (cron_next(&c, NULL, instants[i], &next) == CN_OK && next <= instants[i])
			abort();
		if (cron_next(&c, zone, instants[i], &next) == CN_OK && next <= instants[i])
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct tz *zone;
	struct cn_error err = {0};
	if (!zone && tz_parse_posix("CET-1CEST,M3.5.0,M10.5.0/3", &zone, &err) != CN_OK)
		abort();
	char mode = size ? (char)data[0] : 'c';
	const uint8_t *rest = size ? data + 1 : data;
	size_t n = size ? size - 1 : 0;
	if (mode == 'z') {
		struct tz *z = NULL;
		if (tz_parse("fuzz", rest, n, &z, &err) == CN_OK) {
			check_zone(z);
			tz_free(z);
		} else if (z || err.message[0] == '\0') {
			abort();
		}
		return 0;
	}
	char *text = malloc(n + 1);
	if (!text)
		return 0;
	memcpy(text, rest, n);
	text[n] = '\0';
	if (mode == 'p') {
		struct tz *z = NULL;
		if (tz_parse_posix(text, &z, &err) == CN_OK) {
			check_zone(z);
			tz_free(z);
		}
	} else {
		fuzz_cron(text, zone);
	}
	free(text);
	return 0;
}
