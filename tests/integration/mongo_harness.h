/*
 * mongo_harness.h - the MongoDB integration tests' harness: the environment
 * written by tests/support/mongo.sh and a client of its own (plain
 * libmongoc, not the driver) to look at the test server from the side:
 * collection contents, open cursors, fail points, roles, the server's
 * command log (the shared part is harness.h).
 *
 * h_env.dsn is the source's connection string
 * (mongodb://127.0.0.1:PORT/connector_test); the test server has no users,
 * so super_dsn, the side client's, is the same. The recording sink caps rows
 * as the core's result writer does (h_env.writer_cap).
 */
#ifndef MONGO_HARNESS_H
#define MONGO_HARNESS_H

#include <mongoc/mongoc.h>

#include "harness.h"

/* Group setup for cmocka: loads the driver and connects the side client;
 * fails (with a message saying what to do) when the environment of
 * mongo.sh is missing. h_teardown closes the side client. */
int h_setup(void **state);

/* Hidden in the tests: collection secrets; customers.email, customers.ssn,
 * customers.address.street (and what lies under them). */
int h_hidden(void *ctx, const char *schema, const char *table, const char *column);

/* ---- the side client ---- */
/* A command given as JSON (Extended JSON) on db; reply may be NULL. */
bool h_command(const char *db, const char *json, bson_t *reply);
/* Every collection of connector_test (documents by _id, indexes, options) as
 * one canonical text: equal texts, equal database. Caller frees. */
char *h_snapshot(void);
/* serverStatus metrics.cursor.open.total, or -1. */
int64_t h_open_cursors(void);
/* Poll h_open_cursors() until it is 0, up to ms. */
bool h_cursors_reach_zero(int ms);
/* Bytes in the server log now, and the log's text from an offset (caller frees). */
long h_log_size(void);
char *h_log_since(long offset);
/* The fail point: failCommand for commands (JSON array text), with data
 * fields (JSON object members text, e.g. "\"blockConnection\": true, ..."). */
bool h_failpoint(const char *mode, const char *commands, const char *data);
bool h_failpoint_off(void);

#endif
