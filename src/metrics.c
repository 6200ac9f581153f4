/*
 * metrics.c - see metrics.h.
 */
#include "metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "tls.h"

#define PREFIX "interactor_connector_"
#define MAX_LABELS 4
#define HASH_BUCKETS 512

enum kind { COUNTER, HISTOGRAM };

struct family {
	const char *name; /* without PREFIX */
	const char *help;
	enum kind kind;
	const char *labels[MAX_LABELS]; /* names, NULL-ended */
	const double *bounds;            /* histogram bucket upper bounds */
	size_t nbounds;
};

/* Seconds, from a cached answer to the platform's 30 s timeout. */
static const double latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
					0.25,   0.5,   1,      2.5,   5,    10,    30};
static const double refresh_bounds[] = {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300};
#define NB(a) (sizeof(a) / sizeof(a)[0])

enum family_id {
	F_CALLS,
	F_CALL_SECONDS,
	F_CALL_BYTES,
	F_REPLAYS,
	F_QUERY_SECONDS,
	F_ROWS,
	F_REJECTIONS,
	F_STORE_WRITE_SECONDS,
	F_REFRESHES,
	F_REFRESH_SECONDS,
	F_DENIED,
	F_RELOADS,
	F_AUDIT_WRITTEN,
	F_AUDIT_DROPPED,
	NFAMILIES
};

static const struct family families[NFAMILIES] = {
	[F_CALLS] = {"tool_calls_total", "Tool callbacks answered, by tool, source, HTTP status and error code.",
		     COUNTER, {"tool", "source", "status", "code"}, NULL, 0},
	[F_CALL_SECONDS] = {"tool_call_duration_seconds",
			    "Time to answer a tool callback, from its arrival to its answer.", HISTOGRAM,
			    {"tool"}, latency_bounds, NB(latency_bounds)},
	[F_CALL_BYTES] = {"tool_response_bytes_total", "Bytes of tool callback answers.", COUNTER,
			  {"tool", "source"}, NULL, 0},
	[F_REPLAYS] = {"execution_replays_total",
		       "Retried execution_ids answered from the execution store, without running again.",
		       COUNTER, {NULL}, NULL, 0},
	[F_QUERY_SECONDS] = {"database_duration_seconds",
			     "Time a driver spent running a query (run_query), per source.", HISTOGRAM,
			     {"source"}, latency_bounds, NB(latency_bounds)},
	[F_ROWS] = {"rows_returned_total", "Rows returned by run_query, per source.", COUNTER, {"source"},
		    NULL, 0},
	[F_REJECTIONS] = {"guard_rejections_total",
			  "Queries refused before or while running, per source and kind of rule.", COUNTER,
			  {"source", "reason"}, NULL, 0},
	[F_STORE_WRITE_SECONDS] = {"execution_store_write_duration_seconds",
				   "Time to commit a batch of answers to the execution store.", HISTOGRAM,
				   {NULL}, latency_bounds, NB(latency_bounds)},
	[F_REFRESHES] = {"schema_refreshes_total", "Schema refreshes, per source and result.", COUNTER,
			 {"source", "result"}, NULL, 0},
	[F_REFRESH_SECONDS] = {"schema_refresh_duration_seconds", "Time a schema refresh took, per source.",
			       HISTOGRAM, {"source"}, refresh_bounds, NB(refresh_bounds)},
	[F_DENIED] = {"http_connections_denied_total",
		      "Connections closed unread: the client is outside server.allow_from.", COUNTER,
		      {NULL}, NULL, 0},
	[F_RELOADS] = {"config_reloads_total",
		       "Configuration reloads (SIGHUP, `reload`), applied (ok) or refused.", COUNTER,
		       {"result"}, NULL, 0},
	[F_AUDIT_WRITTEN] = {"audit_records_written_total", "Tool calls written to the audit log.", COUNTER,
			     {NULL}, NULL, 0},
	[F_AUDIT_DROPPED] = {"audit_records_dropped_total",
			     "Tool calls the audit log lost: the state file could not be written.", COUNTER,
			     {NULL}, NULL, 0},
};

struct series {
	struct series *hnext; /* hash chain */
	struct series *fnext; /* the family's series, in creation order */
	uint32_t hash;
	enum family_id family;
	char *label[MAX_LABELS];
	uint64_t count; /* a counter's value; a histogram's observations */
	double sum;     /* a histogram's sum of observations */
	uint64_t bucket[]; /* per bucket, not cumulative */
};

