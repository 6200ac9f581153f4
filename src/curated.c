/*
 * curated.c - curated tools' schemas, placeholders and bindings (see
 * curated.h). Declarations come from the operator's config and were checked
 * when it was loaded; arguments come from the assistant and were validated
 * against the schema made here before they are bound.
 */
#include "curated.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_schema.h"

#define MAX_SAFE_INT 9007199254740992.0 /* 2^53: larger integers lose digits as JSON numbers */

static const char *const type_names[] = {
    [CONFIG_PARAM_STRING] = "string", [CONFIG_PARAM_INTEGER] = "integer",
    [CONFIG_PARAM_NUMBER] = "number", [CONFIG_PARAM_BOOLEAN] = "boolean",
    [CONFIG_PARAM_DATE] = "date",     [CONFIG_PARAM_TIMESTAMP] = "timestamp",
};

int curated_type_from_name(const char *name, enum config_param_type *out)
{
	for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
		if (strcmp(type_names[i], name) == 0) {
			*out = (enum config_param_type)i;
			return CN_OK;
		}
	}
	return CN_EINVAL;
}

const char *curated_type_name(enum config_param_type t)
{
	return (size_t)t < sizeof type_names / sizeof type_names[0] ? type_names[t] : "?";
}

/* ---- values written in the config ---- */

/* A decimal number: [+-]digits[.digits][(e|E)[+-]digits]; integer_only: digits alone. */
static bool number_syntax(const char *s, bool integer_only)
{
	const char *p = s + (*s == '-' || *s == '+');
	size_t n = strspn(p, "0123456789");
	if (n == 0)
		return false;
	p += n;
	if (integer_only)
		return *p == '\0';
	if (*p == '.') {
		n = strspn(p + 1, "0123456789");
		if (n == 0)
			return false;
		p += 1 + n;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		p += *p == '-' || *p == '+';
		n = strspn(p, "0123456789");
		if (n == 0)
			return false;
		p += n;
	}
	return *p == '\0';
}

cJSON *curated_value_from_text(enum config_param_type t, const char *text, char *why, size_t n)
{
	switch (t) {
	case CONFIG_PARAM_INTEGER:
	case CONFIG_PARAM_NUMBER: {
		bool integer = t == CONFIG_PARAM_INTEGER;
		if (!number_syntax(text, integer)) {
			snprintf(why, n, "'%.40s' is not %s", text, integer ? "a whole number" : "a number");
			return NULL;
		}
		errno = 0;
		double d = strtod(text, NULL);
		bool range = errno != ERANGE && isfinite(d);
		if (integer) {
			errno = 0;
			long long i = strtoll(text, NULL, 10);
			range = errno != ERANGE && i <= (1LL << 53) && i >= -(1LL << 53);
		}
		if (!range) {
			snprintf(why, n, "'%.40s' is out of range%s", text,
				 integer ? " (whole numbers go up to 2^53)" : "");
			return NULL;
		}
		return cJSON_CreateNumber(d);
	}
	case CONFIG_PARAM_BOOLEAN:
		if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0)
			return cJSON_CreateBool(text[0] == 't');
		snprintf(why, n, "'%.40s' is not true or false", text);
		return NULL;
	case CONFIG_PARAM_DATE:
		if (!json_schema_is_date(text)) {
			snprintf(why, n, "'%.40s' is not a date: write YYYY-MM-DD", text);
			return NULL;
		}
		break;
	case CONFIG_PARAM_TIMESTAMP:
		if (!json_schema_is_date_time(text)) {
			snprintf(why, n,
				 "'%.40s' is not a timestamp: write ISO 8601 such as "
				 "2024-05-01T00:00:00Z",
				 text);
			return NULL;
		}
		break;
	case CONFIG_PARAM_STRING: break;
	}
	return cJSON_CreateString(text);
}

/* ---- schemas ---- */

static bool add_value(cJSON *o, const char *key, enum config_param_type t, const char *text)
{
	char why[200];
	cJSON *v = curated_value_from_text(t, text, why, sizeof why);
	return v && cJSON_AddItemToObject(o, key, v);
}

