/*
 * config.h - the connector's YAML configuration as validated structs.
 *
 * One table of keys (config.c) drives parsing, defaults, validation and the
 * printout of check-config. `${VAR}` in any string value is replaced by the
 * environment variable VAR (an unset or empty VAR is an error naming file,
 * line and key; `$${` writes a literal `${`). Every error message starts
 * with "FILE:LINE: KEY: ".
 */
#ifndef CN_CONFIG_H
#define CN_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

#define CONFIG_MIN_SECRET_LEN 16
#define CONFIG_MAX_SECRETS 8
#define CONFIG_MAX_SOURCES 64
#define CONFIG_MAX_OPTIONS 32
#define CONFIG_MAX_TOOLS 64         /* curated tools */
#define CONFIG_MAX_TOOL_PARAMS 100  /* parameters of one curated tool ($1..$100) */
#define CONFIG_MAX_TOOL_NAME 64     /* a tool's name as registered, tool_prefix included */
#define CONFIG_MAX_ENUM 64          /* values of one parameter's enum */

struct config_limits {
	uint32_t max_rows;         /* default 1000, 1..100000 */
	uint32_t max_result_bytes; /* default 60000, 1024..65536 (the platform caps results at 64 KB) */
	uint32_t timeout_ms;       /* default 10000, 1..25000 (below the platform's 30 s) */
	/* 0 (default): answered within the callback, or not at all; else the budget
	 * of a query that may be answered 202 after server.async_after_ms, up to
	 * 300000 (the platform's 5-minute async window); needs server.public_url */
	uint32_t async_timeout_ms;
};

/* A driver's own settings: the source's `options:` map, in file order. */
struct config_options {
	char **keys;   /* [a-z0-9_]{1,64} */
	char **values; /* scalars as written (${VAR} expanded); lists joined with "," */
	size_t n;      /* at most CONFIG_MAX_OPTIONS */
};

struct config_source {
	char *name;          /* [A-Za-z0-9_-]{1,64}, unique */
	char *driver;        /* [a-z0-9_]{1,32}: module name, e.g. "sqlite" */
	char *dsn;           /* required; printed with any password redacted */
	char *description;   /* optional, default "" */
	char *mappings_path; /* optional; resolved against the config file's directory */
	bool allow_run_query;/* key `run_query`, default true */
	uint32_t pool_size;  /* key `pool.size`, default 4, 1..256 */
	char *refresh;       /* cron expression, @macro or "off"; "" (default) = the global one */
	struct config_limits limits;
	struct config_options options; /* key `options` */
	char *interactor_data_source_id; /* the platform's id of this data source ("": mappings
					    are not pushed) */
	int line;            /* where the source starts in the file */
};

/* The types a curated tool's parameter may have (key `type`). */
enum config_param_type {
	CONFIG_PARAM_STRING,
	CONFIG_PARAM_INTEGER,
	CONFIG_PARAM_NUMBER,
	CONFIG_PARAM_BOOLEAN,
	CONFIG_PARAM_DATE,      /* ISO 8601 YYYY-MM-DD, bound as text */
	CONFIG_PARAM_TIMESTAMP, /* ISO 8601 YYYY-MM-DDTHH:MM:SS[.f][Z|+hh:mm], bound as text */
};

/* One parameter of a curated tool: bound to $N (or {"$param": N}) where N
 * is its position in the list, 1-based. Optional keys are NULL (strings) or
 * empty (enum) when the file does not set them; the loader has checked that
 * enum, minimum, maximum, pattern and default fit the type and each other. */
struct config_tool_param {
	char *name;          /* [A-Za-z_][A-Za-z0-9_]{0,63}, unique within the tool */
	char *type_name;     /* key `type`: string|integer|number|boolean|date|timestamp */
	enum config_param_type type;
	char *description;   /* default "" */
	bool required;       /* default false: a missing optional one binds its default, or NULL */
	char **enum_values;  /* key `enum`, as written; nenum == 0 when not set */
	size_t nenum;
	char *minimum;       /* NULL when not set; a number (integer and number types) */
	char *maximum;
	char *pattern;       /* NULL when not set; POSIX extended regex (string types) */
	char *default_value; /* key `default`, NULL when not set */
	int line;
};

/* A curated tool: a fixed, reviewed statement with typed parameters. */
struct config_tool {
	char *name;          /* [A-Za-z][A-Za-z0-9_]*, unique, not a built-in tool's name */
	char *description;   /* required: what the assistant reads */
	char *source;        /* a configured source's name */
	char *statement;     /* SQL with $1..$n, or a command document's JSON with {"$param": N} */
	bool statement_is_document; /* written as a map, or as text starting with '{' */
	struct config_tool_param *params; /* key `parameters`, in $1..$n order */
	size_t nparams;
	int line;            /* where the tool starts */
	int statement_line;  /* where its statement is */
	int source_line;
};

