/*
 * source.c - sources at run time: loading their drivers and mappings,
 * opening them, the reference-counted views requests read, and the status
 * list_data_sources and /readyz show. What a refresh does is refresh.c.
 */
#include "source.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "refresh.h"

int source_is_hidden(void *ctx, const char *schema, const char *table, const char *column)
{
	const struct source *s = ctx;
	return mappings_is_hidden(s->mappings, schema, table, column);
}

static struct driver_module *module_for(struct source_set *set, const struct config *cfg,
					const char *name, struct cn_error *err)
{
	for (size_t i = 0; i < set->nmodules; i++)
		if (strcmp(set->modules[i]->api->name, name) == 0)
			return set->modules[i];
	struct driver_module *m;
	char *dir = cfg->drivers_dir && *cfg->drivers_dir ? config_resolve_path(cfg, cfg->drivers_dir) : NULL;
	int rc = driver_load(dir, name, &m, err);
	free(dir);
	if (rc)
		return NULL;
	set->modules[set->nmodules++] = m;
	log_info("loaded driver '%s' %s from %s", m->api->name, m->api->version ? m->api->version : "",
		 m->path);
	return m;
}

int source_connect(struct source *s, struct cn_error *err)
{
	pthread_mutex_lock(&s->lock);
	bool open = s->handle != NULL;
	pthread_mutex_unlock(&s->lock);
	if (open)
		return CN_OK;
	struct cn_source_info info = {
		.name = s->cfg->name,
		.dsn = s->cfg->dsn,
		.base_dir = s->base_dir,
		.pool_size = s->cfg->pool_size,
		.timeout_ms = s->cfg->limits.timeout_ms,
		.host_ctx = s,
		.is_hidden = source_is_hidden,
		.option_keys = (const char *const *)s->cfg->options.keys,
		.option_values = (const char *const *)s->cfg->options.values,
		.noptions = s->cfg->options.n,
	};
	void *h = NULL;
	int rc = s->module->api->open(&info, &h, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->lock);
	s->handle = h;
	pthread_mutex_unlock(&s->lock);
	return CN_OK;
}

/* ---- views -------------------------------------------------------------- */

struct source_view *source_view_acquire(struct source *s)
{
	pthread_mutex_lock(&s->lock);
	struct source_view *v = s->view;
	if (v)
		atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&s->lock);
	return v;
}

static void view_free(struct source_view *v)
{
	schema_search_free(v->search);
	schema_compact_free(v->compact);
	free(v->tables_json);
	schema_drift_free(v->drift);
	schema_model_free(v->model);
	free(v);
}

void source_view_release(struct source_view *v)
{
	if (v && atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1)
		view_free(v);
}

void source_view_publish(struct source *s, struct source_view *v)
{
	pthread_mutex_lock(&s->lock);
	struct source_view *old = s->view;
	s->view = v;
	pthread_mutex_unlock(&s->lock);
	source_view_release(old);
}

/* The whole schema's {"tables":[..]}, unless it cannot fit an answer: the
 * compact index is a lower bound of its size, which spares rendering a
 * 5,000-table schema only to throw it away. */
static void view_tables_json(struct source_view *v)
{
	struct schema_compact_page info;
	struct buf probe;
	buf_init(&probe, SOURCE_VIEW_JSON_MAX);
	int rc = v->compact ? schema_compact_page(v->compact, NULL, 1, SOURCE_VIEW_JSON_MAX, &probe, &info)
			    : CN_ENOTFOUND;
	buf_free(&probe);
	if (rc == CN_OK && info.pages > 1)
		return;
	cJSON *tree = schema_model_to_json(v->model, NULL, 0);
	char *text = tree ? cJSON_PrintUnformatted(tree) : NULL;
	cJSON_Delete(tree);
	if (text && strlen(text) <= SOURCE_VIEW_JSON_MAX) {
		v->tables_json = text;
		v->tables_json_len = strlen(text);
	} else {
		free(text);
	}
}

