/*
 * interactor-connector - serves read-only, parameterized database queries to
 * Interactor AI assistants through HMAC-signed tool callbacks.
 *
 * main.c: command-line dispatch and the daemon's life cycle.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "app.h"
#include "audit.h"
#include "config.h"
#include "control.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "refresh.h"
#include "request.h"
#include "scheduler.h"
#include "signature.h"
#include "source.h"
#include "tools.h"

#ifndef CN_VERSION
#define CN_VERSION "dev"
#endif

#define DRAIN_MS 30000u
#define ASK_TIMEOUT_S 300 /* refresh, drift and audit wait this long for a running daemon */
#define UPKEEP_S 3600     /* expired answers and old audit records go this often */

static time_t clock_now(void)
{
	return time(NULL);
}

static const char usage_main[] =
	"usage: interactor-connector <command> [options]\n"
	"\n"
	"Lets Interactor AI assistants query private databases read-only, through\n"
	"HMAC-signed tool callbacks, without opening the databases to the internet.\n"
	"\n"
	"commands:\n"
	"  serve         run the tool-callback server\n"
	"  check-config  validate a config file, load its drivers, connect to each source\n"
	"  introspect    print one source's schema, merged with its mappings, as JSON\n"
	"  query         run one read-only query through the same guard as run_query\n"
	"  refresh       read schemas again now and print what changed (asks a running daemon)\n"
	"  drift         print mapping keys and new columns the mappings no longer describe\n"
	"  audit         print the audit log of tool calls as JSON lines\n"
	"  sign          sign a request body from stdin the way Interactor does (for curl)\n"
	"  tools         print the tools offered to the assistant, with their JSON Schema\n"
	"  version       print the version\n"
	"\n"
	"Run 'interactor-connector <command> --help' for a command's options.\n";

static const char usage_serve[] =
	"usage: interactor-connector serve --config FILE [--listen HOST:PORT]\n"
	"\n"
	"Answers POST /v1/tools/{tool_name} (signed callbacks), GET /healthz and\n"
	"GET /readyz. Refreshes each source's schema on its cron schedule (refresh,\n"
	"refresh_timezone) and on SIGUSR1. Writes its pid to STATE.pid (state.path)\n"
	"and holds a lock on it. SIGTERM or SIGINT stops accepting, lets running\n"
	"requests finish (up to 30 s) and exits 0.\n"
	"\n"
	"  -c, --config FILE    configuration file (see conf/demo.yaml)\n"
	"  -l, --listen ADDR    override server.listen, e.g. 127.0.0.1:8080\n"
	"  -h, --help           this text\n";

static const char usage_check[] =
	"usage: interactor-connector check-config --config FILE\n"
	"\n"
	"Validates FILE, prints the effective configuration (secrets redacted),\n"
	"loads every driver, connects to and introspects every source and prints\n"
	"its drift: mapping keys that match nothing, and (compared with the state\n"
	"file's first snapshot, when no daemon holds it) new columns without a\n"
	"description. Exits 1 when a source fails; drift is a warning.\n"
	"\n"
	"  -c, --config FILE    configuration file\n"
	"  -q, --quiet          do not print the effective configuration\n"
	"  -h, --help           this text\n";

static const char usage_introspect[] =
	"usage: interactor-connector introspect --config FILE SOURCE\n"
	"\n"
	"Prints SOURCE's schema as describe_schema answers it: tables, columns,\n"
	"keys, indexes, descriptions and synonyms, hidden objects left out.\n"
	"\n"
	"  -c, --config FILE    configuration file\n"
	"  -h, --help           this text\n";

static const char usage_query[] =
	"usage: interactor-connector query --config FILE SOURCE SQL [PARAM...]\n"
	"\n"
	"Runs SQL on SOURCE with the same guard, limits and masking as run_query\n"
	"and prints the answer. For a MongoDB source SQL is the command document\n"
	"as JSON ('{\"find\": \"orders\", \"filter\": {\"status\": {\"$param\": 1}}}').\n"
	"PARAMs bind to $1..$n ({\"$param\": N}): a PARAM that is a JSON\n"
	"number, true, false or null binds as that; anything else binds as text\n"
	"(write '\"123\"' to bind digits as text).\n"
	"\n"
	"  -c, --config FILE    configuration file\n"
	"  -m, --max-rows N     at most N rows (the source's cap still applies)\n"
	"  -h, --help           this text\n";

