/*
 * pg_guard.c - the query guard of the PostgreSQL driver (see pg_guard.h).
 *
 * libpg_query returns the raw parse tree as JSON. Every node whose field is a
 * generic Node pointer appears tagged ({"FuncCall": {...}}); fields of a fixed
 * struct type appear untagged. Tags are the only keys that start with an
 * upper-case letter, so the walker visits every object and array of the tree,
 * checks each tag against an allow-list (anything else, such as InsertStmt in
 * a CTE, is refused) and inspects the tags that name functions, relations,
 * parameters and columns. Names arrive after the parser has resolved quoting
 * and U&"..." escapes; they are compared lower-cased, ignoring the schema.
 */
#include "pg_guard.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <pg_query.h>

#include "../common/text.h"

#define GUARD_MAX_DEPTH 1200

/* ---- deny lists ---- */

static const char R_FILE[] = "it reads or lists files of the database server";
static const char R_LO[] = "it reads or writes large objects";
static const char R_REMOTE[] = "it connects to other databases, outside the read-only transaction";
static const char R_LOCK[] = "it takes advisory locks";
static const char R_CONFIG[] = "it changes session or server settings";
static const char R_SEQ[] = "it uses sequences, which write or depend on the session";
static const char R_SIGNAL[] = "it signals, stops or promotes server processes";
static const char R_SLEEP[] = "it only waits";
static const char R_REPL[] = "it manages replication, WAL or backups";
static const char R_SQLTEXT[] = "it runs SQL text given as an argument";
static const char R_XACT[] = "it assigns a transaction id or exports a snapshot";
static const char R_NOTIFY[] = "it sends notifications";
static const char R_STATS[] = "it resets statistics";
static const char R_ADMIN[] = "it changes the server, its caches or its catalogs";
static const char R_LOG[] = "it writes to the server log";

struct deny_fn {
	const char *name;
	bool prefix; /* name is a prefix: every function starting with it */
	const char *why;
};

static const struct deny_fn deny_fns[] = {
	{"pg_read_file", false, R_FILE},
	{"pg_read_binary_file", false, R_FILE},
	{"pg_ls_", true, R_FILE},
	{"pg_stat_file", false, R_FILE},
	{"pg_file_", true, R_FILE}, /* adminpack: write, rename, unlink, sync */
	{"pg_logdir_ls", false, R_FILE},
	{"pg_current_logfile", false, R_FILE},
	{"pg_hba_file_rules", false, R_FILE},
	{"pg_ident_file_mappings", false, R_FILE},
	{"pg_show_all_file_settings", false, R_FILE},
	{"lo_", true, R_LO},
	{"loread", false, R_LO},
	{"lowrite", false, R_LO},
	{"dblink", true, R_REMOTE},
	{"postgres_fdw", true, R_REMOTE},
	{"pg_advisory_", true, R_LOCK},
	{"pg_try_advisory_", true, R_LOCK},
	{"set_config", false, R_CONFIG},
	{"pg_reload_conf", false, R_CONFIG},
	{"nextval", false, R_SEQ},
	{"setval", false, R_SEQ},
	{"currval", false, R_SEQ},
	{"lastval", false, R_SEQ},
	{"pg_cancel_backend", false, R_SIGNAL},
	{"pg_terminate_backend", false, R_SIGNAL},
	{"pg_signal_", true, R_SIGNAL},
	{"pg_promote", false, R_SIGNAL},
	{"pg_wal_replay_", true, R_SIGNAL},
	{"pg_xlog_replay_", true, R_SIGNAL},
	{"pg_rotate_logfile", true, R_LOG},
	{"pg_log_backend_memory_contexts", false, R_LOG},
	{"pg_sleep", true, R_SLEEP},
	{"pg_create_", true, R_REPL}, /* replication slots, restore points */
	{"pg_drop_", true, R_REPL},
	{"pg_copy_", true, R_REPL},
	{"pg_logical_", true, R_REPL},
	{"pg_replication_", true, R_REPL},
	{"pg_sync_replication_slots", false, R_REPL},
	{"pg_switch_wal", false, R_REPL},
	{"pg_switch_xlog", false, R_REPL},
	{"pg_backup_", true, R_REPL},
	{"pg_start_backup", false, R_REPL},
	{"pg_stop_backup", false, R_REPL},
	{"query_to_", true, R_SQLTEXT},
	{"table_to_xml", true, R_SQLTEXT},
	{"cursor_to_xml", true, R_SQLTEXT},
	{"database_to_xml", true, R_SQLTEXT},
	{"schema_to_xml", true, R_SQLTEXT},
	{"ts_stat", false, R_SQLTEXT},
	{"ts_rewrite", false, R_SQLTEXT},
	{"crosstab", true, R_SQLTEXT},     /* tablefunc */
	{"connectby", false, R_SQLTEXT},   /* tablefunc */
	{"xpath_table", false, R_SQLTEXT}, /* xml2 */
	{"pg_background", true, R_REMOTE}, /* runs SQL in another backend */
	{"txid_current", false, R_XACT},
	{"pg_current_xact_id", false, R_XACT},
	{"pg_export_snapshot", false, R_XACT},
	{"pg_notify", false, R_NOTIFY},
	{"pg_stat_reset", true, R_STATS},
	{"pg_stat_statements", true, R_STATS}, /* also other sessions' query texts */
	{"pg_import_system_collations", false, R_ADMIN},
	{"pg_extension_config_dump", false, R_ADMIN},
	{"binary_upgrade_", true, R_ADMIN},
	{"pg_nextoid", false, R_ADMIN},
	{"pg_truncate_visibility_map", false, R_ADMIN},
	{"pg_prewarm", false, R_ADMIN},
};

