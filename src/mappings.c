/*
 * mappings.c - semantic mapping files: load (YAML or JSON through
 * yaml_tree), merge into a schema model, and answer "is this hidden?".
 *
 * Conventions beyond mappings.h:
 * - mapping_entry.synonyms is NULL when the entry has no `synonyms` field and
 *   non-NULL (possibly with nsynonyms 0) when it has one, so that an explicit
 *   empty list clears the database's synonyms.
 * - Keys are validated at load: 1 to 3 non-empty dot-separated parts (1 to
 *   MAPPINGS_MAX_PATH_PARTS with field paths), no NUL byte. mappings_apply
 *   and mappings_is_hidden rely on that.
 * - With field paths a key is matched against each table name as a prefix
 *   ("orders.customer.email": table "orders", field "customer.email"), so a
 *   collection name with dots in it needs no escaping; "[]" markers are left
 *   out on both sides before field paths are compared.
 */
#include "mappings.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "yaml_tree.h"

#define MAP_MAX_DESCRIPTION 2000
#define MAP_MAX_SYNONYMS 50
#define MAP_MAX_SYNONYM 200
#define MAP_MAX_PARTS 3

static const char *const map_fields[] = {"description", "synonyms", "hidden"};
#define MAP_NFIELDS (sizeof map_fields / sizeof map_fields[0])

/* ---- key parts ---- */

struct key_part {
	const char *s;
	size_t len;
};

/* Split a key on '.'; returns the number of parts, or 0 when the key is
 * empty, has an empty part or more than MAP_MAX_PARTS parts. */
static size_t key_split(const char *key, struct key_part parts[MAP_MAX_PARTS])
{
	size_t n = 0;
	const char *p = key;

	for (;;) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		if (len == 0 || n == MAP_MAX_PARTS)
			return 0;
		parts[n].s = p;
		parts[n].len = len;
		n++;
		if (!dot)
			return n;
		p = dot + 1;
	}
}

/* Case-insensitive: part equals the NUL-terminated name. */
static bool part_eq(const struct key_part *part, const char *name)
{
	return name && strncasecmp(part->s, name, part->len) == 0 && name[part->len] == '\0';
}

/* ---- loading ---- */

struct loader {
	const char *file;
	enum mappings_keys keys;
	struct cn_error *err;
};

/* A key as it may appear in a message: bounded, control bytes replaced. */
static void key_printable(char *out, size_t size, const char *s)
{
	size_t i = 0;
	for (; s[i] && i + 1 < size; i++)
		out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	out[i] = '\0';
}

/* "FILE:LINE: mappings[.KEY[.FIELD]]: what" with CN_ECONFIG. */
static int load_error(const struct loader *ld, int line, const char *key, const char *field, const char *what)
{
	char k[120] = "";
	if (key)
		key_printable(k, sizeof k, key);
	return cn_error_set(ld->err, CN_ECONFIG, "%s:%d: mappings%s%s%s%s: %s", ld->file, line,
			    key ? "." : "", k, field ? "." : "", field ? field : "", what);
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t lb = strlen(b);
	size_t row[32];

	if (lb >= sizeof row / sizeof row[0])
		return (size_t)-1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; a[i - 1]; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t cost =
			    diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
			size_t best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
			row[j] = cost < best ? cost : best;
			diag = up;
		}
	}
	return row[lb];
}

static int unknown_field(const struct loader *ld, const struct ynode *fk, const char *key)
{
	const char *field = fk->value;
	int line = fk->line;
	char f[64];
	const char *best = NULL;
	size_t best_d = 4;

	key_printable(f, sizeof f, field);
	if (strlen(field) != fk->len)
		return load_error(ld, line, key, f, "the field name contains a NUL byte; remove it");

	for (size_t i = 0; i < MAP_NFIELDS; i++) {
		size_t d = edit_distance(field, map_fields[i]);
		/* an abbreviation such as `desc` is as good as a typo */
		if (strlen(field) >= 3 && strncasecmp(field, map_fields[i], strlen(field)) == 0)
			d = 1;
		if (d < best_d) {
			best_d = d;
			best = map_fields[i];
		}
	}
	if (best) {
		char what[64];
		snprintf(what, sizeof what, "unknown field; did you mean '%s'?", best);
		return load_error(ld, line, key, f, what);
	}
	return load_error(ld, line, key, f, "unknown field; the fields are description, synonyms and hidden");
}

static bool has_nul(const struct ynode *n)
{
	return strlen(n->value) != n->len;
}

