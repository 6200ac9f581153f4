/*
 * test_config.c - the configuration loader: bad files and their messages,
 * a full and a minimal good file, ${VAR} expansion, callback secret rules,
 * config_print redaction, paths, and agreement with the JSON Schema and docs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "yaml_tree.h"

#define SECRET "Zq9-secret-value-0123456789abcdef"
#define SECRET2 "second-rotation-secret-XYZ0987"
#define DBPASS "dbPassw0rd-VERY-private"
#define AUTH "auth: { callback_secrets: [\"${CN_TEST_SECRET}\"] }\n"
#define SOURCE "sources:\n  - { name: demo, driver: sqlite, dsn: demo.db }\n"
#define NAME "conf/t.yaml"

static int setup_env(void **state)
{
	(void)state;
	setenv("CN_TEST_SECRET", SECRET, 1);
	setenv("CN_TEST_SECRET2", SECRET2, 1);
	setenv("CN_TEST_DBPASS", DBPASS, 1);
	setenv("CN_TEST_EMPTY", "", 1);
	setenv("CN_TEST_SHORT", "tinyENVvalue", 1);
	setenv("CN_TEST_PADDED", "padded-env-secret-0123456789 ", 1);
	setenv("CN_TEST_HOST", "db.internal", 1);
	setenv("CN_TEST_LISTEN", "0.0.0.0:9000", 1);
	unsetenv("CN_TEST_UNSET");
	return 0;
}

static int load(const char *text, struct config **cfg, struct cn_error *err)
{
	static struct config poison;
	memset(err, 0, sizeof *err);
	*cfg = &poison; /* config_load_buffer must overwrite it, also on errors */
	return config_load_buffer(NAME, text, strlen(text), cfg, err);
}

/* The effective configuration as config_print writes it (malloc'ed). */
static char *print_to_string(const struct config *cfg)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	config_print(cfg, f);
	assert_int_equal(fclose(f), 0);
	assert_non_null(text);
	return text;
}

static void assert_contains(const char *hay, const char *needle, const char *what)
{
	if (!strstr(hay, needle))
		fail_msg("%s: expected '%s' in:\n%s", what, needle, hay);
}

static void assert_lacks(const char *hay, const char *needle, const char *what)
{
	if (strstr(hay, needle))
		fail_msg("%s: '%s' must not appear in:\n%s", what, needle, hay);
}

/* ---- bad configurations ------------------------------------------------- */

struct bad_case {
	const char *yaml;
	/* substrings of the message (want[0] has FILE:LINE: KEY); "!text": text must not appear */
	const char *want[4];
};

#define NAME65 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define SRC1(extra) AUTH "sources:\n  - { name: a, driver: sqlite, dsn: x" extra " }\n"
#define LISTEN(v) "server: { listen: \"" v "\" }\n" AUTH SOURCE