struct config {
	atomic_uint refs;        /* config_hold / config_free */
	char *path;              /* the file as given */
	char *dir;               /* its directory: relative paths in the file resolve here */
	/* server */
	char *listen;            /* "host:port", default "127.0.0.1:8080" */
	char *public_url;        /* optional, default "" */
	uint32_t max_connections; /* default 256, 1..4096 */
	uint32_t max_connections_per_address; /* default 32, 1..4096 */
	uint32_t request_timeout; /* seconds a connection may stay silent, default 10, 1..300 */
	uint32_t async_after_ms; /* answer 202 after this long (async sources), default 20000 */
	char *tls_cert;          /* PEM certificate chain ("" = plain HTTP), resolved against dir */
	char *tls_key;           /* PEM private key, resolved against dir */
	char **allow_from;       /* client networks (CIDR) allowed to connect; none = any */
	size_t nallow_from;
	/* auth */
	char **callback_secrets; /* 1..CONFIG_MAX_SECRETS, each >= 16 bytes, no surrounding blanks; sensitive */
	size_t nsecrets;
	uint32_t timestamp_tolerance; /* seconds, default 300, 1..3600 */
	char *secrets_file;      /* rotated callback secrets (secrets.h); "" = STATE.secrets; resolved
				    against dir */
	/* state */
	char *state_path;        /* default "./connector-state.db", resolved against dir */
	uint32_t snapshots;      /* schema snapshots kept per source, default 10, 1..1000 */
	char *state_backend;     /* "sqlite" (default) | "postgres" */
	char *state_dsn;         /* backend postgres: libpq URI or key=value; sensitive */
	uint32_t state_pool;     /* backend postgres: connections at most, default 4, 1..64 */
	uint32_t state_stale_timeout; /* backend postgres: seconds without a heartbeat, default 15 */
	/* drivers */
	char *drivers_dir;       /* optional ("" = default search), resolved against dir */
	/* log */
	char *log_level;         /* "error" | "warn" | "info" | "debug", default "info" */
	char *log_format;        /* "text" | "json", default "json" */
	/* metrics */
	bool metrics_enabled;      /* default true */
	char **metrics_allow_from; /* networks that may read /metrics; none = loopback and private */
	size_t nmetrics_allow_from;
	/* audit log (audit.h) */
	bool audit_enabled;          /* default true */
	bool audit_include_statements; /* default false: fingerprints only */
	uint32_t audit_retention_days; /* default 30, 7..90 */
	/* schema refresh */
	char *refresh;           /* default schedule of every source: cron, @macro or "off"; default "@hourly" */
	char *refresh_timezone;  /* IANA zone the schedules are read in, default "UTC" */
	uint32_t refresh_jitter; /* seconds, each refresh waits a random 0..this, default 30, 0..3600 */
	struct config_source *sources; /* 1..CONFIG_MAX_SOURCES */
	size_t nsources;
	/* curated tools */
	struct config_tool *tools; /* 0..CONFIG_MAX_TOOLS */
	size_t ntools;
	/* interactor: the platform's API (interactor_client.h) */
	char *api_url;           /* https, default the platform's */
	char *auth_url;          /* https, the OAuth token endpoint */
	char *client_id;         /* "" = not configured */
	char *client_secret;     /* sensitive */
	char *ca_file;           /* PEM CAs added to the system's; resolved against dir */
	char *proxy;             /* "" = libcurl's proxy environment variables */
	uint32_t api_timeout_ms; /* one HTTP exchange, default 15000 */
	char *tool_prefix;       /* prepended to every tool name registered, default "db_" */
	bool register_on_start;  /* serve registers the catalog (and pushes mappings) at start */
	uint32_t rotation_window_hours; /* rotate-secret keeps the old secret this long */
};

/* Load and validate. On error returns CN_ECONFIG / CN_EIO / CN_ENOMEM and
 * err->message says "FILE:LINE: KEY: what is wrong; what to do". */
int config_load(const char *path, struct config **out, struct cn_error *err) CN_MUST_USE;
/* The same from memory (name stands for the file in messages and for dir). */
int config_load_buffer(const char *name, const void *data, size_t len, struct config **out,
		       struct cn_error *err) CN_MUST_USE;
/* Another reference (a source kept across a reload holds the config it was
 * made from); config_free drops one and frees the config with the last. */
struct config *config_hold(const struct config *cfg);
void config_free(struct config *cfg);

/* The first key of a source's entry ("pool.size", "options", ...) whose
 * value differs between a and b, or NULL when they are the same. */
const char *config_source_differs(const struct config_source *a, const struct config_source *b);
/* The global keys (not the sources) whose values differ: up to max paths
 * ("server.listen", ...) in paths; returns how many differ. */
size_t config_global_changes(const struct config *a, const struct config *b, const char **paths,
			     size_t max);

/* Print the effective configuration (every key, defaults filled in) as YAML,
 * with sensitive values redacted as "<redacted>". */
void config_print(const struct config *cfg, FILE *out);

/* "10.0.0.0/8", "192.168.1.7", "2001:db8::/32": the family (AF_INET or
 * AF_INET6), the address bytes (4 or 16 used) and the prefix length (the
 * whole address when none is given). 0, or -1 when text is not one. */
int config_parse_cidr(const char *text, int *family, unsigned char addr[16], int *prefix);

/* Resolve path against cfg->dir unless absolute. Returns malloc'ed string. */
char *config_resolve_path(const struct config *cfg, const char *path);

const struct config_source *config_find_source(const struct config *cfg, const char *name);
const struct config_tool *config_find_tool(const struct config *cfg, const char *name);

/* The names of the built-in tools, ended by NULL (a curated tool may not
 * take one, nor may tool_prefix begin one). */
extern const char *const config_builtin_tools[];

/* Whether the platform client is configured (client_id and client_secret
 * set); when not, why in err ("FILE: interactor.client_id is not set; ..."). */
int config_require_interactor(const struct config *cfg, struct cn_error *err) CN_MUST_USE;

/* state.backend is postgres: the state is shared with other replicas. */
bool config_state_shared(const struct config *cfg);

/* The schedule a source refreshes on: its own `refresh`, else the global
 * one. NULL when refreshing on a schedule is off. */
const char *config_refresh_schedule(const struct config *cfg, const struct config_source *src);

#endif