cJSON *curated_param_schema(const struct config_tool_param *p)
{
	cJSON *o = cJSON_CreateObject();
	bool ok = o != NULL;
	switch (p->type) {
	case CONFIG_PARAM_INTEGER: ok = ok && cJSON_AddStringToObject(o, "type", "integer"); break;
	case CONFIG_PARAM_NUMBER: ok = ok && cJSON_AddStringToObject(o, "type", "number"); break;
	case CONFIG_PARAM_BOOLEAN: ok = ok && cJSON_AddStringToObject(o, "type", "boolean"); break;
	case CONFIG_PARAM_DATE:
		ok = ok && cJSON_AddStringToObject(o, "type", "string") &&
		     cJSON_AddStringToObject(o, "format", "date");
		break;
	case CONFIG_PARAM_TIMESTAMP:
		ok = ok && cJSON_AddStringToObject(o, "type", "string") &&
		     cJSON_AddStringToObject(o, "format", "date-time");
		break;
	case CONFIG_PARAM_STRING: ok = ok && cJSON_AddStringToObject(o, "type", "string"); break;
	}
	const char *desc = p->description && *p->description ? p->description
			   : p->type == CONFIG_PARAM_DATE    ? "A date, YYYY-MM-DD"
			   : p->type == CONFIG_PARAM_TIMESTAMP
			       ? "A timestamp, ISO 8601 (2024-05-01T13:00:00Z)"
			       : NULL;
	if (ok && desc)
		ok = cJSON_AddStringToObject(o, "description", desc) != NULL;
	if (ok && p->nenum) {
		cJSON *arr = cJSON_AddArrayToObject(o, "enum");
		char why[200];
		for (size_t i = 0; ok && i < p->nenum; i++) {
			cJSON *v =
			    arr ? curated_value_from_text(p->type, p->enum_values[i], why, sizeof why) : NULL;
			ok = v && cJSON_AddItemToArray(arr, v);
		}
	}
	if (ok && p->minimum)
		ok = add_value(o, "minimum", p->type, p->minimum);
	if (ok && p->maximum)
		ok = add_value(o, "maximum", p->type, p->maximum);
	if (ok && p->pattern)
		ok = cJSON_AddStringToObject(o, "pattern", p->pattern) != NULL;
	if (ok && p->default_value)
		ok = add_value(o, "default", p->type, p->default_value);
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

cJSON *curated_tool_schema(const struct config_tool *t)
{
	cJSON *o = cJSON_CreateObject();
	bool ok = o && cJSON_AddStringToObject(o, "type", "object");
	cJSON *req = ok ? cJSON_CreateArray() : NULL;
	ok = req != NULL;
	for (size_t i = 0; ok && i < t->nparams; i++)
		if (t->params[i].required)
			ok = cJSON_AddItemToArray(req, cJSON_CreateString(t->params[i].name));
	if (ok && cJSON_GetArraySize(req) > 0)
		ok = cJSON_AddItemToObject(o, "required", req);
	else
		cJSON_Delete(req);
	ok = ok && cJSON_AddFalseToObject(o, "additionalProperties");
	cJSON *props = ok ? cJSON_AddObjectToObject(o, "properties") : NULL;
	for (size_t i = 0; props && ok && i < t->nparams; i++) {
		cJSON *ps = curated_param_schema(&t->params[i]);
		ok = ps && cJSON_AddItemToObject(props, t->params[i].name, ps);
	}
	if (!ok || !props) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* ---- placeholders ---- */

static bool ident_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '$' || (unsigned char)c >= 0x80;
}

static int mark(bool used[CONFIG_MAX_TOOL_PARAMS], double n, const char *form, char *why, size_t len)
{
	if (n < 1 || n != floor(n) || n > CONFIG_MAX_TOOL_PARAMS) {
		snprintf(why, len, "%s%.0f is not a parameter: parameters are numbered from 1 to %d", form, n,
			 CONFIG_MAX_TOOL_PARAMS);
		return CN_EINVAL;
	}
	used[(int)n - 1] = true;
	return CN_OK;
}

/* SQL: $N outside '...' (E'...' with backslash escapes), "...", `...`,
 * $tag$...$tag$ strings, -- and (nested) block comments. */
static int sql_placeholders(const char *s, bool used[CONFIG_MAX_TOOL_PARAMS], char *why, size_t len)
{
	size_t i = 0, n = strlen(s);
	while (i < n) {
		char c = s[i];
		bool after_ident = i > 0 && ident_char(s[i - 1]);
		if (c == '\'') {
			bool esc =
			    i > 0 && (s[i - 1] == 'E' || s[i - 1] == 'e') && !(i > 1 && ident_char(s[i - 2]));
			for (i++; i < n; i++) {
				if (esc && s[i] == '\\' && i + 1 < n) {
					i++;
				} else if (s[i] == '\'') {
					if (i + 1 < n && s[i + 1] == '\'')
						i++;
					else
						break;
				}
			}
			i++;
		} else if (c == '"' || c == '`') {
			const char *end = strchr(s + i + 1, c);
			i = end ? (size_t)(end - s) + 1 : n;
		} else if (c == '-' && s[i + 1] == '-') {
			const char *end = strchr(s + i, '\n');
			i = end ? (size_t)(end - s) + 1 : n;
		} else if (c == '/' && s[i + 1] == '*') {
			int depth = 0;
			while (i < n) {
				if (s[i] == '/' && s[i + 1] == '*') {
					depth++;
					i += 2;
				} else if (s[i] == '*' && s[i + 1] == '/') {
					i += 2;
					if (--depth == 0)
						break;
				} else {
					i++;
				}
			}
		} else if (c == '$' && !after_ident && isdigit((unsigned char)s[i + 1])) {
			double num = 0;
			for (i++; i < n && isdigit((unsigned char)s[i]); i++)
				num = num * 10 + (s[i] - '0');
			if (mark(used, num, "$", why, len))
				return CN_EINVAL;
		} else if (c == '$' && !after_ident &&
			   (s[i + 1] == '$' || isalpha((unsigned char)s[i + 1]) || s[i + 1] == '_')) {
			/* a dollar-quoted string: $$...$$ or $tag$...$tag$ */
			size_t t = i + 1;
			while (t < n && (isalnum((unsigned char)s[t]) || s[t] == '_'))
				t++;
			if (t < n && s[t] == '$') {
				size_t taglen = t - i + 1;
				const char *close = NULL;
				for (const char *p = s + t + 1; (p = strchr(p, '$')) != NULL; p++) {
					if (strncmp(p, s + i, taglen) == 0) {
						close = p;
						break;
					}
				}
				i = close ? (size_t)(close - s) + taglen : n;
			} else {
				i = t;
			}
		} else {
			i++;
		}
	}
	return CN_OK;
}

static int doc_placeholders(const cJSON *node, bool used[CONFIG_MAX_TOOL_PARAMS], int depth, char *why,
			    size_t len)
{
	if (depth > 64) {
		snprintf(why, len, "the command document nests deeper than 64 levels");
		return CN_EINVAL;
	}
	if (cJSON_IsObject(node)) {
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(node, "$param");
		if (p) {
			if (cJSON_GetArraySize(node) != 1) {
				snprintf(why, len, "{\"$param\": N} must be alone in its object");
				return CN_EINVAL;
			}
			if (!cJSON_IsNumber(p)) {
				snprintf(why, len, "{\"$param\": N} takes a number N from 1 to %d",
					 CONFIG_MAX_TOOL_PARAMS);
				return CN_EINVAL;
			}
			return mark(used, p->valuedouble, "{\"$param\": ", why, len);
		}
	}
	const cJSON *child;
	cJSON_ArrayForEach (child, node)
		if (doc_placeholders(child, used, depth + 1, why, len))
			return CN_EINVAL;
	return CN_OK;
}

int curated_placeholders(const char *statement, bool document, bool used[CONFIG_MAX_TOOL_PARAMS], char *why,
			 size_t n)
{
	memset(used, 0, CONFIG_MAX_TOOL_PARAMS * sizeof used[0]);
	if (!document)
		return sql_placeholders(statement, used, why, n);
	cJSON *doc = cJSON_Parse(statement);
	if (!cJSON_IsObject(doc)) {
		cJSON_Delete(doc);
		snprintf(
		    why, n,
		    "the statement starts with '{' but is not a JSON object: write a command "
		    "document such as {\"find\": \"orders\", \"filter\": {\"status\": {\"$param\": 1}}}");
		return CN_EINVAL;
	}
	int rc = doc_placeholders(doc, used, 0, why, n);
	cJSON_Delete(doc);
	return rc;
}

int curated_check_statement(const struct config_tool *t, char *why, size_t n)
{
	bool used[CONFIG_MAX_TOOL_PARAMS];
	if (curated_placeholders(t->statement, t->statement_is_document, used, why, n))
		return CN_EINVAL;
	const char *open = t->statement_is_document ? "{\"$param\": " : "$";
	const char *close = t->statement_is_document ? "}" : "";
	for (size_t k = CONFIG_MAX_TOOL_PARAMS; k > t->nparams; k--) {
		if (used[k - 1]) {
			snprintf(why, n,
				 "the statement uses %s%zu%s but %zu parameter%s declared; declare "
				 "one under `parameters` for each placeholder, in order",
				 open, k, close, t->nparams, t->nparams == 1 ? " is" : "s are");
			return CN_EINVAL;
		}
	}
	for (size_t k = 1; k <= t->nparams; k++) {
		if (!used[k - 1]) {
			snprintf(why, n,
				 "parameter %zu (%s) is declared but the statement never uses %s%zu%s; "
				 "parameters bind by position",
				 k, t->params[k - 1].name, open, k, close);
			return CN_EINVAL;
		}
	}
	return CN_OK;
}

/* ---- binding ---- */

static void bind_text(const struct config_tool_param *p, const char *text, struct cn_value *v)
{
	switch (p->type) {
	case CONFIG_PARAM_INTEGER:
		v->kind = CN_VAL_INT;
		v->u.i = strtoll(text, NULL, 10);
		break;
	case CONFIG_PARAM_NUMBER:
		v->kind = CN_VAL_DOUBLE;
		v->u.d = strtod(text, NULL);
		break;
	case CONFIG_PARAM_BOOLEAN:
		v->kind = CN_VAL_BOOL;
		v->u.b = strcmp(text, "true") == 0;
		break;
	default:
		v->kind = CN_VAL_TEXT;
		v->u.s.ptr = text;
		v->u.s.len = strlen(text);
	}
}

int curated_bind(const struct config_tool *t, const cJSON *args, struct cn_value *values, char *msg, size_t n)
{
	for (size_t i = 0; i < t->nparams; i++) {
		const struct config_tool_param *p = &t->params[i];
		const cJSON *a = args ? cJSON_GetObjectItemCaseSensitive(args, p->name) : NULL;
		struct cn_value *v = &values[i];
		memset(v, 0, sizeof *v);
		if (!a || cJSON_IsNull(a)) {
			if (p->default_value)
				bind_text(p, p->default_value, v);
			else
				v->kind = CN_VAL_NULL;
			continue;
		}
		switch (p->type) {
		case CONFIG_PARAM_INTEGER:
			if (!cJSON_IsNumber(a) || fabs(a->valuedouble) > MAX_SAFE_INT ||
			    a->valuedouble != floor(a->valuedouble)) {
				snprintf(msg, n, "parameters.%s: must be a whole number within +-2^53",
					 p->name);
				return CN_EINVAL;
			}
			v->kind = CN_VAL_INT;
			v->u.i = (int64_t)a->valuedouble;
			break;
		case CONFIG_PARAM_NUMBER:
			if (!cJSON_IsNumber(a)) {
				snprintf(msg, n, "parameters.%s: must be a number", p->name);
				return CN_EINVAL;
			}
			v->kind = CN_VAL_DOUBLE;
			v->u.d = a->valuedouble;
			break;
		case CONFIG_PARAM_BOOLEAN:
			if (!cJSON_IsBool(a)) {
				snprintf(msg, n, "parameters.%s: must be true or false", p->name);
				return CN_EINVAL;
			}
			v->kind = CN_VAL_BOOL;
			v->u.b = cJSON_IsTrue(a);
			break;
		default:
			if (!cJSON_IsString(a)) {
				snprintf(msg, n, "parameters.%s: must be a string", p->name);
				return CN_EINVAL;
			}
			v->kind = CN_VAL_TEXT;
			v->u.s.ptr = a->valuestring;
			v->u.s.len = strlen(a->valuestring);
		}
	}
	return CN_OK;
}