static const struct bad_case bad_cases[] = {
	/* wrong types */
	{"server:\n  listen: { a: 1 }\n" AUTH SOURCE,
	 {NAME ":2: server.listen: expected a single value, got a map"}},
	{"server: 5\n" AUTH SOURCE,
	 {NAME ":1: server: expected a map, got a value", "listen, public_url, max_connections"}},
	{SRC1(", limits: [1]"),
	 {NAME ":3: sources[0].limits: expected a map, got a list",
	  "max_rows, max_result_bytes, timeout_ms"}},
	{SRC1(", pool: 4"), {NAME ":3: sources[0].pool: expected a map, got a value", "size"}},
	{"- a\n- b\n", {NAME ":1: (top level): expected a map", "sources"}},
	{"server: [\n", {NAME ":"}},
	/* unknown keys */
	{AUTH "sources:\n  - name: demo\n    driver: sqlite\n    dsn: demo.db\n    limits:\n"
	      "      timout_ms: 5\n",
	 {NAME ":7: sources[0].limits.timout_ms: unknown key; did you mean 'timeout_ms'?"}},
	{AUTH "sources:\n  - name: demo\n    driver: sqlite\n    dsn: demo.db\n    timeout_ms: 5\n",
	 {NAME ":6: sources[0].timeout_ms: unknown key; did you mean 'limits.timeout_ms'"}},
	{SRC1(", pool_size: 3"), {NAME ":3: sources[0].pool_size: unknown key; did you mean 'pool.size'"}},
	{"server: { zzzzzz: 1 }\n" AUTH SOURCE,
	 {NAME ":1: server.zzzzzz: unknown key; the keys allowed here are: listen, public_url, max_connections"}},
	{AUTH "sourcse:\n  - { name: demo }\n", {NAME ":2: sourcse: unknown key; did you mean 'sources'?"}},
	{"Server: {}\n" AUTH SOURCE, {NAME ":1: Server: unknown key; did you mean 'server'?"}},
	/* numbers */
	{"server: { max_connections: 0 }\n" AUTH SOURCE,
	 {NAME ":1: server.max_connections: 0 is out of range: use a number from 1 to 4096"}},
	{SRC1(", limits: { max_result_bytes: 70000 }"),
	 {NAME ":3: sources[0].limits.max_result_bytes: 70000 is out of range: use a number from 1024 "
	       "to 65536"}},
	{"server: { max_connections: 4.5 }\n" AUTH SOURCE,
	 {NAME ":1: server.max_connections: expected a whole number from 1 to 4096, got '4.5'"}},
	{SRC1(", limits: { timeout_ms: -1 }"),
	 {NAME ":3: sources[0].limits.timeout_ms: -1 is out of range: use a number from 1 to 25000"}},
	{"server: { max_connections: 99999999999999999999 }\n" AUTH SOURCE,
	 {NAME ":1: server.max_connections: 99999999999999999999 is out of range"}},
	{"server: { max_connections: \"8\" }\n" AUTH SOURCE,
	 {NAME ":1: server.max_connections: write the number without quotes"}},
	{"server:\n  max_connections: ${CN_TEST_HOST}\n" AUTH SOURCE,
	 {NAME ":2: server.max_connections: expected a whole number from 1 to 4096, got '${CN_TEST_HOST}'"}},
	{AUTH "sources:\n  - { name: a, driver: sqlite, dsn: x,\n      pool: { size: 257 } }\n",
	 {NAME ":4: sources[0].pool.size: 257 is out of range: use a number from 1 to 256"}},
	/* booleans and choices */
	{SRC1(", run_query: yes"), {NAME ":3: sources[0].run_query: expected true or false, got 'yes'"}},
	{SRC1(", run_query: True"), {NAME ":3: sources[0].run_query: expected true or false, got 'True'"}},
	{SRC1(", run_query: \"true\""),
	 {NAME ":3: sources[0].run_query: write true or false without quotes"}},
	{"log: { level: verbose }\n" AUTH SOURCE,
	 {NAME ":1: log.level: 'verbose' is not one of error|warn|info|debug"}},
	{"log:\n  format: xml\n" AUTH SOURCE, {NAME ":2: log.format: 'xml' is not one of text|json"}},
	/* required keys and sources */
	{AUTH "sources:\n  - name: demo\n    driver: sqlite\n",
	 {NAME ":3: sources[0].dsn: is missing; give the driver's connection string"}},
	{AUTH "sources:\n  - { driver: sqlite, dsn: x }\n", {NAME ":3: sources[0].name: is missing"}},
	{AUTH "sources:\n  - { name: a, dsn: x }\n", {NAME ":3: sources[0].driver: is missing"}},
	{AUTH "sources:\n  - name: a\n    driver: sqlite\n    dsn:\n  - name: b\n",
	 {"sources[0].dsn: must not be empty", NAME ":"}},
	{AUTH, {NAME ":1: sources: is missing; add a `sources:` list"}},
	{AUTH "sources: []\n", {NAME ":2: sources: the list is empty"}},
	{AUTH "sources: demo\n", {NAME ":2: sources: expected a list of sources, got a value"}},
	{AUTH "sources:\n  - demo\n", {NAME ":3: sources[0]: expected a map with name, driver and dsn"}},
	{AUTH "sources:\n  - { name: demo, driver: sqlite, dsn: a }\n"
	      "  - { name: demo, driver: sqlite, dsn: b }\n",
	 {NAME ":4: sources[1].name: duplicate source name 'demo' (also sources[0], line 3)"}},
	/* names */
	{AUTH "sources:\n  - { name: \"bad name!\", driver: sqlite, dsn: a }\n",
	 {NAME ":3: sources[0].name: 'bad name!' is not a valid source name", "1 to 64"}},
	{AUTH "sources:\n  - { name: " NAME65 ", driver: sqlite, dsn: a }\n",
	 {NAME ":3: sources[0].name: ", "is not a valid source name"}},
	{AUTH "sources:\n  - { name: \"\", driver: sqlite, dsn: a }\n",
	 {NAME ":3: sources[0].name: must not be empty"}},
	{AUTH "sources:\n  - { name: a, driver: SQLite, dsn: a }\n",
	 {NAME ":3: sources[0].driver: 'SQLite' is not a valid driver name", "1 to 32"}},
	{AUTH "sources:\n  - { name: a, driver: a23456789012345678901234567890123, dsn: a }\n",
	 {NAME ":3: sources[0].driver: ", "is not a valid driver name"}},
	/* listen and public_url */
	{LISTEN("localhost"), {NAME ":1: server.listen: 'localhost' is not host:port"}},
	{LISTEN("127.0.0.1:0"), {NAME ":1: server.listen: '127.0.0.1:0' has no valid port", "1 to 65535"}},
	{LISTEN("127.0.0.1:65536"), {NAME ":1: server.listen: '127.0.0.1:65536' has no valid port"}},
	{LISTEN("127.0.0.1:080"), {NAME ":1: server.listen: '127.0.0.1:080' has no valid port"}},
	{LISTEN("::1:8080"), {NAME ":1: server.listen: '::1:8080' is not host:port", "[::1]:8080"}},
	{LISTEN("[::1]8080"), {NAME ":1: server.listen: '[::1]8080' is not a valid address", "brackets"}},
	{LISTEN("[]:8080"), {NAME ":1: server.listen: '[]:8080' is not a valid address"}},
	{LISTEN(":8080"), {NAME ":1: server.listen: ':8080' is not host:port"}},
	{LISTEN("[::1]:80a"), {NAME ":1: server.listen: '[::1]:80a' has no valid port"}},
	{LISTEN("host name:80"), {NAME ":1: server.listen: 'host name:80' is not host:port"}},
	{"server: { public_url: \"ftp://x\" }\n" AUTH SOURCE,
	 {NAME ":1: server.public_url: 'ftp://x' is not a URL"}},
	/* ${VAR} */
	{SRC1(", description: \"host=${CN_TEST_UNSET}\""),
	 {NAME ":3: sources[0].description: environment variable CN_TEST_UNSET is not set",
	  "export CN_TEST_UNSET="}},
	{AUTH "sources:\n  - name: a\n    driver: sqlite\n    dsn: \"${CN_TEST_EMPTY}\"\n",
	 {NAME ":5: sources[0].dsn: environment variable CN_TEST_EMPTY is empty"}},
	{SRC1(", description: \"abc ${FOO\""), {NAME ":3: sources[0].description: unterminated '${'", "$${"}},
	{SRC1(", description: \"${1A}\""),
	 {NAME ":3: sources[0].description: invalid environment variable name '${1A}'"}},
	{SRC1(", description: \"${}\""), {NAME ":3: sources[0].description: invalid environment variable"}},
	{SRC1(", mappings: \"${CN_TEST_UNSET}/m.yaml\""),
	 {NAME ":3: sources[0].mappings: environment variable CN_TEST_UNSET is not set"}},
	{"auth: { callback_secrets: [\"${A-B}xxxxxxxxxxxxxxxxx\"] }\n" SOURCE,
	 {NAME ":1: auth.callback_secrets[0]: invalid environment variable name in '${...}'", "!xxxxxxxx"}},
	{"auth: { callback_secrets: [\"${CN_TEST_SECRET}\", \"${CN_TEST_UNSET}\"] }\n" SOURCE,
	 {NAME ":1: auth.callback_secrets[1]: environment variable CN_TEST_UNSET is not set"}},
	{SRC1(", dsn2: 1"), {NAME ":3: sources[0].dsn2: unknown key; did you mean 'dsn'?"}},
	{AUTH "sources:\n  - { name: a, driver: sqlite, dsn: \"a\\0b\" }\n",
	 {NAME ":3: sources[0].dsn: the value contains a NUL byte"}},
	/* callback secrets */
	{SOURCE, {NAME ":1: auth.callback_secrets: is missing; set auth.callback_secrets to the tool's "
		       "callback_secret", "openssl rand -hex 32", "${INTERACTOR_CALLBACK_SECRET}"}},
	{"auth: {}\n" SOURCE, {NAME ":1: auth.callback_secrets: is missing", "openssl rand"}},
	{"auth:\n  timestamp_tolerance: 10\n" SOURCE, {NAME ":1: auth.callback_secrets: is missing"}},
	{"auth:\n  callback_secrets: []\n" SOURCE,
	 {NAME ":2: auth.callback_secrets: the list is empty; set auth.callback_secrets"}},
	{"auth:\n  callback_secrets:\n" SOURCE,
	 {"auth.callback_secrets: must not be empty; set auth.callback_secrets", "openssl rand"}},
	{"auth: { callback_secrets: [\"\"] }\n" SOURCE,
	 {NAME ":1: auth.callback_secrets[0]: the callback secret is empty", "openssl rand -hex 32"}},
	{"auth: { callback_secrets: \"\" }\n" SOURCE,
	 {NAME ":1: auth.callback_secrets: the callback secret is empty"}},
	{"auth: { callback_secrets: [\" padded-secret-0123456789\"] }\n" SOURCE,
	 {NAME ":1: auth.callback_secrets[0]: the callback secret has leading or trailing whitespace",
	  "openssl rand", "!padded-secret"}},
	{"auth: { callback_secrets: [\"${CN_TEST_SECRET}\", \"tinyVALUE\"] }\n" SOURCE,
	 {NAME ":1: auth.callback_secrets[1]: the callback secret is shorter than 16 bytes",
	  "INTERACTOR_CALLBACK_SECRET", "!tinyVALUE"}},
	{"auth: { callback_secrets: \"${CN_TEST_SHORT}\" }\n" SOURCE,
	 {NAME ":1: auth.callback_secrets: the callback secret is shorter than 16 bytes", "!tinyENV"}},
	{"auth:\n  callback_secrets:\n    - \"${CN_TEST_PADDED}\"\n" SOURCE,
	 {NAME ":3: auth.callback_secrets[0]: the callback secret has leading or trailing whitespace",
	  "!padded-env"}},
	{"auth: { callback_secrets: [a1234567890123456, b1234567890123456, c1234567890123456, "
	 "d1234567890123456, e1234567890123456, f1234567890123456, g1234567890123456, "
	 "h1234567890123456, i1234567890123456] }\n" SOURCE,
	 {NAME ":1: auth.callback_secrets: has 9 items; at most 8 are allowed"}},
	{"auth: { callback_secrets: { a: b } }\n" SOURCE,
	 {NAME ":1: auth.callback_secrets: expected a string or a list of strings, got a map"}},
	{"auth: { callback_secrets: [~] }\n" SOURCE,
	 {NAME ":1: auth.callback_secrets[0]: the item is empty", "openssl rand"}},
	{"auth: { callback_secrets: [{ a: 1 }] }\n" SOURCE,
	 {NAME ":1: auth.callback_secrets[0]: expected a single value, got a map"}},
	{"auth: 1234567890123456789\n" SOURCE, {NAME ":1: auth: expected a map, got a value"}},
	/* schedules and their zone */
	{AUTH "refresh: \"*/15 * * *\"\n" SOURCE,
	 {NAME ":2: refresh: '*/15 * * *' is not a schedule: expected 5 fields", "@hourly, or off"}},
	{AUTH "sources:\n  - { name: a, driver: sqlite, dsn: x, refresh: \"0 25 * * *\" }\n",
	 {NAME ":3: sources[0].refresh: '0 25 * * *' is not a schedule: field 2 (hour): 25 is out of "
	       "range 0-23"}},
	{AUTH "refresh: \"0 0 * * fry\"\n" SOURCE,
	 {"field 5 (day-of-week): 'fry' is not a number or a name (sun..sat)"}},
	{AUTH "refresh: \"0 0 30 2 *\"\n" SOURCE, {NAME ":2: refresh: '0 0 30 2 *' never fires"}},
	{AUTH "refresh: \"@reboot\"\n" SOURCE, {"unknown macro '@reboot'"}},
	{AUTH "refresh_timezone: Europe/Berln\n" SOURCE,
	 {NAME ":2: refresh_timezone: unknown time zone 'Europe/Berln'", "Europe/Berlin"}},
	{AUTH "refresh_timezone: ../../etc/passwd\n" SOURCE, {"is not a time zone name"}},
	{AUTH "refresh_jitter: 3601\n" SOURCE, {"refresh_jitter: 3601 is out of range"}},
	{"state: { snapshots: 0 }\n" AUTH SOURCE, {NAME ":1: state.snapshots: 0 is out of range"}},
	/* the shared state store */
	{"state: { backend: postgres }\n" AUTH SOURCE,
	 {NAME ":1: state.dsn: state.backend is postgres but state.dsn is not set", "CN_STATE_DSN"}},
	{"state: { dsn: \"postgresql://u:pw0123@db/x\" }\n" AUTH SOURCE,
	 {NAME ":1: state.dsn: is set but state.backend is sqlite", "backend: postgres"}},
	{"state: { backend: mysql }\n" AUTH SOURCE,
	 {NAME ":1: state.backend: 'mysql' is not one of sqlite|postgres"}},
	{"state: { backend: postgres, dsn: x, pool: 65 }\n" AUTH SOURCE,
	 {NAME ":1: state.pool: 65 is out of range"}},
	/* the platform client */
	{AUTH SOURCE "interactor: { api_url: \"http://core.example\" }\n",
	 {NAME ":4: interactor.api_url: 'http://core.example' is not an https URL"}},
	{AUTH SOURCE "interactor:\n  auth_url: \"https://\"\n", {NAME ":5: interactor.auth_url: "}},
	{AUTH SOURCE "interactor: { proxy: \"proxy:3128\" }\n",
	 {NAME ":4: interactor.proxy: the proxy is not a URL", "https_proxy"}},
	/* a password where no userinfo is recognised would be printed by check-config */
	{AUTH SOURCE "interactor: { proxy: \"http://user:pwPproxy:3128\" }\n",
	 {NAME ":4: interactor.proxy: the proxy is not a URL", "[user:password@]host[:port]"}},
	{AUTH SOURCE "interactor: { proxy: \"http://proxy:31x8\" }\n",
	 {NAME ":4: interactor.proxy: the proxy is not a URL"}},
	{AUTH SOURCE "interactor: { tool_prefix: \"run_\" }\n",
	 {NAME ":4: interactor.tool_prefix: 'run_' begins the built-in tool name run_query"}},
	{AUTH SOURCE "interactor: { tool_prefix: \"9x\" }\n",
	 {NAME ":4: interactor.tool_prefix: '9x' is not a valid prefix"}},
	{AUTH SOURCE "interactor: { client_id: \"a b\" }\n",
	 {NAME ":4: interactor.client_id: the client id contains a blank"}},
	{AUTH SOURCE "interactor: { client_secret: \"${CN_TEST_UNSET}\" }\n",
	 {NAME ":4: interactor.client_secret: environment variable CN_TEST_UNSET is not set"}},
	{AUTH SOURCE "interactor:\n  register_on_start: true\n",
	 {NAME ":5: interactor.register_on_start: needs interactor.client_id"}},
	{"server: { public_url: \"\" }\n" AUTH SOURCE
	 "interactor: { client_id: a, client_secret: \"${CN_TEST_SECRET2}\", register_on_start: true }\n",
	 {NAME ":5: interactor.register_on_start: needs server.public_url", "!" SECRET2}},
	{SRC1(", interactor_data_source_id: \"ds/1\""),
	 {NAME ":3: sources[0].interactor_data_source_id: 'ds/1' is not a data source id"}},
};

