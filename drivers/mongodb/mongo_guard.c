/*
 * mongo_guard.c - the command guard of the MongoDB driver (see
 * mongo_guard.h).
 *
 * One walk over the parsed request both checks it and writes the BSON
 * command: every value the server will read is appended here by a function
 * that knows what kind of place it is in, so nothing reaches the server
 * unread. The places:
 *
 *   query       filters ($match, find's filter, count's query, ...): field
 *               names, query operators on an allow list, literal values;
 *               $expr switches to expressions
 *   expression  aggregation expressions: "$path" and "$$variable" strings are
 *               reads, objects with one $-key are operators on an allow list,
 *               other objects are documents built from expressions; a
 *               parameter goes in as {"$literal": value}
 *   literal     values only (inside $literal, compared documents, bounds):
 *               no operator can appear
 *   projection, sort, hint, collation, stage arguments: their own shapes
 *
 * Hidden fields. A scope follows the documents through a pipeline: the
 * collection whose documents flow with their own paths (hidden fields
 * included), or none once a stage has built new documents from checked
 * expressions ($group, $project of named fields, $replaceWith, ...). In a
 * scope, naming a hidden field is refused everywhere; reading a document that
 * contains one (an ancestor: "$customer" when customer.email is hidden, a
 * filter or sort on it, $$ROOT) is refused, since its value would carry the
 * hidden field to a place the driver's result scrubbing cannot see; an
 * inclusion projection of an ancestor keeps the paths and is allowed (the
 * driver removes the hidden field from the result). Joins, unions and facets
 * that would bring whole documents of a collection with hidden fields to
 * another place must end their pipeline with a stage that names the fields.
 */
#include "mongo_guard.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/text.h"
#include "mongo_json.h"

/* ---- allow lists ---- */

/* Aggregation expression operators (MongoDB 7.0), accumulators and window
 * operators usable as expressions included. $function, $accumulator are
 * JavaScript and are refused separately. */
static const char *const expr_ops[] = {
	"$abs", "$acos", "$acosh", "$add", "$allElementsTrue", "$and", "$anyElementTrue",
	"$arrayElemAt", "$arrayToObject", "$asin", "$asinh", "$atan", "$atan2", "$atanh", "$avg",
	"$binarySize", "$bitAnd", "$bitNot", "$bitOr", "$bitXor", "$bsonSize", "$ceil", "$cmp",
	"$concat", "$concatArrays", "$cond", "$convert", "$cos", "$cosh", "$dateAdd", "$dateDiff",
	"$dateFromParts", "$dateFromString", "$dateSubtract", "$dateToParts", "$dateToString",
	"$dateTrunc", "$dayOfMonth", "$dayOfWeek", "$dayOfYear", "$degreesToRadians", "$divide",
	"$eq", "$exp", "$filter", "$first", "$firstN", "$floor", "$getField", "$gt", "$gte",
	"$hour", "$ifNull", "$in", "$indexOfArray", "$indexOfBytes", "$indexOfCP", "$isArray",
	"$isNumber", "$isoDayOfWeek", "$isoWeek", "$isoWeekYear", "$last", "$lastN", "$let",
	"$literal", "$ln", "$log", "$log10", "$lt", "$lte", "$ltrim", "$map", "$max", "$maxN",
	"$median", "$mergeObjects", "$meta", "$millisecond", "$min", "$minN", "$minute", "$mod",
	"$month", "$multiply", "$ne", "$not", "$objectToArray", "$or", "$percentile", "$pow",
	"$radiansToDegrees", "$rand", "$range", "$reduce", "$regexFind", "$regexFindAll",
	"$regexMatch", "$replaceAll", "$replaceOne", "$reverseArray", "$round", "$rtrim",
	"$sampleRate", "$second", "$setDifference", "$setEquals", "$setField", "$setIntersection",
	"$setIsSubset", "$setUnion", "$sin", "$sinh", "$size", "$slice", "$sortArray", "$split",
	"$sqrt", "$stdDevPop", "$stdDevSamp", "$strLenBytes", "$strLenCP", "$strcasecmp",
	"$substr", "$substrBytes", "$substrCP", "$subtract", "$sum", "$switch", "$tan", "$tanh",
	"$toBool", "$toDate", "$toDecimal", "$toDouble", "$toHashedIndexKey", "$toInt", "$toLong",
	"$toLower", "$toObjectId", "$toString", "$toUpper", "$trim", "$trunc", "$tsIncrement",
	"$tsSecond", "$type", "$unsetField", "$week", "$year", "$zip",
};

/* $group, $bucket(Auto) output accumulators. */
static const char *const accumulators[] = {
	"$addToSet", "$avg", "$bottom", "$bottomN", "$count", "$first", "$firstN", "$last", "$lastN",
	"$max", "$maxN", "$median", "$mergeObjects", "$min", "$minN", "$percentile", "$push",
	"$stdDevPop", "$stdDevSamp", "$sum", "$top", "$topN",
};

/* $setWindowFields output operators (accumulators apply too). */
static const char *const window_ops[] = {
	"$covariancePop", "$covarianceSamp", "$denseRank", "$derivative", "$documentNumber",
	"$expMovingAvg", "$integral", "$linearFill", "$locf", "$rank", "$shift",
};

struct reason {
	const char *name;
	const char *why;
	enum cn_reject cls; /* what the refusal counts as */
};

static const char JS[] = "it runs JavaScript on the server";

/* Operators refused wherever they appear, with the reason. */
static const struct reason denied_ops[] = {
	{"$where", JS, CN_REJECT_DENIED},
	{"$function", JS, CN_REJECT_DENIED},
	{"$accumulator", JS, CN_REJECT_DENIED},
	{"$out", "it writes into a collection; only reads are allowed", CN_REJECT_WRITE},
	{"$merge", "it writes into a collection; only reads are allowed", CN_REJECT_WRITE},
};

static const struct reason denied_stages[] = {
	{"$out", "it writes the result into a collection; only reads are allowed", CN_REJECT_WRITE},
	{"$merge", "it writes the result into a collection; only reads are allowed", CN_REJECT_WRITE},
	{"$currentOp", "it lists the server's operations (an administration stage)", CN_REJECT_DENIED},
	{"$listSessions", "it lists sessions (an administration stage)", CN_REJECT_DENIED},
	{"$listLocalSessions", "it lists sessions (an administration stage)", CN_REJECT_DENIED},
	{"$collStats", "it reads storage statistics (an administration stage)", CN_REJECT_DENIED},
	{"$indexStats", "it reads index statistics (an administration stage)", CN_REJECT_DENIED},
	{"$planCacheStats", "it reads the plan cache (an administration stage)", CN_REJECT_DENIED},
	{"$listCatalog", "it reads the catalog (an administration stage)", CN_REJECT_DENIED},
	{"$listSearchIndexes", "it reads index definitions (an administration stage)", CN_REJECT_DENIED},
	{"$shardedDataDistribution", "it reads sharding metadata (an administration stage)",
	 CN_REJECT_DENIED},
	{"$changeStream", "it opens a change stream, which waits for writes", CN_REJECT_DENIED},
	{"$documents", "it builds documents without a collection", CN_REJECT_DENIED},
	{"$redact", "it is not on the connector's list of stages", CN_REJECT_DENIED},
	{"$search", "Atlas Search stages are not supported", CN_REJECT_DENIED},
	{"$searchMeta", "Atlas Search stages are not supported", CN_REJECT_DENIED},
	{"$vectorSearch", "Atlas Search stages are not supported", CN_REJECT_DENIED},
};

/* Command fields the connector sets, or never forwards, whatever the command. */
static const struct reason denied_fields[] = {
	{"$db", "a source reads only the database of its dsn; the connector sets $db", CN_REJECT_DENIED},
	{"maxTimeMS", "the connector sets it from the source's time budget", CN_REJECT_DENIED},
	{"readConcern", "the read concern comes from the source's dsn", CN_REJECT_DENIED},
	{"$readPreference", "the read preference comes from the source's dsn", CN_REJECT_DENIED},
	{"readPreference", "the read preference comes from the source's dsn", CN_REJECT_DENIED},
	{"writeConcern", "commands that write are not accepted", CN_REJECT_WRITE},
	{"bypassDocumentValidation", "commands that write are not accepted", CN_REJECT_WRITE},
	{"lsid", "sessions are the connector's", CN_REJECT_DENIED},
	{"txnNumber", "transactions are not accepted", CN_REJECT_WRITE},
	{"autocommit", "transactions are not accepted", CN_REJECT_WRITE},
	{"startTransaction", "transactions are not accepted", CN_REJECT_WRITE},
	{"$clusterTime", "cluster time is the driver's", CN_REJECT_DENIED},
	{"$readConcern", "the read concern comes from the source's dsn", CN_REJECT_DENIED},
	{"noCursorTimeout", "cursors are the connector's: they are read and closed at once",
	 CN_REJECT_DENIED},
	{"tailable", "cursors are the connector's: they are read and closed at once", CN_REJECT_DENIED},
	{"awaitData", "cursors are the connector's: they are read and closed at once", CN_REJECT_DENIED},
	{"oplogReplay", "it is an internal option", CN_REJECT_DENIED},
	{"allowDiskUse", "a query's resources are the connector's to set", CN_REJECT_DENIED},
	{"allowPartialResults", "routing options are the connector's to set", CN_REJECT_DENIED},
	{"apiVersion", "the server API version is the connector's to set", CN_REJECT_DENIED},
	{"apiStrict", "the server API version is the connector's to set", CN_REJECT_DENIED},
	{"apiDeprecationErrors", "the server API version is the connector's to set", CN_REJECT_DENIED},
	{"exhaust", "cursors are the connector's", CN_REJECT_DENIED},
	{"maxAwaitTimeMS", "cursors are the connector's", CN_REJECT_DENIED},
	{"readOnce", "it is an internal option", CN_REJECT_DENIED},
};

/* Commands that are not reads, named so that the message can say so. */
static const char *const write_commands[] = {
	"insert", "update", "delete", "findAndModify", "findandmodify", "drop", "dropDatabase",
	"create", "createIndexes", "dropIndexes", "renameCollection", "collMod", "bulkWrite",
	"mapReduce", "mapreduce", "eval", "$eval", "createUser", "dropUser", "grantRolesToUser",
	"updateUser", "shutdown", "fsync", "compact", "reIndex", "applyOps", "clone", "cloneCollection",
	"cloneCollectionAsCapped", "convertToCapped", "killCursors", "killOp", "setParameter",
};

static bool in_list(const char *const *list, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

#define IN_LIST(list, s) in_list(list, sizeof list / sizeof list[0], s)

static const struct reason *reason_of(const struct reason *list, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i].name, s) == 0)
			return &list[i];
	return NULL;
}

#define REASON(list, s) reason_of(list, sizeof list / sizeof list[0], s)

/* ---- the walk ---- */

/* What a field name is used for, for the hidden-field rules. */
enum use {
	USE_READ,    /* its value is read: refused when hidden or when it holds hidden fields */
	USE_INCLUDE, /* kept at its own path: refused only when hidden */
};

struct scope {
	const char *coll; /* whose documents flow with their own paths; NULL once rebuilt */
};

struct walk {
	const struct mg_hooks *hooks;
	const struct cn_value *params;
	size_t nparams;
	bool bind;
	bool used[MG_MAX_PARAMS + 1];
	int max_param;
	struct cn_error *err;
	int rc;
	char path[512];
	size_t plen;
};

