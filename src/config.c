/*
 * config.c - the YAML configuration file -> struct config.
 *
 * Two tables of keys (global_keys for the file, source_keys for each entry of
 * `sources`) drive everything: walking the YAML tree, type conversion, range
 * and pattern checks, defaults, required keys, freeing, and config_print.
 * Adding a key means adding one row (and the field in config.h).
 *
 * Every error reads "FILE:LINE: KEY: what is wrong; what to do". Values of
 * sensitive keys (callback secrets) and of the dsn are never quoted in a
 * message, and config_print redacts them.
 */
#include "config.h"

#include <arpa/inet.h>

#include <ctype.h>
#include <regex.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "cron.h"
#include "curated.h"
#include "json_schema.h"
#include "tz.h"
#include "yaml_tree.h"

#define CK_MAX_ROWS 48       /* rows per table (static_assert below) */
#define CK_PATH_MAX 160      /* a dotted key path in a message */
#define CK_SHOW_MAX 64       /* bytes of a value or key quoted in a message */
#define CONFIG_MAX_VALUE 65536 /* bytes of one value after ${VAR} expansion */

#define CK_F_REQUIRED 1u  /* missing or empty is an error */
#define CK_F_SENSITIVE 2u /* never printed, never quoted in messages */
#define CK_F_DSN 4u       /* printed with its password redacted, never quoted in messages */
#define CK_F_PATH 8u      /* a path relative to the config file's directory */
#define CK_F_OPTIONAL 16u /* CK_STRING: NULL, CK_STRLIST: empty, when not set; not printed then */

#define SECRET_HINT                                                                          \
	"set auth.callback_secrets to the tool's callback_secret (at least 16 bytes, no "   \
	"surrounding blanks), for example \"${INTERACTOR_CALLBACK_SECRET}\" with `export " \
	"INTERACTOR_CALLBACK_SECRET=$(openssl rand -hex 32)`"

enum ck_type {
	CK_STRING,  /* char * */
	CK_UINT,    /* uint32_t in [min, max] */
	CK_BOOL,    /* bool: true | false */
	CK_STRLIST, /* char ** + size_t count at count_off; min..max items; a lone string is one item */
	CK_LIST,    /* a list of maps: items of item_size bytes at off, count at count_off, each
		       read with the sub table, then item_done */
	CK_OPTIONS, /* struct config_options: a driver's own key: value settings */
	CK_STATEMENT, /* char *: a string, or a map / list written out as JSON; the bool at
			 count_off says which (true: a document) */
};

struct loader;
struct walk;
/* After item i of a CK_LIST was read (w is its walk: keys and lines):
 * cross-field checks. Returns CN_OK or an error from err_at. */
typedef int (*ck_item_fn)(struct loader *ld, const struct walk *w, void *items, size_t i);

/* Fills why (for the message) and returns false when value is not acceptable. */
typedef bool (*ck_check_fn)(const char *value, char *why, size_t whylen);

struct ck_key {
	const char *path; /* dotted, relative to the table's map: "server.listen", "limits.timeout_ms" */
	enum ck_type type;
	size_t off;       /* offsetof the field */
	size_t count_off; /* CK_STRLIST, CK_LIST: offsetof the size_t count */
	const char *def;  /* CK_STRING default (NULL = "") */
	uint32_t def_u;   /* CK_UINT default; CK_BOOL 0 / 1 */
	uint32_t min, max; /* CK_UINT range; CK_STRLIST, CK_LIST item count */
	unsigned flags;
	const char *choices; /* CK_STRING: "a|b|c" */
	ck_check_fn check;   /* CK_STRING and CK_STRLIST items */
	const char *hint;    /* what to do when it is missing or empty */
	const char *doc;     /* one line, for config_print and the docs */
	/* CK_LIST */
	const struct ck_key *sub; /* the keys of each item */
	size_t nsub;
	size_t item_size;
	size_t line_off;     /* offsetof the item's `int line` */
	ck_item_fn item_done;
	const char *item_plural; /* "sources" */
	const char *item_one;    /* "source" */
	const char *item_keys;   /* "name, driver and dsn" */
};

static bool check_listen(const char *v, char *why, size_t n);
/* An address with an optional /prefix: 10.0.0.0/8, 192.168.1.7, 2001:db8::/32. */
static bool check_cidr(const char *v, char *why, size_t n)
{
	unsigned char addr[16];
	int family, prefix;
	if (config_parse_cidr(v, &family, addr, &prefix) == 0)
		return true;
	snprintf(why, n, "'%.64s' is not a network: write an address with an optional /prefix, "
		 "such as 10.0.0.0/8, 192.168.1.7 or 2001:db8::/32", v);
	return false;
}

int config_parse_cidr(const char *text, int *family, unsigned char addr[16], int *prefix)
{
	char host[64];
	const char *slash = strchr(text, '/');
	size_t hn = slash ? (size_t)(slash - text) : strlen(text);
	if (hn == 0 || hn >= sizeof host)
		return -1;
	memcpy(host, text, hn);
	host[hn] = '\0';
	memset(addr, 0, 16);
	int bits;
	if (inet_pton(AF_INET, host, addr) == 1) {
		*family = AF_INET;
		bits = 32;
	} else if (inet_pton(AF_INET6, host, addr) == 1) {
		*family = AF_INET6;
		bits = 128;
	} else {
		return -1;
	}
	*prefix = bits;
	if (slash) {
		char *end;
		long p = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || p < 0 || p > bits)
			return -1;
		*prefix = (int)p;
	}
	return 0;
}

static bool check_public_url(const char *v, char *why, size_t n);
static bool check_cidr(const char *v, char *why, size_t n);
static bool check_secret(const char *v, char *why, size_t n);
static bool check_source_name(const char *v, char *why, size_t n);
static bool check_driver_name(const char *v, char *why, size_t n);
static bool check_refresh(const char *v, char *why, size_t n);
static bool check_timezone(const char *v, char *why, size_t n);
static bool check_https_url(const char *v, char *why, size_t n);
static bool check_proxy(const char *v, char *why, size_t n);
static bool check_tool_prefix(const char *v, char *why, size_t n);
static bool check_tool_name(const char *v, char *why, size_t n);
static bool check_param_name(const char *v, char *why, size_t n);
static bool check_data_source_id(const char *v, char *why, size_t n);
static bool check_client_id(const char *v, char *why, size_t n);
static int source_done(struct loader *ld, const struct walk *w, void *items, size_t i);
static int tool_done(struct loader *ld, const struct walk *w, void *items, size_t i);
static int param_done(struct loader *ld, const struct walk *w, void *items, size_t i);

#define CFG(f) offsetof(struct config, f)
#define SRC(f) offsetof(struct config_source, f)
#define TOOL(f) offsetof(struct config_tool, f)
#define PARAM(f) offsetof(struct config_tool_param, f)
#define NKEYS(t) (sizeof(t) / sizeof((t)[0]))

const char *const config_builtin_tools[] = {"list_data_sources", "describe_schema", "search_schema",
					     "run_query", NULL};

#define DEFAULT_API_URL "https://core.interactor.com/api/v1"
#define DEFAULT_AUTH_URL "https://auth.interactor.com/api/v1/oauth/token"
#define INTERACTOR_HINT                                                                  \
	"set interactor.client_id and interactor.client_secret to the client credentials " \
	"of your Interactor account, e.g. client_secret: \"${INTERACTOR_CLIENT_SECRET}\""

static const struct ck_key param_keys[] = {
	{"name", CK_STRING, PARAM(name), .flags = CK_F_REQUIRED, .check = check_param_name,
	 .hint = "name the parameter, e.g. `name: customer_id`",
	 .doc = "the argument's name: 1-64 of A-Z a-z 0-9 _, not starting with a digit"},
	{"type", CK_STRING, PARAM(type_name), .flags = CK_F_REQUIRED,
	 .choices = "string|integer|number|boolean|date|timestamp",
	 .hint = "give its type: string, integer, number, boolean, date or timestamp",
	 .doc = "string, integer, number, boolean, date (YYYY-MM-DD) or timestamp (ISO 8601)"},
	{"description", CK_STRING, PARAM(description),
	 .doc = "what the value means, shown to the assistant"},
	{"required", CK_BOOL, PARAM(required), .def_u = 0,
	 .doc = "the assistant must give it; a missing optional one binds its default, or NULL"},
	{"enum", CK_STRLIST, PARAM(enum_values), PARAM(nenum), .min = 1, .max = CONFIG_MAX_ENUM,
	 .flags = CK_F_OPTIONAL, .doc = "the only values allowed (optional)"},
	{"minimum", CK_STRING, PARAM(minimum), .flags = CK_F_OPTIONAL,
	 .doc = "smallest value allowed (integer and number; optional)"},
	{"maximum", CK_STRING, PARAM(maximum), .flags = CK_F_OPTIONAL,
	 .doc = "largest value allowed (integer and number; optional)"},
	{"pattern", CK_STRING, PARAM(pattern), .flags = CK_F_OPTIONAL,
	 .doc = "POSIX extended regular expression a string must match (optional; anchor with ^$)"},
	{"default", CK_STRING, PARAM(default_value), .flags = CK_F_OPTIONAL,
	 .doc = "value bound when the assistant leaves it out (optional)"},
};

static const struct ck_key tool_keys[] = {
	{"name", CK_STRING, TOOL(name), .flags = CK_F_REQUIRED, .check = check_tool_name,
	 .hint = "name the tool, e.g. `name: orders_by_customer`",
	 .doc = "the tool's name: a letter, then up to 63 of A-Z a-z 0-9 _"},
	{"description", CK_STRING, TOOL(description), .flags = CK_F_REQUIRED,
	 .hint = "say what the tool answers: the assistant picks tools by their description",
	 .doc = "what the tool answers, shown to the assistant"},
	{"source", CK_STRING, TOOL(source), .flags = CK_F_REQUIRED, .check = check_source_name,
	 .hint = "name the source it queries, e.g. `source: sales`",
	 .doc = "the source the statement runs on"},
	{"statement", CK_STATEMENT, TOOL(statement), TOOL(statement_is_document),
	 .flags = CK_F_REQUIRED,
	 .hint = "give the query: SQL with $1..$n, or a MongoDB command document with "
		 "{\"$param\": N}",
	 .doc = "SQL with $1..$n, or a MongoDB command document with {\"$param\": N}"},
	{"parameters", CK_LIST, TOOL(params), TOOL(nparams), .max = CONFIG_MAX_TOOL_PARAMS,
	 .sub = param_keys, .nsub = NKEYS(param_keys), .item_size = sizeof(struct config_tool_param),
	 .line_off = PARAM(line), .item_done = param_done, .item_plural = "parameters",
	 .item_one = "parameter", .item_keys = "name and type",
	 .doc = "the values bound to $1..$n, in order"},
};