/* ---- curated tools ------------------------------------------------------ */

#define TOOL_HEAD AUTH SOURCE "tools:\n  - name: t\n    description: d\n    source: demo\n"
#define TOOL_SQL(stmt, params) TOOL_HEAD "    statement: \"" stmt "\"\n    parameters:\n" params
#define PARAM(p) "      - { " p " }\n"

static const struct bad_case bad_tools[] = {
	{AUTH SOURCE "tools: { name: t }\n", {NAME ":4: tools: expected a list of tools, got a map"}},
	{AUTH SOURCE "tools:\n  - name: t\n    source: demo\n    statement: \"SELECT 1\"\n",
	 {NAME ":5: tools[0].description: is missing", "description"}},
	{AUTH SOURCE "tools:\n  - { name: t, description: d, source: demo }\n",
	 {NAME ":5: tools[0].statement: is missing"}},
	{TOOL_HEAD "    statement: \"SELECT 1\"\n    sql: 1\n",
	 {NAME ":9: tools[0].sql: unknown key", "statement, parameters"}},
	/* names */
	{AUTH SOURCE "tools:\n  - { name: run_query, description: d, source: demo, statement: x }\n",
	 {NAME ":5: tools[0].name: 'run_query' is a built-in tool's name"}},
	{AUTH SOURCE "tools:\n  - { name: 1t, description: d, source: demo, statement: x }\n",
	 {NAME ":5: tools[0].name: '1t' is not a valid tool name"}},
	{AUTH SOURCE "tools:\n  - { name: db_orders, description: d, source: demo, statement: x }\n",
	 {NAME ":5: tools[0].name: 'db_orders' begins with interactor.tool_prefix 'db_'"}},
	{AUTH SOURCE "tools:\n  - { name: a, description: d, source: demo, statement: x }\n"
	 "  - { name: a, description: e, source: demo, statement: y }\n",
	 {NAME ":6: tools[1].name: duplicate tool name 'a' (also tools[0], line 5)"}},
	{AUTH SOURCE "interactor: { tool_prefix: abcdefghijklmnopqrstuvwxyz01234 }\n"
	 "tools:\n  - { name: zbcdefghijklmnopqrstuvwxyz0123456789, description: d, source: demo, "
	 "statement: x }\n",
	 {NAME ":6: tools[0].name: ", "is longer than 64 characters"}},
	/* the source */
	{AUTH SOURCE "tools:\n  - name: t\n    description: d\n    source: nosuch\n    statement: x\n",
	 {NAME ":7: tools[0].source: no source named 'nosuch'"}},
	/* placeholders against the parameters */
	{TOOL_SQL("SELECT * FROM t WHERE a = $1 AND b = $2", PARAM("name: a, type: integer")),
	 {NAME ":8: tools[0].statement: the statement uses $2 but 1 parameter is declared"}},
	{TOOL_SQL("SELECT * FROM t WHERE a = $2",
		  PARAM("name: a, type: integer") PARAM("name: b, type: string")),
	 {NAME ":8: tools[0].statement: parameter 1 (a) is declared but the statement never uses $1"}},
	{TOOL_SQL("SELECT '$1', \\\"$1\\\" -- $1\\n FROM t /* $1 */", PARAM("name: a, type: integer")),
	 {"parameter 1 (a) is declared but the statement never uses $1"}},
	{TOOL_SQL("SELECT $0", ""), {NAME ":8: tools[0].statement: $0 is not a parameter"}},
	{TOOL_SQL("SELECT $101", ""), {"$101 is not a parameter", "from 1 to 100"}},
	{TOOL_HEAD "    statement: { find: orders, filter: { s: { $param: 2 } } }\n"
	 "    parameters:\n" PARAM("name: s, type: string"),
	 {NAME ":8: tools[0].statement: the statement uses {\"$param\": 2} but 1 parameter is declared"}},
	{TOOL_HEAD "    statement: { find: orders, filter: { s: { $param: 1, x: 2 } } }\n",
	 {"{\"$param\": N} must be alone in its object"}},
	{TOOL_HEAD "    statement: \"{ not json\"\n", {"is not a JSON object"}},
	{TOOL_HEAD "    statement: [a]\n", {NAME ":8: tools[0].statement: expected SQL text or a command "
				       "document (a map), got a list"}},
	/* parameters */
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: int")),
	 {NAME ":10: tools[0].parameters[0].type: 'int' is not one of "
	       "string|integer|number|boolean|date|timestamp"}},
	{TOOL_SQL("SELECT $1, $2", PARAM("name: a, type: string") PARAM("name: a, type: string")),
	 {NAME ":11: tools[0].parameters[1].name: duplicate parameter name 'a' (also parameter 1, line 10)"}},
	{TOOL_SQL("SELECT $1", PARAM("name: 2a, type: string")),
	 {NAME ":10: tools[0].parameters[0].name: '2a' is not a valid parameter name"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: integer, enum: [1, two]")),
	 {NAME ":10: tools[0].parameters[0].enum: item 1: 'two' is not a whole number"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: string, minimum: 1")),
	 {NAME ":10: tools[0].parameters[0].minimum: only integer and number parameters have bounds"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: number, maximum: lots")),
	 {NAME ":10: tools[0].parameters[0].maximum: 'lots' is not a number"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: integer, minimum: 5, maximum: 1")),
	 {NAME ":10: tools[0].parameters[0].maximum: 1 is below the minimum 5"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: string, pattern: \"^[a-z\"")),
	 {NAME ":10: tools[0].parameters[0].pattern: not a POSIX extended regular expression"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: string, pattern: \"^\\\\d+$\"")),
	 {NAME ":10: tools[0].parameters[0].pattern: POSIX extended regular expressions have no \\d"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: date, pattern: x")),
	 {"only string parameters take a pattern"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: date, default: 2024-02-30")),
	 {NAME ":10: tools[0].parameters[0].default: '2024-02-30' is not a date"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: timestamp, default: \"2024-02-01 10:00\"")),
	 {"is not a timestamp"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: integer, maximum: 10, default: 11")),
	 {NAME ":10: tools[0].parameters[0].default: does not fit the parameter's own rules",
	  "must be at most 10"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: string, enum: [x, y], default: z")),
	 {"tools[0].parameters[0].default: does not fit", "must be one of \"x\", \"y\""}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: string, pattern: \"^[a-z]+$\", default: A1")),
	 {"does not fit", "does not match the pattern"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: integer, required: true, default: 1")),
	 {NAME ":10: tools[0].parameters[0].default: a required parameter never uses its default"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: boolean, default: yes")),
	 {"'yes' is not true or false"}},
	{TOOL_SQL("SELECT $1", PARAM("name: a, type: integer, default: 9007199254740993")),
	 {"is out of range (whole numbers go up to 2^53)"}},
	{TOOL_SQL("SELECT $1", "      - a\n"),
	 {NAME ":10: tools[0].parameters[0]: expected a map with name and type"}},
};

static void test_tools(void **state)
{
	(void)state;
	static const char yaml[] =
		"auth: { callback_secrets: [\"${CN_TEST_SECRET}\"] }\n"
		"sources:\n"
		"  - { name: demo, driver: sqlite, dsn: demo.db, interactor_data_source_id: ds_demo-1.x }\n"
		"  - { name: docs, driver: mongodb, dsn: \"mongodb://h/db\" }\n"
		"tools:\n"
		"  - name: orders_by_customer\n"
		"    description: \"Orders of one customer, newest first\"\n"
		"    source: demo\n"
		"    statement: >-\n"
		"      SELECT id, status FROM orders WHERE customer_id = $1 AND status = $2\n"
		"      AND placed_at >= $3 AND note <> '$4' /* $5 */ LIMIT $4\n"
		"    parameters:\n"
		"      - { name: customer_id, type: integer, required: true, minimum: 1,\n"
		"          description: \"id\" }\n"
		"      - { name: status, type: string, enum: [open, shipped], default: open }\n"
		"      - { name: since, type: date, default: \"2020-01-01\" }\n"
		"      - { name: limit, type: integer, minimum: 1, maximum: 100, default: 20 }\n"
		"  - name: open_orders\n"
		"    description: \"Open orders since a time\"\n"
		"    source: docs\n"
		"    statement:\n"
		"      find: orders\n"
		"      filter: { status: \"open\", placed_at: { $gte: { $date: { $param: 1 } } },\n"
		"                n: -1.5, ok: true, x: null, q: \"7\" }\n"
		"      limit: 5\n"
		"    parameters:\n"
		"      - { name: since, type: timestamp, required: true }\n"
		"  - name: no_params\n"
		"    description: d\n"
		"    source: demo\n"
		"    statement: \"SELECT count(*) FROM orders\"\n";
	struct config *cfg;
	struct cn_error err;
	if (load(yaml, &cfg, &err) != CN_OK)
		fail_msg("%s", err.message);
	assert_int_equal(cfg->ntools, 3);
	const struct config_tool *t = config_find_tool(cfg, "orders_by_customer");
	assert_non_null(t);
	assert_false(t->statement_is_document);
	assert_int_equal(t->nparams, 4);
	assert_int_equal(t->line, 6);
	assert_int_equal(t->statement_line, 9);
	assert_int_equal(t->params[0].type, CONFIG_PARAM_INTEGER);
	assert_true(t->params[0].required);
	assert_string_equal(t->params[0].minimum, "1");
	assert_null(t->params[0].maximum);
	assert_null(t->params[0].default_value);
	assert_int_equal(t->params[1].nenum, 2);
	assert_string_equal(t->params[1].default_value, "open");
	assert_int_equal(t->params[2].type, CONFIG_PARAM_DATE);
	assert_string_equal(cfg->sources[0].interactor_data_source_id, "ds_demo-1.x");
	t = config_find_tool(cfg, "open_orders");
	assert_true(t->statement_is_document);
	assert_string_equal(t->statement, "{\"find\":\"orders\",\"filter\":{\"status\":\"open\","
			    "\"placed_at\":{\"$gte\":{\"$date\":{\"$param\":1}}},\"n\":-1.5,\"ok\":true,"
			    "\"x\":null,\"q\":\"7\"},\"limit\":5}");
	assert_int_equal(config_find_tool(cfg, "no_params")->nparams, 0);
	assert_null(config_find_tool(cfg, "nosuch"));

	/* the printout loads again as the same tools */
	char *out = print_to_string(cfg);
	assert_lacks(out, "maximum: \"\"", "unset optional keys are not printed");
	/* the secret back in place of its redaction */
	char *secret = strstr(out, "\"<redacted>\"");
	assert_non_null(secret);
	char *text = NULL;
	assert_true(asprintf(&text, "%.*s\"${CN_TEST_SECRET}\"%s", (int)(secret - out), out,
			     secret + strlen("\"<redacted>\"")) > 0);
	struct config *again;
	if (load(text, &again, &err) != CN_OK)
		fail_msg("printout does not load: %s\n%s", err.message, text);
	free(text);
	assert_int_equal(again->ntools, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(again->tools[i].statement, cfg->tools[i].statement);
		assert_int_equal(again->tools[i].statement_is_document, cfg->tools[i].statement_is_document);
		assert_int_equal(again->tools[i].nparams, cfg->tools[i].nparams);
	}
	assert_string_equal(again->tools[0].params[3].maximum, "100");
	config_free(again);
	free(out);
	config_free(cfg);

	for (size_t i = 0; i < sizeof bad_tools / sizeof bad_tools[0]; i++) {
		const struct bad_case *c = &bad_tools[i];
		int rc = load(c->yaml, &cfg, &err);
		if (rc != CN_ECONFIG || cfg != NULL)
			fail_msg("tool case %zu: rc %d (%s), expected CN_ECONFIG; yaml:\n%s", i, rc,
				 err.message, c->yaml);
		for (size_t j = 0; j < 4 && c->want[j]; j++) {
			bool absent = c->want[j][0] == '!';
			if (!strstr(err.message, c->want[j] + absent) != absent)
				fail_msg("tool case %zu: %s '%s' in '%s'\nyaml:\n%s", i,
					 absent ? "unexpected" : "expected", c->want[j] + absent, err.message,
					 c->yaml);
		}
	}
}

static void test_interactor_keys(void **state)
{
	(void)state;
	struct config *cfg;
	struct cn_error err;
	assert_int_equal(load(AUTH SOURCE, &cfg, &err), CN_OK);
	assert_string_equal(cfg->api_url, "https://core.interactor.com/api/v1");
	assert_string_equal(cfg->auth_url, "https://auth.interactor.com/api/v1/oauth/token");
	assert_string_equal(cfg->tool_prefix, "db_");
	assert_int_equal(cfg->api_timeout_ms, 15000);
	assert_int_equal(cfg->rotation_window_hours, 24);
	assert_false(cfg->register_on_start);
	assert_int_equal(config_require_interactor(cfg, &err), CN_ECONFIG);
	assert_contains(err.message, NAME ": interactor.client_id is not set", "require");
	char *out = print_to_string(cfg);
	assert_contains(out, "client_secret: \"\"", "an unset secret prints empty");
	free(out);
	config_free(cfg);

	static const char yaml[] =
		"server: { public_url: \"https://c.example\" }\n" AUTH SOURCE
		"interactor:\n"
		"  api_url: \"https://127.0.0.1:9443/api/v1\"\n"
		"  client_id: cid_123\n"
		"  client_secret: \"${CN_TEST_SECRET2}\"\n"
		"  proxy: \"http://user:${CN_TEST_DBPASS}@proxy:3128\"\n"
		"  tool_prefix: \"\"\n"
		"  register_on_start: true\n";
	if (load(yaml, &cfg, &err) != CN_OK)
		fail_msg("%s", err.message);
	assert_int_equal(config_require_interactor(cfg, &err), CN_OK);
	assert_string_equal(cfg->client_secret, SECRET2);
	assert_string_equal(cfg->tool_prefix, "");
	out = print_to_string(cfg);
	assert_lacks(out, SECRET2, "printout");
	assert_lacks(out, DBPASS, "printout");
	assert_contains(out, "client_secret: \"<redacted>\"", "printout");
	assert_contains(out, "proxy: \"http://user:<redacted>@proxy:3128\"", "printout");
	free(out);
	config_free(cfg);
}

static void test_bad_configs(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		const struct bad_case *c = &bad_cases[i];
		struct config *cfg;
		struct cn_error err;
		int rc = load(c->yaml, &cfg, &err);
		if (rc != CN_ECONFIG || cfg != NULL)
			fail_msg("case %zu: rc %d (%s), expected CN_ECONFIG; yaml:\n%s", i, rc,
				 err.message, c->yaml);
		assert_int_equal(err.code, CN_ECONFIG);
		for (size_t j = 0; j < 4 && c->want[j]; j++) {
			bool absent = c->want[j][0] == '!';
			if (!strstr(err.message, c->want[j] + absent) != absent)
				fail_msg("case %zu: %s '%s' in '%s'", i, absent ? "unexpected" : "expected",
					 c->want[j] + absent, err.message);
		}
		assert_true(strncmp(err.message, NAME ":", strlen(NAME ":")) == 0);
		assert_lacks(err.message, SECRET, "error message");
		assert_lacks(err.message, SECRET2, "error message");
	}
}

/* A document of n sources named s0..s(n-1) (malloc'ed). */
static char *sources_yaml(size_t n)
{
	size_t cap = 64 + n * 64;
	char *text = malloc(cap);
	assert_non_null(text);
	size_t len = (size_t)snprintf(text, cap, "%s", AUTH "sources:\n");
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(text + len, cap - len,
					"  - { name: s%zu, driver: sqlite, dsn: x }\n", i);
	return text;
}

static void test_source_count_limit(void **state)
{
	(void)state;
	struct config *cfg;
	struct cn_error err;
	char *text = sources_yaml(CONFIG_MAX_SOURCES);
	assert_int_equal(load(text, &cfg, &err), CN_OK);
	assert_int_equal(cfg->nsources, CONFIG_MAX_SOURCES);
	assert_string_equal(cfg->sources[CONFIG_MAX_SOURCES - 1].name, "s63");
	config_free(cfg);
	free(text);

	text = sources_yaml(CONFIG_MAX_SOURCES + 1);
	assert_int_equal(load(text, &cfg, &err), CN_ECONFIG);
	assert_null(cfg);
	assert_contains(err.message, NAME ":2: sources: has 65 sources; at most 64", "too many");
	free(text);
}

/* ---- good configurations ------------------------------------------------ */

static const char full_yaml[] =
	"# every key set\n"
	"server:\n"
	"  listen: \"[::1]:9090\"\n"
	"  public_url: \"https://connector.example.com\"\n"
	"  max_connections: 8\n"
	"auth:\n"
	"  callback_secrets:\n"
	"    - \"${CN_TEST_SECRET}\"\n"
	"    - \"${CN_TEST_SECRET2}\"\n"
	"  timestamp_tolerance: 120\n"
	"state: { path: \"var/state.db\", snapshots: 3 }\n"
	"drivers: { dir: \"/opt/cn/drivers\" }\n"
	"log: { level: debug, format: text }\n"
	"sources:\n"
	"  - name: demo\n"
	"    driver: sqlite\n"
	"    dsn: \"demo.db\"\n"
	"    description: \"Demo sales database\"\n"
	"    mappings: \"mappings/demo.yaml\"\n"
	"    run_query: false\n"
	"    pool: { size: 2 }\n"
	"    limits: { max_rows: 500, max_result_bytes: 32768, timeout_ms: 5000 }\n"
	"    refresh: off\n"
	"  - name: Sales_2-b\n"
	"    driver: postgres\n"
	"    dsn: \"postgresql://app:${CN_TEST_DBPASS}@db:5432/sales?sslmode=require\"\n"
	"    run_query: true\n"
	"refresh: \"*/10 * * * *\"\n"
	"refresh_timezone: Europe/Berlin\n"
	"refresh_jitter: 5\n";

static void test_full_config(void **state)
{
	(void)state;
	struct config *cfg;
	struct cn_error err;
	assert_int_equal(load(full_yaml, &cfg, &err), CN_OK);
	assert_non_null(cfg);
	assert_string_equal(cfg->path, NAME);
	assert_string_equal(cfg->dir, "conf");
	assert_string_equal(cfg->listen, "[::1]:9090");
	assert_string_equal(cfg->public_url, "https://connector.example.com");
	assert_int_equal(cfg->max_connections, 8);
	assert_int_equal(cfg->nsecrets, 2);
	assert_string_equal(cfg->callback_secrets[0], SECRET);
	assert_string_equal(cfg->callback_secrets[1], SECRET2);
	assert_int_equal(cfg->timestamp_tolerance, 120);
	assert_string_equal(cfg->state_path, "var/state.db");
	assert_string_equal(cfg->drivers_dir, "/opt/cn/drivers");
	assert_string_equal(cfg->log_level, "debug");
	assert_string_equal(cfg->log_format, "text");
	assert_int_equal(cfg->snapshots, 3);
	assert_string_equal(cfg->refresh, "*/10 * * * *");
	assert_string_equal(cfg->refresh_timezone, "Europe/Berlin");
	assert_int_equal(cfg->refresh_jitter, 5);
	assert_int_equal(cfg->nsources, 2);

	const struct config_source *s = &cfg->sources[0];
	assert_string_equal(s->name, "demo");
	assert_string_equal(s->driver, "sqlite");
	assert_string_equal(s->dsn, "demo.db");
	assert_string_equal(s->description, "Demo sales database");
	assert_string_equal(s->mappings_path, "mappings/demo.yaml");
	assert_false(s->allow_run_query);
	assert_int_equal(s->pool_size, 2);
	assert_int_equal(s->limits.max_rows, 500);
	assert_int_equal(s->limits.max_result_bytes, 32768);
	assert_int_equal(s->limits.timeout_ms, 5000);
	assert_string_equal(s->refresh, "off");
	assert_null(config_refresh_schedule(cfg, s));
	assert_int_equal(s->line, 15);

	s = &cfg->sources[1];
	assert_string_equal(s->name, "Sales_2-b");
	assert_string_equal(s->driver, "postgres");
	assert_string_equal(s->dsn, "postgresql://app:" DBPASS "@db:5432/sales?sslmode=require");
	assert_string_equal(s->description, "");
	assert_string_equal(s->mappings_path, "");
	assert_true(s->allow_run_query);
	assert_int_equal(s->pool_size, 4);
	assert_string_equal(s->refresh, "");
	assert_string_equal(config_refresh_schedule(cfg, s), "*/10 * * * *");
	assert_int_equal(s->limits.max_rows, 1000);
	assert_int_equal(s->limits.max_result_bytes, 60000);
	assert_int_equal(s->limits.timeout_ms, 10000);
	assert_int_equal(s->line, 24);

	assert_ptr_equal(config_find_source(cfg, "demo"), &cfg->sources[0]);
	assert_ptr_equal(config_find_source(cfg, "Sales_2-b"), &cfg->sources[1]);
	assert_null(config_find_source(cfg, "sales_2-b"));
	assert_null(config_find_source(cfg, "nope"));
	assert_null(config_find_source(NULL, "demo"));
	config_free(cfg);
}

static void assert_defaults(const struct config *cfg)
{
	assert_string_equal(cfg->listen, "127.0.0.1:8080");
	assert_string_equal(cfg->public_url, "");
	assert_int_equal(cfg->max_connections, 256);
	assert_int_equal(cfg->nsecrets, 1);
	assert_string_equal(cfg->callback_secrets[0], SECRET);
	assert_int_equal(cfg->timestamp_tolerance, 300);
	assert_string_equal(cfg->state_path, "./connector-state.db");
	assert_string_equal(cfg->drivers_dir, "");
	assert_string_equal(cfg->log_level, "info");
	assert_string_equal(cfg->log_format, "json");
	assert_int_equal(cfg->snapshots, 10);
	assert_string_equal(cfg->refresh, "@hourly");
	assert_string_equal(cfg->refresh_timezone, "UTC");
	assert_int_equal(cfg->refresh_jitter, 30);
	assert_int_equal(cfg->nsources, 1);
	const struct config_source *s = &cfg->sources[0];
	assert_string_equal(s->name, "demo");
	assert_string_equal(s->driver, "sqlite");
	assert_string_equal(s->dsn, "demo.db");
	assert_string_equal(s->description, "");
	assert_string_equal(s->mappings_path, "");
	assert_true(s->allow_run_query);
	assert_int_equal(s->pool_size, 4);
	assert_string_equal(s->refresh, "");
	assert_string_equal(config_refresh_schedule(cfg, s), "@hourly");
	assert_int_equal(s->limits.max_rows, 1000);
	assert_int_equal(s->limits.max_result_bytes, 60000);
	assert_int_equal(s->limits.timeout_ms, 10000);
}

static void test_defaults(void **state)
{
	(void)state;
	static const char *const minimal[] = {
		AUTH SOURCE,
		/* empty sections, null values and a single-string secret are defaults too */
		"server:\nstate:\nlog: { level: ~, format: }\n"
		"auth: { callback_secrets: \"${CN_TEST_SECRET}\", timestamp_tolerance: null }\n"
		"sources:\n  - { name: demo, driver: sqlite, dsn: demo.db, limits: , pool: {} }\n",
	};
	for (size_t i = 0; i < sizeof minimal / sizeof minimal[0]; i++) {
		struct config *cfg;
		struct cn_error err;
		int rc = load(minimal[i], &cfg, &err);
		if (rc)
			fail_msg("case %zu: %s", i, err.message);
		assert_defaults(cfg);
		config_free(cfg);
	}
}

static void test_listen_forms(void **state)
{
	(void)state;
	static const char *const ok[] = {"127.0.0.1:8080", "0.0.0.0:1", "localhost:65535",
					 "[::1]:8080", "[::]:443", "[fe80::1]:8443", "my-host.local:80"};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		char text[512];
		struct config *cfg;
		struct cn_error err;
		snprintf(text, sizeof text, "server: { listen: \"%s\" }\n" AUTH SOURCE, ok[i]);
		if (load(text, &cfg, &err))
			fail_msg("%s: %s", ok[i], err.message);
		assert_string_equal(cfg->listen, ok[i]);
		config_free(cfg);
	}
}

static void test_env_expansion(void **state)
{
	(void)state;
	struct config *cfg;
	struct cn_error err;
	const char *text =
		"server: { listen: \"${CN_TEST_LISTEN}\" }\n"
		"auth: { callback_secrets: [\"${CN_TEST_SECRET}\", \"x-${CN_TEST_SECRET2}\"] }\n"
		"drivers: { dir: \"${CN_TEST_HOST}/drivers\" }\n"
		"sources:\n"
		"  - name: demo\n"
		"    driver: postgres\n"
		"    dsn: \"host=${CN_TEST_HOST} port=5432 password=${CN_TEST_DBPASS}\"\n"
		"    description: \"cost $${NOT_A_VAR}, $5, $$ and $ end$\"\n"
		"    mappings: '${CN_TEST_HOST}${CN_TEST_HOST}.yaml'\n";
	int rc = load(text, &cfg, &err);
	if (rc)
		fail_msg("%s", err.message);
	assert_string_equal(cfg->listen, "0.0.0.0:9000");
	assert_string_equal(cfg->callback_secrets[0], SECRET);
	assert_string_equal(cfg->callback_secrets[1], "x-" SECRET2);
	assert_string_equal(cfg->drivers_dir, "db.internal/drivers");
	assert_string_equal(cfg->sources[0].dsn, "host=db.internal port=5432 password=" DBPASS);
	assert_string_equal(cfg->sources[0].description, "cost ${NOT_A_VAR}, $5, $$ and $ end$");
	assert_string_equal(cfg->sources[0].mappings_path, "db.internal" "db.internal.yaml");
	config_free(cfg);

	/* a variable's value is not expanded again */
	setenv("CN_TEST_NESTED", "${CN_TEST_HOST}", 1);
	assert_int_equal(load(SRC1(", description: \"${CN_TEST_NESTED}\""), &cfg, &err), CN_OK);
	assert_string_equal(cfg->sources[0].description, "${CN_TEST_HOST}");
	config_free(cfg);
	unsetenv("CN_TEST_NESTED");
}

/* ---- config_print ------------------------------------------------------- */

/* Replace every occurrence of from in text by to (malloc'ed). */
static char *replace_all(const char *text, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to), n = 0, len = strlen(text);
	for (size_t i = 0; i + fl <= len; i++)
		if (memcmp(text + i, from, fl) == 0) {
			n++;
			i += fl - 1;
		}
	char *res = malloc(len + n * tl + 1);
	assert_non_null(res);
	size_t w = 0;
	for (size_t i = 0; i < len;) {
		if (i + fl <= len && memcmp(text + i, from, fl) == 0) {
			memcpy(res + w, to, tl);
			w += tl;
			i += fl;
		} else {
			res[w++] = text[i++];
		}
	}
	res[w] = '\0';
	return res;
}

/* state.backend postgres: the dsn from the environment, never printed. */
static void test_state_postgres(void **state)
{
	(void)state;
	struct config *cfg;
	struct cn_error err;
	setenv("CN_TEST_STATE_DSN", "postgresql://state:pw-9f8e7d@db:5432/state", 1);
	assert_int_equal(load("state: { backend: postgres, dsn: \"${CN_TEST_STATE_DSN}\", pool: 8 }\n" AUTH SOURCE,
			      &cfg, &err), CN_OK);
	assert_true(config_state_shared(cfg));
	assert_string_equal(cfg->state_dsn, "postgresql://state:pw-9f8e7d@db:5432/state");
	assert_int_equal(cfg->state_pool, 8);
	char *out = print_to_string(cfg);
	assert_lacks(out, "pw-9f8e7d", "config_print");
	assert_lacks(out, "state@db", "config_print");
	assert_contains(out, "backend: \"postgres\"", "config_print");
	free(out);
	config_free(cfg);
	assert_int_equal(load(AUTH SOURCE, &cfg, &err), CN_OK);
	assert_false(config_state_shared(cfg));
	assert_int_equal(cfg->state_pool, 4);
	config_free(cfg);
}

static void test_print(void **state)
{
	(void)state;
	struct config *cfg, *again;
	struct cn_error err;
	assert_int_equal(load(full_yaml, &cfg, &err), CN_OK);
	char *out = print_to_string(cfg);

	assert_lacks(out, SECRET, "config_print");
	assert_lacks(out, SECRET2, "config_print");
	assert_lacks(out, DBPASS, "config_print");
	static const char *const present[] = {
		"listen: \"[::1]:9090\"", "public_url: \"https://connector.example.com\"",
		"max_connections: 8", "- \"<redacted>\"", "timestamp_tolerance: 120",
		"path: \"var/state.db\"", "dir: \"/opt/cn/drivers\"", "level: \"debug\"",
		"format: \"text\"", "  - name: \"demo\"", "driver: \"sqlite\"", "dsn: \"demo.db\"",
		"description: \"Demo sales database\"", "mappings: \"mappings/demo.yaml\"",
		"run_query: false", "size: 2", "max_rows: 500", "max_result_bytes: 32768",
		"timeout_ms: 5000", "name: \"Sales_2-b\"",
		"dsn: \"postgresql://app:<redacted>@db:5432/sales?sslmode=require\"",
		"# connections served at once, each on its own thread", "    limits:\n      # rows returned at most per query\n"};
	for (size_t i = 0; i < sizeof present / sizeof present[0]; i++)
		assert_contains(out, present[i], "config_print");

	/* It is YAML with the same structure. */
	struct ynode *root;
	assert_int_equal(ytree_parse_buffer("print", out, strlen(out), &root, &err), CN_OK);
	const struct ynode *secrets = ytree_get(ytree_get(root, "auth"), "callback_secrets");
	assert_non_null(secrets);
	assert_int_equal(secrets->n, 2);
	const struct ynode *srcs = ytree_get(root, "sources");
	assert_non_null(srcs);
	assert_int_equal(srcs->n, 2);
	const struct ynode *t = ytree_get(ytree_get(srcs->items[1], "limits"), "timeout_ms");
	assert_non_null(t);
	assert_string_equal(t->value, "10000");
	ytree_free(root);

	/* With the secrets put back it loads to the same configuration. */
	char *back = replace_all(out, "\"<redacted>\"\n", "\"${CN_TEST_SECRET}\"\n");
	assert_int_equal(config_load_buffer(NAME, back, strlen(back), &again, &err), CN_OK);
	char *out2 = print_to_string(again);
	assert_string_equal(out, out2);
	free(out2);
	free(back);
	config_free(again);
	free(out);
	config_free(cfg);

	/* `${` in a value is printed as `$${`, so the printout loads as the same text. */
	assert_int_equal(load(SRC1(", description: \"a $${B} \\\"q\\\" \\t\""), &cfg, &err), CN_OK);
	out = print_to_string(cfg);
	assert_contains(out, "description: \"a $${B} \\\"q\\\" \\x09\"", "escaping");
	free(out);
	config_free(cfg);

	config_print(NULL, stdout); /* no-op */
}

static void test_print_defaults(void **state)
{
	(void)state;
	struct config *cfg;
	struct cn_error err;
	assert_int_equal(load(AUTH SOURCE, &cfg, &err), CN_OK);
	char *out = print_to_string(cfg);
	static const char *const present[] = {
		"server:\n", "listen: \"127.0.0.1:8080\"", "public_url: \"\"", "max_connections: 256",
		"timestamp_tolerance: 300", "path: \"./connector-state.db\"", "dir: \"\"",
		"level: \"info\"", "format: \"json\"", "description: \"\"", "mappings: \"\"",
		"run_query: true", "size: 4", "max_rows: 1000", "max_result_bytes: 60000",
		"timeout_ms: 10000"};
	for (size_t i = 0; i < sizeof present / sizeof present[0]; i++)
		assert_contains(out, present[i], "config_print defaults");
	assert_lacks(out, SECRET, "config_print");
	free(out);
	config_free(cfg);
}

struct redact_case {
	const char *dsn;
	const char *secret;  /* must be gone */
	const char *printed; /* the dsn as printed (inside the quotes) */
};

static const struct redact_case redact_cases[] = {
	{"host=db user=app password=s3cretPW dbname=x", "s3cretPW",
	 "host=db user=app password=<redacted> dbname=x"},
	{"host=db password = 's3cret PW\\' x' user=app", "s3cret",
	 "host=db password = <redacted> user=app"},
	{"postgresql://app:s3cretPW@db:5432/sales?sslmode=require", "s3cretPW",
	 "postgresql://app:<redacted>@db:5432/sales?sslmode=require"},
	{"mongodb://u:s3cret@PW@h1,h2/db?authSource=admin", "s3cret",
	 "mongodb://u:<redacted>@h1,h2/db?authSource=admin"},
	{"postgres://db/sales?user=app&password=s3cretPW&sslmode=require", "s3cretPW",
	 "postgres://db/sales?user=app&password=<redacted>&sslmode=require"},
	{"Server=db;Uid=app;Pwd=s3cret PW;Database=x", "s3cret",
	 "Server=db;Uid=app;Pwd=<redacted>;Database=x"},
	{"Driver={x};PASSWORD={s3cret;PW};Database=x", "s3cret",
	 "Driver={x};PASSWORD=<redacted>;Database=x"},
	{"host=db passwd=s3cretPW", "s3cretPW", "host=db passwd=<redacted>"},
	{"demo.db", NULL, "demo.db"},
	{"mysql://app@db/x", NULL, "mysql://app@db/x"},
	{"file:demo.db?mode=ro", NULL, "file:demo.db?mode=ro"},
	{"host=db mypassword=visible", NULL, "host=db mypassword=visible"},
};

static void test_print_redacts_dsn(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof redact_cases / sizeof redact_cases[0]; i++) {
		const struct redact_case *c = &redact_cases[i];
		struct config *cfg;
		struct cn_error err;
		char want[256];
		setenv("CN_TEST_DSN", c->dsn, 1);
		assert_int_equal(load(AUTH "sources:\n  - { name: a, driver: pg, dsn: \"${CN_TEST_DSN}\" }\n",
				      &cfg, &err), CN_OK);
		assert_string_equal(cfg->sources[0].dsn, c->dsn);
		char *out = print_to_string(cfg);
		snprintf(want, sizeof want, "dsn: \"%s\"", c->printed);
		if (!strstr(out, want))
			fail_msg("case %zu: expected %s in:\n%s", i, want, out);
		if (c->secret)
			assert_lacks(out, c->secret, c->dsn);
		free(out);
		config_free(cfg);
	}
	unsetenv("CN_TEST_DSN");
}

