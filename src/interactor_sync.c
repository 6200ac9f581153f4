/*
 * interactor_sync.c - register the catalog, push the mappings, and the
 * daemon's thread that does both in the background (see the header).
 *
 * Everything the platform answers is untrusted: lists are bounded (pages,
 * tools), ids are only used in a URL when they are made of safe
 * characters, and names and ids are printed cut and printable.
 */
#include "interactor_sync.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "buf.h"
#include "log.h"
#include "refresh.h"
#include "signature.h"

#define SYNC_MAX_PAGES 200
#define SYNC_PAGE_SIZE 100
#define SYNC_MAX_TOOLS 10000
#define SYNC_ID_MAX 128
#define SYNC_RETRY_MIN_S 30
#define SYNC_RETRY_MAX_S 3600
#define SYNC_RECORD_MAX (1u << 20)

/* A line for the operator: on out, or in the log when out is NULL (the
 * daemon), at info (news) or debug (nothing happened). */
static void emit_at(FILE *out, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void emit_at(FILE *out, enum log_level level, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (out)
		fprintf(out, "%s\n", line);
	else
		LOG_AT(level, "interactor: %s", line);
}

#define emit(out, ...) emit_at(out, LOG_LEVEL_INFO, __VA_ARGS__)

/* An id the platform gave, usable in a URL path as it is. */
static bool id_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > SYNC_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_-.:", s[i]))
			return false;
	return true;
}

/* s for a message: printable, cut. */
static const char *shown(const char *s, char *buf, size_t n)
{
	size_t j = 0;
	for (size_t i = 0; s && s[i] && j + 1 < n; i++)
		buf[j++] = (unsigned char)s[i] >= 0x20 && s[i] != 0x7f ? s[i] : '?';
	buf[j] = '\0';
	return buf;
}

/* ---- listing ---- */

/* A cursor as a query value: unreserved characters kept, the rest %XX. */
static void query_escape(const char *s, char *out, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t j = 0;
	for (size_t i = 0; s[i] && j + 4 < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (isalnum(c) || strchr("-._~", c)) {
			out[j++] = (char)c;
		} else {
			out[j++] = '%';
			out[j++] = hex[c >> 4];
			out[j++] = hex[c & 15];
		}
	}
	out[j] = '\0';
}

/* One tool of a listing, normalised: {"id": "...", "name", ...} with id a
 * string; NULL when it cannot be used. */
static cJSON *tool_from_listing(const cJSON *t)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
	char idbuf[64];
	const char *ids = NULL;
	if (cJSON_IsString(id))
		ids = id->valuestring;
	else if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble < 1e15) {
		snprintf(idbuf, sizeof idbuf, "%.0f", id->valuedouble);
		ids = idbuf;
	}
	if (!cJSON_IsObject(t) || !ids || !id_ok(ids) || !cJSON_IsString(name) || !*name->valuestring)
		return NULL;
	cJSON *copy = cJSON_Duplicate(t, true);
	if (copy && !cJSON_IsString(id))
		cJSON_ReplaceItemInObjectCaseSensitive(copy, "id", cJSON_CreateString(ids));
	return copy;
}

