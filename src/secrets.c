/*
 * secrets.c - the rotation file and the snapshots of accepted callback
 * secrets (see secrets.h).
 *
 * Secret values are wiped (explicit_bzero) before their memory is freed,
 * never logged, and never part of an error message: messages name the file
 * and the entry's position.
 */
#include "secrets.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "signature.h"

#define SECRETS_FILE_MAX_BYTES (256u << 10)

struct secrets {
	struct config *cfg; /* held; changed (with path) under reload_mu */
	char *path;
	bool shared;	      /* the rotation document comes from the state store, not path */
	char *doc;	      /* shared: the document loaded last (NULL: none); guarded by lock */
	pthread_mutex_t lock; /* guards current */
	struct secret_set *current;
	/* one reload at a time: the store's thread (secrets_reload_doc) and the
	 * main thread (a SIGHUP's secrets_use_config) each build from the other's
	 * latest cfg and document, so neither publishes a snapshot of stale ones */
	pthread_mutex_t reload_mu;
};

/* ---- snapshots ---- */

static void set_free(struct secret_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		explicit_bzero(set->items[i].value, strlen(set->items[i].value));
		free(set->items[i].value);
	}
	free(set);
}

void secret_set_release(struct secret_set *set)
{
	if (set && atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) == 1)
		set_free(set);
}

static bool item_valid(const struct secret_item *it, int64_t now)
{
	return it->expires_at == 0 || now < it->expires_at;
}

size_t secret_set_current(const struct secret_set *set, int64_t now, const char **out)
{
	size_t n = 0;
	for (size_t i = 0; set && i < set->n; i++)
		if (item_valid(&set->items[i], now))
			out[n++] = set->items[i].value;
	return n;
}

const char *secret_set_primary(const struct secret_set *set, int64_t now)
{
	for (size_t i = 0; set && i < set->n; i++)
		if (set->items[i].primary && item_valid(&set->items[i], now))
			return set->items[i].value;
	return NULL;
}

