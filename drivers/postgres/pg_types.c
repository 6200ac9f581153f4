/*
 * pg_types.c - type names, cell kinds and cell conversion (see pg_types.h).
 */
#include "pg_types.h"

#include "../common/text.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ARRAY_MAX_DEPTH 8 /* PostgreSQL allows 6 dimensions */

/* ---- OID map: open addressing, linear probing ---- */

static size_t oid_slot(uint32_t key, size_t cap)
{
	return (size_t)(key * 2654435761u) & (cap - 1);
}

void *pg_oid_map_get(const struct pg_oid_map *m, uint32_t key)
{
	if (!m->cap || key == 0)
		return NULL;
	for (size_t i = oid_slot(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key)
			return m->values[i];
		if (m->keys[i] == 0)
			return NULL;
	}
}

static int oid_map_grow(struct pg_oid_map *m)
{
	size_t cap = m->cap ? m->cap * 2 : 64;
	uint32_t *keys = calloc(cap, sizeof *keys);
	void **values = calloc(cap, sizeof *values);
	if (!keys || !values) {
		free(keys);
		free(values);
		return CN_ENOMEM;
	}
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->keys[i])
			continue;
		size_t j = oid_slot(m->keys[i], cap);
		while (keys[j])
			j = (j + 1) & (cap - 1);
		keys[j] = m->keys[i];
		values[j] = m->values[i];
	}
	free(m->keys);
	free(m->values);
	m->keys = keys;
	m->values = values;
	m->cap = cap;
	return CN_OK;
}

int pg_oid_map_put(struct pg_oid_map *m, uint32_t key, void *value)
{
	if (key == 0)
		return CN_EINVAL;
	if ((m->n + 1) * 2 > m->cap && oid_map_grow(m))
		return CN_ENOMEM;
	size_t i = oid_slot(key, m->cap);
	while (m->keys[i] && m->keys[i] != key)
		i = (i + 1) & (m->cap - 1);
	if (!m->keys[i])
		m->n++;
	m->keys[i] = key;
	m->values[i] = value;
	return CN_OK;
}

void pg_oid_map_clear(struct pg_oid_map *m, void (*free_value)(void *))
{
	for (size_t i = 0; free_value && i < m->cap; i++)
		if (m->keys[i])
			free_value(m->values[i]);
	free(m->keys);
	free(m->values);
	*m = (struct pg_oid_map){0};
}

/* ---- built-in types (pg_type.dat of PostgreSQL 15; OIDs are stable) ---- */