/* The map key k is exactly name (a key with a NUL byte never is). */
static bool key_is(const struct ynode *k, const char *name)
{
	return k->len == strlen(name) && memcmp(k->value, name, k->len) == 0;
}

static bool is_plain_bool(const struct ynode *n, bool *value)
{
	static const char *const t[] = {"true", "True", "TRUE"};
	static const char *const f[] = {"false", "False", "FALSE"};

	if (n->type != YNODE_SCALAR || !n->plain)
		return false;
	for (size_t i = 0; i < 3; i++) {
		if (strcmp(n->value, t[i]) == 0) {
			*value = true;
			return true;
		}
		if (strcmp(n->value, f[i]) == 0) {
			*value = false;
			return true;
		}
	}
	return false;
}

/* Text scalars: not a list/map, not null or a bare true/false, no NUL. */
static int check_text(const struct loader *ld, const struct ynode *n, const char *key, const char *field,
		      const char *what_it_is)
{
	char what[200];
	bool b;

	if (n->type != YNODE_SCALAR) {
		snprintf(what, sizeof what, "%s must be a string, not %s", what_it_is, ytree_type_name(n));
		return load_error(ld, n->line, key, field, what);
	}
	if (ytree_is_null(n) || is_plain_bool(n, &b)) {
		snprintf(what, sizeof what, "%s must be a string, not %s; quote it if you mean the text",
			 what_it_is, ytree_is_null(n) ? "null" : "true/false");
		return load_error(ld, n->line, key, field, what);
	}
	if (has_nul(n))
		return load_error(ld, n->line, key, field, "contains a NUL byte; remove it");
	return CN_OK;
}

static int load_description(const struct loader *ld, const struct ynode *n, struct mapping_entry *e)
{
	char what[200];
	int rc = check_text(ld, n, e->key, "description", "the description");
	if (rc)
		return rc;
	if (n->len > MAP_MAX_DESCRIPTION) {
		snprintf(what, sizeof what, "is %zu bytes long; shorten it to at most %d bytes", n->len,
			 MAP_MAX_DESCRIPTION);
		return load_error(ld, n->line, e->key, "description", what);
	}
	e->description = strdup(n->value);
	return e->description ? CN_OK : CN_ENOMEM;
}

static int load_synonym(const struct loader *ld, const struct ynode *n, struct mapping_entry *e)
{
	char what[200];
	int rc = check_text(ld, n, e->key, "synonyms", "each synonym");
	if (rc)
		return rc;
	if (n->len == 0)
		return load_error(ld, n->line, e->key, "synonyms",
				  "a synonym is empty; remove it or write a word");
	if (n->len > MAP_MAX_SYNONYM) {
		snprintf(what, sizeof what, "a synonym is %zu bytes long; shorten it to at most %d bytes",
			 n->len, MAP_MAX_SYNONYM);
		return load_error(ld, n->line, e->key, "synonyms", what);
	}
	e->synonyms[e->nsynonyms] = strdup(n->value);
	if (!e->synonyms[e->nsynonyms])
		return CN_ENOMEM;
	e->nsynonyms++;
	return CN_OK;
}

static int load_synonyms(const struct loader *ld, const struct ynode *n, struct mapping_entry *e)
{
	char what[200];
	const struct ynode *const *items = (const struct ynode *const *)n->items;
	size_t count = n->n;

	if (n->type == YNODE_MAP)
		return load_error(ld, n->line, e->key, "synonyms",
				  "must be a list of strings, not a map; write [word, other word]");
	if (ytree_is_null(n))
		return load_error(ld, n->line, e->key, "synonyms",
				  "must be a list of strings, not null; write [word, other word]");
	if (n->type == YNODE_SCALAR) {
		items = &n;
		count = 1;
	}
	if (count > MAP_MAX_SYNONYMS) {
		snprintf(what, sizeof what, "has %zu synonyms; keep at most %d", count, MAP_MAX_SYNONYMS);
		return load_error(ld, n->line, e->key, "synonyms", what);
	}
	e->synonyms = calloc(count ? count : 1, sizeof *e->synonyms);
	if (!e->synonyms)
		return CN_ENOMEM;
	for (size_t i = 0; i < count; i++) {
		int rc = load_synonym(ld, items[i], e);
		if (rc)
			return rc;
	}
	return CN_OK;
}

static int load_hidden(const struct loader *ld, const struct ynode *n, struct mapping_entry *e)
{
	if (!is_plain_bool(n, &e->hidden))
		return load_error(ld, n->line, e->key, "hidden", "must be true or false (unquoted)");
	return CN_OK;
}

