/*
 * my_loop.c - the MySQL/MariaDB baseline of bench/mysql.sh, and what the
 * driver's way of sending a query costs.
 *
 * loop mode: CLIENTS threads, each with its own connection and the query
 * prepared once, execute it with a random integer parameter and fetch every
 * row, for SECONDS: the fastest a plain C client gets the same answers.
 * Prints "myloop clients=.. requests=.. rps=.. p50_us=.. p99_us=.. errors=..".
 *
 * variants mode: one connection runs the query N times per variant, and for
 * each the tool prints the wall time, its own CPU and the server's CPU
 * (/proc/SERVER_PID/stat: the whole mariadbd process, so run it on a quiet
 * server) per query. Variants:
 *   bare      the prepared statement executed again (what loop mode does)
 *   direct    mariadb_stmt_execute_direct: prepare and execute in one round trip
 *   driver    execute_direct of SET STATEMENT max_statement_time=..,
 *             sql_select_limit=.., tx_read_only=1 FOR <query>: what the driver sends
 *   txn       START TRANSACTION READ ONLY; execute_direct; ROLLBACK
 *   reset     driver, then COM_RESET_CONNECTION and the session settings again:
 *             what the driver adds after a query that called a stored function
 *
 * usage: my_loop loop HOST PORT USER PASSWORD DB QUERY PARAM_HI CLIENTS SECONDS
 *        my_loop variants HOST PORT USER PASSWORD DB QUERY PARAM_HI N SERVER_PID
 * The password may be given as "env:VAR". Exit 1 on any error.
 */
#include <mysql.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_COLS 32
#define BUF 512
#define MAX_SAMPLES 4000000

static const char *host, *user, *password, *db, *query;
static unsigned port;
static long param_hi;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static MYSQL *connect_db(void)
{
	MYSQL *m = mysql_init(NULL);
	unsigned int zero = 0;
	mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_optionsv(m, MYSQL_OPT_LOCAL_INFILE, &zero);
	if (!mysql_real_connect(m, host, user, password, db, port, NULL, 0)) {
		fprintf(stderr, "my_loop: connect: %s\n", mysql_error(m));
		exit(1);
	}
	return m;
}

/* Result buffers every column is read into, as text. */
struct rowbuf {
	MYSQL_BIND b[MAX_COLS];
	char data[MAX_COLS][BUF];
	unsigned long len[MAX_COLS];
	my_bool null[MAX_COLS];
};

static int fetch_all(MYSQL_STMT *st, struct rowbuf *rb)
{
	unsigned n = mysql_stmt_field_count(st);
	if (n > MAX_COLS)
		return -1;
	memset(rb->b, 0, sizeof rb->b);
	for (unsigned i = 0; i < n; i++) {
		rb->b[i].buffer_type = MYSQL_TYPE_STRING;
		rb->b[i].buffer = rb->data[i];
		rb->b[i].buffer_length = BUF;
		rb->b[i].length = &rb->len[i];
		rb->b[i].is_null = &rb->null[i];
	}
	if (n && mysql_stmt_bind_result(st, rb->b))
		return -1;
	int rows = 0, f;
	while (n && ((f = mysql_stmt_fetch(st)) == 0 || f == MYSQL_DATA_TRUNCATED))
		rows++;
	return n && f == 1 ? -1 : rows;
}

/* ---- loop mode ---- */

