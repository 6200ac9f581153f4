/*
 * interactor-connector - serves read-only, parameterized database queries to
 * Interactor AI assistants through HMAC-signed tool callbacks.
 *
 * main.c: command-line dispatch and the daemon's life cycle.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdatomic.h>
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
#include "interactor_client.h"
#include "interactor_sync.h"
#include "rotation.h"
#include "runtime.h"
#include "scheduler.h"
#include "secrets.h"
#include "signature.h"
#include "source.h"
#include "tls.h"
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
	"  reload        make a running daemon read its configuration again (SIGHUP)\n"
	"  refresh       read schemas again now and print what changed (asks a running daemon)\n"
	"  drift         print mapping keys and new columns the mappings no longer describe\n"
	"  audit         print the audit log of tool calls as JSON lines\n"
	"  sign          sign a request body from stdin the way Interactor does (for curl)\n"
	"  tools         print the tools offered to the assistant, with their JSON Schema\n"
	"  register      register the tools with Interactor (idempotent) and push mappings\n"
	"  push-mappings send each source's merged semantic mappings to Interactor\n"
	"  rotate-secret give every tool a new callback secret without a failed callback\n"
	"  version       print the version\n"
	"\n"
	"Run 'interactor-connector <command> --help' for a command's options.\n";

static const char usage_serve[] =
	"usage: interactor-connector serve --config FILE [--listen HOST:PORT]\n"
	"\n"
	"Answers POST /v1/tools/{tool_name} (signed callbacks), GET /healthz and\n"
	"GET /readyz and GET /metrics. Refreshes each source's schema on its cron\n"
	"schedule (refresh, refresh_timezone) and on SIGUSR1. SIGHUP reads the\n"
	"configuration, mappings and certificate again (see `reload --help`). Writes\n"
	"its pid to STATE.pid (state.path) and holds a lock on it. SIGTERM or SIGINT\n"
	"stops accepting, lets running requests finish (up to 30 s) and exits 0.\n"
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
	"  -n, --no-connect     load the drivers and mappings but connect to no\n"
	"                       source (to check a file where its databases are\n"
	"                       out of reach, as in a package or image build)\n"
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

static const char usage_reload[] =
	"usage: interactor-connector reload --config FILE [--timeout SECONDS]\n"
	"\n"
	"Makes the daemon that runs with FILE's state file (state.path) read FILE\n"
	"again, as SIGHUP does, waits for the outcome and prints it. What changes:\n"
	"callback secrets, sources, mappings, limits, refresh schedules, log\n"
	"settings, server.allow_from, metrics.allow_from and the TLS certificate\n"
	"(for new connections). A source whose entry did not change keeps its\n"
	"connections; requests already running finish on the configuration they\n"
	"started with. A configuration that does not load is refused and the daemon\n"
	"keeps the one it runs. server.listen, the connection limits, state.*,\n"
	"drivers.dir and metrics.enabled take effect at the next restart.\n"
	"\n"
	"  -c, --config FILE     the daemon's configuration file\n"
	"  -t, --timeout SECONDS how long to wait for the outcome (default 120)\n"
	"  -h, --help            this text\n"
	"\n"
	"Exit status: 0 reloaded, 1 refused, no daemon or no answer, 2 usage.\n";

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

/* The command line's "secrets" request: read the rotation file again and
 * say which secrets are accepted now (by fingerprint, never the values). */
static cJSON *secrets_answer(void *ctx, const char *verb, const char *source)
{
	struct app *app = ctx;
	struct cn_error err = {0};
	(void)verb;
	(void)source;
	cJSON *a = cJSON_CreateObject();
	if (!a)
		return NULL;
	if (secrets_reload(app->secrets, &err)) {
		log_error("callback secrets not reloaded, the ones before stay: %s", err.message);
		cJSON_AddStringToObject(a, "error", err.message);
		return a;
	}
	struct secret_set *set = secrets_acquire(app->secrets);
	int64_t now = (int64_t)app->now();
	cJSON *fps = cJSON_AddArrayToObject(a, "accepted");
	size_t n = 0;
	for (size_t i = 0; fps && i < set->n; i++) {
		const struct secret_item *it = &set->items[i];
		if (it->expires_at && it->expires_at <= now)
			continue;
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "fingerprint", it->fingerprint);
		refresh_add_time(o, "expires_at", it->expires_at);
		cJSON_AddBoolToObject(o, "primary", it->primary);
		cJSON_AddItemToArray(fps, o);
		n++;
	}
	secret_set_release(set);
	log_info("callback secrets reloaded (asked by rotate-secret): %zu accepted", n);
	return a;
}

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

/* What the server may change while it runs, from cfg: the networks (into
 * the two arrays given) and the TLS pair. */
static int http_live_of(const struct config *cfg, struct http_net *nets, struct http_net *mnets,
			struct http_live *live, struct cn_error *err)
{
	memset(live, 0, sizeof *live);
	bool metrics_default = cfg->metrics_enabled && cfg->nmetrics_allow_from == 0;
	int rc = parse_nets("server.allow_from", cfg->allow_from, cfg->nallow_from, nets,
			    &live->nallow, err);
	if (rc == CN_OK)
		rc = parse_nets("metrics.allow_from",
				metrics_default ? metrics_default_nets : cfg->metrics_allow_from,
				metrics_default ? sizeof metrics_default_nets / sizeof *metrics_default_nets
				: cfg->metrics_enabled ? cfg->nmetrics_allow_from : 0,
				mnets, &live->nmetrics_allow, err);
	live->allow = nets;
	live->metrics_allow = mnets;
	if (rc || !*cfg->tls_cert)
		return rc;
	char *cert = config_resolve_path(cfg, cfg->tls_cert);
	char *key = config_resolve_path(cfg, cfg->tls_key);
	rc = cert && key ? tls_keys_load(cert, key, &live->tls, err)
			 : cn_error_set(err, CN_ENOMEM, "out of memory");
	free(cert);
	free(key);
	return rc;
}

