/*
 * refresh.c - one refresh of one source, and the reports made of
 * refreshes (for the log, the CLI and the daemon's answers to it).
 *
 * The order matters: the new model is complete (introspected, merged,
 * diffed, drift found, indexes built) before it is published, and the
 * snapshot is written after, so a request never sees half a schema and a
 * slow state file never holds a request up.
 */
#include "refresh.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "signature.h"

#define LOG_LIST_MAX 5 /* changes or drift items named in one log line */

static long elapsed_ms(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000L + (now.tv_nsec - start->tv_nsec) / 1000000L;
}

bool refresh_add_time(cJSON *o, const char *key, int64_t t)
{
	if (t <= 0)
		return cJSON_AddNullToObject(o, key) != NULL;
	char ts[21];
	signature_format_timestamp((time_t)t, ts);
	return cJSON_AddStringToObject(o, key, ts) != NULL;
}

static void drift_collect(void *ctx, const char *file, int line, const char *key, const char *message)
{
	(void)message;
	if (schema_drift_add_mapping(ctx, file, line, key) != CN_OK)
		log_error("out of memory recording drift");
}

void refresh_result_clear(struct refresh_result *r)
{
	schema_diff_free(r->diff);
	source_view_release(r->view);
	r->diff = NULL;
	r->view = NULL;
}

/* "a; b; c and 4 more" of the first LOG_LIST_MAX lines. */
static void list_text(char *out, size_t len, size_t n,
		      void (*line)(const void *ctx, size_t i, char *o, size_t l), const void *ctx)
{
	size_t used = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n && i < LOG_LIST_MAX && used < len; i++) {
		char one[700];
		line(ctx, i, one, sizeof one);
		int w = snprintf(out + used, len - used, "%s%s", i ? "; " : "", one);
		if (w < 0)
			return;
		used += (size_t)w;
	}
	if (n > LOG_LIST_MAX && used < len)
		snprintf(out + used, len - used, " and %zu more", n - LOG_LIST_MAX);
}

static void change_line(const void *ctx, size_t i, char *out, size_t len)
{
	schema_change_describe(&((const struct schema_diff *)ctx)->items[i], out, len);
}

static void drift_line(const void *ctx, size_t i, char *out, size_t len)
{
	drift_item_describe(&((const struct schema_drift *)ctx)->items[i], out, len);
}

static void log_outcome(const struct source *s, const struct refresh_result *r)
{
	const struct source_view *v = r->view;
	char list[900];
	if (r->first) {
		log_info("source '%s': schema read in %ld ms, %zu tables (the first snapshot)", s->cfg->name,
			 r->duration_ms, v->ntables);
	} else if (r->diff->n == 0) {
		log_info("source '%s': schema refreshed in %ld ms, %zu tables, no change", s->cfg->name,
			 r->duration_ms, v->ntables);
	} else {
		list_text(list, sizeof list, r->diff->n, change_line, r->diff);
		log_info("source '%s': schema refreshed in %ld ms, %zu tables, %zu change(s): %s",
			 s->cfg->name, r->duration_ms, v->ntables, r->diff->n, list);
	}
	if (v->drift->n) {
		list_text(list, sizeof list, v->drift->n, drift_line, v->drift);
		log_warn("source '%s': %zu drift item(s): %s", s->cfg->name, v->drift->n, list);
	}
}

/* What was known before this refresh: the current view's model, or the
 * latest stored snapshot (first refresh of this process). Loads the
 * baseline once. refresh_mu held. */
struct before {
	struct source_view *view;     /* a reference, or NULL */
	struct schema_model *decoded; /* owned, or NULL */
	const struct schema_model *model;
	int64_t changed_at;
};

static void before_load(struct source *s, struct before *b)
{
	struct cn_error err = {0};
	*b = (struct before){.view = source_view_acquire(s)};
	if (b->view) {
		b->model = b->view->model;
		b->changed_at = b->view->changed_at;
	}
	if (!s->store)
		return;
	struct exec_snapshot snap;
	bool found;
	if (!b->view && s->snapshot_id == 0) {
		if (exec_store_snapshot_get(s->store, s->cfg->name, false, &snap, &found, &err)) {
			log_warn("source '%s': cannot read its last schema snapshot: %s", s->cfg->name,
				 err.message);
		} else if (found) {
			if (schema_snapshot_decode(snap.schema, snap.schema_len, &b->decoded, &err))
				log_warn("source '%s': %s; comparing with nothing", s->cfg->name,
					 err.message);
			else
				b->model = b->decoded;
			s->snapshot_id = snap.id;
			b->changed_at = snap.baseline ? 0 : snap.taken_at;
			exec_snapshot_clear(&snap);
		}
	}
	if (!s->baseline_loaded) {
		s->baseline_loaded = true;
		if (exec_store_snapshot_get(s->store, s->cfg->name, true, &snap, &found, &err)) {
			log_warn("source '%s': cannot read its baseline snapshot: %s", s->cfg->name,
				 err.message);
		} else if (found) {
			if (schema_snapshot_decode(snap.schema, snap.schema_len, &s->baseline, &err))
				log_warn("source '%s': baseline %s", s->cfg->name, err.message);
			exec_snapshot_clear(&snap);
		}
	}
}

