/*
 * fuzz_audit.c - the audit log's parsers from arbitrary bytes: the
 * command line's --since, --source and --status, and the filter word the
 * daemon reads from its request files. The first byte picks what the rest
 * is:
 *   's'                      --since, at a fixed "now"
 *   'o'                      --source and --status
 *   'f' (and anything else)  a filter word: parse; when it parses, format
 *                            it and parse that again to the same filter,
 *                            and the text fits a request file
 * and the fingerprint of the rest is taken whatever it is. Invariants that
 * must hold are checked with abort().
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_since(const char *text)
{
	char why[300];
	int64_t ms = -1;
	why[0] = '\0';
	if (audit_parse_since(text, 1800000000000LL, &ms, why, sizeof why) == CN_OK) {
		if (ms < 0)
			abort(); /* the cursor is never before 1970 */
	} else if (!why[0]) {
		abort(); /* a refusal always says why */
	}
}

static void fuzz_options(const char *text)
{
	struct audit_filter f = {0};
	char why[300], word[AUDIT_FILTER_MAX];
	if (audit_filter_set_source(&f, text, why, sizeof why) == CN_OK &&
	    strlen(f.source) > AUDIT_NAME_MAX)
		abort();
	if (audit_filter_set_status(&f, text, why, sizeof why) == CN_OK && f.status && f.code[0])
		abort();
	/* whatever the options took must travel to the daemon intact */
	struct audit_filter g;
	audit_filter_format(&f, word);
	if (audit_filter_parse(word, &g) != CN_OK || memcmp(&f, &g, sizeof f) != 0)
		abort();
}

static void fuzz_word(const char *text)
{
	struct audit_filter f, g;
	char word[AUDIT_FILTER_MAX];
	if (audit_filter_parse(text, &f) != CN_OK)
		return;
	if (f.after_ms < 0 || f.after_id < 0 || (f.status && f.code[0]))
		abort();
	audit_filter_format(&f, word);
	if (strlen(word) + sizeof "audit \n" > 256) /* CONTROL_MAX_REQUEST */
		abort();
	if (audit_filter_parse(word, &g) != CN_OK || memcmp(&f, &g, sizeof f) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || size > 4096)
		return 0;
	char *text = malloc(size);
	if (!text)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0'; /* what a command line or a file read as text would give */
	switch (data[0]) {
	case 's': fuzz_since(text); break;
	case 'o': fuzz_options(text); break;
	default: fuzz_word(text); break;
	}
	char fp[AUDIT_FINGERPRINT_LEN + 1];
	audit_fingerprint((const char *)data + 1, size - 1, fp);
	if (strlen(fp) != AUDIT_FINGERPRINT_LEN)
		abort();
	free(text);
	return 0;
}