struct deny_rel {
	const char *name;
	const char *schema; /* NULL: any schema; else only unqualified or in this schema */
	const char *why;
};

static const struct deny_rel deny_rels[] = {
	{"pg_authid", NULL, "it holds password hashes"},
	{"pg_shadow", NULL, "it holds password hashes"},
	{"pg_user_mapping", NULL, "it holds credentials of foreign servers"},
	{"pg_user_mappings", NULL, "it holds credentials of foreign servers"},
	{"user_mapping_options", "information_schema", "it holds credentials of foreign servers"},
	{"pg_subscription", NULL, "it holds connection strings"},
	{"pg_hba_file_rules", NULL, "it reads server configuration files"},
	{"pg_ident_file_mappings", NULL, "it reads server configuration files"},
	{"pg_file_settings", NULL, "it reads server configuration files"},
	{"pg_largeobject", NULL, "it holds large object data"},
	{"pg_statistic", NULL, "column statistics show values of hidden columns"},
	{"pg_statistic_ext_data", NULL, "column statistics show values of hidden columns"},
	{"pg_stats", NULL, "column statistics show values of hidden columns"},
	{"pg_stats_ext", NULL, "column statistics show values of hidden columns"},
	{"pg_stats_ext_exprs", NULL, "column statistics show values of hidden columns"},
	{"pg_stat_statements", NULL, "it shows other sessions' queries"},
	{"pg_stat_statements_info", NULL, "it shows other sessions' queries"},
};

/* Node tags a read-only SELECT may contain. Statements, clauses that write
 * or lock (IntoClause, LockingClause, InsertStmt in a CTE...) are absent. */