static const struct pg_builtin_type builtins[] = {
	{16, "boolean", PG_KIND_BOOL, 0},
	{17, "bytea", PG_KIND_BYTES, 0},
	{18, "\"char\"", PG_KIND_TEXT, 0},
	{19, "name", PG_KIND_TEXT, 0},
	{20, "bigint", PG_KIND_INT, 0},
	{21, "smallint", PG_KIND_INT, 0},
	{23, "integer", PG_KIND_INT, 0},
	{24, "regproc", PG_KIND_TEXT, 0},
	{25, "text", PG_KIND_TEXT, 0},
	{26, "oid", PG_KIND_INT, 0},
	{27, "tid", PG_KIND_TEXT, 0},
	{28, "xid", PG_KIND_TEXT, 0},
	{29, "cid", PG_KIND_TEXT, 0},
	{114, "json", PG_KIND_JSON, 0},
	{142, "xml", PG_KIND_TEXT, 0},
	{143, "xml[]", PG_KIND_ARRAY, 142},
	{199, "json[]", PG_KIND_ARRAY, 114},
	{600, "point", PG_KIND_TEXT, 0},
	{650, "cidr", PG_KIND_TEXT, 0},
	{651, "cidr[]", PG_KIND_ARRAY, 650},
	{700, "real", PG_KIND_NUMERIC, 0},
	{701, "double precision", PG_KIND_NUMERIC, 0},
	{705, "unknown", PG_KIND_TEXT, 0},
	{774, "macaddr8", PG_KIND_TEXT, 0},
	{790, "money", PG_KIND_TEXT, 0},
	{829, "macaddr", PG_KIND_TEXT, 0},
	{869, "inet", PG_KIND_TEXT, 0},
	{1000, "boolean[]", PG_KIND_ARRAY, 16},
	{1001, "bytea[]", PG_KIND_ARRAY, 17},
	{1002, "\"char\"[]", PG_KIND_ARRAY, 18},
	{1003, "name[]", PG_KIND_ARRAY, 19},
	{1005, "smallint[]", PG_KIND_ARRAY, 21},
	{1007, "integer[]", PG_KIND_ARRAY, 23},
	{1009, "text[]", PG_KIND_ARRAY, 25},
	{1014, "character[]", PG_KIND_ARRAY, 1042},
	{1015, "character varying[]", PG_KIND_ARRAY, 1043},
	{1016, "bigint[]", PG_KIND_ARRAY, 20},
	{1021, "real[]", PG_KIND_ARRAY, 700},
	{1022, "double precision[]", PG_KIND_ARRAY, 701},
	{1028, "oid[]", PG_KIND_ARRAY, 26},
	{1041, "inet[]", PG_KIND_ARRAY, 869},
	{1042, "character", PG_KIND_TEXT, 0},
	{1043, "character varying", PG_KIND_TEXT, 0},
	{1082, "date", PG_KIND_TEXT, 0},
	{1083, "time without time zone", PG_KIND_TEXT, 0},
	{1114, "timestamp without time zone", PG_KIND_TIMESTAMP, 0},
	{1115, "timestamp without time zone[]", PG_KIND_ARRAY, 1114},
	{1182, "date[]", PG_KIND_ARRAY, 1082},
	{1183, "time without time zone[]", PG_KIND_ARRAY, 1083},
	{1184, "timestamp with time zone", PG_KIND_TIMESTAMP, 0},
	{1185, "timestamp with time zone[]", PG_KIND_ARRAY, 1184},
	{1186, "interval", PG_KIND_TEXT, 0},
	{1187, "interval[]", PG_KIND_ARRAY, 1186},
	{1231, "numeric[]", PG_KIND_ARRAY, 1700},
	{1266, "time with time zone", PG_KIND_TEXT, 0},
	{1270, "time with time zone[]", PG_KIND_ARRAY, 1266},
	{1560, "bit", PG_KIND_TEXT, 0},
	{1562, "bit varying", PG_KIND_TEXT, 0},
	{1700, "numeric", PG_KIND_NUMERIC, 0},
	{1790, "refcursor", PG_KIND_TEXT, 0},
	{2202, "regprocedure", PG_KIND_TEXT, 0},
	{2205, "regclass", PG_KIND_TEXT, 0},
	{2206, "regtype", PG_KIND_TEXT, 0},
	{2249, "record", PG_KIND_TEXT, 0},
	{2275, "cstring", PG_KIND_TEXT, 0},
	{2278, "void", PG_KIND_TEXT, 0},
	{2950, "uuid", PG_KIND_TEXT, 0},
	{2951, "uuid[]", PG_KIND_ARRAY, 2950},
	{3220, "pg_lsn", PG_KIND_TEXT, 0},
	{3614, "tsvector", PG_KIND_TEXT, 0},
	{3615, "tsquery", PG_KIND_TEXT, 0},
	{3802, "jsonb", PG_KIND_JSON, 0},
	{3807, "jsonb[]", PG_KIND_ARRAY, 3802},
	{4072, "jsonpath", PG_KIND_TEXT, 0},
	{4089, "regnamespace", PG_KIND_TEXT, 0},
	{4096, "regrole", PG_KIND_TEXT, 0},
	{5069, "xid8", PG_KIND_TEXT, 0},
};