static const char usage_refresh[] =
	"usage: interactor-connector refresh --config FILE [SOURCE]\n"
	"\n"
	"Reads the schema of SOURCE (default: every source) again now, compares it\n"
	"with the last snapshot in the state file, keeps a new snapshot when it\n"
	"changed, and prints what changed and the drift. With a daemon running on\n"
	"the same state file (STATE.pid is locked), the daemon does the refresh and\n"
	"this command waits for its answer; without one, it works on the state file\n"
	"itself. Suits a system cron job or a Kubernetes CronJob.\n"
	"\n"
	"  -c, --config FILE    configuration file\n"
	"  -j, --json           print the answer as JSON\n"
	"  -t, --timeout S      wait at most S seconds for a running daemon (default 300)\n"
	"  -h, --help           this text\n"
	"\n"
	"Exit status: 0 when every refresh worked, 1 when one failed, 2 on bad usage.\n";

static const char usage_drift[] =
	"usage: interactor-connector drift --config FILE [SOURCE]\n"
	"\n"
	"Prints the drift of SOURCE (default: every source) as its last refresh\n"
	"found it: mapping keys that match no table or column (a renamed column\n"
	"keeps its description nowhere), and columns new since the source's first\n"
	"snapshot that have no description; then its last schema changes, newest\n"
	"first. Asks the running daemon when there is one.\n"
	"\n"
	"  -c, --config FILE    configuration file\n"
	"  -j, --json           print the answer as JSON\n"
	"  -t, --timeout S      wait at most S seconds for a running daemon (default 300)\n"
	"  -h, --help           this text\n"
	"\n"
	"Exit status: 0 without drift, 3 with drift, 1 on errors, 2 on bad usage.\n";

static const char usage_audit[] =
	"usage: interactor-connector audit --config FILE [--since WHEN] [--source NAME]\n"
	"                                  [--status STATUS]\n"
	"\n"
	"Prints the audit log the daemon keeps in the state file (audit.enabled), oldest\n"
	"first, one JSON object per line for each tool call whose signature verified:\n"
	"id, time, execution_id, assistant_id, room_id, tool, source, fingerprint (of\n"
	"the statement; also statement with audit.include_statements), rows, bytes,\n"
	"status (HTTP), code (the error code, \"replayed\" for a retried execution_id,\n"
	"null on success) and duration_ms. Parameter values and rows are never kept.\n"
	"With a daemon running on the state file (STATE.pid is locked) the daemon reads\n"
	"the log and this command prints its answers (run it as the daemon's user);\n"
	"without one, it reads the file itself.\n"
	"\n"
	"  -c, --config FILE    configuration file\n"
	"  -s, --since WHEN     calls from WHEN on: ISO 8601 (2026-01-20T12:00:00Z, or\n"
	"                       2026-01-20 for midnight UTC) or an age (90m, 24h, 7d)\n"
	"      --source NAME    calls that used source NAME\n"
	"      --status STATUS  calls answered with HTTP status STATUS (200, 401, ...)\n"
	"                       or error code STATUS (query_rejected, replayed, ...;\n"
	"                       ok: the successes)\n"
	"  -t, --timeout S      wait at most S seconds for each answer of a running\n"
	"                       daemon (default 300)\n"
	"  -h, --help           this text\n"
	"\n"
	"Exit status: 0 when the log was read (matches or not), 1 on errors, 2 on bad usage.\n";

static const char usage_sign[] =
	"usage: interactor-connector sign [--secret-env VAR] < body.json\n"
	"\n"
	"Reads a request body on stdin and prints the X-Interactor-Signature,\n"
	"X-Interactor-Timestamp and X-Interactor-Request-Id headers Interactor\n"
	"would send with it, one per line, ready for curl -H @file.\n"
	"\n"
	"  -s, --secret-env VAR  environment variable holding the callback secret\n"
	"                        (default INTERACTOR_CALLBACK_SECRET)\n"
	"  -h, --help            this text\n";

static int load_config(const char *path, struct config **cfg)
{
	struct cn_error err = {0};
	if (!path) {
		fprintf(stderr, "interactor-connector: --config FILE is required\n");
		return 2;
	}
	if (config_load(path, cfg, &err)) {
		fprintf(stderr, "interactor-connector: %s\n", err.message);
		return 1;
	}
	return 0;
}

static void apply_log_settings(const struct config *cfg, enum log_level floor)
{
	enum log_level level = LOG_LEVEL_INFO;
	if (cfg->log_level)
		(void)log_parse_level(cfg->log_level, &level);
	log_set_level(level < floor ? level : floor);
	log_set_json(cfg->log_format && strcmp(cfg->log_format, "json") == 0);
}

/* ---- serve ---- */

/* CIDR texts into networks; what names the list in errors. */
static int parse_nets(const char *what, char *const *texts, size_t n, struct http_net *nets,
		      size_t *out, struct cn_error *err)
{
	if (n > HTTP_MAX_ALLOW)
		return cn_error_set(err, CN_ECONFIG, "%s: at most %d networks", what, HTTP_MAX_ALLOW);
	for (size_t i = 0; i < n; i++)
		if (config_parse_cidr(texts[i], &nets[i].family, nets[i].addr, &nets[i].prefix))
			return cn_error_set(err, CN_ECONFIG, "%s: '%s' is not a network", what,
					    texts[i]);
	*out = n;
	return CN_OK;
}