static int vreject(struct walk *w, enum cn_reject why, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
static int vreject(struct walk *w, enum cn_reject why, const char *fmt, va_list ap)
{
	if (w->rc)
		return w->rc;
	char what[400];
	vsnprintf(what, sizeof what, fmt, ap);
	w->rc = cn_error_reject(w->err, why, "%s%s%s", w->path, w->plen ? ": " : "", what);
	return w->rc;
}

static int reject(struct walk *w, enum cn_reject why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int reject(struct walk *w, enum cn_reject why, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vreject(w, why, fmt, ap);
	va_end(ap);
	return rc;
}

/* A value written in the query's own text that is not what its place takes. */
static int bad_text(struct walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad_text(struct walk *w, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vreject(w, CN_REJECT_SYNTAX, fmt, ap);
	va_end(ap);
	return rc;
}

static int bad_param(struct walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad_param(struct walk *w, const char *fmt, ...)
{
	if (w->rc)
		return w->rc;
	char what[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	w->rc = cn_error_set(w->err, CN_EINVAL, "%s%s%s", w->path, w->plen ? ": " : "", what);
	return w->rc;
}

static int too_big(struct walk *w)
{
	return reject(w, CN_REJECT_LIMIT, "the command would be larger than a BSON document may be");
}

/* Path for messages: push a key or an index, pop back to a mark. */
static size_t push_key(struct walk *w, const char *key)
{
	size_t mark = w->plen;
	size_t room = sizeof w->path - w->plen;
	if (room < 8)
		return mark;
	int n = snprintf(w->path + w->plen, room, "%s", w->plen ? "." : "");
	size_t at = w->plen + (size_t)n;
	for (const char *c = key; *c && at + 4 < sizeof w->path; c++)
		w->path[at++] = ((unsigned char)*c < 0x20 || *c == 0x7f) ? '?' : *c;
	if (*key && at + 4 >= sizeof w->path)
		memcpy(w->path + at - 3, "...", 3);
	w->path[at] = '\0';
	w->plen = at;
	return mark;
}

static size_t push_index(struct walk *w, size_t i)
{
	size_t mark = w->plen;
	size_t room = sizeof w->path - w->plen;
	int n = snprintf(w->path + w->plen, room, "[%zu]", i);
	if (n > 0 && (size_t)n < room)
		w->plen += (size_t)n;
	w->path[w->plen] = '\0';
	return mark;
}

static void pop(struct walk *w, size_t mark)
{
	w->plen = mark;
	w->path[mark] = '\0';
}

static const char *index_key(size_t i, char *buf, size_t size)
{
	const char *key;
	bson_uint32_to_string((uint32_t)i, &key, buf, size);
	return key;
}

/* ---- names ---- */

static bool hidden_coll(struct walk *w, const char *coll)
{
	return w->hooks && w->hooks->is_hidden && w->hooks->is_hidden(w->hooks->ctx, coll, NULL);
}

static bool hidden_field(struct walk *w, const char *coll, const char *path)
{
	return w->hooks && w->hooks->is_hidden && w->hooks->is_hidden(w->hooks->ctx, coll, path);
}

static bool holds_hidden(struct walk *w, const char *coll, const char *path)
{
	return w->hooks && w->hooks->hidden_under && w->hooks->hidden_under(w->hooks->ctx, coll, path);
}

bool mg_path_normalize(const char *path, char *out, size_t size)
{
	size_t w = 0;
	const char *p = path;
	while (*p) {
		size_t n = strcspn(p, ".");
		const char *part = p;
		p += n;
		if (*p == '.')
			p++;
		size_t k = n;
		while (k >= 2 && part[k - 2] == '[' && part[k - 1] == ']')
			k -= 2; /* "items[]" */
		bool digits = k > 0;
		for (size_t i = 0; i < k; i++)
			digits = digits && isdigit((unsigned char)part[i]);
		bool positional = k > 0 && part[0] == '$' && (k == 1 || part[1] == '[');
		if (k == 0 || digits || positional)
			continue;
		if (w + (w ? 1 : 0) + k + 1 > size)
			return false;
		if (w)
			out[w++] = '.';
		memcpy(out + w, part, k);
		w += k;
	}
	if (size == 0)
		return false;
	out[w] = '\0';
	return true;
}

/* A field path written in the query (no leading '$'): checked against the
 * scope's hidden fields for the use. */
static int field(struct walk *w, const struct scope *sc, const char *path, enum use use)
{
	if (!*path)
		return reject(w, CN_REJECT_SYNTAX, "an empty field name");
	if (path[0] == '.' || path[strlen(path) - 1] == '.' || strstr(path, ".."))
		return reject(w, CN_REJECT_SYNTAX, "the field path '%.100s' has an empty part", path);
	if (strlen(path) > MG_MAX_PATH)
		return reject(w, CN_REJECT_LIMIT, "a field path is longer than %d bytes", MG_MAX_PATH);
	if (!sc->coll)
		return CN_OK;
	char norm[MG_MAX_PATH + 1];
	if (!mg_path_normalize(path, norm, sizeof norm))
		return reject(w, CN_REJECT_LIMIT, "a field path is longer than %d bytes", MG_MAX_PATH);
	if (!norm[0])
		return CN_OK;
	if (hidden_field(w, sc->coll, norm))
		return reject(w, CN_REJECT_HIDDEN, "field '%.100s' of '%.100s' is hidden", norm, sc->coll);
	if (use == USE_READ && holds_hidden(w, sc->coll, norm))
		return reject(w, CN_REJECT_HIDDEN, "field '%.100s' of '%.100s' holds hidden fields, which "
			      "its value would carry; name the fields inside it that you need", norm,
			      sc->coll);
	return CN_OK;
}

/* The whole current document ($$ROOT, $$CURRENT). */
static int whole_document(struct walk *w, const struct scope *sc, const char *what)
{
	if (sc->coll && holds_hidden(w, sc->coll, ""))
		return reject(w, CN_REJECT_HIDDEN, "%s is the whole document of '%.100s', which has hidden "
			      "fields; name the fields you need", what, sc->coll);
	return CN_OK;
}

/* A collection name in the source's database. */
static int collection(struct walk *w, const struct mj_node *v, const char **out)
{
	if (v->kind != MJ_STRING)
		return reject(w, CN_REJECT_SYNTAX,
			      "must be a collection name (a string) of the source's database, not %s",
			      mj_kind_name(v->kind));
	if (v->len == 0 || v->len > MG_MAX_NAME)
		return reject(w, v->len ? CN_REJECT_LIMIT : CN_REJECT_SYNTAX,
			      "a collection name has 1 to %d bytes", MG_MAX_NAME);
	if (strchr(v->str, '$'))
		return reject(w, CN_REJECT_SYNTAX, "collection names do not contain '$'");
	if (strncmp(v->str, "system.", 7) == 0)
		return reject(w, CN_REJECT_DENIED, "'%.100s' is a system collection", v->str);
	if (hidden_coll(w, v->str))
		return reject(w, CN_REJECT_HIDDEN, "collection '%.100s' is hidden", v->str);
	*out = v->str;
	return CN_OK;
}

/* A name the query gives to something new: an output field, a variable. */
static int new_name(struct walk *w, const struct mj_node *v, bool variable)
{
	if (v->kind != MJ_STRING || v->len == 0)
		return reject(w, CN_REJECT_SYNTAX, "must be a non-empty name (a string)");
	if (v->str[0] == '$')
		return reject(w, CN_REJECT_SYNTAX, "a name cannot start with '$'");
	if (variable && !(islower((unsigned char)v->str[0]) || (unsigned char)v->str[0] >= 0x80))
		return reject(w, CN_REJECT_SYNTAX, "variable names start with a lower-case letter");
	return CN_OK;
}

/* ---- scalars, parameters and typed values ---- */

static int append_node_scalar(struct walk *w, bson_t *dst, const char *key, const struct mj_node *v)
{
	bool ok;
	switch (v->kind) {
	case MJ_NULL: ok = bson_append_null(dst, key, -1); break;
	case MJ_BOOL: ok = bson_append_bool(dst, key, -1, v->v.b); break;
	case MJ_INT:
		ok = v->v.i >= INT32_MIN && v->v.i <= INT32_MAX
			     ? bson_append_int32(dst, key, -1, (int32_t)v->v.i)
			     : bson_append_int64(dst, key, -1, v->v.i);
		break;
	case MJ_DOUBLE: ok = bson_append_double(dst, key, -1, v->v.d); break;
	case MJ_STRING: ok = bson_append_utf8(dst, key, -1, v->str, (int)v->len); break;
	default: return reject(w, CN_REJECT_OTHER, "internal: not a scalar"); /* a bug, no rule */
	}
	return ok ? CN_OK : too_big(w);
}

static bool is_param(const struct mj_node *v)
{
	return v->kind == MJ_OBJECT && v->count >= 1 && strcmp(v->first->key, "$param") == 0;
}

/* The parameter a {"$param": N} object names: 0-based index into params, or
 * -1 when not bound (check mode). */
static int param_ref(struct walk *w, const struct mj_node *v, int *index)
{
	size_t mark = push_key(w, "$param");
	if (v->count != 1) {
		pop(w, mark);
		return reject(w, CN_REJECT_PARAMETER, "{\"$param\": N} stands alone in its object");
	}
	const struct mj_node *n = v->first;
	if (n->kind != MJ_INT || n->v.i < 1 || n->v.i > MG_MAX_PARAMS) {
		int rc = reject(w, CN_REJECT_PARAMETER,
				"N must be an integer from 1 to %d (the position in parameters)",
				MG_MAX_PARAMS);
		pop(w, mark);
		return rc;
	}
	int i = (int)n->v.i;
	if (w->bind && (size_t)i > w->nparams) {
		int rc = bad_param(w, "the query uses parameter %d but %zu parameter%s given", i,
				   w->nparams, w->nparams == 1 ? " was" : "s were");
		pop(w, mark);
		return rc;
	}
	pop(w, mark);
	w->used[i] = true;
	if (i > w->max_param)
		w->max_param = i;
	*index = w->bind ? i - 1 : -1;
	return CN_OK;
}

static bool utf8_ok(const char *s, size_t n)
{
	return bson_utf8_validate(s, n, true);
}

/* params[i] as a BSON value. */
static int append_param_value(struct walk *w, bson_t *dst, const char *key, int i)
{
	if (i < 0)
		return bson_append_null(dst, key, -1) ? CN_OK : too_big(w);
	const struct cn_value *p = &w->params[i];
	bool ok = true;
	switch (p->kind) {
	case CN_VAL_NULL: ok = bson_append_null(dst, key, -1); break;
	case CN_VAL_BOOL: ok = bson_append_bool(dst, key, -1, p->u.b); break;
	case CN_VAL_INT:
		ok = p->u.i >= INT32_MIN && p->u.i <= INT32_MAX
			     ? bson_append_int32(dst, key, -1, (int32_t)p->u.i)
			     : bson_append_int64(dst, key, -1, p->u.i);
		break;
	case CN_VAL_DOUBLE: ok = bson_append_double(dst, key, -1, p->u.d); break;
	case CN_VAL_TEXT:
		if (p->u.s.len > INT32_MAX / 2 || !utf8_ok(p->u.s.ptr ? p->u.s.ptr : "", p->u.s.len))
			return bad_param(w, "parameters[%d] is not valid UTF-8 text", i);
		ok = bson_append_utf8(dst, key, -1, p->u.s.ptr ? p->u.s.ptr : "", (int)p->u.s.len);
		break;
	case CN_VAL_NUMERIC: {
		char buf[64];
		bson_decimal128_t d;
		if (p->u.s.len >= sizeof buf)
			return bad_param(w, "parameters[%d] is not a decimal number", i);
		memcpy(buf, p->u.s.ptr, p->u.s.len);
		buf[p->u.s.len] = '\0';
		if (!bson_decimal128_from_string(buf, &d))
			return bad_param(w, "parameters[%d] is not a decimal number", i);
		ok = bson_append_decimal128(dst, key, -1, &d);
		break;
	}
	case CN_VAL_BYTES:
		if (p->u.s.len > INT32_MAX / 2)
			return bad_param(w, "parameters[%d] is too large", i);
		ok = bson_append_binary(dst, key, -1, BSON_SUBTYPE_BINARY,
					(const uint8_t *)(p->u.s.ptr ? p->u.s.ptr : ""),
					(uint32_t)p->u.s.len);
		break;
	case CN_VAL_JSON:
		return bad_param(w, "parameters[%d] is a JSON document; parameters are single values", i);
	}
	return ok ? CN_OK : too_big(w);
}

/* In an expression a parameter is a literal, never a path or an operator. */
static int append_param_literal(struct walk *w, bson_t *dst, const char *key, int i)
{
	bson_t lit;
	if (!bson_append_document_begin(dst, key, -1, &lit))
		return too_big(w);
	int rc = append_param_value(w, &lit, "$literal", i);
	if (!bson_append_document_end(dst, &lit))
		return too_big(w);
	return rc;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, size_t n, int *out)
{
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

bool mg_parse_date(const char *s, size_t n, int64_t *ms)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
	if (n < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
	    !digits(s + 8, 2, &d))
		return false;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1])
		return false;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return false;
	size_t i = 10;
	int64_t offset_min = 0;
	if (i < n) {
		if ((s[i] != 'T' && s[i] != 't' && s[i] != ' ') || n < i + 6 || !digits(s + i + 1, 2, &h) ||
		    s[i + 3] != ':' || !digits(s + i + 4, 2, &mi))
			return false;
		i += 6;
		if (i < n && s[i] == ':') {
			if (n < i + 3 || !digits(s + i + 1, 2, &sec))
				return false;
			i += 3;
			if (i < n && s[i] == '.') {
				size_t k = 0;
				i++;
				while (i + k < n && isdigit((unsigned char)s[i + k]))
					k++;
				if (k == 0 || k > 9)
					return false;
				int f = 0; /* digits() sets it: the k digits were counted above */
				digits(s + i, k < 3 ? k : 3, &f);
				for (size_t j = k; j < 3; j++)
					f *= 10;
				frac = f;
				i += k;
			}
		}
		if (h > 23 || mi > 59 || sec > 60)
			return false;
		if (i >= n)
			return false; /* a time needs its zone: Z or an offset */
		if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == n) {
			i++;
		} else if (s[i] == '+' || s[i] == '-') {
			int oh, om;
			if (n == i + 6 && s[i + 3] == ':' && digits(s + i + 1, 2, &oh) && digits(s + i + 4, 2, &om))
				;
			else if (n == i + 5 && digits(s + i + 1, 2, &oh) && digits(s + i + 3, 2, &om))
				;
			else
				return false;
			if (oh > 23 || om > 59)
				return false;
			offset_min = (s[i] == '-' ? -1 : 1) * (int64_t)(oh * 60 + om);
			i = n;
		} else {
			return false;
		}
	}
	int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
	*ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - offset_min * 60) * 1000 + frac;
	return true;
}

static bool parse_uuid(const char *s, size_t n, uint8_t out[16])
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '-' && (i == 8 || i == 13 || i == 18 || i == 23) && n == 36)
			continue;
		int hi = text_hex_digit((unsigned char)s[i]);
		int lo = i + 1 < n ? text_hex_digit((unsigned char)s[i + 1]) : -1;
		if (hi < 0 || lo < 0 || k == 16)
			return false;
		out[k++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	return k == 16;
}

/* The typed value of a wrapper whose argument is text (from the query or a
 * parameter). which: "$oid", "$date", ... Returns CN_OK, or refuses with
 * `bad` (bad_text for the query's own text, bad_param for a parameter). */
