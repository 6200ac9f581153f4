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
	struct source *s = ctx;
	return mappings_is_hidden(atomic_load_explicit(&s->mappings, memory_order_acquire), schema,
				  table, column);
}

/* The set's module for the driver name: one it has, one old has (shared),
 * or one loaded now. old may be NULL. */
static struct driver_module *module_for(struct source_set *set, const struct source_set *old,
					const struct config *cfg, const char *name, struct cn_error *err)
{
	for (size_t i = 0; i < set->nmodules; i++)
		if (strcmp(set->modules[i]->api->name, name) == 0)
			return set->modules[i];
	struct driver_module *m = NULL;
	for (size_t i = 0; old && i < old->nmodules && !m; i++)
		if (strcmp(old->modules[i]->api->name, name) == 0)
			m = driver_module_hold(old->modules[i]);
	if (!m) {
		char *dir = cfg->drivers_dir && *cfg->drivers_dir ? config_resolve_path(cfg, cfg->drivers_dir)
								  : NULL;
		int rc = driver_load(dir, name, &m, err);
		free(dir);
		if (rc)
			return NULL;
		log_info("loaded driver '%s' %s from %s", m->api->name,
			 m->api->version ? m->api->version : "", m->path);
	}
	set->modules[set->nmodules++] = m;
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
			if (refresh_source_locked(s, &r) == CN_OK) {
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

static void source_release(struct source *s)
{
	if (!s || atomic_fetch_sub(&s->refs, 1) > 1)
		return;
	if (s->handle)
		s->module->api->close(s->handle);
	source_view_release(s->view);
	schema_model_free(s->baseline);
	mappings_free(atomic_load(&s->mappings));
	free(s->base_dir);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->refresh_mu);
	pthread_mutex_destroy(&s->probe_mu);
	driver_unload(s->module);
	config_free(s->config);
	free(s);
}

/* A source for entry sc of cfg, holding module m and taking mp. */
static struct source *source_new(const struct source_set *set, const struct config_source *sc,
				 struct driver_module *m, struct mappings *mp)
{
	struct source *s = calloc(1, sizeof *s);
	char *dir = strdup(set->cfg->dir);
	if (!s || !dir) {
		free(s);
		free(dir);
		return NULL;
	}
	atomic_init(&s->refs, 1);
	s->config = config_hold(set->cfg);
	s->cfg = sc;
	s->module = driver_module_hold(m);
	atomic_init(&s->mappings, mp);
	s->base_dir = dir;
	s->store = set->store;
	s->store_read_only = set->store_read_only;
	s->on_refresh = set->on_refresh;
	s->on_refresh_ctx = set->on_refresh_ctx;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->refresh_mu, NULL);
	pthread_mutex_init(&s->probe_mu, NULL);
	return s;
}

/* The mappings file of entry i (NULL in *out when it names none), read with
 * the keys its driver uses. */
static int load_mappings(const struct config *cfg, size_t i, const struct driver_module *m,
			 struct mappings **out, struct cn_error *err)
{
	const struct config_source *sc = &cfg->sources[i];
	*out = NULL;
	if (!sc->mappings_path || !*sc->mappings_path)
		return CN_OK;
	char *path = config_resolve_path(cfg, sc->mappings_path);
	enum mappings_keys keys = (m->api->caps & CN_CAP_FIELD_PATHS) ? MAPPINGS_FIELD_PATHS
								       : MAPPINGS_SQL_KEYS;
	int rc = path ? mappings_load_as(path, keys, out, err)
		      : cn_error_set(err, CN_ENOMEM, "out of memory");
	free(path);
	return rc;
}

