/*
 * my_types.c - see my_types.h.
 */
#include "my_types.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BINARY_CHARSET 63
#define INITIAL_BUF 256

/* MariaDB marks JSON columns (text) in the extended metadata it sends. */
static bool field_attr_is(const MYSQL_FIELD *f, enum mariadb_field_attr_t which, const char *want)
{
	MARIADB_CONST_STRING a = {0};
	if (mariadb_field_attr(&a, f, which) || !a.str)
		return false;
	return a.length == strlen(want) && strncmp(a.str, want, a.length) == 0;
}

static void extended_name(const MYSQL_FIELD *f, char *buf, size_t size)
{
	MARIADB_CONST_STRING a = {0};
	buf[0] = '\0';
	if (!mariadb_field_attr(&a, f, MARIADB_FIELD_ATTR_DATA_TYPE_NAME) && a.str && a.length)
		snprintf(buf, size, "%.*s", (int)a.length, a.str);
}

static const char *int_name(enum enum_field_types t)
{
	switch (t) {
	case MYSQL_TYPE_TINY: return "tinyint";
	case MYSQL_TYPE_SHORT: return "smallint";
	case MYSQL_TYPE_INT24: return "mediumint";
	case MYSQL_TYPE_LONG: return "int";
	case MYSQL_TYPE_YEAR: return "year";
	default: return "bigint";
	}
}

static int set_buffer(struct my_col *col, MYSQL_BIND *bind, enum enum_field_types as)
{
	if (!(col->buf = malloc(INITIAL_BUF)))
		return CN_ENOMEM;
	col->cap = INITIAL_BUF - 1;
	bind->buffer_type = as;
	bind->buffer = col->buf;
	bind->buffer_length = col->cap;
	return CN_OK;
}