static int load_fields(const struct loader *ld, const struct ynode *map, struct mapping_entry *e)
{
	char what[200];

	if (map->type != YNODE_MAP) {
		snprintf(what, sizeof what,
			 "must be a map, not %s; write {description: ..., synonyms: [...], hidden: ...}",
			 ytree_is_null(map) ? "null" : ytree_type_name(map));
		return load_error(ld, map->line, e->key, NULL, what);
	}
	for (size_t i = 0; i < map->n; i++) {
		const struct ynode *v = map->items[i];
		int rc;
		if (key_is(map->keys[i], "description"))
			rc = load_description(ld, v, e);
		else if (key_is(map->keys[i], "synonyms"))
			rc = load_synonyms(ld, v, e);
		else if (key_is(map->keys[i], "hidden"))
			rc = load_hidden(ld, v, e);
		else
			rc = unknown_field(ld, map->keys[i], e->key);
		if (rc)
			return rc;
	}
	return CN_OK;
}

/* A field-path key: 1 to MAPPINGS_MAX_PATH_PARTS parts, none empty (once
 * its "[]" markers are left out). */
static int check_path_key(const struct loader *ld, const struct ynode *k)
{
	size_t parts = 0;
	const char *p = k->value;
	for (;;) {
		size_t len = strcspn(p, ".");
		size_t marks = 0;
		while (len >= marks + 2 && p[len - marks - 2] == '[' && p[len - marks - 1] == ']')
			marks += 2;
		if (len == marks)
			return load_error(ld, k->line, k->value, NULL,
					  "the key has an empty part; remove the extra dot");
		if (++parts > MAPPINGS_MAX_PATH_PARTS)
			return load_error(ld, k->line, k->value, NULL,
					  "the key has more than 32 parts; write `collection` or "
					  "`collection.field.path`");
		if (!p[len])
			return CN_OK;
		p += len + 1;
	}
}

