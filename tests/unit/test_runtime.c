/*
 * test_runtime.c - generations of configuration: a request's generation
 * lives until the request lets go of it, generations are freed oldest
 * first (a held old one keeps the newer ones too), and requests on many
 * threads keep working while the main thread installs a thousand new
 * ones (scripts/test.sh also runs this under ThreadSanitizer).
 *
 * Whether a generation was freed is read off its configuration: the test
 * holds one reference of its own, so a count of 1 means the generation let
 * go of its reference.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "runtime.h"

static struct config *make_config(unsigned tag)
{
	char text[300];
	snprintf(text, sizeof text,
		 "auth: { callback_secrets: [\"runtime-test-secret-%08u\"] }\n"
		 "sources:\n  - { name: s%u, driver: sqlite, dsn: x.db }\n",
		 tag, tag);
	struct config *cfg = NULL;
	struct cn_error err = {0};
	assert_int_equal(config_load_buffer("runtime.yaml", text, strlen(text), &cfg, &err), CN_OK);
	return cfg;
}

static unsigned refs(const struct config *cfg)
{
	return atomic_load(&cfg->refs);
}

/* A configuration for the runtime, with the test's own reference in keep[]. */
static struct config *next_config(struct config **keep, unsigned i)
{
	keep[i] = make_config(i);
	return config_hold(keep[i]);
}

static void test_a_request_keeps_its_generation(void **state)
{
	(void)state;
	struct config *keep[4];
	struct runtime rt;
	assert_int_equal(runtime_init(&rt, next_config(keep, 0), NULL, NULL), CN_OK);
	struct generation *a = runtime_acquire(&rt);
	assert_int_equal(a->number, 1);
	assert_int_equal(runtime_install(&rt, next_config(keep, 1), NULL, NULL), 2);
	assert_int_equal(refs(keep[0]), 2); /* a holds generation 1 */
	struct generation *b = runtime_acquire(&rt);
	assert_ptr_equal(b->cfg, keep[1]);
	assert_int_equal(runtime_install(&rt, next_config(keep, 2), NULL, NULL), 3);
	runtime_release(&rt, a);
	assert_int_equal(refs(keep[0]), 1); /* freed */
	assert_int_equal(refs(keep[1]), 2); /* b still holds it */
	runtime_release(&rt, b);
	assert_int_equal(refs(keep[1]), 1);
	assert_int_equal(refs(keep[2]), 2); /* current */
	runtime_destroy(&rt);
	assert_int_equal(refs(keep[2]), 1);
	for (int i = 0; i < 3; i++)
		config_free(keep[i]);
}

static void test_freed_oldest_first(void **state)
{
	(void)state;
	struct config *keep[4];
	struct runtime rt;
	assert_int_equal(runtime_init(&rt, next_config(keep, 0), NULL, NULL), CN_OK);
	struct generation *a = runtime_acquire(&rt);
	assert_int_equal(runtime_install(&rt, next_config(keep, 1), NULL, NULL), 2);
	assert_int_equal(runtime_install(&rt, next_config(keep, 2), NULL, NULL), 3);
	assert_int_equal(runtime_install(&rt, next_config(keep, 3), NULL, NULL), 4);
	/* 2 and 3 are held by nobody, but 1 is: all three stay */
	for (int i = 0; i < 3; i++)
		assert_int_equal(refs(keep[i]), 2);
	runtime_release(&rt, a);
	for (int i = 0; i < 3; i++)
		assert_int_equal(refs(keep[i]), 1);
	assert_int_equal(refs(keep[3]), 2);
	runtime_destroy(&rt);
	for (int i = 0; i < 4; i++)
		config_free(keep[i]);
}

struct stress {
	struct runtime *rt;
	atomic_bool stop;
	atomic_bool bad; /* cmocka's asserts belong to the main thread */
	atomic_uint requests;
};

static void *requests(void *arg)
{
	struct stress *st = arg;
	uint64_t last = 0;
	while (!atomic_load(&st->stop)) {
		struct generation *g = runtime_acquire(st->rt);
		/* what a request reads of its generation stays whole and never goes back */
		if (g->number < last || g->cfg->nsources != 1 ||
		    !strstr(g->cfg->callback_secrets[0], "runtime-test-secret-"))
			atomic_store(&st->bad, true);
		last = g->number;
		runtime_release(st->rt, g);
		atomic_fetch_add(&st->requests, 1);
	}
	return NULL;
}

static void test_installs_under_requests(void **state)
{
	(void)state;
	struct runtime rt;
	assert_int_equal(runtime_init(&rt, make_config(0), NULL, NULL), CN_OK);
	struct stress st = {.rt = &rt};
	pthread_t t[8];
	for (int i = 0; i < 8; i++)
		assert_int_equal(pthread_create(&t[i], NULL, requests, &st), 0);
	for (unsigned i = 1; i <= 1000; i++)
		assert_int_equal(runtime_install(&rt, make_config(i), NULL, NULL), i + 1);
	atomic_store(&st.stop, true);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	assert_false(atomic_load(&st.bad));
	assert_true(atomic_load(&st.requests) > 0);
	/* only the current generation is left */
	assert_ptr_equal(rt.oldest, rt.current);
	assert_int_equal(rt.current->number, 1001);
	runtime_destroy(&rt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_request_keeps_its_generation),
		cmocka_unit_test(test_freed_oldest_first),
		cmocka_unit_test(test_installs_under_requests),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
