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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

#define CONFIG_MIN_SECRET_LEN 16
#define CONFIG_MAX_SECRETS 8
#define CONFIG_MAX_SOURCES 64
#define CONFIG_MAX_OPTIONS 32

struct config_limits {
	uint32_t max_rows;         /* default 1000, 1..100000 */
	uint32_t max_result_bytes; /* default 60000, 1024..65536 (the platform caps results at 64 KB) */
	uint32_t timeout_ms;       /* default 10000, 1..25000 (below the platform's 30 s) */
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
	int line;            /* where the source starts in the file */
};

struct config {
	char *path;              /* the file as given */
	char *dir;               /* its directory: relative paths in the file resolve here */
	/* server */
	char *listen;            /* "host:port", default "127.0.0.1:8080" */
	char *public_url;        /* optional, default "" */
	uint32_t max_connections; /* default 256, 1..4096 */
	uint32_t max_connections_per_address; /* default 32, 1..4096 */
	uint32_t request_timeout; /* seconds a connection may stay silent, default 10, 1..300 */
	char *tls_cert;          /* PEM certificate chain ("" = plain HTTP), resolved against dir */
	char *tls_key;           /* PEM private key, resolved against dir */
	char **allow_from;       /* client networks (CIDR) allowed to connect; none = any */
	size_t nallow_from;
	/* auth */
	char **callback_secrets; /* 1..CONFIG_MAX_SECRETS, each >= 16 bytes, no surrounding blanks; sensitive */
	size_t nsecrets;
	uint32_t timestamp_tolerance; /* seconds, default 300, 1..3600 */
	/* state */
	char *state_path;        /* default "./connector-state.db", resolved against dir */
	uint32_t snapshots;      /* schema snapshots kept per source, default 10, 1..1000 */
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
};

/* Load and validate. On error returns CN_ECONFIG / CN_EIO / CN_ENOMEM and
 * err->message says "FILE:LINE: KEY: what is wrong; what to do". */
int config_load(const char *path, struct config **out, struct cn_error *err) CN_MUST_USE;
/* The same from memory (name stands for the file in messages and for dir). */
int config_load_buffer(const char *name, const void *data, size_t len, struct config **out,
		       struct cn_error *err) CN_MUST_USE;
void config_free(struct config *cfg);

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

/* The schedule a source refreshes on: its own `refresh`, else the global
 * one. NULL when refreshing on a schedule is off. */
const char *config_refresh_schedule(const struct config *cfg, const struct config_source *src);

#endif