int sync_list_tools(struct ic_client *ic, cJSON **tools, struct cn_error *err)
{
	cJSON *all = cJSON_CreateArray();
	char cursor[512] = "", seen[512] = "";
	int rc = all ? CN_OK : cn_error_set(err, CN_ENOMEM, "out of memory");
	*tools = NULL;
	for (int page = 0; rc == CN_OK; page++) {
		if (page == SYNC_MAX_PAGES) {
			rc = cn_error_set(err, CN_ETOOBIG, "GET /tools: more than %d pages", SYNC_MAX_PAGES);
			break;
		}
		char path[700], esc[600] = "";
		query_escape(cursor, esc, sizeof esc);
		snprintf(path, sizeof path, "/tools?limit=%d%s%s", SYNC_PAGE_SIZE, *esc ? "&cursor=" : "",
			 esc);
		struct ic_response r;
		rc = ic_call(ic, "GET", path, NULL, &r, err);
		if (rc) {
			ic_response_clear(&r);
			break;
		}
		const cJSON *list =
		    cJSON_IsArray(r.data) ? r.data : cJSON_GetObjectItemCaseSensitive(r.data, "tools");
		if (!cJSON_IsArray(list)) {
			ic_response_clear(&r);
			rc = cn_error_set(err, CN_EINVAL, "GET /tools: the answer holds no list of tools");
			break;
		}
		const cJSON *t;
		cJSON_ArrayForEach (t, list) {
			cJSON *tool = tool_from_listing(t);
			if (!tool) {
				log_warn("interactor: GET /tools listed a tool without a usable id and name; "
					 "it is left alone");
				continue;
			}
			if (cJSON_GetArraySize(all) >= SYNC_MAX_TOOLS) {
				cJSON_Delete(tool);
				rc = cn_error_set(err, CN_ETOOBIG, "GET /tools: more than %d tools",
						  SYNC_MAX_TOOLS);
				break;
			}
			cJSON_AddItemToArray(all, tool);
		}
		const cJSON *more = cJSON_GetObjectItemCaseSensitive(r.data, "has_more");
		const char *next =
		    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r.data, "next_cursor"));
		bool again =
		    rc == CN_OK && cJSON_IsTrue(more) && next && *next && strlen(next) < sizeof cursor;
		if (again && strcmp(next, seen) == 0) {
			rc = cn_error_set(err, CN_EINVAL,
					  "GET /tools: the platform gave the same cursor twice");
			again = false;
		}
		if (again) {
			snprintf(seen, sizeof seen, "%s", next);
			snprintf(cursor, sizeof cursor, "%s", next);
		}
		ic_response_clear(&r);
		if (!again)
			break;
	}
	if (rc) {
		cJSON_Delete(all);
		return rc;
	}
	*tools = all;
	return CN_OK;
}

/* ---- the plan ---- */

void sync_plan_free(struct sync_plan *plan)
{
	for (size_t i = 0; i < plan->n; i++) {
		free(plan->items[i].name);
		free(plan->items[i].id);
		cJSON_Delete(plan->items[i].want);
	}
	free(plan->items);
	plan->items = NULL;
	plan->n = 0;
}

static int plan_add(struct sync_plan *plan, enum sync_kind kind, const char *name, const char *id,
		    const cJSON *want, const char *changed)
{
	struct sync_action *p = realloc(plan->items, (plan->n + 1) * sizeof *p);
	if (!p)
		return CN_ENOMEM;
	plan->items = p;
	struct sync_action *a = &p[plan->n];
	memset(a, 0, sizeof *a);
	a->kind = kind;
	a->name = strdup(name);
	a->id = id ? strdup(id) : NULL;
	a->want = want ? cJSON_Duplicate(want, true) : NULL;
	snprintf(a->changed, sizeof a->changed, "%s", changed ? changed : "");
	plan->n++;
	if (!a->name || (id && !a->id) || (want && !a->want))
		return CN_ENOMEM;
	return CN_OK;
}

static const char *jstr(const cJSON *o, const char *key)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

