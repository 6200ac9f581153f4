/*
 * schema_search.c - the search_schema index: an in-memory SQLite database
 * holding one FTS5 table; rowid n is document n-1 of `docs`, which says
 * which table (and column) it is. The database has one connection, used
 * under `mu`; SQLite's own locking is off (SQLITE_OPEN_NOMUTEX).
 */
#include "schema_search.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "buf.h"

#define WEIGHTS "10.0, 6.0, 3.0, 2.0"
#define SEARCH_POOL_MIN 50 /* candidates bm25 hands to the naming bonus */

struct search_doc {
	const struct sm_table *table;
	const struct sm_column *column;
};

struct schema_search {
	pthread_mutex_t mu;
	sqlite3 *db;
	sqlite3_stmt *query;
	struct search_doc *docs;
	size_t ndocs;
};

static int search_fail(sqlite3 *db, int rc, const char *what, struct cn_error *err)
{
	return cn_error_set(err, rc == SQLITE_NOMEM ? CN_ENOMEM : CN_EINTERNAL, "schema search index: %s: %s",
			    what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

/* name, and when it has inner capitals a copy split into words: "createdAt created At". */
static int name_text(const char *name, struct buf *b)
{
	int rc = buf_puts(b, name);
	bool camel = false;
	for (size_t i = 1; name[i]; i++)
		camel |= islower((unsigned char)name[i - 1]) && isupper((unsigned char)name[i]);
	if (rc || !camel)
		return rc;
	rc = buf_puts(b, " ");
	for (size_t i = 0; !rc && name[i]; i++) {
		if (i && islower((unsigned char)name[i - 1]) && isupper((unsigned char)name[i]))
			rc = buf_puts(b, " ");
		if (!rc)
			rc = buf_append(b, &name[i], 1);
	}
	return rc;
}

static int strv_text(char *const *v, size_t n, struct buf *b)
{
	int rc = CN_OK;
	for (size_t i = 0; i < n && !rc; i++) {
		rc = buf_puts(b, i ? ", " : "");
		if (!rc)
			rc = buf_puts(b, v[i]);
	}
	return rc;
}

/* Bind one document's fields and insert it. */
static int insert_doc(sqlite3 *db, sqlite3_stmt *st, sqlite3_int64 rowid, const char *name, char *const *syn,
		      size_t nsyn, const char *desc, const char *comment, struct cn_error *err)
{
	struct buf n, s;
	buf_init(&n, 1u << 16);
	buf_init(&s, 1u << 20);
	int rc = name_text(name, &n);
	if (!rc)
		rc = strv_text(syn, nsyn, &s);
	if (rc) {
		buf_free(&n);
		buf_free(&s);
		return cn_error_set(err, CN_ENOMEM, "schema search index: out of memory");
	}
	/* the comment only where a mapping's description replaced it */
	if (comment && desc && strcmp(comment, desc) == 0)
		comment = NULL;
	sqlite3_bind_int64(st, 1, rowid);
	sqlite3_bind_text(st, 2, n.data ? n.data : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, s.data ? s.data : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, desc ? desc : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, comment ? comment : "", -1, SQLITE_STATIC);
	int src = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	buf_free(&n);
	buf_free(&s);
	return src == SQLITE_DONE ? CN_OK : search_fail(db, src, "adding a document", err);
}

static int index_model(struct schema_search *s, const struct schema_model *m, struct cn_error *err)
{
	sqlite3_stmt *st = NULL;
	int src = sqlite3_prepare_v2(s->db, "INSERT INTO s(rowid, name, synonyms, description, comment)"
					    " VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st, NULL);
	if (src != SQLITE_OK)
		return search_fail(s->db, src, "preparing", err);
	int rc = CN_OK;
	for (size_t i = 0; i < m->ntables && !rc; i++) {
		const struct sm_table *t = &m->tables[i];
		if (t->hidden)
			continue;
		s->docs[s->ndocs] = (struct search_doc){t, NULL};
		rc = insert_doc(s->db, st, (sqlite3_int64)++s->ndocs, t->name, t->synonyms, t->nsynonyms,
				t->description, t->comment, err);
		for (size_t j = 0; j < t->ncolumns && !rc; j++) {
			const struct sm_column *c = &t->columns[j];
			if (c->hidden)
				continue;
			s->docs[s->ndocs] = (struct search_doc){t, c};
			rc = insert_doc(s->db, st, (sqlite3_int64)++s->ndocs, c->name, c->synonyms,
					c->nsynonyms, c->description, c->comment, err);
		}
	}
	sqlite3_finalize(st);
	return rc;
}

int schema_search_build(const struct schema_model *m, struct schema_search **out, struct cn_error *err)
{
	*out = NULL;
	struct schema_search *s = calloc(1, sizeof *s);
	if (!s)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	pthread_mutex_init(&s->mu, NULL);
	size_t ndocs = 0;
	for (size_t i = 0; m && i < m->ntables; i++)
		ndocs += 1 + m->tables[i].ncolumns;
	s->docs = calloc(ndocs ? ndocs : 1, sizeof *s->docs);
	int rc = CN_OK;
	if (!s->docs) {
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto out;
	}
	int src = sqlite3_open_v2(":memory:", &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (src == SQLITE_OK)
		src = sqlite3_exec(s->db,
				   "CREATE VIRTUAL TABLE s USING fts5(name, synonyms, description, comment,"
				   " tokenize = 'porter unicode61 remove_diacritics 2');"
				   "BEGIN",
				   NULL, NULL, NULL);
	if (src != SQLITE_OK) {
		rc = search_fail(s->db, src, "creating the FTS5 table", err);
		goto out;
	}
	if (m)
		rc = index_model(s, m, err);
	src = sqlite3_exec(s->db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL);
	if (!rc && src != SQLITE_OK)
		rc = search_fail(s->db, src, "committing", err);
	if (!rc) {
		src = sqlite3_prepare_v3(s->db,
					 "SELECT rowid, bm25(s, " WEIGHTS ") AS r FROM s WHERE s MATCH ?1"
					 " ORDER BY r, rowid LIMIT ?2",
					 -1, SQLITE_PREPARE_PERSISTENT, &s->query, NULL);
		if (src != SQLITE_OK)
			rc = search_fail(s->db, src, "preparing the query", err);
	}
out:
	if (rc) {
		schema_search_free(s);
		return rc;
	}
	*out = s;
	return CN_OK;
}

void schema_search_free(struct schema_search *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->query);
	sqlite3_close(s->db);
	pthread_mutex_destroy(&s->mu);
	free(s->docs);
	free(s);
}

size_t schema_search_size(const struct schema_search *s)
{
	return s ? s->ndocs : 0;
}

/* A word character: ASCII letters and digits, and every byte of a UTF-8
 * sequence (unicode61 decides about those). */
static bool word_char(unsigned char c)
{
	return isalnum(c) || c >= 0x80;
}

struct query_words {
	struct {
		const char *p;
		size_t n;
	} w[SEARCH_MAX_WORDS];
	size_t n;
};

/* The words of a query; one-letter words only when there is nothing else
 * (they match nearly everything). */
static void query_words(const char *query, struct query_words *q)
{
	size_t longest = 0;
	q->n = 0;
	for (const char *p = query ? query : ""; *p && q->n < SEARCH_MAX_WORDS;) {
		if (!word_char((unsigned char)*p)) {
			p++;
			continue;
		}
		const char *start = p;
		while (*p && word_char((unsigned char)*p))
			p++;
		size_t n = (size_t)(p - start);
		q->w[q->n].p = start;
		q->w[q->n++].n = n > SEARCH_MAX_WORD ? SEARCH_MAX_WORD : n;
		if (n > longest)
			longest = n;
	}
	size_t kept = 0;
	for (size_t i = 0; i < q->n; i++)
		if (q->w[i].n >= 2 || longest < 2)
			q->w[kept++] = q->w[i];
	q->n = kept;
}

int schema_search_fts_query(const char *query, char *out, size_t len)
{
	struct query_words q;
	size_t used = 0;
	query_words(query, &q);
	out[0] = '\0';
	for (size_t i = 0; i < q.n; i++) {
		int w = snprintf(out + used, len - used, "%s\"%.*s\"*", used ? " OR " : "", (int)q.w[i].n,
				 q.w[i].p);
		if (w < 0 || (size_t)w >= len - used)
			return CN_ETOOBIG;
		used += (size_t)w;
	}
	return used ? CN_OK : CN_EINVAL;
}

/* ---- naming bonus ----
 * bm25 weighs a name by the length of the whole document, so a table with a
 * long description loses to its own columns. On top of it, a hit gets
 * NAME_WORD_BONUS per query word that is a word of its name (NAME_PREFIX_BONUS
 * when it only begins one), NAME_FULL_BONUS when the query's words make up
 * its whole name, SYNONYM_FULL_BONUS when they make up one of its synonyms,
 * a table that earned any of these TABLE_BONUS (it is the better answer
 * than its own columns), and a column PARENT_WORD_BONUS per query word that
 * names its table ("customers email" puts customers.email before
 * orders.email); words are compared lowercased with a plural "s"/"ies" and
 * an "ed"/"ing" ending taken off. The parent table is scored here, not
 * indexed: a word common to many table names would otherwise match every
 * column of them. */
#define NAME_WORD_BONUS 3.0
#define NAME_PREFIX_BONUS 1.5
#define NAME_FULL_BONUS 2.0
#define SYNONYM_FULL_BONUS 2.5
#define TABLE_BONUS 1.0
#define PARENT_WORD_BONUS 1.0
#define STEM_MAX 64

/* A crude stem of s[0..n) into out (lowercase ASCII); its length. */
static size_t stem(const char *s, size_t n, char out[STEM_MAX + 1])
{
	size_t k = 0;
	for (size_t i = 0; i < n && k < STEM_MAX; i++)
		out[k++] = (char)tolower((unsigned char)s[i]);
	out[k] = '\0';
	if (k > 4 && strcmp(out + k - 3, "ies") == 0) {
		k -= 3;
		out[k++] = 'y';
	} else if (k > 3 && out[k - 1] == 's' && out[k - 2] != 's') {
		k--;
	}
	if (k > 5 && strncmp(out + k - 3, "ing", 3) == 0)
		k -= 3;
	else if (k > 4 && strncmp(out + k - 2, "ed", 2) == 0)
		k -= 2;
	out[k] = '\0';
	return k;
}

/* Split text into stemmed words (at non-alphanumerics and camelCase). */
static size_t text_words(const char *text, char words[][STEM_MAX + 1], size_t max)
{
	size_t n = 0;
	for (const char *p = text; *p && n < max;) {
		if (!word_char((unsigned char)*p)) {
			p++;
			continue;
		}
		const char *start = p++;
		while (*p && word_char((unsigned char)*p) &&
		       !(islower((unsigned char)p[-1]) && isupper((unsigned char)*p)))
			p++;
		stem(start, (size_t)(p - start), words[n++]);
	}
	return n;
}

/* Whether every word of text is among the query's (and there is one). */
static bool covered(char tw[][STEM_MAX + 1], size_t nt, char qw[][STEM_MAX + 1], size_t nq)
{
	for (size_t i = 0; i < nt; i++) {
		bool found = false;
		for (size_t j = 0; j < nq && !found; j++)
			found = strcmp(tw[i], qw[j]) == 0;
		if (!found)
			return false;
	}
	return nt > 0;
}

static double name_bonus(const struct search_doc *d, char qw[][STEM_MAX + 1], size_t nq)
{
	char tw[SEARCH_MAX_WORDS][STEM_MAX + 1];
	const char *name = d->column ? d->column->name : d->table->name;
	char *const *syn = d->column ? d->column->synonyms : d->table->synonyms;
	size_t nsyn = d->column ? d->column->nsynonyms : d->table->nsynonyms;
	size_t nt = text_words(name, tw, SEARCH_MAX_WORDS);
	double bonus = 0;
	for (size_t j = 0; j < nq; j++) {
		double best = 0;
		size_t ql = strlen(qw[j]);
		for (size_t i = 0; i < nt; i++) {
			if (strcmp(tw[i], qw[j]) == 0)
				best = NAME_WORD_BONUS;
			else if (ql >= 3 && strncmp(tw[i], qw[j], ql) == 0 && best < NAME_PREFIX_BONUS)
				best = NAME_PREFIX_BONUS;
		}
		bonus += best;
	}
	if (covered(tw, nt, qw, nq))
		bonus += NAME_FULL_BONUS;
	for (size_t k = 0; k < nsyn; k++) {
		nt = text_words(syn[k], tw, SEARCH_MAX_WORDS);
		if (covered(tw, nt, qw, nq) && covered(qw, nq, tw, nt)) {
			bonus += SYNONYM_FULL_BONUS;
			break;
		}
	}
	if (!d->column)
		return bonus > 0 ? bonus + TABLE_BONUS : bonus;
	nt = text_words(d->table->name, tw, SEARCH_MAX_WORDS);
	for (size_t j = 0; j < nq; j++)
		for (size_t i = 0; i < nt; i++)
			if (strcmp(tw[i], qw[j]) == 0) {
				bonus += PARENT_WORD_BONUS;
				break;
			}
	return bonus;
}

static int hit_cmp(const void *a, const void *b)
{
	const struct search_hit *x = a, *y = b;
	if (x->score != y->score)
		return x->score < y->score ? 1 : -1;
	return 0;
}

int schema_search_query(struct schema_search *s, const char *query, size_t limit, struct search_hit *hits,
			size_t *n, struct cn_error *err)
{
	char fts[SEARCH_MAX_WORDS * (SEARCH_MAX_WORD + 8) + 1];
	char qw[SEARCH_MAX_WORDS][STEM_MAX + 1];
	*n = 0;
	if (schema_search_fts_query(query, fts, sizeof fts) != CN_OK)
		return cn_error_set(err, CN_EINVAL, "the query has no word to search for");
	if (!s || limit == 0)
		return CN_OK;
	struct query_words q;
	query_words(query, &q);
	for (size_t i = 0; i < q.n; i++)
		stem(q.w[i].p, q.w[i].n, qw[i]);
	/* bm25 picks a pool, the naming bonus orders it */
	size_t pool = limit * 5 < SEARCH_POOL_MIN ? SEARCH_POOL_MIN : limit * 5;
	struct search_hit *cand = calloc(pool, sizeof *cand);
	if (!cand)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	size_t nc = 0;
	int rc = CN_OK;
	pthread_mutex_lock(&s->mu);
	sqlite3_bind_text(s->query, 1, fts, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s->query, 2, (sqlite3_int64)pool);
	int src;
	while ((src = sqlite3_step(s->query)) == SQLITE_ROW && nc < pool) {
		sqlite3_int64 id = sqlite3_column_int64(s->query, 0);
		if (id < 1 || (size_t)id > s->ndocs)
			continue;
		const struct search_doc *d = &s->docs[id - 1];
		cand[nc].table = d->table;
		cand[nc].column = d->column;
		cand[nc].score = -sqlite3_column_double(s->query, 1) + name_bonus(d, qw, q.n);
		nc++;
	}
	if (src != SQLITE_DONE && src != SQLITE_ROW)
		rc = search_fail(s->db, src, "searching", err);
	sqlite3_reset(s->query);
	sqlite3_clear_bindings(s->query);
	pthread_mutex_unlock(&s->mu);
	if (rc == CN_OK) {
		/* qsort is not stable: ties keep bm25's order through the index */
		for (size_t i = 0; i < nc; i++)
			cand[i].score -= (double)i * 1e-9;
		qsort(cand, nc, sizeof *cand, hit_cmp);
		for (size_t i = 0; i < nc && i < limit; i++)
			hits[(*n)++] = cand[i];
	}
	free(cand);
	return rc;
}
