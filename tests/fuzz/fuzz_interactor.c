/*
 * fuzz_interactor: what the connector reads from the Interactor platform and
 * from its rotation file, all untrusted bytes. The first input byte picks the
 * parser, the rest is its input:
 *   0  a token answer (ic_parse_token)
 *   1  answer header lines (ic_header_line, Retry-After)
 *   2  an error answer (ic_error_text)
 *   3  the rotation file (secrets_file_parse, then format and parse again:
 *      the same secrets come back)
 *   4  a tool listing against a fixed catalog (sync_plan_tools)
 *   5  a curated statement's placeholders, as SQL and as a document
 * Checks: no crash or leak, outputs bounded and NUL-terminated, the round
 * trip of the rotation file is exact.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curated.h"
#include "interactor_client.h"
#include "interactor_sync.h"
#include "secrets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char desired_json[] =
    "[{\"name\":\"db_a\",\"description\":\"A\",\"parameters\":{\"type\":\"object\"},"
    "\"callback_url\":\"https://c/v1/tools/db_a\"},"
    "{\"name\":\"db_b\",\"description\":\"B\",\"parameters\":{\"type\":\"object\",\"properties\":{}},"
    "\"callback_url\":\"https://c/v1/tools/db_b\"}]";

static void fuzz_secrets_file(const char *text, size_t len)
{
	struct secrets_file f, g;
	struct cn_error err = {0};
	if (secrets_file_parse(text, len, &f, &err) != CN_OK) {
		if (!err.message[0])
			abort();
		secrets_file_clear(&f);
		return;
	}
	char *again = secrets_file_format(&f);
	if (!again)
		abort();
	if (secrets_file_parse(again, strlen(again), &g, &err) != CN_OK || g.n != f.n ||
	    g.nretired != f.nretired || g.npatched != f.npatched)
		abort();
	for (size_t i = 0; i < f.n; i++)
		if (strcmp(f.items[i].secret, g.items[i].secret) != 0 ||
		    f.items[i].state != g.items[i].state || f.items[i].expires_at != g.items[i].expires_at)
			abort();
	free(again);
	secrets_file_clear(&g);
	secrets_file_clear(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned mode = data[0] % 6;
	const char *in = (const char *)data + 1;
	size_t len = size - 1;
	char *text = malloc(len + 1);
	if (!text)
		return 0;
	memcpy(text, in, len);
	text[len] = '\0';

	switch (mode) {
	case 0: {
		char *tok = NULL, why[200];
		long exp = 0;
		if (ic_parse_token(in, len, &tok, &exp, why, sizeof why) == CN_OK) {
			if (!tok || !*tok || exp < 1 || strpbrk(tok, " \t\r\n"))
				abort();
		} else if (tok || strnlen(why, sizeof why) == sizeof why) {
			abort();
		}
		free(tok);
		break;
	}
	case 1: {
		struct ic_headers h;
		ic_headers_init(&h);
		for (size_t start = 0; start < len;) {
			const char *nl = memchr(in + start, '\n', len - start);
			size_t n = nl ? (size_t)(nl - (in + start)) + 1 : len - start;
			ic_header_line(&h, in + start, n, 1700000000);
			start += n;
		}
		if (strnlen(h.request_id, sizeof h.request_id) == sizeof h.request_id ||
		    strnlen(h.ratelimit_resource, sizeof h.ratelimit_resource) == sizeof h.ratelimit_resource)
			abort();
		(void)ic_retry_after(text, 1700000000);
		break;
	}
	case 2: {
		char out[64];
		cJSON *j = cJSON_ParseWithLength(in, len);
		ic_error_text(j, out, sizeof out);
		if (strnlen(out, sizeof out) == sizeof out)
			abort();
		cJSON_Delete(j);
		break;
	}
	case 3: fuzz_secrets_file(in, len); break;
	case 4: {
		cJSON *desired = cJSON_Parse(desired_json), *existing = cJSON_ParseWithLength(in, len);
		struct sync_plan plan;
		struct cn_error err = {0};
		if (cJSON_IsArray(existing) &&
		    sync_plan_tools(desired, existing, "db_", true, &plan, &err) == CN_OK) {
			size_t creates = 0;
			for (size_t i = 0; i < plan.n; i++)
				creates += plan.items[i].kind == SYNC_CREATE;
			if (creates > 2)
				abort();
			sync_plan_free(&plan);
		}
		cJSON_Delete(existing);
		cJSON_Delete(desired);
		break;
	}
	case 5: {
		bool used[CONFIG_MAX_TOOL_PARAMS];
		char why[300];
		(void)curated_placeholders(text, false, used, why, sizeof why);
		(void)curated_placeholders(text, true, used, why, sizeof why);
		break;
	}
	}
	free(text);
	return 0;
}