/* ---- paths and files ---------------------------------------------------- */

static void test_resolve_path(void **state)
{
	(void)state;
	static const struct {
		const char *name, *path, *want;
	} cases[] = {
		{"/etc/cn/conf.yaml", "./state.db", "/etc/cn/state.db"},
		{"/etc/cn/conf.yaml", "maps/a.yaml", "/etc/cn/maps/a.yaml"},
		{"/etc/cn/conf.yaml", "/abs/x.db", "/abs/x.db"},
		{"/etc/cn/conf.yaml", "../x.db", "/etc/cn/../x.db"},
		{"/etc/cn/conf.yaml", "", ""},
		{"conf.yaml", "x.db", "./x.db"},
		{"rel/dir/c.yaml", "./m/x.yaml", "rel/dir/m/x.yaml"},
		{"rel//c.yaml", "x", "rel/x"},
		{"/c.yaml", "x", "/x"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct config *cfg;
		struct cn_error err;
		const char *text = AUTH SOURCE;
		assert_int_equal(config_load_buffer(cases[i].name, text, strlen(text), &cfg, &err), CN_OK);
		char *got = config_resolve_path(cfg, cases[i].path);
		assert_non_null(got);
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("case %zu: %s + %s -> %s, want %s", i, cfg->dir, cases[i].path, got,
				 cases[i].want);
		free(got);
		config_free(cfg);
	}
}

static void test_load_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/cn_test_config_XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof path, "%s/connector.yaml", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(AUTH "state: { path: state.db }\n" SOURCE, f);
	assert_int_equal(fclose(f), 0);

	struct config *cfg;
	struct cn_error err;
	assert_int_equal(config_load(path, &cfg, &err), CN_OK);
	assert_string_equal(cfg->path, path);
	assert_string_equal(cfg->dir, dir);
	char *state_path = config_resolve_path(cfg, cfg->state_path);
	char want[300];
	snprintf(want, sizeof want, "%s/state.db", dir);
	assert_string_equal(state_path, want);
	free(state_path);
	config_free(cfg);

	/* a bad file names itself and the line */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(AUTH "\n\nsources: 7\n", f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(config_load(path, &cfg, &err), CN_ECONFIG);
	assert_null(cfg);
	snprintf(want, sizeof want, "%s:4: sources: expected a list", path);
	assert_contains(err.message, want, "file error");

	assert_int_equal(unlink(path), 0);
	assert_int_equal(config_load(path, &cfg, &err), CN_EIO);
	assert_null(cfg);
	assert_contains(err.message, path, "missing file");
	assert_int_equal(rmdir(dir), 0);

	config_free(NULL);
}

/* ---- the schema and the docs describe the same keys --------------------- */

static char *read_text(const char *rel)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", CN_TEST_SOURCE_DIR, rel);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	char *text = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&text, &len);
	assert_non_null(m);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		fwrite(chunk, 1, n, m);
	fclose(f);
	fclose(m);
	return text;
}

