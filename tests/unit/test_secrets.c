/*
 * test_secrets.c - the rotation file (parse, format, permissions), which
 * secrets a snapshot accepts when (retired, deprecated, pending, primary),
 * and the snapshot swapped under threads that verify signatures: during a
 * rotation no signature made with an accepted secret is ever refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "secrets.h"
#include "signature.h"

#define CFG_SECRET "config-secret-0123456789abcdef"
#define CFG_SECRET2 "config-secret-two-0123456789xyz"
#define NEW_SECRET "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbbccccccccccccccccdddddddddddddddd"
#define OLD_SECRET "1111111111111111222222222222222233333333333333334444444444444444"

static char dir[] = "/tmp/cn-secrets-XXXXXX";

static struct config *load_cfg(const char *extra)
{
	char text[1024];
	snprintf(text, sizeof text,
		 "auth: { callback_secrets: [\"" CFG_SECRET "\", \"" CFG_SECRET2 "\"] %s}\n"
		 "state: { path: \"%s/state.db\" }\n"
		 "sources:\n  - { name: demo, driver: sqlite, dsn: demo.db }\n",
		 extra, dir);
	struct config *cfg;
	struct cn_error err = {0};
	if (config_load_buffer("t.yaml", text, strlen(text), &cfg, &err))
		fail_msg("%s", err.message);
	return cfg;
}

static int setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static bool accepts(const struct secret_set *set, int64_t now, const char *secret)
{
	const char *list[SECRETS_MAX];
	size_t n = secret_set_current(set, now, list);
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], secret) == 0)
			return true;
	return false;
}

static void test_parse_and_format(void **state)
{
	(void)state;
	static const char good[] =
	    "{\"version\":1,\"secrets\":["
	    "{\"secret\":\"" NEW_SECRET "\",\"state\":\"active\",\"created_at\":\"2026-01-20T12:00:00Z\","
	    "\"expires_at\":null},"
	    "{\"secret\":\"" OLD_SECRET "\",\"state\":\"deprecated\",\"created_at\":\"2025-01-20T12:00:00Z\","
	    "\"expires_at\":\"2026-01-21T12:00:00Z\"}],"
	    "\"retired\":[{\"fingerprint\":\"0123456789abcdef\",\"expires_at\":\"2026-01-21T12:00:00Z\"}],"
	    "\"patched_tools\":[\"tool_1\",\"tool-2.x\"]}";
	struct secrets_file f;
	struct cn_error err = {0};
	assert_int_equal(secrets_file_parse(good, strlen(good), &f, &err), CN_OK);
	assert_int_equal(f.n, 2);
	assert_int_equal(f.items[0].state, SECRET_ACTIVE);
	assert_int_equal(f.items[1].state, SECRET_DEPRECATED);
	assert_int_equal(f.items[1].expires_at, 1768996800);
	assert_int_equal(f.nretired, 1);
	assert_true(secrets_file_patched(&f, "tool-2.x"));
	assert_false(secrets_file_patched(&f, "tool_3"));
	char *text = secrets_file_format(&f);
	assert_non_null(text);
	struct secrets_file g;
	assert_int_equal(secrets_file_parse(text, strlen(text), &g, &err), CN_OK);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.items[1].secret, OLD_SECRET);
	assert_int_equal(g.items[1].expires_at, f.items[1].expires_at);
	assert_string_equal(g.retired[0].fingerprint, "0123456789abcdef");
	assert_int_equal(g.npatched, 2);
	free(text);
	secrets_file_clear(&g);
	secrets_file_clear(&f);
	assert_int_equal(f.n, 0);

	static const struct {
		const char *text;
		const char *want;
	} bad[] = {
	    {"", "not a rotation file"},
	    {"[]", "not a rotation file"},
	    {"{\"version\":2}", "not a rotation file"},
	    {"{\"version\":1,\"secrets\":{}}", "\"secrets\" is not a list"},
	    {"{\"version\":1,\"secrets\":[{\"secret\":\"short\",\"state\":\"active\","
	     "\"created_at\":\"2026-01-20T12:00:00Z\"}]}",
	     "secrets[0] is not valid"},
	    {"{\"version\":1,\"secrets\":[{\"secret\":\"" NEW_SECRET "\",\"state\":\"odd\","
	     "\"created_at\":\"2026-01-20T12:00:00Z\"}]}",
	     "secrets[0] is not valid"},
	    {"{\"version\":1,\"secrets\":[{\"secret\":\"" NEW_SECRET "\",\"state\":\"deprecated\","
	     "\"created_at\":\"2026-01-20T12:00:00Z\"}]}",
	     "expires_at exactly when deprecated"},
	    {"{\"version\":1,\"secrets\":[{\"secret\":\"" NEW_SECRET "\",\"state\":\"active\","
	     "\"created_at\":\"2026-01-20T12:00:00Z\"},{\"secret\":\"" OLD_SECRET "\",\"state\":\"active\","
	     "\"created_at\":\"2026-01-20T12:00:00Z\"}]}",
	     "more than one secret is active"},
	    {"{\"version\":1,\"retired\":[{\"fingerprint\":\"XYZ\",\"expires_at\":\"2026-01-20T12:00:00Z\"}]"
	     "}",
	     "retired[0] is not valid"},
	    {"{\"version\":1,\"patched_tools\":[\"a b\"]}", "patched_tools[0] is not a tool id"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		memset(&err, 0, sizeof err);
		if (secrets_file_parse(bad[i].text, strlen(bad[i].text), &f, &err) == CN_OK)
			fail_msg("case %zu parsed", i);
		if (!strstr(err.message, bad[i].want))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.message, bad[i].want);
		assert_null(strstr(err.message, NEW_SECRET));
		secrets_file_clear(&f);
	}
}

static void test_file_permissions(void **state)
{
	(void)state;
	char path[256];
	snprintf(path, sizeof path, "%s/perm.secrets", dir);
	struct secrets_file f = {0}, g;
	struct cn_error err = {0};
	bool exists;
	assert_int_equal(secrets_file_read(path, &g, &exists, &err), CN_OK);
	assert_false(exists);
	f.items[0] = (struct secrets_entry){
	    .secret = strdup(NEW_SECRET), .state = SECRET_ACTIVE, .created_at = 1700000000};
	f.n = 1;
	assert_int_equal(secrets_file_write(path, &f, &err), CN_OK);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(secrets_file_read(path, &g, &exists, &err), CN_OK);
	assert_true(exists);
	assert_string_equal(g.items[0].secret, NEW_SECRET);
	secrets_file_clear(&g);
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(secrets_file_read(path, &g, &exists, &err), CN_EIO);
	assert_non_null(strstr(err.message, "may be read by others (mode 0640)"));
	assert_non_null(strstr(err.message, "chmod 600"));
	secrets_file_clear(&f);
}

static void test_snapshot_rules(void **state)
{
	(void)state;
	struct config *cfg = load_cfg("");
	const int64_t now = 1800000000;

	/* no rotation yet: the configured secrets, the first is primary */
	struct secret_set *set = secret_set_build(cfg, NULL);
	assert_true(accepts(set, now, CFG_SECRET) && accepts(set, now, CFG_SECRET2));
	assert_string_equal(secret_set_primary(set, now), CFG_SECRET);
	secret_set_release(set);

	/* a rotation in its window: new active, the configured ones retired later */
	struct secrets_file f = {0};
	f.items[0] = (struct secrets_entry){
	    .secret = strdup(NEW_SECRET), .state = SECRET_ACTIVE, .created_at = now - 10};
	f.n = 1;
	secrets_fingerprint(CFG_SECRET, f.retired[0].fingerprint);
	f.retired[0].expires_at = now + 3600;
	f.nretired = 1;
	set = secret_set_build(cfg, &f);
	assert_true(accepts(set, now, NEW_SECRET));
	assert_true(accepts(set, now, CFG_SECRET));
	assert_true(accepts(set, now, CFG_SECRET2));
	assert_string_equal(secret_set_primary(set, now), NEW_SECRET);
	/* after the window: the retired one is refused, the others stay */
	assert_false(accepts(set, now + 3600, CFG_SECRET));
	assert_true(accepts(set, now + 3600, CFG_SECRET2));
	assert_true(accepts(set, now + 3600, NEW_SECRET));
	secret_set_release(set);

	/* a pending secret is accepted but not primary; a deprecated one until it expires */
	f.items[0].state = SECRET_PENDING;
	f.items[1] = (struct secrets_entry){.secret = strdup(OLD_SECRET),
					    .state = SECRET_DEPRECATED,
					    .created_at = now - 100,
					    .expires_at = now + 60};
	f.n = 2;
	f.nretired = 0;
	set = secret_set_build(cfg, &f);
	assert_true(accepts(set, now, NEW_SECRET));
	assert_string_equal(secret_set_primary(set, now), CFG_SECRET);
	assert_true(accepts(set, now + 59, OLD_SECRET));
	assert_false(accepts(set, now + 60, OLD_SECRET));
	secret_set_release(set);

	/* the configured secret equal to the active one is not retired by its own entry */
	secrets_file_clear(&f);
	f.items[0] =
	    (struct secrets_entry){.secret = strdup(CFG_SECRET2), .state = SECRET_ACTIVE, .created_at = now};
	f.n = 1;
	set = secret_set_build(cfg, &f);
	assert_string_equal(secret_set_primary(set, now), CFG_SECRET2);
	size_t count = 0;
	for (size_t i = 0; i < set->n; i++)
		count += strcmp(set->items[i].value, CFG_SECRET2) == 0;
	assert_int_equal(count, 1);
	secret_set_release(set);
	secrets_file_clear(&f);
	config_free(cfg);

	char a[SECRETS_GENERATED_LEN + 1], b[SECRETS_GENERATED_LEN + 1];
	assert_int_equal(secrets_generate(a), CN_OK);
	assert_int_equal(secrets_generate(b), CN_OK);
	assert_int_equal(strlen(a), 64);
	assert_int_equal(strspn(a, "0123456789abcdef"), 64);
	assert_string_not_equal(a, b);
}