int sync_plan_tools(const cJSON *desired, const cJSON *existing, const char *prefix, bool prune,
		    struct sync_plan *plan, struct cn_error *err)
{
	memset(plan, 0, sizeof *plan);
	size_t pl = prefix ? strlen(prefix) : 0;
	if (prune && pl == 0)
		return cn_error_set(err, CN_EINVAL,
				    "interactor.tool_prefix is empty: --prune would take "
				    "every tool of the account for this connector's; set a prefix first");
	int rc = CN_OK;
	const cJSON *d, *e;
	cJSON_ArrayForEach (d, desired) {
		const char *name = jstr(d, "name");
		const cJSON *match = NULL;
		cJSON_ArrayForEach (e, existing) {
			if (name && jstr(e, "name") && jstr(e, "id") && strcmp(jstr(e, "name"), name) == 0) {
				match = e;
				break;
			}
		}
		if (!name)
			continue;
		if (!match) {
			rc = plan_add(plan, SYNC_CREATE, name, NULL, d, NULL);
		} else {
			char changed[64] = "";
			const char *dd = jstr(d, "description"), *ed = jstr(match, "description");
			const char *du = jstr(d, "callback_url"), *eu = jstr(match, "callback_url");
			const cJSON *dp = cJSON_GetObjectItemCaseSensitive(d, "parameters");
			const cJSON *ep = cJSON_GetObjectItemCaseSensitive(match, "parameters");
			if (!ed || strcmp(dd ? dd : "", ed) != 0)
				strcat(changed, "description");
			if (!ep || !cJSON_Compare(dp, ep, true))
				strcat(strcat(changed, *changed ? ", " : ""), "parameters");
			if (du && (!eu || strcmp(du, eu) != 0))
				strcat(strcat(changed, *changed ? ", " : ""), "callback_url");
			rc = plan_add(plan, *changed ? SYNC_UPDATE : SYNC_UNCHANGED, name, jstr(match, "id"),
				      *changed ? d : NULL, changed);
		}
		if (rc)
			break;
	}
	/* tools with the prefix the catalog does not offer, and second tools of one name */
	cJSON_ArrayForEach (e, existing) {
		const char *name = jstr(e, "name");
		if (!name || !jstr(e, "id"))
			continue; /* sync_list_tools never lists one; nothing to delete it by */
		bool ours = pl && strncmp(name, prefix, pl) == 0, wanted = false, first = true;
		cJSON_ArrayForEach (d, desired)
			wanted |= jstr(d, "name") && strcmp(jstr(d, "name"), name) == 0;
		for (const cJSON *o = existing->child; o && o != e; o = o->next)
			first &= !(jstr(o, "name") && jstr(o, "id") && strcmp(jstr(o, "name"), name) == 0);
		if (rc == CN_OK && ((ours && !wanted) || (wanted && !first)))
			rc = plan_add(plan, prune ? SYNC_DELETE : SYNC_STALE, name, jstr(e, "id"), NULL,
				      wanted ? "a second tool of this name" : "no longer offered");
	}
	if (rc) {
		sync_plan_free(plan);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	return CN_OK;
}

static const char *const kind_names[] = {"create", "update", "unchanged", "delete", "stale"};

void sync_plan_print(const struct sync_plan *plan, bool dry_run, FILE *out)
{
	size_t count[5] = {0};
	char n1[80], n2[80];
	for (size_t i = 0; i < plan->n; i++) {
		const struct sync_action *a = &plan->items[i];
		count[a->kind]++;
		const char *verb = kind_names[a->kind];
		if (a->kind == SYNC_STALE)
			emit(out, "  %-10s %s (%s): %s; register --prune deletes it", verb,
			     shown(a->name, n1, sizeof n1), shown(a->id, n2, sizeof n2), a->changed);
		else if (a->kind == SYNC_UPDATE)
			emit(out, "  %-10s %s (%s)", verb, shown(a->name, n1, sizeof n1), a->changed);
		else if (a->kind == SYNC_DELETE)
			emit(out, "  %-10s %s (%s): %s", verb, shown(a->name, n1, sizeof n1),
			     shown(a->id, n2, sizeof n2), a->changed);
		else
			emit(out, "  %-10s %s", verb, shown(a->name, n1, sizeof n1));
	}
	emit(out, "register%s: %zu %s, %zu %s, %zu unchanged, %zu %s, %zu stale", dry_run ? " (dry run)" : "",
	     count[SYNC_CREATE], dry_run ? "to create" : "created", count[SYNC_UPDATE],
	     dry_run ? "to update" : "updated", count[SYNC_UNCHANGED], count[SYNC_DELETE],
	     dry_run ? "to delete" : "deleted", count[SYNC_STALE]);
}

/* The fields of want that changed, as the body of a PUT. */
static cJSON *update_body(const struct sync_action *a)
{
	static const char *const fields[] = {"description", "parameters", "callback_url"};
	cJSON *o = cJSON_CreateObject();
	for (size_t i = 0; o && i < 3; i++) {
		if (!strstr(a->changed, fields[i]))
			continue;
		cJSON *v = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(a->want, fields[i]), true);
		if (!v || !cJSON_AddItemToObject(o, fields[i], v)) {
			cJSON_Delete(v);
			cJSON_Delete(o);
			return NULL;
		}
	}
	return o;
}