/* What `serve` runs on. A reload replaces the generation in runtime, the
 * scheduler and what the server may change; the rest stays. */
struct daemon {
	const char *path;   /* the configuration file, read again on reload */
	const char *listen; /* --listen; NULL: server.listen */
	struct runtime runtime;
	struct app app;
	struct http_server *srv;
	struct control *ctl;
	struct scheduler *sched;
	struct sync_daemon *sync; /* the platform: registering at start, pushing mappings */
	pthread_rwlock_t sync_lock; /* guards the sync pointer against notify_sync */
	uint64_t attempts;  /* reloads tried */
	/* state.backend postgres: the version of the shared secrets loaded (the
	 * store's thread alone uses it after the start), and whether the last
	 * beat failed (said once, not every 2 s) */
	int64_t secrets_version;
	int64_t secrets_refused; /* a version that could not be loaded: not tried again */
	bool beat_failing;
};

/* A refresh published a new view: the platform sync (when there is one)
 * looks at the mappings again. ctx is the daemon; a reload swaps its sync
 * under the write lock, so a notifier never holds one being stopped. */
static void notify_sync(void *ctx, struct source *s)
{
	struct daemon *d = ctx;
	(void)s;
	pthread_rwlock_rdlock(&d->sync_lock);
	if (d->sync)
		sync_daemon_notify(d->sync);
	pthread_rwlock_unlock(&d->sync_lock);
}

/* Stop the platform sync (it works on one configuration's sources). */
static void daemon_sync_stop(struct daemon *d)
{
	pthread_rwlock_wrlock(&d->sync_lock);
	struct sync_daemon *old = d->sync;
	d->sync = NULL;
	pthread_rwlock_unlock(&d->sync_lock);
	sync_daemon_stop(old);
}

/* Start it on the current configuration; NULL when it has nothing to do. */
static int daemon_sync_start(struct daemon *d, struct cn_error *err)
{
	struct generation *g = runtime_acquire(&d->runtime);
	struct sync_daemon *sync = NULL;
	int rc = sync_daemon_start(g->cfg, g->sources, g->catalog, d->app.secrets, &sync, err);
	runtime_release(&d->runtime, g);
	pthread_rwlock_wrlock(&d->sync_lock);
	d->sync = sync;
	pthread_rwlock_unlock(&d->sync_lock);
	return rc;
}

/* The execution store cfg names: the SQLite file at state_path, or the
 * shared PostgreSQL database (state.backend postgres). */
static int state_open(const struct config *cfg, const char *state_path, struct exec_store **out,
		      struct cn_error *err)
{
	struct exec_store_opts o = {.pool = cfg->state_pool};
	if (config_state_shared(cfg))
		o.dsn = cfg->state_dsn;
	return exec_store_open(state_path, &o, out, err);
}

/* A claim is taken over as stale after this. In PostgreSQL the replicas
 * refresh the claims they hold (a heartbeat), so state.stale_timeout; in
 * SQLite claims are not refreshed: longer than any query may run. */
static uint32_t stale_after_s(const struct config *cfg)
{
	if (strcmp(cfg->state_backend, "postgres") == 0)
		return cfg->state_stale_timeout;
	uint32_t s = 120;
	for (size_t i = 0; i < cfg->nsources; i++)
		if (cfg->sources[i].limits.async_timeout_ms / 1000 + 60 > s)
			s = cfg->sources[i].limits.async_timeout_ms / 1000 + 60;
	return s;
}

/* The callback secrets: the rotation file, or with state.backend postgres
 * the document the replicas share in store (its version into *version). */
static int secrets_open_for(const struct config *cfg, struct exec_store *store, struct secrets **out,
			    int64_t *version, struct cn_error *err)
{
	*version = 0;
	if (!config_state_shared(cfg))
		return secrets_open(cfg, out, err);
	char *doc = NULL;
	int rc = exec_store_secrets_get(store, -1, &doc, version, err);
	if (rc == CN_OK && !doc) {
		/* moving from the SQLite store: the rotation file of this machine, if
		 * any, becomes the shared document (the first replica to start wins;
		 * the others read what it put) */
		char *path = secrets_path(cfg);
		struct secrets_file f;
		bool exists = false;
		rc = path ? secrets_file_read(path, &f, &exists, err)
			  : cn_error_set(err, CN_ENOMEM, "out of memory");
		bool have = rc == CN_OK;
		char *text = rc == CN_OK && exists ? secrets_file_format(&f) : NULL;
		if (rc == CN_OK && exists && !text)
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		if (text) {
			struct cn_error perr = {0};
			if (exec_store_secrets_put(store, text, 0, version, &perr) == CN_OK)
				log_info("callback secrets: %s copied into the shared state store, which "
					 "is read from now on instead",
					 path);
			explicit_bzero(text, strlen(text));
			free(text);
			rc = exec_store_secrets_get(store, -1, &doc, version, err);
		}
		if (have)
			secrets_file_clear(&f);
		free(path);
	}
	if (rc == CN_OK)
		rc = secrets_open_doc(cfg, doc, out, err);
	if (doc) {
		explicit_bzero(doc, strlen(doc));
		free(doc);
	}
	return rc;
}

/* The store's beat (every 2 s, its own thread; state.backend postgres): load
 * the shared secrets when their version changed, then say that this replica
 * runs and which version it has loaded, which is what rotate-secret waits
 * for before it gives a new secret to the platform. */