const struct pg_builtin_type *pg_builtin_type(uint32_t oid)
{
	size_t lo = 0, hi = sizeof builtins / sizeof builtins[0];
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (builtins[mid].oid == oid)
			return &builtins[mid];
		if (builtins[mid].oid < oid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int pg_type_format(struct dstr *out, uint32_t oid, const char *name, int typmod)
{
	if (typmod >= 4 && (oid == 1043 || oid == 1042))
		return dstr_printf(out, "%s(%d)", name, typmod - 4);
	if (typmod >= 4 && oid == 1700) {
		int p = ((typmod - 4) >> 16) & 0xffff, s = (typmod - 4) & 0xffff;
		return dstr_printf(out, "numeric(%d,%d)", p, s);
	}
	return dstr_puts(out, name);
}

/* ---- scalar conversions ---- */

/* A JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool is_json_number(const char *p, size_t n)
{
	size_t i = 0;
	if (i < n && p[i] == '-')
		i++;
	if (i >= n || !isdigit((unsigned char)p[i]))
		return false;
	if (p[i] == '0')
		i++;
	else
		while (i < n && isdigit((unsigned char)p[i]))
			i++;
	if (i < n && p[i] == '.') {
		if (++i >= n || !isdigit((unsigned char)p[i]))
			return false;
		while (i < n && isdigit((unsigned char)p[i]))
			i++;
	}
	if (i < n && (p[i] == 'e' || p[i] == 'E')) {
		if (++i < n && (p[i] == '+' || p[i] == '-'))
			i++;
		if (i >= n || !isdigit((unsigned char)p[i]))
			return false;
		while (i < n && isdigit((unsigned char)p[i]))
			i++;
	}
	return i == n;
}

static bool parse_int64(const char *p, size_t n, int64_t *out)
{
	char buf[32];
	if (n == 0 || n >= sizeof buf)
		return false;
	memcpy(buf, p, n);
	buf[n] = '\0';
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

/* "2024-02-29 13:45:30+02" -> "2024-02-29T13:45:30+02:00"; "infinity" and
 * BC dates stay as printed. */
static int timestamp_iso(const char *p, size_t n, struct dstr *out)
{
	dstr_reset(out);
	int rc = dstr_append(out, p, n);
	if (rc)
		return rc;
	char *s = out->data;
	bool bc = n > 3 && memcmp(s + n - 3, " BC", 3) == 0;
	char *dash = memchr(s, '-', n);
	if (bc || !dash || dash == s)
		return CN_OK;
	/* the first space after the date part separates the time */
	char *sp = memchr(s, ' ', n);
	if (sp && sp > dash && sp + 1 < s + n && isdigit((unsigned char)sp[1]))
		*sp = 'T';
	/* a time zone offset of hours only gets its minutes */
	if (n >= 3 && (s[n - 3] == '+' || s[n - 3] == '-') && isdigit((unsigned char)s[n - 2]) &&
	    isdigit((unsigned char)s[n - 1]) && memchr(s, 'T', n))
		rc = dstr_append(out, ":00", 3);
	return rc;
}

/* bytea output: hex ("\x00ff") or, if a session chose it, escape format. */
static int bytea_decode(const char *p, size_t n, struct dstr *out)
{
	dstr_reset(out);
	if (dstr_append(out, "", 0))
		return CN_ENOMEM;
	if (n >= 2 && p[0] == '\\' && p[1] == 'x') {
		if ((n - 2) % 2)
			return CN_EINVAL;
		for (size_t i = 2; i < n; i += 2) {
			int hi = text_hex_digit((unsigned char)p[i]), lo = text_hex_digit((unsigned char)p[i + 1]);
			if (hi < 0 || lo < 0)
				return CN_EINVAL;
			char b = (char)(hi << 4 | lo);
			if (dstr_append(out, &b, 1))
				return CN_ENOMEM;
		}
		return CN_OK;
	}
	for (size_t i = 0; i < n; i++) {
		char b = p[i];
		if (p[i] == '\\' && i + 1 < n && p[i + 1] == '\\') {
			i++;
		} else if (p[i] == '\\' && i + 3 < n && p[i + 1] >= '0' && p[i + 1] <= '3') {
			b = (char)(((p[i + 1] - '0') << 6) | ((p[i + 2] - '0') << 3) | (p[i + 3] - '0'));
			i += 3;
		}
		if (dstr_append(out, &b, 1))
			return CN_ENOMEM;
	}
	return CN_OK;
}

/* ---- arrays: PostgreSQL's array text -> JSON ---- */

struct array_parser {
	const char *p, *end;
	char delim;
	enum pg_kind elem;
	struct dstr *out;
	struct dstr item; /* one element, unquoted */
	struct dstr conv; /* an element converted */
};

static void skip_space(struct array_parser *a)
{
	while (a->p < a->end && isspace((unsigned char)*a->p))
		a->p++;
}

static int emit_element(struct array_parser *a, bool quoted)
{
	const char *s = a->item.data ? a->item.data : "";
	size_t n = a->item.len;
	if (!quoted && n == 4 && strncasecmp(s, "NULL", 4) == 0)
		return dstr_append(a->out, "null", 4);
	switch (a->elem) {
	case PG_KIND_INT:
	case PG_KIND_NUMERIC:
		if (is_json_number(s, n))
			return dstr_append(a->out, s, n);
		return dstr_json(a->out, s, n); /* NaN, Infinity */
	case PG_KIND_BOOL:
		if (n == 1 && (s[0] == 't' || s[0] == 'f'))
			return dstr_puts(a->out, s[0] == 't' ? "true" : "false");
		return dstr_json(a->out, s, n);
	case PG_KIND_JSON:
		return dstr_append(a->out, s, n);
	case PG_KIND_TIMESTAMP: {
		int rc = timestamp_iso(s, n, &a->conv);
		return rc ? rc : dstr_json(a->out, a->conv.data, a->conv.len);
	}
	default:
		return dstr_json(a->out, s, n);
	}
}

static int parse_element(struct array_parser *a)
{
	dstr_reset(&a->item);
	if (dstr_append(&a->item, "", 0))
		return CN_ENOMEM;
	if (a->p < a->end && *a->p == '"') {
		a->p++;
		while (a->p < a->end && *a->p != '"') {
			if (*a->p == '\\' && a->p + 1 < a->end)
				a->p++;
			if (dstr_append(&a->item, a->p, 1))
				return CN_ENOMEM;
			a->p++;
		}
		if (a->p >= a->end)
			return CN_EINVAL;
		a->p++;
		skip_space(a);
		return emit_element(a, true);
	}
	const char *start = a->p;
	while (a->p < a->end && *a->p != a->delim && *a->p != '}') {
		if (*a->p == '\\' && a->p + 1 < a->end)
			a->p++;
		a->p++;
	}
	const char *stop = a->p;
	while (stop > start && isspace((unsigned char)stop[-1]))
		stop--;
	/* unquoted elements contain no quotes or braces; backslashes escape */
	for (const char *q = start; q < stop; q++) {
		if (*q == '\\' && q + 1 < stop)
			q++;
		if (dstr_append(&a->item, q, 1))
			return CN_ENOMEM;
	}
	return emit_element(a, false);
}

static int parse_array(struct array_parser *a, int depth)
{
	int rc;
	if (depth > ARRAY_MAX_DEPTH)
		return CN_EINVAL;
	skip_space(a);
	if (a->p >= a->end || *a->p != '{')
		return CN_EINVAL;
	a->p++;
	if ((rc = dstr_append(a->out, "[", 1)))
		return rc;
	skip_space(a);
	if (a->p < a->end && *a->p == '}') {
		a->p++;
		return dstr_append(a->out, "]", 1);
	}
	for (;;) {
		skip_space(a);
		if (a->p < a->end && *a->p == '{')
			rc = parse_array(a, depth + 1);
		else
			rc = parse_element(a);
		if (rc)
			return rc;
		skip_space(a);
		if (a->p >= a->end)
			return CN_EINVAL;
		if (*a->p == '}') {
			a->p++;
			return dstr_append(a->out, "]", 1);
		}
		if (*a->p != a->delim)
			return CN_EINVAL;
		a->p++;
		if ((rc = dstr_append(a->out, ",", 1)))
			return rc;
	}
}

static int array_to_json(const char *p, size_t n, enum pg_kind elem, char delim,
			 struct dstr *out)
{
	struct array_parser a = {.p = p, .end = p + n, .delim = delim ? delim : ',', .elem = elem,
				 .out = out};
	dstr_reset(out);
	/* "[0:2]={...}": explicit bounds come first when they are not 1 */
	if (n && p[0] == '[') {
		const char *eq = memchr(p, '=', n);
		if (!eq)
			return CN_EINVAL;
		a.p = eq + 1;
	}
	int rc = parse_array(&a, 1);
	skip_space(&a);
	if (rc == CN_OK && a.p != a.end)
		rc = CN_EINVAL;
	dstr_free(&a.item);
	dstr_free(&a.conv);
	return rc;
}

int pg_cell_convert(enum pg_kind kind, enum pg_kind elem_kind, char delim, const char *text,
		    size_t len, struct dstr *scratch, struct cn_value *out)
{
	int rc;
	switch (kind) {
	case PG_KIND_INT:
		if (parse_int64(text, len, &out->u.i)) {
			out->kind = CN_VAL_INT;
			return CN_OK;
		}
		out->kind = CN_VAL_NUMERIC; /* cannot happen for int2/4/8 and oid */
		break;
	case PG_KIND_NUMERIC:
		out->kind = CN_VAL_NUMERIC;
		break;
	case PG_KIND_BOOL:
		out->kind = CN_VAL_BOOL;
		out->u.b = len > 0 && text[0] == 't';
		return CN_OK;
	case PG_KIND_JSON:
		out->kind = CN_VAL_JSON;
		break;
	case PG_KIND_BYTES:
		if ((rc = bytea_decode(text, len, scratch)))
			return rc;
		out->kind = CN_VAL_BYTES;
		out->u.s.ptr = scratch->data;
		out->u.s.len = scratch->len;
		return CN_OK;
	case PG_KIND_TIMESTAMP:
		if ((rc = timestamp_iso(text, len, scratch)))
			return rc;
		out->kind = CN_VAL_TEXT;
		out->u.s.ptr = scratch->data;
		out->u.s.len = scratch->len;
		return CN_OK;
	case PG_KIND_ARRAY:
		rc = array_to_json(text, len, elem_kind, delim, scratch);
		if (rc == CN_OK) {
			out->kind = CN_VAL_JSON;
			out->u.s.ptr = scratch->data;
			out->u.s.len = scratch->len;
			return CN_OK;
		}
		if (rc != CN_EINVAL)
			return rc;
		out->kind = CN_VAL_TEXT; /* an array text we cannot read: keep it as text */
		break;
	default:
		out->kind = CN_VAL_TEXT;
		break;
	}
	out->u.s.ptr = text;
	out->u.s.len = len;
	return CN_OK;
}
