/* test_execution_store.c - claim / finish / replay, restarts, races, expiry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "execution_store.h"

struct fixture {
	char dir[64];
	char path[128];
};

static time_t fake_now;

static time_t fake_clock(void)
{
	return fake_now;
}

/* Remove every file in dir (one level of subdirectories), then dir. */
static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char p[512];
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			remove_tree(p);
		else
			unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/cn_exec_test_XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
	fake_now = 1000;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	remove_tree(f->dir);
	free(f);
	return 0;
}

static struct exec_store *store_open(const char *path, uint32_t ttl_s, uint32_t stale_s)
{
	struct exec_store_opts o = {.ttl_s = ttl_s, .stale_s = stale_s};
	struct exec_store *s = NULL;
	struct cn_error err = {0};
	int rc = exec_store_open(path, &o, &s, &err);
	if (rc)
		print_message("open failed: %s\n", err.message);
	assert_int_equal(rc, CN_OK);
	assert_non_null(s);
	return s;
}

/* Claim and return the state; on EXEC_DONE check status and body. */
static enum exec_claim claim(struct exec_store *s, const char *id, uint32_t wait_ms, int want_status,
			     const void *want_body, size_t want_len)
{
	enum exec_claim st = EXEC_RUNNING;
	int status = -1;
	char *body = (char *)1;
	size_t len = 99;
	struct cn_error err = {0};
	assert_int_equal(exec_store_claim(s, id, wait_ms, &st, &status, &body, &len, &err), CN_OK);
	if (st == EXEC_DONE) {
		assert_non_null(body);
		assert_int_equal(status, want_status);
		assert_int_equal(len, want_len);
		if (want_len)
			assert_memory_equal(body, want_body, want_len);
		assert_int_equal(body[len], '\0');
		free(body);
	} else {
		assert_null(body);
		assert_int_equal(len, 0);
	}
	return st;
}

static void finish(struct exec_store *s, const char *id, int status, const void *body, size_t len)
{
	struct cn_error err = {0};
	assert_int_equal(exec_store_finish(s, id, status, body, len, &err), CN_OK);
}

/* A body with NUL bytes, every byte value and some JSON. */
static size_t binary_body(unsigned char *out, size_t cap)
{
	static const char json[] = "{\"result\":{\"rows\":[[1,\"\\u0000\"]]}}";
	size_t n = 0;
	memcpy(out, json, sizeof json); /* with its NUL */
	n += sizeof json;
	for (int i = 0; i < 256 && n < cap; i++)
		out[n++] = (unsigned char)(255 - i);
	out[n++] = 0;
	out[n++] = 0;
	return n;
}

static void test_claim_finish_replay(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 0, 0);
	unsigned char body[400];
	size_t n = binary_body(body, sizeof body - 2);
	assert_int_equal(claim(s, "exec_1", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "exec_1", 200, body, n);
	for (int i = 0; i < 3; i++)
		assert_int_equal(claim(s, "exec_1", 0, 200, body, n), EXEC_DONE);
	/* Another id is independent. */
	assert_int_equal(claim(s, "exec_2", 0, 0, NULL, 0), EXEC_CLAIMED);
	/* An empty answer replays as empty. */
	finish(s, "exec_2", 400, NULL, 0);
	assert_int_equal(claim(s, "exec_2", 0, 400, NULL, 0), EXEC_DONE);
	exec_store_close(s);
	exec_store_close(NULL);
}

static void test_restart(void **state)
{
	struct fixture *f = *state;
	unsigned char body[400];
	size_t n = binary_body(body, sizeof body - 2);
	struct exec_store *s = store_open(f->path, 0, 0);
	assert_int_equal(claim(s, "done", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "done", 201, body, n);
	assert_int_equal(claim(s, "running", 0, 0, NULL, 0), EXEC_CLAIMED);
	exec_store_close(s);

	s = store_open(f->path, 0, 0);
	assert_int_equal(claim(s, "done", 0, 201, body, n), EXEC_DONE);
	/* A claim made before the restart is still held (until it goes stale). */
	assert_int_equal(claim(s, "running", 0, 0, NULL, 0), EXEC_RUNNING);
	exec_store_close(s);

	/* The file is owner-only. */
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0077, 0);
}

struct race {
	struct exec_store *s;
	pthread_barrier_t *start;
	enum exec_claim state;
	int status;
	char *body;
	size_t len;
	int rc;
};

static const char race_body[] = "{\"result\":{\"row_count\":1}}";

static void *race_thread(void *arg)
{
	struct race *r = arg;
	struct cn_error err;
	pthread_barrier_wait(r->start);
	r->rc = exec_store_claim(r->s, "exec_race", 10000, &r->state, &r->status, &r->body, &r->len, &err);
	if (r->rc == CN_OK && r->state == EXEC_CLAIMED) {
		struct timespec ts = {0, 150 * 1000000L};
		nanosleep(&ts, NULL);
		r->rc = exec_store_finish(r->s, "exec_race", 200, race_body, sizeof race_body - 1, &err);
	}
	return NULL;
}