static struct {
	pthread_mutex_t mu; /* guards everything below but the atomics */
	atomic_bool on;
	atomic_int inflight;
	atomic_int async;
	struct series *hash[HASH_BUCKETS];
	struct series *first[NFAMILIES];
	struct series *last[NFAMILIES];
	size_t nseries;
	uint64_t dropped;
	time_t started;
	time_t reloaded; /* the last reload applied; 0: none since the start */
} reg = {.mu = PTHREAD_MUTEX_INITIALIZER};

static const char *const reject_names[] = {
#define CN_REJECT_NAME(name, value, label) [value] = label,
	CN_REJECT_TABLE(CN_REJECT_NAME)
#undef CN_REJECT_NAME
};

void metrics_init(void)
{
	pthread_mutex_lock(&reg.mu);
	reg.started = time(NULL);
	pthread_mutex_unlock(&reg.mu);
	atomic_store(&reg.on, true);
}

void metrics_shutdown(void)
{
	atomic_store(&reg.on, false);
	pthread_mutex_lock(&reg.mu);
	for (int f = 0; f < NFAMILIES; f++) {
		struct series *s = reg.first[f];
		while (s) {
			struct series *next = s->fnext;
			for (int i = 0; i < MAX_LABELS; i++)
				free(s->label[i]);
			free(s);
			s = next;
		}
		reg.first[f] = reg.last[f] = NULL;
	}
	memset(reg.hash, 0, sizeof reg.hash);
	reg.nseries = 0;
	reg.dropped = 0;
	pthread_mutex_unlock(&reg.mu);
}

static uint32_t fnv1a(uint32_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return (h ^ 0xFFu) * 16777619u; /* a separator no label holds */
}

/* The series of family f with these label values (NULL reads ""), made
 * when new; NULL when the registry is full or memory is. mu held. */
static struct series *series_get(enum family_id f, const char *const *values)
{
	const struct family *fam = &families[f];
	uint32_t h = 2166136261u ^ (uint32_t)f;
	for (int i = 0; i < MAX_LABELS && fam->labels[i]; i++)
		h = fnv1a(h, values[i] ? values[i] : "");
	for (struct series *s = reg.hash[h % HASH_BUCKETS]; s; s = s->hnext) {
		if (s->hash != h || s->family != f)
			continue;
		int i = 0;
		while (i < MAX_LABELS && fam->labels[i] &&
		       strcmp(s->label[i], values[i] ? values[i] : "") == 0)
			i++;
		if (i == MAX_LABELS || !fam->labels[i])
			return s;
	}
	if (reg.nseries >= METRICS_MAX_SERIES) {
		reg.dropped++;
		return NULL;
	}
	struct series *s = calloc(1, sizeof *s + fam->nbounds * sizeof s->bucket[0]);
	if (!s)
		return NULL;
	s->hash = h;
	s->family = f;
	for (int i = 0; i < MAX_LABELS && fam->labels[i]; i++) {
		if (!(s->label[i] = strdup(values[i] ? values[i] : ""))) {
			for (int j = 0; j < i; j++)
				free(s->label[j]);
			free(s);
			return NULL;
		}
	}
	s->hnext = reg.hash[h % HASH_BUCKETS];
	reg.hash[h % HASH_BUCKETS] = s;
	if (reg.last[f])
		reg.last[f]->fnext = s;
	else
		reg.first[f] = s;
	reg.last[f] = s;
	reg.nseries++;
	return s;
}

static void add(enum family_id f, const char *const *values, uint64_t n)
{
	struct series *s = series_get(f, values);
	if (s)
		s->count += n;
}

static void observe(enum family_id f, const char *const *values, double v)
{
	struct series *s = series_get(f, values);
	if (!s)
		return;
	const struct family *fam = &families[f];
	size_t b = 0;
	while (b < fam->nbounds && v > fam->bounds[b])
		b++;
	if (b < fam->nbounds)
		s->bucket[b]++;
	s->count++;
	s->sum += v;
}

void metrics_tool_call(const char *tool, const char *source, int http_status, const char *code,
		       double seconds, size_t bytes)
{
	if (!atomic_load_explicit(&reg.on, memory_order_relaxed))
		return;
	char status[12];
	snprintf(status, sizeof status, "%d", http_status);
	const char *calls[] = {tool ? tool : "unknown", source, status, code ? code : "ok"};
	const char *per_tool[] = {calls[0], source};
	pthread_mutex_lock(&reg.mu);
	add(F_CALLS, calls, 1);
	observe(F_CALL_SECONDS, per_tool, seconds);
	add(F_CALL_BYTES, per_tool, bytes);
	pthread_mutex_unlock(&reg.mu);
}

