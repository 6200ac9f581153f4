/*
 * mongo_json.c - the strict JSON reader of the MongoDB driver (see
 * mongo_json.h). A recursive descent over the bytes, one pass, no
 * look-back; decoded strings and nodes go to an arena of 16 KiB chunks.
 */
#include "mongo_json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/text.h"

#define ARENA_CHUNK 16384u

/* ---- arena ---- */

struct mj_chunk {
	struct mj_chunk *next;
	size_t used, cap;
	_Alignas(16) unsigned char data[];
};

struct mj_arena {
	struct mj_chunk *head;
};

static void *arena_alloc(struct mj_arena *a, size_t n)
{
	n = (n + 15u) & ~(size_t)15u;
	struct mj_chunk *c = a->head;
	if (!c || c->cap - c->used < n) {
		size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
		c = malloc(sizeof *c + cap);
		if (!c)
			return NULL;
		c->used = 0;
		c->cap = cap;
		c->next = a->head;
		a->head = c;
	}
	void *p = c->data + c->used;
	c->used += n;
	return p;
}

static void arena_free(struct mj_arena *a)
{
	if (!a)
		return;
	struct mj_chunk *c = a->head;
	while (c) {
		struct mj_chunk *next = c->next;
		free(c);
		c = next;
	}
	free(a);
}

/* ---- the parser ---- */

struct frame {
	const struct mj_node *container;
	const char *key; /* object member being read, or NULL */
	size_t index;    /* array item being read */
};

struct parser {
	const unsigned char *s;
	size_t i, n;
	struct mj_arena *arena;
	size_t nodes;
	struct cn_error *err;
	struct frame stack[MJ_MAX_DEPTH + 2];
	int depth;
	int rc;
};

/* The path of the value being read: "pipeline[2].$lookup.from". */
static void path_text(const struct parser *p, char *out, size_t size)
{
	size_t w = 0;
	out[0] = '\0';
	for (int d = 0; d < p->depth && w + 1 < size; d++) {
		const struct frame *f = &p->stack[d];
		char part[96];
		if (f->container->kind == MJ_ARRAY) {
			snprintf(part, sizeof part, "[%zu]", f->index);
		} else if (f->key) {
			size_t k = 0;
			if (w > 0)
				part[k++] = '.';
			for (const char *c = f->key; *c && k + 4 < sizeof part; c++)
				part[k++] = ((unsigned char)*c < 0x20 || *c == 0x7f) ? '?' : *c;
			if (strlen(f->key) > 80)
				memcpy(part + k - 3, "...", 3);
			part[k] = '\0';
		} else {
			continue;
		}
		int n = snprintf(out + w, size - w, "%s", part);
		if (n < 0)
			break;
		w += (size_t)n < size - w ? (size_t)n : size - w - 1;
	}
}

static int vfail(struct parser *p, enum cn_reject why, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
static int vfail(struct parser *p, enum cn_reject why, const char *fmt, va_list ap)
{
	if (p->rc)
		return p->rc;
	char what[300], where[240];
	vsnprintf(what, sizeof what, fmt, ap);
	path_text(p, where, sizeof where);
	p->rc = cn_error_reject(p->err, why, "the query is not accepted JSON: %s%s%s (at byte %zu)",
				where[0] ? where : "", where[0] ? ": " : "", what, p->i);
	return p->rc;
}

/* The text is not JSON as the reader accepts it: a syntax rejection. */
static int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct parser *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vfail(p, CN_REJECT_SYNTAX, fmt, ap);
	va_end(ap);
	return rc;
}