static void test_concurrent_claim(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 0, 0);
	enum { N = 8 };
	pthread_t th[N];
	struct race r[N];
	pthread_barrier_t start;
	assert_int_equal(pthread_barrier_init(&start, NULL, N), 0);
	for (int i = 0; i < N; i++) {
		memset(&r[i], 0, sizeof r[i]);
		r[i].s = s;
		r[i].start = &start;
		assert_int_equal(pthread_create(&th[i], NULL, race_thread, &r[i]), 0);
	}
	for (int i = 0; i < N; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);
	int claimed = 0, done = 0;
	for (int i = 0; i < N; i++) {
		assert_int_equal(r[i].rc, CN_OK);
		if (r[i].state == EXEC_CLAIMED) {
			claimed++;
			continue;
		}
		assert_int_equal(r[i].state, EXEC_DONE);
		done++;
		assert_int_equal(r[i].status, 200);
		assert_int_equal(r[i].len, sizeof race_body - 1);
		assert_memory_equal(r[i].body, race_body, r[i].len);
		free(r[i].body);
	}
	assert_int_equal(claimed, 1);
	assert_int_equal(done, N - 1);
	exec_store_close(s);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_running_after_wait(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 0, 0);
	assert_int_equal(claim(s, "slow", 0, 0, NULL, 0), EXEC_CLAIMED);
	long long t0 = now_ms();
	assert_int_equal(claim(s, "slow", 150, 0, NULL, 0), EXEC_RUNNING);
	long long waited = now_ms() - t0;
	assert_true(waited >= 140);
	assert_true(waited < 5000);
	/* wait_ms 0 answers at once. */
	t0 = now_ms();
	assert_int_equal(claim(s, "slow", 0, 0, NULL, 0), EXEC_RUNNING);
	assert_true(now_ms() - t0 < 1000);
	exec_store_close(s);
}

static void test_stale_takeover(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 0, 60);
	exec_store_set_clock(s, fake_clock);
	fake_now = 1000;
	assert_int_equal(claim(s, "exec_s", 0, 0, NULL, 0), EXEC_CLAIMED);
	fake_now = 1060; /* exactly stale_s old: still held */
	assert_int_equal(claim(s, "exec_s", 0, 0, NULL, 0), EXEC_RUNNING);
	fake_now = 1061;
	assert_int_equal(claim(s, "exec_s", 0, 0, NULL, 0), EXEC_CLAIMED);
	/* The takeover renewed the claim. */
	assert_int_equal(claim(s, "exec_s", 0, 0, NULL, 0), EXEC_RUNNING);
	finish(s, "exec_s", 200, "ok", 2);
	/* The first holder finishing late does not replace the answer. */
	finish(s, "exec_s", 500, "late", 4);
	assert_int_equal(claim(s, "exec_s", 0, 200, "ok", 2), EXEC_DONE);
	/* A done row never goes stale, only expires. */
	fake_now = 1061 + 3600;
	assert_int_equal(claim(s, "exec_s", 0, 200, "ok", 2), EXEC_DONE);
	exec_store_set_clock(s, NULL);
	exec_store_close(s);
}

