/*
 * json_schema.c - validation of tool parameters against a JSON Schema subset
 * (see json_schema.h). Schemas are the connector's own (built in, or made
 * from the config); values come from the assistant and are untrusted: every
 * message is bounded and never quotes more than a short piece of a value.
 */
#include "json_schema.h"

#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBPATH_MAX 128

static int type_matches(const char *type, const cJSON *v)
{
	if (strcmp(type, "object") == 0)
		return cJSON_IsObject(v);
	if (strcmp(type, "array") == 0)
		return cJSON_IsArray(v);
	if (strcmp(type, "string") == 0)
		return cJSON_IsString(v);
	if (strcmp(type, "boolean") == 0)
		return cJSON_IsBool(v);
	if (strcmp(type, "null") == 0)
		return cJSON_IsNull(v);
	if (strcmp(type, "number") == 0)
		return cJSON_IsNumber(v) && isfinite(v->valuedouble);
	if (strcmp(type, "integer") == 0)
		return cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
		       v->valuedouble == floor(v->valuedouble);
	return 0;
}

static const char *json_type_name(const cJSON *v)
{
	if (cJSON_IsObject(v))
		return "an object";
	if (cJSON_IsArray(v))
		return "an array";
	if (cJSON_IsString(v))
		return "a string";
	if (cJSON_IsBool(v))
		return "a boolean";
	if (cJSON_IsNull(v))
		return "null";
	if (cJSON_IsNumber(v))
		return "a number";
	return "invalid";
}

/* ---- ISO 8601 ---- */

static bool digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

static bool date_prefix(const char *s)
{
	static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, m, d;
	if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &m) || s[7] != '-' || !digits(s + 8, 2, &d))
		return false;
	if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return !(m == 2 && d == 29 && !leap);
}

bool json_schema_is_date(const char *s)
{
	return s && strnlen(s, 11) == 10 && date_prefix(s);
}

bool json_schema_is_date_time(const char *s)
{
	int h, mi, se, zh, zm;
	if (!s || strnlen(s, 19) < 19 || !date_prefix(s) || (s[10] != 'T' && s[10] != 't') ||
	    !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !digits(s + 17, 2, &se) || h > 23 || mi > 59 || se > 60)
		return false;
	const char *p = s + 19;
	if (*p == '.') {
		size_t n = strspn(p + 1, "0123456789");
		if (n == 0 || n > 9)
			return false;
		p += 1 + n;
	}
	if (*p == '\0')
		return true;
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
		return true;
	return (*p == '+' || *p == '-') && digits(p + 1, 2, &zh) && p[3] == ':' && digits(p + 4, 2, &zm) &&
	       p[6] == '\0' && zh <= 23 && zm <= 59;
}

/* ---- keywords ---- */

/* A short, printable piece of s for a message. */
static const char *shown(const char *s, char *dst, size_t n)
{
	size_t i = 0;
	for (; s[i] && i + 1 < n && i < 40; i++)
		dst[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"') ? s[i] : '?';
	dst[i] = '\0';
	if (s[i] && i >= 3)
		memcpy(dst + i - 3, "...", 3);
	return dst;
}

static int check_enum(const cJSON *choices, const cJSON *value, const char *path, char *message, size_t len)
{
	const cJSON *c;
	cJSON_ArrayForEach (c, choices)
		if (cJSON_Compare(c, value, true))
			return CN_OK;
	char list[300] = "";
	size_t used = 0;
	cJSON_ArrayForEach (c, choices) {
		char *text = cJSON_PrintUnformatted(c);
		int w =
		    snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", text ? text : "?");
		free(text);
		if (w < 0 || (size_t)w >= sizeof list - used) {
			snprintf(list + sizeof list - 5, 5, "...");
			break;
		}
		used += (size_t)w;
	}
	snprintf(message, len, "%s: must be one of %s", path, list);
	return CN_EINVAL;
}

static int check_pattern(const char *pattern, const char *s, const char *path, char *message, size_t len)
{
	regex_t re;
	char piece[48];
	if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0) {
		snprintf(message, len, "%s: the schema's pattern is not a valid regular expression", path);
		return CN_EINVAL;
	}
	int rc = regexec(&re, s, 0, NULL, 0);
	regfree(&re);
	if (rc == 0)
		return CN_OK;
	snprintf(message, len, "%s: \"%s\" does not match the pattern %s", path,
		 shown(s, piece, sizeof piece), pattern);
	return CN_EINVAL;
}

static int check_format(const char *format, const char *s, const char *path, char *message, size_t len)
{
	char piece[48];
	if (strcmp(format, "date") == 0 && !json_schema_is_date(s)) {
		snprintf(message, len, "%s: \"%s\" is not a date: write YYYY-MM-DD, e.g. 2024-05-01", path,
			 shown(s, piece, sizeof piece));
		return CN_EINVAL;
	}
	if (strcmp(format, "date-time") == 0 && !json_schema_is_date_time(s)) {
		snprintf(message, len,
			 "%s: \"%s\" is not a timestamp: write ISO 8601, e.g. "
			 "2024-05-01T13:00:00Z",
			 path, shown(s, piece, sizeof piece));
		return CN_EINVAL;
	}
	return CN_OK;
}