struct worker {
	pthread_t t;
	unsigned seed;
	double until;
	uint32_t *lat; /* microseconds */
	size_t n, cap;
	long errors;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	MYSQL *m = connect_db();
	MYSQL_STMT *st = mysql_stmt_init(m);
	if (mysql_stmt_prepare(st, query, strlen(query))) {
		fprintf(stderr, "my_loop: prepare: %s\n", mysql_stmt_error(st));
		exit(1);
	}
	long long v = 0;
	MYSQL_BIND pb;
	memset(&pb, 0, sizeof pb);
	pb.buffer_type = MYSQL_TYPE_LONGLONG;
	pb.buffer = &v;
	mysql_stmt_bind_param(st, &pb);
	struct rowbuf *rb = malloc(sizeof *rb);
	while (now_s() < w->until) {
		v = 1 + (long long)(rand_r(&w->seed) % param_hi);
		double t0 = now_s();
		int rows = mysql_stmt_execute(st) ? -1 : fetch_all(st, rb);
		double t1 = now_s();
		if (rows < 0) {
			w->errors++;
			continue;
		}
		if (w->n < w->cap)
			w->lat[w->n] = (uint32_t)((t1 - t0) * 1e6);
		w->n++;
	}
	free(rb);
	mysql_stmt_close(st);
	mysql_close(m);
	mysql_thread_end();
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int loop_mode(int clients, double seconds)
{
	struct worker *w = calloc((size_t)clients, sizeof *w);
	double start = now_s();
	for (int i = 0; i < clients; i++) {
		w[i].seed = (unsigned)(i * 7919 + 17);
		w[i].until = start + seconds;
		w[i].cap = MAX_SAMPLES / (size_t)clients;
		w[i].lat = malloc(w[i].cap * sizeof *w[i].lat);
		pthread_create(&w[i].t, NULL, worker_main, &w[i]);
	}
	size_t total = 0, kept = 0;
	long errors = 0;
	for (int i = 0; i < clients; i++) {
		pthread_join(w[i].t, NULL);
		total += w[i].n;
		kept += w[i].n < w[i].cap ? w[i].n : w[i].cap;
		errors += w[i].errors;
	}
	double elapsed = now_s() - start;
	uint32_t *all = malloc((kept ? kept : 1) * sizeof *all);
	size_t k = 0;
	for (int i = 0; i < clients; i++) {
		size_t n = w[i].n < w[i].cap ? w[i].n : w[i].cap;
		memcpy(all + k, w[i].lat, n * sizeof *all);
		k += n;
		free(w[i].lat);
	}
	qsort(all, kept, sizeof *all, cmp_u32);
	printf("myloop clients=%d requests=%zu rps=%.1f p50_us=%u p99_us=%u errors=%ld\n", clients,
	       total, (double)total / elapsed, kept ? all[kept / 2] : 0,
	       kept ? all[(size_t)((double)kept * 0.99)] : 0, errors);
	free(all);
	free(w);
	return errors ? 1 : 0;
}

/* ---- variants mode ---- */

static double self_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double server_cpu_s(long pid)
{
	char path[64], line[2048];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(line, sizeof line, f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	const char *p = strrchr(line, ')');
	unsigned long ut = 0, st = 0;
	/* fields after the command: state ppid ... utime is the 12th, stime the 13th */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static const char PINS[] =
	"SET SESSION sql_mode='STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION', "
	"time_zone='+00:00', tx_read_only=1, autocommit=1, max_statement_time=10.000, "
	"sql_select_limit=1000000, lc_time_names='en_US', session_track_state_change=0, "
	"session_track_system_variables='sql_mode,character_set_client,character_set_connection,"
	"character_set_results,time_zone,autocommit,lc_time_names'";

static bool run_direct(MYSQL *m, const char *sql, long long v, struct rowbuf *rb)
{
	MYSQL_STMT *st = mysql_stmt_init(m);
	unsigned int count = 1;
	MYSQL_BIND pb;
	memset(&pb, 0, sizeof pb);
	pb.buffer_type = MYSQL_TYPE_LONGLONG;
	pb.buffer = &v;
	bool ok = !mysql_stmt_attr_set(st, STMT_ATTR_PREBIND_PARAMS, &count) &&
		  !mysql_stmt_bind_param(st, &pb) && !mariadb_stmt_execute_direct(st, sql, strlen(sql)) &&
		  fetch_all(st, rb) >= 0;
	if (!ok)
		fprintf(stderr, "my_loop: %s\n", mysql_stmt_error(st));
	mysql_stmt_close(st);
	return ok;
}

static int variants_mode(long n, long server_pid)
{
	static const char *const names[] = {"bare", "direct", "driver", "txn", "reset"};
	MYSQL *m = connect_db();
	if (mysql_query(m, PINS)) {
		fprintf(stderr, "my_loop: %s\n", mysql_error(m));
		return 1;
	}
	char driver_sql[4096];
	snprintf(driver_sql, sizeof driver_sql, "SET STATEMENT max_statement_time=10.000, "
		 "sql_select_limit=1001, tx_read_only=1 FOR %s", query);
	MYSQL_STMT *prepared = mysql_stmt_init(m);
	if (mysql_stmt_prepare(prepared, query, strlen(query))) {
		fprintf(stderr, "my_loop: prepare: %s\n", mysql_stmt_error(prepared));
		return 1;
	}
	long long v = 1;
	MYSQL_BIND pb;
	memset(&pb, 0, sizeof pb);
	pb.buffer_type = MYSQL_TYPE_LONGLONG;
	pb.buffer = &v;
	mysql_stmt_bind_param(prepared, &pb);
	struct rowbuf *rb = malloc(sizeof *rb);
	unsigned seed = 42;
	for (int round = 1; round <= 2; round++) {
		for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
			double w0 = now_s(), c0 = self_cpu_s(), s0 = server_cpu_s(server_pid);
			for (long i = 0; i < n; i++) {
				v = 1 + (long long)(rand_r(&seed) % param_hi);
				bool ok = true;
				switch (k) {
				case 0:
					ok = !mysql_stmt_execute(prepared) && fetch_all(prepared, rb) >= 0;
					break;
				case 1:
					ok = run_direct(m, query, v, rb);
					break;
				case 2:
					ok = run_direct(m, driver_sql, v, rb);
					break;
				case 3:
					ok = !mysql_query(m, "START TRANSACTION READ ONLY") &&
					     run_direct(m, query, v, rb) && !mysql_query(m, "ROLLBACK");
					break;
				default:
					ok = run_direct(m, driver_sql, v, rb) && !mysql_reset_connection(m) &&
					     !mysql_query(m, PINS);
					break;
				}
				if (!ok) {
					fprintf(stderr, "my_loop: variant %s failed: %s\n", names[k], mysql_error(m));
					return 1;
				}
			}
			if (k == 4) { /* the reset dropped the prepared statement */
				mysql_stmt_close(prepared);
				prepared = mysql_stmt_init(m);
				mysql_stmt_prepare(prepared, query, strlen(query));
				mysql_stmt_bind_param(prepared, &pb);
			}
			double w1 = now_s(), c1 = self_cpu_s(), s1 = server_cpu_s(server_pid);
			char srv[32] = "-";
			if (s0 >= 0 && s1 >= 0)
				snprintf(srv, sizeof srv, "%.1f", (s1 - s0) * 1e6 / (double)n);
			printf("variant=%s round=%d n=%ld wall_us=%.1f client_cpu_us=%.1f server_cpu_us=%s\n",
			       names[k], round, n, (w1 - w0) * 1e6 / (double)n, (c1 - c0) * 1e6 / (double)n,
			       srv);
		}
	}
	free(rb);
	mysql_stmt_close(prepared);
	mysql_close(m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 11 || (strcmp(argv[1], "loop") && strcmp(argv[1], "variants"))) {
		fprintf(stderr, "usage: my_loop loop HOST PORT USER PASSWORD DB QUERY PARAM_HI CLIENTS SECONDS\n"
				"       my_loop variants HOST PORT USER PASSWORD DB QUERY PARAM_HI N SERVER_PID\n");
		return 1;
	}
	host = argv[2];
	port = (unsigned)atoi(argv[3]);
	user = argv[4];
	password = argv[5];
	if (!strncmp(password, "env:", 4))
		password = getenv(password + 4);
	db = argv[6];
	query = argv[7];
	param_hi = atol(argv[8]);
	if (param_hi < 1 || !password) {
		fprintf(stderr, "my_loop: bad PARAM_HI or password\n");
		return 1;
	}
	mysql_library_init(0, NULL, NULL);
	int rc = !strcmp(argv[1], "loop") ? loop_mode(atoi(argv[9]), atof(argv[10]))
					  : variants_mode(atol(argv[9]), atol(argv[10]));
	mysql_library_end();
	return rc;
}