static int append_typed_text(struct walk *w, bson_t *dst, const char *key, const char *which,
			     const char *s, size_t n, bool from_param, int pi)
{
	int (*bad)(struct walk *, const char *, ...) = from_param ? bad_param : bad_text;
	char who[48];
	if (from_param)
		snprintf(who, sizeof who, "parameters[%d]", pi);
	else
		snprintf(who, sizeof who, "the text");
	bool ok;
	if (!strcmp(which, "$oid")) {
		if (n != 24 || !bson_oid_is_valid(s, n))
			return bad(w, "%s is not an ObjectId: 24 hex digits", who);
		bson_oid_t oid;
		bson_oid_init_from_string(&oid, s);
		ok = bson_append_oid(dst, key, -1, &oid);
	} else if (!strcmp(which, "$date")) {
		int64_t ms;
		if (!mg_parse_date(s, n, &ms))
			return bad(w, "%s is not an ISO 8601 date such as 2024-05-01 or "
				   "2024-05-01T10:00:00Z", who);
		ok = bson_append_date_time(dst, key, -1, ms);
	} else if (!strcmp(which, "$numberLong") || !strcmp(which, "$numberInt")) {
		char buf[32];
		char *end;
		if (n == 0 || n >= sizeof buf)
			return bad(w, "%s is not an integer", who);
		memcpy(buf, s, n);
		buf[n] = '\0';
		errno = 0;
		long long v = strtoll(buf, &end, 10);
		if (errno || *end || !(isdigit((unsigned char)buf[0]) || buf[0] == '-'))
			return bad(w, "%s is not a 64-bit integer", who);
		if (!strcmp(which, "$numberInt")) {
			if (v < INT32_MIN || v > INT32_MAX)
				return bad(w, "%s is not a 32-bit integer", who);
			ok = bson_append_int32(dst, key, -1, (int32_t)v);
		} else {
			ok = bson_append_int64(dst, key, -1, v);
		}
	} else if (!strcmp(which, "$numberDecimal")) {
		bson_decimal128_t d;
		if (n > 64 || !bson_decimal128_from_string_w_len(s, (int)n, &d))
			return bad(w, "%s is not a decimal number", who);
		ok = bson_append_decimal128(dst, key, -1, &d);
	} else if (!strcmp(which, "$numberDouble")) {
		char buf[64];
		char *end;
		double dv;
		if (n == 0 || n >= sizeof buf)
			return bad(w, "%s is not a number", who);
		memcpy(buf, s, n);
		buf[n] = '\0';
		if (!strcmp(buf, "NaN"))
			dv = NAN;
		else if (!strcmp(buf, "Infinity"))
			dv = INFINITY;
		else if (!strcmp(buf, "-Infinity"))
			dv = -INFINITY;
		else if ((dv = strtod(buf, &end), *end) || !isfinite(dv))
			return bad(w, "%s is not a number", who);
		ok = bson_append_double(dst, key, -1, dv);
	} else { /* $uuid */
		uint8_t u[16];
		if (!parse_uuid(s, n, u))
			return bad(w, "%s is not a UUID (32 hex digits, dashes allowed)", who);
		ok = bson_append_binary(dst, key, -1, BSON_SUBTYPE_UUID, u, 16);
	}
	return ok ? CN_OK : too_big(w);
}

static const char *const wrappers[] = {
	"$oid", "$date", "$numberLong", "$numberInt", "$numberDouble", "$numberDecimal", "$uuid",
	"$binary", "$regularExpression", "$timestamp", "$minKey", "$maxKey",
};

static const struct reason denied_wrappers[] = {
	{"$code", JS, CN_REJECT_DENIED},
	{"$scope", JS, CN_REJECT_DENIED},
	{"$symbol", "the symbol type is deprecated; use a string", CN_REJECT_DENIED},
	{"$dbPointer", "the DBPointer type is deprecated", CN_REJECT_DENIED},
	{"$undefined", "the undefined type is deprecated; use null", CN_REJECT_DENIED},
	{"$numberLongLegacy", "use $numberLong", CN_REJECT_DENIED},
};

static bool is_wrapper(const struct mj_node *v)
{
	return v->kind == MJ_OBJECT && v->count == 1 && v->first->key[0] == '$' &&
	       (IN_LIST(wrappers, v->first->key) || REASON(denied_wrappers, v->first->key));
}

static int base64_decode(const char *s, size_t n, uint8_t **out, size_t *outlen)
{
	if (n % 4)
		return CN_EINVAL;
	uint8_t *b = malloc(n / 4 * 3 + 1);
	if (!b)
		return CN_ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < n; i += 4) {
		uint32_t v = 0;
		int pad = 0;
		for (size_t j = 0; j < 4; j++) {
			char c = s[i + j];
			int d;
			if (c >= 'A' && c <= 'Z')
				d = c - 'A';
			else if (c >= 'a' && c <= 'z')
				d = c - 'a' + 26;
			else if (c >= '0' && c <= '9')
				d = c - '0' + 52;
			else if (c == '+')
				d = 62;
			else if (c == '/')
				d = 63;
			else if (c == '=' && i + 4 == n && j >= 2)
				d = 0, pad++;
			else
				d = -1;
			if (d < 0 || (pad && c != '=')) {
				free(b);
				return CN_EINVAL;
			}
			v = v << 6 | (uint32_t)d;
		}
		b[k++] = (uint8_t)(v >> 16);
		if (pad < 2)
			b[k++] = (uint8_t)(v >> 8);
		if (pad < 1)
			b[k++] = (uint8_t)v;
	}
	*out = b;
	*outlen = k;
	return CN_OK;
}

/* An Extended JSON v2 type wrapper as a BSON value. */
static int append_wrapper(struct walk *w, bson_t *dst, const char *key, const struct mj_node *v)
{
	const struct mj_node *a = v->first;
	const char *which = a->key;
	size_t mark = push_key(w, which);
	int rc = CN_OK;
	const struct reason *denied = REASON(denied_wrappers, which);
	bool ok = true;
	if (denied) {
		rc = reject(w, denied->cls, "not accepted: %s", denied->why);
	} else if (is_param(a) && (!strcmp(which, "$oid") || !strcmp(which, "$date") ||
				   !strcmp(which, "$numberLong") || !strcmp(which, "$numberDecimal") ||
				   !strcmp(which, "$uuid") || !strcmp(which, "$numberInt") ||
				   !strcmp(which, "$numberDouble"))) {
		int pi;
		if ((rc = param_ref(w, a, &pi)))
			goto out;
		if (pi < 0) { /* check mode: a placeholder of the right type */
			bson_oid_t zero = {{0}};
			uint8_t u[16] = {0};
			bson_decimal128_t d0 = {0, 0};
			if (!strcmp(which, "$oid"))
				ok = bson_append_oid(dst, key, -1, &zero);
			else if (!strcmp(which, "$date"))
				ok = bson_append_date_time(dst, key, -1, 0);
			else if (!strcmp(which, "$numberDecimal"))
				ok = bson_append_decimal128(dst, key, -1, &d0);
			else if (!strcmp(which, "$uuid"))
				ok = bson_append_binary(dst, key, -1, BSON_SUBTYPE_UUID, u, 16);
			else if (!strcmp(which, "$numberDouble"))
				ok = bson_append_double(dst, key, -1, 0);
			else
				ok = bson_append_int64(dst, key, -1, 0);
			goto out;
		}
		const struct cn_value *p = &w->params[pi];
		char num[64];
		if (p->kind == CN_VAL_TEXT || p->kind == CN_VAL_NUMERIC) {
			rc = append_typed_text(w, dst, key, which, p->u.s.ptr ? p->u.s.ptr : "", p->u.s.len,
					       true, pi);
		} else if (p->kind == CN_VAL_INT && !strcmp(which, "$date")) {
			ok = bson_append_date_time(dst, key, -1, p->u.i);
		} else if (p->kind == CN_VAL_INT && strcmp(which, "$oid") && strcmp(which, "$uuid")) {
			snprintf(num, sizeof num, "%" PRId64, p->u.i);
			rc = append_typed_text(w, dst, key, which, num, strlen(num), true, pi);
		} else if (p->kind == CN_VAL_DOUBLE &&
			   (!strcmp(which, "$numberDecimal") || !strcmp(which, "$numberDouble"))) {
			snprintf(num, sizeof num, "%.17g", p->u.d);
			rc = !strcmp(which, "$numberDouble") ? (bson_append_double(dst, key, -1, p->u.d) ? CN_OK : too_big(w))
							     : append_typed_text(w, dst, key, which, num, strlen(num), true, pi);
		} else {
			rc = bad_param(w, "parameters[%d] cannot become %s", pi, which);
		}
	} else if (!strcmp(which, "$date") && a->kind == MJ_INT) {
		ok = bson_append_date_time(dst, key, -1, a->v.i);
	} else if (!strcmp(which, "$date") && a->kind == MJ_OBJECT && a->count == 1 &&
		   !strcmp(a->first->key, "$numberLong") && a->first->kind == MJ_STRING) {
		int64_t msv;
		char buf[32], *end;
		if (a->first->len == 0 || a->first->len >= sizeof buf) {
			rc = reject(w, CN_REJECT_SYNTAX, "$numberLong holds an integer as text");
			goto out;
		}
		memcpy(buf, a->first->str, a->first->len + 1);
		errno = 0;
		msv = strtoll(buf, &end, 10);
		if (errno || *end) {
			rc = reject(w, CN_REJECT_SYNTAX, "$numberLong holds an integer as text");
			goto out;
		}
		ok = bson_append_date_time(dst, key, -1, msv);
	} else if (!strcmp(which, "$minKey") || !strcmp(which, "$maxKey")) {
		if (a->kind != MJ_INT || a->v.i != 1)
			rc = reject(w, CN_REJECT_SYNTAX, "write {\"%s\": 1}", which);
		else
			ok = which[2] == 'i' ? bson_append_minkey(dst, key, -1) : bson_append_maxkey(dst, key, -1);
	} else if (!strcmp(which, "$timestamp")) {
		const struct mj_node *t = mj_get(a, "t"), *i = mj_get(a, "i");
		if (a->kind != MJ_OBJECT || a->count != 2 || !t || !i || t->kind != MJ_INT ||
		    i->kind != MJ_INT || t->v.i < 0 || t->v.i > UINT32_MAX || i->v.i < 0 || i->v.i > UINT32_MAX)
			rc = reject(w, CN_REJECT_SYNTAX,
				    "write {\"$timestamp\": {\"t\": seconds, \"i\": increment}}");
		else
			ok = bson_append_timestamp(dst, key, -1, (uint32_t)t->v.i, (uint32_t)i->v.i);
	} else if (!strcmp(which, "$regularExpression")) {
		const struct mj_node *pat = mj_get(a, "pattern"), *opt = mj_get(a, "options");
		if (a->kind != MJ_OBJECT || a->count != 2 || !pat || !opt || pat->kind != MJ_STRING ||
		    opt->kind != MJ_STRING || strspn(opt->str, "ilmsux") != opt->len)
			rc = reject(w, CN_REJECT_SYNTAX, "write {\"$regularExpression\": {\"pattern\": "
				    "\"...\", \"options\": \"i\"}} (options from ilmsux)");
		else
			ok = bson_append_regex(dst, key, -1, pat->str, opt->str);
	} else if (!strcmp(which, "$binary")) {
		const struct mj_node *b64 = mj_get(a, "base64"), *st = mj_get(a, "subType");
		int sub = 0;
		if (a->kind != MJ_OBJECT || a->count != 2 || !b64 || !st || b64->kind != MJ_STRING ||
		    st->kind != MJ_STRING || st->len < 1 || st->len > 2 ||
		    (sub = (int)strtol(st->str, NULL, 16), text_hex_digit((unsigned char)st->str[0]) < 0) ||
		    (st->len == 2 && text_hex_digit((unsigned char)st->str[1]) < 0) || sub == BSON_SUBTYPE_ENCRYPTED) {
			rc = reject(w, CN_REJECT_SYNTAX,
				    "write {\"$binary\": {\"base64\": \"...\", \"subType\": \"00\"}}");
		} else {
			uint8_t *bytes = NULL;
			size_t blen = 0;
			int drc = base64_decode(b64->str, b64->len, &bytes, &blen);
			if (drc == CN_ENOMEM)
				rc = w->rc = cn_error_set(w->err, CN_ENOMEM, "out of memory");
			else if (drc)
				rc = reject(w, CN_REJECT_SYNTAX, "base64 is not valid base64");
			else
				ok = bson_append_binary(dst, key, -1, (bson_subtype_t)sub, bytes, (uint32_t)blen);
			free(bytes);
		}
	} else if (a->kind == MJ_STRING) {
		rc = append_typed_text(w, dst, key, which, a->str, a->len, false, 0);
	} else {
		rc = reject(w, CN_REJECT_SYNTAX, "%s takes its value as text (or {\"$param\": N})", which);
	}
out:
	if (rc == CN_OK && !ok)
		rc = too_big(w);
	pop(w, mark);
	return rc;
}

/* ---- literal values ---- */

static int literal(struct walk *w, bson_t *dst, const char *key, const struct mj_node *v);

static int literal_container(struct walk *w, bson_t *dst, const char *key, const struct mj_node *v)
{
	bson_t child;
	bool arr = v->kind == MJ_ARRAY;
	if (!(arr ? bson_append_array_begin(dst, key, -1, &child)
		  : bson_append_document_begin(dst, key, -1, &child)))
		return too_big(w);
	size_t i = 0;
	char buf[16];
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next, i++) {
		size_t mark = arr ? push_index(w, i) : push_key(w, m->key);
		if (!arr && m->key[0] == '$')
			reject(w, CN_REJECT_SYNTAX,
			       "an operator cannot stand inside a value (%s); write the value plainly",
			       m->key);
		else
			literal(w, &child, arr ? index_key(i, buf, sizeof buf) : m->key, m);
		pop(w, mark);
	}
	if (!(arr ? bson_append_array_end(dst, &child) : bson_append_document_end(dst, &child)))
		return too_big(w);
	return w->rc;
}

/* A value: a scalar, a parameter, a type wrapper, or a document or array of
 * values. */