static void before_clear(struct before *b)
{
	source_view_release(b->view);
	schema_model_free(b->decoded);
}

static char *json_text(cJSON *tree)
{
	char *text = tree ? cJSON_PrintUnformatted(tree) : NULL;
	cJSON_Delete(tree);
	return text;
}

/* Keep the new structure (changed, or never stored) or note that it was
 * found again. snap_text is the encoded model when it must be stored. */
static void store_snapshot(struct source *s, struct refresh_result *r,
			   const char *snap_text, int64_t now)
{
	struct cn_error err = {0};
	char *drift = json_text(schema_drift_to_json(r->view->drift));
	int rc;
	if (snap_text) {
		char *diff = r->diff->n ? json_text(schema_diff_to_json(r->diff)) : NULL;
		bool first = s->snapshot_id == 0;
		rc = exec_store_snapshot_add(s->store, s->cfg->name, now, snap_text, strlen(snap_text),
					     diff, drift, s->config ? s->config->snapshots : 10,
					     &s->snapshot_id, &err);
		/* the source's first snapshot is its baseline from now on */
		if (rc == CN_OK && first && !s->baseline &&
		    schema_snapshot_decode(snap_text, strlen(snap_text), &s->baseline, &err))
			log_warn("source '%s': baseline %s", s->cfg->name, err.message);
		free(diff);
	} else {
		rc = exec_store_snapshot_touch(s->store, s->snapshot_id, now, drift, &err);
	}
	free(drift);
	if (rc) {
		snprintf(r->store_error, sizeof r->store_error, "%s", err.message);
		log_warn("source '%s': the schema snapshot was not kept: %s", s->cfg->name, err.message);
	}
}

static int fail(struct source *s, struct refresh_result *r, int rc, const char *why)
{
	r->rc = rc;
	snprintf(r->error, sizeof r->error, "%s", why && *why ? why : cn_status_message(rc));
	source_refresh_failed(s, r->error);
	struct source_view *v = source_view_acquire(s);
	if (v) {
		char ts[21];
		signature_format_timestamp((time_t)v->refreshed_at, ts);
		log_warn("source '%s': schema refresh failed, keeping the schema read at %s: %s",
			 s->cfg->name, ts, r->error);
	}
	source_view_release(v);
	return rc;
}

static int refresh_run(struct source *s, const struct timespec *start,
		       struct refresh_result *out)
{
	memset(out, 0, sizeof *out);
	snprintf(out->source, sizeof out->source, "%s", s->cfg->name);
	int64_t now = (int64_t)time(NULL);
	struct cn_error err = {0};

	int rc = source_connect(s, &err);
	if (rc)
		return fail(s, out, rc, err.message);
	void *h;
	pthread_mutex_lock(&s->lock);
	h = s->handle;
	pthread_mutex_unlock(&s->lock);
	struct schema_model *m = schema_model_new();
	struct schema_drift *drift = schema_drift_new();
	if (!m || !drift) {
		schema_model_free(m);
		schema_drift_free(drift);
		return fail(s, out, CN_ENOMEM, "out of memory");
	}
	struct cn_schema_builder b;
	schema_model_builder(m, &b);
	rc = s->module->api->introspect(h, &b, &err);
	if (rc) {
		schema_model_free(m);
		schema_drift_free(drift);
		return fail(s, out, rc, err.message);
	}
	if (s->mappings)
		mappings_apply(s->mappings, m, drift_collect, drift);

	struct before before;
	before_load(s, &before);
	out->first = before.model == NULL;
	/* with nothing to compare with, the first look is not a change */
	out->diff = schema_diff_compute(before.model, before.model ? m : NULL);
	rc = out->diff ? schema_drift_add_undescribed(drift, s->baseline, m) : CN_ENOMEM;
	bool changed = out->diff && out->diff->n > 0;
	char *snap_text = NULL;
	bool keep = s->store && !s->store_read_only;
	if (rc == CN_OK && out->diff && keep && (changed || s->snapshot_id == 0) &&
	    !(snap_text = schema_snapshot_encode(m)))
		rc = CN_ENOMEM;
	int64_t changed_at = changed ? now : before.changed_at;
	before_clear(&before);
	if (rc || !out->diff) {
		schema_model_free(m);
		schema_drift_free(drift);
		free(snap_text);
		return fail(s, out, CN_ENOMEM, "out of memory");
	}

