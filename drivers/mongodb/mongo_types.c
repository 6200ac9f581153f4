/*
 * mongo_types.c - BSON values as cells and documents as JSON (see
 * mongo_types.h).
 */
#include "mongo_types.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mongo_guard.h" /* MG_MAX_PATH */

/* ---- names and formats ---- */

const char *mt_type_name(bson_type_t t)
{
	switch (t) {
	case BSON_TYPE_DOUBLE: return "double";
	case BSON_TYPE_UTF8: return "string";
	case BSON_TYPE_DOCUMENT: return "object";
	case BSON_TYPE_ARRAY: return "array";
	case BSON_TYPE_BINARY: return "binData";
	case BSON_TYPE_UNDEFINED: return "undefined";
	case BSON_TYPE_OID: return "objectId";
	case BSON_TYPE_BOOL: return "bool";
	case BSON_TYPE_DATE_TIME: return "date";
	case BSON_TYPE_NULL: return "null";
	case BSON_TYPE_REGEX: return "regex";
	case BSON_TYPE_DBPOINTER: return "dbPointer";
	case BSON_TYPE_CODE: return "javascript";
	case BSON_TYPE_SYMBOL: return "symbol";
	case BSON_TYPE_CODEWSCOPE: return "javascriptWithScope";
	case BSON_TYPE_INT32: return "int";
	case BSON_TYPE_TIMESTAMP: return "timestamp";
	case BSON_TYPE_INT64: return "long";
	case BSON_TYPE_DECIMAL128: return "decimal";
	case BSON_TYPE_MINKEY: return "minKey";
	case BSON_TYPE_MAXKEY: return "maxKey";
	default: return "unknown";
	}
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void mt_format_date(int64_t ms, char *buf, size_t size)
{
	int64_t msec = ms % 1000, secs = ms / 1000;
	if (msec < 0) {
		msec += 1000;
		secs--;
	}
	int64_t days = secs / 86400, rem = secs % 86400;
	if (rem < 0) {
		rem += 86400;
		days--;
	}
	int64_t y;
	unsigned m, d;
	civil_from_days(days, &y, &m, &d);
	if (y >= 0 && y <= 9999)
		snprintf(buf, size, "%04" PRId64 "-%02u-%02uT%02d:%02d:%02d.%03dZ", y, m, d,
			 (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), (int)msec);
	else
		snprintf(buf, size, "%c%06" PRId64 "-%02u-%02uT%02d:%02d:%02d.%03dZ", y < 0 ? '-' : '+',
			 y < 0 ? -y : y, m, d, (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60),
			 (int)msec);
}

/* The shortest of %.15g, %.16g, %.17g that reads back as d. */
static void format_double(double d, char *buf, size_t size)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, size, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			return;
	}
}

