/*
 * result_writer.c - streams a driver's result into the response body with
 * the row and byte caps (see result_writer.h for the shape and the value
 * mapping).
 *
 * Layout while streaming: three bounded buffers hold the inside of the
 * "columns" array, of the "column_types" array and of the "rows" array.
 * Everything else in the body is fixed text plus two numbers and a boolean,
 * whose longest forms are reserved up front (FIXED_LEN), so the buffers
 * together get max_bytes - FIXED_LEN bytes and finish can never overflow.
 *
 * Row cap rule: max_rows rows are kept. When the cells of one more row
 * arrive, that row is discarded, truncated becomes true and its row_end
 * answers CN_SINK_FULL. So truncated is true only when more rows existed;
 * a result of exactly max_rows rows is not truncated. max_rows 0 keeps no
 * row (any row sets truncated).
 *
 * Byte cap rule: a row that does not fit in what is left is discarded,
 * truncated becomes true and its row_end answers CN_SINK_FULL. When even
 * the column names and types do not fit, every column is dropped: the body
 * has empty columns, column_types and rows, and truncated true. Only when
 * max_bytes cannot hold even that (about 110 bytes) does finish answer
 * CN_ETOOBIG.
 */
#include "result_writer.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_COLUMNS "{\"result\":{\"columns\":["
#define HEAD_TYPES "],\"column_types\":["
#define HEAD_ROWS "],\"rows\":["
#define TAIL_COUNT "],\"row_count\":"
#define TAIL_TRUNCATED ",\"truncated\":"
#define TAIL_TIME ",\"execution_time_ms\":"
#define TAIL_END "}}"
#define LIT_LEN(s) (sizeof(s) - 1)
#define U64_MAX_DIGITS 20  /* 18446744073709551615 */
#define LONG_MAX_DIGITS 20 /* -9223372036854775808 */
#define BOOL_MAX_LEN 5	   /* false */
#define FIXED_LEN                                                                                            \
	(LIT_LEN(HEAD_COLUMNS) + LIT_LEN(HEAD_TYPES) + LIT_LEN(HEAD_ROWS) + LIT_LEN(TAIL_COUNT) +            \
	 U64_MAX_DIGITS + LIT_LEN(TAIL_TRUNCATED) + BOOL_MAX_LEN + LIT_LEN(TAIL_TIME) + LONG_MAX_DIGITS +    \
	 LIT_LEN(TAIL_END))

/* Deepest nesting of an embedded JSON cell; deeper documents become strings. */
#define JSON_MAX_DEPTH 512

struct result_writer {
	struct result_writer_opts opts;
	struct cn_result_sink sink;
	struct buf columns; /* "\"a\",\"b\"": inside the columns array */
	struct buf types;   /* inside the column_types array */
	struct buf rows;    /* "[..],[..]": inside the rows array */
	size_t budget;	    /* bytes for the three buffers together */
	bool *visible;	    /* per driver column: written to the body */
	size_t ncols;	    /* columns the driver announced */
	size_t cols_cap;
	size_t nvisible;
	bool columns_closed;  /* the first cell or row_end came */
	bool columns_dropped; /* the names did not fit: no column is shown */
	size_t cell;	      /* cells received in the current row */
	size_t row_start;     /* rows.len before the current row */
	size_t row_cells;     /* visible cells written in the current row */
	bool row_dropped;     /* the current row is not kept */
	bool full;	      /* no more rows are kept */
	bool truncated;
	bool finished;
	uint64_t row_count;
	int error; /* first hard error (CN_ENOMEM, CN_EINVAL): sticky */
};

/* ---- JSON numbers and documents ------------------------------------- */

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* Length of the JSON number at the start of s (-?(0|[1-9]\d*)(\.\d+)?
 * ([eE][+-]?\d+)?), or 0 when s does not start with a well-formed one. */
static size_t json_number_len(const unsigned char *s, size_t n)
{
	size_t i = 0;
	if (i < n && s[i] == '-')
		i++;
	if (i >= n || !is_digit(s[i]))
		return 0;
	if (s[i++] != '0')
		while (i < n && is_digit(s[i]))
			i++;
	if (i < n && s[i] == '.') {
		if (++i >= n || !is_digit(s[i]))
			return 0;
		while (i < n && is_digit(s[i]))
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		if (++i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || !is_digit(s[i]))
			return 0;
		while (i < n && is_digit(s[i]))
			i++;
	}
	return i;
}