static struct source_set *set_new(const struct config *cfg, struct exec_store *store,
				  bool store_read_only)
{
	struct source_set *set = calloc(1, sizeof *set);
	if (!set)
		return NULL;
	set->cfg = cfg;
	set->store = store;
	set->store_read_only = store_read_only;
	set->items = calloc(cfg->nsources ? cfg->nsources : 1, sizeof *set->items);
	set->modules = calloc(cfg->nsources ? cfg->nsources : 1, sizeof *set->modules);
	set->retired = calloc(cfg->nsources ? cfg->nsources : 1, sizeof *set->retired);
	if (!set->items || !set->modules || !set->retired) {
		sources_close(set);
		return NULL;
	}
	return set;
}

/* The old source kept for entry sc, or NULL when its entry changed or is new. */
static struct source *kept_source(const struct source_set *old, const struct config_source *sc)
{
	struct source *o = old ? sources_find((struct source_set *)old, sc->name) : NULL;
	return o && !config_source_differs(o->cfg, sc) ? o : NULL;
}

/* Build the set of cfg, keeping unchanged sources of old (may be NULL). */
static int set_build(const struct config *cfg, struct exec_store *store, bool store_read_only,
		     struct source_set *old, struct source_set **out, struct sources_reopen_report *rep,
		     struct cn_error *err)
{
	struct source_set *set = set_new(cfg, store, store_read_only);
	if (set && old) {
		set->on_refresh = old->on_refresh;
		set->on_refresh_ctx = old->on_refresh_ctx;
	}
	struct mappings **maps = calloc(cfg->nsources ? cfg->nsources : 1, sizeof *maps);
	int rc = set && maps ? CN_OK : cn_error_set(err, CN_ENOMEM, "out of memory");
	/* every driver and mappings file first: an error here changes nothing */
	for (size_t i = 0; rc == CN_OK && i < cfg->nsources; i++) {
		const struct config_source *sc = &cfg->sources[i];
		struct driver_module *m = module_for(set, old, cfg, sc->driver, err);
		if (!m) {
			rc = err ? err->code : CN_ENOTFOUND;
			if (err) {
				char why[sizeof err->message];
				snprintf(why, sizeof why, "%s", err->message);
				cn_error_set(err, rc, "%s:%d: sources[%zu].driver: %s", cfg->path, sc->line,
					     i, why);
			}
			break;
		}
		rc = load_mappings(cfg, i, m, &maps[i], err);
	}
	for (size_t i = 0; rc == CN_OK && i < cfg->nsources; i++) {
		const struct config_source *sc = &cfg->sources[i];
		struct source *s = kept_source(old, sc);
		if (s) {
			atomic_fetch_add(&s->refs, 1);
			rep->kept++;
		} else {
			struct driver_module *m = module_for(set, NULL, cfg, sc->driver, err);
			if (!(s = source_new(set, sc, m, maps[i]))) {
				rc = cn_error_set(err, CN_ENOMEM, "out of memory");
				break;
			}
			maps[i] = NULL; /* the source's now */
			rep->opened++;
		}
		set->items[set->n++] = s;
	}
	if (rc == CN_OK && old)
		for (size_t i = 0; i < old->n; i++)
			rep->closed += !config_find_source(cfg, old->items[i]->cfg->name);
	/* kept sources whose mappings changed: swap, then read the schema again */
	for (size_t i = 0; rc == CN_OK && i < cfg->nsources; i++) {
		struct source *s = set->items[i];
		if (!old || sources_find(old, s->cfg->name) != s)
			continue;
		pthread_mutex_lock(&s->refresh_mu);
		struct mappings *had = atomic_load(&s->mappings);
		if (!mappings_equal(had, maps[i])) {
			atomic_store_explicit(&s->mappings, maps[i], memory_order_release);
			old->retired[old->nretired++] = had; /* requests of old may still read it */
			maps[i] = NULL;
			struct refresh_result r;
			if (refresh_source_locked(s, &r) != CN_OK)
				log_warn("source '%s': its new mappings apply to queries now, and to "
					 "describe_schema after the next refresh that works: %s",
					 s->cfg->name, r.error);
			refresh_result_clear(&r);
			rep->remapped++;
		}
		pthread_mutex_unlock(&s->refresh_mu);
	}
	for (size_t i = 0; maps && i < cfg->nsources; i++)
		mappings_free(maps[i]);
	free(maps);
	if (rc) {
		sources_close(set);
		return rc;
	}
	*out = set;
	return CN_OK;
}

