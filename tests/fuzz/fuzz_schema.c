/*
 * fuzz_schema.c - what schema refresh reads back or takes from outside, from
 * arbitrary bytes. The first byte picks what the rest is:
 *   's' (and anything else)  a search_schema query, run on an index of the
 *                            demo schema (built once): every hit must point
 *                            into the model and never at a hidden object
 *   'n'                      a schema snapshot from the state file: decoded,
 *                            and when it decodes, encoded again (the same
 *                            text must decode to a schema with no diff),
 *                            diffed against the demo and paged as an index
 *   'd'                      stored drift JSON
 * Invariants that must hold are checked with abort().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver_loader.h"
#include "mappings.h"
#include "schema_diff.h"
#include "schema_search.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct schema_model *demo;
static struct schema_search *index_;
static struct driver_module *mod; /* loaded for good: libFuzzer keeps pointers to its coverage counters */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	struct cn_error err = {0};
	struct mappings *mp;
	void *h = NULL;
	struct cn_source_info src = {.name = "demo", .dsn = CN_TEST_DEMO_DB, .base_dir = "/", .pool_size = 1,
				     .timeout_ms = 5000};
	struct cn_schema_builder b;
	demo = schema_model_new();
	schema_model_builder(demo, &b);
	if (driver_load(CN_TEST_DRIVER_DIR, "sqlite", &mod, &err) ||
	    mappings_load(CN_TEST_SOURCE_DIR "/conf/mappings/demo.yaml", &mp, &err) ||
	    mod->api->open(&src, &h, &err) || mod->api->introspect(h, &b, &err)) {
		fprintf(stderr, "fuzz_schema setup: %s\n", err.message);
		abort();
	}
	mod->api->close(h);
	mappings_apply(mp, demo, NULL, NULL);
	mappings_free(mp);
	if (schema_search_build(demo, &index_, &err)) {
		fprintf(stderr, "fuzz_schema setup: %s\n", err.message);
		abort();
	}
	return 0;
}

static void fuzz_search(const char *q)
{
	struct search_hit hits[20];
	size_t n = 0;
	struct cn_error err = {0};
	if (schema_search_query(index_, q, 20, hits, &n, &err) != CN_OK)
		return;
	for (size_t i = 0; i < n; i++) {
		const struct sm_table *t = hits[i].table;
		if (t < demo->tables || t >= demo->tables + demo->ntables || t->hidden)
			abort();
		if (hits[i].column && (hits[i].column < t->columns ||
				       hits[i].column >= t->columns + t->ncolumns || hits[i].column->hidden))
			abort();
	}
}

static void fuzz_snapshot(const char *text, size_t len)
{
	struct schema_model *m = NULL;
	struct cn_error err = {0};
	if (schema_snapshot_decode(text, len, &m, &err) != CN_OK) {
		if (m || !err.message[0])
			abort();
		return;
	}
	char *again = schema_snapshot_encode(m);
	struct schema_model *back = NULL;
	if (again) {
		if (schema_snapshot_decode(again, strlen(again), &back, &err) != CN_OK)
			abort();
		struct schema_diff *same = schema_diff_compute(m, back);
		if (same && same->n != 0)
			abort();
		schema_diff_free(same);
	}
	struct schema_diff *d = schema_diff_compute(demo, m);
	cJSON_Delete(schema_diff_to_json(d));
	schema_diff_free(d);
	struct schema_drift *dr = schema_drift_new();
	if (dr && schema_drift_add_undescribed(dr, m, demo) == CN_OK)
		cJSON_Delete(schema_drift_to_json(dr));
	schema_drift_free(dr);
	struct schema_compact *c = schema_compact_new(m);
	struct buf out;
	struct schema_compact_page info;
	buf_init(&out, 1 << 20);
	if (c && schema_compact_page(c, "a", 1, 200, &out, &info) == CN_OK && info.count > info.total)
		abort();
	buf_free(&out);
	schema_compact_free(c);
	schema_model_free(back);
	schema_model_free(m);
	free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char mode = size ? (char)data[0] : 's';
	size_t n = size ? size - 1 : 0;
	char *text = malloc(n + 1);
	if (!text)
		return 0;
	memcpy(text, size ? data + 1 : data, n);
	text[n] = '\0';
	if (mode == 'n') {
		fuzz_snapshot(text, n);
	} else if (mode == 'd') {
		cJSON *j = cJSON_ParseWithLength(text, n);
		struct schema_drift *d = schema_drift_from_json(j);
		cJSON_Delete(schema_drift_to_json(d));
		schema_drift_free(d);
		cJSON_Delete(j);
	} else {
		fuzz_search(text);
	}
	free(text);
	return 0;
}