void secrets_fingerprint(const char *secret, char out[SECRETS_FP_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	if (!EVP_Digest(secret, strlen(secret), md, &len, EVP_sha256(), NULL) || len < SECRETS_FP_LEN / 2)
		memset(md, 0, sizeof md);
	for (size_t i = 0; i < SECRETS_FP_LEN / 2; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[SECRETS_FP_LEN] = '\0';
}

int secrets_generate(char out[SECRETS_GENERATED_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[SECRETS_GENERATED_LEN / 2];
	size_t got = 0;
	while (got < sizeof raw) {
		ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return CN_EIO;
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof raw; i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[SECRETS_GENERATED_LEN] = '\0';
	explicit_bzero(raw, sizeof raw);
	return CN_OK;
}

/* Add value to set unless it is there; a second copy keeps the longer validity. */
static bool set_add(struct secret_set *set, const char *value, int64_t expires_at, bool primary)
{
	for (size_t i = 0; i < set->n; i++) {
		struct secret_item *it = &set->items[i];
		if (strcmp(it->value, value) != 0)
			continue;
		if (expires_at == 0 || (it->expires_at && expires_at > it->expires_at))
			it->expires_at = expires_at;
		it->primary |= primary;
		return true;
	}
	if (set->n == SECRETS_MAX)
		return true; /* cannot happen: the config and the file are bounded */
	struct secret_item *it = &set->items[set->n];
	if (!(it->value = strdup(value)))
		return false;
	it->expires_at = expires_at;
	it->primary = primary;
	secrets_fingerprint(value, it->fingerprint);
	set->n++;
	return true;
}

struct secret_set *secret_set_build(const struct config *cfg, const struct secrets_file *f)
{
	struct secret_set *set = calloc(1, sizeof *set);
	if (!set)
		return NULL;
	atomic_init(&set->refs, 1);
	bool ok = true, file_primary = false;
	for (size_t i = 0; f && i < f->n; i++)
		file_primary |= f->items[i].state == SECRET_ACTIVE;
	for (size_t i = 0; f && ok && i < f->n; i++) {
		const struct secrets_entry *e = &f->items[i];
		ok = set_add(set, e->secret, e->state == SECRET_DEPRECATED ? e->expires_at : 0,
			     e->state == SECRET_ACTIVE);
	}
	bool primary_given = file_primary;
	for (size_t i = 0; ok && i < cfg->nsecrets; i++) {
		char fp[SECRETS_FP_LEN + 1];
		int64_t expires = 0;
		secrets_fingerprint(cfg->callback_secrets[i], fp);
		for (size_t r = 0; f && r < f->nretired; r++)
			if (strcmp(f->retired[r].fingerprint, fp) == 0)
				expires = f->retired[r].expires_at;
		ok = set_add(set, cfg->callback_secrets[i], expires, !primary_given && expires == 0);
		primary_given |= expires == 0;
	}
	if (!ok) {
		set_free(set);
		return NULL;
	}
	return set;
}

/* ---- the rotation file ---- */

static const char *const state_names[] = {"pending", "active", "deprecated"};

void secrets_file_clear(struct secrets_file *f)
{
	for (size_t i = 0; i < f->n; i++) {
		if (f->items[i].secret) {
			explicit_bzero(f->items[i].secret, strlen(f->items[i].secret));
			free(f->items[i].secret);
		}
	}
	for (size_t i = 0; i < f->npatched; i++)
		free(f->patched_tools[i]);
	free(f->patched_tools);
	memset(f, 0, sizeof *f);
}

static bool tool_id_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > SECRETS_TOOL_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_-.:", s[i]))
			return false;
	return true;
}

int secrets_file_add_patched(struct secrets_file *f, const char *tool_id)
{
	if (secrets_file_patched(f, tool_id))
		return CN_OK;
	if (f->npatched >= SECRETS_TOOLS_MAX)
		return CN_ETOOBIG;
	char **p = realloc(f->patched_tools, (f->npatched + 1) * sizeof *p);
	if (!p)
		return CN_ENOMEM;
	f->patched_tools = p;
	if (!(p[f->npatched] = strdup(tool_id)))
		return CN_ENOMEM;
	f->npatched++;
	return CN_OK;
}

bool secrets_file_patched(const struct secrets_file *f, const char *tool_id)
{
	for (size_t i = 0; i < f->npatched; i++)
		if (strcmp(f->patched_tools[i], tool_id) == 0)
			return true;
	return false;
}

/* A time field: null (0) when null_ok, else ISO 8601. */
static bool read_time(const cJSON *v, bool null_ok, int64_t *out)
{
	time_t t;
	if (null_ok && (!v || cJSON_IsNull(v))) {
		*out = 0;
		return true;
	}
	if (!cJSON_IsString(v) || signature_parse_timestamp(v->valuestring, &t) != CN_OK)
		return false;
	*out = (int64_t)t;
	return true;
}

static bool secret_ok(const char *s)
{
	size_t n = strlen(s);
	if (n < CONFIG_MIN_SECRET_LEN || n > 1024)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isgraph((unsigned char)s[i]))
			return false;
	return true;
}

int secrets_file_parse(const char *text, size_t len, struct secrets_file *out, struct cn_error *err)
{
	memset(out, 0, sizeof *out);
	int rc = CN_OK;
	cJSON *root = len <= SECRETS_FILE_MAX_BYTES ? cJSON_ParseWithLength(text, len) : NULL;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "version");
	if (!cJSON_IsObject(root) || !cJSON_IsNumber(v) || v->valuedouble != 1) {
		rc = cn_error_set(err, CN_ECONFIG,
				  "not a rotation file of this connector (a JSON object "
				  "with \"version\": 1 is expected)");
		goto out;
	}
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "secrets"), *it;
	if (arr && !cJSON_IsArray(arr)) {
		rc = cn_error_set(err, CN_ECONFIG, "\"secrets\" is not a list");
		goto out;
	}
	size_t i = 0, actives = 0;
	cJSON_ArrayForEach (it, arr) {
		const cJSON *sec = cJSON_GetObjectItemCaseSensitive(it, "secret");
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(it, "state");
		struct secrets_entry e = {0};
		size_t k = 0;
		for (; cJSON_IsString(st) && k < 3; k++)
			if (strcmp(st->valuestring, state_names[k]) == 0)
				break;
		if (out->n == SECRETS_FILE_MAX) {
			rc = cn_error_set(err, CN_ECONFIG, "more than %d secrets", SECRETS_FILE_MAX);
			goto out;
		}
		if (!cJSON_IsString(sec) || !secret_ok(sec->valuestring) || k == 3 ||
		    !read_time(cJSON_GetObjectItemCaseSensitive(it, "created_at"), false, &e.created_at) ||
		    !read_time(cJSON_GetObjectItemCaseSensitive(it, "expires_at"), true, &e.expires_at) ||
		    (k == SECRET_DEPRECATED) != (e.expires_at != 0)) {
			rc = cn_error_set(err, CN_ECONFIG,
					  "secrets[%zu] is not valid: it needs a secret of "
					  "16 to 1024 visible characters, a state (pending, active or "
					  "deprecated), created_at, and expires_at exactly when deprecated",
					  i);
			goto out;
		}
		e.state = (enum secret_state)k;
		actives += e.state == SECRET_ACTIVE;
		if (!(e.secret = strdup(sec->valuestring))) {
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
			goto out;
		}
		out->items[out->n++] = e;
		i++;
	}
	if (actives > 1) {
		rc = cn_error_set(err, CN_ECONFIG, "more than one secret is active");
		goto out;
	}
	arr = cJSON_GetObjectItemCaseSensitive(root, "retired");
	i = 0;
	cJSON_ArrayForEach (it, arr) {
		const cJSON *fp = cJSON_GetObjectItemCaseSensitive(it, "fingerprint");
		struct secrets_retired r = {0};
		bool ok = out->nretired < SECRETS_RETIRED_MAX && cJSON_IsString(fp) &&
			  strlen(fp->valuestring) == SECRETS_FP_LEN &&
			  strspn(fp->valuestring, "0123456789abcdef") == SECRETS_FP_LEN &&
			  read_time(cJSON_GetObjectItemCaseSensitive(it, "expires_at"), false, &r.expires_at);
		if (!ok) {
			rc = cn_error_set(err, CN_ECONFIG,
					  "retired[%zu] is not valid: it needs a fingerprint "
					  "of %d hex digits and expires_at (at most %d entries)",
					  i, SECRETS_FP_LEN, SECRETS_RETIRED_MAX);
			goto out;
		}
		memcpy(r.fingerprint, fp->valuestring, SECRETS_FP_LEN + 1);
		out->retired[out->nretired++] = r;
		i++;
	}
	arr = cJSON_GetObjectItemCaseSensitive(root, "patched_tools");
	i = 0;
	cJSON_ArrayForEach (it, arr) {
		if (!cJSON_IsString(it) || !tool_id_ok(it->valuestring)) {
			rc = cn_error_set(err, CN_ECONFIG, "patched_tools[%zu] is not a tool id", i);
			goto out;
		}
		rc = secrets_file_add_patched(out, it->valuestring);
		if (rc) {
			cn_error_set(err, rc, "patched_tools: %s",
				     rc == CN_ENOMEM ? "out of memory" : "too many tool ids");
			goto out;
		}
		i++;
	}
out:
	cJSON_Delete(root);
	return rc;
}