static int apply(struct ic_client *ic, const struct sync_action *a, const char *secret, struct cn_error *err)
{
	char path[300];
	struct ic_response r;
	cJSON *body = NULL;
	int rc;
	switch (a->kind) {
	case SYNC_CREATE:
		body = cJSON_Duplicate(a->want, true);
		if (!body || !cJSON_AddStringToObject(body, "callback_secret", secret)) {
			cJSON_Delete(body);
			return cn_error_set(err, CN_ENOMEM, "out of memory");
		}
		rc = ic_call(ic, "POST", "/tools", body, &r, err);
		break;
	case SYNC_UPDATE:
		snprintf(path, sizeof path, "/tools/%s", a->id);
		if (!(body = update_body(a)))
			return cn_error_set(err, CN_ENOMEM, "out of memory");
		rc = ic_call(ic, "PUT", path, body, &r, err);
		break;
	case SYNC_DELETE:
		snprintf(path, sizeof path, "/tools/%s", a->id);
		rc = ic_call(ic, "DELETE", path, NULL, &r, err);
		if (rc == CN_ENOTFOUND)
			rc = CN_OK; /* gone already */
		break;
	default: return CN_OK;
	}
	if (body) {
		cJSON *sec = cJSON_GetObjectItemCaseSensitive(body, "callback_secret");
		if (cJSON_IsString(sec))
			explicit_bzero(sec->valuestring, strlen(sec->valuestring));
		cJSON_Delete(body);
	}
	ic_response_clear(&r);
	return rc;
}

int sync_register(struct ic_client *ic, const struct config *cfg, const struct tool_catalog *catalog,
		  const char *callback_secret, bool prune, bool dry_run, FILE *out, struct cn_error *err)
{
	if (!cfg->public_url || !*cfg->public_url)
		return cn_error_set(err, CN_ECONFIG,
				    "%s: server.public_url is not set: the platform needs "
				    "the https URL it calls this connector at",
				    cfg->path);
	if (!callback_secret)
		return cn_error_set(err, CN_ECONFIG,
				    "no callback secret is current (every configured one "
				    "is retired): see rotate-secret");
	int rc = ic_client_add_sensitive(ic, callback_secret);
	cJSON *desired = rc ? NULL : tool_catalog_to_json(catalog, cfg->public_url), *existing = NULL;
	if (!desired)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	struct sync_plan plan = {0};
	rc = sync_list_tools(ic, &existing, err);
	if (rc == CN_OK)
		rc = sync_plan_tools(desired, existing, cfg->tool_prefix, prune, &plan, err);
	if (rc == CN_OK) {
		emit(out, "register%s: %d tools for %s at %s (prefix '%s')", dry_run ? " (dry run)" : "",
		     cJSON_GetArraySize(desired), cfg->public_url, cfg->api_url, cfg->tool_prefix);
		size_t done = plan.n;
		for (size_t i = 0; !dry_run && rc == CN_OK && i < plan.n; i++) {
			rc = apply(ic, &plan.items[i], callback_secret, err);
			if (rc) {
				char n1[80];
				char why[sizeof err->message];
				snprintf(why, sizeof why, "%s", err->message);
				cn_error_set(err, rc, "%s %s: %s", kind_names[plan.items[i].kind],
					     shown(plan.items[i].name, n1, sizeof n1), why);
				done = i; /* what was done stays done; a second run carries on */
			}
		}
		struct sync_plan shown_plan = {.items = plan.items, .n = done};
		sync_plan_print(&shown_plan, dry_run, out);
	}
	sync_plan_free(&plan);
	cJSON_Delete(desired);
	cJSON_Delete(existing);
	return rc;
}

/* ---- mappings ---- */

static bool add_entry(cJSON *maps, const char *key, const char *description, char *const *synonyms,
		      size_t nsynonyms)
{
	if ((!description || !*description) && nsynonyms == 0)
		return true;
	cJSON *e = cJSON_CreateObject();
	if (!e || !cJSON_AddItemToObject(maps, key, e)) {
		cJSON_Delete(e);
		return false;
	}
	if (description && *description && !cJSON_AddStringToObject(e, "description", description))
		return false;
	if (nsynonyms) {
		cJSON *arr = cJSON_AddArrayToObject(e, "synonyms");
		for (size_t i = 0; arr && i < nsynonyms; i++)
			if (!cJSON_AddItemToArray(arr, cJSON_CreateString(synonyms[i])))
				return false;
		if (!arr)
			return false;
	}
	return true;
}