/* A rejection of another class: a limit, or not one document. */
static int fail_as(struct parser *p, enum cn_reject why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail_as(struct parser *p, enum cn_reject why, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vfail(p, why, fmt, ap);
	va_end(ap);
	return rc;
}

static int oom(struct parser *p)
{
	if (!p->rc)
		p->rc = cn_error_set(p->err, CN_ENOMEM, "out of memory");
	return p->rc;
}

static void skip_ws(struct parser *p)
{
	while (p->i < p->n) {
		unsigned char c = p->s[p->i];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return;
		p->i++;
	}
}

static struct mj_node *node_new(struct parser *p, enum mj_kind kind)
{
	if (++p->nodes > MJ_MAX_NODES) {
		fail_as(p, CN_REJECT_LIMIT, "more than %d values in one query", MJ_MAX_NODES);
		return NULL;
	}
	struct mj_node *nd = arena_alloc(p->arena, sizeof *nd);
	if (!nd) {
		oom(p);
		return NULL;
	}
	memset(nd, 0, sizeof *nd);
	nd->kind = kind;
	nd->offset = (uint32_t)p->i;
	return nd;
}

static int hex4(struct parser *p, unsigned *out)
{
	unsigned v = 0;
	if (p->n - p->i < 4)
		return fail(p, "a \\u escape needs four hex digits");
	for (int k = 0; k < 4; k++) {
		unsigned char c = p->s[p->i++];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10u;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10u;
		else
			return fail(p, "a \\u escape needs four hex digits");
		v = v << 4 | d;
	}
	*out = v;
	return CN_OK;
}

static size_t utf8_put(unsigned cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* A string at p->i (the opening quote). *dollar_escaped: the first character
 * came from an escape and is '$'; *special_escaped: an escape produced '$' or
 * '.' anywhere. */
static int read_string(struct parser *p, const char **out, size_t *outlen, bool *dollar_escaped,
		       bool *special_escaped)
{
	p->i++;
	size_t start = p->i;
	/* the decoded text is never longer than the raw text */
	size_t end = start;
	while (end < p->n && p->s[end] != '"') {
		if (p->s[end] == '\\')
			end++;
		end++;
	}
	char *buf = arena_alloc(p->arena, (end > p->n ? p->n : end) - start + 1);
	if (!buf)
		return oom(p);
	size_t w = 0;
	*dollar_escaped = *special_escaped = false;
	for (;;) {
		if (p->i >= p->n)
			return fail(p, "a string is not closed");
		unsigned char c = p->s[p->i];
		if (c == '"') {
			p->i++;
			break;
		}
		if (c < 0x20)
			return fail(p, "a string holds a raw control character (0x%02x); escape it", c);
		if (c == '\\') {
			if (++p->i >= p->n)
				return fail(p, "a string is not closed");
			unsigned char e = p->s[p->i++];
			unsigned cp;
			switch (e) {
			case '"': cp = '"'; break;
			case '\\': cp = '\\'; break;
			case '/': cp = '/'; break;
			case 'b': cp = '\b'; break;
			case 'f': cp = '\f'; break;
			case 'n': cp = '\n'; break;
			case 'r': cp = '\r'; break;
			case 't': cp = '\t'; break;
			case 'u': {
				if (hex4(p, &cp))
					return p->rc;
				if (cp >= 0xdc00 && cp <= 0xdfff)
					return fail(p, "a string holds a lone low surrogate \\u%04x", cp);
				if (cp >= 0xd800 && cp <= 0xdbff) {
					unsigned lo;
					if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
						return fail(p, "a string holds a lone high surrogate \\u%04x", cp);
					p->i += 2;
					if (hex4(p, &lo))
						return p->rc;
					if (lo < 0xdc00 || lo > 0xdfff)
						return fail(p, "a string holds a broken surrogate pair");
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				}
				break;
			}
			default:
				return fail(p, "a string holds an unknown escape \\%c", e >= 0x20 && e < 0x7f ? e : '?');
			}
			if (cp == 0)
				return fail(p, "a string holds a NUL character (\\u0000), which is not accepted");
			if (cp == '$' || cp == '.') {
				*special_escaped = true;
				if (w == 0 && cp == '$')
					*dollar_escaped = true;
			}
			w += utf8_put(cp, buf + w);
			continue;
		}
		size_t len = text_utf8_len(p->s + p->i, p->n - p->i);
		if (len == 0)
			return fail(p, "a string holds invalid UTF-8");
		memcpy(buf + w, p->s + p->i, len);
		w += len;
		p->i += len;
	}
	buf[w] = '\0';
	*out = buf;
	*outlen = w;
	return CN_OK;
}

static int read_number(struct parser *p, struct mj_node *nd)
{
	size_t start = p->i;
	bool integer = true;
	if (p->i < p->n && p->s[p->i] == '-')
		p->i++;
	if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
		return fail(p, "expected a value");
	if (p->s[p->i] == '0') {
		p->i++;
		if (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
			return fail(p, "a number has a leading zero");
	} else {
		while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
			p->i++;
	}
	if (p->i < p->n && p->s[p->i] == '.') {
		integer = false;
		p->i++;
		if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
			return fail(p, "a number needs digits after its decimal point");
		while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
			p->i++;
	}
	if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
		integer = false;
		p->i++;
		if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
			p->i++;
		if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
			return fail(p, "a number needs digits in its exponent");
		while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
			p->i++;
	}
	size_t len = p->i - start;
	char buf[400];
	if (len >= sizeof buf)
		return fail_as(p, CN_REJECT_LIMIT, "a number is longer than %zu characters", sizeof buf - 1);
	memcpy(buf, p->s + start, len);
	buf[len] = '\0';
	errno = 0;
	if (integer) {
		long long v = strtoll(buf, NULL, 10);
		if (errno == ERANGE)
			return fail(p, "the integer %s is outside the 64-bit range; write it as "
				    "{\"$numberDecimal\": \"%s\"}", buf, buf);
		nd->kind = MJ_INT;
		nd->v.i = v;
		return CN_OK;
	}
	double d = strtod(buf, NULL);
	if (!isfinite(d))
		return fail(p, "the number %s is outside the range of a double", buf);
	nd->kind = MJ_DOUBLE;
	nd->v.d = d;
	return CN_OK;
}

static int read_literal(struct parser *p, const char *word, struct mj_node *nd, enum mj_kind kind,
			bool b)
{
	size_t len = strlen(word);
	if (p->n - p->i < len || memcmp(p->s + p->i, word, len) != 0)
		return fail(p, "expected a value");
	p->i += len;
	nd->kind = kind;
	nd->v.b = b;
	return CN_OK;
}

static int read_value(struct parser *p, struct mj_node **out);

/* Duplicate keys of obj (members already linked): sorted copy when large. */
static int key_cmp(const void *a, const void *b)
{
	const struct mj_node *x = *(const struct mj_node *const *)a;
	const struct mj_node *y = *(const struct mj_node *const *)b;
	size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
	int c = memcmp(x->key, y->key, n);
	return c ? c : (x->keylen > y->keylen) - (x->keylen < y->keylen);
}

static const struct mj_node *find_duplicate(struct parser *p, const struct mj_node *obj)
{
	if (obj->count < 2)
		return NULL;
	if (obj->count <= 16) {
		for (const struct mj_node *a = obj->first; a; a = a->next)
			for (const struct mj_node *b = a->next; b; b = b->next)
				if (a->keylen == b->keylen && memcmp(a->key, b->key, a->keylen) == 0)
					return b;
		return NULL;
	}
	const struct mj_node **v = arena_alloc(p->arena, obj->count * sizeof *v);
	if (!v) {
		oom(p);
		return NULL;
	}
	size_t k = 0;
	for (const struct mj_node *a = obj->first; a; a = a->next)
		v[k++] = a;
	qsort(v, k, sizeof *v, key_cmp);
	for (size_t i = 1; i < k; i++)
		if (key_cmp(&v[i - 1], &v[i]) == 0)
			return v[i];
	return NULL;
}

static int read_container(struct parser *p, struct mj_node *nd, bool object)
{
	if (p->depth >= MJ_MAX_DEPTH)
		return fail_as(p, CN_REJECT_LIMIT, "nested deeper than %d levels", MJ_MAX_DEPTH);
	nd->kind = object ? MJ_OBJECT : MJ_ARRAY;
	p->i++;
	struct frame *f = &p->stack[p->depth++];
	*f = (struct frame){.container = nd};
	struct mj_node **tail = &nd->first;
	skip_ws(p);
	if (p->i < p->n && p->s[p->i] == (object ? '}' : ']')) {
		p->i++;
		p->depth--;
		return CN_OK;
	}
	for (;;) {
		const char *key = NULL;
		size_t keylen = 0;
		if (object) {
			f->key = NULL;
			skip_ws(p);
			if (p->i >= p->n || p->s[p->i] != '"')
				return fail(p, "expected a key in double quotes");
			bool dollar, special;
			if (read_string(p, &key, &keylen, &dollar, &special))
				return p->rc;
			f->key = key;
			if (special)
				return fail(p, "the key is written with an escape that decodes to '$' or '.'; "
					    "write operators and field paths plainly");
			skip_ws(p);
			if (p->i >= p->n || p->s[p->i] != ':')
				return fail(p, "expected ':' after a key");
			p->i++;
		}
		struct mj_node *item;
		if (read_value(p, &item))
			return p->rc;
		item->key = key;
		item->keylen = keylen;
		*tail = item;
		tail = &item->next;
		nd->count++;
		skip_ws(p);
		if (p->i >= p->n)
			return fail(p, "the %s is not closed", object ? "object" : "array");
		unsigned char c = p->s[p->i++];
		if (c == ',') {
			f->index++;
			continue;
		}
		if (c != (object ? '}' : ']'))
			return fail(p, "expected ',' or '%c'", object ? '}' : ']');
		break;
	}
	if (object) {
		const struct mj_node *dup = find_duplicate(p, nd);
		if (p->rc)
			return p->rc;
		if (dup) {
			f->key = NULL;
			char k[100];
			size_t j = 0;
			for (const char *c = dup->key; *c && j + 1 < sizeof k; c++)
				k[j++] = ((unsigned char)*c < 0x20 || *c == 0x7f) ? '?' : *c;
			k[j] = '\0';
			return fail(p, "duplicate key \"%s\"", k);
		}
	}
	p->depth--;
	return CN_OK;
}

static int read_value(struct parser *p, struct mj_node **out)
{
	skip_ws(p);
	if (p->i >= p->n)
		return fail(p, "expected a value");
	struct mj_node *nd = node_new(p, MJ_NULL);
	if (!nd)
		return p->rc;
	*out = nd;
	switch (p->s[p->i]) {
	case '{': return read_container(p, nd, true);
	case '[': return read_container(p, nd, false);
	case '"': {
		bool dollar, special;
		if (read_string(p, &nd->str, &nd->len, &dollar, &special))
			return p->rc;
		if (dollar)
			return fail(p, "the string starts with a '$' written as an escape; write it plainly "
				    "(or as {\"$literal\": ...} when you mean the text)");
		nd->kind = MJ_STRING;
		return CN_OK;
	}
	case 't': return read_literal(p, "true", nd, MJ_BOOL, true);
	case 'f': return read_literal(p, "false", nd, MJ_BOOL, false);
	case 'n': return read_literal(p, "null", nd, MJ_NULL, false);
	default: return read_number(p, nd);
	}
}

int mj_parse(const char *text, size_t len, struct mj_doc *doc, struct cn_error *err)
{
	memset(doc, 0, sizeof *doc);
	if (!text)
		return cn_error_reject(err, CN_REJECT_STATEMENTS, "the query is empty");
	if (len > MJ_MAX_TEXT)
		return cn_error_reject(err, CN_REJECT_LIMIT,
				       "the query is %zu bytes long; at most %u are accepted", len,
				       MJ_MAX_TEXT);
	struct parser p = {.s = (const unsigned char *)text, .n = len, .err = err};
	p.arena = calloc(1, sizeof *p.arena);
	if (!p.arena)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	skip_ws(&p);
	if (p.i + 3 <= p.n && memcmp(p.s + p.i, "\xef\xbb\xbf", 3) == 0)
		fail(&p, "the text starts with a byte order mark");
	else if (p.i >= p.n)
		fail_as(&p, CN_REJECT_STATEMENTS, "the query is empty: send one command document such as "
			"{\"find\": \"orders\", \"filter\": {}}");
	else if (p.s[p.i] != '{')
		fail(&p, "the query must be one JSON object (a command document such as "
		     "{\"find\": \"orders\", \"filter\": {}})");
	struct mj_node *root = NULL;
	if (!p.rc && read_value(&p, &root) == CN_OK) {
		skip_ws(&p);
		if (p.i != p.n)
			fail_as(&p, CN_REJECT_STATEMENTS, "there is text after the command document");
	}
	if (p.rc) {
		arena_free(p.arena);
		return p.rc;
	}
	doc->root = root;
	doc->arena = p.arena;
	return CN_OK;
}

void mj_doc_free(struct mj_doc *doc)
{
	if (!doc)
		return;
	arena_free(doc->arena);
	doc->arena = NULL;
	doc->root = NULL;
}

const struct mj_node *mj_get(const struct mj_node *obj, const char *key)
{
	if (!obj || obj->kind != MJ_OBJECT)
		return NULL;
	size_t n = strlen(key);
	for (const struct mj_node *m = obj->first; m; m = m->next)
		if (m->keylen == n && memcmp(m->key, key, n) == 0)
			return m;
	return NULL;
}

const char *mj_kind_name(enum mj_kind kind)
{
	switch (kind) {
	case MJ_NULL: return "null";
	case MJ_BOOL: return "a boolean";
	case MJ_INT: return "an integer";
	case MJ_DOUBLE: return "a number";
	case MJ_STRING: return "a string";
	case MJ_ARRAY: return "an array";
	case MJ_OBJECT: return "an object";
	}
	return "a value";
}