#define MAX_LEAVES 80

struct leaf {
	char path[96];        /* "server.listen", "sources[].limits.max_rows" */
	const char *printed;  /* the default as config_print wrote it (NULL for lists) */
};

/* The keys config_print wrote: every leaf of the document. */
static void collect_leaves(const struct ynode *map, const char *prefix, struct leaf *out, size_t *n)
{
	for (size_t i = 0; i < map->n; i++) {
		char path[96];
		const struct ynode *v = map->items[i];
		snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", map->keys[i]->value);
		if (v->type == YNODE_MAP) {
			collect_leaves(v, path, out, n);
		} else if (v->type == YNODE_SEQ && v->n > 0 && v->items[0]->type == YNODE_MAP) {
			char items[100];
			snprintf(items, sizeof items, "%s[]", path);
			collect_leaves(v->items[0], items, out, n);
		} else {
			assert_true(*n < MAX_LEAVES);
			snprintf(out[*n].path, sizeof out[*n].path, "%s", path);
			out[*n].printed = v->type == YNODE_SCALAR ? v->value : NULL;
			(*n)++;
		}
	}
}

static const cJSON *schema_deref(const cJSON *root, const cJSON *node)
{
	const cJSON *ref = cJSON_GetObjectItemCaseSensitive(node, "$ref");
	if (!cJSON_IsString(ref))
		return node;
	assert_true(strncmp(ref->valuestring, "#/$defs/", 8) == 0);
	const cJSON *defs = cJSON_GetObjectItemCaseSensitive(root, "$defs");
	const cJSON *def = cJSON_GetObjectItemCaseSensitive(defs, ref->valuestring + 8);
	assert_non_null(def);
	return def;
}