static bool add_time(cJSON *o, const char *key, int64_t t)
{
	char ts[21];
	if (t == 0)
		return cJSON_AddNullToObject(o, key) != NULL;
	signature_format_timestamp((time_t)t, ts);
	return cJSON_AddStringToObject(o, key, ts) != NULL;
}

char *secrets_file_format(const struct secrets_file *f)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *arr = root ? cJSON_CreateArray() : NULL;
	bool ok =
	    arr && cJSON_AddNumberToObject(root, "version", 1) && cJSON_AddItemToObject(root, "secrets", arr);
	if (!ok)
		cJSON_Delete(arr);
	for (size_t i = 0; ok && i < f->n; i++) {
		cJSON *o = cJSON_CreateObject();
		if (!o || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			ok = false;
			break;
		}
		ok = cJSON_AddStringToObject(o, "secret", f->items[i].secret) &&
		     cJSON_AddStringToObject(o, "state", state_names[f->items[i].state]) &&
		     add_time(o, "created_at", f->items[i].created_at) &&
		     add_time(o, "expires_at", f->items[i].expires_at);
	}
	cJSON *ret = ok ? cJSON_AddArrayToObject(root, "retired") : NULL;
	ok = ok && ret;
	for (size_t i = 0; ok && i < f->nretired; i++) {
		cJSON *o = cJSON_CreateObject();
		if (!o || !cJSON_AddItemToArray(ret, o)) {
			cJSON_Delete(o);
			ok = false;
			break;
		}
		ok = cJSON_AddStringToObject(o, "fingerprint", f->retired[i].fingerprint) &&
		     add_time(o, "expires_at", f->retired[i].expires_at);
	}
	cJSON *tools = ok ? cJSON_AddArrayToObject(root, "patched_tools") : NULL;
	ok = ok && tools;
	for (size_t i = 0; ok && i < f->npatched; i++)
		ok = cJSON_AddItemToArray(tools, cJSON_CreateString(f->patched_tools[i]));
	char *text = ok ? cJSON_Print(root) : NULL;
	/* the tree holds copies of the secrets: wipe them before it goes */
	cJSON *it;
	cJSON_ArrayForEach (it, cJSON_GetObjectItemCaseSensitive(root, "secrets")) {
		cJSON *sec = cJSON_GetObjectItemCaseSensitive(it, "secret");
		if (cJSON_IsString(sec))
			explicit_bzero(sec->valuestring, strlen(sec->valuestring));
	}
	cJSON_Delete(root);
	return text;
}