static int check_key(const struct loader *ld, const struct ynode *k)
{
	struct key_part parts[MAP_MAX_PARTS];

	if (k->len == 0)
		return load_error(ld, k->line, NULL, NULL,
				  ld->keys == MAPPINGS_FIELD_PATHS
					  ? "an entry has an empty key; write `collection` or `collection.field`"
					  : "an entry has an empty key; write `table` or `table.column`");
	if (has_nul(k))
		return load_error(ld, k->line, k->value, NULL, "the key contains a NUL byte; remove it");
	if (ld->keys == MAPPINGS_FIELD_PATHS)
		return check_path_key(ld, k);
	if (key_split(k->value, parts) == 0) {
		bool empty_part = k->value[0] == '.' || k->value[k->len - 1] == '.' || strstr(k->value, "..");
		return load_error(ld, k->line, k->value, NULL,
				  empty_part ? "the key has an empty part; remove the extra dot"
					     : "the key has more than three parts; write `table`, "
					       "`table.column` or `schema.table.column`");
	}
	return CN_OK;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct mapping_entry *x = *(const struct mapping_entry *const *)a;
	const struct mapping_entry *y = *(const struct mapping_entry *const *)b;
	int c = strcasecmp(x->key, y->key);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Keys that differ only in case name the same object: refuse the later one.
 * Sorting keeps this O(n log n) for large files. */
static int check_duplicates(const struct loader *ld, const struct mappings *mp)
{
	const struct mapping_entry **v;
	char what[200], other[120];
	int rc = CN_OK;

	if (mp->n < 2)
		return CN_OK;
	v = malloc(mp->n * sizeof *v);
	if (!v)
		return CN_ENOMEM;
	for (size_t i = 0; i < mp->n; i++)
		v[i] = &mp->entries[i];
	qsort(v, mp->n, sizeof *v, entry_cmp);
	for (size_t i = 1; i < mp->n; i++) {
		if (strcasecmp(v[i - 1]->key, v[i]->key) != 0)
			continue;
		key_printable(other, sizeof other, v[i - 1]->key);
		snprintf(what, sizeof what,
			 "the same key as '%s' on line %d (keys ignore case); merge the two", other,
			 v[i - 1]->line);
		rc = load_error(ld, v[i]->line, v[i]->key, NULL, what);
		break;
	}
	free(v);
	return rc;
}

static void entry_clear(struct mapping_entry *e)
{
	free(e->key);
	free(e->description);
	if (e->synonyms)
		for (size_t i = 0; i < e->nsynonyms; i++)
			free(e->synonyms[i]);
	free(e->synonyms);
}

static int load_entries(const struct loader *ld, const struct ynode *map, struct mappings *mp)
{
	char what[200];

	if (map->type != YNODE_MAP) {
		snprintf(what, sizeof what,
			 "must be a map of table or column names to fields, not %s; "
			 "write `mappings: {}` when there is nothing to map",
			 ytree_is_null(map) ? "null" : ytree_type_name(map));
		return load_error(ld, map->line, NULL, NULL, what);
	}
	mp->entries = calloc(map->n ? map->n : 1, sizeof *mp->entries);
	if (!mp->entries)
		return CN_ENOMEM;
	for (size_t i = 0; i < map->n; i++) {
		const struct ynode *k = map->keys[i];
		int rc = check_key(ld, k);
		if (rc)
			return rc;
		struct mapping_entry *e = &mp->entries[mp->n];
		e->line = k->line;
		e->key = strdup(k->value);
		if (!e->key)
			return CN_ENOMEM;
		/* counted now so that mappings_free releases a half-loaded entry */
		mp->n++;
		rc = load_fields(ld, map->items[i], e);
		if (rc)
			return rc;
	}
	return check_duplicates(ld, mp);
}

static int load_root(const struct loader *ld, const struct ynode *root, struct mappings *mp)
{
	const struct ynode *entries = NULL;

	if (root->type != YNODE_MAP)
		return load_error(ld, root->line, NULL, NULL,
				  "the file must be a map with the single key `mappings`; "
				  "write `mappings:` followed by one entry per table or column");
	for (size_t i = 0; i < root->n; i++) {
		if (key_is(root->keys[i], "mappings")) {
			entries = root->items[i];
			continue;
		}
		char k[64];
		key_printable(k, sizeof k, root->keys[i]->value);
		bool close = edit_distance(k, "mappings") <= 3;
		if (has_nul(root->keys[i]))
			return cn_error_set(ld->err, CN_ECONFIG,
					    "%s:%d: %s: the key contains a NUL byte; remove it", ld->file,
					    root->keys[i]->line, k);
		return cn_error_set(ld->err, CN_ECONFIG, "%s:%d: %s: unknown top-level key; %s", ld->file,
				    root->keys[i]->line, k,
				    close ? "did you mean 'mappings'?"
					  : "put every entry under the single key `mappings:`");
	}
	if (!entries)
		return load_error(ld, root->line, NULL, NULL,
				  "missing; the file must start with `mappings:` "
				  "(write `mappings: {}` when there is nothing to map)");
	return load_entries(ld, entries, mp);
}

static int load_tree(const char *name, const struct ynode *root, enum mappings_keys keys,
		     struct mappings **out, struct cn_error *err)
{
	struct loader ld = {.file = name, .keys = keys, .err = err};
	struct mappings *mp = calloc(1, sizeof *mp);
	int rc = CN_ENOMEM;

	if (!mp || !(mp->path = strdup(name)))
		goto out;
	mp->keys = keys;
	rc = load_root(&ld, root, mp);
out:
	if (rc == CN_ENOMEM)
		cn_error_set(err, rc, "%s: out of memory", name);
	if (rc != CN_OK) {
		mappings_free(mp);
		return rc;
	}
	*out = mp;
	return CN_OK;
}

int mappings_load_buffer_as(const char *name, const void *data, size_t len, enum mappings_keys keys,
			    struct mappings **out, struct cn_error *err)
{
	struct ynode *root = NULL;
	int rc;

	*out = NULL;
	rc = ytree_parse_buffer(name, data, len, &root, err);
	if (rc == CN_OK)
		rc = load_tree(name, root, keys, out, err);
	ytree_free(root);
	return rc;
}

int mappings_load_as(const char *path, enum mappings_keys keys, struct mappings **out,
		     struct cn_error *err)
{
	struct ynode *root = NULL;
	int rc;

	*out = NULL;
	rc = ytree_parse_file(path, &root, err);
	if (rc == CN_OK)
		rc = load_tree(path, root, keys, out, err);
	ytree_free(root);
	return rc;
}

int mappings_load_buffer(const char *name, const void *data, size_t len, struct mappings **out,
			 struct cn_error *err)
{
	return mappings_load_buffer_as(name, data, len, MAPPINGS_SQL_KEYS, out, err);
}

int mappings_load(const char *path, struct mappings **out, struct cn_error *err)
{
	return mappings_load_as(path, MAPPINGS_SQL_KEYS, out, err);
}

static bool text_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

bool mappings_equal(const struct mappings *a, const struct mappings *b)
{
	if (!a || !b)
		return a == b;
	if (a->n != b->n || a->keys != b->keys)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct mapping_entry *x = &a->entries[i], *y = &b->entries[i];
		if (!text_eq(x->key, y->key) || !text_eq(x->description, y->description) ||
		    x->hidden != y->hidden || x->nsynonyms != y->nsynonyms)
			return false;
		for (size_t k = 0; k < x->nsynonyms; k++)
			if (!text_eq(x->synonyms[k], y->synonyms[k]))
				return false;
	}
	return true;
}