cJSON *sync_mappings_payload(const struct schema_model *m)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *maps = root ? cJSON_AddObjectToObject(root, "mappings") : NULL;
	bool ok = maps != NULL;
	for (size_t i = 0; ok && m && i < m->ntables; i++) {
		const struct sm_table *t = &m->tables[i];
		if (t->hidden)
			continue;
		bool twice = false;
		for (size_t k = 0; k < m->ntables; k++)
			twice |= k != i && !m->tables[k].hidden && strcmp(m->tables[k].name, t->name) == 0;
		char *key = NULL;
		if (asprintf(&key, "%s%s%s", twice && t->schema ? t->schema : "",
			     twice && t->schema ? "." : "", t->name) < 0) {
			ok = false;
			break;
		}
		ok = add_entry(maps, key, t->description, t->synonyms, t->nsynonyms);
		for (size_t c = 0; ok && c < t->ncolumns; c++) {
			const struct sm_column *col = &t->columns[c];
			char *ckey = NULL;
			if (col->hidden)
				continue;
			if (asprintf(&ckey, "%s.%s", key, col->name) < 0) {
				ok = false;
				break;
			}
			ok = add_entry(maps, ckey, col->description, col->synonyms, col->nsynonyms);
			free(ckey);
		}
		free(key);
	}
	if (!ok) {
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

void sync_mappings_hash(const char *data_source_id, const cJSON *payload, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	char *text = cJSON_PrintUnformatted(payload);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && text && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
		  EVP_DigestUpdate(ctx, data_source_id, strlen(data_source_id) + 1) &&
		  EVP_DigestUpdate(ctx, text, strlen(text)) && EVP_DigestFinal_ex(ctx, md, &len) && len == 32;
	EVP_MD_CTX_free(ctx);
	free(text);
	for (size_t i = 0; i < 32; i++) {
		out[2 * i] = ok ? hex[md[i] >> 4] : '0';
		out[2 * i + 1] = ok ? hex[md[i] & 15] : '0';
	}
	out[64] = '\0';
}

char *sync_record_path(const struct config *cfg)
{
	char *state = config_resolve_path(cfg, cfg->state_path), *path = NULL;
	if (state && asprintf(&path, "%s.platform.json", state) < 0)
		path = NULL;
	free(state);
	return path;
}

/* The record under an exclusive lock: fd open, its JSON in *root (an empty
 * object when the file is new or unreadable). */
static int record_open(const char *path, int *fd, cJSON **root, struct cn_error *err)
{
	*root = NULL;
	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (*fd < 0)
		return cn_error_set(err, CN_EIO, "cannot open %s: %s", path, strerror(errno));
	if (flock(*fd, LOCK_EX) != 0) {
		close(*fd);
		return cn_error_set(err, CN_EIO, "cannot lock %s: %s", path, strerror(errno));
	}
	struct buf b;
	buf_init(&b, SYNC_RECORD_MAX);
	char chunk[4096];
	ssize_t n;
	while ((n = read(*fd, chunk, sizeof chunk)) > 0)
		if (buf_append(&b, chunk, (size_t)n))
			break;
	*root = b.data ? cJSON_ParseWithLength(b.data, b.len) : NULL;
	buf_free(&b);
	if (!cJSON_IsObject(*root)) {
		cJSON_Delete(*root);
		*root = cJSON_CreateObject();
	}
	return *root ? CN_OK : cn_error_set(err, CN_ENOMEM, "out of memory");
}

static void record_close(int fd, cJSON *root, bool write_back)
{
	char *text = write_back ? cJSON_Print(root) : NULL;
	if (text && ftruncate(fd, 0) == 0) {
		size_t len = strlen(text), off = 0;
		while (off < len) {
			ssize_t w = pwrite(fd, text + off, len - off, (off_t)off);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
	free(text);
	cJSON_Delete(root);
	close(fd); /* lets go of the lock */
}

/* The hash recorded for source, or NULL. */
static const char *recorded_hash(const cJSON *root, const char *source, const char **at)
{
	const cJSON *m =
	    cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "mappings"), source);
	*at = jstr(m, "pushed_at");
	return jstr(m, "sha256");
}

static int record_pushed(const char *path, const char *source, const char *id, const char *hash,
			 struct cn_error *err)
{
	int fd;
	cJSON *root;
	int rc = record_open(path, &fd, &root, err);
	if (rc)
		return rc;
	cJSON *maps = cJSON_GetObjectItemCaseSensitive(root, "mappings");
	if (!cJSON_IsObject(maps)) {
		cJSON_DeleteItemFromObjectCaseSensitive(root, "mappings");
		maps = cJSON_AddObjectToObject(root, "mappings");
	}
	cJSON *e = cJSON_CreateObject();
	char ts[21];
	signature_format_timestamp(time(NULL), ts);
	bool ok = maps && e && cJSON_AddStringToObject(e, "data_source_id", id) &&
		  cJSON_AddStringToObject(e, "sha256", hash) && cJSON_AddStringToObject(e, "pushed_at", ts);
	if (ok) {
		cJSON_DeleteItemFromObjectCaseSensitive(maps, source);
		ok = cJSON_AddItemToObject(maps, source, e);
	}
	if (!ok)
		cJSON_Delete(e);
	record_close(fd, root, ok);
	return ok ? CN_OK : cn_error_set(err, CN_ENOMEM, "out of memory");
}

int sync_push_mappings(struct ic_client *ic, struct source_set *set, const char *source, bool force,
		       bool dry_run, FILE *out, struct cn_error *err)
{
	const struct config *cfg = set->cfg;
	char *path = sync_record_path(cfg);
	if (!path)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	int fd, failed = 0;
	cJSON *record;
	int rc = record_open(path, &fd, &record, err);
	if (rc) {
		free(path);
		return rc;
	}
	cJSON *known = cJSON_Duplicate(record, true); /* read once; the lock is not held across pushes */
	record_close(fd, record, false);
	char first_error[sizeof err->message] = "";
	for (size_t i = 0; i < set->n; i++) {
		struct source *s = set->items[i];
		const char *id = s->cfg->interactor_data_source_id, *name = s->cfg->name;
		if (source && strcmp(source, name) != 0)
			continue;
		if (!id || !*id) {
			if (source)
				emit(out, "%s: no interactor_data_source_id: nothing to push", name);
			continue;
		}
		void *h;
		struct cn_error e = {0};
		if (source_ready(s, &h, &e)) {
			emit(out, "%s: FAILED: %s", name, e.message);
			if (!failed++)
				snprintf(first_error, sizeof first_error, "%s: %s", name, e.message);
			continue;
		}
		struct source_view *v = source_view_acquire(s);
		cJSON *payload = v ? sync_mappings_payload(v->model) : NULL;
		source_view_release(v);
		if (!payload) {
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
			break;
		}
		int entries = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(payload, "mappings"));
		char hash[65], path_ds[300];
		const char *at = NULL;
		sync_mappings_hash(id, payload, hash);
		const char *was = recorded_hash(known, name, &at);
		if (!force && was && strcmp(was, hash) == 0) {
			emit_at(out, LOG_LEVEL_DEBUG,
				"%s: %d mappings unchanged since they were pushed to %s at %s", name, entries,
				id, at ? at : "?");
		} else if (dry_run) {
			emit(out, "%s: would push %d mappings to %s", name, entries, id);
		} else {
			struct ic_response r;
			snprintf(path_ds, sizeof path_ds, "/data-sources/%s/semantic-mappings", id);
			int prc = ic_call(ic, "PATCH", path_ds, payload, &r, &e);
			ic_response_clear(&r);
			if (prc == CN_OK)
				prc = record_pushed(path, name, id, hash, &e);
			if (prc == CN_OK) {
				emit(out, "%s: pushed %d mappings to %s", name, entries, id);
			} else {
				emit(out, "%s: FAILED: %s", name, e.message);
				if (!failed++)
					snprintf(first_error, sizeof first_error, "%s: %s", name, e.message);
			}
		}
		cJSON_Delete(payload);
	}
	cJSON_Delete(known);
	free(path);
	if (rc)
		return rc;
	if (failed)
		return cn_error_set(err, CN_EUNAVAILABLE, "%d source%s not pushed; the first: %s", failed,
				    failed == 1 ? "" : "s", first_error);
	if (source && !sources_find(set, source))
		return cn_error_set(err, CN_ENOTFOUND, "no source named '%s'", source);
	return CN_OK;
}

