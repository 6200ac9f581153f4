/*
 * my_guard.c - the query guard of the MySQL/MariaDB driver (see my_guard.h).
 *
 * Two passes. lex() cuts the text into tokens by MySQL's lexical rules and
 * refuses, on the way, what must never reach the server whatever its
 * grammar makes of it: executable comments, optimizer hints, variables,
 * assignments, raw ? markers, control characters, broken UTF-8. The policy
 * then reads the tokens: the statement's shape from the first ones, and
 * every word, call and name wherever it stands. Messages give the
 * 1-based character position of what they refuse.
 */
#include "my_guard.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/text.h"

#define GUARD_MAX_TOKENS 20000
#define NAME_MAX_BYTES 264 /* MySQL names are at most 64 characters, 256 bytes */

enum tok_kind {
	T_WORD,   /* an unquoted identifier or keyword */
	T_QIDENT, /* `quoted identifier` */
	T_STRING, /* '...', "...", N'...', X'..', B'..' */
	T_NUMBER,
	T_PARAM,  /* $n */
	T_OP,     /* punctuation and operators */
	T_NULL,   /* \N, MySQL's spelling of NULL */
};

struct tok {
	enum tok_kind kind;
	size_t off, len; /* bytes of the text */
	int param;       /* T_PARAM: n */
	bool spaced;     /* whitespace or a comment stands before it */
	int depth;       /* parentheses open before it */
};

struct guard {
	const char *sql;
	const struct my_guard_hooks *hooks;
	struct cn_error *err;
	bool full; /* false: lexical rules and statement shape only */
	struct tok *t;
	size_t n, cap;
	size_t end;      /* tokens of the statement: [0, end), a trailing ; excluded */
	int max_param;
	bool touches;    /* calls a function that is not a known built-in */
	bool explain;
	bool sensitive;  /* a named table has hidden columns */
	bool set_op;     /* UNION / INTERSECT / EXCEPT at depth 0 */
	char **tables;   /* named tables with hidden columns (owned copies; "" for any table) */
	size_t ntables, captables;
};

/* ---- messages ---- */

static int char_position(const char *sql, size_t offset)
{
	int chars = 0;
	for (size_t i = 0; i < offset && sql[i]; i++)
		if (((unsigned char)sql[i] & 0xC0) != 0x80)
			chars++;
	return chars + 1;
}