static const char *const allowed_tags[] = {
	"A_ArrayExpr", "A_Const", "A_Expr", "A_Indices", "A_Indirection", "A_Star",
	"Alias", "BitString", "BoolExpr", "Boolean", "BooleanTest", "CTECycleClause",
	"CTESearchClause", "CaseExpr", "CaseWhen", "CoalesceExpr", "CollateClause",
	"ColumnDef", "ColumnRef", "CommonTableExpr", "DefElem", "ExplainStmt", "Float",
	"FuncCall", "GroupingFunc", "GroupingSet", "Integer", "JoinExpr", "List",
	"MinMaxExpr", "NamedArgExpr", "NullTest", "ParamRef", "RangeFunction",
	"RangeSubselect", "RangeTableFunc", "RangeTableFuncCol", "RangeTableSample",
	"RangeVar", "ResTarget", "RowExpr", "SQLValueFunction", "SelectStmt", "SortBy",
	"String", "SubLink", "TypeCast", "TypeName", "WindowDef", "WithClause", "XmlExpr",
	"XmlSerialize",
};

/* Statement tags, named the way SQL spells them in messages. */
static const struct {
	const char *tag;
	const char *sql;
} stmt_names[] = {
	{"InsertStmt", "INSERT"}, {"UpdateStmt", "UPDATE"}, {"DeleteStmt", "DELETE"},
	{"MergeStmt", "MERGE"}, {"CopyStmt", "COPY"}, {"DoStmt", "DO"}, {"CallStmt", "CALL"},
	{"VariableSetStmt", "SET/RESET"}, {"VariableShowStmt", "SHOW"},
	{"ListenStmt", "LISTEN"}, {"UnlistenStmt", "UNLISTEN"}, {"NotifyStmt", "NOTIFY"},
	{"PrepareStmt", "PREPARE"}, {"ExecuteStmt", "EXECUTE"},
	{"DeallocateStmt", "DEALLOCATE"}, {"DeclareCursorStmt", "DECLARE CURSOR"},
	{"FetchStmt", "FETCH"}, {"ClosePortalStmt", "CLOSE"},
	{"TransactionStmt", "a transaction command"},
	{"CreateStmt", "CREATE TABLE"}, {"CreateTableAsStmt", "CREATE TABLE AS"},
	{"ViewStmt", "CREATE VIEW"}, {"IndexStmt", "CREATE INDEX"}, {"DropStmt", "DROP"},
	{"TruncateStmt", "TRUNCATE"}, {"AlterTableStmt", "ALTER TABLE"}, {"GrantStmt", "GRANT"},
	{"LockStmt", "LOCK"}, {"VacuumStmt", "VACUUM/ANALYZE"}, {"CheckPointStmt", "CHECKPOINT"},
	{"DiscardStmt", "DISCARD"}, {"LoadStmt", "LOAD"}, {"CreateFunctionStmt", "CREATE FUNCTION"},
	{"RefreshMatViewStmt", "REFRESH MATERIALIZED VIEW"}, {"ReindexStmt", "REINDEX"},
	{"ClusterStmt", "CLUSTER"}, {"CreateRoleStmt", "CREATE ROLE"}, {"AlterRoleStmt", "ALTER ROLE"},
	{"AlterSystemStmt", "ALTER SYSTEM"}, {"CreateExtensionStmt", "CREATE EXTENSION"},
	{"CreateSchemaStmt", "CREATE SCHEMA"}, {"CommentStmt", "COMMENT"},
	{"ConstraintsSetStmt", "SET CONSTRAINTS"},
};

/* ---- the walk ---- */

struct rel_ref {
	const char *schema; /* NULL when unqualified */
	const char *name;
};

struct guard {
	const char *sql;
	const struct pg_guard_hooks *hooks;
	struct cn_error *err;
	bool full; /* false: the execute-time statement gate only */
	int max_param;
	int depth;
	const cJSON *top_select; /* the statement's own SelectStmt body */
	struct rel_ref *rels;
	size_t nrels, caprels;
	const char **ranges; /* relation names, aliases and CTE names */
	size_t nranges, capranges;
	bool sensitive; /* a referenced table has hidden columns */
};

static bool str_ieq(const char *a, const char *b)
{
	return a && b && strcasecmp(a, b) == 0;
}

/* 1-based character position of a 0-based byte offset (UTF-8). */
static int char_position(const char *sql, int offset)
{
	int chars = 0;
	for (int i = 0; i < offset && sql[i]; i++)
		if (((unsigned char)sql[i] & 0xC0) != 0x80)
			chars++;
	return chars + 1;
}