/* Who may read /metrics when the config does not say: this host and the
 * private networks a Prometheus or a cluster's scraper runs in. */
static char *const metrics_default_nets[] = {"127.0.0.0/8",    "::1/128",        "10.0.0.0/8",
					     "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"};

/* The HTTP server with the config's networks, limits and TLS. */
static int start_http(struct app *app, const struct config *cfg, const char *listen,
		      struct http_server **srv, struct cn_error *err)
{
	struct http_net nets[HTTP_MAX_ALLOW], metrics_nets[HTTP_MAX_ALLOW];
	size_t n = 0, nm = 0;
	bool metrics_default = cfg->metrics_enabled && cfg->nmetrics_allow_from == 0;
	int rc = parse_nets("server.allow_from", cfg->allow_from, cfg->nallow_from, nets, &n, err);
	if (rc == CN_OK)
		rc = parse_nets("metrics.allow_from",
				metrics_default ? metrics_default_nets : cfg->metrics_allow_from,
				metrics_default ? sizeof metrics_default_nets / sizeof *metrics_default_nets
				: cfg->metrics_enabled ? cfg->nmetrics_allow_from : 0,
				metrics_nets, &nm, err);
	if (rc)
		return rc;
	char *cert = *cfg->tls_cert ? config_resolve_path(cfg, cfg->tls_cert) : NULL;
	char *key = *cfg->tls_key ? config_resolve_path(cfg, cfg->tls_key) : NULL;
	struct http_options opts = {
		.listen = listen,
		.max_connections = cfg->max_connections,
		.per_address = cfg->max_connections_per_address,
		.timeout_s = cfg->request_timeout,
		.tls_cert_path = cert,
		.tls_key_path = key,
		.allow = nets,
		.nallow = n,
		.metrics_allow = metrics_nets,
		.nmetrics_allow = nm,
	};
	rc = (*cfg->tls_cert && (!cert || !key)) ? cn_error_set(err, CN_ENOMEM, "out of memory")
						 : http_server_start(app, &opts, srv, err);
	free(cert);
	free(key);
	return rc;
}

/* The state file's upkeep: expired answers, and audit records older than
 * audit.retention_days, each deleted in small transactions. */