int my_col_setup(struct my_col *col, const MYSQL_FIELD *f, MYSQL_BIND *bind)
{
	bool binary = f->charsetnr == BINARY_CHARSET;
	char ext[32];
	extended_name(f, ext, sizeof ext);
	memset(col, 0, sizeof *col);
	col->is_unsigned = (f->flags & UNSIGNED_FLAG) != 0;
	col->decimals = f->decimals > 6 ? 6 : f->decimals;
	bind->length = &col->len;
	bind->is_null = &col->isnull;
	bind->error = &col->error;
	switch (f->type) {
	case MYSQL_TYPE_TINY:
	case MYSQL_TYPE_SHORT:
	case MYSQL_TYPE_INT24:
	case MYSQL_TYPE_LONG:
	case MYSQL_TYPE_LONGLONG:
	case MYSQL_TYPE_YEAR:
		col->kind = MY_K_INT;
		snprintf(col->type, sizeof col->type, "%s%s", int_name(f->type),
			 col->is_unsigned && f->type != MYSQL_TYPE_YEAR ? " unsigned" : "");
		bind->buffer_type = MYSQL_TYPE_LONGLONG;
		bind->buffer = &col->num.i;
		bind->is_unsigned = col->is_unsigned;
		return CN_OK;
	case MYSQL_TYPE_FLOAT:
		col->kind = MY_K_FLOAT;
		snprintf(col->type, sizeof col->type, "float");
		bind->buffer_type = MYSQL_TYPE_FLOAT;
		bind->buffer = &col->num.f;
		return CN_OK;
	case MYSQL_TYPE_DOUBLE:
		col->kind = MY_K_DOUBLE;
		snprintf(col->type, sizeof col->type, "double");
		bind->buffer_type = MYSQL_TYPE_DOUBLE;
		bind->buffer = &col->num.d;
		return CN_OK;
	case MYSQL_TYPE_DATE:
	case MYSQL_TYPE_NEWDATE:
	case MYSQL_TYPE_DATETIME:
	case MYSQL_TYPE_TIMESTAMP:
	case MYSQL_TYPE_TIME:
		col->kind = f->type == MYSQL_TYPE_TIME        ? MY_K_TIME
			    : f->type == MYSQL_TYPE_TIMESTAMP ? MY_K_TIMESTAMP
			    : f->type == MYSQL_TYPE_DATETIME  ? MY_K_DATETIME
							      : MY_K_DATE;
		snprintf(col->type, sizeof col->type, "%s",
			 col->kind == MY_K_TIME ? "time" : col->kind == MY_K_TIMESTAMP ? "timestamp"
			 : col->kind == MY_K_DATETIME ? "datetime" : "date");
		bind->buffer_type = f->type == MYSQL_TYPE_NEWDATE ? MYSQL_TYPE_DATE : f->type;
		bind->buffer = &col->num.t;
		return CN_OK;
	case MYSQL_TYPE_BIT:
		col->kind = MY_K_BIT;
		snprintf(col->type, sizeof col->type, "bit");
		return set_buffer(col, bind, MYSQL_TYPE_BLOB);
	case MYSQL_TYPE_DECIMAL:
	case MYSQL_TYPE_NEWDECIMAL:
		col->kind = MY_K_NUMERIC;
		snprintf(col->type, sizeof col->type, "decimal");
		return set_buffer(col, bind, MYSQL_TYPE_STRING);
	case MYSQL_TYPE_JSON:
		col->kind = MY_K_JSON;
		snprintf(col->type, sizeof col->type, "json");
		return set_buffer(col, bind, MYSQL_TYPE_STRING);
	case MYSQL_TYPE_GEOMETRY:
		col->kind = MY_K_BYTES;
		snprintf(col->type, sizeof col->type, "%s", ext[0] ? ext : "geometry");
		return set_buffer(col, bind, MYSQL_TYPE_BLOB);
	case MYSQL_TYPE_NULL:
		col->kind = MY_K_TEXT;
		snprintf(col->type, sizeof col->type, "null");
		return set_buffer(col, bind, MYSQL_TYPE_STRING);
	default:
		break;
	}
	/* strings, blobs, enums, sets and the types MariaDB builds on them */
	if (field_attr_is(f, MARIADB_FIELD_ATTR_FORMAT_NAME, "json")) {
		col->kind = MY_K_JSON;
		snprintf(col->type, sizeof col->type, "json");
	} else if (f->flags & ENUM_FLAG) {
		col->kind = MY_K_TEXT;
		snprintf(col->type, sizeof col->type, "enum");
	} else if (f->flags & SET_FLAG) {
		col->kind = MY_K_TEXT;
		snprintf(col->type, sizeof col->type, "set");
	} else if (ext[0]) {
		col->kind = binary ? MY_K_BYTES : MY_K_TEXT;
		snprintf(col->type, sizeof col->type, "%s", ext);
	} else {
		bool blob = f->type == MYSQL_TYPE_BLOB || f->type == MYSQL_TYPE_TINY_BLOB ||
			    f->type == MYSQL_TYPE_MEDIUM_BLOB || f->type == MYSQL_TYPE_LONG_BLOB;
		bool fixed = f->type == MYSQL_TYPE_STRING;
		col->kind = binary ? MY_K_BYTES : MY_K_TEXT;
		snprintf(col->type, sizeof col->type, "%s",
			 binary ? (blob ? "blob" : fixed ? "binary" : "varbinary")
				: (blob ? "text" : fixed ? "char" : "varchar"));
	}
	return set_buffer(col, bind, col->kind == MY_K_BYTES ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING);
}

void my_col_free(struct my_col *col)
{
	free(col->buf);
	col->buf = NULL;
}

int my_col_refetch(struct my_col *col, MYSQL_BIND *bind, MYSQL_STMT *st, unsigned i, bool *rebind)
{
	if (!col->buf || col->isnull || col->len <= col->cap)
		return CN_OK;
	unsigned long cap = col->cap;
	while (cap < col->len)
		cap = cap * 2 + 1;
	char *b = realloc(col->buf, cap + 1);
	if (!b)
		return CN_ENOMEM;
	col->buf = b;
	col->cap = cap;
	bind->buffer = b;
	bind->buffer_length = cap;
	*rebind = true;
	return mysql_stmt_fetch_column(st, bind, i, 0) ? CN_EQUERY : CN_OK;
}