static int node_location(const cJSON *body)
{
	const cJSON *loc = cJSON_GetObjectItemCaseSensitive(body, "location");
	return cJSON_IsNumber(loc) ? loc->valueint : -1;
}

/* " (at character N)" for body's location, or "". */
static const char *where(const struct guard *g, const cJSON *body, char *buf, size_t size)
{
	int loc = body ? node_location(body) : -1;
	if (loc < 0 || (size_t)loc > strlen(g->sql)) {
		buf[0] = '\0';
		return buf;
	}
	snprintf(buf, size, " (at character %d)", char_position(g->sql, loc));
	return buf;
}

static const char *str_field(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The sval of a {"String": {"sval": ...}} node, or NULL. */
static const char *string_node(const cJSON *node)
{
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(node, "String");
	return s ? str_field(s, "sval") : NULL;
}

static const char *stmt_sql_name(const char *tag)
{
	for (size_t i = 0; i < sizeof stmt_names / sizeof stmt_names[0]; i++)
		if (strcmp(stmt_names[i].tag, tag) == 0)
			return stmt_names[i].sql;
	return NULL;
}

/* A statement writes, or changes the session, except SHOW, which only reads
 * a setting; any other tag off the allow-list is a feature the guard denies. */
static enum cn_reject stmt_class(const char *tag)
{
	size_t n = strlen(tag);
	if (!strcmp(tag, "VariableShowStmt"))
		return CN_REJECT_DENIED;
	return n > 4 && !strcmp(tag + n - 4, "Stmt") ? CN_REJECT_WRITE : CN_REJECT_DENIED;
}

static bool tag_allowed(const char *tag)
{
	for (size_t i = 0; i < sizeof allowed_tags / sizeof allowed_tags[0]; i++)
		if (strcmp(tag, allowed_tags[i]) == 0)
			return true;
	return false;
}

static const struct deny_fn *deny_fn_find(const char *name)
{
	char low[128]; /* PostgreSQL keeps 63 bytes of an identifier */
	size_t n = strlen(name);
	if (n >= sizeof low)
		n = sizeof low - 1;
	for (size_t i = 0; i < n; i++)
		low[i] = (char)tolower((unsigned char)name[i]);
	low[n] = '\0';
	for (size_t i = 0; i < sizeof deny_fns / sizeof deny_fns[0]; i++) {
		const struct deny_fn *d = &deny_fns[i];
		if (d->prefix ? strncmp(low, d->name, strlen(d->name)) == 0 : strcmp(low, d->name) == 0)
			return d;
	}
	return NULL;
}

static int reject(struct guard *g, enum cn_reject why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int reject(struct guard *g, enum cn_reject why, const char *fmt, ...)
{
	if (g->err) {
		va_list ap;
		va_start(ap, fmt);
		g->err->code = CN_EREJECTED;
		g->err->reject = (int)why;
		vsnprintf(g->err->message, sizeof g->err->message, fmt, ap);
		va_end(ap);
	}
	return CN_EREJECTED;
}

/* items with room for one more (n used of *cap), or NULL when out of memory
 * (items stays valid then). */
static void *grow(void *items, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return items;
	size_t ncap = *cap ? *cap * 2 : 8;
	void *p = realloc(items, ncap * size);
	if (p)
		*cap = ncap;
	return p;
}

static int add_range(struct guard *g, const char *name)
{
	if (!name)
		return CN_OK;
	const char **p = grow(g->ranges, &g->capranges, g->nranges, sizeof *g->ranges);
	if (!p)
		return cn_error_set(g->err, CN_ENOMEM, "out of memory");
	g->ranges = p;
	g->ranges[g->nranges++] = name;
	return CN_OK;
}

static int add_alias(struct guard *g, const cJSON *body)
{
	const cJSON *alias = cJSON_GetObjectItemCaseSensitive(body, "alias");
	return add_range(g, alias ? str_field(alias, "aliasname") : NULL);
}

static int visit_funccall(struct guard *g, const cJSON *body)
{
	const cJSON *names = cJSON_GetObjectItemCaseSensitive(body, "funcname");
	const cJSON *last = NULL, *it;
	cJSON_ArrayForEach(it, names)
		last = it;
	const char *name = last ? string_node(last) : NULL;
	if (!name)
		return CN_OK;
	const struct deny_fn *d = deny_fn_find(name);
	if (!d)
		return CN_OK;
	char at[48];
	return reject(g, CN_REJECT_DENIED, "function %s() is not allowed%s: %s", name,
		      where(g, body, at, sizeof at), d->why);
}

static int visit_rangevar(struct guard *g, const cJSON *body)
{
	const char *schema = str_field(body, "schemaname");
	const char *name = str_field(body, "relname");
	char at[48];
	if (!name)
		return CN_OK;
	for (size_t i = 0; i < sizeof deny_rels / sizeof deny_rels[0]; i++) {
		const struct deny_rel *d = &deny_rels[i];
		if (str_ieq(name, d->name) && (!d->schema || !schema || str_ieq(schema, d->schema)))
			return reject(g, CN_REJECT_DENIED, "relation %s is not allowed%s: %s", name,
				      where(g, body, at, sizeof at), d->why);
	}
	const struct pg_guard_hooks *h = g->hooks;
	if (h && h->is_hidden && h->is_hidden(h->ctx, schema, name, NULL))
		return reject(g, CN_REJECT_HIDDEN, "table %s%s%s is not available%s", schema ? schema : "",
			      schema ? "." : "", name, where(g, body, at, sizeof at));
	struct rel_ref *rels = grow(g->rels, &g->caprels, g->nrels, sizeof *g->rels);
	if (!rels)
		return cn_error_set(g->err, CN_ENOMEM, "out of memory");
	g->rels = rels;
	g->rels[g->nrels++] = (struct rel_ref){schema, name};
	if (h && h->has_hidden_columns && h->has_hidden_columns(h->ctx, schema, name))
		g->sensitive = true;
	int rc = add_range(g, name);
	return rc ? rc : add_alias(g, body);
}

static int visit_paramref(struct guard *g, const cJSON *body)
{
	const cJSON *num = cJSON_GetObjectItemCaseSensitive(body, "number");
	double n = cJSON_IsNumber(num) ? num->valuedouble : 0; /* 0 is left out of the JSON */
	char at[48];
	if (n < 1 || n > PG_GUARD_MAX_PARAM)
		return reject(g, CN_REJECT_PARAMETER, "parameter $%.0f is out of range%s: use $1 to $%d", n,
			      where(g, body, at, sizeof at), PG_GUARD_MAX_PARAM);
	if ((int)n > g->max_param)
		g->max_param = (int)n;
	return CN_OK;
}

static int reject_tag(struct guard *g, const char *tag, const cJSON *body)
{
	char at[48];
	where(g, body, at, sizeof at);
	if (strcmp(tag, "LockingClause") == 0)
		return reject(g, CN_REJECT_WRITE, "FOR UPDATE/SHARE is not allowed%s: it locks rows", at);
	if (strcmp(tag, "IntoClause") == 0)
		return reject(g, CN_REJECT_WRITE, "SELECT INTO is not allowed%s: it creates a table", at);
	const char *sql = stmt_sql_name(tag);
	if (sql)
		return reject(g, stmt_class(tag), "%s is not allowed%s: only SELECT queries can run", sql,
			      at);
	return reject(g, stmt_class(tag), "%s is not allowed in a read-only query%s", tag, at);
}

static int walk(struct guard *g, const cJSON *node);

/* A data-modifying statement in WITH has no location of its own: name the CTE. */
static int visit_cte(struct guard *g, const cJSON *body)
{
	const char *name = str_field(body, "ctename");
	const cJSON *q = cJSON_GetObjectItemCaseSensitive(body, "ctequery");
	const char *tag = q && q->child ? q->child->string : NULL;
	char at[48];
	if (tag && strcmp(tag, "SelectStmt") != 0) {
		const char *sql = stmt_sql_name(tag);
		return reject(g, CN_REJECT_WRITE,
			      "%s in WITH %s is not allowed%s: only SELECT queries can run", sql ? sql : tag,
			      name ? name : "", where(g, body, at, sizeof at));
	}
	return add_range(g, name);
}

/* The statement gate (g->full false) only collects parameters: what a
 * SELECT does inside is left to the read-only transaction. */
static int visit_tag(struct guard *g, const char *tag, const cJSON *body)
{
	if (g->full && !tag_allowed(tag))
		return reject_tag(g, tag, body);
	int rc = CN_OK;
	if (!strcmp(tag, "ParamRef"))
		rc = visit_paramref(g, body);
	else if (!g->full)
		rc = CN_OK;
	else if (!strcmp(tag, "FuncCall"))
		rc = visit_funccall(g, body);
	else if (!strcmp(tag, "RangeVar"))
		rc = visit_rangevar(g, body);
	else if (!strcmp(tag, "RangeSubselect") || !strcmp(tag, "RangeFunction") ||
		 !strcmp(tag, "RangeTableFunc") || !strcmp(tag, "JoinExpr"))
		rc = add_alias(g, body);
	else if (!strcmp(tag, "CommonTableExpr"))
		rc = visit_cte(g, body);
	if (rc)
		return rc;
	return walk(g, body);
}

/* Every object and array below node; keys starting upper-case are tags. */
static int walk(struct guard *g, const cJSON *node)
{
	const cJSON *it;
	int rc;
	if (++g->depth > GUARD_MAX_DEPTH) {
		g->depth--;
		return reject(g, CN_REJECT_LIMIT, "the query is nested too deeply");
	}
	cJSON_ArrayForEach(it, node) {
		rc = CN_OK;
		if (cJSON_IsObject(node) && it->string && isupper((unsigned char)it->string[0]))
			rc = visit_tag(g, it->string, it);
		else if (cJSON_IsObject(node) && it->string && g->full &&
			 (!strcmp(it->string, "intoClause") || !strcmp(it->string, "lockingClause")))
			rc = reject_tag(g, it->string[0] == 'i' ? "IntoClause" : "LockingClause", node);
		else if (cJSON_IsObject(it) || cJSON_IsArray(it))
			rc = walk(g, it);
		if (rc) {
			g->depth--;
			return rc;
		}
	}
	g->depth--;
	return CN_OK;
}

/* ---- hidden columns (second pass, only when a table has some) ---- */

static bool is_range_name(const struct guard *g, const char *name)
{
	for (size_t i = 0; i < g->nranges; i++)
		if (str_ieq(g->ranges[i], name))
			return true;
	return false;
}

static int check_column_name(struct guard *g, const char *name, const cJSON *body)
{
	const struct pg_guard_hooks *h = g->hooks;
	char at[48];
	if (!name || !h || !h->is_hidden)
		return CN_OK;
	for (size_t i = 0; i < g->nrels; i++)
		if (h->is_hidden(h->ctx, g->rels[i].schema, g->rels[i].name, name))
			return reject(g, CN_REJECT_HIDDEN, "column %s is not available%s", name,
				      where(g, body, at, sizeof at));
	return CN_OK;
}

static int check_columnref(struct guard *g, const cJSON *body, bool star_ok)
{
	const cJSON *fields = cJSON_GetObjectItemCaseSensitive(body, "fields");
	const cJSON *it, *last = NULL;
	int n = 0;
	char at[48];
	cJSON_ArrayForEach(it, fields) {
		last = it;
		n++;
	}
	if (!last)
		return CN_OK;
	if (cJSON_GetObjectItemCaseSensitive(last, "A_Star")) {
		if (star_ok)
			return CN_OK;
		return reject(g, CN_REJECT_HIDDEN, "* is only allowed in the outer SELECT list when a table "
			      "has hidden columns%s: name the columns you need",
			      where(g, body, at, sizeof at));
	}
	const char *name = string_node(last);
	if (n == 1 && name && is_range_name(g, name))
		return reject(g, CN_REJECT_HIDDEN, "a whole-row reference to %s is not allowed when a table "
			      "has hidden columns%s: name the columns you need", name,
			      where(g, body, at, sizeof at));
	return check_column_name(g, name, body);
}

static int walk_columns(struct guard *g, const cJSON *node, int depth);

/* The outer SelectStmt: `*` and `t.*` directly in its target list expand to
 * columns whose origin the core masks; anywhere else they are refused. */
static int walk_top_targets(struct guard *g, const cJSON *targets, int depth)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, targets) {
		const cJSON *rt = cJSON_GetObjectItemCaseSensitive(it, "ResTarget");
		const cJSON *val = rt ? cJSON_GetObjectItemCaseSensitive(rt, "val") : NULL;
		const cJSON *cref = val ? cJSON_GetObjectItemCaseSensitive(val, "ColumnRef") : NULL;
		int rc = cref ? check_columnref(g, cref, true) : walk_columns(g, it, depth + 1);
		if (rc)
			return rc;
	}
	return CN_OK;
}