static void test_ttl_expiry(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 3600, 0);
	struct cn_error err;
	uint64_t removed = 99;
	exec_store_set_clock(s, fake_clock);
	fake_now = 1000;
	assert_int_equal(claim(s, "a", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "a", 200, "A", 1);
	fake_now = 2000;
	assert_int_equal(claim(s, "b", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "b", 200, "B", 1);

	/* Via expire(): "a" is exactly ttl old at 4600, older at 4601. */
	assert_int_equal(exec_store_expire(s, 4600, &removed, &err), CN_OK);
	assert_int_equal(removed, 0);
	assert_int_equal(exec_store_expire(s, 4601, &removed, &err), CN_OK);
	assert_int_equal(removed, 1);
	fake_now = 4601;
	assert_int_equal(claim(s, "b", 0, 200, "B", 1), EXEC_DONE);
	assert_int_equal(claim(s, "a", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "a", 404, "A2", 2);

	/* Via claim: "b" expires at 5601 without expire() being called. */
	fake_now = 5600;
	assert_int_equal(claim(s, "b", 0, 200, "B", 1), EXEC_DONE);
	fake_now = 5601;
	assert_int_equal(claim(s, "b", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "b", 201, "B2", 2);
	assert_int_equal(claim(s, "b", 0, 201, "B2", 2), EXEC_DONE);
	assert_int_equal(claim(s, "a", 0, 404, "A2", 2), EXEC_DONE);

	/* Everything goes eventually, running claims too. */
	assert_int_equal(claim(s, "c", 0, 0, NULL, 0), EXEC_CLAIMED);
	assert_int_equal(exec_store_expire(s, 5601 + 3601, &removed, &err), CN_OK);
	assert_int_equal(removed, 3);
	exec_store_close(s);
}

static void test_default_ttl(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = NULL;
	struct cn_error err;
	assert_int_equal(exec_store_open(f->path, NULL, &s, &err), CN_OK);
	exec_store_set_clock(s, fake_clock);
	fake_now = 1000;
	assert_int_equal(claim(s, "x", 0, 0, NULL, 0), EXEC_CLAIMED);
	fake_now = 1000 + 120; /* the default stale_s */
	assert_int_equal(claim(s, "x", 0, 0, NULL, 0), EXEC_RUNNING);
	finish(s, "x", 200, "X", 1);
	fake_now += EXEC_STORE_TTL_S;
	assert_int_equal(claim(s, "x", 0, 200, "X", 1), EXEC_DONE);
	fake_now += 1;
	assert_int_equal(claim(s, "x", 0, 0, NULL, 0), EXEC_CLAIMED);
	exec_store_close(s);
}

static void test_release(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 0, 0);
	struct cn_error err;
	assert_int_equal(claim(s, "r", 0, 0, NULL, 0), EXEC_CLAIMED);
	assert_int_equal(exec_store_release(s, "r", &err), CN_OK);
	assert_int_equal(claim(s, "r", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "r", 200, "kept", 4);
	/* Release does not drop a stored answer. */
	assert_int_equal(exec_store_release(s, "r", &err), CN_OK);
	assert_int_equal(claim(s, "r", 0, 200, "kept", 4), EXEC_DONE);
	/* Releasing an unknown id is harmless. */
	assert_int_equal(exec_store_release(s, "never", &err), CN_OK);
	exec_store_close(s);
}

static void test_id_validation(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 0, 0);
	char max_id[EXEC_ID_MAX + 1], long_id[EXEC_ID_MAX + 2];
	memset(max_id, 'i', EXEC_ID_MAX);
	max_id[EXEC_ID_MAX] = '\0';
	memset(long_id, 'i', EXEC_ID_MAX + 1);
	long_id[EXEC_ID_MAX + 1] = '\0';
	assert_int_equal(claim(s, max_id, 0, 0, NULL, 0), EXEC_CLAIMED);
	const char *bad[] = {NULL, "", long_id};
	for (size_t i = 0; i < 3; i++) {
		struct cn_error err = {0};
		enum exec_claim st;
		int status;
		char *body;
		size_t len;
		assert_int_equal(exec_store_claim(s, bad[i], 0, &st, &status, &body, &len, &err), CN_EINVAL);
		assert_non_null(strstr(err.message, "execution_id"));
		assert_int_equal(exec_store_finish(s, bad[i], 200, "x", 1, &err), CN_EINVAL);
		assert_int_equal(exec_store_release(s, bad[i], &err), CN_EINVAL);
	}
	struct cn_error err;
	assert_int_equal(exec_store_finish(s, "ok", 200, NULL, 5, &err), CN_EINVAL);
	exec_store_close(s);
}

static void expect_open_error(const char *path, int code, const char *must_contain)
{
	struct exec_store *s = (struct exec_store *)1;
	struct cn_error err = {0};
	assert_int_equal(exec_store_open(path, NULL, &s, &err), code);
	assert_null(s);
	print_message("open(%s): %s\n", path ? path : "NULL", err.message);
	assert_int_equal(err.code, code);
	assert_non_null(strstr(err.message, must_contain));
}

static void test_bad_paths(void **state)
{
	struct fixture *f = *state;
	char p[256];
	expect_open_error("", CN_EINVAL, "path is empty");
	expect_open_error(NULL, CN_EINVAL, "path is empty");

	/* Two missing directory levels: only one is created. */
	snprintf(p, sizeof p, "%s/missing/deeper/store.db", f->dir);
	expect_open_error(p, CN_EIO, p);

	/* The path is a directory. */
	expect_open_error(f->dir, CN_EIO, f->dir);

	/* A file that is not a database. */
	snprintf(p, sizeof p, "%s/random.bin", f->dir);
	FILE *fp = fopen(p, "wb");
	assert_non_null(fp);
	for (int i = 0; i < 8192; i++)
		fputc((i * 7919 + 13) & 0xff, fp);
	fclose(fp);
	expect_open_error(p, CN_EIO, p);
	expect_open_error(p, CN_EIO, "not a SQLite database");

	/* A database with an executions table of another shape. */
	snprintf(p, sizeof p, "%s/other.db", f->dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE executions(x)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	expect_open_error(p, CN_EIO, p);

	/* One missing level is created, owner-only. */
	snprintf(p, sizeof p, "%s/state/store.db", f->dir);
	struct exec_store *s = store_open(p, 0, 0);
	assert_int_equal(claim(s, "e", 0, 0, NULL, 0), EXEC_CLAIMED);
	exec_store_close(s);
	struct stat st;
	snprintf(p, sizeof p, "%s/state", f->dir);
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0077, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_claim_finish_replay, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_claim, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_running_after_wait, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stale_takeover, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ttl_expiry, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_default_ttl, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_release, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_id_validation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