int sources_open(const struct config *cfg, struct source_set **out, struct cn_error *err)
{
	return sources_open_with(cfg, NULL, out, err);
}

/* Connect and read the schema of every source that has no view yet. */
static void set_refresh_new(struct source_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		struct source *s = set->items[i];
		pthread_mutex_lock(&s->lock);
		bool fresh = !s->view && !s->last_error[0];
		pthread_mutex_unlock(&s->lock);
		if (!fresh)
			continue;
		struct refresh_result r;
		if (refresh_source(s, &r) != CN_OK)
			log_warn("source '%s' (%s) is unavailable: %s", s->cfg->name, s->cfg->driver,
				 r.error);
		refresh_result_clear(&r);
	}
}

int sources_open_with(const struct config *cfg, const struct sources_opts *opts, struct source_set **out,
		      struct cn_error *err)
{
	struct sources_reopen_report rep = {0};
	*out = NULL;
	int rc = set_build(cfg, opts ? opts->store : NULL, opts && opts->store_read_only, NULL, out,
			   &rep, err);
	if (rc == CN_OK && !(opts && opts->lazy))
		set_refresh_new(*out);
	return rc;
}

void sources_on_refresh(struct source_set *set, void (*fn)(void *ctx, struct source *s), void *ctx)
{
	set->on_refresh = fn;
	set->on_refresh_ctx = ctx;
	for (size_t i = 0; i < set->n; i++) {
		set->items[i]->on_refresh = fn;
		set->items[i]->on_refresh_ctx = ctx;
	}
}

int sources_reopen(const struct config *cfg, struct source_set *old, struct source_set **out,
		   struct sources_reopen_report *report, struct cn_error *err)
{
	memset(report, 0, sizeof *report);
	*out = NULL;
	int rc = set_build(cfg, old->store, old->store_read_only, old, out, report, err);
	if (rc == CN_OK)
		set_refresh_new(*out);
	return rc;
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool source_reachable(struct source *s, char *why, size_t len)
{
	int64_t now = monotonic_ms();
	pthread_mutex_lock(&s->lock);
	bool fresh = s->probed_at_ms && now - s->probed_at_ms < SOURCE_PROBE_MS;
	void *h = s->handle;
	pthread_mutex_unlock(&s->lock);
	if (!fresh && h && s->module->api->ping && pthread_mutex_trylock(&s->probe_mu) == 0) {
		struct cn_error err = {0};
		int rc = s->module->api->ping(h, &err);
		pthread_mutex_lock(&s->lock);
		s->probed_at_ms = monotonic_ms();
		s->probe_failed = rc != CN_OK;
		snprintf(s->probe_error, sizeof s->probe_error, "%s",
			 rc == CN_OK ? "" : err.message[0] ? err.message : cn_status_message(rc));
		pthread_mutex_unlock(&s->lock);
		pthread_mutex_unlock(&s->probe_mu);
	}
	pthread_mutex_lock(&s->lock);
	bool ok = !s->probe_failed;
	snprintf(why, len, "%s", s->probe_error);
	pthread_mutex_unlock(&s->lock);
	return ok;
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
		struct source *s = set->items[i];
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
	for (size_t i = 0; i < set->n; i++)
		source_release(set->items[i]);
	for (size_t i = 0; i < set->nmodules; i++)
		driver_unload(set->modules[i]);
	for (size_t i = 0; i < set->nretired; i++)
		mappings_free(set->retired[i]);
	free(set->retired);
	free(set->modules);
	free(set->items);
	free(set);
}

struct source *sources_find(struct source_set *set, const char *name)
{
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->items[i]->cfg->name, name) == 0)
			return set->items[i];
	return NULL;
}