static int visit_column_tag(struct guard *g, const char *tag, const cJSON *body, int depth)
{
	const cJSON *it;
	int rc;
	if (!strcmp(tag, "ColumnRef"))
		return check_columnref(g, body, false);
	if (!strcmp(tag, "A_Indirection")) {
		cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(body, "indirection"))
			if ((rc = check_column_name(g, string_node(it), body)))
				return rc;
	} else if (!strcmp(tag, "JoinExpr")) {
		char at[48];
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "isNatural")))
			return reject(g, CN_REJECT_HIDDEN, "NATURAL JOIN is not allowed when a table has "
				      "hidden columns%s: join with ON", where(g, body, at, sizeof at));
		cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(body, "usingClause"))
			if ((rc = check_column_name(g, string_node(it), body)))
				return rc;
	} else if (!strcmp(tag, "SelectStmt") && body == g->top_select) {
		const char *op = str_field(body, "op");
		if (!op || !strcmp(op, "SETOP_NONE")) {
			cJSON_ArrayForEach(it, body) {
				if (it->string && !strcmp(it->string, "targetList"))
					rc = walk_top_targets(g, it, depth);
				else
					rc = walk_columns(g, it, depth + 1);
				if (rc)
					return rc;
			}
			return CN_OK;
		}
	}
	return walk_columns(g, body, depth + 1);
}

