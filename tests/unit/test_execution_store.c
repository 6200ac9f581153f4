/* test_execution_store.c - claim / finish / replay, restarts, races, expiry,
 * the background writer and its memory bound, one process per file; the
 * audit log's records: queued, written, read back with filters, pruned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
	/* Claims live in memory only: one running at the stop runs again. */
	assert_int_equal(claim(s, "running", 0, 0, NULL, 0), EXEC_CLAIMED);
	exec_store_close(s);

	/* The file is owner-only. */
	struct stat st;
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0077, 0);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

struct race {
	struct exec_store *s;
	pthread_barrier_t *start;
	enum exec_claim state;
	int status;
	char *body;
	size_t len;
	int rc;
	long long returned_ms; /* when claim returned */
	long long finish_ms;   /* the claimer: just before finish */
};

static const char race_body[] = "{\"result\":{\"row_count\":1}}";

static void *race_thread(void *arg)
{
	struct race *r = arg;
	struct cn_error err;
	pthread_barrier_wait(r->start);
	r->rc = exec_store_claim(r->s, "exec_race", 10000, &r->state, &r->status, &r->body, &r->len, &err);
	r->returned_ms = now_ms();
	if (r->rc == CN_OK && r->state == EXEC_CLAIMED) {
		sleep_ms(150);
		r->finish_ms = now_ms();
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
	long long finish_ms = 0;
	for (int i = 0; i < N; i++)
		if (r[i].state == EXEC_CLAIMED)
			finish_ms = r[i].finish_ms;
	assert_true(finish_ms > 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(r[i].rc, CN_OK);
		if (r[i].state == EXEC_CLAIMED) {
			claimed++;
			continue;
		}
		/* Woken by the answer, not by a poll or the 10 s wait. */
		assert_true(r[i].returned_ms >= finish_ms);
		assert_true(r[i].returned_ms - finish_ms < 500);
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


static size_t pending_entries(struct exec_store *s)
{
	size_t n, bytes;
	exec_store_test_pending(s, &n, &bytes);
	return n;
}

/* Wait (up to 10 s) until the writer has written everything queued. */
static void wait_written(struct exec_store *s)
{
	for (int i = 0; i < 1000 && pending_entries(s) > 0; i++)
		sleep_ms(10);
	assert_int_equal(pending_entries(s), 0);
}

static void test_second_open_in_use(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 0, 0);
	struct exec_store *s2 = (struct exec_store *)1;
	struct cn_error err = {0};
	assert_int_equal(exec_store_open(f->path, NULL, &s2, &err), CN_EBUSY);
	assert_null(s2);
	print_message("second open: %s\n", err.message);
	assert_non_null(strstr(err.message, f->path));
	assert_non_null(strstr(err.message, "is in use by another connector process"));
	/* The first one is unharmed. */
	assert_int_equal(claim(s, "e", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "e", 200, "E", 1);
	exec_store_close(s);
	s = store_open(f->path, 0, 0);
	assert_int_equal(claim(s, "e", 0, 200, "E", 1), EXEC_DONE);
	exec_store_close(s);
}

/* Another process holds the file: the open fails with the same message. */
static void test_other_process_in_use(void **state)
{
	struct fixture *f = *state;
	int up[2], down[2];
	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(down), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct exec_store *s = NULL;
		struct cn_error err;
		char c = exec_store_open(f->path, NULL, &s, &err) == CN_OK ? 'o' : 'x';
		if (write(up[1], &c, 1) != 1 || read(down[0], &c, 1) != 1)
			_exit(2);
		exec_store_close(s);
		_exit(0);
	}
	char c = 0;
	assert_int_equal(read(up[0], &c, 1), 1);
	assert_int_equal(c, 'o');
	struct exec_store *s = (struct exec_store *)1;
	struct cn_error err = {0};
	int rc = exec_store_open(f->path, NULL, &s, &err);
	assert_int_equal(write(down[1], "q", 1), 1);
	int wstatus = 0;
	assert_int_equal(waitpid(pid, &wstatus, 0), pid);
	assert_true(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
	assert_int_equal(rc, CN_EBUSY);
	assert_null(s);
	assert_non_null(strstr(err.message, f->path));
	assert_non_null(strstr(err.message, "is in use by another connector process"));
	for (int i = 0; i < 2; i++) {
		close(up[i]);
		close(down[i]);
	}
	/* Once the other process has gone, the file opens. */
	s = store_open(f->path, 0, 0);
	exec_store_close(s);
}

/* The answer replays from memory while unwritten, from SQLite after a restart. */
static void test_replay_memory_then_disk(void **state)
{
	struct fixture *f = *state;
	unsigned char body[400];
	size_t n = binary_body(body, sizeof body - 2);
	struct exec_store *s = store_open(f->path, 0, 0);
	exec_store_test_hold_writer(s, true);
	assert_int_equal(claim(s, "exec_m", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "exec_m", 200, body, n);
	size_t pn, pbytes;
	exec_store_test_pending(s, &pn, &pbytes);
	assert_int_equal(pn, 1);
	assert_int_equal(pbytes, n);
	for (int i = 0; i < 3; i++)
		assert_int_equal(claim(s, "exec_m", 0, 200, body, n), EXEC_DONE);
	assert_int_equal(pending_entries(s), 1);
	/* close() writes what is queued, even with the writer held. */
	exec_store_close(s);
	s = store_open(f->path, 0, 0);
	assert_int_equal(pending_entries(s), 0);
	assert_int_equal(claim(s, "exec_m", 0, 200, body, n), EXEC_DONE);
	/* Written and dropped from memory: replays read SQLite. */
	assert_int_equal(claim(s, "exec_m", 0, 200, body, n), EXEC_DONE);
	exec_store_close(s);
}

struct waiter {
	struct exec_store *s;
	const char *id;
	enum exec_claim state;
	int rc;
	long long returned_ms;
};

static void *waiter_thread(void *arg)
{
	struct waiter *w = arg;
	struct cn_error err;
	int status;
	char *body;
	size_t len;
	w->rc = exec_store_claim(w->s, w->id, 10000, &w->state, &status, &body, &len, &err);
	w->returned_ms = now_ms();
	free(body);
	return NULL;
}

static void test_release_wakes_waiter(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 0, 0);
	struct cn_error err;
	assert_int_equal(claim(s, "exec_w", 0, 0, NULL, 0), EXEC_CLAIMED);
	struct waiter w = {.s = s, .id = "exec_w"};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, waiter_thread, &w), 0);
	sleep_ms(100);
	long long released_ms = now_ms();
	assert_int_equal(exec_store_release(s, "exec_w", &err), CN_OK);
	pthread_join(th, NULL);
	assert_int_equal(w.rc, CN_OK);
	assert_int_equal(w.state, EXEC_CLAIMED);
	assert_true(w.returned_ms >= released_ms);
	assert_true(w.returned_ms - released_ms < 500);
	/* The waiter holds it now. */
	assert_int_equal(claim(s, "exec_w", 0, 0, NULL, 0), EXEC_RUNNING);
	exec_store_close(s);
}

static size_t numbered_body(char *out, size_t cap, int i)
{
	return (size_t)snprintf(out, cap, "{\"result\":{\"n\":%d,\"pad\":\"%0*d\"}}", i, i % 300, 0);
}

static void test_many_finishes_survive_close(void **state)
{
	struct fixture *f = *state;
	enum { N = 10000 };
	char id[32], body[400];
	struct exec_store *s = store_open(f->path, 0, 0);
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof id, "exec_many_%d", i);
		assert_int_equal(claim(s, id, 0, 0, NULL, 0), EXEC_CLAIMED);
		finish(s, id, 200 + i % 3, body, numbered_body(body, sizeof body, i));
		assert_true(pending_entries(s) <= 10000);
	}
	exec_store_close(s);
	s = store_open(f->path, 0, 0);
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof id, "exec_many_%d", i);
		size_t n = numbered_body(body, sizeof body, i);
		assert_int_equal(claim(s, id, 0, 200 + i % 3, body, n), EXEC_DONE);
	}
	exec_store_close(s);
}