void mappings_free(struct mappings *mp)
{
	if (!mp)
		return;
	for (size_t i = 0; i < mp->n; i++)
		entry_clear(&mp->entries[i]);
	free(mp->entries);
	free(mp->path);
	free(mp);
}

/* ---- applying ---- */

static char **strv_copy(char *const *v, size_t n)
{
	char **c = calloc(n ? n : 1, sizeof *c);
	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		c[i] = strdup(v[i]);
		if (!c[i]) {
			for (size_t j = 0; j < i; j++)
				free(c[j]);
			free(c);
			return NULL;
		}
	}
	return c;
}

/* Replace *desc and the synonyms with the entry's, when it sets them. On
 * out of memory the old values stay and an error is logged. */
static void apply_fields(const struct mapping_entry *e, char **desc, char ***syn, size_t *nsyn, bool *hidden)
{
	if (e->description) {
		char *d = strdup(e->description);
		if (d) {
			free(*desc);
			*desc = d;
		} else {
			log_error("mappings: out of memory applying the description of %s", e->key);
		}
	}
	if (e->synonyms) {
		char **s = strv_copy(e->synonyms, e->nsynonyms);
		if (s) {
			for (size_t i = 0; i < *nsyn; i++)
				free((*syn)[i]);
			free(*syn);
			*syn = s;
			*nsyn = e->nsynonyms;
		} else {
			log_error("mappings: out of memory applying the synonyms of %s", e->key);
		}
	}
	if (e->hidden)
		*hidden = true;
}

static void apply_table(const struct mapping_entry *e, struct sm_table *t)
{
	apply_fields(e, &t->description, &t->synonyms, &t->nsynonyms, &t->hidden);
}

static void apply_column(const struct mapping_entry *e, struct sm_column *c)
{
	apply_fields(e, &c->description, &c->synonyms, &c->nsynonyms, &c->hidden);
}

/* Apply e to columns `column` of tables `table` in schema `schema` (NULL:
 * any schema); column NULL applies to the tables. Returns matches. */
static size_t apply_match(const struct mapping_entry *e, struct schema_model *m,
			  const struct key_part *schema, const struct key_part *table,
			  const struct key_part *column)
{
	size_t hits = 0;

	for (size_t i = 0; i < m->ntables; i++) {
		struct sm_table *t = &m->tables[i];
		if (!part_eq(table, t->name) || (schema && !part_eq(schema, t->schema)))
			continue;
		if (!column) {
			apply_table(e, t);
			hits++;
			continue;
		}
		for (size_t j = 0; j < t->ncolumns; j++) {
			if (part_eq(column, t->columns[j].name)) {
				apply_column(e, &t->columns[j]);
				hits++;
			}
		}
	}
	return hits;
}

/* ---- field paths ---- */

#define PATH_MAX_BYTES 1024

/* s without its "[]" array markers, case kept; false when it does not fit. */
static bool strip_markers(const char *s, char *out, size_t size)
{
	size_t w = 0;
	for (; *s; s++) {
		if (s[0] == '[' && s[1] == ']' && (s[2] == '.' || s[2] == '\0' || s[2] == '[')) {
			s++;
			continue;
		}
		if (w + 1 >= size)
			return false;
		out[w++] = *s;
	}
	out[w] = '\0';
	return true;
}

/* The part of a field-path key after `table.`: "" when the key is the table
 * itself, NULL when the key is about another table. */
static const char *key_rest(const char *key, const char *table)
{
	size_t n = table ? strlen(table) : 0;
	if (!n || strncasecmp(key, table, n) != 0)
		return NULL;
	if (key[n] == '\0')
		return key + n;
	return key[n] == '.' ? key + n + 1 : NULL;
}