static int walk_columns(struct guard *g, const cJSON *node, int depth)
{
	const cJSON *it;
	if (depth > GUARD_MAX_DEPTH)
		return reject(g, CN_REJECT_LIMIT, "the query is nested too deeply");
	cJSON_ArrayForEach(it, node) {
		int rc = CN_OK;
		if (cJSON_IsObject(node) && it->string && isupper((unsigned char)it->string[0]))
			rc = visit_column_tag(g, it->string, it, depth);
		else if (cJSON_IsObject(it) || cJSON_IsArray(it))
			rc = walk_columns(g, it, depth + 1);
		if (rc)
			return rc;
	}
	return CN_OK;
}

/* ---- the statement ---- */

static int check_explain(struct guard *g, const cJSON *body, const cJSON **query)
{
	const cJSON *it;
	char at[48];
	cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(body, "options")) {
		const cJSON *def = cJSON_GetObjectItemCaseSensitive(it, "DefElem");
		const char *name = def ? str_field(def, "defname") : NULL;
		if (g->full && name && !strcmp(name, "analyze"))
			return reject(g, CN_REJECT_DENIED, "EXPLAIN ANALYZE is not allowed%s: it runs the "
				      "query; use EXPLAIN without ANALYZE", where(g, def, at, sizeof at));
	}
	*query = cJSON_GetObjectItemCaseSensitive(body, "query");
	return CN_OK;
}