/* The schema of a dotted leaf path; *parent is the object schema holding it. */
static const cJSON *schema_find(const cJSON *root, const char *path, const cJSON **parent)
{
	const cJSON *node = root;
	char buf[96];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *save = NULL, *part = strtok_r(buf, ".", &save); part;
	     part = strtok_r(NULL, ".", &save)) {
		size_t pl = strlen(part);
		bool items = pl > 2 && strcmp(part + pl - 2, "[]") == 0;
		if (items)
			part[pl - 2] = '\0';
		*parent = node;
		const cJSON *props = cJSON_GetObjectItemCaseSensitive(node, "properties");
		node = cJSON_GetObjectItemCaseSensitive(props, part);
		if (!node)
			fail_msg("schema has no property %s (of %s)", part, path);
		if (items)
			node = schema_deref(root, cJSON_GetObjectItemCaseSensitive(node, "items"));
	}
	return node;
}

/* node[key], or node.anyOf[0][key] where a ${VAR} reference is the alternative. */
static const cJSON *schema_get(const cJSON *node, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(node, key);
	if (v)
		return v;
	return cJSON_GetObjectItemCaseSensitive(
		cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(node, "anyOf"), 0), key);
}

static bool schema_required(const cJSON *parent, const char *path)
{
	const char *name = strrchr(path, '.') ? strrchr(path, '.') + 1 : path;
	const cJSON *item;
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(parent, "required"))
		if (cJSON_IsString(item) && strcmp(item->valuestring, name) == 0)
			return true;
	return false;
}