struct source_view *source_view_build(struct schema_model *m, struct schema_drift *drift,
				      int64_t refreshed_at, int64_t changed_at)
{
	struct source_view *v = calloc(1, sizeof *v);
	if (!drift)
		drift = schema_drift_new();
	if (!v || !drift) {
		free(v);
		schema_drift_free(drift);
		schema_model_free(m);
		return NULL;
	}
	atomic_init(&v->refs, 1);
	v->model = m;
	v->drift = drift;
	v->refreshed_at = refreshed_at;
	v->changed_at = changed_at;
	v->ntables = schema_model_visible_tables(m);
	struct cn_error err = {0};
	if (schema_search_build(m, &v->search, &err))
		log_warn("search_schema has no index of this schema: %s", err.message);
	v->compact = schema_compact_new(m);
	if (!v->compact)
		log_warn("out of memory building the compact index of a schema");
	view_tables_json(v);
	return v;
}

/* ---- state -------------------------------------------------------------- */

void source_refresh_failed(struct source *s, const char *why)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&s->lock);
	snprintf(s->refresh_error, sizeof s->refresh_error, "%s", why);
	s->refresh_failed_at = (int64_t)time(NULL);
	if (!s->handle || !s->view) {
		snprintf(s->last_error, sizeof s->last_error, "%s", why);
		s->retry_at = now;
		s->retry_at.tv_sec += SOURCE_RETRY_MS / 1000;
	}
	pthread_mutex_unlock(&s->lock);
}

void source_status(struct source *s, struct source_status *out)
{
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&s->lock);
	out->available = s->handle && s->view;
	if (!out->available)
		snprintf(out->error, sizeof out->error, "%s",
			 s->last_error[0] ? s->last_error : "not connected yet");
	snprintf(out->refresh_error, sizeof out->refresh_error, "%s", s->refresh_error);
	out->refresh_failed_at = s->refresh_failed_at;
	out->next_refresh_at = s->next_refresh_at;
	if (s->view) {
		out->refreshed_at = s->view->refreshed_at;
		out->changed_at = s->view->changed_at;
		out->drift = s->view->drift->n;
		out->tables = s->view->ntables;
	}
	pthread_mutex_unlock(&s->lock);
}

static bool time_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* The source is open with a view: its handle in *handle. */
static bool ready_now(struct source *s, void **handle)
{
	pthread_mutex_lock(&s->lock);
	bool ready = s->handle && s->view;
	*handle = s->handle;
	pthread_mutex_unlock(&s->lock);
	return ready;
}

/* Unavailable and not to be tried again yet: the message in err. */
static bool still_resting(struct source *s, struct cn_error *err)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&s->lock);
	bool rest = s->last_error[0] && time_before(&now, &s->retry_at);
	if (rest)
		cn_error_set(err, CN_EUNAVAILABLE, "source '%s' is unavailable: %s", s->cfg->name,
			     s->last_error);
	pthread_mutex_unlock(&s->lock);
	return rest;
}

int source_ready(struct source *s, void **handle, struct cn_error *err)
{
	if (ready_now(s, handle))
		return CN_OK;
	if (still_resting(s, err))
		return CN_EUNAVAILABLE;
	/* One attempt at a time: who waited here uses the outcome of the one before. */
	pthread_mutex_lock(&s->refresh_mu);
	int rc = CN_OK;
	if (!ready_now(s, handle)) {
		if (still_resting(s, err)) {
			rc = CN_EUNAVAILABLE;
		} else {
			struct refresh_result r;
			pthread_mutex_lock(&s->lock);
			bool was_down = s->last_error[0] != '\0';
			pthread_mutex_unlock(&s->lock);
			if (refresh_source_locked(s->set, s, &r) == CN_OK) {
				if (was_down)
					log_info("source '%s' is available again", s->cfg->name);
				(void)ready_now(s, handle);
			} else {
				rc = cn_error_set(err, CN_EUNAVAILABLE, "source '%s' is unavailable: %s",
						  s->cfg->name, r.error);
			}
			refresh_result_clear(&r);
		}
	}
	pthread_mutex_unlock(&s->refresh_mu);
	return rc;
}

