/*
 * metrics.h - what the connector counts for its operators, served as
 * GET /metrics in Prometheus' text format (0.0.4).
 *
 * One registry per process, like the log: the request path, the tools, the
 * execution store and the refresh record events into it, from any thread.
 * Nothing is recorded before metrics_init(), so the one-shot CLI commands
 * pay nothing. What describes state rather than events (pools, the store's
 * size, each source's schema and drift, the process) is read when scraped.
 *
 * Labels come from the configuration (source and tool names) or from fixed
 * tables (status codes, error codes, reject classes), never from a request's
 * bytes, so the number of series is bounded by the configuration. Beyond
 * METRICS_MAX_SERIES new series are dropped and counted.
 *
 * Cost: recording takes one mutex, a hash and a few additions; a scrape
 * formats every series under that mutex (bench/opscost.sh measures both).
 */
#ifndef CN_METRICS_H
#define CN_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "buf.h"

#define METRICS_MAX_SERIES 4096

void metrics_init(void);
void metrics_shutdown(void); /* frees every series; recording stops */

/* A tool callback answered: tool is the catalog's name (NULL when the URL
 * named no known tool), source NULL when the call used none, code the
 * error code (NULL on success). Whole request time. */
void metrics_tool_call(const char *tool, const char *source, int http_status, const char *code,
		       double seconds, size_t bytes);
/* A retried execution_id got its stored answer. */
void metrics_replay(void);
/* A tool call starts or ends (the in-flight gauge). */
void metrics_inflight(int delta);
/* A call answered 202 goes on (+1) or ends (-1). */
void metrics_async(int delta);
/* A driver ran a statement: time in execute(), rows the answer holds. */
void metrics_query(const char *source, double seconds, uint64_t rows);
/* The guard (or a later read-only layer) refused a query; reject is the
 * driver's enum cn_reject. */
void metrics_rejection(const char *source, int reject);
/* The execution store committed answers in one transaction. */
void metrics_store_write(double seconds);
/* The execution store wrote n audit records, or lost n (audit.h). */
void metrics_audit_written(uint64_t n);
void metrics_audit_dropped(uint64_t n);
/* A schema refresh of source finished. */
void metrics_refresh(const char *source, bool ok, double seconds);
/* A reload was applied (ok) or refused. */
void metrics_reload(bool ok);
/* The server closed a connection from outside server.allow_from. */
void metrics_connection_denied(void);

/* Append the whole exposition to out: the events above, then what app's
 * sources, drivers and store report now, then the process. app may be NULL
 * (events and the process only). CN_OK or CN_ENOMEM. */
int metrics_render(struct app *app, struct buf *out);

/* The content type of metrics_render's text. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