static void secrets_beat(void *ctx)
{
	struct daemon *d = ctx;
	struct cn_error err = {0};
	char *doc = NULL;
	int64_t version = 0;
	int rc = exec_store_secrets_get(d->app.store, d->secrets_version, &doc, &version, &err);
	if (rc == CN_OK && version != d->secrets_version && version != d->secrets_refused) {
		rc = secrets_reload_doc(d->app.secrets, doc, &err);
		if (rc) {
			d->secrets_refused = version;
			log_error("callback secrets version %lld not loaded, the ones before stay: %s",
				  (long long)version, err.message);
		} else {
			struct secret_set *set = secrets_acquire(d->app.secrets);
			const char *cur[SECRETS_MAX];
			size_t n = secret_set_current(set, (int64_t)d->app.now(), cur);
			secret_set_release(set);
			log_info("callback secrets version %lld loaded from the state store: %zu accepted",
				 (long long)version, n);
			d->secrets_version = version;
		}
	}
	if (doc) {
		explicit_bzero(doc, strlen(doc));
		free(doc);
	}
	/* reported even when the new version was refused: rotate-secret then
	 * waits for this replica and names it, rather than missing it */
	struct cn_error rerr = {0};
	if (exec_store_replica_report(d->app.store, d->secrets_version, &rerr) && rc == CN_OK) {
		rc = rerr.code;
		err = rerr;
	}
	if (rc && !d->beat_failing)
		log_warn("%s", err.message);
	else if (!rc && d->beat_failing)
		log_info("callback secrets: the state store answers again");
	d->beat_failing = rc != CN_OK;
}

/* Global keys that apply at the next start only. */
static const char *const restart_keys[] = {
	"server.listen", "server.max_connections", "server.max_connections_per_address",
	"server.request_timeout", "state.path", "state.backend", "state.dsn", "state.pool",
	"state.stale_timeout", "state.snapshots", "drivers.dir", "metrics.enabled",
};

static bool is_restart_key(const char *path)
{
	for (size_t i = 0; i < sizeof restart_keys / sizeof *restart_keys; i++)
		if (strcmp(path, restart_keys[i]) == 0)
			return true;
	return false;
}

/* The least-privilege warnings of the sources that are not in old (NULL: all). */
static void log_source_audits(struct source_set *set, struct source_set *old)
{
	for (size_t i = 0; i < set->n; i++) {
		struct source *s = set->items[i];
		char warning[600];
		struct cn_error e = {0};
		struct source_status st;
		if (old && sources_find(old, s->cfg->name) == s)
			continue;
		source_status(s, &st);
		if (st.available && source_audit(s, warning, sizeof warning, &e) == CN_OK && warning[0])
			log_warn("source '%s': %s", s->cfg->name, warning);
	}
}

/* Read the configuration file again and switch to it, or keep the running
 * one and say why. Returns the outcome that `reload` prints. */
static cJSON *daemon_reload(struct daemon *d)
{
	struct cn_error err = {0};
	struct config *cfg = NULL;
	struct source_set *set = NULL;
	struct http_net nets[HTTP_MAX_ALLOW], mnets[HTTP_MAX_ALLOW];
	struct http_live live = {0};
	struct sources_reopen_report rep = {0};
	struct tool_catalog *catalog = NULL;
	struct generation *g = runtime_acquire(&d->runtime);
	const struct config *old = g->cfg;
	cJSON *out = cJSON_CreateObject();
	cJSON_AddNumberToObject(out, "pid", (double)getpid());
	cJSON_AddNumberToObject(out, "attempt", (double)++d->attempts);

	int rc = config_load(d->path, &cfg, &err);
	if (rc == CN_OK && !*cfg->tls_cert != !*old->tls_cert)
		rc = cn_error_set(&err, CN_ECONFIG,
				  "%s: switching between HTTP and HTTPS needs a restart",
				  *old->tls_cert ? "server.tls removed" : "server.tls added");
	if (rc == CN_OK)
		rc = http_live_of(cfg, nets, mnets, &live, &err);
	if (rc == CN_OK)
		rc = sources_reopen(cfg, g->sources, &set, &rep, &err);
	if (rc == CN_OK)
		rc = tool_catalog_new(cfg, set, &catalog, &err);
	if (rc == CN_OK)
		rc = tool_catalog_check(catalog, set, &err);
	if (rc == CN_OK && d->app.secrets)
		rc = secrets_use_config(d->app.secrets, cfg, &err);
	if (rc) {
		log_error("reload refused, still running the configuration read before: %s", err.message);
		metrics_reload(false);
		cJSON_AddStringToObject(out, "status", "refused");
		cJSON_AddStringToObject(out, "error", err.message);
		tls_keys_free(live.tls);
		tool_catalog_free(catalog);
		sources_close(set);
		config_free(cfg);
		runtime_release(&d->runtime, g);
		return out;
	}
	const char *changed[64];
	size_t nchanged = config_global_changes(old, cfg, changed, 64);
	cJSON *later = cJSON_AddArrayToObject(out, "restart_needed");
	for (size_t i = 0; i < nchanged; i++) {
		if (!is_restart_key(changed[i]))
			continue;
		if (!(d->listen && strcmp(changed[i], "server.listen") == 0))
			log_warn("reload: %s changed; it takes effect at the next restart", changed[i]);
		cJSON_AddItemToArray(later, cJSON_CreateString(changed[i]));
	}
	log_source_audits(set, g->sources);
	runtime_release(&d->runtime, g);

	scheduler_stop(d->sched); /* after the refresh that runs, if any */
	d->sched = NULL;
	daemon_sync_stop(d);
	uint64_t number = runtime_install(&d->runtime, cfg, set, catalog);
	if (!number) {
		/* out of memory: keep what runs; the sources it kept are still its */
		tool_catalog_free(catalog);
		sources_close(set);
		config_free(cfg);
		tls_keys_free(live.tls);
		cJSON_AddStringToObject(out, "status", "refused");
		cJSON_AddStringToObject(out, "error", "out of memory");
		log_error("reload refused: out of memory");
	} else {
		if (http_server_update(d->srv, &live, &err))
			log_warn("reload: %s", err.message);
		apply_log_settings(cfg, LOG_LEVEL_DEBUG);
		log_info("reloaded %s (configuration %llu): %zu source(s) kept as they were, %zu of them "
			 "with new mappings; %zu opened; %zu closed once their requests finish",
			 d->path, (unsigned long long)number, rep.kept, rep.remapped, rep.opened,
			 rep.closed);
		metrics_reload(true);
		exec_store_set_stale(d->app.store, stale_after_s(cfg));
		cJSON_AddStringToObject(out, "status", "ok");
		cJSON_AddNumberToObject(out, "configuration", (double)number);
		cJSON *srcs = cJSON_AddObjectToObject(out, "sources");
		cJSON_AddNumberToObject(srcs, "kept", (double)rep.kept);
		cJSON_AddNumberToObject(srcs, "remapped", (double)rep.remapped);
		cJSON_AddNumberToObject(srcs, "opened", (double)rep.opened);
		cJSON_AddNumberToObject(srcs, "closed", (double)rep.closed);
	}
	if (daemon_sync_start(d, &err))
		log_error("reload: the platform sync is stopped: %s", err.message);
	g = runtime_acquire(&d->runtime);
	if (scheduler_start(g->sources, d->ctl, &d->sched, &err))
		log_error("reload: schema refreshes are stopped: %s", err.message);
	runtime_release(&d->runtime, g);
	return out;
}