static void state_upkeep(struct app *app)
{
	struct cn_error err = {0};
	uint64_t removed = 0;
	time_t now = time(NULL);
	if (exec_store_expire(app->store, now, &removed, &err))
		log_warn("execution store: %s", err.message);
	else if (removed)
		log_info("execution store: %llu expired answer(s) removed", (unsigned long long)removed);
	int64_t before = ((int64_t)now - (int64_t)app->cfg->audit_retention_days * 86400) * 1000;
	if (exec_store_audit_prune(app->store, before, &removed, &err))
		log_warn("audit log: %s", err.message);
	else if (removed)
		log_info("audit log: %llu record(s) older than %u days removed", (unsigned long long)removed,
			 app->cfg->audit_retention_days);
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"listen", required_argument, NULL, 'l'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL, *listen = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "c:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'l': listen = optarg; break;
		case 'h': fputs(usage_serve, stdout); return 0;
		default: fputs(usage_serve, stderr); return 2;
		}
	}
	if (optind != argc) {
		fputs(usage_serve, stderr);
		return 2;
	}
	struct config *cfg = NULL;
	int ret = load_config(path, &cfg);
	if (ret)
		return ret;
	apply_log_settings(cfg, LOG_LEVEL_DEBUG);

	/* Signals are taken by this thread alone, with sigwait: every thread
	 * started from here on inherits the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct app app = {.cfg = cfg, .now = clock_now};
	struct http_server *srv = NULL;
	struct control *ctl = NULL;
	struct scheduler *sched = NULL;
	struct cn_error err = {0};
	char *state_path = config_resolve_path(cfg, cfg->state_path);
	ret = 1;
	if (!state_path)
		goto out;
	/* a `refresh` command may hold the state file for a moment */
	for (unsigned waited = 0;; waited += 250) {
		int rc = exec_store_open(state_path, NULL, &app.store, &err);
		if (rc == CN_OK)
			break;
		if (rc != CN_EBUSY || waited >= CONTROL_STORE_WAIT_MS) {
			log_error("%s", err.message);
			goto out;
		}
		if (waited == 0)
			log_info(
			    "the state file is in use (an interactor-connector refresh?); waiting up to %u s",
			    CONTROL_STORE_WAIT_MS / 1000);
		struct timespec quarter = {0, 250 * 1000000L};
		nanosleep(&quarter, NULL);
	}
	if (control_open(state_path, &ctl, &err)) {
		log_error("%s", err.message);
		goto out;
	}
	if (cfg->metrics_enabled)
		metrics_init(); /* before the sources: their first refresh counts */
	struct sources_opts sopts = {.store = app.store};
	if (sources_open_with(cfg, &sopts, &app.sources, &err)) {
		log_error("%s", err.message);
		goto out;
	}
	for (size_t i = 0; i < app.sources->n; i++) {
		struct source *s = &app.sources->items[i];
		char warning[600];
		struct cn_error e = {0};
		struct source_status st;
		source_status(s, &st);
		if (st.available && source_audit(s, warning, sizeof warning, &e) == CN_OK && warning[0])
			log_warn("source '%s': %s", s->cfg->name, warning);
	}
	if (scheduler_start(app.sources, ctl, &sched, &err)) {
		log_error("%s", err.message);
		goto out;
	}
	if (start_http(&app, cfg, listen ? listen : cfg->listen, &srv, &err)) {
		log_error("%s", err.message);
		goto out;
	}
	log_info("interactor-connector %s listening on %s (port %u, %s), %zu source(s), up to %u "
		 "connections, %u per client address", CN_VERSION, listen ? listen : cfg->listen,
		 http_server_port(srv), *cfg->tls_cert ? "HTTPS" : "plain HTTP", cfg->nsources,
		 cfg->max_connections, cfg->max_connections_per_address);
	if (!*cfg->tls_cert && !http_listen_is_loopback(listen ? listen : cfg->listen))
		log_warn("serving plain HTTP on %s, which is not a loopback address: callbacks and their "
			 "answers cross the network unencrypted; set server.tls.cert and server.tls.key, "
			 "or listen on 127.0.0.1 behind a TLS proxy", listen ? listen : cfg->listen);

	state_upkeep(&app);
	struct timespec upkeep_at; /* monotonic: signals in between do not put it off */
	clock_gettime(CLOCK_MONOTONIC, &upkeep_at);
	upkeep_at.tv_sec += UPKEEP_S;
	for (;;) {
		struct timespec now, wait = {0, 0};
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec < upkeep_at.tv_sec)
			wait.tv_sec = upkeep_at.tv_sec - now.tv_sec;
		siginfo_t info;
		int sig = sigtimedwait(&sigs, &info, &wait);
		if (sig < 0 && errno == EAGAIN) {
			state_upkeep(&app);
			clock_gettime(CLOCK_MONOTONIC, &upkeep_at);
			upkeep_at.tv_sec += UPKEEP_S;
			continue;
		}
		if (sig == SIGHUP) {
			log_info("SIGHUP: configuration reload is not supported; restart to apply changes");
			continue;
		}
		if (sig == SIGUSR1) {
			/* sigqueue()d by the command line: requests are waiting; a plain one: refresh all */
			scheduler_poke(sched, info.si_code == SI_QUEUE);
			continue;
		}
		if (sig > 0) {
			log_info("signal %d: stopping; no new requests, finishing running ones", sig);
			break;
		}
	}
	http_server_stop(srv, DRAIN_MS);
	srv = NULL;
	scheduler_stop(sched);
	sched = NULL;
	log_info("stopped");
	ret = 0;
out:
	http_server_stop(srv, 0);
	scheduler_stop(sched);
	sources_close(app.sources);
	control_close(ctl);
	exec_store_close(app.store);
	metrics_shutdown();
	free(state_path);
	config_free(cfg);
	return ret;
}

/* ---- check-config ---- */

/* The drift check-config found for s, one line each. */
static void print_drift(struct source *s, bool baseline, pid_t daemon)
{
	struct source_view *v = source_view_acquire(s);
	for (size_t k = 0; v && k < v->drift->n; k++) {
		char line[800];
		drift_item_describe(&v->drift->items[k], line, sizeof line);
		printf("  drift: %s\n", line);
	}
	if (daemon)
		printf("  note: new columns are compared with the first snapshot by the running daemon (pid "
		       "%ld); see interactor-connector drift\n", (long)daemon);
	else if (!baseline)
		printf("  note: no baseline to find new columns against (the state file is missing or in "
		       "use)\n");
	source_view_release(v);
}

