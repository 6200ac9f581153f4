/*
 * fuzz_request: the whole callback path from raw bytes, as the HTTP server
 * hands them to request_handle(). The first input byte picks what is
 * fuzzed: a correctly signed body (so JSON parsing, dispatch, the tools, the
 * SQLite guard and the result writer are reached), or the signature and
 * timestamp headers themselves; and which path (the tools, /healthz, /readyz).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "config.h"
#include "log.h"
#include "request.h"
#include "signature.h"

#define SECRET "fuzz-secret-0123456789abcdef"

static struct app app;
static struct config *cfg;

static time_t fixed_now(void)
{
	return 1767225600; /* 2026-01-01T00:00:00Z */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char dir[] = "/tmp/cn-fuzz-XXXXXX";
	if (!mkdtemp(dir))
		abort();
	char text[2048];
	snprintf(text, sizeof text,
		 "auth: { callback_secrets: [\"" SECRET "\"] }\n"
		 "state: { path: \"%s/state.db\" }\n"
		 "drivers: { dir: \"" CN_TEST_DRIVER_DIR "\" }\n"
		 "sources:\n"
		 "  - { name: demo, driver: sqlite, dsn: \"" CN_TEST_DEMO_DB "\",\n"
		 "      mappings: \"" CN_TEST_SOURCE_DIR "/conf/mappings/demo.yaml\",\n"
		 "      limits: { timeout_ms: 200, max_result_bytes: 8192 } }\n",
		 dir);
	struct cn_error err = {0};
	log_set_level(LOG_LEVEL_ERROR);
	if (config_load_buffer("fuzz.yaml", text, strlen(text), &cfg, &err) ||
	    exec_store_open(cfg->state_path, NULL, &app.store, &err) ||
	    sources_open(cfg, &app.sources, &err)) {
		fprintf(stderr, "fuzz_request setup: %s\n", err.message);
		abort();
	}
	app.cfg = cfg;
	app.now = fixed_now;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;

	char sig[SIGNATURE_HEADER_LEN + 1], ts[64] = "2026-01-01T00:00:00Z";
	char sig_in[128];
	struct http_request req = {.method = "POST", .path = "/v1/tools/run_query"};
	static const char *const paths[] = {"/v1/tools/run_query", "/v1/tools/describe_schema",
					    "/v1/tools/list_data_sources", "/v1/tools/", "/healthz",
					    "/v1/tools/search_schema", "/readyz"};
	req.path = paths[(mode >> 1) % 7];
	if ((mode >> 1) % 7 == 6)
		req.method = "GET";
	if (mode & 1) {
		/* fuzz the headers: "signature\ntimestamp\nbody" */
		const uint8_t *nl1 = memchr(data, '\n', size);
		const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', size - (size_t)(nl1 + 1 - data)) : NULL;
		if (!nl1 || !nl2 || (size_t)(nl1 - data) >= sizeof sig_in ||
		    (size_t)(nl2 - nl1 - 1) >= sizeof ts)
			return 0;
		memcpy(sig_in, data, (size_t)(nl1 - data));
		sig_in[nl1 - data] = '\0';
		memcpy(ts, nl1 + 1, (size_t)(nl2 - nl1 - 1));
		ts[nl2 - nl1 - 1] = '\0';
		req.signature = sig_in;
		req.timestamp = ts;
		req.body = (const char *)nl2 + 1;
		req.len = size - (size_t)(nl2 + 1 - data);
	} else {
		if (signature_sign(SECRET, strlen(SECRET), data, size, sig))
			return 0;
		req.signature = sig;
		req.timestamp = ts;
		req.body = (const char *)data;
		req.len = size;
	}
	req.too_large = req.len > REQUEST_MAX_BODY;

	struct http_response resp;
	request_handle(&app, &req, &resp);
	if (resp.status < 200 || resp.status > 599 || !resp.body)
		abort();
	http_response_free(&resp);
	return 0;
}