/* ---- the swap under load ---- */

static struct {
	struct secrets *secrets;
	atomic_bool stop;
	atomic_long verified;
	atomic_long refused;
	char body[64];
	char sig_cfg[SIGNATURE_HEADER_LEN + 1];
	char sig_new[SIGNATURE_HEADER_LEN + 1];
	char ts[21];
	time_t now;
} L;

static void *verifier(void *arg)
{
	(void)arg;
	for (long i = 0; !atomic_load(&L.stop); i++) {
		struct secret_set *set = secrets_acquire(L.secrets);
		const char *list[SECRETS_MAX];
		size_t n = secret_set_current(set, (int64_t)L.now, list);
		struct cn_error err = {0};
		/* the platform signs with either while the rotation runs */
		const char *sig = i % 2 ? L.sig_new : L.sig_cfg;
		if (signature_verify(list, n, L.body, strlen(L.body), sig, L.ts, L.now, 300, &err) == CN_OK)
			atomic_fetch_add(&L.verified, 1);
		else
			atomic_fetch_add(&L.refused, 1);
		secret_set_release(set);
		sched_yield(); /* verify as fast as it goes, but leave the CPU to others too */
	}
	return NULL;
}

static void test_swap_under_load(void **state)
{
	(void)state;
	struct config *cfg = load_cfg("");
	char path[256];
	snprintf(path, sizeof path, "%s/state.db.secrets", dir);
	unlink(path);
	struct cn_error err = {0};
	/* the new secret is already pending: the rotation's first step */
	struct secrets_file f = {0};
	f.items[0] = (struct secrets_entry){
	    .secret = strdup(NEW_SECRET), .state = SECRET_PENDING, .created_at = 1700000000};
	f.n = 1;
	assert_int_equal(secrets_file_write(path, &f, &err), CN_OK);
	assert_int_equal(secrets_open(cfg, &L.secrets, &err), CN_OK);

	L.now = time(NULL);
	snprintf(L.body, sizeof L.body, "{\"execution_id\":\"exec_swap\"}");
	signature_format_timestamp(L.now, L.ts);
	assert_int_equal(signature_sign(CFG_SECRET, strlen(CFG_SECRET), L.body, strlen(L.body), L.sig_cfg),
			 CN_OK);
	assert_int_equal(signature_sign(NEW_SECRET, strlen(NEW_SECRET), L.body, strlen(L.body), L.sig_new),
			 CN_OK);

	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, verifier, NULL), 0);
	/* the rotation's later steps, over and over: active with the configured one retired in an
	 * hour, back to pending */
	for (int round = 0; round < 60; round++) {
		f.items[0].state = round % 2 ? SECRET_ACTIVE : SECRET_PENDING;
		f.nretired = round % 2;
		secrets_fingerprint(CFG_SECRET, f.retired[0].fingerprint);
		f.retired[0].expires_at = (int64_t)L.now + 3600;
		assert_int_equal(secrets_file_write(path, &f, &err), CN_OK);
		assert_int_equal(secrets_reload(L.secrets, &err), CN_OK);
	}
	atomic_store(&L.stop, true);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_true(atomic_load(&L.verified) > 0);
	assert_int_equal(atomic_load(&L.refused), 0);

	/* a file that breaks keeps the snapshot before it */
	FILE *bad = fopen(path, "w");
	assert_non_null(bad);
	fputs("{", bad);
	fclose(bad);
	assert_int_equal(secrets_reload(L.secrets, &err), CN_ECONFIG);
	struct secret_set *set = secrets_acquire(L.secrets);
	assert_true(accepts(set, L.now, NEW_SECRET));
	secret_set_release(set);

	secrets_free(L.secrets);
	secrets_file_clear(&f);
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_and_format),
	    cmocka_unit_test(test_file_permissions),
	    cmocka_unit_test(test_snapshot_rules),
	    cmocka_unit_test(test_swap_under_load),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