int secrets_file_read(const char *path, struct secrets_file *out, bool *exists, struct cn_error *err)
{
	memset(out, 0, sizeof *out);
	*exists = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return CN_OK;
		return cn_error_set(err, CN_EIO, "cannot open the secrets file %s: %s", path,
				    strerror(errno));
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return cn_error_set(err, CN_EIO, "the secrets file %s is not a regular file", path);
	}
	if (st.st_mode & 077) {
		close(fd);
		return cn_error_set(err, CN_EIO,
				    "the secrets file %s may be read by others (mode %04o); "
				    "`chmod 600 %s`, and rotate the secret if someone could read it",
				    path, (unsigned)(st.st_mode & 07777), path);
	}
	if (st.st_size > (off_t)SECRETS_FILE_MAX_BYTES) {
		close(fd);
		return cn_error_set(err, CN_EIO, "the secrets file %s is over %u bytes", path,
				    SECRETS_FILE_MAX_BYTES);
	}
	size_t cap = (size_t)st.st_size + 1, n = 0;
	char *buf = malloc(cap);
	while (buf && n + 1 < cap) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (!buf)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	buf[n] = '\0';
	struct cn_error perr = {0};
	int rc = secrets_file_parse(buf, n, out, &perr);
	explicit_bzero(buf, n);
	free(buf);
	if (rc) {
		secrets_file_clear(out);
		return cn_error_set(err, rc, "the secrets file %s: %s", path, perr.message);
	}
	*exists = true;
	return CN_OK;
}

int secrets_file_write(const char *path, const struct secrets_file *f, struct cn_error *err)
{
	char *text = secrets_file_format(f);
	if (!text)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	size_t len = strlen(text);
	char *tmp = NULL;
	int rc = CN_OK, fd = -1;
	if (asprintf(&tmp, "%s.tmp", path) < 0) {
		tmp = NULL;
		rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		goto out;
	}
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = cn_error_set(err, CN_EIO, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = cn_error_set(err, CN_EIO, "cannot write %s: %s", tmp, strerror(errno));
			goto out;
		}
		off += (size_t)w;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		rc = cn_error_set(err, CN_EIO, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		rc = cn_error_set(err, CN_EIO, "cannot replace %s: %s", path, strerror(errno));
		goto out;
	}
	/* the rename itself is durable once the directory is flushed */
	char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
	if (dir) {
		if (slash)
			*(slash == dir ? slash + 1 : slash) = '\0';
		int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
		free(dir);
	}
out:
	if (fd >= 0)
		close(fd);
	if (rc && tmp)
		unlink(tmp);
	free(tmp);
	explicit_bzero(text, len);
	free(text);
	return rc;
}

/* ---- the daemon's holder ---- */

char *secrets_path(const struct config *cfg)
{
	if (cfg->secrets_file && *cfg->secrets_file)
		return config_resolve_path(cfg, cfg->secrets_file);
	char *state = config_resolve_path(cfg, cfg->state_path), *path = NULL;
	if (state && asprintf(&path, "%s.secrets", state) < 0)
		path = NULL;
	free(state);
	return path;
}

/* The snapshot of cfg and a rotation document of the state store (NULL: none). */
static int load_doc(const struct config *cfg, const char *doc, struct secret_set **out, struct cn_error *err)
{
	struct secrets_file f = {0};
	struct cn_error perr = {0};
	int rc = doc ? secrets_file_parse(doc, strlen(doc), &f, &perr) : CN_OK;
	if (rc) {
		secrets_file_clear(&f);
		return cn_error_set(err, rc, "the callback secrets in the state store: %s", perr.message);
	}
	*out = secret_set_build(cfg, &f);
	secrets_file_clear(&f);
	return *out ? CN_OK : cn_error_set(err, CN_ENOMEM, "out of memory");
}

static void doc_free(char *doc)
{
	if (doc) {
		explicit_bzero(doc, strlen(doc));
		free(doc);
	}
}