static bool json_number(const char *s)
{
	size_t i = 0;
	if (s[i] == '-')
		i++;
	if (s[i] < '0' || s[i] > '9')
		return false;
	if (s[i] == '0')
		i++;
	else
		while (s[i] >= '0' && s[i] <= '9')
			i++;
	if (s[i] == '.') {
		if (s[++i] < '0' || s[i] > '9')
			return false;
		while (s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (s[i] == 'e' || s[i] == 'E') {
		i++;
		if (s[i] == '+' || s[i] == '-')
			i++;
		if (s[i] < '0' || s[i] > '9')
			return false;
		while (s[i] >= '0' && s[i] <= '9')
			i++;
	}
	return s[i] == '\0';
}

static int base64(struct dstr *b, const uint8_t *in, size_t len)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	int rc = CN_OK;
	for (size_t i = 0; rc == CN_OK && i < len; i += 3) {
		size_t left = len - i;
		uint32_t v = (uint32_t)in[i] << 16;
		if (left > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (left > 2)
			v |= in[i + 2];
		char q[4] = {alphabet[v >> 18 & 63], alphabet[v >> 12 & 63],
			     left > 1 ? alphabet[v >> 6 & 63] : '=', left > 2 ? alphabet[v & 63] : '='};
		rc = dstr_append(b, q, 4);
	}
	return rc;
}

static bool is_uuid(bson_subtype_t sub, uint32_t len)
{
	return len == 16 && (sub == BSON_SUBTYPE_UUID || sub == BSON_SUBTYPE_UUID_DEPRECATED);
}

static void format_uuid(const uint8_t *u, char *buf)
{
	static const char hex[] = "0123456789abcdef";
	size_t k = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[k++] = '-';
		buf[k++] = hex[u[i] >> 4];
		buf[k++] = hex[u[i] & 15];
	}
	buf[k] = '\0';
}

/* ---- JSON ---- */

struct jw {
	struct dstr *out;
	const struct mt_scrub *scrub;
	char path[MG_MAX_PATH + 2];
	size_t plen;
};

static int json_value(struct jw *j, const bson_iter_t *it, int depth);

static int json_container(struct jw *j, const bson_iter_t *it, bool array, int depth)
{
	bson_iter_t child;
	if (!bson_iter_recurse(it, &child))
		return dstr_puts(j->out, array ? "[]" : "{}");
	int rc = dstr_append(j->out, array ? "[" : "{", 1);
	bool first = true;
	while (rc == CN_OK && bson_iter_next(&child)) {
		size_t mark = j->plen;
		if (!array) {
			const char *key = bson_iter_key(&child);
			size_t klen = strlen(key);
			bool fits = j->plen + klen + 2 < sizeof j->path;
			if (fits) {
				if (j->plen)
					j->path[j->plen++] = '.';
				memcpy(j->path + j->plen, key, klen + 1);
				j->plen += klen;
			}
			/* a path too long to name cannot be told visible: leave it out */
			bool hidden = !fits || (j->scrub && j->scrub->is_hidden &&
						j->scrub->is_hidden(j->scrub->ctx, j->path));
			if (hidden) {
				j->plen = mark;
				j->path[mark] = '\0';
				continue;
			}
			if (!first)
				rc = dstr_append(j->out, ",", 1);
			if (rc == CN_OK)
				rc = dstr_json_lossy(j->out, key, klen);
			if (rc == CN_OK)
				rc = dstr_append(j->out, ":", 1);
		} else if (!first) {
			rc = dstr_append(j->out, ",", 1);
		}
		first = false;
		if (rc == CN_OK)
			rc = json_value(j, &child, depth + 1);
		j->plen = mark;
		j->path[mark] = '\0';
	}
	return rc ? rc : dstr_append(j->out, array ? "]" : "}", 1);
}

static int json_value(struct jw *j, const bson_iter_t *it, int depth)
{
	struct dstr *o = j->out;
	char buf[64];
	if (depth > MT_MAX_DEPTH)
		return dstr_puts(o, "\"(nested too deeply)\"");
	switch (bson_iter_type(it)) {
	case BSON_TYPE_DOUBLE: {
		double d = bson_iter_double(it);
		if (isnan(d))
			return dstr_puts(o, "\"NaN\"");
		if (isinf(d))
			return dstr_puts(o, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
		format_double(d, buf, sizeof buf);
		return json_number(buf) ? dstr_puts(o, buf) : dstr_json_lossy(o, buf, strlen(buf));
	}
	case BSON_TYPE_UTF8: {
		uint32_t n;
		const char *s = bson_iter_utf8(it, &n);
		return dstr_json_lossy(o, s, n);
	}
	case BSON_TYPE_SYMBOL: {
		uint32_t n;
		const char *s = bson_iter_symbol(it, &n);
		return dstr_json_lossy(o, s, n);
	}
	case BSON_TYPE_CODE: {
		uint32_t n;
		const char *s = bson_iter_code(it, &n);
		return dstr_json_lossy(o, s, n);
	}
	case BSON_TYPE_CODEWSCOPE: {
		uint32_t n, sl;
		const uint8_t *scope;
		const char *s = bson_iter_codewscope(it, &n, &sl, &scope);
		return dstr_json_lossy(o, s, n);
	}
	case BSON_TYPE_DOCUMENT: return json_container(j, it, false, depth);
	case BSON_TYPE_ARRAY: return json_container(j, it, true, depth);
	case BSON_TYPE_BINARY: {
		bson_subtype_t sub;
		uint32_t n;
		const uint8_t *data;
		bson_iter_binary(it, &sub, &n, &data);
		if (is_uuid(sub, n)) {
			format_uuid(data, buf);
			return dstr_json_lossy(o, buf, strlen(buf));
		}
		int rc = dstr_append(o, "\"", 1);
		if (rc == CN_OK)
			rc = base64(o, data, n);
		return rc ? rc : dstr_append(o, "\"", 1);
	}
	case BSON_TYPE_OID:
		bson_oid_to_string(bson_iter_oid(it), buf);
		return dstr_json_lossy(o, buf, strlen(buf));
	case BSON_TYPE_BOOL: return dstr_puts(o, bson_iter_bool(it) ? "true" : "false");
	case BSON_TYPE_DATE_TIME:
		mt_format_date(bson_iter_date_time(it), buf, sizeof buf);
		return dstr_json_lossy(o, buf, strlen(buf));
	case BSON_TYPE_REGEX: {
		const char *opts;
		const char *re = bson_iter_regex(it, &opts);
		struct dstr t = {0};
		int rc = dstr_printf(&t, "/%s/%s", re, opts ? opts : "");
		if (rc == CN_OK)
			rc = dstr_json_lossy(o, t.data, t.len);
		dstr_free(&t);
		return rc;
	}
	case BSON_TYPE_DBPOINTER: {
		uint32_t n;
		const char *coll;
		const bson_oid_t *oid;
		bson_iter_dbpointer(it, &n, &coll, &oid);
		bson_oid_to_string(oid, buf);
		int rc = dstr_puts(o, "{\"$dbPointer\":{\"$ref\":");
		if (rc == CN_OK)
			rc = dstr_json_lossy(o, coll, n);
		if (rc == CN_OK)
			rc = dstr_printf(o, ",\"$id\":\"%s\"}}", buf);
		return rc;
	}
	case BSON_TYPE_INT32: return dstr_printf(o, "%" PRId32, bson_iter_int32(it));
	case BSON_TYPE_INT64: return dstr_printf(o, "%" PRId64, bson_iter_int64(it));
	case BSON_TYPE_TIMESTAMP: {
		uint32_t t, i;
		bson_iter_timestamp(it, &t, &i);
		return dstr_printf(o, "{\"$timestamp\":{\"t\":%" PRIu32 ",\"i\":%" PRIu32 "}}", t, i);
	}
	case BSON_TYPE_DECIMAL128: {
		bson_decimal128_t d;
		char s[BSON_DECIMAL128_STRING];
		bson_iter_decimal128(it, &d);
		bson_decimal128_to_string(&d, s);
		return json_number(s) ? dstr_puts(o, s) : dstr_json_lossy(o, s, strlen(s));
	}
	case BSON_TYPE_MINKEY: return dstr_puts(o, "{\"$minKey\":1}");
	case BSON_TYPE_MAXKEY: return dstr_puts(o, "{\"$maxKey\":1}");
	default: return dstr_puts(o, "null"); /* null, undefined, anything unknown */
	}
}

static void jw_init(struct jw *j, struct dstr *out, const char *path, const struct mt_scrub *scrub)
{
	j->out = out;
	j->scrub = scrub;
	size_t n = path ? strlen(path) : 0;
	if (n >= sizeof j->path)
		n = sizeof j->path - 1;
	if (n)
		memcpy(j->path, path, n);
	j->path[n] = '\0';
	j->plen = n;
}

int mt_json_value(struct dstr *out, const bson_iter_t *it, const char *path, const struct mt_scrub *scrub)
{
	struct jw j;
	jw_init(&j, out, path, scrub);
	return json_value(&j, it, 0);
}

static int json_wrapped(struct dstr *out, const bson_t *doc, bool array, const struct mt_scrub *scrub)
{
	bson_t wrap = BSON_INITIALIZER;
	bson_iter_t it;
	int rc = CN_ENOMEM;
	/* the document as the one value of a wrapper, to write it like any value */
	bool ok = array ? bson_append_array(&wrap, "d", 1, doc) : bson_append_document(&wrap, "d", 1, doc);
	if (ok && bson_iter_init_find(&it, &wrap, "d")) {
		struct jw j;
		jw_init(&j, out, "", scrub);
		rc = json_value(&j, &it, 0);
	}
	bson_destroy(&wrap);
	return rc;
}

int mt_json_document(struct dstr *out, const bson_t *doc, const struct mt_scrub *scrub)
{
	return json_wrapped(out, doc, false, scrub);
}

int mt_json_array(struct dstr *out, const bson_t *arr, const struct mt_scrub *scrub)
{
	return json_wrapped(out, arr, true, scrub);
}

/* ---- cells ---- */

static int cell_text(struct dstr *scratch, const char *s, struct cn_value *out)
{
	dstr_reset(scratch);
	int rc = dstr_puts(scratch, s);
	if (rc)
		return rc;
	out->kind = CN_VAL_TEXT;
	out->u.s.ptr = scratch->data;
	out->u.s.len = scratch->len;
	return CN_OK;
}

int mt_cell(const bson_iter_t *it, const char *path, const struct mt_scrub *scrub, struct dstr *scratch,
	    struct cn_value *out)
{
	char buf[64];
	uint32_t n;
	memset(out, 0, sizeof *out);
	switch (bson_iter_type(it)) {
	case BSON_TYPE_INT32:
		out->kind = CN_VAL_INT;
		out->u.i = bson_iter_int32(it);
		return CN_OK;
	case BSON_TYPE_INT64:
		out->kind = CN_VAL_INT;
		out->u.i = bson_iter_int64(it);
		return CN_OK;
	case BSON_TYPE_DOUBLE:
		out->kind = CN_VAL_DOUBLE;
		out->u.d = bson_iter_double(it);
		return CN_OK;
	case BSON_TYPE_DECIMAL128: {
		bson_decimal128_t d;
		char s[BSON_DECIMAL128_STRING];
		bson_iter_decimal128(it, &d);
		bson_decimal128_to_string(&d, s);
		dstr_reset(scratch);
		if (dstr_puts(scratch, s))
			return CN_ENOMEM;
		out->kind = CN_VAL_NUMERIC;
		out->u.s.ptr = scratch->data;
		out->u.s.len = scratch->len;
		return CN_OK;
	}
	case BSON_TYPE_UTF8:
		out->kind = CN_VAL_TEXT;
		out->u.s.ptr = bson_iter_utf8(it, &n);
		out->u.s.len = n;
		return CN_OK;
	case BSON_TYPE_SYMBOL:
		out->kind = CN_VAL_TEXT;
		out->u.s.ptr = bson_iter_symbol(it, &n);
		out->u.s.len = n;
		return CN_OK;
	case BSON_TYPE_CODE:
		out->kind = CN_VAL_TEXT;
		out->u.s.ptr = bson_iter_code(it, &n);
		out->u.s.len = n;
		return CN_OK;
	case BSON_TYPE_CODEWSCOPE: {
		uint32_t sl;
		const uint8_t *scope;
		out->kind = CN_VAL_TEXT;
		out->u.s.ptr = bson_iter_codewscope(it, &n, &sl, &scope);
		out->u.s.len = n;
		return CN_OK;
	}
	case BSON_TYPE_BOOL:
		out->kind = CN_VAL_BOOL;
		out->u.b = bson_iter_bool(it);
		return CN_OK;
	case BSON_TYPE_OID:
		bson_oid_to_string(bson_iter_oid(it), buf);
		return cell_text(scratch, buf, out);
	case BSON_TYPE_DATE_TIME:
		mt_format_date(bson_iter_date_time(it), buf, sizeof buf);
		return cell_text(scratch, buf, out);
	case BSON_TYPE_BINARY: {
		bson_subtype_t sub;
		const uint8_t *data;
		bson_iter_binary(it, &sub, &n, &data);
		if (is_uuid(sub, n)) {
			format_uuid(data, buf);
			return cell_text(scratch, buf, out);
		}
		out->kind = CN_VAL_BYTES;
		out->u.s.ptr = n ? (const char *)data : "";
		out->u.s.len = n;
		return CN_OK;
	}
	case BSON_TYPE_REGEX: {
		const char *opts;
		const char *re = bson_iter_regex(it, &opts);
		dstr_reset(scratch);
		if (dstr_printf(scratch, "/%s/%s", re, opts ? opts : ""))
			return CN_ENOMEM;
		out->kind = CN_VAL_TEXT;
		out->u.s.ptr = scratch->data;
		out->u.s.len = scratch->len;
		return CN_OK;
	}
	case BSON_TYPE_DOCUMENT:
	case BSON_TYPE_ARRAY:
	case BSON_TYPE_TIMESTAMP:
	case BSON_TYPE_MINKEY:
	case BSON_TYPE_MAXKEY:
	case BSON_TYPE_DBPOINTER:
		dstr_reset(scratch);
		if (mt_json_value(scratch, it, path, scrub))
			return CN_ENOMEM;
		out->kind = CN_VAL_JSON;
		out->u.s.ptr = scratch->data;
		out->u.s.len = scratch->len;
		return CN_OK;
	default:
		out->kind = CN_VAL_NULL; /* null, undefined */
		return CN_OK;
	}
}
