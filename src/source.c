#include "source.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

int source_is_hidden(void *ctx, const char *schema, const char *table, const char *column)
{
	const struct source *s = ctx;
	return mappings_is_hidden(s->mappings, schema, table, column);
}

static void warn_unmatched(void *ctx, const char *file, int line, const char *key, const char *message)
{
	const struct source *s = ctx;
	log_warn("%s:%d: mapping '%s' of source '%s' %s", file, line, key, s->cfg->name, message);
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

/* Open the driver handle (s->lock held). */
static int source_connect(struct source *s, struct cn_error *err)
{
	if (s->handle)
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
	s->handle = h;
	return CN_OK;
}

static int source_refresh_locked(struct source *s, struct cn_error *err)
{
	int rc = source_connect(s, err);
	if (rc)
		return rc;
	struct schema_model *m = schema_model_new();
	if (!m)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	struct cn_schema_builder b;
	schema_model_builder(m, &b);
	rc = s->module->api->introspect(s->handle, &b, err);
	if (rc) {
		schema_model_free(m);
		return rc;
	}
	if (s->mappings)
		mappings_apply(s->mappings, m, warn_unmatched, s);
	schema_model_free(s->model);
	s->model = m;
	return CN_OK;
}

int source_refresh(struct source *s, struct cn_error *err)
{
	pthread_mutex_lock(&s->lock);
	int rc = source_refresh_locked(s, err);
	if (rc) {
		snprintf(s->last_error, sizeof s->last_error, "%s", err ? err->message : cn_status_message(rc));
		clock_gettime(CLOCK_MONOTONIC, &s->retry_at);
		s->retry_at.tv_sec += SOURCE_RETRY_MS / 1000;
	} else {
		s->last_error[0] = '\0';
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static bool time_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int source_ready(struct source *s, void **handle, struct cn_error *err)
{
	int rc = CN_OK;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&s->lock);
	if ((!s->handle || !s->model) && s->last_error[0] && time_before(&now, &s->retry_at)) {
		rc = cn_error_set(err, CN_EUNAVAILABLE, "source '%s' is unavailable: %s", s->cfg->name,
				  s->last_error);
	} else if (!s->handle || !s->model) {
		rc = source_refresh_locked(s, err);
		if (rc) {
			snprintf(s->last_error, sizeof s->last_error, "%s", err ? err->message : "");
			s->retry_at = now;
			s->retry_at.tv_sec += SOURCE_RETRY_MS / 1000;
			rc = cn_error_set(err, CN_EUNAVAILABLE, "source '%s' is unavailable: %s",
					  s->cfg->name, s->last_error);
		} else {
			s->last_error[0] = '\0';
			log_info("source '%s' is available again", s->cfg->name);
		}
	}
	*handle = s->handle;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int sources_open(const struct config *cfg, struct source_set **out, struct cn_error *err)
{
	int rc = CN_ENOMEM;
	struct source_set *set = calloc(1, sizeof *set);
	*out = NULL;
	if (!set)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	set->items = calloc(cfg->nsources, sizeof *set->items);
	set->modules = calloc(cfg->nsources, sizeof *set->modules);
	if (!set->items || !set->modules) {
		cn_error_set(err, rc, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < cfg->nsources; i++) {
		struct source *s = &set->items[i];
		s->cfg = &cfg->sources[i];
		pthread_mutex_init(&s->lock, NULL);
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
	for (size_t i = 0; i < set->n; i++) {
		struct source *s = &set->items[i];
		struct cn_error e = {0};
		if (source_refresh(s, &e) == CN_OK)
			log_info("source '%s' (%s): %zu tables", s->cfg->name, s->cfg->driver,
				 schema_model_visible_tables(s->model));
		else
			log_warn("source '%s' (%s) is unavailable: %s", s->cfg->name, s->cfg->driver, e.message);
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
		if (s->handle && s->module->api->cancel)
			s->module->api->cancel(s->handle);
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
		schema_model_free(s->model);
		mappings_free(s->mappings);
		free(s->base_dir);
		pthread_mutex_destroy(&s->lock);
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