/* The state file's upkeep: expired answers, and audit records older than
 * audit.retention_days, each deleted in small transactions. */
static void state_upkeep(struct daemon *d)
{
	struct generation *g = runtime_acquire(&d->runtime);
	unsigned retention_days = g->cfg->audit_retention_days;
	runtime_release(&d->runtime, g);
	struct cn_error err = {0};
	uint64_t removed = 0;
	time_t now = time(NULL);
	if (exec_store_expire(d->app.store, now, &removed, &err))
		log_warn("execution store: %s", err.message);
	else if (removed)
		log_info("execution store: %llu expired answer(s) removed", (unsigned long long)removed);
	int64_t before = ((int64_t)now - (int64_t)retention_days * 86400) * 1000;
	if (exec_store_audit_prune(d->app.store, before, &removed, &err))
		log_warn("audit log: %s", err.message);
	else if (removed)
		log_info("audit log: %llu record(s) older than %u days removed", (unsigned long long)removed,
			 retention_days);
}

static int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"listen", required_argument, NULL, 'l'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	struct daemon d = {0};
	pthread_rwlock_init(&d.sync_lock, NULL);
	int c;
	while ((c = getopt_long(argc, argv, "c:l:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': d.path = optarg; break;
		case 'l': d.listen = optarg; break;
		case 'h': fputs(usage_serve, stdout); return 0;
		default: fputs(usage_serve, stderr); return 2;
		}
	}
	if (optind != argc) {
		fputs(usage_serve, stderr);
		return 2;
	}
	struct config *cfg = NULL;
	int ret = load_config(d.path, &cfg);
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

	d.app.now = clock_now;
	struct source_set *set = NULL;
	struct tool_catalog *catalog = NULL;
	bool running = false;
	struct cn_error err = {0};
	const char *listen = d.listen ? d.listen : cfg->listen;
	char *state_path = config_resolve_path(cfg, cfg->state_path);
	ret = 1;
	if (!state_path)
		goto out;
	/* a `refresh` command may hold the state file for a moment */
	for (unsigned waited = 0;; waited += 250) {
		int rc = state_open(cfg, state_path, &d.app.store, &err);
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
	exec_store_set_stale(d.app.store, stale_after_s(cfg));
	if (control_open(state_path, &d.ctl, &err) ||
	    secrets_open_for(cfg, d.app.store, &d.app.secrets, &d.secrets_version, &err)) {
		log_error("%s", err.message);
		goto out;
	}
	exec_store_set_beat(d.app.store, secrets_beat, &d);
	if (cfg->metrics_enabled)
		metrics_init(); /* before the sources: their first refresh counts */
	struct sources_opts sopts = {.store = d.app.store};
	if (sources_open_with(cfg, &sopts, &set, &err) ||
	    tool_catalog_new(cfg, set, &catalog, &err) ||
	    tool_catalog_check(catalog, set, &err)) {
		log_error("%s", err.message);
		goto out;
	}
	log_source_audits(set, NULL);
	if (runtime_init(&d.runtime, cfg, set, catalog)) {
		log_error("out of memory");
		goto out;
	}
	running = true; /* cfg, set and catalog belong to the runtime now */
	d.app.runtime = &d.runtime;
	sources_on_refresh(set, notify_sync, &d); /* every later set inherits it */
	if (daemon_sync_start(&d, &err)) {
		log_error("%s", err.message);
		goto out;
	}
	if (scheduler_start(set, d.ctl, &d.sched, &err)) {
		log_error("%s", err.message);
		goto out;
	}
	struct http_net nets[HTTP_MAX_ALLOW], mnets[HTTP_MAX_ALLOW];
	struct http_options hopts = {
		.listen = listen,
		.max_connections = cfg->max_connections,
		.per_address = cfg->max_connections_per_address,
		.timeout_s = cfg->request_timeout,
	};
	if (http_live_of(cfg, nets, mnets, &hopts.live, &err) ||
	    http_server_start(&d.app, &hopts, &d.srv, &err)) {
		log_error("%s", err.message);
		goto out;
	}
	log_info("interactor-connector %s listening on %s (port %u, %s), %zu source(s), up to %u "
		 "connections, %u per client address", CN_VERSION, listen, http_server_port(d.srv),
		 *cfg->tls_cert ? "HTTPS" : "plain HTTP", cfg->nsources, cfg->max_connections,
		 cfg->max_connections_per_address);
	if (*cfg->tls_cert)
		log_info("TLS certificate valid until %lld (unix time)", (long long)tls_current_not_after());
	if (!*cfg->tls_cert && !http_listen_is_loopback(listen))
		log_warn("serving plain HTTP on %s, which is not a loopback address: callbacks and their "
			 "answers cross the network unencrypted; set server.tls.cert and server.tls.key, "
			 "or listen on 127.0.0.1 behind a TLS proxy", listen);

	state_upkeep(&d);
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
			state_upkeep(&d);
			clock_gettime(CLOCK_MONOTONIC, &upkeep_at);
			upkeep_at.tv_sec += UPKEEP_S;
			continue;
		}
		if (sig == SIGHUP) {
			log_info("SIGHUP: reading %s again", d.path);
			cJSON *outcome = daemon_reload(&d);
			if (!outcome || control_reload_note(d.ctl, outcome))
				log_warn("reload: the outcome could not be recorded for `interactor-connector "
					 "reload`");
			cJSON_Delete(outcome);
			continue;
		}
		if (sig == SIGUSR1) {
			/* sigqueue()d by the command line: requests are waiting; a plain one: refresh
			 * all. Secrets are reloaded here, never behind a long refresh. */
			if (info.si_code == SI_QUEUE)
				control_serve(d.ctl, "secrets", secrets_answer, &d.app);
			scheduler_poke(d.sched, info.si_code == SI_QUEUE);
			continue;
		}
		if (sig > 0) {
			log_info("signal %d: stopping; no new requests, finishing running ones", sig);
			break;
		}
	}
	exec_store_set_beat(d.app.store, NULL, NULL);
	http_server_stop(d.srv, DRAIN_MS);
	d.srv = NULL;
	scheduler_stop(d.sched);
	d.sched = NULL;
	/* calls answered 202 may still run: they get what is left of the drain,
	 * then their queries are canceled (a retry after the restart runs them) */
	if (request_async_drain(DRAIN_MS / 2)) {
		struct generation *g = runtime_acquire(&d.runtime);
		sources_cancel(g->sources);
		runtime_release(&d.runtime, g);
		int left = request_async_drain(10000);
		if (left) {
			log_warn("%d asynchronous quer%s did not stop; exiting without closing the sources",
				 left, left == 1 ? "y" : "ies");
			/* their threads still use the configuration and the store: keep both */
			exec_store_flush(d.app.store);
			running = false;
			cfg = NULL;
			set = NULL;
			catalog = NULL;
			d.app.store = NULL;
		}
	}
	log_info("stopped");
	ret = 0;