static int cmd_check_config(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"quiet", no_argument, NULL, 'q'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL;
	int quiet = 0, c;
	while ((c = getopt_long(argc, argv, "c:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'q': quiet = 1; break;
		case 'h': fputs(usage_check, stdout); return 0;
		default: fputs(usage_check, stderr); return 2;
		}
	}
	if (optind != argc) {
		fputs(usage_check, stderr);
		return 2;
	}
	struct config *cfg = NULL;
	int ret = load_config(path, &cfg);
	if (ret)
		return ret;
	apply_log_settings(cfg, LOG_LEVEL_WARN);
	if (!quiet)
		config_print(cfg, stdout);

	/* Drift is measured against the state file's baseline when no daemon
	 * holds the file; it is only read here, never written. */
	struct source_set *set = NULL;
	struct cn_error err = {0};
	struct exec_store *store = NULL;
	char *state_path = config_resolve_path(cfg, cfg->state_path);
	pid_t daemon = state_path ? control_daemon(state_path) : 0;
	struct stat st_state;
	if (state_path && !daemon && stat(state_path, &st_state) == 0 &&
	    exec_store_open(state_path, NULL, &store, &err) != CN_OK)
		store = NULL;
	struct sources_opts sopts = {.store = store, .store_read_only = true};
	if (sources_open_with(cfg, &sopts, &set, &err)) {
		fprintf(stderr, "interactor-connector: %s\n", err.message);
		exec_store_close(store);
		free(state_path);
		config_free(cfg);
		return 1;
	}
	printf("# check\n");
	for (size_t i = 0; i < set->n; i++) {
		struct source *s = &set->items[i];
		void *h;
		struct cn_error e = {0};
		if (source_ready(s, &h, &e) == CN_OK) {
			char warning[600];
			struct source_status st;
			source_status(s, &st);
			printf("source %s (%s): ok, %zu tables, driver %s\n", s->cfg->name, s->cfg->driver,
			       st.tables, s->module->path);
			if (source_audit(s, warning, sizeof warning, &e) != CN_OK)
				printf("  warning: cannot tell what the database user may write: %s\n", e.message);
			else if (warning[0])
				printf("  warning: %s\n", warning);
			print_drift(s, store != NULL, daemon);
		} else {
			printf("source %s (%s): FAILED: %s\n", s->cfg->name, s->cfg->driver, e.message);
			ret = 1;
		}
	}
	printf("%s\n", ret ? "configuration has errors" : "configuration ok");
	sources_close(set);
	exec_store_close(store);
	free(state_path);
	config_free(cfg);
	return ret;
}

/* ---- introspect ---- */

static int open_one(const char *path, const char *name, struct config **cfg, struct source_set **set,
		    struct source **src)
{
	int ret = load_config(path, cfg);
	if (ret)
		return ret;
	apply_log_settings(*cfg, LOG_LEVEL_WARN);
	struct cn_error err = {0};
	if (sources_open(*cfg, set, &err)) {
		fprintf(stderr, "interactor-connector: %s\n", err.message);
		return 1;
	}
	*src = sources_find(*set, name);
	if (!*src) {
		fprintf(stderr, "interactor-connector: no source named '%s' in %s\n", name, path);
		return 1;
	}
	return 0;
}

static int cmd_introspect(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'h': fputs(usage_introspect, stdout); return 0;
		default: fputs(usage_introspect, stderr); return 2;
		}
	}
	if (optind + 1 != argc) {
		fputs(usage_introspect, stderr);
		return 2;
	}
	struct config *cfg = NULL;
	struct source_set *set = NULL;
	struct source *s = NULL;
	int ret = open_one(path, argv[optind], &cfg, &set, &s);
	if (ret == 0) {
		void *h;
		struct cn_error err = {0};
		if (source_ready(s, &h, &err)) {
			fprintf(stderr, "interactor-connector: %s\n", err.message);
			ret = 1;
		} else {
			struct source_view *v = source_view_acquire(s);
			cJSON *tree = schema_model_to_json(v ? v->model : NULL, NULL, 0);
			source_view_release(v);
			char *text = tree ? cJSON_Print(tree) : NULL;
			if (text)
				printf("%s\n", text);
			else
				ret = 1;
			free(text);
			cJSON_Delete(tree);
		}
	}
	sources_close(set);
	config_free(cfg);
	return ret;
}

/* ---- query ---- */

static void param_from_arg(const char *arg, cJSON **keep, struct cn_value *v)
{
	cJSON *j = cJSON_Parse(arg);
	if (j && cJSON_IsNumber(j)) {
		double d = j->valuedouble;
		if (d == (double)(int64_t)d && !strpbrk(arg, ".eE")) {
			v->kind = CN_VAL_INT;
			v->u.i = strtoll(arg, NULL, 10);
		} else {
			v->kind = CN_VAL_DOUBLE;
			v->u.d = d;
		}
	} else if (j && cJSON_IsBool(j)) {
		v->kind = CN_VAL_BOOL;
		v->u.b = cJSON_IsTrue(j);
	} else if (j && cJSON_IsNull(j)) {
		v->kind = CN_VAL_NULL;
	} else if (j && cJSON_IsString(j)) {
		v->kind = CN_VAL_TEXT;
		v->u.s.ptr = j->valuestring;
		v->u.s.len = strlen(j->valuestring);
		*keep = j;
		return;
	} else {
		v->kind = CN_VAL_TEXT;
		v->u.s.ptr = arg;
		v->u.s.len = strlen(arg);
	}
	cJSON_Delete(j);
	*keep = NULL;
}

