/*
 * fuzz_config: bytes -> config_load_buffer, then everything a loaded
 * configuration offers (print, path resolution, source lookup). Checks the
 * loader's promises: an error leaves no configuration and its message starts
 * with the file name; a loaded one holds valid secrets and sources, and its
 * printout redacts every secret.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "curated.h"
#include "json_schema.h"

#define NAME "fuzz/connector.yaml"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* the variables the seed corpus refers to, plus short ones a mutation finds */
	setenv("INTERACTOR_CALLBACK_SECRET", "fuzz-callback-secret-0123456789abcdef", 1);
	setenv("SECRET2", "second-fuzz-secret-0123456789", 1);
	setenv("DB_PASSWORD", "fuzz-db-password", 1);
	setenv("A", "a", 1);
	setenv("B", "127.0.0.1:8080", 1);
	setenv("E", "", 1);
	setenv("CLIENT_SECRET", "fuzz-client-secret-value-xyz", 1);
	return 0;
}

static void check_loaded(const struct config *cfg, const uint8_t *data, size_t size)
{
	if (cfg->nsecrets < 1 || cfg->nsecrets > CONFIG_MAX_SECRETS || cfg->nsources < 1 ||
	    cfg->nsources > CONFIG_MAX_SOURCES)
		abort();
	for (size_t i = 0; i < cfg->nsecrets; i++)
		if (strlen(cfg->callback_secrets[i]) < CONFIG_MIN_SECRET_LEN)
			abort();
	for (size_t i = 0; i < cfg->nsources; i++)
		if (config_find_source(cfg, cfg->sources[i].name) != &cfg->sources[i])
			abort(); /* names are unique */

	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (!out)
		return;
	config_print(cfg, out);
	fclose(out);
	size_t redacted = 0;
	for (const char *p = text; (p = strstr(p, "<redacted>")); p++)
		redacted++;
	if (redacted < cfg->nsecrets)
		abort();

	/* curated tools: what the loader promised holds */
	for (size_t i = 0; i < cfg->ntools; i++) {
		const struct config_tool *t = &cfg->tools[i];
		char why[400];
		if (config_find_tool(cfg, t->name) != t || !config_find_source(cfg, t->source) ||
		    curated_check_statement(t, why, sizeof why) != CN_OK)
			abort();
		cJSON *schema = curated_tool_schema(t);
		if (schema && json_schema_check_defaults(schema, "parameters", why, sizeof why) != CN_OK)
			abort(); /* a default the loader let through does not fit */
		cJSON_Delete(schema);
	}
	/* the client secret was printed (unless the file itself spells it out elsewhere) */
	if (cfg->client_secret && strlen(cfg->client_secret) >= 4 && strstr(text, cfg->client_secret) &&
	    !memmem(data, size, cfg->client_secret, strlen(cfg->client_secret)))
		abort();

	const char *paths[] = {cfg->state_path, cfg->drivers_dir, cfg->sources[0].mappings_path};
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		char *p = config_resolve_path(cfg, paths[i]);
		if (!p)
			abort();
		free(p);
	}
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL;
	struct cn_error err = {0};
	int rc = config_load_buffer(NAME, data, size, &cfg, &err);
	if (rc != CN_OK) {
		if (cfg || err.code != rc || strncmp(err.message, NAME ":", strlen(NAME ":")) != 0)
			abort();
		return 0;
	}
	check_loaded(cfg, data, size);
	config_free(cfg);
	return 0;
}