#define PUBLIC "server: { public_url: \"https://connector.example.com\" }\n"

/* A small valid document with path set to value. */
static void yaml_with(char *dst, size_t n, const char *path, const char *value)
{
	/* a public_url, which limits.async_timeout_ms needs */
	if (strncmp(path, "sources[].", 10) == 0) {
		const char *rest = path + 10, *dot = strchr(rest, '.');
		if (dot)
			snprintf(dst, n, PUBLIC AUTH "sources:\n  - { name: a, driver: sqlite, dsn: x, "
				 "%.*s: { %s: %s } }\n", (int)(dot - rest), rest, dot + 1, value);
		else
			snprintf(dst, n, PUBLIC AUTH "sources:\n  - { name: a, driver: sqlite, dsn: x, "
				 "%s: %s }\n", rest, value);
	} else if (strncmp(path, "auth.", 5) == 0) {
		snprintf(dst, n, "auth: { callback_secrets: [\"${CN_TEST_SECRET}\"], %s: %s }\n" SOURCE,
			 path + 5, value);
	} else if (!strchr(path, '.')) {
		snprintf(dst, n, "%s: %s\n" AUTH SOURCE, path, value);
	} else {
		const char *dot = strchr(path, '.');
		snprintf(dst, n, "%.*s: { %s: %s }\n" AUTH SOURCE, (int)(dot - path), path, dot + 1, value);
	}
}

static void expect_load(const char *path, long long value, int want)
{
	char text[1024], num[32];
	struct config *cfg;
	struct cn_error err;
	snprintf(num, sizeof num, "%lld", value);
	yaml_with(text, sizeof text, path, num);
	int rc = load(text, &cfg, &err);
	if (rc != want)
		fail_msg("%s = %lld: rc %d (%s), want %d", path, value, rc, err.message, want);
	config_free(cfg);
}

/* The keys of a curated tool's parameter that have no default: not set, not printed. */
static bool optional_key(const char *path)
{
	static const char *const keys[] = {"enum", "minimum", "maximum", "pattern", "default"};
	const char *leaf = strrchr(path, '.') ? strrchr(path, '.') + 1 : path;
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strncmp(path, "tools[].parameters[].", 21) == 0 && strcmp(leaf, keys[i]) == 0)
			return true;
	return false;
}