static int cmd_query(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"max-rows", required_argument, NULL, 'm'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL;
	unsigned long max_rows = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+c:m:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'm': max_rows = strtoul(optarg, NULL, 10); break;
		case 'h': fputs(usage_query, stdout); return 0;
		default: fputs(usage_query, stderr); return 2;
		}
	}
	if (argc - optind < 2) {
		fputs(usage_query, stderr);
		return 2;
	}
	size_t nparams = (size_t)(argc - optind - 2);
	if (nparams > TOOLS_MAX_PARAMS) {
		fprintf(stderr, "interactor-connector: at most %d parameters\n", TOOLS_MAX_PARAMS);
		return 2;
	}
	struct cn_value values[TOOLS_MAX_PARAMS];
	cJSON *keep[TOOLS_MAX_PARAMS];
	for (size_t i = 0; i < nparams; i++)
		param_from_arg(argv[optind + 2 + (int)i], &keep[i], &values[i]);

	struct config *cfg = NULL;
	struct source_set *set = NULL;
	struct source *s = NULL;
	int ret = open_one(path, argv[optind], &cfg, &set, &s);
	if (ret == 0) {
		struct app app = {.cfg = cfg, .sources = set, .now = clock_now};
		struct tool_result r = {0};
		tools_run_query(&app, argv[optind], argv[optind + 1], values, nparams,
				(uint32_t)(max_rows > 100000 ? 100000 : max_rows), &r);
		fwrite(r.body, 1, r.len, r.http_status == 200 ? stdout : stderr);
		fputc('\n', r.http_status == 200 ? stdout : stderr);
		ret = r.http_status == 200 ? 0 : 1;
		tool_result_free(&r);
	}
	for (size_t i = 0; i < nparams; i++)
		cJSON_Delete(keep[i]);
	sources_close(set);
	config_free(cfg);
	return ret;
}

/* ---- refresh, drift ---- */

/* The exit status of an answer: errors 1; refresh: a failure 1; drift: 3 with drift. */
static int answer_status(const cJSON *a, bool drift)
{
	const cJSON *item;
	if (cJSON_GetObjectItemCaseSensitive(a, "error"))
		return 1;
	if (!drift) {
		cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(a, "results")) {
			const char *st =
			    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "status"));
			if (!st || strcmp(st, "ok") != 0)
				return 1;
		}
		return 0;
	}
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(a, "reports"))
		if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(item, "drift")) > 0)
			return 3;
	return 0;
}

/* The daemon that holds the state file (*pid), or else the file opened
 * (*store): the daemon holds it exclusively, so it is one or the other.
 * When create is false and neither exists, CN_ENOTFOUND. */
static int daemon_or_store(const char *state_path, bool create, pid_t *pid, struct exec_store **store,
			   struct cn_error *err)
{
	*store = NULL;
	for (unsigned waited = 0;; waited += 250) {
		if ((*pid = control_daemon(state_path)) != 0)
			return CN_OK;
		struct stat st;
		if (!create && stat(state_path, &st) != 0)
			return cn_error_set(err, CN_ENOTFOUND,
					    "no state file %s and no daemon using it: nothing was recorded "
					    "there (is state.path the daemon's?)", state_path);
		int rc = exec_store_open(state_path, NULL, store, err);
		if (rc != CN_EBUSY || waited >= 2000)
			return rc;
		/* a daemon between opening the file and locking STATE.pid: look again */
		struct timespec quarter = {0, 250 * 1000000L};
		nanosleep(&quarter, NULL);
	}
}

/* Ask the daemon, or do it on the state file when none runs. *answer gets
 * {"results"|"reports"|"error"}. */
static int state_command(const struct config *cfg, const char *verb, const char *source, unsigned timeout_s,
			 cJSON **answer, struct cn_error *err)
{
	char *state_path = config_resolve_path(cfg, cfg->state_path);
	struct exec_store *store = NULL;
	pid_t pid = 0;
	int rc = state_path ? daemon_or_store(state_path, true, &pid, &store, err)
			    : cn_error_set(err, CN_ENOMEM, "out of memory");
	*answer = NULL;
	if (rc == CN_OK && pid)
		rc = control_ask(state_path, pid, verb, source, timeout_s * 1000u, answer, err);
	if (rc == CN_OK && store) {
		struct source_set *set = NULL;
		struct sources_opts o = {.store = store, .lazy = true};
		rc = sources_open_with(cfg, &o, &set, err);
		bool failed;
		if (rc == CN_OK)
			*answer = strcmp(verb, "refresh") == 0
				      ? scheduler_refresh_now(set, source, &failed, err)
				      : scheduler_drift_reports(set, source, err);
		if (rc == CN_OK && !*answer)
			rc = err->code ? err->code : CN_ENOMEM;
		sources_close(set);
	}
	exec_store_close(store);
	free(state_path);
	return rc;
}

