/*
 * mongo_loop.c - the baseline of bench/mongodb.sh: the same find the
 * connector runs, called directly through libmongoc in a closed loop, with
 * the same client count. Each thread pops a client from one
 * mongoc_client_pool_t, runs find {group_id: <random>} on the collection and
 * reads every document, as long as the run lasts; then the latencies of the
 * measured window are sorted for percentiles.
 *
 * usage: mongo_loop URI COLLECTION GROUPS CLIENTS DURATION_S WARMUP_S
 * Output: "mongo_loop clients=N rps=... requests=... docs_per_req=... p50_us=... p99_us=...
 *          max_us=... errors=... cpu_us_per_req=..." (its own CPU, user + system).
 * Build: bench/build.sh (with libmongoc-dev installed).
 */
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

struct thread_state {
	pthread_t thread;
	unsigned seed;
	int64_t *lat;
	size_t n, cap;
	long docs, errors;
};

static mongoc_client_pool_t *pool;
static const char *db_name, *coll_name;
static long groups;
static atomic_int phase; /* 0 warmup, 1 measured, 2 stop */

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *run(void *arg)
{
	struct thread_state *t = arg;
	while (atomic_load(&phase) < 2) {
		int measured = atomic_load(&phase) == 1;
		int64_t t0 = now_us();
		mongoc_client_t *c = mongoc_client_pool_pop(pool);
		mongoc_collection_t *coll = mongoc_client_get_collection(c, db_name, coll_name);
		bson_t *filter = BCON_NEW("group_id", BCON_INT32((int32_t)(rand_r(&t->seed) % groups + 1)));
		mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
		const bson_t *doc;
		long n = 0;
		while (mongoc_cursor_next(cur, &doc))
			n++;
		bson_error_t e;
		int failed = mongoc_cursor_error(cur, &e);
		mongoc_cursor_destroy(cur);
		bson_destroy(filter);
		mongoc_collection_destroy(coll);
		mongoc_client_pool_push(pool, c);
		int64_t us = now_us() - t0;
		if (!measured)
			continue;
		if (failed) {
			t->errors++;
			continue;
		}
		if (t->n == t->cap) {
			t->cap = t->cap ? t->cap * 2 : 4096;
			t->lat = realloc(t->lat, t->cap * sizeof *t->lat);
			if (!t->lat)
				abort();
		}
		t->lat[t->n++] = us;
		t->docs += n;
	}
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: mongo_loop URI COLLECTION GROUPS CLIENTS DURATION_S WARMUP_S\n");
		return 2;
	}
	mongoc_init();
	bson_error_t e;
	mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &e);
	if (!uri) {
		fprintf(stderr, "mongo_loop: %s\n", e.message);
		return 1;
	}
	db_name = mongoc_uri_get_database(uri);
	coll_name = argv[2];
	groups = strtol(argv[3], NULL, 10);
	int clients = atoi(argv[4]);
	double duration = atof(argv[5]), warmup = atof(argv[6]);
	if (!db_name || groups < 1 || clients < 1 || duration <= 0) {
		fprintf(stderr, "mongo_loop: bad arguments\n");
		return 2;
	}
	pool = mongoc_client_pool_new(uri);
	mongoc_client_pool_max_size(pool, (uint32_t)clients);
	struct thread_state *ts = calloc((size_t)clients, sizeof *ts);
	for (int i = 0; i < clients; i++) {
		ts[i].seed = (unsigned)(i * 7919 + 17);
		pthread_create(&ts[i].thread, NULL, run, &ts[i]);
	}
	struct timespec w = {(time_t)warmup, (long)((warmup - (time_t)warmup) * 1e9)};
	nanosleep(&w, NULL);
	double c0 = cpu_s();
	int64_t t0 = now_us();
	atomic_store(&phase, 1);
	struct timespec d = {(time_t)duration, (long)((duration - (time_t)duration) * 1e9)};
	nanosleep(&d, NULL);
	atomic_store(&phase, 2);
	int64_t window = now_us() - t0;
	double c1 = cpu_s();
	for (int i = 0; i < clients; i++)
		pthread_join(ts[i].thread, NULL);
	size_t total = 0;
	long docs = 0, errors = 0;
	for (int i = 0; i < clients; i++) {
		total += ts[i].n;
		docs += ts[i].docs;
		errors += ts[i].errors;
	}
	int64_t *all = malloc((total ? total : 1) * sizeof *all);
	size_t k = 0;
	for (int i = 0; i < clients; i++) {
		memcpy(all + k, ts[i].lat, ts[i].n * sizeof *all);
		k += ts[i].n;
		free(ts[i].lat);
	}
	qsort(all, total, sizeof *all, cmp);
	int64_t p50 = total ? all[(size_t)(0.50 * (double)(total - 1) + 0.5)] : 0;
	int64_t p99 = total ? all[(size_t)(0.99 * (double)(total - 1) + 0.5)] : 0;
	printf("mongo_loop clients=%d rps=%.1f requests=%zu docs_per_req=%.1f p50_us=%lld p99_us=%lld "
	       "max_us=%lld errors=%ld cpu_us_per_req=%.1f\n",
	       clients, total * 1e6 / (double)window, total, total ? (double)docs / (double)total : 0,
	       (long long)p50, (long long)p99, (long long)(total ? all[total - 1] : 0), errors,
	       total ? (c1 - c0) * 1e6 / (double)total : 0);
	free(all);
	free(ts);
	mongoc_client_pool_destroy(pool);
	mongoc_uri_destroy(uri);
	mongoc_cleanup();
	return 0;
}