static void check_leaf_against_schema(const cJSON *root, const struct leaf *l)
{
	const cJSON *parent = NULL;
	const cJSON *node = schema_find(root, l->path, &parent);
	const cJSON *def = cJSON_GetObjectItemCaseSensitive(node, "default");
	const cJSON *min = cJSON_GetObjectItemCaseSensitive(node, "minimum");
	const cJSON *max = cJSON_GetObjectItemCaseSensitive(node, "maximum");
	const cJSON *choices = schema_get(node, "enum");

	if (!def) {
		if (!schema_required(parent, l->path) && !optional_key(l->path))
			fail_msg("%s: the schema gives neither a default nor requires it", l->path);
	} else if (cJSON_IsArray(def)) {
		assert_int_equal(cJSON_GetArraySize(def), 0);
	} else if (cJSON_IsString(def)) {
		assert_non_null(l->printed);
		if (strcmp(def->valuestring, l->printed) != 0)
			fail_msg("%s: schema default '%s', code default '%s'", l->path, def->valuestring,
				 l->printed);
	} else if (cJSON_IsNumber(def)) {
		if (strtod(l->printed, NULL) != def->valuedouble)
			fail_msg("%s: schema default %g, code default %s", l->path, def->valuedouble,
				 l->printed);
	} else if (cJSON_IsArray(def)) { /* an empty list: printed as [] */
		assert_int_equal(cJSON_GetArraySize(def), 0);
		if (l->printed)
			assert_string_equal(l->printed, "[]");
	} else {
		assert_true(cJSON_IsBool(def));
		assert_string_equal(l->printed, cJSON_IsTrue(def) ? "true" : "false");
	}
	if (min && max) {
		long long lo = (long long)min->valuedouble, hi = (long long)max->valuedouble;
		expect_load(l->path, lo, CN_OK);
		expect_load(l->path, hi, CN_OK);
		expect_load(l->path, lo - 1, CN_ECONFIG);
		expect_load(l->path, hi + 1, CN_ECONFIG);
	}
	const cJSON *item;
	if (strncmp(l->path, "tools[]", 7) == 0)
		return; /* test_tools loads their values */
	cJSON_ArrayForEach(item, choices) {
		char text[1024];
		struct config *cfg;
		struct cn_error err;
		if (strcmp(l->path, "state.backend") == 0 && strcmp(item->valuestring, "postgres") == 0)
			continue; /* needs state.dsn beside it: test_state_postgres */
		yaml_with(text, sizeof text, l->path, item->valuestring);
		if (load(text, &cfg, &err))
			fail_msg("%s = %s: %s", l->path, item->valuestring, err.message);
		config_free(cfg);
	}
}

static void test_driver_options(void **state)
{
	(void)state;
	static const char yaml[] =
		"auth: { callback_secrets: [\"${CN_TEST_SECRET}\"] }\n"
		"sources:\n"
		"  - name: pg\n"
		"    driver: postgres\n"
		"    dsn: \"host=db\"\n"
		"    options:\n"
		"      schemas: [public, \"sales_*\"]\n"
		"      application_name: connector\n"
		"      password: \"${CN_TEST_DBPASS}\"\n"
		"      retries: 3\n";
	struct config *cfg;
	struct cn_error err;
	assert_int_equal(load(yaml, &cfg, &err), CN_OK);
	const struct config_options *o = &cfg->sources[0].options;
	assert_int_equal(o->n, 4);
	assert_string_equal(o->keys[0], "schemas");
	assert_string_equal(o->values[0], "public,sales_*");
	assert_string_equal(o->keys[1], "application_name");
	assert_string_equal(o->values[1], "connector");
	assert_string_equal(o->values[2], DBPASS);
	assert_string_equal(o->values[3], "3");
	char *out = print_to_string(cfg);
	assert_contains(out, "schemas: \"public,sales_*\"", "options printout");
	assert_contains(out, "password: \"<redacted>\"", "options printout");
	assert_lacks(out, DBPASS, "options printout");
	free(out);
	config_free(cfg);

	static const struct {
		const char *options;
		const char *needle;
	} bad[] = {
		{"options: [a, b]", "expected a map"},
		{"options: { Bad-Key: 1 }", "is not valid"},
		{"options: { a: { b: 1 } }", "expected a single value"},
		{"options: { a: \"${CN_TEST_UNSET}\" }", "CN_TEST_UNSET"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char text[512];
		snprintf(text, sizeof text,
			 "auth: { callback_secrets: [\"${CN_TEST_SECRET}\"] }\n"
			 "sources:\n  - { name: s, driver: sqlite, dsn: x.db,\n      %s }\n",
			 bad[i].options);
		assert_int_not_equal(load(text, &cfg, &err), CN_OK);
		assert_null(cfg);
		assert_contains(err.message, "sources[0].options", "option error key");
		assert_contains(err.message, bad[i].needle, "option error");
		assert_contains(err.message, NAME ":4:", "option error line");
	}
}

/* limits.async_timeout_ms needs a status URL base and a budget past the 202. */
static void test_async_needs(void **state)
{
	(void)state;
	struct config *cfg;
	struct cn_error err;
	static const struct {
		const char *server, *limits, *needle;
	} bad[] = {
		{"{}", "{ async_timeout_ms: 60000 }", "needs server.public_url"},
		{"{ public_url: \"https://c.example.com\" }", "{ async_timeout_ms: 15000 }",
		 "not over server.async_after_ms (20000)"},
		{"{ public_url: \"https://c.example.com\", async_after_ms: 5000 }",
		 "{ timeout_ms: 9000, async_timeout_ms: 8000 }", "limits.timeout_ms (9000)"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char text[600];
		snprintf(text, sizeof text, "server: %s\n" AUTH
			 "sources:\n  - { name: s, driver: sqlite, dsn: x.db,\n      limits: %s }\n",
			 bad[i].server, bad[i].limits);
		assert_int_equal(load(text, &cfg, &err), CN_ECONFIG);
		assert_contains(err.message, "sources[0].limits.async_timeout_ms", "key");
		assert_contains(err.message, bad[i].needle, "why");
		assert_contains(err.message, NAME ":4:", "line");
	}
	char ok[400];
	snprintf(ok, sizeof ok, "server: { public_url: \"https://c.example.com\", async_after_ms: 5000 }\n"
		 AUTH "sources:\n  - { name: s, driver: sqlite, dsn: x.db,\n      limits: "
		 "{ async_timeout_ms: 120000 } }\n");
	assert_int_equal(load(ok, &cfg, &err), CN_OK);
	assert_int_equal(cfg->async_after_ms, 5000);
	assert_int_equal(cfg->sources[0].limits.async_timeout_ms, 120000);
	config_free(cfg);
}

static void test_schema_and_docs_agree(void **state)
{
	(void)state;
	struct config *cfg;
	struct cn_error err;
	struct ynode *printed;
	struct leaf leaves[MAX_LEAVES];
	size_t nleaves = 0;

	/* one tool with every key of a parameter set, so that all of them are printed */
	assert_int_equal(load(AUTH SOURCE "tools:\n  - name: t\n    description: d\n    source: demo\n"
			      "    statement: \"SELECT $1\"\n    parameters:\n      - { name: a, type: "
			      "integer, enum: [1, 2], minimum: 1, maximum: 2, default: 1 }\n",
			      &cfg, &err), CN_OK);
	/* pattern: on a string, not checked against the bounds above */
	cfg->tools[0].params[0].pattern = strdup("^[0-9]+$");
	char *out = print_to_string(cfg);
	config_free(cfg);
	assert_int_equal(ytree_parse_buffer("print", out, strlen(out), &printed, &err), CN_OK);
	collect_leaves(printed, "", leaves, &nleaves);
	assert_int_equal(nleaves, 65);

	char *schema_text = read_text("schema/config.schema.json");
	cJSON *schema = cJSON_Parse(schema_text);
	assert_non_null(schema);
	char *docs = read_text("docs/configuration.md");
	for (size_t i = 0; i < nleaves; i++) {
		char quoted[110];
		snprintf(quoted, sizeof quoted, "`%s`", leaves[i].path);
		assert_contains(docs, quoted, "docs/configuration.md");
		check_leaf_against_schema(schema, &leaves[i]);
	}

	/* the limits that are not single keys */
	const cJSON *parent;
	const cJSON *secrets = schema_find(schema, "auth.callback_secrets", &parent);
	const cJSON *list = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(secrets, "oneOf"), 1);
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(list, "maxItems")->valueint, CONFIG_MAX_SECRETS);
	const cJSON *secret = schema_deref(schema, cJSON_GetObjectItemCaseSensitive(list, "items"));
	assert_int_equal(schema_get(secret, "minLength")->valueint, CONFIG_MIN_SECRET_LEN);
	const cJSON *sources = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(schema, "properties"), "sources");
	assert_int_equal(cJSON_GetObjectItemCaseSensitive(sources, "maxItems")->valueint,
			 CONFIG_MAX_SOURCES);
	static const char *const patterns[][2] = {
		{"sources[].name", "^[A-Za-z0-9_-]{1,64}$"},
		{"sources[].driver", "^[a-z0-9_]{1,32}$"},
	};
	for (size_t i = 0; i < 2; i++) {
		const cJSON *node = schema_find(schema, patterns[i][0], &parent);
		const cJSON *pattern = schema_get(node, "pattern");
		assert_true(cJSON_IsString(pattern));
		assert_string_equal(pattern->valuestring, patterns[i][1]);
	}

	free(docs);
	cJSON_Delete(schema);
	free(schema_text);
	ytree_free(printed);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_configs),
		cmocka_unit_test(test_source_count_limit),
		cmocka_unit_test(test_full_config),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_listen_forms),
		cmocka_unit_test(test_env_expansion),
		cmocka_unit_test(test_print),
		cmocka_unit_test(test_print_defaults),
		cmocka_unit_test(test_print_redacts_dsn),
		cmocka_unit_test(test_resolve_path),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_driver_options),
		cmocka_unit_test(test_async_needs),
		cmocka_unit_test(test_schema_and_docs_agree),
		cmocka_unit_test(test_tools),
		cmocka_unit_test(test_interactor_keys),
		cmocka_unit_test(test_state_postgres),
	};
	return cmocka_run_group_tests(tests, setup_env, NULL);
}