/* --timeout S: 1 to 86400 seconds. */
static bool parse_timeout(const char *arg, unsigned long *out)
{
	*out = strtoul(arg, NULL, 10);
	if (*out == 0 || *out > 86400) {
		fprintf(stderr, "interactor-connector: --timeout takes 1 to 86400 seconds\n");
		return false;
	}
	return true;
}

static int cmd_state(int argc, char **argv, bool drift)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"json", no_argument, NULL, 'j'},
					     {"timeout", required_argument, NULL, 't'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *usage = drift ? usage_drift : usage_refresh;
	const char *path = NULL;
	bool json = false;
	unsigned long timeout = ASK_TIMEOUT_S;
	int c;
	while ((c = getopt_long(argc, argv, "c:jt:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'j': json = true; break;
		case 't':
			if (!parse_timeout(optarg, &timeout))
				return 2;
			break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return 2;
		}
	}
	if (argc - optind > 1) {
		fputs(usage, stderr);
		return 2;
	}
	const char *source = optind < argc ? argv[optind] : NULL;
	struct config *cfg = NULL;
	int ret = load_config(path, &cfg);
	if (ret)
		return ret;
	apply_log_settings(cfg, LOG_LEVEL_ERROR); /* the answer says it all */
	cJSON *answer = NULL;
	struct cn_error err = {0};
	if (state_command(cfg, drift ? "drift" : "refresh", source, (unsigned)timeout, &answer, &err)) {
		fprintf(stderr, "interactor-connector: %s\n", err.message);
		config_free(cfg);
		return 1;
	}
	const char *error = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(answer, "error"));
	if (error) {
		fprintf(stderr, "interactor-connector: %s\n", error);
	} else if (json) {
		char *text = cJSON_Print(answer);
		if (text)
			printf("%s\n", text);
		free(text);
	} else if (drift) {
		refresh_print_reports(cJSON_GetObjectItemCaseSensitive(answer, "reports"), stdout);
	} else {
		refresh_print_results(cJSON_GetObjectItemCaseSensitive(answer, "results"), stdout);
	}
	ret = answer_status(answer, drift);
	cJSON_Delete(answer);
	config_free(cfg);
	return ret;
}

static int cmd_refresh(int argc, char **argv)
{
	return cmd_state(argc, argv, false);
}

static int cmd_drift(int argc, char **argv)
{
	return cmd_state(argc, argv, true);
}

/* ---- audit ---- */

/* Print the records of one page (audit_answer's JSON) as lines; the next
 * page's filter into f when there is one. 1 when done, 0 for more, -1 on
 * an error the answer names. */
static int audit_print_page(const cJSON *answer, struct audit_filter *f)
{
	const char *error = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(answer, "error"));
	if (error) {
		fprintf(stderr, "interactor-connector: %s\n", error);
		return -1;
	}
	const cJSON *rec;
	cJSON_ArrayForEach(rec, cJSON_GetObjectItemCaseSensitive(answer, "records")) {
		char *line = cJSON_PrintUnformatted(rec);
		if (!line) {
			fprintf(stderr, "interactor-connector: out of memory\n");
			return -1;
		}
		puts(line);
		free(line);
	}
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(answer, "more")))
		return 1;
	const char *next = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(answer, "next"));
	if (!next || audit_filter_parse(next, f) != CN_OK) {
		fprintf(stderr, "interactor-connector: the daemon's answer has no valid next page\n");
		return -1;
	}
	return 0;
}