/* The one statement: SelectStmt, or ExplainStmt of a SelectStmt. */
static int check_statement(struct guard *g, const cJSON *stmt)
{
	const cJSON *tagged = stmt ? stmt->child : NULL;
	const cJSON *query = NULL;
	if (!tagged || !tagged->string)
		return reject(g, CN_REJECT_STATEMENTS, "the query is empty: send one SELECT statement");
	if (!strcmp(tagged->string, "ExplainStmt")) {
		int rc = check_explain(g, tagged, &query);
		if (rc)
			return rc;
		const cJSON *inner = query ? query->child : NULL;
		if (!inner || !inner->string || strcmp(inner->string, "SelectStmt")) {
			const char *sql = inner && inner->string ? stmt_sql_name(inner->string) : NULL;
			return reject(g, CN_REJECT_WRITE,
				      "EXPLAIN of %s is not allowed: only SELECT queries can run",
				      sql ? sql : "this statement");
		}
		g->top_select = inner;
	} else if (!strcmp(tagged->string, "SelectStmt")) {
		g->top_select = tagged;
	} else {
		return reject_tag(g, tagged->string, tagged);
	}
	int rc = walk(g, stmt);
	if (rc || !g->full || !g->sensitive)
		return rc;
	return walk_columns(g, stmt, 0);
}