static int literal(struct walk *w, bson_t *dst, const char *key, const struct mj_node *v)
{
	if (w->rc)
		return w->rc;
	if (v->kind == MJ_OBJECT) {
		if (is_param(v)) {
			int i;
			return param_ref(w, v, &i) ? w->rc : append_param_value(w, dst, key, i);
		}
		if (is_wrapper(v))
			return append_wrapper(w, dst, key, v);
		return literal_container(w, dst, key, v);
	}
	if (v->kind == MJ_ARRAY)
		return literal_container(w, dst, key, v);
	return append_node_scalar(w, dst, key, v);
}

/* ---- expressions ---- */

static int expr(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
		const struct mj_node *v);

static int variable(struct walk *w, const struct scope *sc, const char *ref)
{
	const char *dot = strchr(ref, '.');
	size_t n = dot ? (size_t)(dot - ref) : strlen(ref);
	char name[64];
	if (n == 0 || n >= sizeof name)
		return reject(w, CN_REJECT_SYNTAX, "'$$%.60s' is not a variable", ref);
	memcpy(name, ref, n);
	name[n] = '\0';
	if (!strcmp(name, "ROOT") || !strcmp(name, "CURRENT")) {
		if (!dot)
			return whole_document(w, sc, strcmp(name, "ROOT") ? "$$CURRENT" : "$$ROOT");
		return field(w, sc, dot + 1, USE_READ);
	}
	if (!strcmp(name, "NOW") || !strcmp(name, "CLUSTER_TIME") || !strcmp(name, "REMOVE"))
		return CN_OK;
	if (isupper((unsigned char)name[0]))
		return reject(w, CN_REJECT_DENIED, "the system variable $$%s is not allowed", name);
	return CN_OK; /* a variable the query binds ($let, $map, let, ...) */
}

/* A string in an expression: "$path", "$$var" or text. */
static int expr_string(struct walk *w, const struct scope *sc, const struct mj_node *v)
{
	if (v->str[0] != '$')
		return CN_OK;
	if (v->str[1] == '$')
		return variable(w, sc, v->str + 2);
	if (!v->str[1])
		return reject(w, CN_REJECT_SYNTAX,
			      "'$' alone is not a field path; write {\"$literal\": \"$\"} for the text");
	return field(w, sc, v->str + 1, USE_READ);
}

/* {name: expression, ...}: a document built from expressions, or the named
 * arguments of an operator. */