struct expirer {
	struct exec_store *s;
	time_t now;
	uint64_t removed;
	int rc;
	atomic_int done;
};

static void *expire_thread(void *arg)
{
	struct expirer *x = arg;
	struct cn_error err;
	x->rc = exec_store_expire(x->s, x->now, &x->removed, &err);
	atomic_store(&x->done, 1);
	return NULL;
}

/* Rows dated `when`, written straight into the file while no store holds it. */
static void fill_rows(const char *path, int rows, time_t when)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	char sql[512];
	snprintf(sql, sizeof sql,
		 "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < %d)"
		 " INSERT INTO executions(id, state, status, body, created_at, updated_at)"
		 " SELECT 'old_' || n, 1, 200, randomblob(CASE WHEN n %% 3 = 0 THEN 6200 ELSE 430 END),"
		 " %lld, %lld FROM g",
		 rows, (long long)when, (long long)when);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void test_expire_does_not_block_claims(void **state)
{
	struct fixture *f = *state;
	enum { ROWS = 20000 };
	exec_store_close(store_open(f->path, 3600, 0)); /* creates the table */
	fill_rows(f->path, ROWS, 1000);
	struct exec_store *s = store_open(f->path, 3600, 0);
	exec_store_set_clock(s, fake_clock);
	fake_now = 1000 + 2 * 3600;
	struct expirer x = {.s = s, .now = fake_now};
	atomic_init(&x.done, 0);
	long long started = now_ms();
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, expire_thread, &x), 0);
	long long worst = 0;
	int during = 0;
	char id[32];
	for (int i = 0; !atomic_load(&x.done); i++) {
		snprintf(id, sizeof id, "exec_new_%d", i);
		long long t0 = now_ms();
		assert_int_equal(claim(s, id, 0, 0, NULL, 0), EXEC_CLAIMED);
		finish(s, id, 200, "ok", 2);
		long long took = now_ms() - t0;
		worst = took > worst ? took : worst;
		during++;
	}
	pthread_join(th, NULL);
	long long expire_ms = now_ms() - started;
	print_message("expire of %d rows: %lld ms, %d claims meanwhile, the slowest %lld ms\n", ROWS,
		      expire_ms, during, worst);
	assert_int_equal(x.rc, CN_OK);
	assert_int_equal(x.removed, ROWS);
	assert_true(during > 0);
	/* Loose bounds (the machine may be busy): one DELETE of every row would
	 * hold the claims for the whole expiry. */
	assert_true(worst < 500);
	assert_true(worst * 2 < expire_ms);
	assert_int_equal(claim(s, "old_1", 0, 0, NULL, 0), EXEC_CLAIMED);
	exec_store_set_clock(s, NULL);
	exec_store_close(s);
}