/* ---- the daemon ---- */

struct sync_daemon {
	const struct config *cfg;
	struct source_set *set;
	const struct tool_catalog *catalog;
	struct secrets *secrets;
	struct ic_client *ic;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	bool stop, dirty, registered, started;
	bool push; /* some source has a data source id */
};

void sync_daemon_notify(struct sync_daemon *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->dirty = true;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

static int64_t mono_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec;
}

static void *sync_main(void *arg)
{
	struct sync_daemon *d = arg;
	unsigned pause = 0;   /* seconds waited after the last failure; 0: it worked */
	int64_t next_try = 0; /* CLOCK_MONOTONIC seconds: no attempt before */
	pthread_mutex_lock(&d->mu);
	for (;;) {
		while (!d->stop) {
			bool want = d->dirty || (d->cfg->register_on_start && !d->registered);
			int64_t now = mono_s();
			if (want && now >= next_try)
				break;
			struct timespec until = {.tv_sec = want ? next_try : now + 3600};
			pthread_cond_timedwait(&d->cv, &d->mu, &until);
		}
		if (d->stop)
			break;
		bool reg = d->cfg->register_on_start && !d->registered;
		d->dirty = false;
		pthread_mutex_unlock(&d->mu);
		struct cn_error err = {0};
		int rc = CN_OK;
		if (reg) {
			struct secret_set *set = secrets_acquire(d->secrets);
			rc = sync_register(d->ic, d->cfg, d->catalog,
					   secret_set_primary(set, (int64_t)time(NULL)), false, false, NULL,
					   &err);
			secret_set_release(set);
		}
		if (rc == CN_OK && d->push)
			rc = sync_push_mappings(d->ic, d->set, NULL, false, false, NULL, &err);
		pthread_mutex_lock(&d->mu);
		d->registered |= reg && rc == CN_OK;
		if (rc) {
			pause = pause ? (pause * 2 > SYNC_RETRY_MAX_S ? SYNC_RETRY_MAX_S : pause * 2)
				      : SYNC_RETRY_MIN_S;
			next_try = mono_s() + pause;
			d->dirty |= d->push; /* the pushes are tried again, and a register until it works */
			log_warn("interactor: %s; trying again in %u s", err.message, pause);
		} else {
			pause = 0;
			next_try = 0;
		}
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

int sync_daemon_start(const struct config *cfg, struct source_set *set, const struct tool_catalog *catalog,
		      struct secrets *secrets, struct sync_daemon **out, struct cn_error *err)
{
	*out = NULL;
	bool push = false;
	for (size_t i = 0; i < cfg->nsources; i++)
		push |=
		    cfg->sources[i].interactor_data_source_id && *cfg->sources[i].interactor_data_source_id;
	if (!cfg->register_on_start && !push)
		return CN_OK;
	if (config_require_interactor(cfg, err) != CN_OK) {
		/* register_on_start needs them (the loader checked); ids alone only warn */
		log_warn("interactor: sources have an interactor_data_source_id but %s; their mappings are "
			 "not pushed",
			 err->message);
		memset(err, 0, sizeof *err);
		return CN_OK;
	}
	struct sync_daemon *d = calloc(1, sizeof *d);
	if (!d)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	*d = (struct sync_daemon){
	    .cfg = cfg, .set = set, .catalog = catalog, .secrets = secrets, .dirty = push, .push = push};
	int rc = ic_client_new(cfg, &d->ic, err);
	if (rc) {
		free(d);
		return rc;
	}
	pthread_mutex_init(&d->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&d->thread, NULL, sync_main, d) != 0) {
		d->started = false;
		sync_daemon_stop(d);
		return cn_error_set(err, CN_ENOMEM, "cannot start the platform sync thread");
	}
	d->started = true;
	*out = d;
	return CN_OK;
}

void sync_daemon_stop(struct sync_daemon *d)
{
	if (!d)
		return;
	if (d->started) {
		pthread_mutex_lock(&d->mu);
		d->stop = true;
		pthread_cond_signal(&d->cv);
		pthread_mutex_unlock(&d->mu);
		pthread_join(d->thread, NULL);
	}
	ic_client_free(d->ic);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mu);
	free(d);
}