struct jscan {
	const unsigned char *s;
	size_t i, n;
};

static void scan_ws(struct jscan *j)
{
	while (j->i < j->n &&
	       (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' || j->s[j->i] == '\r'))
		j->i++;
}

/* Four hex digits at j->i into *cp. */
static bool scan_hex4(struct jscan *j, unsigned *cp)
{
	unsigned v = 0;
	if (j->n - j->i < 4)
		return false;
	for (int k = 0; k < 4; k++) {
		unsigned char c = j->s[j->i++];
		unsigned d;
		if (is_digit(c))
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10u;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10u;
		else
			return false;
		v = v << 4 | d;
	}
	*cp = v;
	return true;
}

/* After "\u": a code point, with surrogates only as a proper pair. */
static bool scan_unicode_escape(struct jscan *j)
{
	unsigned cp, low;
	if (!scan_hex4(j, &cp))
		return false;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return false;
	if (cp < 0xd800 || cp > 0xdbff)
		return true;
	if (j->n - j->i < 2 || j->s[j->i] != '\\' || j->s[j->i + 1] != 'u')
		return false;
	j->i += 2;
	return scan_hex4(j, &low) && low >= 0xdc00 && low <= 0xdfff;
}

/* A string at j->i (which is '"'): no raw control characters, valid
 * escapes, valid UTF-8. */
static bool scan_string(struct jscan *j)
{
	j->i++;
	while (j->i < j->n) {
		unsigned char c = j->s[j->i];
		if (c == '"') {
			j->i++;
			return true;
		}
		if (c < 0x20)
			return false;
		if (c == '\\') {
			if (++j->i >= j->n)
				return false;
			c = j->s[j->i++];
			if (c == 'u') {
				if (!scan_unicode_escape(j))
					return false;
			} else if (!strchr("\"\\/bfnrt", c) || c == '\0') {
				return false;
			}
		} else if (c >= 0x80) {
			size_t len = utf8_seq_len(j->s + j->i, j->n - j->i);
			if (len == 0)
				return false;
			j->i += len;
		} else {
			j->i++;
		}
	}
	return false;
}

static bool scan_literal(struct jscan *j, const char *lit)
{
	size_t len = strlen(lit);
	if (j->n - j->i < len || memcmp(j->s + j->i, lit, len) != 0)
		return false;
	j->i += len;
	return true;
}

static bool scan_scalar(struct jscan *j)
{
	switch (j->s[j->i]) {
	case '"': return scan_string(j);
	case 't': return scan_literal(j, "true");
	case 'f': return scan_literal(j, "false");
	case 'n': return scan_literal(j, "null");
	default: {
		size_t len = json_number_len(j->s + j->i, j->n - j->i);
		j->i += len;
		return len > 0;
	}
	}
}

/* An object key and its colon: ws string ws ':'. */
static bool scan_key(struct jscan *j)
{
	scan_ws(j);
	if (j->i >= j->n || j->s[j->i] != '"' || !scan_string(j))
		return false;
	scan_ws(j);
	if (j->i >= j->n || j->s[j->i] != ':')
		return false;
	j->i++;
	return true;
}

/* After a value inside containers: commas, closing brackets. Returns 1 when
 * another value follows, 0 at the end of the document, -1 when invalid. */
static int scan_after_value(struct jscan *j, char *stack, size_t *depth)
{
	for (;;) {
		scan_ws(j);
		if (*depth == 0)
			return j->i == j->n ? 0 : -1;
		if (j->i >= j->n)
			return -1;
		char top = stack[*depth - 1];
		unsigned char c = j->s[j->i++];
		if (c == ',')
			return top == '{' && !scan_key(j) ? -1 : 1;
		if (c != (top == '{' ? '}' : ']'))
			return -1;
		(*depth)--;
	}
}

/* Strict RFC 8259 check of a whole document (cJSON is more lenient: it
 * takes "01", "1.", raw control characters and invalid UTF-8 in strings,
 * any of which would make the body invalid for a strict reader). */
static bool json_text_valid(const char *text, size_t n)
{
	struct jscan j = {(const unsigned char *)text, 0, n};
	char stack[JSON_MAX_DEPTH];
	size_t depth = 0;
	for (;;) {
		scan_ws(&j);
		if (j.i >= j.n)
			return false;
		unsigned char c = j.s[j.i];
		if (c == '{' || c == '[') {
			if (depth == JSON_MAX_DEPTH)
				return false;
			stack[depth++] = (char)c;
			j.i++;
			scan_ws(&j);
			if (j.i < j.n && j.s[j.i] == (c == '{' ? '}' : ']')) {
				j.i++;
				depth--;
			} else if (c == '{' && !scan_key(&j)) {
				return false;
			} else {
				continue; /* the first value inside */
			}
		} else if (!scan_scalar(&j)) {
			return false;
		}
		int next = scan_after_value(&j, stack, &depth);
		if (next <= 0)
			return next == 0;
	}
}

/* ---- values ---------------------------------------------------------- */

int base64_encode(struct buf *b, const unsigned char *in, size_t len)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	if (len / 3 >= SIZE_MAX / 4 - 1 || ((len + 2) / 3) * 4 > b->max - b->len)
		return CN_ETOOBIG;
	size_t start = b->len;
	char chunk[256];
	size_t k = 0;
	int rc = CN_OK;
	for (size_t i = 0; i < len && rc == CN_OK; i += 3) {
		size_t left = len - i;
		uint32_t v = (uint32_t)in[i] << 16;
		if (left > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (left > 2)
			v |= in[i + 2];
		chunk[k++] = alphabet[v >> 18 & 63];
		chunk[k++] = alphabet[v >> 12 & 63];
		chunk[k++] = left > 1 ? alphabet[v >> 6 & 63] : '=';
		chunk[k++] = left > 2 ? alphabet[v & 63] : '=';
		if (k == sizeof chunk || left <= 3) {
			rc = buf_append(b, chunk, k);
			k = 0;
		}
	}
	if (rc)
		buf_truncate(b, start);
	return rc;
}

/* The shortest of %.15g, %.16g, %.17g that reads back as d; NaN and the
 * infinities as strings. */
static int write_double(struct buf *b, double d)
{
	if (isnan(d))
		return buf_puts(b, "\"NaN\"");
	if (isinf(d))
		return buf_puts(b, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	char tmp[40];
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	size_t n = strlen(tmp);
	/* Only a locale with another decimal point could break this. */
	if (json_number_len((const unsigned char *)tmp, n) != n)
		return buf_json_string(b, tmp, n);
	return buf_append(b, tmp, n);
}

static bool is_json_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A JSON cell: embedded (without surrounding whitespace) when it is a
 * valid document, else written as a string. */
static int write_json(struct buf *b, const char *s, size_t n)
{
	size_t lo = 0, hi = n;
	while (lo < hi && is_json_ws(s[lo]))
		lo++;
	while (hi > lo && is_json_ws(s[hi - 1]))
		hi--;
	/* Neither form can fit: do not spend time validating. */
	if (hi - lo > b->max - b->len)
		return CN_ETOOBIG;
	if (json_text_valid(s + lo, hi - lo))
		return buf_append(b, s + lo, hi - lo);
	return buf_json_string(b, s, n);
}

static int write_value(struct buf *b, const struct cn_value *v)
{
	const char *s = v->u.s.ptr;
	size_t n = s ? v->u.s.len : 0;
	switch (v->kind) {
	case CN_VAL_NULL: return buf_puts(b, "null");
	case CN_VAL_BOOL: return buf_puts(b, v->u.b ? "true" : "false");
	case CN_VAL_INT: return buf_put_i64(b, v->u.i);
	case CN_VAL_DOUBLE: return write_double(b, v->u.d);
	case CN_VAL_NUMERIC:
		if (n > 0 && json_number_len((const unsigned char *)s, n) == n)
			return buf_append(b, s, n);
		return buf_json_string(b, s, n);
	case CN_VAL_TEXT: return buf_json_string(b, s, n);
	case CN_VAL_JSON: return write_json(b, s, n);
	case CN_VAL_BYTES: {
		size_t start = b->len;
		int rc = buf_append(b, "\"", 1);
		if (rc == CN_OK)
			rc = base64_encode(b, (const unsigned char *)s, n);
		if (rc == CN_OK)
			rc = buf_append(b, "\"", 1);
		if (rc)
			buf_truncate(b, start);
		return rc;
	}
	}
	return CN_EINVAL;
}

/* ---- the sink -------------------------------------------------------- */

static int writer_fail(struct result_writer *w, int rc)
{
	if (!w->error)
		w->error = rc;
	return w->error;
}

static bool column_hidden(const struct result_writer *w, const struct cn_column_info *col)
{
	if (!w->opts.is_hidden || !col->origin_table)
		return false;
	void *ctx = w->opts.hidden_ctx;
	if (w->opts.is_hidden(ctx, col->origin_schema, col->origin_table, NULL))
		return true;
	return col->origin_column &&
	       w->opts.is_hidden(ctx, col->origin_schema, col->origin_table, col->origin_column);
}

/* The names did not fit: show no column at all (and so no row). */
static void writer_drop_columns(struct result_writer *w)
{
	buf_truncate(&w->columns, 0);
	buf_truncate(&w->types, 0);
	for (size_t i = 0; i < w->ncols; i++)
		w->visible[i] = false;
	w->nvisible = 0;
	w->columns_dropped = true;
	w->full = true;
	w->truncated = true;
}

/* Append one visible column's name and type. */
static int writer_add_column(struct result_writer *w, const struct cn_column_info *col)
{
	const char *sep = w->nvisible ? "," : "";
	const char *name = col->name ? col->name : "";
	int rc = buf_puts(&w->columns, sep);
	if (rc == CN_OK)
		rc = buf_json_string(&w->columns, name, strlen(name));
	if (rc == CN_OK)
		rc = buf_puts(&w->types, sep);
	if (rc == CN_OK)
		rc = col->type ? buf_json_string(&w->types, col->type, strlen(col->type))
			       : buf_puts(&w->types, "null");
	if (rc == CN_OK && w->columns.len + w->types.len > w->budget)
		rc = CN_ETOOBIG;
	return rc;
}

static int sink_column(void *ctx, const struct cn_column_info *col)
{
	struct result_writer *w = ctx;
	if (w->error)
		return w->error;
	if (w->columns_closed || !col)
		return writer_fail(w, CN_EINVAL);
	if (w->ncols == w->cols_cap) {
		size_t cap = w->cols_cap ? w->cols_cap * 2 : 16;
		bool *v = realloc(w->visible, cap * sizeof *v);
		if (!v)
			return writer_fail(w, CN_ENOMEM);
		w->visible = v;
		w->cols_cap = cap;
	}
	size_t idx = w->ncols++;
	w->visible[idx] = false;
	if (w->columns_dropped || column_hidden(w, col))
		return CN_OK;
	int rc = writer_add_column(w, col);
	if (rc == CN_ENOMEM)
		return writer_fail(w, rc);
	if (rc) {
		writer_drop_columns(w);
		return CN_OK;
	}
	w->visible[idx] = true;
	w->nvisible++;
	return CN_OK;
}

/* The first cell or row_end: no more columns; rows get what is left. */
static void writer_close_columns(struct result_writer *w)
{
	if (w->columns_closed)
		return;
	w->columns_closed = true;
	w->rows.max = w->budget - w->columns.len - w->types.len;
}

/* The current row does not fit: forget it and stop. */
static void writer_row_overflow(struct result_writer *w)
{
	buf_truncate(&w->rows, w->row_start);
	w->row_dropped = true;
	w->full = true;
	w->truncated = true;
}

static int writer_row_begin(struct result_writer *w)
{
	w->row_cells = 0;
	w->row_dropped = w->full;
	if (!w->full && w->row_count >= w->opts.max_rows) {
		/* One row more than the cap exists. */
		w->truncated = true;
		w->full = true;
		w->row_dropped = true;
	}
	if (w->row_dropped)
		return CN_OK;
	w->row_start = w->rows.len;
	int rc = buf_puts(&w->rows, w->row_count ? ",[" : "[");
	if (rc == CN_ETOOBIG)
		writer_row_overflow(w);
	else if (rc)
		return writer_fail(w, rc);
	return CN_OK;
}

static int sink_cell(void *ctx, const struct cn_value *value)
{
	struct result_writer *w = ctx;
	if (w->error)
		return w->error;
	writer_close_columns(w);
	if (w->cell >= w->ncols || !value)
		return writer_fail(w, CN_EINVAL); /* more cells than columns */
	size_t idx = w->cell++;
	if (idx == 0) {
		int rc = writer_row_begin(w);
		if (rc)
			return rc;
	}
	if (!w->visible[idx] || w->row_dropped)
		return CN_OK;
	int rc = w->row_cells ? buf_puts(&w->rows, ",") : CN_OK;
	if (rc == CN_OK)
		rc = write_value(&w->rows, value);
	if (rc == CN_ETOOBIG) {
		writer_row_overflow(w);
		return CN_OK;
	}
	if (rc)
		return writer_fail(w, rc);
	w->row_cells++;
	return CN_OK;
}

static int sink_row_end(void *ctx)
{
	struct result_writer *w = ctx;
	if (w->error)
		return w->error;
	writer_close_columns(w);
	if (w->cell != w->ncols)
		return writer_fail(w, CN_EINVAL); /* fewer cells than columns */
	if (w->ncols == 0) {
		int rc = writer_row_begin(w);
		if (rc)
			return rc;
	}
	w->cell = 0;
	if (w->row_dropped)
		return CN_SINK_FULL;
	int rc = buf_puts(&w->rows, "]");
	if (rc == CN_ETOOBIG) {
		writer_row_overflow(w);
		return CN_SINK_FULL;
	}
	if (rc)
		return writer_fail(w, rc);
	w->row_count++;
	return CN_OK;
}

/* ---- life cycle ------------------------------------------------------ */

struct result_writer *result_writer_new(const struct result_writer_opts *opts)
{
	if (!opts)
		return NULL;
	struct result_writer *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->opts = *opts;
	w->budget = opts->max_bytes > FIXED_LEN ? opts->max_bytes - FIXED_LEN : 0;
	buf_init(&w->columns, w->budget);
	buf_init(&w->types, w->budget);
	buf_init(&w->rows, w->budget);
	w->sink.ctx = w;
	w->sink.column = sink_column;
	w->sink.cell = sink_cell;
	w->sink.row_end = sink_row_end;
	return w;
}

void result_writer_free(struct result_writer *w)
{
	if (!w)
		return;
	buf_free(&w->columns);
	buf_free(&w->types);
	buf_free(&w->rows);
	free(w->visible);
	free(w);
}

const struct cn_result_sink *result_writer_sink(struct result_writer *w)
{
	return &w->sink;
}

int result_writer_finish(struct result_writer *w, long execution_time_ms, char **body, size_t *len)
{
	if (w->finished)
		return CN_EINVAL;
	w->finished = true;
	if (w->error)
		return w->error;
	if (w->cell != 0) {
		/* The driver stopped inside a row: that row is not shown. */
		if (!w->row_dropped)
			buf_truncate(&w->rows, w->row_start);
		w->cell = 0;
	}
	struct buf out;
	buf_init(&out, w->opts.max_bytes);
	int rc = buf_puts(&out, HEAD_COLUMNS);
	if (rc == CN_OK)
		rc = buf_append(&out, w->columns.data, w->columns.len);
	if (rc == CN_OK)
		rc = buf_puts(&out, HEAD_TYPES);
	if (rc == CN_OK)
		rc = buf_append(&out, w->types.data, w->types.len);
	if (rc == CN_OK)
		rc = buf_puts(&out, HEAD_ROWS);
	if (rc == CN_OK)
		rc = buf_append(&out, w->rows.data, w->rows.len);
	if (rc == CN_OK)
		rc = buf_printf(&out, TAIL_COUNT "%" PRIu64 TAIL_TRUNCATED "%s" TAIL_TIME "%ld" TAIL_END,
				w->row_count, w->truncated ? "true" : "false",
				execution_time_ms < 0 ? 0L : execution_time_ms);
	if (rc == CN_OK) {
		*body = buf_steal(&out, len);
		if (!*body)
			rc = CN_ENOMEM;
	}
	buf_free(&out);
	return rc;
}

uint64_t result_writer_row_count(const struct result_writer *w)
{
	return w->row_count;
}

bool result_writer_truncated(const struct result_writer *w)
{
	return w->truncated;
}