out:
	http_server_stop(d.srv, 0);
	scheduler_stop(d.sched);
	daemon_sync_stop(&d);
	if (running) {
		runtime_destroy(&d.runtime);
	} else {
		sources_close(set);
		tool_catalog_free(catalog);
		config_free(cfg);
	}
	if (d.app.store)
		exec_store_set_beat(d.app.store, NULL, NULL);
	secrets_free(d.app.secrets);
	control_close(d.ctl);
	exec_store_close(d.app.store);
	metrics_shutdown();
	free(state_path);
	return ret;
}

/* ---- reload ---- */

/* The attempt number of the daemon pid's latest recorded reload, 0 if none. */
static double reload_attempt(const cJSON *outcome, pid_t pid)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(outcome, "pid");
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(outcome, "attempt");
	return cJSON_IsNumber(p) && (pid_t)p->valuedouble == pid && cJSON_IsNumber(a) ? a->valuedouble
										   : 0;
}

static void print_reload(const cJSON *o)
{
	const cJSON *status = cJSON_GetObjectItemCaseSensitive(o, "status");
	if (!cJSON_IsString(status) || strcmp(status->valuestring, "ok") != 0) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
		printf("refused: %s\nthe daemon keeps running the configuration it had\n",
		       cJSON_IsString(e) ? e->valuestring : "(no reason given)");
		return;
	}
	const cJSON *srcs = cJSON_GetObjectItemCaseSensitive(o, "sources");
	int n[4] = {0};
	static const char *const keys[] = {"kept", "remapped", "opened", "closed"};
	for (int i = 0; i < 4; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(srcs, keys[i]);
		n[i] = cJSON_IsNumber(v) ? v->valueint : 0;
	}
	printf("reloaded: %d source(s) kept as they were (%d with new mappings), %d opened, %d "
	       "closed\n", n[0], n[1], n[2], n[3]);
	const cJSON *later = cJSON_GetObjectItemCaseSensitive(o, "restart_needed"), *k;
	cJSON_ArrayForEach(k, later)
	{
		if (cJSON_IsString(k))
			printf("%s changed: it takes effect at the next restart\n", k->valuestring);
	}
}