static int load_set(const struct config *cfg, const char *path, struct secret_set **out, struct cn_error *err)
{
	struct secrets_file f;
	bool exists;
	int rc = secrets_file_read(path, &f, &exists, err);
	if (rc)
		return rc;
	*out = secret_set_build(cfg, &f);
	secrets_file_clear(&f);
	return *out ? CN_OK : cn_error_set(err, CN_ENOMEM, "out of memory");
}

int secrets_open(const struct config *cfg, struct secrets **out, struct cn_error *err)
{
	*out = NULL;
	struct secrets *s = calloc(1, sizeof *s);
	if (!s || !(s->path = secrets_path(cfg))) {
		free(s);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	s->cfg = config_hold(cfg);
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->reload_mu, NULL);
	int rc = load_set(cfg, s->path, &s->current, err);
	if (rc) {
		secrets_free(s);
		return rc;
	}
	*out = s;
	return CN_OK;
}

void secrets_free(struct secrets *s)
{
	if (!s)
		return;
	secret_set_release(s->current);
	doc_free(s->doc);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->reload_mu);
	config_free(s->cfg);
	free(s->path);
	free(s);
}

int secrets_open_doc(const struct config *cfg, const char *doc, struct secrets **out, struct cn_error *err)
{
	*out = NULL;
	struct secrets *s = calloc(1, sizeof *s);
	if (!s || !(s->path = secrets_path(cfg)) || (doc && !(s->doc = strdup(doc)))) {
		if (s)
			free(s->path);
		free(s);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	s->shared = true;
	s->cfg = config_hold(cfg);
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->reload_mu, NULL);
	int rc = load_doc(cfg, s->doc, &s->current, err);
	if (rc) {
		secrets_free(s);
		return rc;
	}
	*out = s;
	return CN_OK;
}

int secrets_reload_doc(struct secrets *s, const char *doc, struct cn_error *err)
{
	struct secret_set *next;
	char *copy = doc ? strdup(doc) : NULL;
	if (doc && !copy)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	pthread_mutex_lock(&s->reload_mu);
	int rc = load_doc(s->cfg, doc, &next, err);
	if (rc) {
		pthread_mutex_unlock(&s->reload_mu);
		doc_free(copy);
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	struct secret_set *old = s->current;
	char *old_doc = s->doc;
	s->current = next;
	s->doc = copy;
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&s->reload_mu);
	secret_set_release(old);
	doc_free(old_doc);
	return CN_OK;
}

/* The next snapshot of cfg: from the document loaded last (shared) or the file. */
static int load_next(struct secrets *s, const struct config *cfg, const char *path, struct secret_set **out,
		     struct cn_error *err)
{
	if (!s->shared)
		return load_set(cfg, path, out, err);
	pthread_mutex_lock(&s->lock);
	char *doc = s->doc ? strdup(s->doc) : NULL;
	bool oom = s->doc && !doc;
	pthread_mutex_unlock(&s->lock);
	if (oom)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	int rc = load_doc(cfg, doc, out, err);
	doc_free(doc);
	return rc;
}

int secrets_reload(struct secrets *s, struct cn_error *err)
{
	struct secret_set *next;
	pthread_mutex_lock(&s->reload_mu);
	int rc = load_next(s, s->cfg, s->path, &next, err);
	if (rc) {
		pthread_mutex_unlock(&s->reload_mu);
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	struct secret_set *old = s->current;
	s->current = next;
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_unlock(&s->reload_mu);
	secret_set_release(old);
	return CN_OK;
}

int secrets_use_config(struct secrets *s, const struct config *cfg, struct cn_error *err)
{
	struct secret_set *next;
	char *path = secrets_path(cfg);
	if (!path)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	pthread_mutex_lock(&s->reload_mu);
	int rc = load_next(s, cfg, path, &next, err);
	if (rc) {
		pthread_mutex_unlock(&s->reload_mu);
		free(path);
		return rc;
	}
	pthread_mutex_lock(&s->lock);
	struct secret_set *old = s->current;
	s->current = next;
	pthread_mutex_unlock(&s->lock);
	secret_set_release(old);
	free(s->path);
	s->path = path;
	config_free(s->cfg);
	s->cfg = config_hold(cfg);
	pthread_mutex_unlock(&s->reload_mu);
	return CN_OK;
}

struct secret_set *secrets_acquire(struct secrets *s)
{
	pthread_mutex_lock(&s->lock);
	struct secret_set *set = s->current;
	atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&s->lock);
	return set;
}