/* The shortest text that reads back as the same float. */
static void float_text(float f, char *buf, size_t size)
{
	for (int p = 1; p <= 9; p++) {
		snprintf(buf, size, "%.*g", p, (double)f);
		if (strtof(buf, NULL) == f)
			return;
	}
}

static void time_text(const struct my_col *col, char *buf, size_t size)
{
	const MYSQL_TIME *t = &col->num.t;
	int n;
	if (col->kind == MY_K_DATE) {
		snprintf(buf, size, "%04u-%02u-%02u", t->year, t->month, t->day);
		return;
	}
	if (col->kind == MY_K_TIME)
		n = snprintf(buf, size, "%s%02u:%02u:%02u", t->neg ? "-" : "", t->day * 24 + t->hour,
			     t->minute, t->second);
	else
		n = snprintf(buf, size, "%04u-%02u-%02uT%02u:%02u:%02u", t->year, t->month, t->day,
			     t->hour, t->minute, t->second);
	if (n < 0 || (size_t)n >= size)
		return;
	if (col->decimals) {
		char frac[8];
		snprintf(frac, sizeof frac, "%06lu", t->second_part % 1000000);
		n += snprintf(buf + n, size - (size_t)n, ".%.*s", (int)col->decimals, frac);
	}
	if (col->kind == MY_K_TIMESTAMP && (size_t)n + 1 < size)
		snprintf(buf + n, size - (size_t)n, "Z");
}

static void text_value(struct cn_value *v, enum cn_value_kind kind, const char *p, size_t len)
{
	v->kind = kind;
	v->u.s.ptr = p;
	v->u.s.len = len;
}

static void unsigned_value(struct my_col *col, struct cn_value *v, unsigned long long u)
{
	if (u <= (unsigned long long)INT64_MAX) {
		v->kind = CN_VAL_INT;
		v->u.i = (int64_t)u;
		return;
	}
	int n = snprintf(col->text, sizeof col->text, "%llu", u);
	text_value(v, CN_VAL_NUMERIC, col->text, (size_t)n);
}

void my_col_value(struct my_col *col, struct cn_value *v)
{
	size_t len = col->len < col->cap ? col->len : col->cap;
	if (col->isnull) {
		v->kind = CN_VAL_NULL;
		return;
	}
	switch (col->kind) {
	case MY_K_INT:
		if (col->is_unsigned) {
			unsigned_value(col, v, (unsigned long long)col->num.i);
		} else {
			v->kind = CN_VAL_INT;
			v->u.i = col->num.i;
		}
		return;
	case MY_K_FLOAT:
		float_text(col->num.f, col->text, sizeof col->text);
		text_value(v, CN_VAL_NUMERIC, col->text, strlen(col->text));
		return;
	case MY_K_DOUBLE:
		v->kind = CN_VAL_DOUBLE;
		v->u.d = col->num.d;
		return;
	case MY_K_DATE:
	case MY_K_DATETIME:
	case MY_K_TIMESTAMP:
	case MY_K_TIME:
		time_text(col, col->text, sizeof col->text);
		text_value(v, CN_VAL_TEXT, col->text, strlen(col->text));
		return;
	case MY_K_BIT: {
		unsigned long long u = 0;
		for (size_t i = 0; i < len && i < 8; i++)
			u = (u << 8) | (unsigned char)col->buf[i];
		unsigned_value(col, v, u);
		return;
	}
	case MY_K_NUMERIC:
		text_value(v, CN_VAL_NUMERIC, col->buf, len);
		return;
	case MY_K_JSON:
		text_value(v, CN_VAL_JSON, col->buf, len);
		return;
	case MY_K_BYTES:
		text_value(v, CN_VAL_BYTES, col->buf, len);
		return;
	case MY_K_TEXT:
		text_value(v, CN_VAL_TEXT, col->buf, len);
		return;
	}
}