static void add_one(enum family_id f, const char *const *values, uint64_t n)
{
	if (!atomic_load_explicit(&reg.on, memory_order_relaxed))
		return;
	pthread_mutex_lock(&reg.mu);
	add(f, values, n);
	pthread_mutex_unlock(&reg.mu);
}

static void observe_one(enum family_id f, const char *const *values, double v)
{
	if (!atomic_load_explicit(&reg.on, memory_order_relaxed))
		return;
	pthread_mutex_lock(&reg.mu);
	observe(f, values, v);
	pthread_mutex_unlock(&reg.mu);
}

void metrics_replay(void)
{
	add_one(F_REPLAYS, NULL, 1);
}

void metrics_inflight(int delta)
{
	atomic_fetch_add_explicit(&reg.inflight, delta, memory_order_relaxed);
}

void metrics_async(int delta)
{
	atomic_fetch_add_explicit(&reg.async, delta, memory_order_relaxed);
}

void metrics_query(const char *source, double seconds, uint64_t rows)
{
	if (!atomic_load_explicit(&reg.on, memory_order_relaxed))
		return;
	const char *v[] = {source};
	pthread_mutex_lock(&reg.mu);
	observe(F_QUERY_SECONDS, v, seconds);
	add(F_ROWS, v, rows);
	pthread_mutex_unlock(&reg.mu);
}

void metrics_rejection(const char *source, int reject)
{
	bool known = reject >= 0 && (size_t)reject < NB(reject_names) && reject_names[reject];
	const char *v[] = {source, known ? reject_names[reject] : "other"};
	add_one(F_REJECTIONS, v, 1);
}

void metrics_store_write(double seconds)
{
	observe_one(F_STORE_WRITE_SECONDS, NULL, seconds);
}

void metrics_audit_written(uint64_t n)
{
	if (n)
		add_one(F_AUDIT_WRITTEN, NULL, n);
}

void metrics_audit_dropped(uint64_t n)
{
	if (n)
		add_one(F_AUDIT_DROPPED, NULL, n);
}

void metrics_refresh(const char *source, bool ok, double seconds)
{
	if (!atomic_load_explicit(&reg.on, memory_order_relaxed))
		return;
	const char *v[] = {source, ok ? "ok" : "failed"};
	pthread_mutex_lock(&reg.mu);
	add(F_REFRESHES, v, 1);
	observe(F_REFRESH_SECONDS, v, seconds);
	pthread_mutex_unlock(&reg.mu);
}

void metrics_reload(bool ok)
{
	if (!atomic_load_explicit(&reg.on, memory_order_relaxed))
		return;
	const char *v[] = {ok ? "ok" : "refused"};
	pthread_mutex_lock(&reg.mu);
	add(F_RELOADS, v, 1);
	if (ok)
		reg.reloaded = time(NULL);
	pthread_mutex_unlock(&reg.mu);
}

void metrics_connection_denied(void)
{
	add_one(F_DENIED, NULL, 1);
}

/* ---- the exposition ---- */

/* A label value as the format wants it: \, " and newline escaped. */
static int put_value(struct buf *out, const char *v)
{
	for (const char *p = v; *p; p++) {
		const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
		if (esc ? buf_puts(out, esc) : buf_append(out, p, 1))
			return CN_ENOMEM;
	}
	return CN_OK;
}

/* {a="x",b="y"} with extra (a name, and its value) last; nothing when no label. */
static int put_labels(struct buf *out, const char *const *names, const char *const *values,
		      const char *extra, const char *extra_value)
{
	bool any = false;
	for (int i = 0; i < MAX_LABELS && names[i]; i++) {
		if (buf_puts(out, any ? ",": "{") || buf_puts(out, names[i]) || buf_puts(out, "=\"") ||
		    put_value(out, values[i]) || buf_puts(out, "\""))
			return CN_ENOMEM;
		any = true;
	}
	if (extra) {
		if (buf_printf(out, "%s%s=\"%s\"", any ? "," : "{", extra, extra_value))
			return CN_ENOMEM;
		any = true;
	}
	return any && buf_puts(out, "}") ? CN_ENOMEM : CN_OK;
}

static int put_header(struct buf *out, const char *name, const char *help, const char *type)
{
	return buf_printf(out, "# HELP " PREFIX "%s %s\n# TYPE " PREFIX "%s %s\n", name, help, name, type);
}