static int reject(struct guard *g, size_t off, enum cn_reject why, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int reject(struct guard *g, size_t off, enum cn_reject why, const char *fmt, ...)
{
	if (g->err) {
		char what[400];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(what, sizeof what, fmt, ap);
		va_end(ap);
		g->err->code = CN_EREJECTED;
		g->err->reject = (int)why;
		/* "X is not allowed: why" reads "X is not allowed (at character N): why" */
		const char *colon = strstr(what, ": ");
		if (off == SIZE_MAX)
			snprintf(g->err->message, sizeof g->err->message, "%s", what);
		else if (colon)
			snprintf(g->err->message, sizeof g->err->message, "%.*s (at character %d)%s",
				 (int)(colon - what), what, char_position(g->sql, off), colon);
		else
			snprintf(g->err->message, sizeof g->err->message, "%s (at character %d)", what,
				 char_position(g->sql, off));
	}
	return CN_EREJECTED;
}

/* ---- the lexer ---- */

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Bytes of an unquoted identifier: MySQL also takes $ and every multi-byte
 * character (U+0080 and above), so "SELECT\u00a01" is one word to it. */
static bool is_ident(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '$' || c >= 0x80;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int push(struct guard *g, enum tok_kind kind, size_t off, size_t len, bool spaced,
		int depth)
{
	if (g->n >= GUARD_MAX_TOKENS)
		return reject(g, SIZE_MAX, CN_REJECT_LIMIT, "the query is too long: more than %d tokens",
			      GUARD_MAX_TOKENS);
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 64;
		struct tok *t = realloc(g->t, cap * sizeof *t);
		if (!t)
			return cn_error_set(g->err, CN_ENOMEM, "out of memory");
		g->t = t;
		g->cap = cap;
	}
	g->t[g->n++] = (struct tok){.kind = kind, .off = off, .len = len, .spaced = spaced,
				    .depth = depth};
	return CN_OK;
}

/* A quoted run from s[i] (the quote) to its closing quote; backslash escapes
 * when escapes; a doubled quote stands for itself. Returns the offset after
 * the closing quote, or 0 when the text ends first. */
static size_t quoted_end(const char *s, size_t i, char q, bool escapes)
{
	for (size_t j = i + 1; s[j]; j++) {
		if (escapes && s[j] == '\\') {
			if (!s[j + 1])
				return 0;
			j++;
		} else if (s[j] == q) {
			if (s[j + 1] == q) {
				j++;
				continue;
			}
			return j + 1;
		}
	}
	return 0;
}

/* A C-style comment from s[i] ("/" "*"): the offset after it, or an error
 * for what the server would execute or read differently. */
static int comment_end(struct guard *g, size_t i, size_t *end)
{
	const char *s = g->sql;
	char c = s[i + 2];
	if (c == '!' || (c == 'M' && s[i + 3] == '!'))
		return reject(g, i, CN_REJECT_DENIED, "an executable comment is not allowed: the server "
			      "runs what it holds; write the query without it");
	if (c == '+')
		return reject(g, i, CN_REJECT_DENIED, "an optimizer hint is not allowed: hints can change "
			      "the session's settings and the time limit");
	for (size_t j = i + 2; s[j]; j++) {
		if (s[j] == '*' && s[j + 1] == '/') {
			*end = j + 2;
			return CN_OK;
		}
		if (s[j] == '/' && s[j + 1] == '*')
			return reject(g, j, CN_REJECT_SYNTAX, "a comment inside a comment is not allowed: "
				      "MySQL versions read it differently");
	}
	return reject(g, i, CN_REJECT_SYNTAX, "the comment is not closed");
}

static bool exponent_at(const char *s, size_t j)
{
	return (s[j] == 'e' || s[j] == 'E') &&
	       (is_digit((unsigned char)s[j + 1]) ||
		((s[j + 1] == '+' || s[j + 1] == '-') && is_digit((unsigned char)s[j + 2])));
}

static size_t digits_end(const char *s, size_t j)
{
	while (is_digit((unsigned char)s[j]))
		j++;
	return j;
}

/* A number from s[i] (a digit, or . before a digit), or an identifier that
 * starts with digits, cut exactly where the server's lexer cuts it: 1abc and
 * 0x1g are names, but 1.5abc is 1.5 then abc, and 1e5abc is 1e5 then abc
 * (so "SELECT 1.INTO ..." shows its INTO). */
static size_t number_end(const char *s, size_t i, bool *word)
{
	size_t j = i;
	*word = false;
	if (s[j] == '0' && (s[j + 1] == 'x' || s[j + 1] == 'X' || s[j + 1] == 'b' || s[j + 1] == 'B')) {
		bool hex = s[j + 1] == 'x' || s[j + 1] == 'X';
		size_t k = j + 2;
		while (hex ? is_hex((unsigned char)s[k]) : (s[k] == '0' || s[k] == '1'))
			k++;
		if (k - j >= 3 && !is_ident((unsigned char)s[k]))
			return k;
		goto ident;
	}
	if (s[j] != '.') {
		j = digits_end(s, j);
		if (exponent_at(s, j))
			return digits_end(s, j + (s[j + 1] == '+' || s[j + 1] == '-' ? 2 : 1));
		if (is_ident((unsigned char)s[j]))
			goto ident;
		if (s[j] != '.')
			return j;
	}
	j = digits_end(s, j + 1); /* the fraction */
	if (exponent_at(s, j))
		j = digits_end(s, j + (s[j + 1] == '+' || s[j + 1] == '-' ? 2 : 1));
	return j;
ident:
	*word = true;
	j = i;
	while (is_ident((unsigned char)s[j]))
		j++;
	return j;
}

static int lex(struct guard *g)
{
	const char *s = g->sql;
	long bad = text_utf8_invalid_at((const unsigned char *)s);
	if (bad >= 0)
		return reject(g, SIZE_MAX, CN_REJECT_SYNTAX, "the query is not valid UTF-8 (at byte %ld)",
			      bad + 1);
	size_t i = 0;
	bool spaced = false;
	int depth = 0, rc;
	while (s[i]) {
		unsigned char c = (unsigned char)s[i];
		size_t start = i;
		if (is_space(c)) {
			i++;
			spaced = true;
			continue;
		}
		if (c < 0x20 || c == 0x7F)
			return reject(g, i, CN_REJECT_SYNTAX, "control character 0x%02x is not allowed", c);
		if (c == '#' || (c == '-' && s[i + 1] == '-' &&
				 (!s[i + 2] || is_space((unsigned char)s[i + 2]) ||
				  (unsigned char)s[i + 2] < 0x20))) {
			while (s[i] && s[i] != '\n')
				i++;
			spaced = true;
			continue;
		}
		if (c == '/' && s[i + 1] == '*') {
			if ((rc = comment_end(g, i, &i)))
				return rc;
			spaced = true;
			continue;
		}
		enum tok_kind kind = T_OP;
		if (c == '\'' || c == '"') {
			if (!(i = quoted_end(s, i, (char)c, true)))
				return reject(g, start, CN_REJECT_SYNTAX, "the string is not closed");
			kind = T_STRING;
		} else if (c == '`') {
			if (!(i = quoted_end(s, i, '`', false)))
				return reject(g, start, CN_REJECT_SYNTAX,
					      "the quoted identifier is not closed");
			kind = T_QIDENT;
		} else if ((c == 'x' || c == 'X' || c == 'b' || c == 'B') && s[i + 1] == '\'') {
			bool hex = c == 'x' || c == 'X';
			size_t j = i + 2;
			while (s[j] && s[j] != '\'') {
				if (hex ? !is_hex((unsigned char)s[j]) : (s[j] != '0' && s[j] != '1'))
					return reject(g, j, CN_REJECT_SYNTAX,
						      "%s literal holds '%c': only %s digits are allowed",
						      hex ? "a hexadecimal" : "a bit-value", s[j],
						      hex ? "hexadecimal" : "binary");
				j++;
			}
			if (!s[j])
				return reject(g, start, CN_REJECT_SYNTAX, "the literal is not closed");
			i = j + 1;
			kind = T_STRING;
		} else if ((c == 'n' || c == 'N') && s[i + 1] == '\'') {
			if (!(i = quoted_end(s, i + 1, '\'', true)))
				return reject(g, start, CN_REJECT_SYNTAX, "the string is not closed");
			kind = T_STRING;
		} else if (c == '$') {
			size_t j = i + 1;
			long n = 0;
			while (is_digit((unsigned char)s[j])) {
				n = n * 10 + (s[j] - '0');
				if (n > MY_GUARD_MAX_PARAM)
					n = MY_GUARD_MAX_PARAM + 1;
				j++;
			}
			if (j == i + 1)
				return reject(g, i, CN_REJECT_SYNTAX, "a name starting with $ is not "
					      "allowed: quote it with backticks, or use $1..$n for "
					      "parameters");
			if (is_ident((unsigned char)s[j]))
				return reject(g, i, CN_REJECT_PARAMETER, "parameter $%.*s is not allowed: a "
					      "placeholder is $ and digits only", (int)(j - i - 1),
					      s + i + 1);
			if (n < 1 || n > MY_GUARD_MAX_PARAM)
				return reject(g, i, CN_REJECT_PARAMETER,
					      "parameter $%ld is out of range: use $1 to $%d", n,
					      MY_GUARD_MAX_PARAM);
			i = j;
			kind = T_PARAM;
			if ((rc = push(g, kind, start, i - start, spaced, depth)))
				return rc;
			g->t[g->n - 1].param = (int)n;
			spaced = false;
			continue;
		} else if (is_digit(c) || (c == '.' && is_digit((unsigned char)s[i + 1]))) {
			bool word;
			i = number_end(s, i, &word);
			kind = word ? T_WORD : T_NUMBER;
		} else if (is_ident(c)) {
			while (is_ident((unsigned char)s[i]))
				i++;
			kind = T_WORD;
		} else if (c == '?') {
			return reject(g, i, CN_REJECT_PARAMETER, "a ? placeholder is not allowed: write "
				      "$1, $2, ... and pass the values in `parameters`");
		} else if (c == '@') {
			return reject(g, i, CN_REJECT_DENIED, "variables (@name, @@name) are not allowed: "
				      "pass values as $n parameters");
		} else if (c == ':' && s[i + 1] == '=') {
			return reject(g, i, CN_REJECT_DENIED, ":= is not allowed: it assigns a variable");
		} else if (c == '\\') {
			if (s[i + 1] != 'N')
				return reject(g, i, CN_REJECT_SYNTAX,
					      "a backslash is not allowed outside a string");
			i += 2;
			kind = T_NULL;
		} else {
			/* operators: the two-byte ones matter only for the ones the policy reads */
			i++;
			if (c == '(')
				depth++;
			else if (c == ')' && --depth < 0)
				return reject(g, start, CN_REJECT_SYNTAX,
					      "unbalanced parentheses: ) without (");
		}
		if ((rc = push(g, kind, start, i - start, spaced, c == '(' && kind == T_OP ? depth - 1 : depth)))
			return rc;
		spaced = false;
	}
	if (depth > 0)
		return reject(g, SIZE_MAX, CN_REJECT_SYNTAX, "unbalanced parentheses: %d ( without )", depth);
	return CN_OK;
}

/* ---- reading tokens ---- */

static bool is_op(const struct guard *g, size_t i, char c)
{
	return i < g->end && g->t[i].kind == T_OP && g->sql[g->t[i].off] == c;
}

/* An unquoted word equal to kw (case-insensitive). */
static bool is_kw(const struct guard *g, size_t i, const char *kw)
{
	if (i >= g->end || g->t[i].kind != T_WORD)
		return false;
	size_t n = strlen(kw);
	return g->t[i].len == n && strncasecmp(g->sql + g->t[i].off, kw, n) == 0;
}

/* A word that is not a name right after a period (t.update is a column;
 * the server reads "t. update", with a space, as the keyword). */
static bool is_keyword_pos(const struct guard *g, size_t i)
{
	return g->t[i].kind == T_WORD && !(i > 0 && is_op(g, i - 1, '.') && !g->t[i].spaced);
}

static bool word_in(const struct guard *g, size_t i, const char *const *list, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (is_kw(g, i, list[k]))
			return true;
	return false;
}

/* The name a word or `identifier` stands for, into buf ("" when it is
 * neither or too long). */
static const char *name_of(const struct guard *g, size_t i, char *buf, size_t size)
{
	const struct tok *t = &g->t[i];
	buf[0] = '\0';
	if (t->kind == T_WORD) {
		if (t->len < size) {
			memcpy(buf, g->sql + t->off, t->len);
			buf[t->len] = '\0';
		}
	} else if ((t->kind == T_QIDENT || (t->kind == T_STRING && g->sql[t->off] == '"')) &&
		   t->len >= 2) {
		char q = g->sql[t->off];
		size_t w = 0;
		for (size_t j = t->off + 1; j < t->off + t->len - 1 && w + 1 < size; j++) {
			if (q == '"' && g->sql[j] == '\\')
				j++; /* in a string, \x stands for x */
			buf[w++] = g->sql[j];
			if (g->sql[j] == q && j + 1 < t->off + t->len - 1)
				j++; /* a doubled quote stands for one */
		}
		buf[w] = '\0';
	}
	return buf;
}

/* A token that names something: a word, a `quoted name`, or a "string",
 * which is a name to a server running with ANSI_QUOTES (the driver pins the
 * mode without it, but the hidden-name checks do not rely on that). */
static bool is_name(const struct guard *g, size_t i)
{
	const struct tok *t = &g->t[i];
	return t->kind == T_WORD || t->kind == T_QIDENT ||
	       (t->kind == T_STRING && g->sql[t->off] == '"');
}

/* ---- the statement's shape ---- */

static const char *const query_starts[] = {"SELECT", "WITH", "VALUES", "TABLE"};

/* Statements that write or change the session or the server: what a refused
 * statement is counted as (SHOW, HELP, SIGNAL and the like do not write). */
static const char *const write_starts[] = {
	"ALTER", "BACKUP", "BEGIN", "BINLOG", "CACHE", "CALL", "CHANGE", "COMMIT", "CREATE",
	"DEALLOCATE", "DELETE", "DO", "DROP", "EXECUTE", "FLUSH", "GRANT", "HANDLER", "IMPORT",
	"INSERT", "INSTALL", "KILL", "LOAD", "LOCK", "OPTIMIZE", "PREPARE", "PURGE", "RELEASE",
	"RENAME", "REPAIR", "REPLACE", "RESET", "RESTART", "REVOKE", "ROLLBACK", "SAVEPOINT", "SET",
	"SHUTDOWN", "START", "STOP", "TRUNCATE", "UNINSTALL", "UNLOCK", "UPDATE", "USE", "XA",
};

static bool starts_query(const struct guard *g, size_t i)
{
	while (is_op(g, i, '('))
		i++;
	return word_in(g, i, query_starts, sizeof query_starts / sizeof query_starts[0]);
}

/* The token after the parenthesis that opens at i, or g->end. ( and its )
 * carry the depth outside them. */
static size_t after_parens(const struct guard *g, size_t i)
{
	int depth = g->t[i].depth;
	for (size_t j = i + 1; j < g->end; j++)
		if (is_op(g, j, ')') && g->t[j].depth == depth)
			return j + 1;
	return g->end;
}

/* The class of a refusal of what stands at i where a SELECT must: a
 * statement that writes, another statement, or no statement at all. */
static enum cn_reject class_at(const struct guard *g, size_t i)
{
	if (i >= g->end || g->t[i].kind != T_WORD)
		return CN_REJECT_SYNTAX;
	return word_in(g, i, write_starts, sizeof write_starts / sizeof write_starts[0])
		       ? CN_REJECT_WRITE
		       : CN_REJECT_DENIED;
}

/* ANALYZE before a SELECT runs it (as EXPLAIN ANALYZE); ANALYZE TABLE
 * updates statistics, ANALYZE UPDATE runs the update. */
static enum cn_reject analyze_class(const struct guard *g, size_t i)
{
	return starts_query(g, i + 1) && !is_kw(g, i + 1, "TABLE") ? CN_REJECT_DENIED
								   : CN_REJECT_WRITE;
}

static int shape_with(struct guard *g, size_t i)
{
	i++; /* WITH */
	if (is_kw(g, i, "RECURSIVE"))
		i++;
	for (;;) {
		if (i >= g->end || (g->t[i].kind != T_WORD && g->t[i].kind != T_QIDENT))
			return reject(g, i < g->end ? g->t[i].off : SIZE_MAX, CN_REJECT_SYNTAX,
				      "WITH must name a common table expression");
		i++;
		if (is_op(g, i, '('))
			i = after_parens(g, i);
		if (!is_kw(g, i, "AS") || !is_op(g, i + 1, '('))
			return reject(g, i < g->end ? g->t[i].off : SIZE_MAX, CN_REJECT_SYNTAX,
				      "WITH name must be followed by AS ( SELECT ... )");
		if (!starts_query(g, i + 2))
			return reject(g, g->t[i + 2 < g->end ? i + 2 : i].off, class_at(g, i + 2),
				      "only SELECT is allowed inside WITH");
		i = after_parens(g, i + 1);
		if (!is_op(g, i, ','))
			break;
		i++;
	}
	if (!starts_query(g, i) || is_kw(g, i, "WITH"))
		return reject(g, i < g->end ? g->t[i].off : SIZE_MAX, class_at(g, i),
			      "WITH must be followed by a SELECT: only SELECT queries can run");
	return CN_OK;
}

static int shape(struct guard *g)
{
	size_t i = 0;
	if (g->end == 0)
		return reject(g, SIZE_MAX, CN_REJECT_STATEMENTS,
			      "the query is empty: send one SELECT statement");
	if (is_kw(g, 0, "EXPLAIN") || is_kw(g, 0, "DESCRIBE") || is_kw(g, 0, "DESC")) {
		g->explain = true;
		i = 1;
		for (;;) {
			if (is_kw(g, i, "EXTENDED") || is_kw(g, i, "PARTITIONS")) {
				i++;
			} else if (is_kw(g, i, "FORMAT") && is_op(g, i + 1, '=')) {
				i += 3;
			} else {
				break;
			}
		}
		if (is_kw(g, i, "ANALYZE"))
			return reject(g, g->t[i].off, CN_REJECT_DENIED, "EXPLAIN ANALYZE is not allowed: "
				      "it runs the query; use EXPLAIN without ANALYZE");
		if (i >= g->end || !starts_query(g, i))
			return reject(g, i < g->end ? g->t[i].off : SIZE_MAX, class_at(g, i),
				      "EXPLAIN is only allowed of a SELECT query");
	}
	if (is_kw(g, i, "ANALYZE"))
		return reject(g, g->t[i].off, analyze_class(g, i),
			      "ANALYZE is not allowed: it runs the query or updates statistics");
	if (!starts_query(g, i)) {
		char word[64];
		name_of(g, i, word, sizeof word);
		if (g->t[i].kind == T_WORD && word[0])
			return reject(g, g->t[i].off, class_at(g, i),
				      "%s is not allowed: only SELECT queries can run", word);
		return reject(g, g->t[i].off, CN_REJECT_SYNTAX,
			      "the query must start with SELECT, WITH, VALUES, TABLE or EXPLAIN");
	}
	while (is_op(g, i, '('))
		i++;
	if (is_kw(g, i, "WITH"))
		return shape_with(g, i);
	return CN_OK;
}

/* Exactly one statement: a ; may only end the text. */
static int one_statement(struct guard *g)
{
	g->end = g->n;
	for (size_t i = 0; i < g->n; i++) {
		if (!is_op(g, i, ';'))
			continue;
		if (i + 1 < g->n)
			return reject(g, g->t[i].off, CN_REJECT_STATEMENTS,
				      "exactly one statement is allowed: ; must end the query");
		g->end = i;
	}
	return CN_OK;
}

/* ---- words ---- */

/* Keywords that may stand before ( without calling a function. */
static const char *const not_calls[] = {
	"ACCESSIBLE", "AGAINST", "ALL", "AND", "ANY", "AS", "BETWEEN", "BINARY", "BY", "CASE",
	"COLLATE", "COLUMNS", "DISTINCT", "DIV", "DISTINCTROW", "ELSE", "ESCAPE", "EXCEPT",
	"EXISTS", "FOR", "FROM", "GROUP", "HAVING", "IN", "INDEX", "INTERSECT", "IS", "JOIN",
	"KEY", "LATERAL", "LIKE", "LIMIT", "NESTED", "NOT", "OF", "OFFSET", "ON", "OR", "ORDER",
	"OVER", "PARTITION", "PATH", "RECURSIVE", "REGEXP", "RLIKE", "ROW", "SELECT", "SOME",
	"STRAIGHT_JOIN", "THEN", "UNION", "USING", "VALUES", "WHEN", "WHERE", "WINDOW", "WITH",
	"XOR", "TABLE", "ROWS", "RANGE", "EXPLAIN", "DESC", "DESCRIBE", "ASC", "OUTER", "INNER",
	"CROSS", "NATURAL", "SOUNDS", "MEMBER", "UNIQUE",
};

/* Reserved words of statements that have no place in a query; reserved, so
 * never a name unless quoted or after a period (t.update is a column). */
static const char *const statement_words[] = {
	"ALTER", "CALL", "CREATE", "DELETE", "DROP", "GRANT", "INTO", "KILL", "LOAD", "LOCK",
	"OPTIMIZE", "OUTFILE", "PROCEDURE", "PURGE", "RENAME", "RESIGNAL", "REVOKE", "SIGNAL",
	"UNLOCK", "UPDATE",
};

struct deny_fn {
	const char *name;
	bool prefix;
	const char *why;
};

static const char R_SLEEP[] = "it only waits or burns time";
static const char R_LOCK[] = "it takes or releases user-level locks";
static const char R_FILE[] = "it reads files of the database server";
static const char R_UDF[] = "it runs commands on the database server";
static const char R_REPL[] = "it waits on replication";
static const char R_SEQ[] = "it uses sequences, which write";
static const char R_STATE[] = "it reads or sets what an earlier statement left in the session";
static const char R_KEYS[] = "it uses the server's key file";
static const char R_REMOTE[] = "it runs SQL on other servers";
static const char R_ADMIN[] = "it changes the server's keys, replication, audit or firewall";

static const struct deny_fn deny_fns[] = {
	{"SLEEP", false, R_SLEEP},
	{"BENCHMARK", false, R_SLEEP},
	{"GET_LOCK", false, R_LOCK},
	{"RELEASE_LOCK", false, R_LOCK},
	{"RELEASE_ALL_LOCKS", false, R_LOCK},
	{"IS_FREE_LOCK", false, R_LOCK},
	{"IS_USED_LOCK", false, R_LOCK},
	{"LOAD_FILE", false, R_FILE},
	{"SYS_EXEC", false, R_UDF},
	{"SYS_EVAL", false, R_UDF},
	{"SYS_GET", false, R_UDF},
	{"SYS_SET", false, R_UDF},
	{"SYS_BINEVAL", false, R_UDF},
	{"LIB_MYSQLUDF_", true, R_UDF},
	{"MROONGA_COMMAND", false, R_UDF},
	{"SPIDER_", true, R_REMOTE},
	{"MASTER_POS_WAIT", false, R_REPL},
	{"MASTER_GTID_WAIT", false, R_REPL},
	{"SOURCE_POS_WAIT", false, R_REPL},
	{"WAIT_FOR_EXECUTED_GTID_SET", false, R_REPL},
	{"WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS", false, R_REPL},
	{"BINLOG_GTID_POS", false, R_REPL},
	{"NEXTVAL", false, R_SEQ},
	{"SETVAL", false, R_SEQ},
	{"LASTVAL", false, R_SEQ},
	{"LAST_INSERT_ID", false, R_STATE},
	{"FOUND_ROWS", false, R_STATE},
	{"ROW_COUNT", false, R_STATE},
	{"DES_ENCRYPT", false, R_KEYS},
	{"DES_DECRYPT", false, R_KEYS},
	{"PS_THREAD_ID", false, R_STATE},
	{"PS_CURRENT_THREAD_ID", false, R_STATE},
	{"KEYRING_", true, R_ADMIN},
	{"VERSION_TOKENS_", true, R_LOCK},
	{"SERVICE_GET_", true, R_LOCK},
	{"SERVICE_RELEASE_", true, R_LOCK},
	{"GROUP_REPLICATION_", true, R_ADMIN},
	{"ASYNCHRONOUS_CONNECTION_FAILOVER_", true, R_ADMIN},
	{"AUDIT_LOG_", true, R_ADMIN},
	{"AUDIT_API_", true, R_ADMIN},
	{"LOAD_REWRITE_RULES", false, R_ADMIN},
	{"SET_FIREWALL_", true, R_ADMIN},
	{"MYSQL_FIREWALL_", true, R_ADMIN},
	{"READ_FIREWALL_", true, R_ADMIN},
	{"WSREP_SYNC_WAIT_", true, R_REPL},
};

/* Built-ins that only compute from their arguments: a call of anything else
 * (a stored function, a loadable function, a built-in not listed) makes the
 * driver reset the session after the query. Sorted for bsearch. */
static const char *const pure_fns[] = {
	"ABS", "ACOS", "ADDDATE", "ADDTIME", "AES_DECRYPT", "AES_ENCRYPT", "ANY_VALUE", "ASCII",
	"ASIN", "ATAN", "ATAN2", "AVG", "BIN", "BIN_TO_UUID", "BIT_AND", "BIT_COUNT", "BIT_LENGTH",
	"BIT_OR", "BIT_XOR", "CAST", "CEIL", "CEILING", "CHAR", "CHARACTER_LENGTH", "CHARSET",
	"CHAR_LENGTH", "CHR", "COALESCE", "COERCIBILITY", "COLLATION", "COMPRESS", "CONCAT",
	"CONCAT_WS", "CONV", "CONVERT", "CONVERT_TZ", "COS", "COT", "COUNT", "CRC32", "CUME_DIST",
	"CURDATE", "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "CURTIME", "DATABASE",
	"DATE", "DATEDIFF", "DATE_ADD", "DATE_FORMAT", "DATE_SUB", "DAY", "DAYNAME", "DAYOFMONTH",
	"DAYOFWEEK", "DAYOFYEAR", "DEGREES", "DENSE_RANK", "ELT", "EXP", "EXPORT_SET", "EXTRACT",
	"EXTRACTVALUE", "FIELD", "FIND_IN_SET", "FIRST_VALUE", "FLOOR", "FORMAT", "FROM_BASE64",
	"FROM_DAYS", "FROM_UNIXTIME", "GREATEST", "GROUP_CONCAT", "HEX", "HOUR", "IF", "IFNULL",
	"INET6_ATON", "INET6_NTOA", "INET_ATON", "INET_NTOA", "INSERT", "INSTR", "INTERVAL",
	"ISNULL", "IS_IPV4", "IS_IPV6", "JSON_ARRAY", "JSON_ARRAYAGG", "JSON_ARRAY_APPEND",
	"JSON_ARRAY_INSERT", "JSON_COMPACT", "JSON_CONTAINS", "JSON_CONTAINS_PATH", "JSON_DEPTH",
	"JSON_DETAILED", "JSON_EXISTS", "JSON_EXTRACT", "JSON_INSERT", "JSON_KEYS", "JSON_LENGTH",
	"JSON_LOOSE", "JSON_MERGE", "JSON_MERGE_PATCH", "JSON_MERGE_PRESERVE", "JSON_OBJECT",
	"JSON_OBJECTAGG", "JSON_OVERLAPS", "JSON_PRETTY", "JSON_QUERY", "JSON_QUOTE",
	"JSON_REMOVE", "JSON_REPLACE", "JSON_SEARCH", "JSON_SET", "JSON_TABLE", "JSON_TYPE",
	"JSON_UNQUOTE", "JSON_VALID", "JSON_VALUE", "LAG", "LAST_DAY", "LAST_VALUE", "LCASE",
	"LEAD", "LEAST", "LEFT", "LENGTH", "LN", "LOCALTIME", "LOCALTIMESTAMP", "LOCATE", "LOG",
	"LOG10", "LOG2", "LOWER", "LPAD", "LTRIM", "MAKEDATE", "MAKETIME", "MAKE_SET", "MATCH",
	"MAX", "MD5", "MEDIAN", "MICROSECOND", "MID", "MIN", "MINUTE", "MOD", "MONTH",
	"MONTHNAME", "NOW", "NTH_VALUE", "NTILE", "NULLIF", "OCT", "OCTET_LENGTH", "ORD",
	"PERCENTILE_CONT", "PERCENTILE_DISC", "PERCENT_RANK", "PERIOD_ADD", "PERIOD_DIFF", "PI",
	"POSITION", "POW", "POWER", "QUARTER", "QUOTE", "RADIANS", "RAND", "RANK", "REGEXP_INSTR",
	"REGEXP_LIKE", "REGEXP_REPLACE", "REGEXP_SUBSTR", "REPEAT", "REPLACE", "REVERSE", "RIGHT",
	"ROUND", "ROW_NUMBER", "RPAD", "RTRIM", "SECOND", "SEC_TO_TIME", "SHA", "SHA1", "SHA2",
	"SIGN", "SIN", "SOUNDEX", "SPACE", "SQRT", "STD", "STDDEV", "STDDEV_POP", "STDDEV_SAMP",
	"STRCMP", "STR_TO_DATE", "SUBDATE", "SUBSTR", "SUBSTRING", "SUBSTRING_INDEX", "SUBTIME",
	"SUM", "SYSDATE", "TAN", "TIME", "TIMEDIFF", "TIMESTAMP", "TIMESTAMPADD", "TIMESTAMPDIFF",
	"TIME_FORMAT", "TIME_TO_SEC", "TO_BASE64", "TO_DAYS", "TO_SECONDS", "TRIM", "TRUNCATE",
	"UCASE", "UNCOMPRESS", "UNCOMPRESSED_LENGTH", "UNHEX", "UNIX_TIMESTAMP", "UPPER",
	"UTC_DATE", "UTC_TIME", "UTC_TIMESTAMP", "UUID", "UUID_SHORT", "UUID_TO_BIN", "VARIANCE",
	"VAR_POP", "VAR_SAMP", "VERSION", "WEEK", "WEEKDAY", "WEEKOFYEAR", "WEIGHT_STRING", "YEAR",
	"YEARWEEK",
};

static int cmp_name(const void *key, const void *elem)
{
	return strcasecmp(key, *(const char *const *)elem);
}

static bool is_pure(const char *name)
{
	return bsearch(name, pure_fns, sizeof pure_fns / sizeof pure_fns[0], sizeof pure_fns[0],
		       cmp_name) != NULL;
}

static const struct deny_fn *deny_fn_find(const char *name)
{
	for (size_t i = 0; i < sizeof deny_fns / sizeof deny_fns[0]; i++) {
		const struct deny_fn *d = &deny_fns[i];
		if (d->prefix ? strncasecmp(name, d->name, strlen(d->name)) == 0
			      : strcasecmp(name, d->name) == 0)
			return d;
	}
	return NULL;
}

/* A word or `name` followed by ( that calls a function. */
static int visit_call(struct guard *g, size_t i)
{
	char name[NAME_MAX_BYTES];
	name_of(g, i, name, sizeof name);
	if (g->t[i].kind == T_WORD &&
	    word_in(g, i, not_calls, sizeof not_calls / sizeof not_calls[0]) &&
	    !(i > 0 && is_op(g, i - 1, '.')))
		return CN_OK;
	const struct deny_fn *d = deny_fn_find(name);
	if (d)
		return reject(g, g->t[i].off, CN_REJECT_DENIED, "function %s() is not allowed: %s", name,
			      d->why);
	/* a built-in only when unqualified, unquoted and right against its ( */
	bool builtin = g->t[i].kind == T_WORD && !(i > 0 && is_op(g, i - 1, '.')) &&
		       !g->t[i + 1].spaced && is_pure(name);
	if (!builtin)
		g->touches = true;
	return CN_OK;
}

static const char *const system_schemas[] = {"mysql", "performance_schema", "sys"};

static int add_table(struct guard *g, const char *name)
{
	for (size_t k = 0; k < g->ntables; k++)
		if (my_name_eq(g->tables[k], name))
			return CN_OK;
	if (g->ntables == g->captables) {
		size_t cap = g->captables ? g->captables * 2 : 8;
		char **p = realloc(g->tables, cap * sizeof *p);
		if (!p)
			return cn_error_set(g->err, CN_ENOMEM, "out of memory");
		g->tables = p;
		g->captables = cap;
	}
	char *copy = strdup(name);
	if (!copy)
		return cn_error_set(g->err, CN_ENOMEM, "out of memory");
	g->tables[g->ntables++] = copy;
	return CN_OK;
}

/* Names: system schemas and other databases as qualifiers, hidden tables,
 * tables with hidden columns. */
static int visit_name(struct guard *g, size_t i)
{
	const struct my_guard_hooks *h = g->hooks;
	char name[NAME_MAX_BYTES];
	name_of(g, i, name, sizeof name);
	if (!name[0])
		return CN_OK;
	bool qualifier = is_op(g, i + 1, '.');
	if (qualifier) {
		for (size_t k = 0; k < sizeof system_schemas / sizeof system_schemas[0]; k++)
			if (my_name_eq(name, system_schemas[k]))
				return reject(g, g->t[i].off, CN_REJECT_DENIED, "the %s schema is not "
					      "allowed: it holds the server's own accounts, settings and "
					      "statistics", system_schemas[k]);
		if (h && h->foreign_database && h->foreign_database(h->ctx, name))
			return reject(g, g->t[i].off, CN_REJECT_DENIED,
				      "database %s is not allowed: it is not part of this data source", name);
	}
	if (my_name_eq(name, "information_schema") && h && h->hides_anything &&
	    h->hides_anything(h->ctx))
		return reject(g, g->t[i].off, CN_REJECT_DENIED, "information_schema is not allowed for "
			      "this source: it would show hidden tables and columns; use describe_schema");
	if (h && h->hidden_table && h->hidden_table(h->ctx, name))
		return reject(g, g->t[i].off, CN_REJECT_HIDDEN, "table %s is not available", name);
	int sensitive = h && h->has_hidden_columns ? h->has_hidden_columns(h->ctx, name) : 0;
	if (sensitive) {
		g->sensitive = true;
		return add_table(g, sensitive == 2 ? "" : name); /* "": any table */
	}
	return CN_OK;
}

/* Words that may stand between SELECT and a * of its list. */
static const char *const select_modifiers[] = {
	"SELECT", "ALL", "DISTINCT", "DISTINCTROW", "HIGH_PRIORITY", "STRAIGHT_JOIN",
	"SQL_SMALL_RESULT", "SQL_BIG_RESULT", "SQL_BUFFER_RESULT", "SQL_CACHE", "SQL_NO_CACHE",
	"SQL_CALC_FOUND_ROWS",
};

/* Second pass when a named table has hidden columns. */
static int check_hidden_columns(struct guard *g)
{
	const struct my_guard_hooks *h = g->hooks;
	char name[NAME_MAX_BYTES];
	if (g->explain)
		return reject(g, g->t[0].off, CN_REJECT_HIDDEN, "EXPLAIN is not allowed when a table has "
			      "hidden columns: its output names them");
	size_t first = 0;
	while (is_op(g, first, '('))
		first++;
	if (is_kw(g, first, "TABLE"))
		return reject(g, g->t[first].off, CN_REJECT_HIDDEN, "TABLE is not allowed when a table has "
			      "hidden columns: name the columns you need");
	for (size_t i = 0; i < g->end; i++) {
		const struct tok *t = &g->t[i];
		if (is_name(g, i)) {
			if (is_kw(g, i, "NATURAL"))
				return reject(g, t->off, CN_REJECT_HIDDEN, "NATURAL JOIN is not allowed "
					      "when a table has hidden columns: join with ON");
			name_of(g, i, name, sizeof name);
			for (size_t k = 0; name[0] && h->hidden_column && k < g->ntables; k++)
				if (h->hidden_column(h->ctx, g->tables[k][0] ? g->tables[k] : NULL, name))
					return reject(g, t->off, CN_REJECT_HIDDEN,
						      "column %s is not available", name);
		} else if (t->kind == T_OP && g->sql[t->off] == '*' && i > 0) {
			bool star = is_op(g, i - 1, '.') || is_op(g, i - 1, ',') ||
				    word_in(g, i - 1, select_modifiers,
					    sizeof select_modifiers / sizeof select_modifiers[0]);
			if (!star)
				continue; /* multiplication, COUNT(*) */
			if (t->depth > 0 || g->set_op)
				return reject(g, t->off, CN_REJECT_HIDDEN, "* is only allowed in the outer "
					      "SELECT list of a query without UNION when a table has "
					      "hidden columns: name the columns you need");
		}
	}
	return CN_OK;
}

static int policy(struct guard *g)
{
	int rc;
	for (size_t i = 0; i < g->end; i++) {
		const struct tok *t = &g->t[i];
		if (t->kind == T_PARAM) {
			if (t->param > g->max_param)
				g->max_param = t->param;
			continue;
		}
		if (!is_name(g, i))
			continue;
		if (t->kind == T_STRING) { /* a "name" only for the hidden-name checks */
			if (g->full && (rc = visit_name(g, i)))
				return rc;
			continue;
		}
		if (t->depth == 0 && (is_kw(g, i, "UNION") || is_kw(g, i, "INTERSECT") ||
				      is_kw(g, i, "EXCEPT")))
			g->set_op = true;
		if (is_keyword_pos(g, i)) {
			if (word_in(g, i, statement_words,
				    sizeof statement_words / sizeof statement_words[0])) {
				char word[64];
				name_of(g, i, word, sizeof word);
				if (is_kw(g, i, "INTO"))
					return reject(g, t->off, CN_REJECT_WRITE,
						      "INTO is not allowed: it writes files or variables");
				if (is_kw(g, i, "LOCK"))
					return reject(g, t->off, CN_REJECT_WRITE,
						      "LOCK IN SHARE MODE is not allowed: it locks rows");
				if (is_kw(g, i, "UPDATE") && i > 0 && is_kw(g, i - 1, "FOR"))
					return reject(g, g->t[i - 1].off, CN_REJECT_WRITE,
						      "FOR UPDATE is not allowed: it locks rows");
				return reject(g, t->off, class_at(g, i),
					      "%s is not allowed: only SELECT queries can run", word);
			}
			if (is_kw(g, i, "INSERT") || is_kw(g, i, "REPLACE")) {
				if (!is_op(g, i + 1, '('))
					return reject(g, t->off, CN_REJECT_WRITE,
						      "%s is not allowed: only SELECT queries can run",
						      is_kw(g, i, "INSERT") ? "INSERT" : "REPLACE");
			}
			if (is_kw(g, i, "FOR") && is_kw(g, i + 1, "SHARE"))
				return reject(g, t->off, CN_REJECT_WRITE,
					      "FOR SHARE is not allowed: it locks rows");
			if ((is_kw(g, i, "NEXT") || is_kw(g, i, "PREVIOUS")) && is_kw(g, i + 1, "VALUE") &&
			    is_kw(g, i + 2, "FOR"))
				return reject(g, t->off, CN_REJECT_DENIED,
					      "%s VALUE FOR is not allowed: it uses a sequence",
					      is_kw(g, i, "NEXT") ? "NEXT" : "PREVIOUS");
			if (is_kw(g, i, "ANALYZE"))
				return reject(g, t->off, analyze_class(g, i), "ANALYZE is not allowed: it "
					      "runs the query or updates statistics");
		}
		if (is_op(g, i + 1, '(') && (rc = visit_call(g, i)))
			return rc;
		if (!g->full)
			continue;
		if ((rc = visit_name(g, i)))
			return rc;
	}
	if (g->full && g->sensitive)
		return check_hidden_columns(g);
	return CN_OK;
}

/* ---- running it ---- */

static void guard_free(struct guard *g)
{
	for (size_t k = 0; k < g->ntables; k++)
		free(g->tables[k]);
	free(g->tables);
	free(g->t);
}

static int guard_run(struct guard *g)
{
	if (!g->sql)
		return reject(g, SIZE_MAX, CN_REJECT_STATEMENTS,
			      "the query is empty: send one SELECT statement");
	int rc = lex(g);
	if (rc == CN_OK)
		rc = one_statement(g);
	if (rc == CN_OK)
		rc = shape(g);
	if (rc == CN_OK)
		rc = policy(g);
	return rc;
}

int my_guard_check(const char *sql, const struct my_guard_hooks *hooks, int *max_param,
		   struct cn_error *err)
{
	struct guard g = {.sql = sql, .hooks = hooks, .err = err, .full = true};
	int rc = guard_run(&g);
	if (rc == CN_OK && max_param)
		*max_param = g.max_param;
	guard_free(&g);
	return rc;
}

/* The text with each $n as ?, up to the statement's end. */
static int rewrite(struct guard *g, struct my_prepared *out)
{
	size_t stop = g->end < g->n ? g->t[g->end].off : strlen(g->sql);
	size_t nparams = 0;
	for (size_t i = 0; i < g->end; i++)
		nparams += g->t[i].kind == T_PARAM;
	out->sql = malloc(stop + 1);
	out->binds = calloc(nparams ? nparams : 1, sizeof *out->binds);
	if (!out->sql || !out->binds)
		return cn_error_set(g->err, CN_ENOMEM, "out of memory");
	size_t w = 0, r = 0;
	for (size_t i = 0; i < g->end; i++) {
		const struct tok *t = &g->t[i];
		if (t->kind != T_PARAM)
			continue;
		memcpy(out->sql + w, g->sql + r, t->off - r);
		w += t->off - r;
		out->sql[w++] = '?';
		r = t->off + t->len;
		out->binds[out->nbinds++] = t->param - 1;
	}
	memcpy(out->sql + w, g->sql + r, stop - r);
	w += stop - r;
	out->sql[w] = '\0';
	out->len = w;
	return CN_OK;
}

int my_guard_prepare(const char *sql, struct my_prepared *out, struct cn_error *err)
{
	struct guard g = {.sql = sql, .err = err, .full = false};
	memset(out, 0, sizeof *out);
	int rc = guard_run(&g);
	if (rc == CN_OK)
		rc = rewrite(&g, out);
	if (rc == CN_OK) {
		out->max_param = g.max_param;
		out->may_touch_session = g.touches;
		out->explain = g.explain;
	} else {
		my_prepared_free(out);
	}
	guard_free(&g);
	return rc;
}

void my_prepared_free(struct my_prepared *p)
{
	free(p->sql);
	free(p->binds);
	memset(p, 0, sizeof *p);
}

/* ---- names ---- */

/* The next code point of valid UTF-8 at *p (the guard checked the query;
 * names from the catalog are UTF-8 too); a stray byte stands for itself. */
static uint32_t utf8_next(const unsigned char **p)
{
	const unsigned char *s = *p;
	uint32_t c = s[0];
	int n = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 0;
	if (n)
		c &= 0x3F >> n;
	for (int i = 1; i <= n; i++) {
		if ((s[i] & 0xC0) != 0x80) {
			*p = s + 1;
			return s[0];
		}
		c = (c << 6) | (s[i] & 0x3F);
	}
	*p = s + n + 1;
	return c;
}

/* Unicode simple case folding of the blocks names are written in. */
static uint32_t fold(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + 32 : c;
	if ((c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3AB && c != 0x3A2) ||
	    (c >= 0x410 && c <= 0x42F) || (c >= 0xFF21 && c <= 0xFF3A))
		return c + 32;
	if (c >= 0x400 && c <= 0x40F)
		return c + 80;
	if (c >= 0x531 && c <= 0x556)
		return c + 48;
	if (c == 0x178)
		return 0xFF;
	if (c == 0x130 || c == 0x131)
		return 'i';
	if (c == 0x3C2)
		return 0x3C3;
	if (c == 0x386)
		return 0x3AC;
	if (c >= 0x388 && c <= 0x38A)
		return c + 37;
	if (c == 0x38C)
		return 0x3CC;
	if (c == 0x38E || c == 0x38F)
		return c + 63;
	/* pairs: upper case at even code points */
	if ((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177) ||
	    (c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x52F) ||
	    (c >= 0x1E00 && c <= 0x1E95) || (c >= 0x1EA0 && c <= 0x1EFF))
		return c | 1;
	/* pairs: upper case at odd code points */
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E) || (c >= 0x4C1 && c <= 0x4CE))
		return (c & 1) ? c + 1 : c;
	return c;
}

bool my_name_eq(const char *a, const char *b)
{
	const unsigned char *p = (const unsigned char *)a, *q = (const unsigned char *)b;
	while (*p && *q)
		if (fold(utf8_next(&p)) != fold(utf8_next(&q)))
			return false;
	return !*p && !*q;
}