/* 1 when path is field, 2 when it lies under field, else 0 (case-insensitive). */
static int path_rel(const char *path, const char *field)
{
	size_t n = strlen(field);
	if (strncasecmp(path, field, n) != 0)
		return 0;
	if (path[n] == '\0')
		return 1;
	return path[n] == '.' ? 2 : 0;
}

static size_t apply_field_entry(const struct mapping_entry *e, struct schema_model *m)
{
	size_t hits = 0;
	char want[PATH_MAX_BYTES], have[PATH_MAX_BYTES];

	for (size_t i = 0; i < m->ntables; i++) {
		struct sm_table *t = &m->tables[i];
		const char *rest = key_rest(e->key, t->name);
		if (!rest)
			continue;
		if (!*rest) {
			apply_table(e, t);
			hits++;
			continue;
		}
		if (!strip_markers(rest, want, sizeof want))
			continue;
		for (size_t j = 0; j < t->ncolumns; j++) {
			if (!strip_markers(t->columns[j].name, have, sizeof have))
				continue;
			int rel = path_rel(have, want);
			if (rel == 1) {
				apply_column(e, &t->columns[j]);
				hits++;
			} else if (rel == 2 && e->hidden) {
				t->columns[j].hidden = true; /* under a hidden field */
				hits++;
			}
		}
	}
	return hits;
}

static size_t apply_entry(const struct mapping_entry *e, struct schema_model *m,
			  enum mappings_keys keys)
{
	struct key_part p[MAP_MAX_PARTS];

	if (keys == MAPPINGS_FIELD_PATHS)
		return apply_field_entry(e, m);

	switch (key_split(e->key, p)) {
	case 1: return apply_match(e, m, NULL, &p[0], NULL);
	case 2: {
		size_t hits = apply_match(e, m, NULL, &p[0], &p[1]);
		return hits ? hits : apply_match(e, m, &p[0], &p[1], NULL);
	}
	case 3: return apply_match(e, m, &p[0], &p[1], &p[2]);
	default: return 0;
	}
}

size_t mappings_apply(const struct mappings *mp, struct schema_model *m, mappings_warn_fn warn, void *ctx)
{
	size_t unmatched = 0;

	if (!mp || !m)
		return 0;
	for (size_t i = 0; i < mp->n; i++) {
		const struct mapping_entry *e = &mp->entries[i];
		if (apply_entry(e, m, mp->keys) > 0)
			continue;
		unmatched++;
		if (warn)
			warn(ctx, mp->path, e->line, e->key, "matches no table or column in the schema");
	}
	return unmatched;
}

/* ---- hidden checks (no model: every reading of a key that could hide the
 * object counts, so an ambiguous two-part key errs on the hidden side) ---- */

/* schema NULL (the caller does not know it) matches any schema part. */
static bool schema_eq(const struct key_part *part, const char *schema)
{
	return !schema || part_eq(part, schema);
}

static bool field_entry_hides(const struct mapping_entry *e, const char *table, const char *column)
{
	const char *rest = key_rest(e->key, table);
	char want[PATH_MAX_BYTES], have[PATH_MAX_BYTES];
	if (!rest)
		return false;
	if (!*rest)
		return true; /* the collection, and so each of its fields */
	if (!column)
		return false;
	/* a path too long to compare cannot be told visible: hidden */
	if (!strip_markers(rest, want, sizeof want) || !strip_markers(column, have, sizeof have))
		return true;
	return path_rel(have, want) != 0;
}

static bool entry_hides(const struct mapping_entry *e, enum mappings_keys keys, const char *schema,
			const char *table, const char *column)
{
	struct key_part p[MAP_MAX_PARTS];

	if (keys == MAPPINGS_FIELD_PATHS)
		return field_entry_hides(e, table, column);

	switch (key_split(e->key, p)) {
	case 1: return part_eq(&p[0], table);
	case 2:
		/* schema.table hides the table and its columns */
		if (schema_eq(&p[0], schema) && part_eq(&p[1], table))
			return true;
		/* table.column */
		return column && part_eq(&p[0], table) && part_eq(&p[1], column);
	case 3: return column && schema_eq(&p[0], schema) && part_eq(&p[1], table) && part_eq(&p[2], column);
	default: return false;
	}
}

int mappings_is_hidden(const struct mappings *mp, const char *schema, const char *table, const char *column)
{
	if (!mp || !table)
		return 0;
	for (size_t i = 0; i < mp->n; i++)
		if (mp->entries[i].hidden && entry_hides(&mp->entries[i], mp->keys, schema, table, column))
			return 1;
	return 0;
}