static const struct ck_key source_keys[] = {
	{"name", CK_STRING, SRC(name), .flags = CK_F_REQUIRED, .check = check_source_name,
	 .hint = "give the source a unique name such as `name: sales`",
	 .doc = "unique name the assistant uses: 1-64 of A-Z a-z 0-9 _ -"},
	{"driver", CK_STRING, SRC(driver), .flags = CK_F_REQUIRED, .check = check_driver_name,
	 .hint = "name the driver module, for example `driver: sqlite`",
	 .doc = "driver module: sqlite, postgres, mysql, mongodb, ..."},
	{"dsn", CK_STRING, SRC(dsn), .flags = CK_F_REQUIRED | CK_F_DSN,
	 .hint = "give the driver's connection string, for example `dsn: \"${SALES_DSN}\"`",
	 .doc = "the driver's connection string (passwords are redacted here)"},
	{"description", CK_STRING, SRC(description),
	 .doc = "what the data is, shown to the assistant"},
	{"mappings", CK_STRING, SRC(mappings_path), .flags = CK_F_PATH,
	 .doc = "semantic mapping file (optional)"},
	{"run_query", CK_BOOL, SRC(allow_run_query), .def_u = 1,
	 .doc = "offer ad-hoc read-only queries (false: curated queries only)"},
	{"pool.size", CK_UINT, SRC(pool_size), .def_u = 4, .min = 1, .max = 256,
	 .doc = "database connections kept open"},
	{"refresh", CK_STRING, SRC(refresh), .check = check_refresh,
	 .doc = "this source's refresh schedule: cron or off (\"\": the global refresh)"},
	{"limits.max_rows", CK_UINT, SRC(limits.max_rows), .def_u = 1000, .min = 1, .max = 100000,
	 .doc = "rows returned at most per query"},
	{"limits.max_result_bytes", CK_UINT, SRC(limits.max_result_bytes), .def_u = 60000,
	 .min = 1024, .max = 65536, .doc = "bytes of JSON result at most (the platform caps 64 KB)"},
	{"limits.timeout_ms", CK_UINT, SRC(limits.timeout_ms), .def_u = 10000, .min = 1,
	 .max = 25000, .doc = "statement time budget in ms (the platform waits 30 s)"},
	{"limits.async_timeout_ms", CK_UINT, SRC(limits.async_timeout_ms), .def_u = 0, .min = 0,
	 .max = 300000,
	 .doc = "ms a query may run when answered asynchronously (202, then the status URL); "
		"0: never, queries stop at timeout_ms"},
	{"options", CK_OPTIONS, SRC(options), .max = CONFIG_MAX_OPTIONS,
	 .doc = "the driver's own settings, key: value (see the driver's docs)"},
	{"interactor_data_source_id", CK_STRING, SRC(interactor_data_source_id),
	 .check = check_data_source_id,
	 .doc = "the platform's id of this data source: its mappings are pushed there (\"\": never)"},
};

static const struct ck_key global_keys[] = {
	{"server.listen", CK_STRING, CFG(listen), .def = "127.0.0.1:8080", .check = check_listen,
	 .doc = "address for Interactor's callbacks: host:port, or [ipv6]:port"},
	{"server.public_url", CK_STRING, CFG(public_url), .check = check_public_url,
	 .doc = "https URL under which Interactor reaches this connector (optional)"},
	{"server.max_connections", CK_UINT, CFG(max_connections), .def_u = 256, .min = 1,
	 .max = 4096, .doc = "connections served at once, each on its own thread"},
	{"server.max_connections_per_address", CK_UINT, CFG(max_connections_per_address),
	 .def_u = 32, .min = 1, .max = 4096,
	 .doc = "connections one client address may hold at once; more are closed at once"},
	{"server.request_timeout", CK_UINT, CFG(request_timeout), .def_u = 10, .min = 1, .max = 300,
	 .doc = "seconds a connection may stay silent before its request has arrived"},
	{"server.async_after_ms", CK_UINT, CFG(async_after_ms), .def_u = 20000, .min = 1000,
	 .max = 25000,
	 .doc = "ms: a query of a source with limits.async_timeout_ms still running this long "
		"is answered 202 with a status URL"},
	{"server.tls.cert", CK_STRING, CFG(tls_cert), .flags = CK_F_PATH,
	 .doc = "PEM certificate chain for HTTPS (TLS 1.2 and 1.3); \"\": plain HTTP"},
	{"server.tls.key", CK_STRING, CFG(tls_key), .flags = CK_F_PATH,
	 .doc = "PEM private key of the certificate"},
	{"server.allow_from", CK_STRLIST, CFG(allow_from), CFG(nallow_from), .min = 0, .max = 64,
	 .check = check_cidr,
	 .doc = "client networks allowed to connect (CIDR, e.g. 10.0.0.0/8); empty: any"},
	{"auth.callback_secrets", CK_STRLIST, CFG(callback_secrets), CFG(nsecrets), .min = 1,
	 .max = CONFIG_MAX_SECRETS, .flags = CK_F_REQUIRED | CK_F_SENSITIVE, .check = check_secret,
	 .hint = SECRET_HINT,
	 .doc = "HMAC keys that sign Interactor's callbacks; two during a rotation"},
	{"auth.timestamp_tolerance", CK_UINT, CFG(timestamp_tolerance), .def_u = 300, .min = 1,
	 .max = 3600, .doc = "seconds a signed request's timestamp may differ from now"},
	{"auth.secrets_file", CK_STRING, CFG(secrets_file), .flags = CK_F_PATH,
	 .doc = "where rotate-secret keeps the secrets it made (\"\": STATE.secrets)"},
	{"state.path", CK_STRING, CFG(state_path), .def = "./connector-state.db",
	 .flags = CK_F_PATH,
	 .doc = "SQLite file for execution answers, snapshots and audit records (backend sqlite); "
		"with either backend the prefix of this process's STATE.pid and control files"},
	{"state.backend", CK_STRING, CFG(state_backend), .def = "sqlite", .choices = "sqlite|postgres",
	 .doc = "where the state lives: sqlite (state.path, one process) or postgres (state.dsn, "
		"shared by replicas)"},
	{"state.dsn", CK_STRING, CFG(state_dsn), .flags = CK_F_SENSITIVE,
	 .doc = "PostgreSQL URI of the shared state database (backend postgres), e.g. "
		"\"${CN_STATE_DSN}\"; never printed"},
	{"state.pool", CK_UINT, CFG(state_pool), .def_u = 4, .min = 1, .max = 64,
	 .doc = "connections to the state database at most (backend postgres)"},
	{"state.stale_timeout", CK_UINT, CFG(state_stale_timeout), .def_u = 15, .min = 3, .max = 600,
	 .doc = "seconds without a heartbeat after which another replica takes over a running "
		"execution (backend postgres)"},
	{"state.snapshots", CK_UINT, CFG(snapshots), .def_u = 10, .min = 1, .max = 1000,
	 .doc = "schema snapshots (and their diffs) kept per source, besides the first"},
	{"drivers.dir", CK_STRING, CFG(drivers_dir), .flags = CK_F_PATH,
	 .doc = "directory searched first for driver modules (\"\": only the defaults)"},
	{"log.level", CK_STRING, CFG(log_level), .def = "info", .choices = "error|warn|info|debug",
	 .doc = "least severe level logged: error, warn, info or debug"},
	{"log.format", CK_STRING, CFG(log_format), .def = "json", .choices = "text|json",
	 .doc = "log line format: text or json"},
	{"metrics.enabled", CK_BOOL, CFG(metrics_enabled), .def_u = 1,
	 .doc = "serve GET /metrics and count for it; false: 404, nothing counted"},
	{"metrics.allow_from", CK_STRLIST, CFG(metrics_allow_from), CFG(nmetrics_allow_from),
	 .min = 0, .max = 64, .check = check_cidr,
	 .doc = "client networks that may read GET /metrics (CIDR); empty: loopback and private "
		"networks (10/8, 172.16/12, 192.168/16, fc00::/7)"},
	{"audit.enabled", CK_BOOL, CFG(audit_enabled), .def_u = 1,
	 .doc = "record every authenticated tool call in the state file (interactor-connector audit)"},
	{"audit.include_statements", CK_BOOL, CFG(audit_include_statements), .def_u = 0,
	 .doc = "record each statement's text too, not only its fingerprint (never parameters)"},
	{"audit.retention_days", CK_UINT, CFG(audit_retention_days), .def_u = 30, .min = 7, .max = 90,
	 .doc = "days audit records are kept; older ones are deleted hourly"},
	{"refresh", CK_STRING, CFG(refresh), .def = "@hourly", .check = check_refresh,
	 .doc = "when every source's schema is read again: cron (5 fields or @hourly...) or off"},
	{"refresh_timezone", CK_STRING, CFG(refresh_timezone), .def = "UTC", .check = check_timezone,
	 .doc = "time zone the refresh schedules are read in (IANA name, e.g. Europe/Berlin)"},
	{"refresh_jitter", CK_UINT, CFG(refresh_jitter), .def_u = 30, .min = 0, .max = 3600,
	 .doc = "seconds: each scheduled refresh starts after a random delay up to this"},
	{"sources", CK_LIST, CFG(sources), CFG(nsources), .min = 1, .max = CONFIG_MAX_SOURCES,
	 .flags = CK_F_REQUIRED,
	 .hint = "add a `sources:` list with at least one entry that has name, driver and dsn",
	 .doc = "the databases this connector serves",
	 .sub = source_keys, .nsub = NKEYS(source_keys), .item_size = sizeof(struct config_source),
	 .line_off = SRC(line), .item_done = source_done,
	 .item_plural = "sources", .item_one = "source", .item_keys = "name, driver and dsn"},
	{"tools", CK_LIST, CFG(tools), CFG(ntools), .max = CONFIG_MAX_TOOLS,
	 .doc = "curated tools: fixed statements with typed parameters",
	 .sub = tool_keys, .nsub = NKEYS(tool_keys), .item_size = sizeof(struct config_tool),
	 .line_off = TOOL(line), .item_done = tool_done,
	 .item_plural = "tools", .item_one = "tool",
	 .item_keys = "name, description, source, statement and parameters"},
	{"interactor.api_url", CK_STRING, CFG(api_url), .def = DEFAULT_API_URL,
	 .check = check_https_url, .doc = "the platform's API (https)"},
	{"interactor.auth_url", CK_STRING, CFG(auth_url), .def = DEFAULT_AUTH_URL,
	 .check = check_https_url, .doc = "the platform's OAuth token endpoint (https)"},
	{"interactor.client_id", CK_STRING, CFG(client_id), .check = check_client_id,
	 .doc = "OAuth client id for register, push-mappings and rotate-secret (\"\": none)"},
	{"interactor.client_secret", CK_STRING, CFG(client_secret), .flags = CK_F_SENSITIVE,
	 .doc = "OAuth client secret, e.g. \"${INTERACTOR_CLIENT_SECRET}\""},
	{"interactor.ca_file", CK_STRING, CFG(ca_file), .flags = CK_F_PATH,
	 .doc = "PEM file of CAs trusted besides the system's (\"\": the system's only)"},
	{"interactor.proxy", CK_STRING, CFG(proxy), .flags = CK_F_DSN, .check = check_proxy,
	 .doc = "proxy URL for the platform (\"\": libcurl's https_proxy, no_proxy, ... variables)"},
	{"interactor.timeout_ms", CK_UINT, CFG(api_timeout_ms), .def_u = 15000, .min = 1000,
	 .max = 120000, .doc = "time budget of one call to the platform, in ms"},
	{"interactor.tool_prefix", CK_STRING, CFG(tool_prefix), .def = "db_",
	 .check = check_tool_prefix,
	 .doc = "put before each tool name registered; register --prune deletes only these"},
	{"interactor.register_on_start", CK_BOOL, CFG(register_on_start), .def_u = 0,
	 .doc = "serve registers the tools and pushes the mappings when it starts"},
	{"interactor.rotation_window_hours", CK_UINT, CFG(rotation_window_hours), .def_u = 24,
	 .min = 1, .max = 720, .doc = "hours rotate-secret keeps the old secret valid"},
};


