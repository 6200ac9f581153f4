/*
 * my_guard.h - the MySQL/MariaDB driver's query guard: a tokenizer that
 * knows MySQL's lexical rules and a policy decided on its tokens. Pure: no
 * connection, no global state; safe to call from many threads at once.
 *
 * No maintained C parser of MySQL's grammar exists, so the guard does not
 * build a tree. It reads the text the way the server's lexer does under the
 * session the driver pins (utf8mb4, sql_mode without ANSI_QUOTES and without
 * NO_BACKSLASH_ESCAPES):
 *
 *   '...' and "..." strings with backslash escapes and doubled quotes;
 *   X'..' and B'..' literals (no escapes); `...` identifiers with doubled
 *   backticks; # and "-- " comments to the end of the line; C-style
 *   comments, where the executable forms (opening with ! or M!) and
 *   optimizer hints (opening with +) are refused, since the server runs or
 *   obeys what they hold, and so is a nested or an unterminated comment; $1..$n placeholders outside strings and comments;
 *   a raw ? is refused (use $n); @ and @@ variables and := are refused;
 *   anything that is not UTF-8, NUL and control characters are refused.
 *
 * Then, on the tokens: exactly one statement (a trailing ; is dropped);
 * SELECT, WITH ... SELECT, ( SELECT ..., VALUES, TABLE, or EXPLAIN/DESCRIBE
 * of one of those (not ANALYZE, not FOR CONNECTION, not of a table); no
 * INTO, FOR UPDATE/SHARE, LOCK IN SHARE MODE, PROCEDURE, NEXT/PREVIOUS VALUE
 * FOR, and no statement keyword (UPDATE, DELETE, ...) anywhere; no call of a
 * denied function (sleep and time burners, user-level locks, files, UDF
 * back doors, replication waits, sequences, functions that read the previous
 * statement's state); no name qualified by a system schema (mysql,
 * performance_schema, sys) or by a database the hooks say is not the
 * source's; information_schema only when nothing is hidden; no hidden table
 * named anywhere; when a named table has hidden columns: no hidden column
 * named anywhere (when a view is named: no column any table hides), `*` only in the outer SELECT list of a query without
 * UNION/INTERSECT/EXCEPT (the core masks those columns by origin), no
 * NATURAL JOIN, no EXPLAIN or TABLE statement.
 *
 * my_guard_check() is that whole guard (the driver's check()).
 * my_guard_prepare() is what execute() does with every text even when
 * check() was not called: the lexical rules and the statement shape, then
 * the text the server receives (placeholders as ?, the order in which
 * parameters bind to them) and whether the query calls anything that could
 * leave state in the session (a function not on the built-in allow list),
 * after which the driver resets the connection.
 */
#ifndef MY_GUARD_H
#define MY_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "connector_driver.h"

#define MY_GUARD_MAX_PARAM 65535

/* What the guard asks about names; every member may be NULL. Names are
 * given as written in the query (quotes removed); the callee compares them
 * the way the server does, e.g. with my_name_eq(). */
struct my_guard_hooks {
	void *ctx;
	/* Non-zero when name is a hidden table of the source. */
	int (*hidden_table)(void *ctx, const char *name);
	/* 1 when name is a table of the source that has hidden columns; 2 when
	 * it is a view and the source hides a column anywhere (a view's column
	 * may be a hidden one); else 0. */
	int (*has_hidden_columns)(void *ctx, const char *table);
	/* Non-zero when column is a hidden column of table (NULL: of any table). */
	int (*hidden_column)(void *ctx, const char *table, const char *column);
	/* Non-zero when the source hides any table or column at all. */
	int (*hides_anything)(void *ctx);
	/* Non-zero when name is a database of the server that is not one of
	 * the source's databases (a qualifier naming it is refused). */
	int (*foreign_database)(void *ctx, const char *name);
};

/* Names compared as MySQL compares column names: case-insensitive with
 * Unicode simple case folding (Latin-1, Latin Extended-A and Additional,
 * Greek, Cyrillic, Armenian, fullwidth Latin; other characters compare
 * exactly), accents significant. Both NUL-terminated UTF-8. */
bool my_name_eq(const char *a, const char *b);

/* The text as the server receives it. */
struct my_prepared {
	char *sql;       /* owned: the query with $n as ?, without a trailing ; */
	size_t len;
	int *binds;      /* owned: binds[i] = the 0-based parameter of the i-th ? */
	size_t nbinds;
	int max_param;   /* the highest $n, 0 when none */
	bool may_touch_session; /* calls a function that is not a known built-in */
	bool explain;    /* EXPLAIN / DESCRIBE */
};

/* CN_OK, CN_EREJECTED with what was found and where ("function SLEEP() is
 * not allowed (at character 8): it only waits") and its class in
 * err->reject, or CN_ENOMEM. sql is
 * NUL-terminated; hooks may be NULL. *max_param (may be NULL) receives the
 * highest $n used, 0 when none. */
int my_guard_check(const char *sql, const struct my_guard_hooks *hooks, int *max_param,
		   struct cn_error *err);

/* The execute-time gate and rewrite: CN_OK with *out filled (free it with
 * my_prepared_free), CN_EREJECTED (classed too) or CN_ENOMEM. */
int my_guard_prepare(const char *sql, struct my_prepared *out, struct cn_error *err);
void my_prepared_free(struct my_prepared *p);

#endif