/* A writer that cannot keep up: finish() writes itself past the limits. */
static void test_memory_bound(void **state)
{
	struct fixture *f = *state;
	enum { N = 1000 };
	char id[32], body[1200];
	struct exec_store *s = store_open(f->path, 0, 0);
	exec_store_test_hold_writer(s, true);
	exec_store_test_set_limits(s, 100, 1u << 20);
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof id, "exec_b_%d", i);
		assert_int_equal(claim(s, id, 0, 0, NULL, 0), EXEC_CLAIMED);
		finish(s, id, 200, body, numbered_body(body, sizeof body, i));
		assert_true(pending_entries(s) <= 100);
	}
	assert_int_equal(pending_entries(s), 100);
	/* By bytes: past 100,000 bytes queued, finish() writes itself. */
	exec_store_test_set_limits(s, 10000, 100 * 1000);
	memset(body, 'b', 1000);
	size_t n, bytes;
	for (int i = 0; i < 150; i++) {
		snprintf(id, sizeof id, "exec_c_%d", i);
		assert_int_equal(claim(s, id, 0, 0, NULL, 0), EXEC_CLAIMED);
		finish(s, id, 200, body, 1000);
		exec_store_test_pending(s, &n, &bytes);
		assert_true(bytes <= 100 * 1000);
	}
	assert_true(n < 100 + 150);
	/* Every answer replays, from memory or from SQLite. */
	char want[1200];
	for (int i = 0; i < N; i++) {
		snprintf(id, sizeof id, "exec_b_%d", i);
		assert_int_equal(claim(s, id, 0, 200, want, numbered_body(want, sizeof want, i)), EXEC_DONE);
	}
	for (int i = 0; i < 150; i++) {
		snprintf(id, sizeof id, "exec_c_%d", i);
		assert_int_equal(claim(s, id, 0, 200, body, 1000), EXEC_DONE);
	}
	exec_store_test_hold_writer(s, false);
	wait_written(s);
	exec_store_close(s);
	s = store_open(f->path, 0, 0);
	for (int i = 0; i < N; i += 37) {
		snprintf(id, sizeof id, "exec_b_%d", i);
		assert_int_equal(claim(s, id, 0, 200, want, numbered_body(want, sizeof want, i)), EXEC_DONE);
	}
	exec_store_close(s);
}

