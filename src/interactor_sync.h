/*
 * interactor_sync.h - what the connector keeps in step with the Interactor
 * platform: its tools (`register`) and each source's semantic mappings
 * (`push-mappings`), from the command line and from the running daemon.
 *
 * register: the catalog (tools.h) as the platform should have it, each tool
 * named tool_prefix + name with callback_url = server.public_url +
 * "/v1/tools/" + that name, against GET /tools (every page):
 *   create     no tool of that name: POST /tools with the primary callback
 *              secret (secrets.h);
 *   update     description, parameters or callback_url differ: PUT
 *              /tools/{id} with the fields that differ (never the secret);
 *   unchanged  nothing to do;
 *   delete     (--prune) a tool whose name has the prefix that the catalog
 *              no longer offers, or a second tool of one name: DELETE;
 *   stale      the same without --prune: listed, left alone.
 * A second run with nothing changed only reads. An empty prefix refuses
 * --prune (every tool of the account would be a candidate).
 *
 * Mappings: a source with interactor_data_source_id sends its merged
 * mappings, what describe_schema shows (mapping files over database
 * comments; hidden tables and columns left out), as PATCH
 * /data-sources/{id}/semantic-mappings {"mappings": {"table": {...},
 * "table.column": {...}}} (keys "schema.table[.column]" where a table name
 * is in two schemas), only when their SHA-256 (with the id) differs from
 * the last one pushed, which is kept in STATE.platform.json.
 *
 * The daemon (sync_daemon): a thread that, when interactor.register_on_start
 * is set, registers at start (never pruning) and, for sources with a data
 * source id, pushes mappings at start and after each refresh that changes
 * them; failures are logged and retried with a growing pause (30 s up to an
 * hour). Without client credentials it only warns once.
 */
#ifndef CN_INTERACTOR_SYNC_H
#define CN_INTERACTOR_SYNC_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>

#include "interactor_client.h"
#include "secrets.h"
#include "source.h"
#include "tools.h"

enum sync_kind { SYNC_CREATE, SYNC_UPDATE, SYNC_UNCHANGED, SYNC_DELETE, SYNC_STALE };

struct sync_action {
	enum sync_kind kind;
	char *name;
	char *id;	  /* the platform's id; NULL for a create */
	char changed[64]; /* update: "description, parameters, callback_url" */
	cJSON *want;	  /* create / update: the tool as it should be (owned) */
};

struct sync_plan {
	struct sync_action *items;
	size_t n;
};

/* Every tool of the account (GET /tools, following next_cursor), as an
 * array of objects with at least id and name. */
int sync_list_tools(struct ic_client *ic, cJSON **tools, struct cn_error *err) CN_MUST_USE;
/* The plan that makes existing into desired (tool_catalog_to_json's
 * array). Pure. CN_EINVAL when prune is asked with an empty prefix. */
int sync_plan_tools(const cJSON *desired, const cJSON *existing, const char *prefix, bool prune,
		    struct sync_plan *plan, struct cn_error *err) CN_MUST_USE;
void sync_plan_free(struct sync_plan *plan);
/* One line per action ("create db_orders", "update db_run_query
 * (description)"), then a count line. */
void sync_plan_print(const struct sync_plan *plan, bool dry_run, FILE *out);

/* register: list, plan, print, apply (unless dry_run). callback_secret
 * goes to the tools created. Stops at the first failure (what was done
 * stays done; a second run carries on). */
int sync_register(struct ic_client *ic, const struct config *cfg, const struct tool_catalog *catalog,
		  const char *callback_secret, bool prune, bool dry_run, FILE *out,
		  struct cn_error *err) CN_MUST_USE;

/* {"mappings": {...}} of a merged model (see above); NULL on out of memory. */
cJSON *sync_mappings_payload(const struct schema_model *m);
/* Hex SHA-256 of id and the payload's text into out[65]. */
void sync_mappings_hash(const char *data_source_id, const cJSON *payload, char out[65]);

/* Push the mappings of every source with a data source id (only source,
 * when not NULL): each is made ready (connected, introspected) and pushed
 * when its hash changed, or always with force. A line per source on out
 * (may be NULL). CN_OK when every push worked or had nothing to do. */
int sync_push_mappings(struct ic_client *ic, struct source_set *set, const char *source, bool force,
		       bool dry_run, FILE *out, struct cn_error *err) CN_MUST_USE;

/* The file that remembers what was pushed: STATE.platform.json. */
char *sync_record_path(const struct config *cfg);

struct sync_daemon;
int sync_daemon_start(const struct config *cfg, struct source_set *set, const struct tool_catalog *catalog,
		      struct secrets *secrets, struct sync_daemon **out, struct cn_error *err) CN_MUST_USE;
/* A refresh published a new view: look at the mappings again. Cheap, any thread. */
void sync_daemon_notify(struct sync_daemon *d);
void sync_daemon_stop(struct sync_daemon *d); /* NULL is a no-op */

#endif