	struct source_view *v = source_view_build(m, drift, now, changed_at);
	if (!v) {
		free(snap_text);
		return fail(s, out, CN_ENOMEM, "out of memory");
	}
	atomic_fetch_add(&v->refs, 1); /* one for the source, one for out */
	out->view = v;
	source_view_publish(s, v);
	pthread_mutex_lock(&s->lock);
	s->refresh_error[0] = '\0';
	s->last_error[0] = '\0';
	pthread_mutex_unlock(&s->lock);
	if (keep)
		store_snapshot(s, out, snap_text, now);
	free(snap_text);
	out->duration_ms = elapsed_ms(start);
	log_outcome(s, out);
	if (s->on_refresh)
		s->on_refresh(s->on_refresh_ctx, s);
	return CN_OK;
}

int refresh_source_locked(struct source *s, struct refresh_result *out)
{
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	int rc = refresh_run(s, &start, out);
	out->duration_ms = elapsed_ms(&start);
	metrics_refresh(s->cfg->name, rc == CN_OK, (double)out->duration_ms / 1000.0);
	return rc;
}

int refresh_source(struct source *s, struct refresh_result *out)
{
	pthread_mutex_lock(&s->refresh_mu);
	int rc = refresh_source_locked(s, out);
	pthread_mutex_unlock(&s->refresh_mu);
	return rc;
}

/* ---- reports ------------------------------------------------------------ */

cJSON *refresh_result_to_json(const struct refresh_result *r)
{
	cJSON *o = cJSON_CreateObject();
	if (!o)
		return NULL;
	bool ok = cJSON_AddStringToObject(o, "source", r->source) &&
		  cJSON_AddStringToObject(o, "status", r->rc == CN_OK ? "ok" : "failed");
	if (ok && r->rc != CN_OK)
		ok = cJSON_AddStringToObject(o, "error", r->error) != NULL;
	if (ok && r->rc == CN_OK) {
		cJSON *changes = schema_diff_to_json(r->diff), *drift = schema_drift_to_json(r->view->drift);
		ok = changes && drift;
		if (ok) {
			cJSON_AddItemToObject(o, "changes", changes);
			cJSON_AddItemToObject(o, "drift", drift);
		} else {
			cJSON_Delete(changes);
			cJSON_Delete(drift);
		}
		ok = ok && cJSON_AddNumberToObject(o, "duration_ms", (double)r->duration_ms) &&
		     cJSON_AddNumberToObject(o, "tables", (double)r->view->ntables) &&
		     cJSON_AddBoolToObject(o, "first", r->first) &&
		     refresh_add_time(o, "refreshed_at", r->view->refreshed_at) &&
		     refresh_add_time(o, "schema_changed_at", r->view->changed_at);
		if (ok && r->store_error[0])
			ok = cJSON_AddStringToObject(o, "store_error", r->store_error) != NULL;
	}
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* Parse stored JSON text; an empty array when it is absent or unreadable. */
static cJSON *stored_array(const char *text)
{
	cJSON *j = text ? cJSON_Parse(text) : NULL;
	if (cJSON_IsArray(j))
		return j;
	cJSON_Delete(j);
	return cJSON_CreateArray();
}

cJSON *refresh_drift_report(struct exec_store *store, const char *source, size_t history,
			    struct cn_error *err)
{
	struct exec_snapshot *v = NULL;
	size_t n = 0;
	if (exec_store_snapshot_history(store, source, history ? history : 1, &v, &n, err))
		return NULL;
	cJSON *o = cJSON_CreateObject();
	cJSON *hist = o ? cJSON_CreateArray() : NULL;
	bool ok = hist && cJSON_AddStringToObject(o, "source", source);
	int64_t changed = 0;
	for (size_t i = 0; i < n && !changed; i++)
		if (!v[i].baseline)
			changed = v[i].taken_at;
	if (ok)
		ok = refresh_add_time(o, "refreshed_at", n ? v[0].checked_at : 0) &&
		     refresh_add_time(o, "schema_changed_at", changed);
	if (ok) {
		cJSON_AddItemToObject(o, "drift", stored_array(n ? v[0].drift : NULL));
		cJSON_AddItemToObject(o, "history", hist);
		hist = NULL;
	}
	for (size_t i = 0; ok && i < n; i++) {
		cJSON *h = cJSON_CreateObject();
		ok = h && refresh_add_time(h, "taken_at", v[i].taken_at) &&
		     refresh_add_time(h, "checked_at", v[i].checked_at) &&
		     cJSON_AddBoolToObject(h, "baseline", v[i].baseline);
		if (h)
			cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(o, "history"), h);
		if (ok)
			cJSON_AddItemToObject(h, "changes", stored_array(v[i].diff));
	}
	cJSON_Delete(hist);
	exec_snapshots_free(v, n);
	if (!ok) {
		cJSON_Delete(o);
		cn_error_set(err, CN_ENOMEM, "out of memory");
		return NULL;
	}
	return o;
}