/* One series: a counter's line, or a histogram's cumulative buckets, sum and count. */
static int put_series(struct buf *out, const struct family *fam, const struct series *s)
{
	const char *const *names = fam->labels;
	const char *const *values = (const char *const *)s->label;
	if (fam->kind == COUNTER) {
		return buf_printf(out, PREFIX "%s", fam->name) || put_labels(out, names, values, NULL, NULL) ||
		       buf_printf(out, " %llu\n", (unsigned long long)s->count);
	}
	uint64_t cumulative = 0;
	for (size_t b = 0; b <= fam->nbounds; b++) {
		char le[32];
		if (b < fam->nbounds) {
			cumulative += s->bucket[b];
			snprintf(le, sizeof le, "%g", fam->bounds[b]);
		} else {
			snprintf(le, sizeof le, "+Inf");
		}
		if (buf_printf(out, PREFIX "%s_bucket", fam->name) ||
		    put_labels(out, names, values, "le", le) ||
		    buf_printf(out, " %llu\n",
			       (unsigned long long)(b < fam->nbounds ? cumulative : s->count)))
			return CN_ENOMEM;
	}
	return buf_printf(out, PREFIX "%s_sum", fam->name) || put_labels(out, names, values, NULL, NULL) ||
	       buf_printf(out, " %.9g\n", s->sum) || buf_printf(out, PREFIX "%s_count", fam->name) ||
	       put_labels(out, names, values, NULL, NULL) ||
	       buf_printf(out, " %llu\n", (unsigned long long)s->count);
}

static int render_events(struct buf *out)
{
	int rc = CN_OK;
	pthread_mutex_lock(&reg.mu);
	for (int f = 0; f < NFAMILIES && rc == CN_OK; f++) {
		const struct family *fam = &families[f];
		rc = put_header(out, fam->name, fam->help, fam->kind == COUNTER ? "counter" : "histogram");
		for (const struct series *s = reg.first[f]; s && rc == CN_OK; s = s->fnext)
			rc = put_series(out, fam, s);
		/* a counter without labels reads 0 before its first event */
		if (rc == CN_OK && !reg.first[f] && fam->kind == COUNTER && !fam->labels[0])
			rc = buf_printf(out, PREFIX "%s 0\n", fam->name);
	}
	if (rc == CN_OK)
		rc = put_header(out, "config_last_reload_success_timestamp_seconds",
				"When the running configuration was loaded (unix time).", "gauge") ||
		     buf_printf(out, PREFIX "config_last_reload_success_timestamp_seconds %lld\n",
				(long long)(reg.reloaded ? reg.reloaded : reg.started));
	if (rc == CN_OK)
		rc = put_header(out, "metrics_series_dropped_total",
				"Series not kept: the registry was full.", "counter") ||
		     buf_printf(out, PREFIX "metrics_series_dropped_total %llu\n",
				(unsigned long long)reg.dropped);
	pthread_mutex_unlock(&reg.mu);
	return rc ? CN_ENOMEM : CN_OK;
}

/* One gauge line: name{label="value"} v. */
static int gauge(struct buf *out, const char *name, const char *label, const char *value, double v)
{
	const char *names[] = {label, NULL};
	const char *values[] = {value};
	return buf_printf(out, PREFIX "%s", name) ||
	       put_labels(out, names, values, NULL, NULL) || buf_printf(out, " %.17g\n", v);
}

static int render_sources(struct app *app, struct buf *out)
{
	struct source_set *set = app->sources;
	int rc = put_header(out, "driver_info", "Driver modules loaded, with their version.", "gauge");
	for (size_t i = 0; set && i < set->nmodules && rc == CN_OK; i++) {
		const struct cn_driver *api = set->modules[i]->api;
		rc = buf_printf(out, PREFIX "driver_info{driver=\"") || put_value(out, api->name) ||
		     buf_puts(out, "\",version=\"") || put_value(out, api->version ? api->version : "") ||
		     buf_puts(out, "\"} 1\n");
	}
	static const struct {
		const char *name, *help;
	} per_source[] = {
		{"source_up", "1 when the source is open with a schema, else 0."},
		{"schema_tables", "Tables and views the assistant sees, per source."},
		{"schema_drift", "Changes between the source's baseline schema and its latest refresh."},
		{"schema_refreshed_timestamp_seconds", "When the schema now served was read (unix time)."},
		{"schema_refresh_failing", "1 when the source's last schema refresh failed."},
		{"pool_size", "Connections the source's driver may keep."},
		{"pool_connections_open", "Connections the source's driver holds open."},
		{"pool_connections_in_use", "Connections running a request."},
		{"pool_waiting", "Requests waiting for a free connection."},
	};
	enum { NPER = NB(per_source) };
	size_t nsources = set ? set->n : 0;
	double (*v)[NPER] = nsources ? calloc(nsources, sizeof *v) : NULL;
	if (nsources && !v)
		return CN_ENOMEM;
	for (size_t i = 0; i < nsources; i++) {
		struct source *s = set->items[i];
		struct source_status st;
		struct cn_pool_stats ps = {0};
		source_status(s, &st);
		pthread_mutex_lock(&s->lock);
		void *h = s->handle; /* open until sources_close() */
		pthread_mutex_unlock(&s->lock);
		if (h && s->module->api->pool_stats)
			s->module->api->pool_stats(h, &ps);
		double row[NPER] = {st.available, (double)st.tables, (double)st.drift,
				    (double)st.refreshed_at, st.refresh_error[0] != '\0', ps.size,
				    ps.open, ps.in_use, ps.waiting};
		memcpy(v[i], row, sizeof row);
	}
	for (size_t k = 0; k < NPER && rc == CN_OK; k++) {
		rc = put_header(out, per_source[k].name, per_source[k].help, "gauge");
		for (size_t i = 0; i < nsources && rc == CN_OK; i++)
			rc = gauge(out, per_source[k].name, "source", set->items[i]->cfg->name, v[i][k]);
	}
	free(v);
	return rc ? CN_ENOMEM : CN_OK;
}

