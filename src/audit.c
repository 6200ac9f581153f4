/*
 * audit.c - see audit.h. The parsers here read the command line (--since,
 * --source, --status) and the daemon's request files (the filter word);
 * both are bounded and refuse whatever they do not know
 * (tests/fuzz/fuzz_audit.c).
 */
#include "audit.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "execution_store.h"
#include "signature.h"

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static bool is_blank(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

void audit_fingerprint(const char *text, size_t len, char out[AUDIT_FINGERPRINT_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char chunk[1024];
	size_t n = 0;
	bool started = false, blank = false;
	pthread_once(&sha256_once, sha256_fetch);
	EVP_MD_CTX *ctx = sha256_md ? EVP_MD_CTX_new() : NULL;
	bool ok = ctx && EVP_DigestInit_ex2(ctx, sha256_md, NULL);
	for (size_t i = 0; ok && i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if (is_blank(c)) {
			blank = started;
			continue;
		}
		if (n + 2 > sizeof chunk) {
			ok = EVP_DigestUpdate(ctx, chunk, n);
			n = 0;
		}
		if (blank)
			chunk[n++] = ' ';
		chunk[n++] = (char)c;
		blank = false;
		started = true;
	}
	ok = ok && EVP_DigestUpdate(ctx, chunk, n) && EVP_DigestFinal_ex(ctx, md, &mdlen) &&
	     mdlen * 2 >= AUDIT_FINGERPRINT_LEN;
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		/* Only when OpenSSL is out of memory: a fingerprint that says so. */
		memset(out, '-', AUDIT_FINGERPRINT_LEN);
		out[AUDIT_FINGERPRINT_LEN] = '\0';
		return;
	}
	for (size_t i = 0; i < AUDIT_FINGERPRINT_LEN / 2; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[AUDIT_FINGERPRINT_LEN] = '\0';
}

void audit_copy_id(char out[AUDIT_ID_MAX + 1], const char *s)
{
	size_t n = strnlen(s, AUDIT_ID_MAX + 1);
	if (n > AUDIT_ID_MAX) {
		n = AUDIT_ID_MAX;
		/* step back over continuation bytes to the start of the cut character */
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(out, s, n);
	out[n] = '\0';
}

/* ---- packing a record into one allocation ---- */

#define RECORD_STRINGS(r)                                                                         \
	{ &(r)->execution_id, &(r)->assistant_id, &(r)->room_id, &(r)->tool, &(r)->source,        \
	  &(r)->fingerprint, &(r)->statement, &(r)->code }

size_t audit_record_strings(const struct audit_record *r)
{
	const char *const *fields[] = RECORD_STRINGS(r);
	size_t total = 0;
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
		total += *fields[i] ? strlen(*fields[i]) + 1 : 0;
	return total;
}

void audit_record_pack(const struct audit_record *r, char *buf, struct audit_record *out)
{
	*out = *r;
	const char **fields[] = RECORD_STRINGS(out);
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		if (!*fields[i])
			continue;
		size_t n = strlen(*fields[i]) + 1;
		memcpy(buf, *fields[i], n);
		*fields[i] = buf;
		buf += n;
	}
}

/* ---- the command line and the filter word ---- */

static bool name_ok(const char *s, bool code)
{
	size_t n = 0;
	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];
		bool ok = code ? (c >= 'a' && c <= 'z') || c == '_'
			       : isascii(c) && (isalnum(c) || c == '_' || c == '-');
		if (!ok || n >= AUDIT_NAME_MAX)
			return false;
	}
	return n > 0;
}

/* A decimal in [min, max] that is the whole of s[0..len). */
static bool parse_num(const char *s, size_t len, long long min, long long max, long long *out)
{
	long long v = 0;
	if (len == 0 || len > 19)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (LLONG_MAX - (s[i] - '0')) / 10)
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

int audit_parse_since(const char *text, int64_t now_ms, int64_t *ms, char *why, size_t whylen)
{
	static const struct {
		char unit;
		long long seconds;
	} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 7 * 86400}};
	size_t len = strnlen(text, 64);
	if (len > 0 && len < 64) {
		for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
			long long n;
			if (text[len - 1] != units[i].unit || !parse_num(text, len - 1, 0, 100000000, &n))
				continue;
			/* at most 100,000,000 weeks: well inside int64 ms */
			*ms = now_ms - n * units[i].seconds * 1000;
			if (*ms < 0)
				*ms = 0;
			return CN_OK;
		}
		char iso[80];
		time_t t;
		bool date_only = len == 10 && text[4] == '-' && text[7] == '-';
		snprintf(iso, sizeof iso, "%s%s", text, date_only ? "T00:00:00Z" : "");
		if (signature_parse_timestamp(iso, &t) == CN_OK) {
			*ms = (int64_t)t * 1000;
			if (*ms < 0)
				*ms = 0; /* nothing was recorded before 1970 */
			return CN_OK;
		}
	}
	snprintf(why, whylen,
		 "--since '%.64s' is neither a time nor an age: write ISO 8601 such as "
		 "2026-01-20T12:00:00Z or 2026-01-20 (UTC), or an age such as 90m, 24h or 7d",
		 text);
	return CN_EINVAL;
}

