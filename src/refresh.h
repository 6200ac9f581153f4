/*
 * refresh.h - reading a source's schema again, the whole way: connect when
 * needed, introspect, merge the mappings, diff against the structure known
 * before (the current view, or the latest snapshot in the state store when
 * the process has just started), work out the drift against the baseline,
 * build the next view (search index, compact index, describe_schema's
 * answer) and publish it, then keep a snapshot in the state store.
 *
 * All of it runs on the caller's thread with only the source's refresh_mu
 * held: requests keep reading the old view meanwhile. A failure before the
 * publish keeps the old view and is recorded on the source; a failure to
 * store the snapshot is logged and reported but the new view stays.
 *
 * Every refresh logs one line (what changed, or that nothing did) and, when
 * there is drift, one warning that lists it.
 */
#ifndef CN_REFRESH_H
#define CN_REFRESH_H

#include <cjson/cJSON.h>
#include <stdio.h>

#include "source.h"

/* How many stored diffs a drift report shows per source by default. */
#define REFRESH_REPORT_HISTORY 5

struct refresh_result {
	char source[72];
	int rc;                     /* CN_OK, or why the refresh failed (error says more) */
	char error[512];
	long duration_ms;
	bool first;                 /* no structure was known before: nothing to compare */
	struct schema_diff *diff;   /* what changed; empty when nothing did; NULL on failure */
	struct source_view *view;   /* the view published (a reference); NULL on failure */
	char store_error[512];      /* the snapshot could not be kept, "" when it was (or no store) */
};

/* Refresh s now. Fills out (clear it with
 * refresh_result_clear) and returns out->rc. refresh_source takes the
 * source's refresh_mu (waiting for a refresh of it that runs);
 * refresh_source_locked expects the caller to hold it. */
int refresh_source(struct source *s, struct refresh_result *out);
int refresh_source_locked(struct source *s, struct refresh_result *out);
void refresh_result_clear(struct refresh_result *r);

/* {"source","status":"ok"|"failed","error"?,"duration_ms","tables","first",
 *  "changes":[..],"drift":[..],"refreshed_at","schema_changed_at"} */
cJSON *refresh_result_to_json(const struct refresh_result *r);

/* The drift report of one source from the state store: the drift its latest
 * refresh found and its last `history` stored changes.
 * {"source","refreshed_at","schema_changed_at","drift":[..],
 *  "history":[{"taken_at","checked_at","baseline","changes":[..]}]}.
 * With no snapshot yet: {"source","refreshed_at":null,...,"drift":[],"history":[]}. */
cJSON *refresh_drift_report(struct exec_store *store, const char *source, size_t history,
			    struct cn_error *err);

/* For people: the JSON of refresh_result_to_json or refresh_drift_report
 * (a single object or an array of them), printed as text. */
void refresh_print_results(const cJSON *results, FILE *out);
void refresh_print_reports(const cJSON *reports, FILE *out);

/* "2025-03-30T01:30:00Z", or null for 0, into a cJSON object. */
bool refresh_add_time(cJSON *o, const char *key, int64_t t);

#endif
