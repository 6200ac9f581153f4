/*
 * cron_next.c - the connector's cron and tz code behind a line protocol, for
 * tests/cron/differential.py (which compares it with croniter):
 *
 *   stdin:  EXPR <TAB> ZONE <TAB> AFTER      (EXPR may hold tabs; ZONE "UTC" or an IANA name; AFTER unix
 * seconds) stdout: NEXT                            (unix seconds) or "invalid <why>"              (the
 * expression does not parse) or "never"                      (it fires in no year up to CRON_MAX_YEARS ahead)
 *           or "zone <why>"                 (the zone does not load)
 *
 * Zones are loaded once and kept. One line out per line in, flushed, so the
 * caller may pipeline thousands of lines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cron.h"
#include "tz.h"

#define MAX_ZONES 64

static struct {
	char name[128];
	struct tz *z;
} zones[MAX_ZONES];
static int nzones;

static const struct tz *zone(const char *name, struct cn_error *err)
{
	for (int i = 0; i < nzones; i++)
		if (strcmp(zones[i].name, name) == 0)
			return zones[i].z;
	if (nzones == MAX_ZONES || strlen(name) >= sizeof zones[0].name) {
		cn_error_set(err, CN_EINVAL, "too many zones");
		return NULL;
	}
	struct tz *z;
	if (tz_load(name, &z, err))
		return NULL;
	snprintf(zones[nzones].name, sizeof zones[nzones].name, "%s", name);
	zones[nzones++].z = z;
	return z;
}

int main(void)
{
	char line[4096];
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\r\n")] = '\0';
		/* the expression may hold tabs: the last two separate the zone and the time */
		char *tab2 = strrchr(line, '\t'), *tab1 = NULL;
		for (char *p = line; tab2 && p < tab2; p++)
			if (*p == '\t')
				tab1 = p;
		if (!tab1) {
			printf("bad input\n");
			fflush(stdout);
			continue;
		}
		*tab1 = *tab2 = '\0';
		struct cn_error err = {0};
		const struct tz *z = zone(tab1 + 1, &err);
		struct cron c;
		char why[CRON_WHY_MAX];
		int64_t next;
		if (!z)
			printf("zone %s\n", err.message);
		else if (cron_parse(line, &c, why, sizeof why))
			printf("invalid %s\n", why);
		else if (cron_next(&c, strcmp(tz_name(z), "UTC") == 0 ? NULL : z, strtoll(tab2 + 1, NULL, 10),
				   &next))
			printf("never\n");
		else
			printf("%lld\n", (long long)next);
		fflush(stdout);
	}
	for (int i = 0; i < nzones; i++)
		tz_free(zones[i].z);
	return 0;
}