_Static_assert(NKEYS(global_keys) <= CK_MAX_ROWS, "raise CK_MAX_ROWS");
_Static_assert(NKEYS(source_keys) <= CK_MAX_ROWS, "raise CK_MAX_ROWS");
_Static_assert(NKEYS(tool_keys) <= CK_MAX_ROWS, "raise CK_MAX_ROWS");
_Static_assert(NKEYS(param_keys) <= CK_MAX_ROWS, "raise CK_MAX_ROWS");

/* ---- small helpers ------------------------------------------------------ */

struct loader {
	const char *file;
	struct cn_error *err;
};

/* One map being read with one table. */
struct walk {
	const struct ck_key *keys;
	size_t nkeys;
	void *base;          /* the struct the offsets point into */
	const char *keypath; /* message prefix of this table's map: "" or "sources[0]" */
	int seen[CK_MAX_ROWS];   /* line where the key was set, 0 = not set */
	int parent[CK_MAX_ROWS]; /* line of the innermost enclosing map present in the file */
};

static int err_at(struct loader *ld, int line, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int err_at(struct loader *ld, int line, const char *key, const char *fmt, ...)
{
	char what[sizeof ld->err->message];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	return cn_error_set(ld->err, CN_ECONFIG, "%s:%d: %s: %s", ld->file, line, key, what);
}


static int err_nomem(struct loader *ld)
{
	return cn_error_set(ld->err, CN_ENOMEM, "%s: out of memory", ld->file);
}

/* Copy at most CK_SHOW_MAX bytes of s for a message, non-printables as '?'. */
static const char *show(char *dst, size_t n, const char *s)
{
	size_t i = 0;
	for (; s[i] && i + 1 < n && i < CK_SHOW_MAX; i++)
		dst[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
	if (s[i] && i >= 3 && i + 1 < n)
		memcpy(dst + i - 3, "...", 3);
	dst[i] = '\0';
	return dst;
}

/* "a" + "." + "b" (just "b" when a is empty). */
static void path_join(char *dst, size_t n, const char *a, const char *b)
{
	snprintf(dst, n, "%s%s%.*s", a, *a && *b ? "." : "", CK_SHOW_MAX, b);
}

static void *field(void *base, size_t off)
{
	return (char *)base + off;
}

static const void *cfield(const void *base, size_t off)
{
	return (const char *)base + off;
}

static const char *hint_of(const struct ck_key *k)
{
	return k->hint ? k->hint : "give it a value";
}

static bool is_secretish(const struct ck_key *k)
{
	return k->flags & (CK_F_SENSITIVE | CK_F_DSN);
}

/* ---- value checks ------------------------------------------------------- */

static bool check_port(const char *p, char *why, size_t n, const char *v)
{
	char s[CK_SHOW_MAX + 1];
	unsigned long port = 0;
	size_t i = 0;
	for (; p[i] && isdigit((unsigned char)p[i]) && i < 6; i++)
		port = port * 10 + (unsigned long)(p[i] - '0');
	if (i == 0 || p[i] || p[0] == '0' || port > 65535) {
		snprintf(why, n, "'%s' has no valid port: use host:port with a port from 1 to 65535 "
			 "(no leading zeros), "
			 "e.g. 127.0.0.1:8080 or [::1]:8080", show(s, sizeof s, v));
		return false;
	}
	return true;
}

static bool check_listen(const char *v, char *why, size_t n)
{
	char s[CK_SHOW_MAX + 1];
	const char *colon;
	if (v[0] == '[') {
		const char *end = strchr(v, ']');
		size_t hl = end ? (size_t)(end - v - 1) : 0;
		bool ok = end && hl > 0 && end[1] == ':';
		for (size_t i = 1; ok && i <= hl; i++)
			ok = isxdigit((unsigned char)v[i]) || v[i] == ':' || v[i] == '.';
		if (!ok) {
			snprintf(why, n, "'%s' is not a valid address: write an IPv6 host in brackets, "
				 "e.g. [::1]:8080", show(s, sizeof s, v));
			return false;
		}
		return check_port(end + 2, why, n, v);
	}
	colon = strchr(v, ':');
	bool ok = colon && colon > v && !strchr(colon + 1, ':');
	for (const char *c = v; ok && c < colon; c++)
		ok = isalnum((unsigned char)*c) || *c == '.' || *c == '-' || *c == '_';
	if (!ok) {
		snprintf(why, n, "'%s' is not host:port: use e.g. 127.0.0.1:8080, 0.0.0.0:8080, "
			 "localhost:8080 or [::1]:8080", show(s, sizeof s, v));
		return false;
	}
	return check_port(colon + 1, why, n, v);
}

static bool check_public_url(const char *v, char *why, size_t n)
{
	char s[CK_SHOW_MAX + 1];
	if (!*v || (strncmp(v, "https://", 8) == 0 && v[8]) || (strncmp(v, "http://", 7) == 0 && v[7]))
		return true;
	snprintf(why, n, "'%s' is not a URL: use the https:// address Interactor calls, "
		 "e.g. https://connector.example.com", show(s, sizeof s, v));
	return false;
}

static bool check_secret(const char *v, char *why, size_t n)
{
	size_t len = strlen(v);
	const char *what = NULL;
	if (len == 0)
		what = "is empty";
	else if (isspace((unsigned char)v[0]) || isspace((unsigned char)v[len - 1]))
		what = "has leading or trailing whitespace (padding is not allowed)";
	else if (len < CONFIG_MIN_SECRET_LEN)
		what = "is shorter than 16 bytes";
	if (!what)
		return true;
	snprintf(why, n, "the callback secret %s; %s", what, SECRET_HINT);
	return false;
}

static bool check_pattern(const char *v, size_t max, bool (*ok)(int c))
{
	size_t i = 0;
	for (; v[i]; i++)
		if (i >= max || !ok((unsigned char)v[i]))
			return false;
	return i > 0;
}

static bool name_char(int c)
{
	return isascii(c) && (isalnum(c) || c == '_' || c == '-');
}

static bool driver_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static bool check_source_name(const char *v, char *why, size_t n)
{
	char s[CK_SHOW_MAX + 1];
	if (check_pattern(v, 64, name_char))
		return true;
	snprintf(why, n, "'%s' is not a valid source name: use 1 to 64 letters, digits, '_' or '-'",
		 show(s, sizeof s, v));
	return false;
}

static bool check_driver_name(const char *v, char *why, size_t n)
{
	char s[CK_SHOW_MAX + 1];
	if (check_pattern(v, 32, driver_char))
		return true;
	snprintf(why, n, "'%s' is not a valid driver name: use 1 to 32 lowercase letters, digits or "
		 "'_' (the module's name, e.g. sqlite or postgres)", show(s, sizeof s, v));
	return false;
}

static bool check_https_url(const char *v, char *why, size_t n)
{
	char s[CK_SHOW_MAX + 1];
	size_t host = strcspn(v + (strncmp(v, "https://", 8) == 0 ? 8 : 0), "/?#");
	bool ok = strncmp(v, "https://", 8) == 0 && host > 0;
	for (const char *c = v; ok && *c; c++)
		ok = isgraph((unsigned char)*c);
	if (ok)
		return true;
	snprintf(why, n, "'%s' is not an https URL: the platform is only reached over verified TLS, "
		 "e.g. https://core.interactor.com/api/v1", show(s, sizeof s, v));
	return false;
}

/* The authority of a proxy URL (after "scheme://") is [userinfo@]host[:port]:
 * anything else is refused, also so that a password written where the
 * userinfo is not recognised is never printed by check-config. */
static bool proxy_host_ok(const char *a)
{
	size_t len = strcspn(a, "/?#");
	const char *host = a;
	for (size_t i = 0; i < len; i++)
		if (a[i] == '@')
			host = a + i + 1;
	size_t hl = len - (size_t)(host - a);
	const char *port = NULL;
	if (hl && *host == '[') {
		const char *close = memchr(host, ']', hl);
		if (!close || close == host + 1)
			return false;
		port = close + 1 < host + hl ? close + 1 : NULL;
		if (port && *port != ':')
			return false;
	} else {
		port = memchr(host, ':', hl);
		if (port == host || (!port && !hl))
			return false;
	}
	if (!port)
		return true;
	size_t pl = (size_t)(host + hl - port - 1);
	return pl >= 1 && pl <= 5 && strspn(port + 1, "0123456789") >= pl;
}

static bool check_proxy(const char *v, char *why, size_t n)
{
	static const char *const schemes[] = {"http://", "https://", "socks4://", "socks4a://",
					      "socks5://", "socks5h://"};
	if (!*v)
		return true;
	for (size_t i = 0; i < NKEYS(schemes); i++)
		if (strncmp(v, schemes[i], strlen(schemes[i])) == 0 && v[strlen(schemes[i])] &&
		    proxy_host_ok(v + strlen(schemes[i])))
			return true;
	snprintf(why, n, "the proxy is not a URL: write scheme://[user:password@]host[:port] (http, "
		 "https, socks5h, ...), or leave it empty to use the https_proxy / no_proxy environment "
		 "variables");
	return false;
}

static bool tool_char(int c)
{
	return isascii(c) && (isalnum(c) || c == '_');
}

static bool check_tool_prefix(const char *v, char *why, size_t n)
{
	char s[CK_SHOW_MAX + 1];
	if (*v && (!isalpha((unsigned char)v[0]) || !check_pattern(v, 32, tool_char))) {
		snprintf(why, n, "'%s' is not a valid prefix: use a letter, then up to 31 letters, "
			 "digits or '_' (e.g. sales_), or \"\"", show(s, sizeof s, v));
		return false;
	}
	for (size_t i = 0; *v && config_builtin_tools[i]; i++) {
		if (strncmp(config_builtin_tools[i], v, strlen(v)) == 0) {
			snprintf(why, n, "'%s' begins the built-in tool name %s, so names would be "
				 "ambiguous; choose another prefix", show(s, sizeof s, v),
				 config_builtin_tools[i]);
			return false;
		}
	}
	return true;
}

static bool check_tool_name(const char *v, char *why, size_t n)
{
	char s[CK_SHOW_MAX + 1];
	if (!isalpha((unsigned char)v[0]) || !check_pattern(v, CONFIG_MAX_TOOL_NAME, tool_char)) {
		snprintf(why, n, "'%s' is not a valid tool name: use a letter, then up to 63 letters, "
			 "digits or '_'", show(s, sizeof s, v));
		return false;
	}
	for (size_t i = 0; config_builtin_tools[i]; i++) {
		if (strcmp(config_builtin_tools[i], v) == 0) {
			snprintf(why, n, "'%s' is a built-in tool's name; give the curated tool its own",
				 v);
			return false;
		}
	}
	return true;
}

static bool check_param_name(const char *v, char *why, size_t n)
{
	char s[CK_SHOW_MAX + 1];
	if (isdigit((unsigned char)v[0]) || !check_pattern(v, 64, tool_char)) {
		snprintf(why, n, "'%s' is not a valid parameter name: use 1 to 64 letters, digits or "
			 "'_', not starting with a digit", show(s, sizeof s, v));
		return false;
	}
	return true;
}

static bool id_char(int c)
{
	return isascii(c) && (isalnum(c) || c == '_' || c == '-' || c == '.');
}

static bool check_data_source_id(const char *v, char *why, size_t n)
{
	char s[CK_SHOW_MAX + 1];
	if (!*v || check_pattern(v, 128, id_char))
		return true;
	snprintf(why, n, "'%s' is not a data source id: use the platform's id as it shows it "
		 "(e.g. ds_abc: letters, digits, '_', '-', '.')", show(s, sizeof s, v));
	return false;
}

static bool check_client_id(const char *v, char *why, size_t n)
{
	for (const char *c = v; *c; c++) {
		if (!isgraph((unsigned char)*c)) {
			snprintf(why, n, "the client id contains a blank or control character; copy it "
				 "again from the platform");
			return false;
		}
	}
	return true;
}

/* A schedule: "off", or a cron expression that fires at least once. "" is
 * allowed where it means "the global one" (a source's key). */
static bool check_refresh(const char *v, char *why, size_t n)
{
	char s[CK_SHOW_MAX + 1], reason[CRON_WHY_MAX];
	struct cron c;
	int64_t next;
	if (!*v || strcmp(v, "off") == 0)
		return true;
	if (cron_parse(v, &c, reason, sizeof reason)) {
		snprintf(why, n, "'%s' is not a schedule: %s; write 5 cron fields such as "
			 "\"*/15 * * * *\", a macro such as @hourly, or off", show(s, sizeof s, v), reason);
		return false;
	}
	if (cron_next(&c, NULL, (int64_t)time(NULL), &next) == CN_ENOTFOUND) {
		snprintf(why, n, "'%s' never fires (no date matches it in the next %d years)",
			 show(s, sizeof s, v), CRON_MAX_YEARS);
		return false;
	}
	return true;
}

static bool check_timezone(const char *v, char *why, size_t n)
{
	struct tz *z;
	struct cn_error err = {0};
	if (tz_load(v, &z, &err) == CN_OK) {
		tz_free(z);
		return true;
	}
	snprintf(why, n, "%s", err.message);
	return false;
}

static bool check_choice(const char *choices, const char *v)
{
	size_t len = strlen(v);
	for (const char *c = choices; *c;) {
		size_t cl = strcspn(c, "|");
		if (cl == len && strncmp(c, v, len) == 0)
			return true;
		c += cl + (c[cl] == '|');
	}
	return false;
}

/* ---- ${VAR} expansion --------------------------------------------------- */

static bool var_name_ok(const char *s, size_t len)
{
	if (len == 0 || isdigit((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isascii((unsigned char)s[i]) || !(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

/* Expand ${VAR} in s; `$${` is a literal `${`. *out is malloc'ed. The text
 * of a sensitive value (secretish) is never quoted in an error. */
static int expand_env(struct loader *ld, const char *s, int line, const char *kp, bool secretish,
		      char **out)
{
	struct buf b;
	int rc = CN_OK;
	char show_buf[CK_SHOW_MAX + 1];

	buf_init(&b, CONFIG_MAX_VALUE);
	*out = NULL;
	for (size_t i = 0; s[i] && rc == CN_OK;) {
		if (s[i] == '$' && s[i + 1] == '$' && s[i + 2] == '{') {
			rc = buf_append(&b, "${", 2);
			i += 3;
			continue;
		}
		if (s[i] != '$' || s[i + 1] != '{') {
			size_t run = 1 + strcspn(s + i + 1, "$");
			rc = buf_append(&b, s + i, run);
			i += run;
			continue;
		}
		const char *name = s + i + 2;
		const char *close = strchr(name, '}');
		if (!close) {
			rc = err_at(ld, line, kp, "unterminated '${': write ${NAME} for an environment "
				    "variable, or $${ for a literal '${'");
			goto out;
		}
		size_t nl = (size_t)(close - name);
		char var[CK_SHOW_MAX + 1];
		if (!var_name_ok(name, nl) || nl > CK_SHOW_MAX) {
			if (secretish)
				rc = err_at(ld, line, kp, "invalid environment variable name in "
					    "'${...}': use letters, digits and '_', e.g. ${DB_PASSWORD}");
			else
				rc = err_at(ld, line, kp, "invalid environment variable name '${%.*s}': use "
					    "letters, digits and '_', e.g. ${DB_PASSWORD}",
					    (int)(nl > CK_SHOW_MAX ? CK_SHOW_MAX : nl),
					    show(show_buf, sizeof show_buf, name));
			goto out;
		}
		memcpy(var, name, nl);
		var[nl] = '\0';
		const char *val = getenv(var);
		if (!val || !*val) {
			rc = err_at(ld, line, kp, "environment variable %s is %s; set it in the "
				    "connector's environment (export %s=...) or change the value",
				    var, val ? "empty" : "not set", var);
			goto out;
		}
		rc = buf_puts(&b, val);
		i = (size_t)(close - s) + 1;
	}
	if (rc == CN_ETOOBIG) {
		rc = err_at(ld, line, kp, "value is longer than %d bytes after ${VAR} expansion; "
			    "shorten it", CONFIG_MAX_VALUE);
		goto out;
	}
	if (rc)
		goto out;
	*out = buf_steal(&b, NULL);
	if (!*out)
		rc = CN_ENOMEM;
out:
	buf_free(&b);
	if (rc == CN_ENOMEM)
		err_nomem(ld);
	return rc;
}

/* The text of a scalar node (malloc'ed in *out), with ${VAR} expanded in
 * strings. Numbers and booleans are written plain (unquoted), as in JSON. */
static int scalar_text(struct loader *ld, const struct ynode *v, const char *kp,
		       const struct ck_key *k, char **out)
{
	bool is_string = k->type == CK_STRING || k->type == CK_STRLIST || k->type == CK_STATEMENT;
	*out = NULL;
	if (v->type != YNODE_SCALAR)
		return err_at(ld, v->line, kp, "expected a single value, got %s; %s", ytree_type_name(v),
			      k->type == CK_STRLIST ? "write a string (or a list of strings)"
						    : "write it as `key: value`");
	if (strlen(v->value) != v->len)
		return err_at(ld, v->line, kp, "the value contains a NUL byte; remove it");
	if (is_string)
		return expand_env(ld, v->value, v->line, kp, is_secretish(k), out);
	if (!v->plain)
		return err_at(ld, v->line, kp, "write %s without quotes (${VAR} is expanded in "
			      "strings only)", k->type == CK_BOOL ? "true or false" : "the number");
	*out = strdup(v->value);
	return *out ? CN_OK : err_nomem(ld);
}

/* ---- typed setters ------------------------------------------------------ */

static int set_string(struct loader *ld, const struct ck_key *k, void *base, const struct ynode *v,
		      const char *kp)
{
	char *text, why[400], s[CK_SHOW_MAX + 1];
	int rc = scalar_text(ld, v, kp, k, &text);
	if (rc)
		return rc;
	if (k->choices && !check_choice(k->choices, text)) {
		rc = err_at(ld, v->line, kp, "'%s' is not one of %s; pick one of them",
			    show(s, sizeof s, text), k->choices);
	} else if (!*text && (k->flags & CK_F_REQUIRED)) {
		rc = err_at(ld, v->line, kp, "must not be empty; %s", hint_of(k));
	} else if (k->check && !k->check(text, why, sizeof why)) {
		rc = err_at(ld, v->line, kp, "%s", why);
	}
	if (rc) {
		free(text);
		return rc;
	}
	char **dst = field(base, k->off);
	free(*dst);
	*dst = text;
	return CN_OK;
}

static int set_uint(struct loader *ld, const struct ck_key *k, void *base, const struct ynode *v,
		    const char *kp)
{
	char *text, s[CK_SHOW_MAX + 1];
	int rc = scalar_text(ld, v, kp, k, &text);
	if (rc)
		return rc;
	const char *p = text;
	bool neg = *p == '-';
	p += neg || *p == '+';
	uint64_t n = 0;
	size_t digits = 0;
	for (; isdigit((unsigned char)*p); p++, digits++)
		if (n <= UINT32_MAX)
			n = n * 10 + (uint64_t)(*p - '0');
	if (digits == 0 || *p)
		rc = err_at(ld, v->line, kp, "expected a whole number from %u to %u, got '%s'", k->min,
			    k->max, show(s, sizeof s, text));
	else if (neg || n < k->min || n > k->max)
		rc = err_at(ld, v->line, kp, "%s is out of range: use a number from %u to %u",
			    show(s, sizeof s, text), k->min, k->max);
	else
		*(uint32_t *)field(base, k->off) = (uint32_t)n;
	free(text);
	return rc;
}

static int set_bool(struct loader *ld, const struct ck_key *k, void *base, const struct ynode *v,
		    const char *kp)
{
	char *text, s[CK_SHOW_MAX + 1];
	int rc = scalar_text(ld, v, kp, k, &text);
	if (rc)
		return rc;
	if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0)
		*(bool *)field(base, k->off) = text[0] == 't';
	else
		rc = err_at(ld, v->line, kp, "expected true or false, got '%s'", show(s, sizeof s, text));
	free(text);
	return rc;
}

/* A list of strings, or one string as a one-item list. Items are stored as
 * they are read, so config_free releases them when a later one fails. */
static int set_strlist(struct loader *ld, const struct ck_key *k, void *base, const struct ynode *v,
		       const char *kp, int line)
{
	char ikp[CK_PATH_MAX], why[400];
	char ***items = field(base, k->off);
	size_t *count = field(base, k->count_off);

	if (v->type == YNODE_MAP)
		return err_at(ld, line, kp, "expected a string or a list of strings, got a map%s%s",
			      k->hint ? "; " : "", k->hint ? k->hint : "");
	size_t n = v->type == YNODE_SEQ ? v->n : 1;
	if (n < k->min)
		return err_at(ld, line, kp, "the list is empty; %s",
			      k->hint ? k->hint : "add at least one item");
	if (n > k->max)
		return err_at(ld, line, kp, "has %zu items; at most %u are allowed: remove some", n,
			      k->max);
	*items = calloc(n, sizeof **items);
	if (!*items)
		return err_nomem(ld);
	*count = 0;
	for (size_t i = 0; i < n; i++) {
		const struct ynode *item = v->type == YNODE_SEQ ? v->items[i] : v;
		char *text;
		if (v->type == YNODE_SEQ)
			snprintf(ikp, sizeof ikp, "%s[%zu]", kp, i);
		else
			snprintf(ikp, sizeof ikp, "%s", kp);
		if (ytree_is_null(item))
			return err_at(ld, item->line, ikp, "the item is empty; %s",
				      k->hint ? k->hint : "give it a value or remove it");
		int rc = scalar_text(ld, item, ikp, k, &text);
		if (rc)
			return rc;
		(*items)[(*count)++] = text;
		if (k->check && !k->check(text, why, sizeof why))
			return err_at(ld, item->line, ikp, "%s", why);
	}
	return CN_OK;
}

/* An option whose name suggests a secret is never printed or quoted. */
static bool option_is_secret(const char *key)
{
	return strstr(key, "password") || strstr(key, "secret") || strstr(key, "token") ||
	       strstr(key, "key");
}

static bool option_key_ok(const char *key)
{
	size_t n = strlen(key);
	if (n == 0 || n > 64)
		return false;
	for (const char *p = key; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return true;
}

static int set_options(struct loader *ld, const struct ck_key *k, void *base, const struct ynode *v,
		       const char *kp, int line)
{
	struct config_options *o = field(base, k->off);
	char okp[CK_PATH_MAX], s[CK_SHOW_MAX + 1];

	if (v->type != YNODE_MAP)
		return err_at(ld, line, kp, "expected a map, got %s; write it as `options: { key: "
			      "value }`", ytree_type_name(v));
	if (v->n > k->max)
		return err_at(ld, line, kp, "has %zu options; at most %u are allowed", v->n, k->max);
	o->keys = calloc(v->n ? v->n : 1, sizeof *o->keys);
	o->values = calloc(v->n ? v->n : 1, sizeof *o->values);
	if (!o->keys || !o->values)
		return err_nomem(ld);
	for (size_t i = 0; i < v->n; i++) {
		const char *key = v->keys[i]->value;
		const struct ynode *item = v->items[i];
		path_join(okp, sizeof okp, kp, key);
		if (!option_key_ok(key))
			return err_at(ld, v->keys[i]->line, kp, "option name '%s' is not valid; use 1-64 "
				      "of a-z 0-9 _", show(s, sizeof s, key));
		struct ck_key as_string = {.path = key, .type = CK_STRING,
					   .flags = option_is_secret(key) ? CK_F_SENSITIVE : 0};
		struct buf joined;
		buf_init(&joined, CONFIG_MAX_VALUE);
		size_t n = item->type == YNODE_SEQ ? item->n : 1;
		int rc = CN_OK;
		for (size_t j = 0; rc == CN_OK && j < n; j++) {
			const struct ynode *one = item->type == YNODE_SEQ ? item->items[j] : item;
			char *text = NULL;
			if (ytree_is_null(one))
				continue;
			rc = scalar_text(ld, one, okp, &as_string, &text);
			if (rc == CN_OK && (buf_puts(&joined, j ? "," : "") || buf_puts(&joined, text)))
				rc = err_at(ld, one->line, okp, "the value is too long");
			free(text);
		}
		if (rc == CN_OK) {
			o->keys[o->n] = strdup(key);
			o->values[o->n] = buf_steal(&joined, NULL);
			if (!o->keys[o->n] || !o->values[o->n]) {
				free(o->keys[o->n]);
				free(o->values[o->n]);
				rc = err_nomem(ld);
			} else {
				o->n++;
			}
		}
		buf_free(&joined);
		if (rc)
			return rc;
	}
	return CN_OK;
}

static int walk_map(struct loader *ld, struct walk *w, const struct ynode *map, const char *prefix);
static int walk_finish(struct loader *ld, struct walk *w);

/* The line where row `path` of w's table was set, or the item's own line. */
static int row_line(const struct walk *w, const char *path, int fallback)
{
	for (size_t r = 0; r < w->nkeys; r++)
		if (strcmp(w->keys[r].path, path) == 0 && w->seen[r])
			return w->seen[r];
	return fallback;
}

/* A list of maps, each read with k->sub; item_done checks each as it is read. */
static int set_list(struct loader *ld, const struct ck_key *k, void *base, const struct ynode *v,
		    const char *kp, int line)
{
	size_t *count = field(base, k->count_off);

	if (v->type != YNODE_SEQ)
		return err_at(ld, line, kp, "expected a list of %s, got %s; write each %s as a list "
			      "item (`- name: ...`) with %s", k->item_plural, ytree_type_name(v), k->item_one,
			      k->item_keys);
	if (v->n < k->min)
		return err_at(ld, line, kp, "the list is empty; %s", hint_of(k));
	if (v->n > k->max)
		return err_at(ld, line, kp, "has %zu %s; at most %u are allowed", v->n, k->item_plural,
			      k->max);
	char *items = calloc(v->n ? v->n : 1, k->item_size);
	if (!items)
		return err_nomem(ld);
	memcpy(field(base, k->off), &items, sizeof items); /* the typed array pointer */
	*count = 0;
	for (size_t i = 0; i < v->n; i++) {
		const struct ynode *item = v->items[i];
		void *it = items + i * k->item_size;
		char ikp[CK_PATH_MAX];
		snprintf(ikp, sizeof ikp, "%s[%zu]", kp, i);
		*count = i + 1;
		*(int *)field(it, k->line_off) = item->line;
		if (item->type != YNODE_MAP)
			return err_at(ld, item->line, ikp, "expected a map with %s, got %s", k->item_keys,
				      ytree_type_name(item));
		struct walk w = {.keys = k->sub, .nkeys = k->nsub, .base = it, .keypath = ikp};
		for (size_t r = 0; r < w.nkeys; r++)
			w.parent[r] = item->line;
		int rc = walk_map(ld, &w, item, "");
		if (rc == CN_OK)
			rc = walk_finish(ld, &w);
		if (rc == CN_OK && k->item_done)
			rc = k->item_done(ld, &w, items, i);
		if (rc)
			return rc;
	}
	return CN_OK;
}

static int source_done(struct loader *ld, const struct walk *w, void *items, size_t i)
{
	struct config_source *srcs = items, *src = &srcs[i];
	for (size_t j = 0; j < i; j++) {
		if (strcmp(srcs[j].name, src->name) == 0) {
			char nkp[CK_PATH_MAX];
			path_join(nkp, sizeof nkp, w->keypath, "name");
			return err_at(ld, row_line(w, "name", src->line), nkp, "duplicate source name '%s' "
				      "(also sources[%zu], line %d); give each source its own name",
				      src->name, j, srcs[j].line);
		}
	}
	return CN_OK;
}

/* A parameter's declaration: type, and enum, bounds, pattern and default
 * fitting it and each other. */
static int param_done(struct loader *ld, const struct walk *w, void *items, size_t i)
{
	struct config_tool_param *ps = items, *p = &ps[i];
	char kp[CK_PATH_MAX], why[400];
	int rc = CN_OK;
#define PARAM_ERR(key, ...)                                                        \
	do {                                                                       \
		path_join(kp, sizeof kp, w->keypath, key);                         \
		return err_at(ld, row_line(w, key, p->line), kp, __VA_ARGS__);     \
	} while (0)

	for (size_t j = 0; j < i; j++)
		if (strcmp(ps[j].name, p->name) == 0)
			PARAM_ERR("name", "duplicate parameter name '%s' (also parameter %zu, line %d)",
				  p->name, j + 1, ps[j].line);
	if (curated_type_from_name(p->type_name, &p->type))
		PARAM_ERR("type", "unknown type");
	bool numeric = p->type == CONFIG_PARAM_INTEGER || p->type == CONFIG_PARAM_NUMBER;
	for (size_t e = 0; e < p->nenum; e++) {
		cJSON *v = curated_value_from_text(p->type, p->enum_values[e], why, sizeof why);
		if (!v)
			PARAM_ERR("enum", "item %zu: %s (the parameter's type is %s)", e, why, p->type_name);
		cJSON_Delete(v);
	}
	const char *bounds[2][2] = {{"minimum", p->minimum}, {"maximum", p->maximum}};
	for (size_t b = 0; b < 2; b++) {
		if (!bounds[b][1])
			continue;
		if (!numeric)
			PARAM_ERR(bounds[b][0], "only integer and number parameters have bounds; this one "
				  "is %s", p->type_name);
		cJSON *v = curated_value_from_text(p->type, bounds[b][1], why, sizeof why);
		if (!v)
			PARAM_ERR(bounds[b][0], "%s", why);
		cJSON_Delete(v);
	}
	if (p->minimum && p->maximum && strtod(p->minimum, NULL) > strtod(p->maximum, NULL))
		PARAM_ERR("maximum", "%s is below the minimum %s", p->maximum, p->minimum);
	if (p->pattern) {
		regex_t re;
		if (p->type != CONFIG_PARAM_STRING)
			PARAM_ERR("pattern", "only string parameters take a pattern (a %s has its own "
				  "format)", p->type_name);
		if (strstr(p->pattern, "\\d") || strstr(p->pattern, "\\D"))
			PARAM_ERR("pattern", "POSIX extended regular expressions have no \\d: write "
				  "[0-9] (and [^0-9] for \\D)");
		int re_rc = regcomp(&re, p->pattern, REG_EXTENDED | REG_NOSUB);
		if (re_rc != 0) {
			char msg[200];
			regerror(re_rc, &re, msg, sizeof msg);
			regfree(&re);
			PARAM_ERR("pattern", "not a POSIX extended regular expression: %s", msg);
		}
		regfree(&re);
	}
	if (p->default_value) {
		if (p->required)
			PARAM_ERR("default", "a required parameter never uses its default: drop "
				  "`required: true` or the default");
		cJSON *schema = curated_param_schema(p);
		cJSON *def = curated_value_from_text(p->type, p->default_value, why, sizeof why);
		if (!def) {
			cJSON_Delete(schema);
			PARAM_ERR("default", "%s", why);
		}
		path_join(kp, sizeof kp, w->keypath, "default");
		if (!schema)
			rc = err_nomem(ld);
		else if (json_schema_check(schema, def, kp, why, sizeof why))
			rc = err_at(ld, row_line(w, "default", p->line), kp, "does not fit the "
				    "parameter's own rules: %s", why);
		cJSON_Delete(schema);
		cJSON_Delete(def);
	}
#undef PARAM_ERR
	return rc;
}

static int tool_done(struct loader *ld, const struct walk *w, void *items, size_t i)
{
	struct config_tool *tools = items, *t = &tools[i];
	char kp[CK_PATH_MAX], why[400];
	t->statement_line = row_line(w, "statement", t->line);
	t->source_line = row_line(w, "source", t->line);
	for (size_t j = 0; j < i; j++) {
		if (strcmp(tools[j].name, t->name) == 0) {
			path_join(kp, sizeof kp, w->keypath, "name");
			return err_at(ld, row_line(w, "name", t->line), kp, "duplicate tool name '%s' (also "
				      "tools[%zu], line %d); give each tool its own name", t->name, j,
				      tools[j].line);
		}
	}
	if (curated_check_statement(t, why, sizeof why)) {
		path_join(kp, sizeof kp, w->keypath, "statement");
		return err_at(ld, t->statement_line, kp, "%s", why);
	}
	return CN_OK;
}

/* ---- statements: text, or a document written in YAML ------------------- */

/* A plain scalar that JSON reads as a number. */
static bool json_number_text(const char *s)
{
	const char *p = s + (*s == '-');
	if (*p == '0')
		p++;
	else if (isdigit((unsigned char)*p))
		p += strspn(p, "0123456789");
	else
		return false;
	if (*p == '.') {
		size_t n = strspn(p + 1, "0123456789");
		if (!n)
			return false;
		p += 1 + n;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		p += *p == '+' || *p == '-';
		size_t n = strspn(p, "0123456789");
		if (!n)
			return false;
		p += n;
	}
	return *p == '\0';
}

/* node as JSON into b: maps and lists as such, plain numbers, true, false
 * and null as JSON's, every other scalar (with ${VAR} expanded) a string. */
static int yaml_as_json(struct loader *ld, const struct ynode *node, const char *kp, struct buf *b,
			int depth)
{
	int rc = CN_OK;
	if (depth > YTREE_MAX_DEPTH)
		return err_at(ld, node->line, kp, "the document nests too deeply");
	if (node->type == YNODE_MAP || node->type == YNODE_SEQ) {
		bool map = node->type == YNODE_MAP;
		rc = buf_puts(b, map ? "{" : "[");
		for (size_t i = 0; rc == CN_OK && i < node->n; i++) {
			if (i)
				rc = buf_puts(b, ",");
			if (rc == CN_OK && map) {
				const struct ynode *key = node->keys[i];
				rc = buf_json_string(b, key->value, key->len);
				if (rc == CN_OK)
					rc = buf_puts(b, ":");
			}
			if (rc == CN_OK)
				rc = yaml_as_json(ld, node->items[i], kp, b, depth + 1);
			if (rc && rc != CN_ETOOBIG && rc != CN_ENOMEM)
				return rc; /* already reported */
		}
		if (rc == CN_OK)
			rc = buf_puts(b, map ? "}" : "]");
	} else if (node->plain && (ytree_is_null(node) || strcmp(node->value, "true") == 0 ||
				   strcmp(node->value, "false") == 0 || json_number_text(node->value))) {
		rc = buf_puts(b, ytree_is_null(node) ? "null" : node->value);
	} else {
		char *text;
		if (strlen(node->value) != node->len)
			return err_at(ld, node->line, kp, "the document contains a NUL byte; remove it");
		rc = expand_env(ld, node->value, node->line, kp, false, &text);
		if (rc)
			return rc;
		rc = buf_json_string(b, text, strlen(text));
		free(text);
	}
	if (rc == CN_ETOOBIG)
		return err_at(ld, node->line, kp, "the document is longer than %d bytes as JSON",
			      CONFIG_MAX_VALUE);
	if (rc == CN_ENOMEM)
		return err_nomem(ld);
	return rc;
}

static int set_statement(struct loader *ld, const struct ck_key *k, void *base, const struct ynode *v,
			 const char *kp)
{
	char **dst = field(base, k->off);
	bool *doc = field(base, k->count_off);
	char *text = NULL;
	int rc;
	if (v->type == YNODE_SCALAR) {
		rc = scalar_text(ld, v, kp, k, &text);
		if (rc)
			return rc;
		if (!*text) {
			free(text);
			return err_at(ld, v->line, kp, "must not be empty; %s", hint_of(k));
		}
		*doc = text[strspn(text, " \t\r\n")] == '{';
	} else if (v->type == YNODE_MAP) {
		struct buf b;
		buf_init(&b, CONFIG_MAX_VALUE);
		rc = yaml_as_json(ld, v, kp, &b, 0);
		if (rc) {
			buf_free(&b);
			return rc;
		}
		text = buf_steal(&b, NULL);
		if (!text)
			return err_nomem(ld);
		*doc = true;
	} else {
		return err_at(ld, v->line, kp, "expected SQL text or a command document (a map), got a "
			      "list");
	}
	free(*dst);
	*dst = text;
	return CN_OK;
}

/* Set row from v; line is the key's (for messages about the value as a whole). */
static int set_leaf(struct loader *ld, struct walk *w, size_t row, const struct ynode *v,
		    const char *kp, int line)
{
	const struct ck_key *k = &w->keys[row];
	int rc;

	if (ytree_is_null(v)) {
		if (k->flags & CK_F_REQUIRED)
			return err_at(ld, line, kp, "must not be empty; %s", hint_of(k));
		return CN_OK; /* default */
	}
	switch (k->type) {
	case CK_STRING: rc = set_string(ld, k, w->base, v, kp); break;
	case CK_UINT: rc = set_uint(ld, k, w->base, v, kp); break;
	case CK_BOOL: rc = set_bool(ld, k, w->base, v, kp); break;
	case CK_STRLIST: rc = set_strlist(ld, k, w->base, v, kp, line); break;
	case CK_LIST: rc = set_list(ld, k, w->base, v, kp, line); break;
	case CK_STATEMENT: rc = set_statement(ld, k, w->base, v, kp); break;
	case CK_OPTIONS: rc = set_options(ld, k, w->base, v, kp, line); break;
	default: rc = cn_error_set(ld->err, CN_EINTERNAL, "%s: bad key table", ld->file);
	}
	if (rc == CN_OK)
		w->seen[row] = line;
	return rc;
}

/* ---- walking the tree --------------------------------------------------- */

/* Table-relative path of row r below prefix ("" = the table's map), or NULL. */
static const char *below(const struct ck_key *k, const char *prefix)
{
	size_t pl = strlen(prefix);
	if (pl == 0)
		return k->path;
	if (strncmp(k->path, prefix, pl) == 0 && k->path[pl] == '.')
		return k->path + pl + 1;
	return NULL;
}

static size_t edit_distance(const char *a, const char *b, size_t bl)
{
	size_t al = strlen(a), row[CK_SHOW_MAX + 1];
	if (al > CK_SHOW_MAX || bl > CK_SHOW_MAX)
		return (size_t)-1;
	for (size_t j = 0; j <= bl; j++)
		row[j] = j;
	for (size_t i = 1; i <= al; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= bl; j++) {
			size_t up = row[j];
			size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
			size_t best = diag + cost;
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[bl];
}

/* Consider candidate (len cl) as a suggestion for key; keep the closest. */
static void consider(const char *key, const char *cand, size_t cl, const char **best,
		     size_t *bestl, size_t *bestd)
{
	size_t d = edit_distance(key, cand, cl);
	size_t limit = cl / 3 < 1 ? 1 : cl / 3 > 3 ? 3 : cl / 3;
	if (d <= limit && d < *bestd) {
		*best = cand;
		*bestl = cl;
		*bestd = d;
	}
}

/* "listen, public_url, max_connections": the keys allowed directly below prefix. */
static void known_keys(const struct walk *w, const char *prefix, char *dst, size_t n)
{
	size_t len = 0;
	dst[0] = '\0';
	for (size_t r = 0; r < w->nkeys; r++) {
		const char *rel = below(&w->keys[r], prefix);
		if (!rel)
			continue;
		int first = (int)strcspn(rel, ".");
		bool dup = false;
		for (size_t q = 0; q < r && !dup; q++) {
			const char *prev = below(&w->keys[q], prefix);
			dup = prev && (int)strcspn(prev, ".") == first &&
			      strncmp(prev, rel, (size_t)first) == 0;
		}
		if (dup)
			continue;
		int wrote = snprintf(dst + len, n - len, "%s%.*s", len ? ", " : "", first, rel);
		if (wrote < 0 || (size_t)wrote >= n - len)
			return;
		len += (size_t)wrote;
	}
}

static int unknown_key(struct loader *ld, struct walk *w, const char *prefix,
		       const struct ynode *key, const char *kp)
{
	const char *best = NULL;
	size_t bestl = 0, bestd = (size_t)-1;
	char known[300];

	for (size_t r = 0; r < w->nkeys && key->len == strlen(key->value); r++) {
		const char *rel = below(&w->keys[r], prefix);
		if (!rel)
			continue;
		const char *last = strrchr(rel, '.');
		consider(key->value, rel, strcspn(rel, "."), &best, &bestl, &bestd);
		if (last) {
			/* `timeout_ms` written outside its `limits` map: suggest the nested path */
			size_t before = bestd;
			consider(key->value, last + 1, strlen(last + 1), &best, &bestl, &bestd);
			consider(key->value, rel, strlen(rel), &best, &bestl, &bestd);
			if (bestd < before) {
				best = rel;
				bestl = strlen(rel);
			}
		}
	}
	if (best && memchr(best, '.', bestl)) {
		const char *leaf = strrchr(best, '.') + 1;
		return err_at(ld, key->line, kp, "unknown key; did you mean '%s' (%s inside a '%.*s' "
			      "map)?", best, leaf, (int)strcspn(best, "."), best);
	}
	if (best)
		return err_at(ld, key->line, kp, "unknown key; did you mean '%.*s'?", (int)bestl, best);
	known_keys(w, prefix, known, sizeof known);
	return err_at(ld, key->line, kp, "unknown key; the keys allowed here are: %s", known);
}

static int walk_map(struct loader *ld, struct walk *w, const struct ynode *map, const char *prefix);

/* A nested map such as `server:` or `limits:`; null (`server:` alone) is an empty one. */
static int walk_section(struct loader *ld, struct walk *w, const struct ynode *v, const char *rel,
			const char *kp, int line)
{
	char known[300];
	if (ytree_is_null(v))
		return CN_OK;
	if (v->type != YNODE_MAP) {
		known_keys(w, rel, known, sizeof known);
		return err_at(ld, line, kp, "expected a map, got %s; write it as `%s: { key: value }` "
			      "with the keys %s", ytree_type_name(v), strrchr(kp, '.') ?
			      strrchr(kp, '.') + 1 : kp, known);
	}
	for (size_t r = 0; r < w->nkeys; r++)
		if (below(&w->keys[r], rel))
			w->parent[r] = line;
	return walk_map(ld, w, v, rel);
}

static int walk_map(struct loader *ld, struct walk *w, const struct ynode *map, const char *prefix)
{
	char rel[CK_PATH_MAX], kp[CK_PATH_MAX], mapkp[CK_PATH_MAX], shown[CK_SHOW_MAX + 1];

	path_join(mapkp, sizeof mapkp, w->keypath, prefix);
	for (size_t i = 0; i < map->n; i++) {
		const struct ynode *key = map->keys[i], *v = map->items[i];
		show(shown, sizeof shown, key->value);
		path_join(rel, sizeof rel, prefix, shown);
		path_join(kp, sizeof kp, mapkp, shown);

		size_t row = w->nkeys;
		bool section = false;
		for (size_t r = 0; r < w->nkeys; r++) {
			if (strcmp(w->keys[r].path, rel) == 0)
				row = r;
			section |= below(&w->keys[r], rel) != NULL;
		}
		bool exact = key->len == strlen(key->value) && strcmp(shown, key->value) == 0;
		int rc;
		if (exact && row < w->nkeys)
			rc = set_leaf(ld, w, row, v, kp, key->line);
		else if (exact && section)
			rc = walk_section(ld, w, v, rel, kp, key->line);
		else
			rc = unknown_key(ld, w, prefix, key, kp);
		if (rc)
			return rc;
	}
	return CN_OK;
}

/* After a table's map was read: required keys present, defaults for the rest. */
static int walk_finish(struct loader *ld, struct walk *w)
{
	char kp[CK_PATH_MAX];
	for (size_t r = 0; r < w->nkeys; r++) {
		const struct ck_key *k = &w->keys[r];
		if (w->seen[r])
			continue;
		if (k->flags & CK_F_REQUIRED) {
			path_join(kp, sizeof kp, w->keypath, k->path);
			return err_at(ld, w->parent[r], kp, "is missing; %s", hint_of(k));
		}
		switch (k->type) {
		case CK_STRING: {
			char **dst = field(w->base, k->off);
			if (k->flags & CK_F_OPTIONAL)
				break; /* NULL: not set */
			*dst = strdup(k->def ? k->def : "");
			if (!*dst)
				return err_nomem(ld);
			break;
		}
		case CK_UINT: *(uint32_t *)field(w->base, k->off) = k->def_u; break;
		case CK_BOOL: *(bool *)field(w->base, k->off) = k->def_u != 0; break;
		case CK_STRLIST:
		case CK_LIST:
		case CK_STATEMENT:
		case CK_OPTIONS: break; /* empty */
		}
	}
	return CN_OK;
}

/* ---- load and free ------------------------------------------------------ */

static void free_table(const struct ck_key *keys, size_t nkeys, void *base)
{
	for (size_t r = 0; r < nkeys; r++) {
		const struct ck_key *k = &keys[r];
		if (k->type == CK_STRING || k->type == CK_STATEMENT) {
			char *s = *(char **)field(base, k->off);
			if (s && (k->flags & (CK_F_SENSITIVE | CK_F_DSN)))
				explicit_bzero(s, strlen(s));
			free(s);
		} else if (k->type == CK_STRLIST) {
			char **items = *(char ***)field(base, k->off);
			size_t n = *(size_t *)field(base, k->count_off);
			for (size_t i = 0; i < n; i++) {
				if (k->flags & CK_F_SENSITIVE)
					explicit_bzero(items[i], strlen(items[i]));
				free(items[i]);
			}
			free(items);
		} else if (k->type == CK_OPTIONS) {
			struct config_options *o = field(base, k->off);
			for (size_t i = 0; i < o->n; i++) {
				if (option_is_secret(o->keys[i]))
					explicit_bzero(o->values[i], strlen(o->values[i]));
				free(o->keys[i]);
				free(o->values[i]);
			}
			free(o->keys);
			free(o->values);
		} else if (k->type == CK_LIST) {
			char *items;
			memcpy(&items, field(base, k->off), sizeof items);
			size_t n = *(size_t *)field(base, k->count_off);
			for (size_t i = 0; i < n; i++)
				free_table(k->sub, k->nsub, items + i * k->item_size);
			free(items);
		}
	}
}

/* The count is bookkeeping, not configuration: a const config may be held. */
struct config *config_hold(const struct config *cfg)
{
	struct config *c = (struct config *)cfg;
	atomic_fetch_add(&c->refs, 1);
	return c;
}

void config_free(struct config *cfg)
{
	if (!cfg || atomic_fetch_sub(&cfg->refs, 1) > 1)
		return;
	free_table(global_keys, NKEYS(global_keys), cfg);
	free(cfg->path);
	free(cfg->dir);
	free(cfg);
}

/* The directory part of path: "conf/a.yaml" -> "conf", "a.yaml" -> ".", "/a" -> "/". */
static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	size_t len = (size_t)(slash - path);
	while (len > 0 && path[len - 1] == '/')
		len--;
	return len ? strndup(path, len) : strdup("/");
}

/* A source answered asynchronously needs somewhere for the platform to poll,
 * and a budget that outlasts the wait before the 202. */
static int check_async(struct loader *ld, const struct config *cfg, size_t i)
{
	const struct config_source *s = &cfg->sources[i];
	char kp[CK_PATH_MAX];
	snprintf(kp, sizeof kp, "sources[%zu].limits.async_timeout_ms", i);
	if (!s->limits.async_timeout_ms)
		return CN_OK;
	if (!*cfg->public_url)
		return err_at(ld, s->line, kp, "answering asynchronously needs server.public_url, the "
			      "https address under which Interactor polls the status URL; set it, or "
			      "remove async_timeout_ms");
	if (s->limits.async_timeout_ms <= cfg->async_after_ms ||
	    s->limits.async_timeout_ms <= s->limits.timeout_ms)
		return err_at(ld, s->line, kp, "%u ms is not over server.async_after_ms (%u) and "
			      "limits.timeout_ms (%u): a query is answered 202 only once it has run "
			      "async_after_ms; give it more, up to 300000",
			      s->limits.async_timeout_ms, cfg->async_after_ms, s->limits.timeout_ms);
	return CN_OK;
}

bool config_state_shared(const struct config *cfg)
{
	return strcmp(cfg->state_backend, "postgres") == 0;
}

/* What needs the whole file: tools name configured sources and fit the
 * prefix; register_on_start has what registering needs. */
static int cross_checks(struct loader *ld, const struct walk *w, struct config *cfg)
{
	char kp[CK_PATH_MAX];
	size_t prefix_len = strlen(cfg->tool_prefix);
	for (size_t i = 0; i < cfg->ntools; i++) {
		const struct config_tool *t = &cfg->tools[i];
		if (!config_find_source(cfg, t->source)) {
			snprintf(kp, sizeof kp, "tools[%zu].source", i);
			return err_at(ld, t->source_line, kp, "no source named '%s'; name one of the "
				      "`sources`", t->source);
		}
		snprintf(kp, sizeof kp, "tools[%zu].name", i);
		if (prefix_len && strncmp(t->name, cfg->tool_prefix, prefix_len) == 0)
			return err_at(ld, t->line, kp, "'%s' begins with interactor.tool_prefix '%s', which "
				      "is added when it is registered; drop it from the name", t->name,
				      cfg->tool_prefix);
		if (prefix_len + strlen(t->name) > CONFIG_MAX_TOOL_NAME)
			return err_at(ld, t->line, kp, "'%s%s' (with interactor.tool_prefix) is longer "
				      "than %d characters; shorten the name", cfg->tool_prefix, t->name,
				      CONFIG_MAX_TOOL_NAME);
	}
	bool pg = config_state_shared(cfg);
	if (pg && !*cfg->state_dsn)
		return err_at(ld, row_line(w, "state.backend", 1), "state.dsn",
			      "state.backend is postgres but state.dsn is not set; set it to the shared "
			      "database's URI, e.g. dsn: \"${CN_STATE_DSN}\" with CN_STATE_DSN="
			      "postgresql://connector_state:PASSWORD@db.example.com:5432/connector_state");
	if (!pg && *cfg->state_dsn)
		return err_at(ld, row_line(w, "state.dsn", 1), "state.dsn",
			      "is set but state.backend is sqlite, which does not use it; set "
			      "`backend: postgres` to share the state between replicas, or remove the dsn");
	if (cfg->register_on_start) {
		const char *missing = !*cfg->client_id ? "interactor.client_id"
				      : !*cfg->client_secret ? "interactor.client_secret"
				      : !*cfg->public_url ? "server.public_url" : NULL;
		if (missing)
			return err_at(ld, row_line(w, "interactor.register_on_start", 1),
				      "interactor.register_on_start", "needs %s; %s", missing,
				      strcmp(missing, "server.public_url") == 0
					  ? "set it to the https URL Interactor calls this connector at"
					  : INTERACTOR_HINT);
	}
	return CN_OK;
}

static int config_from_tree(const char *file, const struct ynode *root, struct config **out,
			    struct cn_error *err)
{
	struct loader ld = {.file = file, .err = err};
	struct walk w = {.keys = global_keys, .nkeys = NKEYS(global_keys), .keypath = ""};
	int rc;

	struct config *cfg = calloc(1, sizeof *cfg);
	if (!cfg)
		return err_nomem(&ld);
	atomic_init(&cfg->refs, 1);
	cfg->path = strdup(file);
	cfg->dir = dir_of(file);
	if (!cfg->path || !cfg->dir) {
		rc = err_nomem(&ld);
		goto out;
	}
	if (root->type != YNODE_MAP) {
		rc = err_at(&ld, root->line, "(top level)", "expected a map with the sections server, "
			    "auth, state, drivers, log, refresh, sources, tools and interactor, got %s",
			    ytree_type_name(root));
		goto out;
	}
	w.base = cfg;
	for (size_t r = 0; r < w.nkeys; r++)
		w.parent[r] = root->line;
	rc = walk_map(&ld, &w, root, "");
	if (rc == CN_OK)
		rc = walk_finish(&ld, &w);
	for (size_t i = 0; rc == CN_OK && i < cfg->nsources; i++)
		rc = check_async(&ld, cfg, i);
	if (rc == CN_OK)
		rc = cross_checks(&ld, &w, cfg);
	if (rc == CN_OK && !*cfg->tls_cert != !*cfg->tls_key)
		rc = err_at(&ld, root->line, *cfg->tls_cert ? "server.tls.key" : "server.tls.cert",
			    "HTTPS needs both server.tls.cert and server.tls.key: set the %s too, or "
			    "neither for plain HTTP", *cfg->tls_cert ? "key" : "certificate");
out:
	if (rc) {
		config_free(cfg);
		cfg = NULL;
	}
	*out = cfg;
	return rc;
}

int config_load_buffer(const char *name, const void *data, size_t len, struct config **out,
		       struct cn_error *err)
{
	struct ynode *root;
	*out = NULL;
	int rc = ytree_parse_buffer(name, data, len, &root, err);
	if (rc)
		return rc;
	rc = config_from_tree(name, root, out, err);
	ytree_free(root);
	return rc;
}

int config_load(const char *path, struct config **out, struct cn_error *err)
{
	struct ynode *root;
	*out = NULL;
	int rc = ytree_parse_file(path, &root, err);
	if (rc)
		return rc;
	rc = config_from_tree(path, root, out, err);
	ytree_free(root);
	return rc;
}

/* ---- comparison --------------------------------------------------------- */

static bool str_eq(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Is key k the same in a and b (structs of the table k belongs to)? */
static bool key_equal(const struct ck_key *k, const void *a, const void *b)
{
	switch (k->type) {
	case CK_STRING:
		return str_eq(*(char *const *)cfield(a, k->off), *(char *const *)cfield(b, k->off));
	case CK_UINT:
		return *(const uint32_t *)cfield(a, k->off) == *(const uint32_t *)cfield(b, k->off);
	case CK_BOOL:
		return *(const bool *)cfield(a, k->off) == *(const bool *)cfield(b, k->off);
	case CK_STRLIST: {
		size_t n = *(const size_t *)cfield(a, k->count_off);
		if (n != *(const size_t *)cfield(b, k->count_off))
			return false;
		char *const *x = *(char **const *)cfield(a, k->off), *const *y = *(char **const *)cfield(b, k->off);
		for (size_t i = 0; i < n; i++)
			if (!str_eq(x[i], y[i]))
				return false;
		return true;
	}
	case CK_OPTIONS: {
		const struct config_options *x = cfield(a, k->off), *y = cfield(b, k->off);
		if (x->n != y->n)
			return false;
		for (size_t i = 0; i < x->n; i++)
			if (!str_eq(x->keys[i], y->keys[i]) || !str_eq(x->values[i], y->values[i]))
				return false;
		return true;
	}
	case CK_STATEMENT:
		return str_eq(*(char *const *)cfield(a, k->off), *(char *const *)cfield(b, k->off)) &&
		       *(const bool *)cfield(a, k->count_off) == *(const bool *)cfield(b, k->count_off);
	case CK_LIST:
		return true; /* sources are compared one by one, by name; tools make a new catalog */
	}
	return false;
}

const char *config_source_differs(const struct config_source *a, const struct config_source *b)
{
	for (size_t r = 0; r < NKEYS(source_keys); r++)
		if (!key_equal(&source_keys[r], a, b))
			return source_keys[r].path;
	return NULL;
}

size_t config_global_changes(const struct config *a, const struct config *b, const char **paths,
			     size_t max)
{
	size_t n = 0;
	for (size_t r = 0; r < NKEYS(global_keys); r++)
		if (!key_equal(&global_keys[r], a, b) && n < max)
			paths[n++] = global_keys[r].path;
	return n;
}

/* ---- lookups ------------------------------------------------------------ */

char *config_resolve_path(const struct config *cfg, const char *path)
{
	if (!path)
		return NULL;
	if (path[0] == '/' || path[0] == '\0' || !cfg || !cfg->dir)
		return strdup(path);
	while (path[0] == '.' && path[1] == '/') {
		path += 2;
		while (*path == '/')
			path++;
	}
	if (!*path)
		return strdup(cfg->dir);
	size_t dl = strlen(cfg->dir);
	bool slash = dl > 0 && cfg->dir[dl - 1] == '/';
	char *res = malloc(dl + strlen(path) + 2);
	if (res)
		sprintf(res, "%s%s%s", cfg->dir, slash ? "" : "/", path);
	return res;
}

const char *config_refresh_schedule(const struct config *cfg, const struct config_source *src)
{
	const char *s = src && src->refresh && *src->refresh ? src->refresh : cfg ? cfg->refresh : NULL;
	return s && *s && strcmp(s, "off") != 0 ? s : NULL;
}

const struct config_tool *config_find_tool(const struct config *cfg, const char *name)
{
	for (size_t i = 0; cfg && name && i < cfg->ntools; i++)
		if (strcmp(cfg->tools[i].name, name) == 0)
			return &cfg->tools[i];
	return NULL;
}

int config_require_interactor(const struct config *cfg, struct cn_error *err)
{
	const char *missing = !cfg->client_id || !*cfg->client_id ? "interactor.client_id"
			      : !cfg->client_secret || !*cfg->client_secret ? "interactor.client_secret"
									: NULL;
	if (!missing)
		return CN_OK;
	return cn_error_set(err, CN_ECONFIG, "%s: %s is not set; %s", cfg->path, missing,
			    INTERACTOR_HINT);
}

const struct config_source *config_find_source(const struct config *cfg, const char *name)
{
	if (!cfg || !name)
		return NULL;
	for (size_t i = 0; i < cfg->nsources; i++)
		if (strcmp(cfg->sources[i].name, name) == 0)
			return &cfg->sources[i];
	return NULL;
}

/* ---- printing ----------------------------------------------------------- */

static bool is_password_key(const char *k, size_t n)
{
	static const char *const names[] = {"password", "pwd", "passwd"};
	for (size_t i = 0; i < NKEYS(names); i++)
		if (strlen(names[i]) == n && strncasecmp(k, names[i], n) == 0)
			return true;
	return false;
}

/* End of a quoted value starting at s[j] (a quote or brace), or 0 when s[j] is no quote. */
static size_t quoted_end(const char *s, size_t j)
{
	char close = s[j] == '{' ? '}' : s[j];
	if (s[j] != '\'' && s[j] != '"' && s[j] != '{')
		return 0;
	size_t k = j + 1;
	while (s[k] && s[k] != close)
		k += (s[k] == '\\' && s[k + 1]) ? 2 : 1;
	return s[k] ? k + 1 : k;
}

#define KEY_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"

/* dsn with passwords replaced by <redacted>: `user:PASS@` in a URI, and the
 * value of password / pwd / passwd keys in conninfo (`k=v k=v`), `;`-separated
 * and URI query forms. Returns malloc'ed text or NULL (out of memory). */
static char *redact_dsn(const char *dsn)
{
	struct buf b;
	const char *scheme = strstr(dsn, "://");
	const char *term = strchr(dsn, ';') ? ";" : scheme ? "&#" : " \t\r\n";
	size_t i = 0, len = strlen(dsn);

	buf_init(&b, 4 * len + 64);
	if (scheme) {
		const char *auth = scheme + 3, *at = NULL;
		size_t alen = strcspn(auth, "/?#");
		for (size_t j = 0; j < alen; j++)
			if (auth[j] == '@')
				at = auth + j;
		const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
		if (colon) {
			if (buf_append(&b, dsn, (size_t)(colon + 1 - dsn)) || buf_puts(&b, "<redacted>"))
				goto fail;
			i = (size_t)(at - dsn);
		}
	}
	while (i < len) {
		bool keystart = i == 0 || strchr(" \t\r\n;?&", dsn[i - 1]);
		size_t kl = keystart ? strspn(dsn + i, KEY_CHARS) : 0;
		size_t j = i + kl;
		while (kl && (dsn[j] == ' ' || dsn[j] == '\t'))
			j++;
		if (kl && dsn[j] == '=' && is_password_key(dsn + i, kl)) {
			j++;
			while (dsn[j] == ' ' || dsn[j] == '\t')
				j++;
			size_t end = quoted_end(dsn, j);
			if (!end)
				end = j + strcspn(dsn + j, term);
			if (buf_append(&b, dsn + i, j - i) || buf_puts(&b, "<redacted>"))
				goto fail;
			i = end;
			continue;
		}
		if (buf_append(&b, dsn + i, 1))
			goto fail;
		i++;
	}
	return buf_steal(&b, NULL);
fail:
	buf_free(&b);
	return NULL;
}

/* A YAML double-quoted string; `${` is written `$${` so the output loads again. */
static void print_quoted(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c == '$' && s[1] == '{')
			fputs("$$", out);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

struct printer {
	FILE *out;
	bool dash; /* the next key line starts a list item ("- ") */
};

static void print_lead(struct printer *p, int indent, bool comment)
{
	if (p->dash && !comment) {
		fprintf(p->out, "%*s- ", indent - 2, "");
		p->dash = false;
		return;
	}
	fprintf(p->out, "%*s", p->dash ? indent - 2 : indent, "");
}

static void print_table(struct printer *p, const struct ck_key *keys, size_t nkeys,
			const void *base, int indent, bool docs);

static void print_value(struct printer *p, const struct ck_key *k, const void *base, int indent,
			bool docs)
{
	FILE *out = p->out;
	switch (k->type) {
	case CK_STATEMENT:
	case CK_STRING: {
		const char *s = *(char *const *)cfield(base, k->off);
		fputc(' ', out);
		if (k->flags & CK_F_SENSITIVE) {
			print_quoted(out, s && *s ? "<redacted>" : ""); /* unset says so */
		} else if (k->flags & CK_F_DSN) {
			char *r = s ? redact_dsn(s) : NULL;
			print_quoted(out, r ? r : "<redacted>");
			free(r);
		} else {
			print_quoted(out, s ? s : "");
		}
		fputc('\n', out);
		break;
	}
	case CK_UINT: fprintf(out, " %u\n", *(const uint32_t *)cfield(base, k->off)); break;
	case CK_BOOL:
		fprintf(out, " %s\n", *(const bool *)cfield(base, k->off) ? "true" : "false");
		break;
	case CK_STRLIST: {
		char *const *items = *(char **const *)cfield(base, k->off);
		size_t n = *(const size_t *)cfield(base, k->count_off);
		fputs(n ? "\n" : " []\n", out);
		for (size_t i = 0; i < n; i++) {
			fprintf(out, "%*s- ", indent + 2, "");
			print_quoted(out, (k->flags & CK_F_SENSITIVE) ? "<redacted>" : items[i]);
			fputc('\n', out);
		}
		break;
	}
	case CK_OPTIONS: {
		const struct config_options *o = cfield(base, k->off);
		fputs(o->n ? "\n" : " {}\n", out);
		for (size_t i = 0; i < o->n; i++) {
			fprintf(out, "%*s%s: ", indent + 2, "", o->keys[i]);
			print_quoted(out, option_is_secret(o->keys[i]) ? "<redacted>" : o->values[i]);
			fputc('\n', out);
		}
		break;
	}
	case CK_LIST: {
		const char *items;
		memcpy(&items, cfield(base, k->off), sizeof items);
		size_t n = *(const size_t *)cfield(base, k->count_off);
		fputs(n ? "\n" : " []\n", out);
		for (size_t i = 0; i < n; i++) {
			p->dash = true;
			print_table(p, k->sub, k->nsub, items + i * k->item_size, indent + 4,
				    docs && i == 0);
		}
		break;
	}
	}
}

/* An optional key the file did not set: left out of the printout. */
static bool unset_optional(const struct ck_key *k, const void *base)
{
	if (!(k->flags & CK_F_OPTIONAL))
		return false;
	if (k->type == CK_STRLIST)
		return *(const size_t *)cfield(base, k->count_off) == 0;
	return *(char *const *)cfield(base, k->off) == NULL;
}

/* Rows in table order; dotted paths become nested maps (rows of one map are adjacent). */
static void print_table(struct printer *p, const struct ck_key *keys, size_t nkeys,
			const void *base, int indent, bool docs)
{
	const char *prev = "";
	for (size_t r = 0; r < nkeys; r++) {
		if (unset_optional(&keys[r], base))
			continue;
		const char *a = keys[r].path, *b = prev;
		bool same = true;
		int depth = 0;
		for (;;) {
			size_t la = strcspn(a, "."), lb = strcspn(b, ".");
			if (a[la] != '.')
				break;
			same = same && la == lb && b[lb] == '.' && strncmp(a, b, la) == 0;
			if (!same) {
				print_lead(p, indent + 2 * depth, false);
				fprintf(p->out, "%.*s:\n", (int)la, a);
			}
			a += la + 1;
			b = same ? b + lb + 1 : "";
			depth++;
		}
		if (docs && keys[r].doc) {
			print_lead(p, indent + 2 * depth, true);
			fprintf(p->out, "# %s\n", keys[r].doc);
		}
		print_lead(p, indent + 2 * depth, false);
		fprintf(p->out, "%s:", a);
		print_value(p, &keys[r], base, indent + 2 * depth, docs);
		prev = keys[r].path;
	}
}

void config_print(const struct config *cfg, FILE *out)
{
	struct printer p = {.out = out};
	if (!cfg || !out)
		return;
	fputs("# effective configuration", out);
	if (cfg->path) {
		fputs(" of ", out);
		for (const char *c = cfg->path; *c; c++)
			fputc(isprint((unsigned char)*c) ? *c : '?', out);
	}
	fputs(" (defaults filled in, secrets and passwords redacted)\n", out);
	print_table(&p, global_keys, NKEYS(global_keys), cfg, 0, true);
}