static int cmd_reload(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"timeout", required_argument, NULL, 't'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL;
	long timeout_s = 120;
	int c;
	char *end;
	while ((c = getopt_long(argc, argv, "c:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 't':
			timeout_s = strtol(optarg, &end, 10);
			if (*end || timeout_s < 1 || timeout_s > 3600) {
				fprintf(stderr, "interactor-connector: --timeout takes 1 to 3600 seconds\n");
				return 2;
			}
			break;
		case 'h': fputs(usage_reload, stdout); return 0;
		default: fputs(usage_reload, stderr); return 2;
		}
	}
	if (optind != argc) {
		fputs(usage_reload, stderr);
		return 2;
	}
	struct config *cfg = NULL;
	int ret = load_config(path, &cfg);
	if (ret) {
		if (ret == 1)
			fprintf(stderr, "interactor-connector: nothing was sent; a running daemon keeps "
					"its configuration\n");
		return ret;
	}
	char *state_path = config_resolve_path(cfg, cfg->state_path);
	config_free(cfg);
	pid_t pid = state_path ? control_daemon(state_path) : 0;
	if (!pid) {
		fprintf(stderr, "interactor-connector: no daemon runs with the state file %s (state.path "
				"of %s)\n", state_path ? state_path : "?", path);
		free(state_path);
		return 1;
	}
	cJSON *before = control_reload_outcome(state_path);
	double seen = reload_attempt(before, pid);
	cJSON_Delete(before);
	if (kill(pid, SIGHUP) != 0) {
		fprintf(stderr, "interactor-connector: cannot signal the daemon (pid %ld): %s\n", (long)pid,
			strerror(errno));
		free(state_path);
		return 1;
	}
	ret = 1;
	struct timespec tick = {0, 50 * 1000000L};
	for (long waited = 0; waited < timeout_s * 1000; waited += 50) {
		cJSON *o = control_reload_outcome(state_path);
		if (reload_attempt(o, pid) > seen) {
			print_reload(o);
			const cJSON *status = cJSON_GetObjectItemCaseSensitive(o, "status");
			ret = cJSON_IsString(status) && strcmp(status->valuestring, "ok") == 0 ? 0 : 1;
			cJSON_Delete(o);
			free(state_path);
			return ret;
		}
		cJSON_Delete(o);
		nanosleep(&tick, NULL);
	}
	fprintf(stderr, "interactor-connector: the daemon (pid %ld) did not report within %ld s; see "
			"its log\n", (long)pid, timeout_s);
	free(state_path);
	return 1;
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
					     {"no-connect", no_argument, NULL, 'n'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL;
	int quiet = 0, no_connect = 0, c;
	while ((c = getopt_long(argc, argv, "c:qnh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'q': quiet = 1; break;
		case 'n': no_connect = 1; break;
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
	bool shared = config_state_shared(cfg);
	if (state_path && !daemon && !no_connect && (shared || stat(state_path, &st_state) == 0) &&
	    state_open(cfg, state_path, &store, &err) != CN_OK)
		store = NULL;
	char state_failure[sizeof err.message] = "";
	if (shared && !no_connect && !daemon && !store)
		snprintf(state_failure, sizeof state_failure, "%s", err.message);
	struct sources_opts sopts = {.store = store, .store_read_only = true, .lazy = no_connect};
	if (sources_open_with(cfg, &sopts, &set, &err)) {
		fprintf(stderr, "interactor-connector: %s\n", err.message);
		exec_store_close(store);
		free(state_path);
		config_free(cfg);
		return 1;
	}
	printf("# check\n");
	/* the shared state store is checked like a source (opening it creates
	 * or migrates its tables, as the daemon would) */
	if (shared && !no_connect && !daemon) {
		printf("state store (postgres): %s%s\n", store ? "ok" : "FAILED: ", state_failure);
		ret |= store == NULL;
	}
	for (size_t i = 0; i < set->n; i++) {
		struct source *s = set->items[i];
		void *h;
		struct cn_error e = {0};
		if (no_connect) {
			printf("source %s (%s): driver %s loaded; not connected (--no-connect)\n",
			       s->cfg->name, s->cfg->driver, s->module->path);
		} else if (source_ready(s, &h, &e) == CN_OK) {
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
	struct tool_catalog *catalog = NULL;
	if (tool_catalog_new(cfg, set, &catalog, &err) || tool_catalog_check(catalog, set, &err)) {
		printf("tools: FAILED: %s\n", err.message);
		ret = 1;
	} else if (cfg->ntools) {
		printf("tools: %zu curated, ", cfg->ntools);
		for (size_t i = 0; i < catalog->ncurated; i++)
			printf("%s%s (%s)", i ? ", " : "", catalog->curated[i].cfg->name,
			       atomic_load(&catalog->curated[i].verdict) == CURATED_ACCEPTED
				   ? "ok" : "not checked: its source is unavailable");
		printf("\n");
	}
	tool_catalog_free(catalog);
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
static int daemon_or_store(const struct config *cfg, const char *state_path, bool create, pid_t *pid,
			   struct exec_store **store, struct cn_error *err)
{
	*store = NULL;
	for (unsigned waited = 0;; waited += 250) {
		if ((*pid = control_daemon(state_path)) != 0)
			return CN_OK;
		struct stat st;
		if (!create && !config_state_shared(cfg) && stat(state_path, &st) != 0)
			return cn_error_set(err, CN_ENOTFOUND,
					    "no state file %s and no daemon using it: nothing was recorded "
					    "there (is state.path the daemon's?)", state_path);
		int rc = state_open(cfg, state_path, store, err);
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
	int rc = state_path ? daemon_or_store(cfg, state_path, true, &pid, &store, err)
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
	int rc = state_path ? daemon_or_store(cfg, state_path, false, &pid, &store, &err)
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

/* ---- register, push-mappings, rotate-secret ---- */

static const char usage_register[] =
	"usage: interactor-connector register --config FILE [--dry-run] [--prune] [--no-mappings]\n"
	"\n"
	"Makes Interactor's tools match the catalog (see `tools --config`): lists\n"
	"the account's tools, creates the missing ones (with the callback secret),\n"
	"updates those whose description, parameters or callback_url changed, and\n"
	"leaves identical ones alone, so a second run changes nothing. Tools are\n"
	"named interactor.tool_prefix + name, their callback_url is under\n"
	"server.public_url. Then pushes each source's mappings (push-mappings).\n"
	"Needs interactor.client_id and interactor.client_secret.\n"
	"\n"
	"  -c, --config FILE    configuration file\n"
	"  -n, --dry-run        print the plan, change nothing\n"
	"  -p, --prune          delete tools with the prefix that are no longer offered\n"
	"  -M, --no-mappings    do not push the mappings\n"
	"  -h, --help           this text\n"
	"\n"
	"Exit status: 0 when everything is in step, 1 on a failure, 2 on bad usage.\n";

static const char usage_push[] =
	"usage: interactor-connector push-mappings --config FILE [SOURCE] [--force] [--dry-run]\n"
	"\n"
	"Sends the merged semantic mappings (mapping files over database comments,\n"
	"hidden tables and columns left out) of each source with an\n"
	"interactor_data_source_id to PATCH /data-sources/{id}/semantic-mappings,\n"
	"when they changed since the last push (STATE.platform.json remembers).\n"
	"Connects to the sources to read their schemas.\n"
	"\n"
	"  -c, --config FILE    configuration file\n"
	"  -f, --force          push even when nothing changed\n"
	"  -n, --dry-run        say what would be pushed\n"
	"  -h, --help           this text\n";

static const char usage_rotate[] =
	"usage: interactor-connector rotate-secret --config FILE [--finish] [--dry-run]\n"
	"\n"
	"Makes a new callback secret, keeps it in auth.secrets_file (default\n"
	"STATE.secrets, mode 0600), has the running daemon accept it, then adds\n"
	"it to each of this connector's tools in Interactor's dual-secret mode\n"
	"(the old one stays valid interactor.rotation_window_hours). No callback\n"
	"fails on the way. A run cut short carries on when run again. With\n"
	"state.backend postgres the secrets are kept in the shared state store and\n"
	"every running replica must load them (60 s at most) before a tool gets one.\n"
	"\n"
	"  -c, --config FILE    configuration file\n"
	"  -f, --finish         end the window now: remove the old secret everywhere\n"
	"  -n, --dry-run        say what would be done\n"
	"  -h, --help           this text\n";

/* What the platform commands share: the config, the drivers (nothing
 * connected), the catalog and a client. */
struct platform_cmd {
	struct config *cfg;
	struct source_set *set;
	struct tool_catalog *catalog;
	struct ic_client *ic;
	struct exec_store *store; /* state.backend postgres: the shared store (platform_store) */
};

/* With state.backend postgres, open the shared state store into p->store
 * (the callback secrets live there); with SQLite nothing is opened. */
static int platform_store(struct platform_cmd *p, struct cn_error *err)
{
	if (!config_state_shared(p->cfg))
		return CN_OK;
	char *state_path = config_resolve_path(p->cfg, p->cfg->state_path);
	if (!state_path)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	int rc = state_open(p->cfg, state_path, &p->store, err);
	free(state_path);
	return rc;
}

static int platform_open(const char *path, struct platform_cmd *p)
{
	struct cn_error err = {0};
	memset(p, 0, sizeof *p);
	int ret = load_config(path, &p->cfg);
	if (ret)
		return ret;
	/* warnings (a retry, a source down), and every exchange when log.level is debug */
	bool debug = strcmp(p->cfg->log_level, "debug") == 0;
	apply_log_settings(p->cfg, debug ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN);
	struct sources_opts o = {.lazy = true};
	if (config_require_interactor(p->cfg, &err) || sources_open_with(p->cfg, &o, &p->set, &err) ||
	    tool_catalog_new(p->cfg, p->set, &p->catalog, &err) || ic_client_new(p->cfg, &p->ic, &err)) {
		fprintf(stderr, "interactor-connector: %s\n", err.message);
		return 1;
	}
	return 0;
}

static void platform_close(struct platform_cmd *p)
{
	exec_store_close(p->store);
	ic_client_free(p->ic);
	tool_catalog_free(p->catalog);
	sources_close(p->set);
	config_free(p->cfg);
}

static int cmd_register(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"dry-run", no_argument, NULL, 'n'},
					     {"prune", no_argument, NULL, 'p'},
					     {"no-mappings", no_argument, NULL, 'M'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL;
	bool dry_run = false, prune = false, mappings = true;
	int c;
	while ((c = getopt_long(argc, argv, "c:npMh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'n': dry_run = true; break;
		case 'p': prune = true; break;
		case 'M': mappings = false; break;
		case 'h': fputs(usage_register, stdout); return 0;
		default: fputs(usage_register, stderr); return 2;
		}
	}
	if (optind != argc) {
		fputs(usage_register, stderr);
		return 2;
	}
	struct platform_cmd p;
	int ret = platform_open(path, &p);
	struct secrets *secrets = NULL;
	struct cn_error err = {0};
	int64_t version;
	if (ret == 0 &&
	    (platform_store(&p, &err) || secrets_open_for(p.cfg, p.store, &secrets, &version, &err))) {
		fprintf(stderr, "interactor-connector: %s\n", err.message);
		ret = 1;
	}
	if (ret == 0) {
		struct secret_set *set = secrets_acquire(secrets);
		if (sync_register(p.ic, p.cfg, p.catalog, secret_set_primary(set, (int64_t)time(NULL)), prune,
				  dry_run, stdout, &err)) {
			fprintf(stderr, "interactor-connector: register: %s\n", err.message);
			ret = 1;
		}
		secret_set_release(set);
	}
	if (ret == 0 && mappings &&
	    sync_push_mappings(p.ic, p.set, NULL, false, dry_run, stdout, &err)) {
		fprintf(stderr, "interactor-connector: push-mappings: %s\n", err.message);
		ret = 1;
	}
	secrets_free(secrets);
	platform_close(&p);
	return ret;
}

static int cmd_push_mappings(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"force", no_argument, NULL, 'f'},
					     {"dry-run", no_argument, NULL, 'n'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL;
	bool force = false, dry_run = false;
	int c;
	while ((c = getopt_long(argc, argv, "c:fnh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'f': force = true; break;
		case 'n': dry_run = true; break;
		case 'h': fputs(usage_push, stdout); return 0;
		default: fputs(usage_push, stderr); return 2;
		}
	}
	if (argc - optind > 1) {
		fputs(usage_push, stderr);
		return 2;
	}
	struct platform_cmd p;
	int ret = platform_open(path, &p);
	struct cn_error err = {0};
	const char *source = optind < argc ? argv[optind] : NULL;
	if (ret == 0 && sync_push_mappings(p.ic, p.set, source, force, dry_run, stdout, &err)) {
		fprintf(stderr, "interactor-connector: push-mappings: %s\n", err.message);
		ret = 1;
	}
	platform_close(&p);
	return ret;
}

static int cmd_rotate_secret(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"finish", no_argument, NULL, 'f'},
					     {"dry-run", no_argument, NULL, 'n'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL;
	bool finish = false, dry_run = false;
	int c;
	while ((c = getopt_long(argc, argv, "c:fnh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'f': finish = true; break;
		case 'n': dry_run = true; break;
		case 'h': fputs(usage_rotate, stdout); return 0;
		default: fputs(usage_rotate, stderr); return 2;
		}
	}
	if (optind != argc) {
		fputs(usage_rotate, stderr);
		return 2;
	}
	struct platform_cmd p;
	int ret = platform_open(path, &p);
	struct cn_error err = {0};
	if (ret == 0 && platform_store(&p, &err)) {
		fprintf(stderr, "interactor-connector: %s\n", err.message);
		ret = 1;
	}
	if (ret == 0 && rotation_run(p.cfg, p.ic, p.catalog, p.store, finish, dry_run, stdout, &err)) {
		fprintf(stderr, "interactor-connector: rotate-secret: %s\n", err.message);
		ret = 1;
	}
	platform_close(&p);
	return ret;
}

/* ---- tools ---- */

static const char usage_tools[] =
	"usage: interactor-connector tools [--config FILE]\n"
	"\n"
	"Prints the tools offered to the assistant as JSON: name, description and\n"
	"the JSON Schema of their parameters. Without a config, the built-in tools;\n"
	"with one, the tools that config offers (run_query only when a source\n"
	"allows it, and its curated tools), named as `register` registers them\n"
	"(interactor.tool_prefix first) with their callback_url under\n"
	"server.public_url. The databases are not contacted.\n"
	"\n"
	"  -c, --config FILE    configuration file\n"
	"  -h, --help           this text\n";

static int cmd_tools(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *path = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case 'h': fputs(usage_tools, stdout); return 0;
		default: fputs(usage_tools, stderr); return 2;
		}
	}
	if (optind != argc) {
		fputs(usage_tools, stderr);
		return 2;
	}
	cJSON *arr = NULL;
	if (path) {
		struct config *cfg = NULL;
		struct source_set *set = NULL;
		struct tool_catalog *catalog = NULL;
		struct cn_error err = {0};
		int ret = load_config(path, &cfg);
		if (ret)
			return ret;
		apply_log_settings(cfg, LOG_LEVEL_WARN);
		/* drivers loaded (to tell SQL sources from document ones), nothing connected */
		struct sources_opts o = {.lazy = true};
		if (sources_open_with(cfg, &o, &set, &err) || tool_catalog_new(cfg, set, &catalog, &err)) {
			fprintf(stderr, "interactor-connector: %s\n", err.message);
			ret = 1;
		} else {
			arr = tool_catalog_to_json(catalog, cfg->public_url);
		}
		tool_catalog_free(catalog);
		sources_close(set);
		config_free(cfg);
		if (ret)
			return ret;
	} else {
		arr = cJSON_CreateArray();
		for (const struct tool_def *t = tools_catalog; arr && t->name; t++) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "name", t->name);
			cJSON_AddStringToObject(o, "description", t->description);
			cJSON_AddItemToObject(o, "parameters", cJSON_Parse(t->parameters_schema));
			cJSON_AddItemToArray(arr, o);
		}
	}
	char *text = arr ? cJSON_Print(arr) : NULL;
	if (text)
		printf("%s\n", text);
	free(text);
	cJSON_Delete(arr);
	return text ? 0 : 1;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(int argc, char **argv);
	} commands[] = {
		{"serve", cmd_serve},         {"check-config", cmd_check_config},
		{"introspect", cmd_introspect}, {"query", cmd_query},
		{"refresh", cmd_refresh},     {"drift", cmd_drift},         {"reload", cmd_reload},
		{"audit", cmd_audit},
		{"sign", cmd_sign},           {"tools", cmd_tools},
		{"register", cmd_register},   {"push-mappings", cmd_push_mappings},
		{"rotate-secret", cmd_rotate_secret},
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
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(argv[1], commands[i].name) == 0) {
			int rc = commands[i].run(argc - 1, argv + 1);
			ic_global_cleanup();
			return rc;
		}
	}
	fprintf(stderr, "interactor-connector: unknown command '%s'\n\n%s", argv[1], usage_main);
	return 2;
}