int audit_filter_set_source(struct audit_filter *f, const char *name, char *why, size_t whylen)
{
	if (!name_ok(name, false)) {
		snprintf(why, whylen,
			 "--source '%.64s' is not a source name: 1 to 64 letters, digits, '_' or '-'",
			 name);
		return CN_EINVAL;
	}
	snprintf(f->source, sizeof f->source, "%s", name);
	return CN_OK;
}

int audit_filter_set_status(struct audit_filter *f, const char *text, char *why, size_t whylen)
{
	long long st;
	if (parse_num(text, strlen(text), 100, 599, &st)) {
		f->status = (int)st;
		f->code[0] = '\0';
		return CN_OK;
	}
	if (name_ok(text, true)) {
		snprintf(f->code, sizeof f->code, "%s", text);
		f->status = 0;
		return CN_OK;
	}
	snprintf(why, whylen,
		 "--status '%.64s' is neither an HTTP status (100 to 599) nor an error code: write "
		 "e.g. 400, query_rejected, replayed, or ok for the successes",
		 text);
	return CN_EINVAL;
}

void audit_filter_format(const struct audit_filter *f, char out[AUDIT_FILTER_MAX])
{
	int n = snprintf(out, AUDIT_FILTER_MAX, "after=%lld:%lld", (long long)f->after_ms,
			 (long long)f->after_id);
	if (f->source[0] && n > 0 && n < AUDIT_FILTER_MAX)
		n += snprintf(out + n, AUDIT_FILTER_MAX - (size_t)n, ",source=%s", f->source);
	if (f->status && n > 0 && n < AUDIT_FILTER_MAX)
		n += snprintf(out + n, AUDIT_FILTER_MAX - (size_t)n, ",status=%d", f->status);
	if (f->code[0] && n > 0 && n < AUDIT_FILTER_MAX)
		snprintf(out + n, AUDIT_FILTER_MAX - (size_t)n, ",code=%s", f->code);
}

bool audit_filter_match(const struct audit_filter *f, const struct audit_record *r)
{
	if (f->source[0] && (!r->source || strcmp(r->source, f->source) != 0))
		return false;
	if (f->status && r->status != f->status)
		return false;
	if (!f->code[0])
		return true;
	if (strcmp(f->code, "ok") == 0)
		return r->code == NULL;
	return r->code && strcmp(r->code, f->code) == 0;
}

/* One "key=value" of the filter word into f; false when it is not one. */
static bool filter_item(const char *item, size_t len, struct audit_filter *f, unsigned *seen)
{
	static const char *const keys[] = {"after", "source", "status", "code"};
	const char *eq = memchr(item, '=', len);
	if (!eq)
		return false;
	size_t klen = (size_t)(eq - item), vlen = len - klen - 1;
	const char *v = eq + 1;
	char value[AUDIT_NAME_MAX + 1];
	long long a, b;
	for (unsigned k = 0; k < 4; k++) {
		if (strlen(keys[k]) != klen || memcmp(item, keys[k], klen) != 0)
			continue;
		if (*seen & (1u << k))
			return false; /* each key once */
		*seen |= 1u << k;
		if (k == 0) {
			const char *colon = memchr(v, ':', vlen);
			if (!colon || !parse_num(v, (size_t)(colon - v), 0, INT64_MAX, &a) ||
			    !parse_num(colon + 1, vlen - (size_t)(colon - v) - 1, 0, INT64_MAX, &b))
				return false;
			f->after_ms = a;
			f->after_id = b;
			return true;
		}
		if (k == 2) {
			if (!parse_num(v, vlen, 100, 599, &a))
				return false;
			f->status = (int)a;
			return true;
		}
		if (vlen == 0 || vlen > AUDIT_NAME_MAX)
			return false;
		memcpy(value, v, vlen);
		value[vlen] = '\0';
		if (!name_ok(value, k == 3))
			return false;
		memcpy(k == 1 ? f->source : f->code, value, vlen + 1);
		return true;
	}
	return false;
}