static int expr_object(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
		       const struct mj_node *v)
{
	bson_t child;
	if (!bson_append_document_begin(dst, key, -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		if (m->key[0] == '$')
			reject(w, CN_REJECT_SYNTAX, "an object with an operator holds only that operator; "
			       "%s stands beside other keys", m->key);
		else
			expr(w, sc, &child, m->key, m);
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

static int expr_array(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
		      const struct mj_node *v)
{
	bson_t child;
	char buf[16];
	if (!bson_append_array_begin(dst, key, -1, &child))
		return too_big(w);
	size_t i = 0;
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next, i++) {
		size_t mark = push_index(w, i);
		expr(w, sc, &child, index_key(i, buf, sizeof buf), m);
		pop(w, mark);
	}
	if (!bson_append_array_end(dst, &child))
		return too_big(w);
	return w->rc;
}

/* Named arguments with a shape of their own: each key in allowed; exprs
 * lists the keys whose values are expressions, names the keys that hold a
 * new name (a variable); any other allowed key is a literal value. */
struct argspec {
	const char *const *allowed;
	const char *const *exprs;
	const char *const *names;
	const char *const *required;
	const char *const *sorts; /* sort specifications on fields of the documents */
};

static bool in_null_list(const char *const *list, const char *s)
{
	for (; list && *list; list++)
		if (!strcmp(*list, s))
			return true;
	return false;
}

static int sort_spec(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
		     const struct mj_node *v);

static int named_args(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
		      const struct mj_node *v, const char *op, const struct argspec *spec)
{
	if (v->kind != MJ_OBJECT || is_param(v))
		return reject(w, CN_REJECT_SYNTAX, "%s takes an object of named arguments", op);
	for (const char *const *r = spec->required; r && *r; r++)
		if (!mj_get(v, *r))
			return reject(w, CN_REJECT_SYNTAX, "%s needs its '%s' argument", op, *r);
	bson_t child;
	if (!bson_append_document_begin(dst, key, -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		if (!in_null_list(spec->allowed, m->key))
			reject(w, CN_REJECT_SYNTAX, "%s has no argument '%s'", op, m->key);
		else if (in_null_list(spec->exprs, m->key))
			expr(w, sc, &child, m->key, m);
		else if (in_null_list(spec->names, m->key))
		{
			if (!new_name(w, m, true))
				append_node_scalar(w, &child, m->key, m);
		}
		else if (in_null_list(spec->sorts, m->key))
			sort_spec(w, sc, &child, m->key, m);
		else
			literal(w, &child, m->key, m);
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

static int op_let(struct walk *w, const struct scope *sc, bson_t *dst, const struct mj_node *arg)
{
	const struct mj_node *vars = mj_get(arg, "vars"), *in = mj_get(arg, "in");
	if (arg->kind != MJ_OBJECT || arg->count != 2 || !vars || !in || vars->kind != MJ_OBJECT)
		return reject(w, CN_REJECT_SYNTAX,
			      "$let takes {\"vars\": {name: expression}, \"in\": expression}");
	bson_t child, vdoc;
	if (!bson_append_document_begin(dst, "$let", -1, &child) ||
	    !bson_append_document_begin(&child, "vars", -1, &vdoc))
		return too_big(w);
	size_t m0 = push_key(w, "vars");
	for (const struct mj_node *m = vars->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		if (!(islower((unsigned char)m->key[0]) || (unsigned char)m->key[0] >= 0x80))
			reject(w, CN_REJECT_SYNTAX, "variable names start with a lower-case letter");
		else
			expr(w, sc, &vdoc, m->key, m);
		pop(w, mark);
	}
	pop(w, m0);
	if (!bson_append_document_end(&child, &vdoc))
		return too_big(w);
	size_t m1 = push_key(w, "in");
	expr(w, sc, &child, "in", in);
	pop(w, m1);
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

/* $getField / $setField / $unsetField: the field is a name written in the
 * query; without an input it is read from the current document. */
static int op_field(struct walk *w, const struct scope *sc, bson_t *dst, const char *op,
		    const struct mj_node *arg)
{
	const struct mj_node *f = arg, *input = NULL;
	if (arg->kind == MJ_OBJECT && !is_param(arg)) {
		f = mj_get(arg, "field");
		input = mj_get(arg, "input");
		for (const struct mj_node *m = arg->first; m; m = m->next)
			if (strcmp(m->key, "field") && strcmp(m->key, "input") &&
			    !(strcmp(m->key, "value") == 0 && strcmp(op, "$setField") == 0))
				return reject(w, CN_REJECT_SYNTAX, "%s has no argument '%s'", op, m->key);
		if (!f)
			return reject(w, CN_REJECT_SYNTAX, "%s needs its 'field' argument", op);
	}
	if (f->kind == MJ_OBJECT && f->count == 1 && !strcmp(f->first->key, "$literal") &&
	    f->first->kind == MJ_STRING)
		f = f->first;
	if (f->kind != MJ_STRING || f->str[0] == '$')
		return reject(w, CN_REJECT_SYNTAX,
			      "the field of %s is a name written in the query (a string)", op);
	if (!input && (!strcmp(op, "$getField")) && sc->coll) {
		/* a name with dots is one field here, not a path */
		if (hidden_field(w, sc->coll, f->str) || holds_hidden(w, sc->coll, f->str))
			return reject(w, CN_REJECT_HIDDEN,
				      "field '%.100s' of '%.100s' is hidden or holds hidden fields", f->str,
				      sc->coll);
	}
	if (arg->kind != MJ_OBJECT)
		return append_node_scalar(w, dst, op, f);
	return named_args(w, sc, dst, op, arg, op,
			  &(struct argspec){LIST("field", "input", "value"), LIST("input", "value"), NULL,
					    LIST("field"), NULL});
}

/* One operator object {op: arg}. */
static int expr_operator(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
			 const struct mj_node *v)
{
	const struct mj_node *arg = v->first;
	const char *op = arg->key;
	const struct reason *denied = REASON(denied_ops, op);
	if (denied)
		return reject(w, denied->cls, "%s is not allowed: %s", op, denied->why);
	if (!IN_LIST(expr_ops, op))
		return reject(w, CN_REJECT_DENIED, "%s is not an expression operator the connector accepts",
			      op);
	bson_t child;
	if (!bson_append_document_begin(dst, key, -1, &child))
		return too_big(w);
	size_t mark = push_key(w, op);
	if (!strcmp(op, "$literal"))
		literal(w, &child, op, arg);
	else if (!strcmp(op, "$let"))
		op_let(w, sc, &child, arg);
	else if (!strcmp(op, "$map"))
		named_args(w, sc, &child, op, arg, op,
			   &(struct argspec){LIST("input", "as", "in"), LIST("input", "in"), LIST("as"),
					     LIST("input", "in"), NULL});
	else if (!strcmp(op, "$filter"))
		named_args(w, sc, &child, op, arg, op,
			   &(struct argspec){LIST("input", "as", "cond", "limit"),
					     LIST("input", "cond", "limit"), LIST("as"), LIST("input", "cond"), NULL});
	else if (!strcmp(op, "$reduce"))
		named_args(w, sc, &child, op, arg, op,
			   &(struct argspec){LIST("input", "initialValue", "in"),
					     LIST("input", "initialValue", "in"), NULL,
					     LIST("input", "initialValue", "in"), NULL});
	else if (!strcmp(op, "$sortArray"))
		named_args(w, sc, &child, op, arg, op,
			   &(struct argspec){LIST("input", "sortBy"), LIST("input"), NULL,
					     LIST("input", "sortBy"), NULL});
	else if (!strcmp(op, "$getField") || !strcmp(op, "$setField") || !strcmp(op, "$unsetField"))
		op_field(w, sc, &child, op, arg);
	else if (!strcmp(op, "$meta")) {
		if (arg->kind != MJ_STRING)
			reject(w, CN_REJECT_SYNTAX, "$meta takes a name such as \"textScore\"");
		else
			append_node_scalar(w, &child, op, arg);
	} else
		expr(w, sc, &child, op, arg);
	pop(w, mark);
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

static int expr(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
		const struct mj_node *v)
{
	if (w->rc)
		return w->rc;
	switch (v->kind) {
	case MJ_STRING:
		if (expr_string(w, sc, v))
			return w->rc;
		return append_node_scalar(w, dst, key, v);
	case MJ_ARRAY:
		return expr_array(w, sc, dst, key, v);
	case MJ_OBJECT:
		if (is_param(v)) {
			int i;
			return param_ref(w, v, &i) ? w->rc : append_param_literal(w, dst, key, i);
		}
		if (is_wrapper(v))
			return append_wrapper(w, dst, key, v);
		if (v->count > 0 && v->first->key[0] == '$') {
			if (v->count != 1)
				return reject(w, CN_REJECT_SYNTAX, "an operator object holds exactly one "
					      "operator; this one has %zu keys", v->count);
			return expr_operator(w, sc, dst, key, v);
		}
		return expr_object(w, sc, dst, key, v);
	default:
		return append_node_scalar(w, dst, key, v);
	}
}

/* ---- queries ---- */

static int query(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
		 const struct mj_node *v, const char *prefix);

static const char *const cmp_ops[] = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"};
static const char *const geo_shapes[] = {"$geometry", "$box", "$polygon", "$center",
					 "$centerSphere", "$maxDistance", "$minDistance"};

/* A value of a geo operator: documents may hold $geometry and the legacy
 * shapes, and values. */
static int geo_value(struct walk *w, bson_t *dst, const char *key, const struct mj_node *v)
{
	if (v->kind != MJ_OBJECT || is_param(v) || is_wrapper(v))
		return literal(w, dst, key, v);
	bson_t child;
	if (!bson_append_document_begin(dst, key, -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		if (m->key[0] == '$' && !IN_LIST(geo_shapes, m->key))
			reject(w, CN_REJECT_DENIED, "%s is not a geometry operator", m->key);
		else
			literal(w, &child, m->key, m);
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

/* The condition on one field: an operator object or a value. */
static int condition(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
		     const struct mj_node *v, const char *path)
{
	if (v->kind != MJ_OBJECT || is_param(v) || is_wrapper(v) || v->count == 0 ||
	    v->first->key[0] != '$')
		return literal(w, dst, key, v);
	bson_t child;
	char buf[16];
	if (!bson_append_document_begin(dst, key, -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		const char *op = m->key;
		size_t mark = push_key(w, op);
		const struct reason *denied = REASON(denied_ops, op);
		if (op[0] != '$') {
			reject(w, CN_REJECT_SYNTAX,
			       "a condition holds operators only; '%s' stands beside them", op);
		} else if (denied) {
			reject(w, denied->cls, "%s is not allowed: %s", op, denied->why);
		} else if (IN_LIST(cmp_ops, op) || !strcmp(op, "$size") || !strcmp(op, "$exists") ||
			   !strcmp(op, "$type") || !strcmp(op, "$mod") || !strcmp(op, "$options") ||
			   !strcmp(op, "$bitsAllSet") || !strcmp(op, "$bitsAnySet") ||
			   !strcmp(op, "$bitsAllClear") || !strcmp(op, "$bitsAnyClear") ||
			   !strcmp(op, "$maxDistance") || !strcmp(op, "$minDistance")) {
			literal(w, &child, op, m);
		} else if (!strcmp(op, "$regex")) {
			if (m->kind != MJ_STRING && !is_param(m) && !is_wrapper(m))
				reject(w, CN_REJECT_SYNTAX, "$regex takes a pattern (a string)");
			else
				literal(w, &child, op, m);
		} else if (!strcmp(op, "$in") || !strcmp(op, "$nin") || !strcmp(op, "$all")) {
			if (m->kind != MJ_ARRAY) {
				reject(w, CN_REJECT_SYNTAX, "%s takes an array of values", op);
			} else {
				bson_t arr;
				if (!bson_append_array_begin(&child, op, -1, &arr)) {
					too_big(w);
				} else {
					size_t i = 0;
					for (const struct mj_node *it = m->first; it && !w->rc; it = it->next, i++) {
						size_t mk = push_index(w, i);
						if (!strcmp(op, "$all") && it->kind == MJ_OBJECT && it->count == 1 &&
						    !strcmp(it->first->key, "$elemMatch"))
							condition(w, sc, &arr, index_key(i, buf, sizeof buf), it, path);
						else
							literal(w, &arr, index_key(i, buf, sizeof buf), it);
						pop(w, mk);
					}
					if (!bson_append_array_end(&child, &arr))
						too_big(w);
				}
			}
		} else if (!strcmp(op, "$not")) {
			if (m->kind == MJ_OBJECT && !is_wrapper(m) && !is_param(m))
				condition(w, sc, &child, op, m, path);
			else if (is_wrapper(m) && !strcmp(m->first->key, "$regularExpression"))
				literal(w, &child, op, m);
			else
				reject(w, CN_REJECT_SYNTAX,
				       "$not takes an operator object or a regular expression");
		} else if (!strcmp(op, "$elemMatch")) {
			if (m->kind != MJ_OBJECT || is_param(m) || is_wrapper(m))
				reject(w, CN_REJECT_SYNTAX, "$elemMatch takes a query object");
			else if (m->count > 0 && m->first->key[0] == '$' &&
				 strcmp(m->first->key, "$and") && strcmp(m->first->key, "$or") &&
				 strcmp(m->first->key, "$nor") && strcmp(m->first->key, "$expr"))
				condition(w, sc, &child, op, m, path); /* conditions on the elements */
			else
				query(w, sc, &child, op, m, path);      /* fields of the elements */
		} else if (!strcmp(op, "$geoWithin") || !strcmp(op, "$geoIntersects") ||
			   !strcmp(op, "$near") || !strcmp(op, "$nearSphere")) {
			geo_value(w, &child, op, m);
		} else if (!strcmp(op, "$geometry")) {
			literal(w, &child, op, m);
		} else {
			reject(w, CN_REJECT_DENIED, "%s is not a query operator the connector accepts", op);
		}
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

/* {"$search": "words", "$language": ..., "$caseSensitive": ..., "$diacriticSensitive": ...} */
static int text_search(struct walk *w, bson_t *dst, const struct mj_node *v)
{
	static const char *const keys[] = {"$search", "$language", "$caseSensitive",
					   "$diacriticSensitive"};
	if (v->kind != MJ_OBJECT || !mj_get(v, "$search"))
		return reject(w, CN_REJECT_SYNTAX, "$text takes {\"$search\": \"words\"}");
	bson_t child;
	if (!bson_append_document_begin(dst, "$text", -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		if (!IN_LIST(keys, m->key))
			reject(w, CN_REJECT_SYNTAX, "$text has no argument '%s'", m->key);
		else if (m->kind == MJ_OBJECT && !is_param(m))
			reject(w, CN_REJECT_SYNTAX, "%s takes a single value", m->key);
		else
			literal(w, &child, m->key, m);
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

static int query_list(struct walk *w, const struct scope *sc, bson_t *dst, const char *op,
		      const struct mj_node *v, const char *prefix)
{
	if (v->kind != MJ_ARRAY || v->count == 0)
		return reject(w, CN_REJECT_SYNTAX, "%s takes a non-empty array of queries", op);
	bson_t arr;
	char buf[16];
	if (!bson_append_array_begin(dst, op, -1, &arr))
		return too_big(w);
	size_t i = 0;
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next, i++) {
		size_t mark = push_index(w, i);
		query(w, sc, &arr, index_key(i, buf, sizeof buf), m, prefix);
		pop(w, mark);
	}
	if (!bson_append_array_end(dst, &arr))
		return too_big(w);
	return w->rc;
}

/* A query document; prefix: the array field whose elements $elemMatch tests. */
static int query(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
		 const struct mj_node *v, const char *prefix)
{
	if (w->rc)
		return w->rc;
	if (v->kind != MJ_OBJECT || is_param(v) || is_wrapper(v))
		return reject(w, CN_REJECT_SYNTAX, "must be a query object, not %s", mj_kind_name(v->kind));
	bson_t child;
	if (!bson_append_document_begin(dst, key, -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		const char *k = m->key;
		size_t mark = push_key(w, k);
		const struct reason *denied = REASON(denied_ops, k);
		if (denied) {
			reject(w, denied->cls, "%s is not allowed: %s", k, denied->why);
		} else if (!strcmp(k, "$and") || !strcmp(k, "$or") || !strcmp(k, "$nor")) {
			query_list(w, sc, &child, k, m, prefix);
		} else if (!strcmp(k, "$expr")) {
			expr(w, sc, &child, k, m);
		} else if (!strcmp(k, "$comment")) {
			if (m->kind != MJ_STRING)
				reject(w, CN_REJECT_SYNTAX, "$comment takes a string");
			else
				append_node_scalar(w, &child, k, m);
		} else if (!strcmp(k, "$sampleRate")) {
			literal(w, &child, k, m);
		} else if (!strcmp(k, "$text")) {
			if (sc->coll && holds_hidden(w, sc->coll, ""))
				reject(w, CN_REJECT_HIDDEN, "$text searches every text-indexed field of "
				       "'%.100s', which has hidden fields; use $regex on the fields you need",
				       sc->coll);
			else
				text_search(w, &child, m);
		} else if (!strcmp(k, "$jsonSchema")) {
			reject(w, CN_REJECT_DENIED,
			       "$jsonSchema in a query is not accepted; write the conditions as fields");
		} else if (k[0] == '$') {
			reject(w, CN_REJECT_DENIED,
			       "%s is not a top-level query operator the connector accepts", k);
		} else {
			char full[MG_MAX_PATH + 2];
			if (prefix && *prefix)
				snprintf(full, sizeof full, "%s.%s", prefix, k);
			else
				snprintf(full, sizeof full, "%s", k);
			if (!field(w, sc, full, USE_READ))
				condition(w, sc, &child, k, m, full);
		}
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

/* ---- projections, sorts, hints, collations, let ---- */

struct proj_state {
	bool inclusion;    /* names fields to keep, or computes them */
	bool keeps_hidden; /* keeps a field that holds hidden fields */
	bool id_excluded;
};

static bool truthy(const struct mj_node *v)
{
	return v->kind == MJ_BOOL ? v->v.b : v->kind == MJ_INT ? v->v.i != 0 : v->v.d != 0;
}

static int projection_doc(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
			  const struct mj_node *v, bool aggregate, const char *prefix,
			  struct proj_state *ps)
{
	if (v->kind != MJ_OBJECT || is_param(v) || is_wrapper(v))
		return reject(w, CN_REJECT_SYNTAX, "a projection is an object of field names");
	bson_t child;
	if (!bson_append_document_begin(dst, key, -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		const char *k = m->key;
		size_t mark = push_key(w, k);
		char full[MG_MAX_PATH + 2];
		snprintf(full, sizeof full, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", k);
		if (k[0] == '$') {
			reject(w, CN_REJECT_SYNTAX, "a projection names fields; %s is an operator", k);
		} else if (m->kind == MJ_BOOL || m->kind == MJ_INT || m->kind == MJ_DOUBLE) {
			if (truthy(m)) {
				if (!field(w, sc, full, USE_INCLUDE)) {
					if (sc->coll && holds_hidden(w, sc->coll, full))
						ps->keeps_hidden = true;
					if (strcmp(full, "_id"))
						ps->inclusion = true;
				}
			} else if (!strcmp(full, "_id")) {
				ps->id_excluded = true;
			}
			if (!w->rc)
				append_node_scalar(w, &child, k, m);
		} else if (m->kind == MJ_OBJECT && !is_param(m) && !is_wrapper(m) && m->count == 1 &&
			   !aggregate && (!strcmp(m->first->key, "$elemMatch") || !strcmp(m->first->key, "$slice"))) {
			/* find's projection operators on an array field */
			const struct mj_node *op = m->first;
			if (!field(w, sc, full, USE_INCLUDE)) {
				if (sc->coll && holds_hidden(w, sc->coll, full))
					ps->keeps_hidden = true;
				bson_t o;
				if (!bson_append_document_begin(&child, k, -1, &o)) {
					too_big(w);
				} else {
					size_t mk = push_key(w, op->key);
					if (!strcmp(op->key, "$elemMatch")) {
						ps->inclusion = true;
						query(w, sc, &o, op->key, op, full);
					} else if (op->kind == MJ_INT ||
						   (op->kind == MJ_ARRAY && op->count == 2 &&
						    op->first->kind == MJ_INT && op->first->next->kind == MJ_INT)) {
						literal(w, &o, op->key, op);
					} else {
						reject(w, CN_REJECT_SYNTAX,
						       "$slice takes a count or [skip, count]");
					}
					pop(w, mk);
					if (!bson_append_document_end(&child, &o))
						too_big(w);
				}
			}
		} else if (m->kind == MJ_OBJECT && !is_param(m) && !is_wrapper(m) && m->count > 0 &&
			   m->first->key[0] != '$') {
			projection_doc(w, sc, &child, k, m, aggregate, full, ps); /* a sub-document */
		} else {
			ps->inclusion = true; /* a computed field */
			expr(w, sc, &child, k, m);
		}
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

/* A projection; *sealed: the result holds only named or computed fields and
 * nothing hidden travels with them. */
static int projection(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
		      const struct mj_node *v, bool aggregate, bool *sealed)
{
	struct proj_state ps = {0};
	if (projection_doc(w, sc, dst, key, v, aggregate, NULL, &ps))
		return w->rc;
	bool id_hides = sc->coll && (hidden_field(w, sc->coll, "_id") || holds_hidden(w, sc->coll, "_id"));
	*sealed = ps.inclusion && !ps.keeps_hidden && (ps.id_excluded || !id_hides);
	return CN_OK;
}

static int sort_spec(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
		     const struct mj_node *v)
{
	if (v->kind != MJ_OBJECT || is_param(v) || is_wrapper(v) || v->count == 0)
		return reject(w, CN_REJECT_SYNTAX, "a sort is an object of field names with 1 or -1");
	bson_t child;
	if (!bson_append_document_begin(dst, key, -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		if (m->key[0] == '$')
			reject(w, CN_REJECT_SYNTAX, "a sort names fields; %s is an operator", m->key);
		else if (field(w, sc, m->key, USE_READ))
			;
		else if ((m->kind == MJ_INT || m->kind == MJ_DOUBLE) && (m->kind == MJ_INT ? (m->v.i == 1 || m->v.i == -1)
									  : (m->v.d == 1 || m->v.d == -1)))
			append_node_scalar(w, &child, m->key, m);
		else if (m->kind == MJ_OBJECT && m->count == 1 && !strcmp(m->first->key, "$meta") &&
			 m->first->kind == MJ_STRING) {
			bson_t meta;
			if (!bson_append_document_begin(&child, m->key, -1, &meta) ||
			    !bson_append_utf8(&meta, "$meta", -1, m->first->str, (int)m->first->len) ||
			    !bson_append_document_end(&child, &meta))
				too_big(w);
		} else
			reject(w, CN_REJECT_SYNTAX,
			       "sort by 1 (ascending), -1 (descending) or {\"$meta\": \"textScore\"}");
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

static int hint(struct walk *w, const struct scope *sc, bson_t *dst, const struct mj_node *v)
{
	if (v->kind == MJ_STRING)
		return append_node_scalar(w, dst, "hint", v);
	if (v->kind != MJ_OBJECT || is_param(v) || is_wrapper(v))
		return reject(w, CN_REJECT_SYNTAX, "a hint is an index name or an index key pattern");
	bson_t child;
	if (!bson_append_document_begin(dst, "hint", -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		if (m->key[0] == '$' && strcmp(m->key, "$natural"))
			reject(w, CN_REJECT_SYNTAX, "an index key pattern names fields");
		else if ((m->key[0] == '$' || !field(w, sc, m->key, USE_INCLUDE)) &&
			 (m->kind == MJ_OBJECT || m->kind == MJ_ARRAY))
			reject(w, CN_REJECT_SYNTAX, "an index key is 1, -1 or an index type name");
		else if (!w->rc)
			append_node_scalar(w, &child, m->key, m);
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

static int collation(struct walk *w, bson_t *dst, const struct mj_node *v)
{
	static const char *const keys[] = {"locale", "caseLevel", "caseFirst", "strength",
					   "numericOrdering", "alternate", "maxVariable",
					   "normalization", "backwards"};
	if (v->kind != MJ_OBJECT || is_param(v))
		return reject(w, CN_REJECT_SYNTAX, "a collation is an object such as {\"locale\": \"fr\"}");
	bson_t child;
	if (!bson_append_document_begin(dst, "collation", -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		if (!IN_LIST(keys, m->key))
			reject(w, CN_REJECT_SYNTAX, "collations have no option '%s'", m->key);
		else if (m->kind == MJ_OBJECT || m->kind == MJ_ARRAY)
			reject(w, CN_REJECT_SYNTAX, "a collation option is a single value");
		else
			append_node_scalar(w, &child, m->key, m);
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

static int let_vars(struct walk *w, const struct scope *sc, bson_t *dst, const struct mj_node *v)
{
	if (v->kind != MJ_OBJECT || is_param(v))
		return reject(w, CN_REJECT_SYNTAX, "let is an object of variable names and expressions");
	bson_t child;
	if (!bson_append_document_begin(dst, "let", -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		if (!(islower((unsigned char)m->key[0]) || (unsigned char)m->key[0] >= 0x80))
			reject(w, CN_REJECT_SYNTAX, "variable names start with a lower-case letter");
		else
			expr(w, sc, &child, m->key, m);
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

/* A count ($limit, skip, ...): a non-negative integer (positive when
 * positive is set), or a parameter that is one. */
static int count_value(struct walk *w, bson_t *dst, const char *key, const struct mj_node *v,
		       bool positive)
{
	if (is_param(v)) {
		int i;
		if (param_ref(w, v, &i))
			return w->rc;
		if (i >= 0 && (w->params[i].kind != CN_VAL_INT || w->params[i].u.i < (positive ? 1 : 0)))
			return bad_param(w, "parameters[%d] must be a%s integer here", i,
					 positive ? " positive" : " non-negative");
		return append_param_value(w, dst, key, i);
	}
	if (v->kind != MJ_INT || v->v.i < (positive ? 1 : 0))
		return reject(w, CN_REJECT_SYNTAX, "must be a%s integer",
			      positive ? " positive" : " non-negative");
	return append_node_scalar(w, dst, key, v);
}

static int comment(struct walk *w, bson_t *dst, const struct mj_node *v)
{
	if (v->kind != MJ_STRING)
		return reject(w, CN_REJECT_SYNTAX, "a comment is a string");
	return append_node_scalar(w, dst, "comment", v);
}

/* ---- pipelines ---- */

static int pipeline(struct walk *w, struct scope *sc, bson_t *dst, const char *key,
		    const struct mj_node *v);

static int accumulator(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
		       const struct mj_node *v, bool window)
{
	if (v->kind != MJ_OBJECT || is_param(v) || v->count == 0 || v->count > (window ? 2u : 1u))
		return reject(w, CN_REJECT_SYNTAX,
			      window ? "an output field is {\"$operator\": argument, \"window\": {...}}"
				     : "an output field is {\"$accumulator-operator\": expression}");
	bson_t child;
	if (!bson_append_document_begin(dst, key, -1, &child))
		return too_big(w);
	bool have_op = false;
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		const char *op = m->key;
		size_t mark = push_key(w, op);
		const struct reason *denied = REASON(denied_ops, op);
		if (window && !strcmp(op, "window")) {
			if (m->kind != MJ_OBJECT)
				reject(w, CN_REJECT_SYNTAX,
				       "window is an object such as {\"documents\": [-1, 0]}");
			else
				literal(w, &child, op, m);
		} else if (denied) {
			reject(w, denied->cls, "%s is not allowed: %s", op, denied->why);
		} else if (have_op || !(IN_LIST(accumulators, op) || (window && IN_LIST(window_ops, op)))) {
			reject(w, CN_REJECT_DENIED, "%s is not an accumulator the connector accepts here",
			       op);
		} else if (!strcmp(op, "$top") || !strcmp(op, "$bottom") || !strcmp(op, "$topN") ||
			   !strcmp(op, "$bottomN")) {
			have_op = true;
			named_args(w, sc, &child, op, m, op,
				   &(struct argspec){LIST("sortBy", "output", "n"), LIST("output", "n"), NULL,
						     LIST("sortBy", "output"), LIST("sortBy")});
		} else {
			have_op = true;
			expr(w, sc, &child, op, m);
		}
		pop(w, mark);
	}
	if (!w->rc && !have_op)
		reject(w, CN_REJECT_SYNTAX, "an output field needs an operator");
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

/* {field: accumulator, ...} of $group (besides _id), $bucket, $bucketAuto. */
static int outputs(struct walk *w, const struct scope *sc, bson_t *dst, const char *key,
		   const struct mj_node *v, bool window, bool skip_id)
{
	if (v->kind != MJ_OBJECT || is_param(v))
		return reject(w, CN_REJECT_SYNTAX, "must be an object of output fields");
	bson_t child;
	if (!bson_append_document_begin(dst, key, -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		if (skip_id && !strcmp(m->key, "_id"))
			expr(w, sc, &child, m->key, m);
		else if (m->key[0] == '$')
			reject(w, CN_REJECT_SYNTAX, "output field names cannot start with '$'");
		else if (window && field(w, sc, m->key, USE_INCLUDE))
			;
		else
			accumulator(w, sc, &child, m->key, m, window);
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

/* A stage's object of named arguments, each handled by handle(). */
typedef int (*arg_fn)(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *m,
		      void *ctx);

static int stage_args(struct walk *w, struct scope *sc, bson_t *dst, const char *stage,
		      const struct mj_node *v, const char *const *allowed, const char *const *required,
		      arg_fn handle, void *ctx)
{
	if (v->kind != MJ_OBJECT || is_param(v))
		return reject(w, CN_REJECT_SYNTAX, "%s takes an object", stage);
	for (const char *const *r = required; r && *r; r++)
		if (!mj_get(v, *r))
			return reject(w, CN_REJECT_SYNTAX, "%s needs '%s'", stage, *r);
	bson_t child;
	if (!bson_append_document_begin(dst, stage, -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		if (!in_null_list(allowed, m->key))
			reject(w, CN_REJECT_SYNTAX, "%s has no argument '%s'", stage, m->key);
		else
			handle(w, sc, &child, m, ctx);
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

static int field_list(struct walk *w, const struct scope *sc, bson_t *dst, const struct mj_node *m)
{
	if (m->kind != MJ_ARRAY)
		return reject(w, CN_REJECT_SYNTAX, "must be an array of field names");
	char buf[16];
	size_t i = 0;
	bson_t arr;
	if (!bson_append_array_begin(dst, m->key, -1, &arr))
		return too_big(w);
	for (const struct mj_node *it = m->first; it && !w->rc; it = it->next, i++) {
		size_t mark = push_index(w, i);
		if (it->kind != MJ_STRING)
			reject(w, CN_REJECT_SYNTAX, "must be a field name");
		else if (!field(w, sc, it->str, USE_READ))
			append_node_scalar(w, &arr, index_key(i, buf, sizeof buf), it);
		pop(w, mark);
	}
	if (!bson_append_array_end(dst, &arr))
		return too_big(w);
	return w->rc;
}

/* A name argument: a new field or variable named by the query. */
static int name_arg(struct walk *w, bson_t *dst, const struct mj_node *m)
{
	if (new_name(w, m, false))
		return w->rc;
	return append_node_scalar(w, dst, m->key, m);
}

/* Documents of another collection arriving whole at another place. */
static int whole_documents_of(struct walk *w, const struct scope *sub, const char *how)
{
	if (sub->coll && holds_hidden(w, sub->coll, ""))
		return reject(w, CN_REJECT_HIDDEN, "%s would bring whole documents of '%.100s', which has "
			      "hidden fields; end its pipeline with a $project of the fields you need", how,
			      sub->coll);
	return CN_OK;
}

struct lookup_ctx {
	const struct scope *outer;
	struct scope from; /* the foreign collection */
	struct scope sub;  /* what its pipeline returns */
	bool have_pipeline;
};

static int lookup_arg(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *m, void *vctx)
{
	struct lookup_ctx *c = vctx;
	(void)sc;
	const char *k = m->key;
	if (!strcmp(k, "from")) {
		if (m->kind == MJ_OBJECT)
			return reject(w, CN_REJECT_DENIED, "$lookup reads only collections of the source's "
				      "database: write from as a collection name");
		const char *coll;
		if (collection(w, m, &coll))
			return w->rc;
		return append_node_scalar(w, dst, k, m);
	}
	if (!strcmp(k, "as"))
		return name_arg(w, dst, m);
	if (!strcmp(k, "localField") || !strcmp(k, "foreignField")) {
		if (m->kind != MJ_STRING)
			return reject(w, CN_REJECT_SYNTAX, "must be a field name");
		if (field(w, !strcmp(k, "localField") ? c->outer : &c->from, m->str, USE_READ))
			return w->rc;
		return append_node_scalar(w, dst, k, m);
	}
	if (!strcmp(k, "let"))
		return let_vars(w, c->outer, dst, m);
	/* pipeline */
	c->have_pipeline = true;
	c->sub = c->from;
	return pipeline(w, &c->sub, dst, k, m);
}

static int st_lookup(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *arg)
{
	const struct mj_node *from = mj_get(arg, "from");
	if (arg->kind == MJ_OBJECT && from && from->kind == MJ_STRING && from->len &&
	    hidden_coll(w, from->str)) {
		size_t mark = push_key(w, "from");
		reject(w, CN_REJECT_HIDDEN, "collection '%.100s' is hidden", from->str);
		pop(w, mark);
		return w->rc;
	}
	struct lookup_ctx c = {.outer = sc};
	c.from.coll = from && from->kind == MJ_STRING ? from->str : NULL;
	if (arg->kind == MJ_OBJECT && !!mj_get(arg, "localField") != !!mj_get(arg, "foreignField"))
		return reject(w, CN_REJECT_SYNTAX, "$lookup takes localField and foreignField together");
	if (arg->kind == MJ_OBJECT && !mj_get(arg, "localField") && !mj_get(arg, "pipeline"))
		return reject(w, CN_REJECT_SYNTAX,
			      "$lookup needs localField and foreignField, or a pipeline");
	if (stage_args(w, sc, dst, "$lookup", arg,
		       LIST("from", "localField", "foreignField", "as", "let", "pipeline"),
		       LIST("from", "as"), lookup_arg, &c))
		return w->rc;
	return whole_documents_of(w, c.have_pipeline ? &c.sub : &c.from, "$lookup");
}

struct graph_ctx {
	const struct scope *outer;
	struct scope from;
};

static int graph_arg(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *m, void *vctx)
{
	struct graph_ctx *c = vctx;
	(void)sc;
	const char *k = m->key;
	if (!strcmp(k, "from")) {
		const char *coll;
		return collection(w, m, &coll) ? w->rc : append_node_scalar(w, dst, k, m);
	}
	if (!strcmp(k, "startWith"))
		return expr(w, c->outer, dst, k, m);
	if (!strcmp(k, "connectFromField") || !strcmp(k, "connectToField")) {
		if (m->kind != MJ_STRING)
			return reject(w, CN_REJECT_SYNTAX, "must be a field name");
		return field(w, &c->from, m->str, USE_READ) ? w->rc : append_node_scalar(w, dst, k, m);
	}
	if (!strcmp(k, "as") || !strcmp(k, "depthField"))
		return name_arg(w, dst, m);
	if (!strcmp(k, "maxDepth"))
		return count_value(w, dst, k, m, false);
	return query(w, &c->from, dst, k, m, NULL); /* restrictSearchWithMatch */
}

static int st_graph_lookup(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *arg)
{
	const struct mj_node *from = mj_get(arg, "from");
	struct graph_ctx c = {.outer = sc};
	c.from.coll = from && from->kind == MJ_STRING ? from->str : NULL;
	if (stage_args(w, sc, dst, "$graphLookup", arg,
		       LIST("from", "startWith", "connectFromField", "connectToField", "as", "maxDepth",
			    "depthField", "restrictSearchWithMatch"),
		       LIST("from", "startWith", "connectFromField", "connectToField", "as"), graph_arg, &c))
		return w->rc;
	return whole_documents_of(w, &c.from, "$graphLookup");
}

static int st_union_with(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *arg)
{
	const struct mj_node *coll = arg, *pipe = NULL;
	if (arg->kind == MJ_OBJECT && !is_param(arg)) {
		coll = mj_get(arg, "coll");
		pipe = mj_get(arg, "pipeline");
		for (const struct mj_node *m = arg->first; m; m = m->next)
			if (strcmp(m->key, "coll") && strcmp(m->key, "pipeline"))
				return reject(w, CN_REJECT_SYNTAX, "$unionWith has no argument '%s'", m->key);
		if (!coll)
			return reject(w, CN_REJECT_SYNTAX, "$unionWith needs 'coll'");
	}
	const char *name;
	size_t mark = coll != arg ? push_key(w, "coll") : w->plen;
	if (coll->kind == MJ_OBJECT)
		reject(w, CN_REJECT_DENIED, "$unionWith reads only collections of the source's database: "
		       "write coll as a collection name");
	else
		collection(w, coll, &name);
	pop(w, mark);
	if (w->rc)
		return w->rc;
	struct scope sub = {coll->str};
	if (coll == arg) {
		if (!bson_append_utf8(dst, "$unionWith", -1, name, -1))
			return too_big(w);
	} else {
		bson_t child;
		if (!bson_append_document_begin(dst, "$unionWith", -1, &child) ||
		    !bson_append_utf8(&child, "coll", -1, name, -1))
			return too_big(w);
		if (pipe) {
			size_t mk = push_key(w, "pipeline");
			pipeline(w, &sub, &child, "pipeline", pipe);
			pop(w, mk);
		}
		if (!bson_append_document_end(dst, &child))
			return too_big(w);
		if (w->rc)
			return w->rc;
	}
	if (sub.coll && !(sc->coll && !strcmp(sub.coll, sc->coll)) &&
	    whole_documents_of(w, &sub, "$unionWith"))
		return w->rc;
	if (!sc->coll)
		sc->coll = sub.coll;
	return CN_OK;
}

static int facet_arg(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *m, void *vctx)
{
	(void)vctx;
	struct scope sub = *sc;
	if (m->key[0] == '$' || strchr(m->key, '.'))
		return reject(w, CN_REJECT_SYNTAX, "a facet name is a plain field name");
	if (pipeline(w, &sub, dst, m->key, m))
		return w->rc;
	return whole_documents_of(w, &sub, "this facet");
}

static int st_facet(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *arg)
{
	if (arg->kind != MJ_OBJECT || is_param(arg) || arg->count == 0)
		return reject(w, CN_REJECT_SYNTAX, "$facet takes an object of named pipelines");
	bson_t child;
	if (!bson_append_document_begin(dst, "$facet", -1, &child))
		return too_big(w);
	for (const struct mj_node *m = arg->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		facet_arg(w, sc, &child, m, NULL);
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	sc->coll = NULL;
	return w->rc;
}

static int bucket_arg(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *m, void *vctx)
{
	(void)vctx;
	const char *k = m->key;
	if (!strcmp(k, "groupBy"))
		return expr(w, sc, dst, k, m);
	if (!strcmp(k, "output"))
		return outputs(w, sc, dst, k, m, false, false);
	if (!strcmp(k, "buckets"))
		return count_value(w, dst, k, m, true);
	if (!strcmp(k, "boundaries") && m->kind != MJ_ARRAY)
		return reject(w, CN_REJECT_SYNTAX, "boundaries is an array of values");
	if (!strcmp(k, "granularity") && m->kind != MJ_STRING)
		return reject(w, CN_REJECT_SYNTAX, "granularity is a name such as \"R5\"");
	return literal(w, dst, k, m); /* boundaries, default, granularity */
}

static int geo_near_arg(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *m, void *vctx)
{
	(void)vctx;
	const char *k = m->key;
	if (!strcmp(k, "near"))
		return geo_value(w, dst, k, m);
	if (!strcmp(k, "distanceField") || !strcmp(k, "includeLocs"))
		return name_arg(w, dst, m);
	if (!strcmp(k, "query"))
		return query(w, sc, dst, k, m, NULL);
	if (!strcmp(k, "key")) {
		if (m->kind != MJ_STRING)
			return reject(w, CN_REJECT_SYNTAX, "key is a field name");
		return field(w, sc, m->str, USE_READ) ? w->rc : append_node_scalar(w, dst, k, m);
	}
	if (m->kind == MJ_OBJECT || m->kind == MJ_ARRAY)
		return reject(w, CN_REJECT_SYNTAX, "must be a single value");
	return literal(w, dst, k, m); /* spherical, maxDistance, minDistance, distanceMultiplier */
}

static int densify_arg(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *m, void *vctx)
{
	(void)vctx;
	if (!strcmp(m->key, "field")) {
		if (m->kind != MJ_STRING)
			return reject(w, CN_REJECT_SYNTAX, "field is a field name");
		return field(w, sc, m->str, USE_READ) ? w->rc : append_node_scalar(w, dst, m->key, m);
	}
	if (!strcmp(m->key, "partitionByFields"))
		return field_list(w, sc, dst, m);
	return literal(w, dst, m->key, m); /* range */
}

static int fill_output(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *v)
{
	if (v->kind != MJ_OBJECT || is_param(v))
		return reject(w, CN_REJECT_SYNTAX, "output is an object of fields to fill");
	bson_t child;
	if (!bson_append_document_begin(dst, "output", -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		const struct mj_node *val = mj_get(m, "value"), *method = mj_get(m, "method");
		if (field(w, sc, m->key, USE_INCLUDE))
			;
		else if (m->kind != MJ_OBJECT || m->count != 1 || (!val && !method))
			reject(w, CN_REJECT_SYNTAX, "fill a field with {\"value\": expression} or "
			       "{\"method\": \"linear\"|\"locf\"}");
		else if (val)
			expr_object(w, sc, &child, m->key, m);
		else if (method->kind != MJ_STRING)
			reject(w, CN_REJECT_SYNTAX, "method is \"linear\" or \"locf\"");
		else
			literal(w, &child, m->key, m);
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

static int fill_arg(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *m, void *vctx)
{
	(void)vctx;
	if (!strcmp(m->key, "partitionBy"))
		return expr(w, sc, dst, m->key, m);
	if (!strcmp(m->key, "partitionByFields"))
		return field_list(w, sc, dst, m);
	if (!strcmp(m->key, "sortBy"))
		return sort_spec(w, sc, dst, m->key, m);
	return fill_output(w, sc, dst, m);
}

static int window_arg(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *m, void *vctx)
{
	(void)vctx;
	if (!strcmp(m->key, "partitionBy"))
		return expr(w, sc, dst, m->key, m);
	if (!strcmp(m->key, "sortBy"))
		return sort_spec(w, sc, dst, m->key, m);
	return outputs(w, sc, dst, m->key, m, true, false);
}

static int unwind_arg(struct walk *w, struct scope *sc, bson_t *dst, const struct mj_node *m, void *vctx)
{
	(void)vctx;
	if (!strcmp(m->key, "path")) {
		if (m->kind != MJ_STRING || m->str[0] != '$' || m->str[1] == '$' || !m->str[1])
			return reject(w, CN_REJECT_SYNTAX, "path is a field path such as \"$items\"");
		return field(w, sc, m->str + 1, USE_INCLUDE) ? w->rc : append_node_scalar(w, dst, m->key, m);
	}
	if (!strcmp(m->key, "includeArrayIndex"))
		return name_arg(w, dst, m);
	if (m->kind != MJ_BOOL)
		return reject(w, CN_REJECT_SYNTAX, "preserveNullAndEmptyArrays is true or false");
	return append_node_scalar(w, dst, m->key, m);
}

/* Fields a stage sets: each key names a field (not hidden), each value is an
 * expression. */
static int set_fields(struct walk *w, struct scope *sc, bson_t *dst, const char *stage,
		      const struct mj_node *v)
{
	if (v->kind != MJ_OBJECT || is_param(v) || v->count == 0)
		return reject(w, CN_REJECT_SYNTAX, "%s takes an object of fields and expressions", stage);
	bson_t child;
	if (!bson_append_document_begin(dst, stage, -1, &child))
		return too_big(w);
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next) {
		size_t mark = push_key(w, m->key);
		if (m->key[0] == '$')
			reject(w, CN_REJECT_SYNTAX, "field names cannot start with '$'");
		else if (!field(w, sc, m->key, USE_INCLUDE))
			expr(w, sc, &child, m->key, m);
		pop(w, mark);
	}
	if (!bson_append_document_end(dst, &child))
		return too_big(w);
	return w->rc;
}

static int stage(struct walk *w, struct scope *sc, bson_t *dst, const char *key, const struct mj_node *v)
{
	if (v->kind != MJ_OBJECT || v->count != 1 || v->first->key[0] != '$')
		return reject(w, CN_REJECT_SYNTAX,
			      "a stage is an object with one key, the stage's name (such as \"$match\")");
	const struct mj_node *arg = v->first;
	const char *name = arg->key;
	const struct reason *denied = REASON(denied_stages, name);
	if (denied)
		return reject(w, denied->cls, "stage %s is not allowed: %s", name, denied->why);
	bson_t doc;
	if (!bson_append_document_begin(dst, key, -1, &doc))
		return too_big(w);
	size_t mark = push_key(w, name);
	bool sealed = false;
	if (!strcmp(name, "$match")) {
		query(w, sc, &doc, name, arg, NULL);
	} else if (!strcmp(name, "$project")) {
		if (!projection(w, sc, &doc, name, arg, true, &sealed) && sealed)
			sc->coll = NULL;
	} else if (!strcmp(name, "$addFields") || !strcmp(name, "$set")) {
		set_fields(w, sc, &doc, name, arg);
	} else if (!strcmp(name, "$unset")) {
		if (arg->kind == MJ_STRING)
			append_node_scalar(w, &doc, name, arg);
		else if (arg->kind == MJ_ARRAY) {
			for (const struct mj_node *it = arg->first; it && !w->rc; it = it->next)
				if (it->kind != MJ_STRING)
					reject(w, CN_REJECT_SYNTAX, "$unset takes field names");
			if (!w->rc)
				literal(w, &doc, name, arg);
		} else
			reject(w, CN_REJECT_SYNTAX, "$unset takes a field name or an array of them");
	} else if (!strcmp(name, "$group")) {
		if (arg->kind != MJ_OBJECT || !mj_get(arg, "_id"))
			reject(w, CN_REJECT_SYNTAX,
			       "$group takes {\"_id\": expression, field: {accumulator: expression}, ...}");
		else
			outputs(w, sc, &doc, name, arg, false, true);
		sc->coll = NULL;
	} else if (!strcmp(name, "$sort")) {
		sort_spec(w, sc, &doc, name, arg);
	} else if (!strcmp(name, "$limit") || !strcmp(name, "$skip")) {
		count_value(w, &doc, name, arg, !strcmp(name, "$limit"));
	} else if (!strcmp(name, "$sample")) {
		const struct mj_node *size = mj_get(arg, "size");
		if (arg->kind != MJ_OBJECT || arg->count != 1 || !size) {
			reject(w, CN_REJECT_SYNTAX, "$sample takes {\"size\": N}");
		} else {
			bson_t s;
			size_t mk = push_key(w, "size");
			if (!bson_append_document_begin(&doc, name, -1, &s))
				too_big(w);
			else {
				count_value(w, &s, "size", size, true);
				if (!bson_append_document_end(&doc, &s))
					too_big(w);
			}
			pop(w, mk);
		}
	} else if (!strcmp(name, "$unwind")) {
		if (arg->kind == MJ_STRING) {
			if (arg->str[0] != '$' || arg->str[1] == '$' || !arg->str[1])
				reject(w, CN_REJECT_SYNTAX, "$unwind takes a field path such as \"$items\"");
			else if (!field(w, sc, arg->str + 1, USE_INCLUDE))
				append_node_scalar(w, &doc, name, arg);
		} else {
			if (arg->kind == MJ_OBJECT && !mj_get(arg, "path"))
				reject(w, CN_REJECT_SYNTAX, "$unwind needs 'path'");
			else
				stage_args(w, sc, &doc, name, arg,
					   LIST("path", "includeArrayIndex", "preserveNullAndEmptyArrays"), NULL,
					   unwind_arg, NULL);
		}
	} else if (!strcmp(name, "$count")) {
		if (!new_name(w, arg, false) && strchr(arg->str, '.'))
			reject(w, CN_REJECT_SYNTAX, "$count names a plain field");
		else if (!w->rc)
			append_node_scalar(w, &doc, name, arg);
		sc->coll = NULL;
	} else if (!strcmp(name, "$facet")) {
		st_facet(w, sc, &doc, arg);
	} else if (!strcmp(name, "$bucket") || !strcmp(name, "$bucketAuto")) {
		bool b = !strcmp(name, "$bucket");
		stage_args(w, sc, &doc, name, arg,
			   b ? LIST("groupBy", "boundaries", "default", "output")
			     : LIST("groupBy", "buckets", "output", "granularity"),
			   b ? LIST("groupBy", "boundaries") : LIST("groupBy", "buckets"), bucket_arg, NULL);
		sc->coll = NULL;
	} else if (!strcmp(name, "$sortByCount")) {
		expr(w, sc, &doc, name, arg);
		sc->coll = NULL;
	} else if (!strcmp(name, "$lookup")) {
		st_lookup(w, sc, &doc, arg);
	} else if (!strcmp(name, "$graphLookup")) {
		st_graph_lookup(w, sc, &doc, arg);
	} else if (!strcmp(name, "$unionWith")) {
		st_union_with(w, sc, &doc, arg);
	} else if (!strcmp(name, "$replaceRoot")) {
		const struct mj_node *nr = mj_get(arg, "newRoot");
		if (arg->kind != MJ_OBJECT || arg->count != 1 || !nr) {
			reject(w, CN_REJECT_SYNTAX, "$replaceRoot takes {\"newRoot\": expression}");
		} else {
			bson_t r;
			size_t mk = push_key(w, "newRoot");
			if (!bson_append_document_begin(&doc, name, -1, &r))
				too_big(w);
			else {
				expr(w, sc, &r, "newRoot", nr);
				if (!bson_append_document_end(&doc, &r))
					too_big(w);
			}
			pop(w, mk);
		}
		sc->coll = NULL;
	} else if (!strcmp(name, "$replaceWith")) {
		expr(w, sc, &doc, name, arg);
		sc->coll = NULL;
	} else if (!strcmp(name, "$densify")) {
		stage_args(w, sc, &doc, name, arg, LIST("field", "partitionByFields", "range"),
			   LIST("field", "range"), densify_arg, NULL);
	} else if (!strcmp(name, "$fill")) {
		stage_args(w, sc, &doc, name, arg, LIST("partitionBy", "partitionByFields", "sortBy", "output"),
			   LIST("output"), fill_arg, NULL);
	} else if (!strcmp(name, "$setWindowFields")) {
		stage_args(w, sc, &doc, name, arg, LIST("partitionBy", "sortBy", "output"), LIST("output"),
			   window_arg, NULL);
	} else if (!strcmp(name, "$geoNear")) {
		stage_args(w, sc, &doc, name, arg,
			   LIST("near", "distanceField", "spherical", "maxDistance", "minDistance", "query",
				"includeLocs", "key", "distanceMultiplier"),
			   LIST("near", "distanceField"), geo_near_arg, NULL);
	} else {
		reject(w, CN_REJECT_DENIED, "stage %s is not on the connector's list of stages ($match, "
		       "$project, $addFields, $set, $unset, $group, $sort, $limit, $skip, $sample, $unwind, "
		       "$count, $facet, $bucket, $bucketAuto, $sortByCount, $lookup, $graphLookup, "
		       "$unionWith, $replaceRoot, $replaceWith, $densify, $fill, $setWindowFields, $geoNear)",
		       name);
	}
	pop(w, mark);
	if (!bson_append_document_end(dst, &doc))
		return too_big(w);
	return w->rc;
}

static int pipeline(struct walk *w, struct scope *sc, bson_t *dst, const char *key,
		    const struct mj_node *v)
{
	if (v->kind != MJ_ARRAY)
		return reject(w, CN_REJECT_SYNTAX, "a pipeline is an array of stages");
	bson_t arr;
	char buf[16];
	if (!bson_append_array_begin(dst, key, -1, &arr))
		return too_big(w);
	size_t i = 0;
	for (const struct mj_node *m = v->first; m && !w->rc; m = m->next, i++) {
		size_t mark = push_index(w, i);
		stage(w, sc, &arr, index_key(i, buf, sizeof buf), m);
		pop(w, mark);
	}
	if (!bson_append_array_end(dst, &arr))
		return too_big(w);
	return w->rc;
}

/* ---- commands ---- */

static int denied_field(struct walk *w, const char *cmd, const char *k, const char *const *allowed)
{
	const struct reason *denied = REASON(denied_fields, k);
	if (denied)
		return reject(w, denied->cls, "%s is not accepted: %s", k, denied->why);
	char list[300] = "";
	size_t n = 0;
	for (const char *const *a = allowed; *a && n + 2 < sizeof list; a++) {
		int r = snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", *a);
		if (r < 0)
			break;
		n += (size_t)r;
	}
	return reject(w, CN_REJECT_DENIED, "%s has no field '%s' the connector accepts (it accepts %s)", cmd,
		      k, list);
}

static int cmd_body(struct walk *w, const struct mj_node *root, bson_t *dst, struct mg_request *out,
		    bool inside_explain);

static int cmd_find(struct walk *w, const struct mj_node *root, bson_t *dst, struct mg_request *out)
{
	static const char *const allowed[] = {"filter", "projection", "sort", "limit", "skip", "hint",
					      "collation", "comment", "let", "batchSize", "singleBatch",
					      "min", "max", "returnKey", "showRecordId", NULL};
	struct scope sc = {out->collection};
	for (const struct mj_node *m = root->first->next; m && !w->rc; m = m->next) {
		const char *k = m->key;
		size_t mark = push_key(w, k);
		bool sealed;
		if (!strcmp(k, "filter"))
			query(w, &sc, dst, k, m, NULL);
		else if (!strcmp(k, "projection"))
			projection(w, &sc, dst, k, m, false, &sealed);
		else if (!strcmp(k, "sort"))
			sort_spec(w, &sc, dst, k, m);
		else if (!strcmp(k, "limit") || !strcmp(k, "skip"))
			count_value(w, dst, k, m, false);
		else if (!strcmp(k, "batchSize")) {
			bson_t ignore = BSON_INITIALIZER; /* the connector sets its own */
			count_value(w, &ignore, k, m, false);
			bson_destroy(&ignore);
		} else if (!strcmp(k, "hint"))
			hint(w, &sc, dst, m);
		else if (!strcmp(k, "collation"))
			collation(w, dst, m);
		else if (!strcmp(k, "comment"))
			comment(w, dst, m);
		else if (!strcmp(k, "let"))
			let_vars(w, &sc, dst, m);
		else if (!strcmp(k, "singleBatch") || !strcmp(k, "returnKey") || !strcmp(k, "showRecordId")) {
			if (m->kind != MJ_BOOL)
				reject(w, CN_REJECT_SYNTAX, "must be true or false");
			else
				append_node_scalar(w, dst, k, m);
		} else if (!strcmp(k, "min") || !strcmp(k, "max")) {
			if (m->kind != MJ_OBJECT || is_param(m)) {
				reject(w, CN_REJECT_SYNTAX, "must be an object of index fields and values");
			} else {
				for (const struct mj_node *f = m->first; f && !w->rc; f = f->next) {
					size_t mk = push_key(w, f->key);
					if (f->key[0] != '$')
						field(w, &sc, f->key, USE_READ);
					pop(w, mk);
				}
				if (!w->rc)
					literal(w, dst, k, m);
			}
		} else
			denied_field(w, "find", k, allowed);
		pop(w, mark);
	}
	snprintf(out->scrub, sizeof out->scrub, "%s", out->collection);
	return w->rc;
}

static int cmd_aggregate(struct walk *w, const struct mj_node *root, bson_t *dst,
			 struct mg_request *out, bool inside_explain)
{
	static const char *const allowed[] = {"pipeline", "cursor", "hint", "collation", "comment",
					      "let", "explain", NULL};
	struct scope sc = {out->collection};
	const struct mj_node *pipe = mj_get(root, "pipeline");
	if (!pipe)
		return reject(w, CN_REJECT_SYNTAX, "aggregate needs a pipeline (an array of stages)");
	/* let first: the pipeline may use its variables */
	for (const struct mj_node *m = root->first->next; m && !w->rc; m = m->next) {
		const char *k = m->key;
		size_t mark = push_key(w, k);
		if (!strcmp(k, "pipeline"))
			pipeline(w, &sc, dst, k, m);
		else if (!strcmp(k, "cursor")) {
			const struct mj_node *bs = mj_get(m, "batchSize");
			if (m->kind != MJ_OBJECT || m->count > 1 || (m->count == 1 && !bs))
				reject(w, CN_REJECT_SYNTAX, "cursor is {} or {\"batchSize\": N}; the "
				       "connector sets the batch size");
			else if (bs) {
				bson_t ignore = BSON_INITIALIZER;
				count_value(w, &ignore, "batchSize", bs, false);
				bson_destroy(&ignore);
			}
		} else if (!strcmp(k, "hint"))
			hint(w, &(struct scope){out->collection}, dst, m);
		else if (!strcmp(k, "collation"))
			collation(w, dst, m);
		else if (!strcmp(k, "comment"))
			comment(w, dst, m);
		else if (!strcmp(k, "let"))
			let_vars(w, &(struct scope){out->collection}, dst, m);
		else if (!strcmp(k, "explain")) {
			if (m->kind != MJ_BOOL)
				reject(w, CN_REJECT_SYNTAX, "explain is true or false");
			else if (inside_explain && m->v.b)
				reject(w, CN_REJECT_SYNTAX,
				       "explain is already requested around this command");
			else if (m->v.b) {
				out->explain = true;
				append_node_scalar(w, dst, k, m);
			}
		} else
			denied_field(w, "aggregate", k, allowed);
		pop(w, mark);
	}
	snprintf(out->scrub, sizeof out->scrub, "%s", sc.coll ? sc.coll : "");
	return w->rc;
}

static int cmd_count(struct walk *w, const struct mj_node *root, bson_t *dst, struct mg_request *out)
{
	static const char *const allowed[] = {"query", "limit", "skip", "hint", "collation", "comment",
					      NULL};
	struct scope sc = {out->collection};
	for (const struct mj_node *m = root->first->next; m && !w->rc; m = m->next) {
		const char *k = m->key;
		size_t mark = push_key(w, k);
		if (!strcmp(k, "query"))
			query(w, &sc, dst, k, m, NULL);
		else if (!strcmp(k, "limit") || !strcmp(k, "skip"))
			count_value(w, dst, k, m, false);
		else if (!strcmp(k, "hint"))
			hint(w, &sc, dst, m);
		else if (!strcmp(k, "collation"))
			collation(w, dst, m);
		else if (!strcmp(k, "comment"))
			comment(w, dst, m);
		else
			denied_field(w, "count", k, allowed);
		pop(w, mark);
	}
	return w->rc;
}

static int cmd_distinct(struct walk *w, const struct mj_node *root, bson_t *dst, struct mg_request *out)
{
	static const char *const allowed[] = {"key", "query", "hint", "collation", "comment", NULL};
	struct scope sc = {out->collection};
	const struct mj_node *key = mj_get(root, "key");
	if (!key)
		return reject(w, CN_REJECT_SYNTAX, "distinct needs a key (the field whose values it lists)");
	for (const struct mj_node *m = root->first->next; m && !w->rc; m = m->next) {
		const char *k = m->key;
		size_t mark = push_key(w, k);
		if (!strcmp(k, "key")) {
			if (m->kind != MJ_STRING || m->str[0] == '$')
				reject(w, CN_REJECT_SYNTAX, "key is a field name such as \"status\"");
			else if (!field(w, &sc, m->str, USE_READ)) {
				snprintf(out->key, sizeof out->key, "%s", m->str);
				append_node_scalar(w, dst, k, m);
			}
		} else if (!strcmp(k, "query"))
			query(w, &sc, dst, k, m, NULL);
		else if (!strcmp(k, "hint"))
			hint(w, &sc, dst, m);
		else if (!strcmp(k, "collation"))
			collation(w, dst, m);
		else if (!strcmp(k, "comment"))
			comment(w, dst, m);
		else
			denied_field(w, "distinct", k, allowed);
		pop(w, mark);
	}
	return w->rc;
}

static int cmd_body(struct walk *w, const struct mj_node *root, bson_t *dst, struct mg_request *out,
		    bool inside_explain)
{
	if (root->count == 0)
		return reject(w, CN_REJECT_STATEMENTS, "the command document is empty; start it with find, "
			      "aggregate, count or distinct");
	const struct mj_node *first = root->first;
	const char *name = first->key;
	enum mg_command cmd;
	if (!strcmp(name, "find"))
		cmd = MG_FIND;
	else if (!strcmp(name, "aggregate"))
		cmd = MG_AGGREGATE;
	else if (!strcmp(name, "count"))
		cmd = MG_COUNT;
	else if (!strcmp(name, "distinct"))
		cmd = MG_DISTINCT;
	else if (!strcmp(name, "explain"))
		return reject(w, CN_REJECT_SYNTAX,
			      inside_explain ? "explain cannot be nested"
					     : "explain takes a command: {\"explain\": {\"find\": ...}}");
	else if (IN_LIST(write_commands, name))
		return reject(w, CN_REJECT_WRITE, "%s is not a read command; only find, aggregate, count "
			      "and distinct (and explain of them) are accepted", name);
	else
		return reject(w, CN_REJECT_DENIED, "the first key must be the command: find, aggregate, "
			      "count or distinct (or explain of one); '%.60s' is not accepted", name);
	out->command = cmd;
	size_t mark = push_key(w, name);
	const char *coll = NULL;
	if (cmd == MG_AGGREGATE && first->kind != MJ_STRING)
		reject(w, CN_REJECT_DENIED, "aggregate needs a collection name (database-level "
		       "aggregations such as $currentOp and $documents are not accepted)");
	else
		collection(w, first, &coll);
	pop(w, mark);
	if (w->rc)
		return w->rc;
	snprintf(out->collection, sizeof out->collection, "%s", coll);
	if (!bson_append_utf8(dst, name, -1, coll, -1))
		return too_big(w);
	switch (cmd) {
	case MG_FIND: return cmd_find(w, root, dst, out);
	case MG_AGGREGATE: return cmd_aggregate(w, root, dst, out, inside_explain);
	case MG_COUNT: return cmd_count(w, root, dst, out);
	case MG_DISTINCT: return cmd_distinct(w, root, dst, out);
	}
	return w->rc;
}

static int cmd_explain(struct walk *w, const struct mj_node *root, struct mg_request *out)
{
	const struct mj_node *inner = root->first;
	size_t mark = push_key(w, "explain");
	if (inner->kind != MJ_OBJECT || is_param(inner)) {
		reject(w, CN_REJECT_SYNTAX,
		       "explain takes a command document: {\"explain\": {\"find\": \"orders\"}}");
		pop(w, mark);
		return w->rc;
	}
	bson_t child;
	if (!bson_append_document_begin(&out->cmd, "explain", -1, &child))
		return too_big(w);
	cmd_body(w, inner, &child, out, true);
	if (!bson_append_document_end(&out->cmd, &child))
		too_big(w);
	pop(w, mark);
	for (const struct mj_node *m = inner->next; m && !w->rc; m = m->next) {
		size_t mk = push_key(w, m->key);
		static const char *const verbosities[] = {"queryPlanner", "executionStats",
							  "allPlansExecution"};
		if (!strcmp(m->key, "verbosity")) {
			if (m->kind != MJ_STRING || !IN_LIST(verbosities, m->str))
				reject(w, CN_REJECT_SYNTAX,
				       "verbosity is queryPlanner, executionStats or allPlansExecution");
			else
				append_node_scalar(w, &out->cmd, m->key, m);
		} else if (!strcmp(m->key, "comment")) {
			comment(w, &out->cmd, m);
		} else {
			denied_field(w, "explain", m->key, LIST("verbosity", "comment"));
		}
		pop(w, mk);
	}
	out->explain = true;
	out->scrub[0] = '\0';
	return w->rc;
}

int mg_guard_build(const char *text, size_t len, const struct mg_hooks *hooks,
		   const struct cn_value *params, size_t nparams, bool bind, struct mg_request *out,
		   struct cn_error *err)
{
	memset(out, 0, sizeof *out);
	if (bind && nparams > MG_MAX_PARAMS)
		return cn_error_set(err, CN_EINVAL, "at most %d parameters are accepted", MG_MAX_PARAMS);
	struct mj_doc doc;
	int rc = mj_parse(text, len, &doc, err);
	if (rc)
		return rc;
	struct walk *w = calloc(1, sizeof *w);
	if (!w) {
		mj_doc_free(&doc);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	w->hooks = hooks;
	w->params = params;
	w->nparams = bind ? nparams : 0;
	w->bind = bind;
	w->err = err;
	bson_init(&out->cmd);
	if (doc.root->count > 0 && !strcmp(doc.root->first->key, "explain"))
		cmd_explain(w, doc.root, out);
	else
		cmd_body(w, doc.root, &out->cmd, out, false);
	for (size_t i = 1; !w->rc && bind && i <= nparams; i++)
		if (!w->used[i])
			w->rc = cn_error_set(err, CN_EINVAL, "parameters[%zu] is not used: the query has no "
					     "{\"$param\": %zu}", i - 1, i);
	rc = w->rc;
	out->max_param = w->max_param;
	free(w);
	mj_doc_free(&doc);
	if (rc)
		bson_destroy(&out->cmd);
	return rc;
}

void mg_request_free(struct mg_request *r)
{
	if (r)
		bson_destroy(&r->cmd);
}