/* The writer fails: the answers stay in memory and are written on a retry;
 * at close, after a few more failures, they are given up (and logged). */
static void test_writer_failure(void **state)
{
	struct fixture *f = *state;
	char body[300];
	memset(body, 'x', sizeof body);
	struct exec_store *s = store_open(f->path, 0, 0);
	exec_store_test_limit_length(s, 100); /* SQLite refuses longer blobs */
	assert_int_equal(claim(s, "exec_f", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "exec_f", 200, body, sizeof body);
	sleep_ms(200);
	assert_int_equal(pending_entries(s), 1);
	assert_int_equal(claim(s, "exec_f", 0, 200, body, sizeof body), EXEC_DONE);
	exec_store_test_limit_length(s, 1000000);
	wait_written(s);
	exec_store_close(s);
	s = store_open(f->path, 0, 0);
	assert_int_equal(claim(s, "exec_f", 0, 200, body, sizeof body), EXEC_DONE);

	/* Still failing at close: lost, so the retry runs again. */
	exec_store_test_limit_length(s, 100);
	assert_int_equal(claim(s, "exec_g", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "exec_g", 200, body, sizeof body);
	exec_store_close(s);
	s = store_open(f->path, 0, 0);
	assert_int_equal(claim(s, "exec_g", 0, 0, NULL, 0), EXEC_CLAIMED);
	exec_store_close(s);
}

/* A late finish() for an answer only on disk keeps the first answer. */
static void test_late_finish_keeps_stored(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 0, 0);
	assert_int_equal(claim(s, "exec_l", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "exec_l", 200, "first", 5);
	exec_store_close(s);
	s = store_open(f->path, 0, 0);
	finish(s, "exec_l", 500, "second", 6);
	assert_int_equal(claim(s, "exec_l", 0, 200, "first", 5), EXEC_DONE);
	/* finish() without a claim stores a new answer. */
	finish(s, "exec_n", 201, "new", 3);
	assert_int_equal(claim(s, "exec_n", 0, 201, "new", 3), EXEC_DONE);
	exec_store_close(s);
	s = store_open(f->path, 0, 0);
	assert_int_equal(claim(s, "exec_l", 0, 200, "first", 5), EXEC_DONE);
	assert_int_equal(claim(s, "exec_n", 0, 201, "new", 3), EXEC_DONE);
	exec_store_close(s);
}

/* An answer that expires before the writer stored it is replaced, and the
 * newer answer is what the file keeps. */
static void test_expired_in_memory(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 3600, 0);
	exec_store_set_clock(s, fake_clock);
	exec_store_test_hold_writer(s, true);
	fake_now = 1000;
	assert_int_equal(claim(s, "exec_x", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "exec_x", 200, "old", 3);
	fake_now = 1000 + 3601;
	assert_int_equal(claim(s, "exec_x", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "exec_x", 201, "new", 3);
	assert_int_equal(claim(s, "exec_x", 0, 201, "new", 3), EXEC_DONE);
	assert_int_equal(pending_entries(s), 2);
	exec_store_close(s);
	s = store_open(f->path, 3600, 0);
	exec_store_set_clock(s, fake_clock);
	assert_int_equal(claim(s, "exec_x", 0, 201, "new", 3), EXEC_DONE);
	exec_store_set_clock(s, NULL);
	exec_store_close(s);
}

/* A file an older version left behind after a crash: shared-memory WAL with
 * unmerged frames, and a running row (claims were stored then). */
static void test_file_of_older_version(void **state)
{
	struct fixture *f = *state;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		sqlite3 *db;
		char sql[600];
		long long now = (long long)time(NULL);
		snprintf(sql, sizeof sql,
			 "PRAGMA journal_mode=WAL;"
			 "CREATE TABLE executions (id TEXT PRIMARY KEY, state INTEGER NOT NULL,"
			 " status INTEGER NOT NULL, body BLOB, created_at INTEGER NOT NULL,"
			 " updated_at INTEGER NOT NULL);"
			 "CREATE INDEX executions_updated_at ON executions(updated_at);"
			 "INSERT INTO executions VALUES ('old_done', 1, 200, 'OLD', %lld, %lld);"
			 "INSERT INTO executions VALUES ('old_running', 0, 0, NULL, %lld, %lld);",
			 now, now, now, now);
		int ok = sqlite3_open(f->path, &db) == SQLITE_OK &&
			 sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK;
		_exit(ok ? 0 : 1); /* no close: the WAL stays */
	}
	int wstatus = 0;
	assert_int_equal(waitpid(pid, &wstatus, 0), pid);
	assert_true(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
	char wal[160];
	snprintf(wal, sizeof wal, "%s-wal", f->path);
	struct stat st;
	assert_int_equal(stat(wal, &st), 0);
	assert_true(st.st_size > 0);

	struct exec_store *s = store_open(f->path, 0, 0);
	assert_int_equal(claim(s, "old_done", 0, 200, "OLD", 3), EXEC_DONE);
	assert_int_equal(claim(s, "old_running", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "old_running", 201, "NEW", 3);
	exec_store_close(s);
	s = store_open(f->path, 0, 0);
	assert_int_equal(claim(s, "old_running", 0, 201, "NEW", 3), EXEC_DONE);
	assert_int_equal(claim(s, "old_done", 0, 200, "OLD", 3), EXEC_DONE);
	exec_store_close(s);
}

/* Schema snapshots: the first is the baseline and stays, the newest `keep`
 * others stay, touch moves checked_at and drift, and all of it survives a
 * restart. */
static void test_schema_snapshots(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 0, 0);
	struct cn_error err = {0};
	struct exec_snapshot snap;
	bool found = true;
	int64_t id = 0;

	assert_int_equal(exec_store_snapshot_get(s, "demo", false, &snap, &found, &err), CN_OK);
	assert_false(found);
	for (int i = 1; i <= 6; i++) {
		char schema[32], diff[32];
		snprintf(schema, sizeof schema, "{\"v\":%d}", i);
		snprintf(diff, sizeof diff, "[%d]", i);
		assert_int_equal(exec_store_snapshot_add(s, "demo", 100 * i, schema, strlen(schema),
							 i == 1 ? NULL : diff, "[]", 3, &id, &err),
				 CN_OK);
	}
	/* another source is apart */
	assert_int_equal(exec_store_snapshot_add(s, "other", 50, "{}", 2, NULL, NULL, 3, NULL, &err), CN_OK);
	assert_int_equal(exec_store_snapshot_touch(s, id, 700, "[{\"kind\":\"x\"}]", &err), CN_OK);
	exec_store_close(s);

	s = store_open(f->path, 0, 0);
	assert_int_equal(exec_store_snapshot_get(s, "demo", false, &snap, &found, &err), CN_OK);
	assert_true(found);
	assert_string_equal(snap.schema, "{\"v\":6}");
	assert_int_equal(snap.schema_len, 7);
	assert_string_equal(snap.diff, "[6]");
	assert_string_equal(snap.drift, "[{\"kind\":\"x\"}]");
	assert_int_equal(snap.taken_at, 600);
	assert_int_equal(snap.checked_at, 700);
	assert_false(snap.baseline);
	exec_snapshot_clear(&snap);

	assert_int_equal(exec_store_snapshot_get(s, "demo", true, &snap, &found, &err), CN_OK);
	assert_true(found && snap.baseline);
	assert_string_equal(snap.schema, "{\"v\":1}");
	assert_null(snap.diff);
	exec_snapshot_clear(&snap);

	struct exec_snapshot *hist;
	size_t n;
	assert_int_equal(exec_store_snapshot_history(s, "demo", 10, &hist, &n, &err), CN_OK);
	assert_int_equal(n, 4); /* the baseline and the newest 3 */
	assert_int_equal(hist[0].taken_at, 600);
	assert_int_equal(hist[2].taken_at, 400);
	assert_true(hist[3].baseline && hist[3].taken_at == 100);
	assert_null(hist[0].schema);
	exec_snapshots_free(hist, n);
	assert_int_equal(exec_store_snapshot_history(s, "demo", 2, &hist, &n, &err), CN_OK);
	assert_int_equal(n, 2);
	exec_snapshots_free(hist, n);
	assert_int_equal(exec_store_snapshot_history(s, "nobody", 5, &hist, &n, &err), CN_OK);
	assert_int_equal(n, 0);
	exec_snapshots_free(hist, n);

	assert_int_equal(exec_store_snapshot_get(s, "other", false, &snap, &found, &err), CN_OK);
	assert_true(found && snap.baseline && snap.drift == NULL);
	exec_snapshot_clear(&snap);
	/* answers and snapshots share the file without getting in each other's way */
	assert_int_equal(claim(s, "after_snapshots", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "after_snapshots", 200, "ok", 2);
	exec_store_close(s);
}

/* ---- the audit log ---- */

struct collected {
	struct audit_record r[64]; /* numbers only: the strings live during the call */
	char text[64][600];
	char statement[64][400];
	size_t n;
	size_t stop_after; /* 0: never stop */
	size_t calls;
};

/* Keep a flat copy of each record: execution_id|assistant_id|...|code. */
static int collect(void *ctx, const struct audit_record *r)
{
	struct collected *c = ctx;
	c->calls++;
	if (c->n < 64) {
		c->r[c->n] = *r;
		snprintf(c->text[c->n], sizeof c->text[0], "%s|%s|%s|%s|%s|%s|%s|%s",
			 r->execution_id ? r->execution_id : "-", r->assistant_id ? r->assistant_id : "-",
			 r->room_id ? r->room_id : "-", r->tool ? r->tool : "-", r->source ? r->source : "-",
			 r->fingerprint ? r->fingerprint : "-", r->statement ? r->statement : "-",
			 r->code ? r->code : "-");
		snprintf(c->statement[c->n], sizeof c->statement[0], "%s", r->statement ? r->statement : "");
		c->r[c->n].execution_id = c->r[c->n].assistant_id = c->r[c->n].room_id = NULL;
		c->r[c->n].tool = c->r[c->n].source = c->r[c->n].fingerprint = NULL;
		c->r[c->n].statement = c->r[c->n].code = NULL;
		c->n++;
	}
	return c->stop_after && c->calls >= c->stop_after;
}

static void audit_add(struct exec_store *s, const struct audit_record *r)
{
	struct cn_error err = {0};
	assert_int_equal(exec_store_audit_add(s, r, &err), CN_OK);
}

static void audit_query(struct exec_store *s, const struct audit_filter *f, struct collected *c)
{
	struct cn_error err = {0};
	c->n = c->calls = 0;
	assert_int_equal(exec_store_audit_query(s, f, collect, c, &err), CN_OK);
}

static size_t audit_pending(struct exec_store *s)
{
	size_t n;
	exec_store_test_audit_pending(s, &n);
	return n;
}

static const struct audit_record audit_samples[] = {
	{.at_ms = 5000, .execution_id = "exec_1", .assistant_id = "asst_a", .room_id = "room_a",
	 .tool = "run_query", .source = "demo", .fingerprint = "0123456789abcdef",
	 .statement = "SELECT 1", .rows = 1, .bytes = 90, .status = 200, .duration_us = 1500},
	{.at_ms = 5000, .execution_id = "exec_2", .tool = "run_query", .source = "demo",
	 .fingerprint = "fedcba9876543210", .rows = -1, .bytes = 200, .status = 400,
	 .code = "query_rejected", .duration_us = 80},
	{.at_ms = 6000, .execution_id = "exec_1", .assistant_id = "asst_a", .room_id = "room_a",
	 .tool = "run_query", .source = "demo", .rows = -1, .bytes = 90, .status = 200,
	 .code = "replayed", .duration_us = 20},
	{.at_ms = 7000, .tool = "list_data_sources", .rows = -1, .bytes = 500, .status = 200,
	 .duration_us = 40},
	{.at_ms = 8000, .execution_id = "exec_5", .tool = "describe_schema", .source = "other",
	 .rows = -1, .bytes = 100, .status = 503, .code = "data_source_disconnected", .duration_us = 9},
};
#define NSAMPLES (sizeof audit_samples / sizeof audit_samples[0])

/* Every field comes back as it went in, after a restart too; the filters
 * select by source, status, code ("ok": no code) and cursor. */
static void test_audit_add_query(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 0, 0);
	for (size_t i = 0; i < NSAMPLES; i++)
		audit_add(s, &audit_samples[i]);
	exec_store_close(s); /* what is queued is written at close */
	s = store_open(f->path, 0, 0);
	struct collected c = {0};
	struct audit_filter all = {0};
	audit_query(s, &all, &c);
	assert_int_equal(c.n, NSAMPLES);
	for (size_t i = 0; i < NSAMPLES; i++) {
		const struct audit_record *w = &audit_samples[i], *g = &c.r[i];
		assert_int_equal(g->id, (int64_t)i + 1);
		assert_int_equal(g->at_ms, w->at_ms);
		assert_int_equal(g->rows, w->rows);
		assert_int_equal(g->bytes, w->bytes);
		assert_int_equal(g->status, w->status);
		assert_int_equal(g->duration_us, w->duration_us);
	}
	assert_string_equal(c.text[0], "exec_1|asst_a|room_a|run_query|demo|0123456789abcdef|SELECT 1|-");
	assert_string_equal(c.text[1], "exec_2|-|-|run_query|demo|fedcba9876543210|-|query_rejected");
	assert_string_equal(c.text[3], "-|-|-|list_data_sources|-|-|-|-");

	struct audit_filter by = {0};
	strcpy(by.source, "demo");
	audit_query(s, &by, &c);
	assert_int_equal(c.n, 3);
	by = (struct audit_filter){.status = 200};
	audit_query(s, &by, &c);
	assert_int_equal(c.n, 3);
	by = (struct audit_filter){0};
	strcpy(by.code, "ok");
	audit_query(s, &by, &c);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.r[0].id, 1);
	assert_int_equal(c.r[1].id, 4);
	strcpy(by.code, "replayed");
	audit_query(s, &by, &c);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.r[0].at_ms, 6000);
	/* --since 6000 is the cursor (6000, 0); a cursor inside a millisecond goes by id */
	by = (struct audit_filter){.after_ms = 6000};
	audit_query(s, &by, &c);
	assert_int_equal(c.n, 3);
	by = (struct audit_filter){.after_ms = 5000, .after_id = 1};
	audit_query(s, &by, &c);
	assert_int_equal(c.n, 4);
	assert_int_equal(c.r[0].id, 2);
	/* the callback stops the reading */
	c.stop_after = 2;
	audit_query(s, &all, &c);
	assert_int_equal(c.calls, 2);
	exec_store_close(s);
}

/* Records are queued, not written by add(); past the queue's limit add()
 * writes itself; a query sees what is queued (it waits for the writer). */
static void test_audit_queue(void **state)
{
	struct fixture *f = *state;
	struct exec_store *s = store_open(f->path, 0, 0);
	exec_store_test_hold_writer(s, true);
	exec_store_test_set_limits(s, 3, 1u << 20);
	assert_int_equal(claim(s, "exec_q", 0, 0, NULL, 0), EXEC_CLAIMED);
	finish(s, "exec_q", 200, "{}", 2);
	for (size_t i = 0; i < 3; i++)
		audit_add(s, &audit_samples[i]);
	assert_int_equal(audit_pending(s), 3);
	audit_add(s, &audit_samples[3]); /* full: written now */
	assert_int_equal(audit_pending(s), 3);
	/* by bytes too: a statement bigger than the room left */
	exec_store_test_set_limits(s, 100, 10);
	struct audit_record big = audit_samples[0];
	big.statement = "SELECT 'this statement is longer than ten bytes'";
	audit_add(s, &big);
	assert_int_equal(audit_pending(s), 3);
	exec_store_test_hold_writer(s, false);
	struct collected c = {0};
	struct audit_filter all = {0};
	audit_query(s, &all, &c);
	assert_int_equal(c.n, 5);
	assert_int_equal(audit_pending(s), 0);
	/* the two written at once came first (ids 1 and 2; the list is in time order) */
	for (size_t i = 0; i < c.n; i++) {
		if (c.r[i].id == 1)
			assert_string_equal(c.text[i], "-|-|-|list_data_sources|-|-|-|-");
		if (c.r[i].id == 2)
			assert_string_equal(c.statement[i], big.statement);
	}
	assert_int_equal(claim(s, "exec_q", 0, 200, "{}", 2), EXEC_DONE);
	exec_store_close(s);
}

/* The writer cannot write (a statement over SQLite's length limit): the
 * records stay queued and are written once it can; at close they are
 * given up after a few tries. */
static void test_audit_writer_failure(void **state)
{
	struct fixture *f = *state;
	char text[300];
	memset(text, 's', sizeof text - 1);
	text[sizeof text - 1] = '\0';
	struct audit_record r = audit_samples[0];
	r.statement = text;
	struct exec_store *s = store_open(f->path, 0, 0);
	exec_store_test_limit_length(s, 100);
	audit_add(s, &r);
	sleep_ms(200);
	assert_int_equal(audit_pending(s), 1);
	exec_store_test_limit_length(s, 1000000);
	struct collected c = {0};
	struct audit_filter all = {0};
	for (int i = 0; i < 300 && audit_pending(s); i++)
		sleep_ms(10);
	audit_query(s, &all, &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.statement[0], text);
	exec_store_test_limit_length(s, 100);
	audit_add(s, &r);
	exec_store_close(s);
	s = store_open(f->path, 0, 0);
	audit_query(s, &all, &c);
	assert_int_equal(c.n, 1);
	exec_store_close(s);
}

/* Prune deletes what arrived before the cutoff, batch after batch, and
 * nothing else. */
static void test_audit_prune(void **state)
{
	struct fixture *f = *state;
	enum { OLD = 1234, NEW = 7 };
	struct exec_store *s = store_open(f->path, 0, 0);
	struct audit_record r = audit_samples[0];
	for (int i = 0; i < OLD; i++) {
		r.at_ms = 1000 + i;
		audit_add(s, &r);
	}
	for (int i = 0; i < NEW; i++) {
		r.at_ms = 100000 + i;
		audit_add(s, &r);
	}
	struct collected c = {0};
	struct audit_filter all = {0};
	audit_query(s, &all, &c); /* written */
	uint64_t removed = 99;
	struct cn_error err = {0};
	assert_int_equal(exec_store_audit_prune(s, 1000, &removed, &err), CN_OK);
	assert_int_equal(removed, 0);
	assert_int_equal(exec_store_audit_prune(s, 1000 + 600, &removed, &err), CN_OK);
	assert_int_equal(removed, 600);
	assert_int_equal(exec_store_audit_prune(s, 100000, &removed, &err), CN_OK);
	assert_int_equal(removed, OLD - 600);
	audit_query(s, &all, &c);
	assert_int_equal(c.n, NEW);
	assert_int_equal(c.r[0].at_ms, 100000);
	exec_store_close(s);
}

/* Reading a big log holds the connection a chunk at a time, and a filter
 * that matches few rows still finds them all. */
static void test_audit_query_chunks(void **state)
{
	struct fixture *f = *state;
	enum { N = 2000 };
	struct exec_store *s = store_open(f->path, 0, 0);
	struct audit_record r = audit_samples[1];
	for (int i = 0; i < N; i++) {
		r.at_ms = 1000 + i / 10; /* ten to a millisecond */
		r.source = i % 97 == 0 ? "rare" : "demo";
		audit_add(s, &r);
	}
	struct collected c = {0};
	struct audit_filter rare = {0};
	strcpy(rare.source, "rare");
	audit_query(s, &rare, &c);
	assert_int_equal(c.n, (N + 96) / 97);
	for (size_t i = 0; i < c.n; i++)
		assert_int_equal(c.r[i].id, (int64_t)(i * 97 + 1));
	/* a cursor in the middle of a millisecond's rows */
	struct audit_filter from = {.after_ms = 1100, .after_id = 1005};
	c.stop_after = 1;
	audit_query(s, &from, &c);
	assert_int_equal(c.r[0].id, 1006);
	exec_store_close(s);
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
	    cmocka_unit_test_setup_teardown(test_second_open_in_use, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_other_process_in_use, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_replay_memory_then_disk, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_release_wakes_waiter, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_many_finishes_survive_close, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expire_does_not_block_claims, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_memory_bound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_writer_failure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_late_finish_keeps_stored, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expired_in_memory, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_file_of_older_version, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_schema_snapshots, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_audit_add_query, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_audit_queue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_audit_writer_failure, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_audit_prune, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_audit_query_chunks, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