/* ---- text for people ---------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *key, const char *dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : dflt;
}

static void print_messages(const cJSON *arr, const char *indent, FILE *out)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, arr)
		fprintf(out, "%s%s\n", indent, jstr(it, "message", "?"));
}

static void print_result(const cJSON *r, FILE *out)
{
	const char *name = jstr(r, "source", "?");
	if (strcmp(jstr(r, "status", ""), "ok") != 0) {
		fprintf(out, "%s: refresh FAILED: %s\n", name, jstr(r, "error", "unknown error"));
		return;
	}
	const cJSON *changes = cJSON_GetObjectItemCaseSensitive(r, "changes");
	const cJSON *drift = cJSON_GetObjectItemCaseSensitive(r, "drift");
	const cJSON *tables = cJSON_GetObjectItemCaseSensitive(r, "tables");
	const cJSON *ms = cJSON_GetObjectItemCaseSensitive(r, "duration_ms");
	int nchanges = cJSON_GetArraySize(changes);
	fprintf(out, "%s: refreshed in %d ms, %d tables; ", name, cJSON_IsNumber(ms) ? ms->valueint : 0,
		cJSON_IsNumber(tables) ? tables->valueint : 0);
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "first")))
		fprintf(out, "first snapshot, nothing to compare with\n");
	else if (nchanges == 0)
		fprintf(out, "no change (schema last changed %s)\n",
			jstr(r, "schema_changed_at", "never since the baseline"));
	else
		fprintf(out, "%d change%s:\n", nchanges, nchanges == 1 ? "" : "s");
	print_messages(changes, "  ", out);
	if (cJSON_GetArraySize(drift) > 0) {
		fprintf(out, "%s: drift (%d):\n", name, cJSON_GetArraySize(drift));
		print_messages(drift, "  ", out);
	}
	if (jstr(r, "store_error", NULL))
		fprintf(out, "%s: warning: the snapshot was not kept: %s\n", name,
			jstr(r, "store_error", ""));
}

void refresh_print_results(const cJSON *results, FILE *out)
{
	const cJSON *r;
	if (cJSON_IsObject(results)) {
		print_result(results, out);
		return;
	}
	cJSON_ArrayForEach(r, results)
		print_result(r, out);
}

static void print_report(const cJSON *r, FILE *out)
{
	const char *name = jstr(r, "source", "?");
	const cJSON *drift = cJSON_GetObjectItemCaseSensitive(r, "drift");
	const cJSON *hist = cJSON_GetObjectItemCaseSensitive(r, "history");
	const char *at = jstr(r, "refreshed_at", NULL);
	if (!at) {
		fprintf(out, "%s: no refresh recorded yet (run interactor-connector refresh)\n", name);
		return;
	}
	int n = cJSON_GetArraySize(drift);
	fprintf(out, "%s: %d drift item%s as of the refresh at %s; schema last changed %s\n", name, n,
		n == 1 ? "" : "s", at, jstr(r, "schema_changed_at", "never since the baseline"));
	print_messages(drift, "  ", out);
	const cJSON *h;
	bool header = false;
	cJSON_ArrayForEach(h, hist) {
		if (!header) {
			fprintf(out, "%s: last changes, newest first:\n", name);
			header = true;
		}
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(h, "baseline"))) {
			fprintf(out, "  %s: baseline (the first snapshot; checked last %s)\n",
				jstr(h, "taken_at", "?"), jstr(h, "checked_at", "?"));
			continue;
		}
		fprintf(out, "  %s (checked last %s):\n", jstr(h, "taken_at", "?"),
			jstr(h, "checked_at", "?"));
		print_messages(cJSON_GetObjectItemCaseSensitive(h, "changes"), "    ", out);
	}
}

void refresh_print_reports(const cJSON *reports, FILE *out)
{
	const cJSON *r;
	if (cJSON_IsObject(reports)) {
		print_report(reports, out);
		return;
	}
	cJSON_ArrayForEach(r, reports)
		print_report(r, out);
}