/* ---- the set ------------------------------------------------------------ */

int sources_open(const struct config *cfg, struct source_set **out, struct cn_error *err)
{
	return sources_open_with(cfg, NULL, out, err);
}

int sources_open_with(const struct config *cfg, const struct sources_opts *opts, struct source_set **out,
		      struct cn_error *err)
{
	int rc = CN_ENOMEM;
	struct source_set *set = calloc(1, sizeof *set);
	*out = NULL;
	if (!set)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	set->cfg = cfg;
	set->store = opts ? opts->store : NULL;
	set->store_read_only = opts && opts->store_read_only;
	set->items = calloc(cfg->nsources, sizeof *set->items);
	set->modules = calloc(cfg->nsources, sizeof *set->modules);
	if (!set->items || !set->modules) {
		cn_error_set(err, rc, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < cfg->nsources; i++) {
		struct source *s = &set->items[i];
		s->cfg = &cfg->sources[i];
		s->set = set;
		pthread_mutex_init(&s->lock, NULL);
		pthread_mutex_init(&s->refresh_mu, NULL);
		set->n++;
		s->base_dir = strdup(cfg->dir);
		if (!s->base_dir) {
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
			goto fail;
		}
		s->module = module_for(set, cfg, s->cfg->driver, err);
		if (!s->module) {
			rc = err ? err->code : CN_ENOTFOUND;
			if (err) {
				char why[sizeof err->message];
				snprintf(why, sizeof why, "%s", err->message);
				cn_error_set(err, rc, "%s:%d: sources[%zu].driver: %s", cfg->path,
					     s->cfg->line, i, why);
			}
			goto fail;
		}
		if (s->cfg->mappings_path && *s->cfg->mappings_path) {
			char *path = config_resolve_path(cfg, s->cfg->mappings_path);
			enum mappings_keys keys = (s->module->api->caps & CN_CAP_FIELD_PATHS)
							  ? MAPPINGS_FIELD_PATHS : MAPPINGS_SQL_KEYS;
			rc = path ? mappings_load_as(path, keys, &s->mappings, err)
				  : cn_error_set(err, CN_ENOMEM, "out of memory");
			free(path);
			if (rc)
				goto fail;
		}
	}
	for (size_t i = 0; i < set->n && !(opts && opts->lazy); i++) {
		struct source *s = &set->items[i];
		struct refresh_result r;
		if (refresh_source(set, s, &r) != CN_OK)
			log_warn("source '%s' (%s) is unavailable: %s", s->cfg->name, s->cfg->driver,
				 r.error);
		refresh_result_clear(&r);
	}
	*out = set;
	return CN_OK;
fail:
	sources_close(set);
	return rc;
}

int source_audit(struct source *s, char *warning, size_t len, struct cn_error *err)
{
	warning[0] = '\0';
	void *h;
	int rc = source_ready(s, &h, err);
	if (rc || !s->module->api->audit)
		return rc;
	return s->module->api->audit(h, warning, len, err);
}

void sources_cancel(struct source_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++) {
		struct source *s = &set->items[i];
		void *h;
		(void)ready_now(s, &h);
		if (h && s->module->api->cancel)
			s->module->api->cancel(h);
	}
}

void sources_close(struct source_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++) {
		struct source *s = &set->items[i];
		if (s->handle)
			s->module->api->close(s->handle);
		source_view_release(s->view);
		schema_model_free(s->baseline);
		mappings_free(s->mappings);
		free(s->base_dir);
		pthread_mutex_destroy(&s->lock);
		pthread_mutex_destroy(&s->refresh_mu);
	}
	for (size_t i = 0; i < set->nmodules; i++)
		driver_unload(set->modules[i]);
	free(set->modules);
	free(set->items);
	free(set);
}

struct source *sources_find(struct source_set *set, const char *name)
{
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->items[i].cfg->name, name) == 0)
			return &set->items[i];
	return NULL;
}