int audit_filter_parse(const char *text, struct audit_filter *f)
{
	*f = (struct audit_filter){0};
	size_t len = strnlen(text, AUDIT_FILTER_MAX);
	unsigned seen = 0;
	if (len >= AUDIT_FILTER_MAX)
		return CN_EINVAL;
	for (size_t i = 0; i <= len;) {
		size_t n = strcspn(text + i, ",");
		if (!filter_item(text + i, n, f, &seen))
			return CN_EINVAL;
		i += n + 1;
	}
	/* the cursor is always there; a status and a code exclude each other */
	if (!(seen & 1u) || (f->status && f->code[0]))
		return CN_EINVAL;
	return CN_OK;
}

/* ---- answers ---- */

static cJSON *add_text(cJSON *o, const char *key, const char *v)
{
	return v ? cJSON_AddStringToObject(o, key, v) : cJSON_AddNullToObject(o, key);
}

cJSON *audit_record_to_json(const struct audit_record *r)
{
	cJSON *o = cJSON_CreateObject();
	char when[32], date[21];
	time_t sec = (time_t)(r->at_ms / 1000);
	signature_format_timestamp(sec, date);
	/* "2026-01-20T12:00:00Z" -> "2026-01-20T12:00:00.123Z" */
	snprintf(when, sizeof when, "%.19s.%03dZ", date, (int)(r->at_ms % 1000));
	bool ok = o && cJSON_AddNumberToObject(o, "id", (double)r->id) &&
		  cJSON_AddStringToObject(o, "time", when) && add_text(o, "execution_id", r->execution_id) &&
		  add_text(o, "assistant_id", r->assistant_id) && add_text(o, "room_id", r->room_id) &&
		  add_text(o, "tool", r->tool) && add_text(o, "source", r->source) &&
		  add_text(o, "fingerprint", r->fingerprint);
	if (ok && r->statement)
		ok = cJSON_AddStringToObject(o, "statement", r->statement) != NULL;
	ok = ok &&
	     (r->rows >= 0 ? cJSON_AddNumberToObject(o, "rows", (double)r->rows)
			   : cJSON_AddNullToObject(o, "rows")) &&
	     cJSON_AddNumberToObject(o, "bytes", (double)r->bytes) &&
	     cJSON_AddNumberToObject(o, "status", r->status) && add_text(o, "code", r->code) &&
	     cJSON_AddNumberToObject(o, "duration_ms", (double)r->duration_us / 1000.0);
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

struct page {
	cJSON *records;
	size_t n;
	size_t bytes;
	int64_t last_ms, last_id;
	bool full;
	bool nomem;
};

static int page_add(void *ctx, const struct audit_record *r)
{
	struct page *p = ctx;
	if (p->n >= AUDIT_PAGE_RECORDS || p->bytes >= AUDIT_PAGE_BYTES) {
		p->full = true;
		return 1;
	}
	cJSON *o = audit_record_to_json(r);
	if (!o) {
		p->nomem = true;
		return 1;
	}
	cJSON_AddItemToArray(p->records, o);
	p->n++;
	/* the strings, each byte escaped as \u00XX at worst, and the keys and numbers */
	p->bytes += audit_record_strings(r) * 6 + 300;
	p->last_ms = r->at_ms;
	p->last_id = r->id;
	return 0;
}

cJSON *audit_answer(struct exec_store *store, const char *filter, struct cn_error *err)
{
	struct audit_filter f;
	if (audit_filter_parse(filter, &f) != CN_OK) {
		cn_error_set(err, CN_EINVAL, "malformed audit filter '%.200s'", filter);
		return NULL;
	}
	if (!store) {
		cn_error_set(err, CN_EINVAL, "no state file: the audit log is kept in it");
		return NULL;
	}
	cJSON *root = cJSON_CreateObject();
	struct page p = {.records = root ? cJSON_AddArrayToObject(root, "records") : NULL,
			 .last_ms = f.after_ms,
			 .last_id = f.after_id};
	if (!p.records) {
		cJSON_Delete(root);
		cn_error_set(err, CN_ENOMEM, "out of memory");
		return NULL;
	}
	if (exec_store_audit_query(store, &f, page_add, &p, err) != CN_OK) {
		cJSON_Delete(root);
		return NULL;
	}
	if (p.nomem) {
		cJSON_Delete(root);
		cn_error_set(err, CN_ENOMEM, "out of memory");
		return NULL;
	}
	f.after_ms = p.last_ms;
	f.after_id = p.last_id;
	char next[AUDIT_FILTER_MAX];
	audit_filter_format(&f, next);
	if (!cJSON_AddBoolToObject(root, "more", p.full) || !cJSON_AddStringToObject(root, "next", next)) {
		cJSON_Delete(root);
		cn_error_set(err, CN_ENOMEM, "out of memory");
		return NULL;
	}
	return root;
}