static int render_store(struct exec_store *store, struct buf *out)
{
	struct exec_store_stats st;
	exec_store_stats(store, &st);
	return put_header(out, "execution_store_entries", "Answers kept by execution_id.", "gauge") ||
	       gauge(out, "execution_store_entries", NULL, NULL, (double)st.entries) ||
	       put_header(out, "execution_store_bytes",
			  "Size of the execution store's files on disk (database and WAL).", "gauge") ||
	       gauge(out, "execution_store_bytes", NULL, NULL, (double)st.file_bytes) ||
	       put_header(out, "execution_store_pending",
			  "Answers given but not yet written to disk.", "gauge") ||
	       gauge(out, "execution_store_pending", NULL, NULL, (double)st.pending);
}

static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	long n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own */
}

/* The names every Prometheus client library uses for its process. */
static int render_process(struct buf *out)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
		     ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
	long size = 0, pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &size, &pages) != 2)
			pages = 0;
		fclose(f);
	}
	struct rlimit rl;
	double max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (double)rl.rlim_cur : -1;
	return buf_printf(out,
			  "# HELP process_cpu_seconds_total User and system CPU time spent.\n"
			  "# TYPE process_cpu_seconds_total counter\n"
			  "process_cpu_seconds_total %.6f\n"
			  "# HELP process_resident_memory_bytes Resident memory size.\n"
			  "# TYPE process_resident_memory_bytes gauge\n"
			  "process_resident_memory_bytes %.0f\n"
			  "# HELP process_open_fds Open file descriptors.\n"
			  "# TYPE process_open_fds gauge\n"
			  "process_open_fds %ld\n"
			  "# HELP process_max_fds Maximum number of open file descriptors.\n"
			  "# TYPE process_max_fds gauge\n"
			  "process_max_fds %.0f\n"
			  "# HELP process_start_time_seconds Start time of the process (unix time).\n"
			  "# TYPE process_start_time_seconds gauge\n"
			  "process_start_time_seconds %lld\n",
			  cpu, (double)pages * (double)sysconf(_SC_PAGESIZE), open_fds(), max_fds,
			  (long long)reg.started);
}

int metrics_render(struct app *app, struct buf *out)
{
	int rc = put_header(out, "build_info", "The connector's version.", "gauge") ||
		 buf_puts(out, PREFIX "build_info{version=\"" CN_VERSION "\"} 1\n") ||
		 put_header(out, "tool_calls_in_flight", "Tool callbacks being answered now.", "gauge") ||
		 buf_printf(out, PREFIX "tool_calls_in_flight %d\n", atomic_load(&reg.inflight)) ||
		 put_header(out, "async_calls_running",
			    "Calls answered 202 whose query still runs.", "gauge") ||
		 buf_printf(out, PREFIX "async_calls_running %d\n", atomic_load(&reg.async));
	if (rc == CN_OK)
		rc = render_events(out);
	if (rc == CN_OK && app)
		rc = render_sources(app, out);
	if (rc == CN_OK && app && app->store)
		rc = render_store(app->store, out);
	int64_t not_after = tls_current_not_after();
	if (rc == CN_OK && not_after)
		rc = put_header(out, "tls_certificate_expiry_timestamp_seconds",
				"When the served TLS certificate expires (unix time).", "gauge") ||
		     buf_printf(out, PREFIX "tls_certificate_expiry_timestamp_seconds %lld\n",
				(long long)not_after);
	if (rc == CN_OK)
		rc = render_process(out);
	return rc ? CN_ENOMEM : CN_OK;
}