int json_schema_check(const cJSON *schema, const cJSON *value, const char *path, char *message, size_t len)
{
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(schema, "type");
	if (cJSON_IsString(type) && !type_matches(type->valuestring, value)) {
		snprintf(message, len, "%s: must be %s %s, not %s", path,
			 strchr("aeiou", type->valuestring[0]) ? "an" : "a", type->valuestring,
			 json_type_name(value));
		return CN_EINVAL;
	}
	if (cJSON_IsArray(type)) {
		int ok = 0;
		const cJSON *t;
		cJSON_ArrayForEach (t, type)
			ok |= cJSON_IsString(t) && type_matches(t->valuestring, value);
		if (!ok) {
			snprintf(message, len, "%s: %s is not allowed here", path, json_type_name(value));
			return CN_EINVAL;
		}
	}
	const cJSON *kw = cJSON_GetObjectItemCaseSensitive(schema, "enum");
	if (cJSON_IsArray(kw) && check_enum(kw, value, path, message, len))
		return CN_EINVAL;
	if (cJSON_IsNumber(value)) {
		if ((kw = cJSON_GetObjectItemCaseSensitive(schema, "minimum")) &&
		    value->valuedouble < kw->valuedouble) {
			snprintf(message, len, "%s: must be at least %.15g", path, kw->valuedouble);
			return CN_EINVAL;
		}
		if ((kw = cJSON_GetObjectItemCaseSensitive(schema, "maximum")) &&
		    value->valuedouble > kw->valuedouble) {
			snprintf(message, len, "%s: must be at most %.15g", path, kw->valuedouble);
			return CN_EINVAL;
		}
	}
	if (cJSON_IsString(value)) {
		size_t n = strlen(value->valuestring);
		if ((kw = cJSON_GetObjectItemCaseSensitive(schema, "minLength")) &&
		    (double)n < kw->valuedouble) {
			snprintf(message, len, "%s: must not be empty", path);
			return CN_EINVAL;
		}
		if ((kw = cJSON_GetObjectItemCaseSensitive(schema, "maxLength")) &&
		    (double)n > kw->valuedouble) {
			snprintf(message, len, "%s: is longer than %g characters", path, kw->valuedouble);
			return CN_EINVAL;
		}
		kw = cJSON_GetObjectItemCaseSensitive(schema, "format");
		if (cJSON_IsString(kw) &&
		    check_format(kw->valuestring, value->valuestring, path, message, len))
			return CN_EINVAL;
		kw = cJSON_GetObjectItemCaseSensitive(schema, "pattern");
		if (cJSON_IsString(kw) &&
		    check_pattern(kw->valuestring, value->valuestring, path, message, len))
			return CN_EINVAL;
	}
	if (cJSON_IsArray(value)) {
		int n = cJSON_GetArraySize(value);
		if ((kw = cJSON_GetObjectItemCaseSensitive(schema, "maxItems")) &&
		    (double)n > kw->valuedouble) {
			snprintf(message, len, "%s: has more than %g items", path, kw->valuedouble);
			return CN_EINVAL;
		}
		const cJSON *items = cJSON_GetObjectItemCaseSensitive(schema, "items");
		if (items) {
			int i = 0;
			const cJSON *it;
			cJSON_ArrayForEach (it, value) {
				char sub[SUBPATH_MAX];
				snprintf(sub, sizeof sub, "%s[%d]", path, i++);
				if (json_schema_check(items, it, sub, message, len))
					return CN_EINVAL;
			}
		}
	}
	if (cJSON_IsObject(value)) {
		const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
		const cJSON *req = cJSON_GetObjectItemCaseSensitive(schema, "required");
		const cJSON *r;
		cJSON_ArrayForEach (r, req) {
			if (cJSON_IsString(r) && !cJSON_GetObjectItemCaseSensitive(value, r->valuestring)) {
				snprintf(message, len, "%s.%s: is required", path, r->valuestring);
				return CN_EINVAL;
			}
		}
		const cJSON *addl = cJSON_GetObjectItemCaseSensitive(schema, "additionalProperties");
		const cJSON *member;
		cJSON_ArrayForEach (member, value) {
			char sub[SUBPATH_MAX];
			snprintf(sub, sizeof sub, "%s.%.60s", path, member->string ? member->string : "");
			const cJSON *ps =
			    props ? cJSON_GetObjectItemCaseSensitive(props, member->string) : NULL;
			if (!ps) {
				if (cJSON_IsFalse(addl)) {
					snprintf(message, len, "%s: unknown parameter", sub);
					return CN_EINVAL;
				}
				continue;
			}
			if (json_schema_check(ps, member, sub, message, len))
				return CN_EINVAL;
		}
	}
	return CN_OK;
}

int json_schema_check_defaults(const cJSON *schema, const char *path, char *message, size_t len)
{
	const cJSON *def = cJSON_GetObjectItemCaseSensitive(schema, "default");
	if (def) {
		char sub[SUBPATH_MAX];
		snprintf(sub, sizeof sub, "%s.default", path);
		if (json_schema_check(schema, def, sub, message, len))
			return CN_EINVAL;
	}
	const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
	const cJSON *p;
	cJSON_ArrayForEach (p, props) {
		char sub[SUBPATH_MAX];
		snprintf(sub, sizeof sub, "%s.%.60s", path, p->string ? p->string : "");
		if (json_schema_check_defaults(p, sub, message, len))
			return CN_EINVAL;
	}
	const cJSON *items = cJSON_GetObjectItemCaseSensitive(schema, "items");
	if (cJSON_IsObject(items)) {
		char sub[SUBPATH_MAX];
		snprintf(sub, sizeof sub, "%s[]", path);
		return json_schema_check_defaults(items, sub, message, len);
	}
	return CN_OK;
}