static int cmd_audit(int argc, char **argv)
{
	enum { OPT_SOURCE = 256, OPT_STATUS };
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"since", required_argument, NULL, 's'},
					     {"source", required_argument, NULL, OPT_SOURCE},
					     {"status", required_argument, NULL, OPT_STATUS},
					     {"timeout", required_argument, NULL, 't'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL;
	unsigned long timeout = ASK_TIMEOUT_S;
	struct audit_filter f = {0};
	char why[300];
	int c, bad = 0;
	while ((c = getopt_long(argc, argv, "c:s:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 's': bad = audit_parse_since(optarg, (int64_t)time(NULL) * 1000, &f.after_ms, why, sizeof why); break;
		case OPT_SOURCE: bad = audit_filter_set_source(&f, optarg, why, sizeof why); break;
		case OPT_STATUS: bad = audit_filter_set_status(&f, optarg, why, sizeof why); break;
		case 't':
			if (!parse_timeout(optarg, &timeout))
				return 2;
			break;
		case 'h': fputs(usage_audit, stdout); return 0;
		default: fputs(usage_audit, stderr); return 2;
		}
		if (bad) {
			fprintf(stderr, "interactor-connector: %s\n", why);
			return 2;
		}
	}
	if (optind != argc) {
		fputs(usage_audit, stderr);
		return 2;
	}
	struct config *cfg = NULL;
	int ret = load_config(path, &cfg);
	if (ret)
		return ret;
	apply_log_settings(cfg, LOG_LEVEL_ERROR);
	struct cn_error err = {0};
	struct exec_store *store = NULL;
	pid_t pid = 0;
	char *state_path = config_resolve_path(cfg, cfg->state_path);
	int rc = state_path ? daemon_or_store(state_path, false, &pid, &store, &err)
			    : cn_error_set(&err, CN_ENOMEM, "out of memory");
	for (int done = 0; rc == CN_OK && done == 0;) {
		char word[AUDIT_FILTER_MAX];
		cJSON *answer = NULL;
		audit_filter_format(&f, word);
		if (pid)
			rc = control_ask(state_path, pid, "audit", word, (unsigned)timeout * 1000u, &answer, &err);
		else if (!(answer = audit_answer(store, word, &err)))
			rc = err.code ? err.code : CN_ENOMEM;
		if (rc == CN_OK && (done = audit_print_page(answer, &f)) < 0)
			ret = 1;
		cJSON_Delete(answer);
	}
	if (rc) {
		fprintf(stderr, "interactor-connector: %s\n", err.message);
		ret = 1;
	}
	if (fflush(stdout) != 0)
		ret = 1;
	exec_store_close(store);
	free(state_path);
	config_free(cfg);
	return ret;
}

/* ---- sign ---- */

static int cmd_sign(int argc, char **argv)
{
	static const struct option opts[] = {{"secret-env", required_argument, NULL, 's'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *var = "INTERACTOR_CALLBACK_SECRET";
	int c;
	while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
		switch (c) {
		case 's': var = optarg; break;
		case 'h': fputs(usage_sign, stdout); return 0;
		default: fputs(usage_sign, stderr); return 2;
		}
	}
	if (optind != argc) {
		fputs(usage_sign, stderr);
		return 2;
	}
	const char *secret = getenv(var);
	if (!secret || !*secret) {
		fprintf(stderr, "interactor-connector: environment variable %s is not set; export it "
				"with the tool's callback secret\n", var);
		return 1;
	}
	static char body[REQUEST_MAX_BODY + 1];
	size_t len = fread(body, 1, sizeof body, stdin);
	if (len > REQUEST_MAX_BODY) {
		fprintf(stderr, "interactor-connector: body is over %u bytes\n", REQUEST_MAX_BODY);
		return 1;
	}
	char sig[SIGNATURE_HEADER_LEN + 1], ts[21];
	if (signature_sign(secret, strlen(secret), body, len, sig)) {
		fprintf(stderr, "interactor-connector: cannot sign\n");
		return 1;
	}
	signature_format_timestamp(time(NULL), ts);
	printf("X-Interactor-Signature: %s\n", sig);
	printf("X-Interactor-Timestamp: %s\n", ts);
	cJSON *root = cJSON_ParseWithLength(body, len);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "execution_id");
	if (cJSON_IsString(id) && !strpbrk(id->valuestring, "\r\n"))
		printf("X-Interactor-Request-Id: %s\n", id->valuestring);
	cJSON_Delete(root);
	return 0;
}

/* ---- tools ---- */

static int cmd_tools(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		puts("usage: interactor-connector tools\n\nPrints the tool catalog as JSON.");
		return strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ? 0 : 2;
	}
	cJSON *arr = cJSON_CreateArray();
	for (const struct tool_def *t = tools_catalog; t->name; t++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", t->name);
		cJSON_AddStringToObject(o, "description", t->description);
		cJSON_AddItemToObject(o, "parameters", cJSON_Parse(t->parameters_schema));
		cJSON_AddItemToArray(arr, o);
	}
	char *text = cJSON_Print(arr);
	if (text)
		printf("%s\n", text);
	free(text);
	cJSON_Delete(arr);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(int argc, char **argv);
	} commands[] = {
		{"serve", cmd_serve},         {"check-config", cmd_check_config},
		{"introspect", cmd_introspect}, {"query", cmd_query},
		{"refresh", cmd_refresh},     {"drift", cmd_drift},
		{"audit", cmd_audit},
		{"sign", cmd_sign},           {"tools", cmd_tools},
	};
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(usage_main, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
		printf("interactor-connector %s (driver ABI %u)\n", CN_VERSION, CN_DRIVER_ABI_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "interactor-connector: unknown command '%s'\n\n%s", argv[1], usage_main);
	return 2;
}