static int guard_run(struct guard *g, int *max_param)
{
	long bad = text_utf8_invalid_at((const unsigned char *)g->sql);
	if (bad >= 0)
		return reject(g, CN_REJECT_SYNTAX, "the query is not valid UTF-8 (at byte %ld)", bad + 1);

	PgQueryParseResult res = pg_query_parse(g->sql);
	cJSON *tree = NULL;
	int rc;
	if (res.error) {
		const char *msg = res.error->message ? res.error->message : "syntax error";
		if (res.error->cursorpos > 0)
			rc = reject(g, CN_REJECT_SYNTAX, "%s (at character %d)", msg, res.error->cursorpos);
		else
			rc = reject(g, CN_REJECT_SYNTAX, "%s", msg);
		goto out;
	}
	tree = cJSON_Parse(res.parse_tree);
	if (!tree) {
		rc = reject(g, CN_REJECT_LIMIT, "the query is nested too deeply");
		goto out;
	}
	const cJSON *stmts = cJSON_GetObjectItemCaseSensitive(tree, "stmts");
	int n = cJSON_GetArraySize(stmts);
	if (n != 1) {
		rc = n == 0 ? reject(g, CN_REJECT_STATEMENTS,
				     "the query is empty: send one SELECT statement")
			    : reject(g, CN_REJECT_STATEMENTS,
				     "exactly one statement is allowed, found %d", n);
		goto out;
	}
	rc = check_statement(g, cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(stmts, 0), "stmt"));
	if (rc == CN_OK && max_param)
		*max_param = g->max_param;
out:
	cJSON_Delete(tree);
	pg_query_free_parse_result(res);
	free(g->rels);
	free(g->ranges);
	return rc;
}

int pg_guard_check(const char *sql, const struct pg_guard_hooks *hooks, int *max_param,
		   struct cn_error *err)
{
	struct guard g = {.sql = sql, .hooks = hooks, .err = err, .full = true};
	if (!sql)
		return cn_error_reject(err, CN_REJECT_STATEMENTS,
				       "the query is empty: send one SELECT statement");
	return guard_run(&g, max_param);
}

int pg_guard_shape(const char *sql, int *max_param, struct cn_error *err)
{
	struct guard g = {.sql = sql, .err = err, .full = false};
	if (!sql)
		return cn_error_reject(err, CN_REJECT_STATEMENTS,
				       "the query is empty: send one SELECT statement");
	return guard_run(&g, max_param);
}
