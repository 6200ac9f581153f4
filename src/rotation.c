/*
 * rotation.c - rotate-secret's steps (see rotation.h). The rotation file is
 * written after every step that changes what is accepted or given out, so
 * that a crash or a failure leaves a file from which the next run carries on.
 *
 * With state.backend postgres the "file" is the document the replicas share
 * in the state store: each write is a compare-and-set on the version read
 * or written last (a second rotate-secret running meanwhile makes this one
 * stop), and "the daemon accepts it" means every live replica (seen within
 * ROTATION_LIVE_S) reports having loaded that version; rotate-secret waits
 * up to ROTATION_WAIT_MS for them, counting those that have not.
 */
#include "rotation.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "interactor_sync.h"
#include "log.h"
#include "secrets.h"
#include "signature.h"

#define ROTATION_ASK_TIMEOUT_MS 30000u
#define ROTATION_WAIT_MS 60000u /* shared: how long every live replica has to load a version */
#define ROTATION_LIVE_S 10u	/* shared: a replica seen this recently runs (it beats every 2 s) */
#define ROTATION_POLL_MS 250

/* Where the rotation document lives: the file, or the shared state store. */
struct rot_doc {
	const char *path;
	struct exec_store *store; /* non-NULL: shared */
	int64_t version;	  /* shared: of the document read or written last */
};

static const char *doc_where(const struct rot_doc *d)
{
	return d->store ? "the state store" : d->path;
}

static int doc_read(struct rot_doc *d, struct secrets_file *f, bool *exists, struct cn_error *err)
{
	if (!d->store)
		return secrets_file_read(d->path, f, exists, err);
	memset(f, 0, sizeof *f);
	char *text = NULL;
	int rc = exec_store_secrets_get(d->store, -1, &text, &d->version, err);
	if (rc)
		return rc;
	*exists = text != NULL;
	struct cn_error perr = {0};
	rc = text ? secrets_file_parse(text, strlen(text), f, &perr) : CN_OK;
	if (text) {
		explicit_bzero(text, strlen(text));
		free(text);
	}
	if (rc) {
		secrets_file_clear(f);
		return cn_error_set(err, rc, "the callback secrets in the state store: %s", perr.message);
	}
	return CN_OK;
}

static int doc_write(struct rot_doc *d, const struct secrets_file *f, struct cn_error *err)
{
	if (!d->store)
		return secrets_file_write(d->path, f, err);
	char *text = secrets_file_format(f);
	if (!text)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	int rc = exec_store_secrets_put(d->store, text, d->version, &d->version, err);
	explicit_bzero(text, strlen(text));
	free(text);
	return rc;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Shared: wait until every live replica has loaded the version written
 * last. *running: whether any replica runs. */
static int wait_replicas(struct rot_doc *d, bool *running, struct cn_error *err)
{
	uint32_t live = 0, loaded = 0;
	for (unsigned waited = 0;; waited += ROTATION_POLL_MS) {
		int rc = exec_store_replicas(d->store, ROTATION_LIVE_S, d->version, &live, &loaded, err);
		if (rc)
			return rc;
		*running = live > 0;
		if (loaded >= live)
			return CN_OK;
		if (waited >= ROTATION_WAIT_MS)
			break;
		sleep_ms(ROTATION_POLL_MS);
	}
	return cn_error_set(err, CN_ETIMEOUT,
			    "%u of the %u running replicas have not loaded the new callback secrets "
			    "(version %lld in the state store) within %u s: are they all reaching the "
			    "state store, and is any refusing the secrets (see its log)?",
			    live - loaded, live, (long long)d->version, ROTATION_WAIT_MS / 1000);
}

static void fmt_time(int64_t t, char out[21])
{
	signature_format_timestamp((time_t)t, out);
}

/* Whether tool (a listing's entry) is this connector's. */
static bool ours(const struct config *cfg, const struct tool_catalog *catalog, const cJSON *tool)
{
	const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tool, "name"));
	size_t pl = strlen(cfg->tool_prefix);
	if (!name)
		return false;
	if (pl)
		return strncmp(name, cfg->tool_prefix, pl) == 0;
	for (size_t i = 0; i < catalog->n; i++)
		if (strcmp(catalog->items[i].registered_name, name) == 0)
			return true;
	return false;
}

/* Ask the running daemon, if any, to read the secrets again; with want_fp,
 * it must then accept that secret. *running says whether one runs. */
static int tell_daemon(const struct config *cfg, const char *want_fp, bool *running, struct cn_error *err)
{
	char *state = config_resolve_path(cfg, cfg->state_path);
	if (!state)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	pid_t pid = control_daemon(state);
	*running = pid != 0;
	cJSON *answer = NULL;
	int rc = pid ? control_ask(state, pid, "secrets", "*", ROTATION_ASK_TIMEOUT_MS, &answer, err) : CN_OK;
	free(state);
	if (rc || !pid)
		return rc;
	const char *error = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(answer, "error"));
	bool accepted = !want_fp;
	const cJSON *it;
	cJSON_ArrayForEach (it, cJSON_GetObjectItemCaseSensitive(answer, "accepted")) {
		const char *fp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "fingerprint"));
		accepted |= want_fp && fp && strcmp(fp, want_fp) == 0;
	}
	if (error)
		rc = cn_error_set(err, CN_EIO,
				  "the running daemon (pid %ld) could not read the secrets: %.300s",
				  (long)pid, error);
	else if (!accepted)
		rc = cn_error_set(err, CN_EIO,
				  "the running daemon (pid %ld) does not accept the new secret "
				  "after reading the secrets again: is it running with another config or "
				  "auth.secrets_file?",
				  (long)pid);
	cJSON_Delete(answer);
	return rc;
}

/* Have whatever serves callbacks take the document written last: the
 * daemon on this state file, or every live replica of the shared store. */
static int tell(const struct config *cfg, struct rot_doc *d, const char *want_fp, bool *running,
		struct cn_error *err)
{
	return d->store ? wait_replicas(d, running, err) : tell_daemon(cfg, want_fp, running, err);
}

/* Drop what can never matter again: deprecated secrets past their expiry,
 * retired fingerprints of secrets the config no longer holds. */
static void tidy(const struct config *cfg, struct secrets_file *f, int64_t now)
{
	size_t k = 0;
	for (size_t i = 0; i < f->n; i++) {
		struct secrets_entry *e = &f->items[i];
		if (e->state == SECRET_DEPRECATED && e->expires_at <= now) {
			explicit_bzero(e->secret, strlen(e->secret));
			free(e->secret);
			continue;
		}
		f->items[k++] = *e;
	}
	f->n = k;
	k = 0;
	for (size_t i = 0; i < f->nretired; i++) {
		bool configured = false;
		for (size_t s = 0; s < cfg->nsecrets; s++) {
			char fp[SECRETS_FP_LEN + 1];
			secrets_fingerprint(cfg->callback_secrets[s], fp);
			configured |= strcmp(fp, f->retired[i].fingerprint) == 0;
		}
		if (configured)
			f->retired[k++] = f->retired[i];
	}
	f->nretired = k;
}

/* The end of the open window (0: none). */
static int64_t window_end(const struct secrets_file *f, int64_t now)
{
	int64_t end = 0;
	for (size_t i = 0; i < f->n; i++)
		if (f->items[i].state == SECRET_DEPRECATED && f->items[i].expires_at > now &&
		    f->items[i].expires_at > end)
			end = f->items[i].expires_at;
	for (size_t i = 0; i < f->nretired; i++)
		if (f->retired[i].expires_at > now && f->retired[i].expires_at > end)
			end = f->retired[i].expires_at;
	return end;
}

static struct secrets_entry *pending_of(struct secrets_file *f)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->items[i].state == SECRET_PENDING)
			return &f->items[i];
	return NULL;
}

static bool retired(const struct secrets_file *f, const char *fp)
{
	for (size_t i = 0; i < f->nretired; i++)
		if (strcmp(f->retired[i].fingerprint, fp) == 0)
			return true;
	return false;
}

/* Step 4: the pending secret becomes active, the old ones wait out the window. */
static int complete(const struct config *cfg, struct secrets_file *f, int64_t until, struct cn_error *err)
{
	struct secrets_entry *p = pending_of(f);
	for (size_t i = 0; i < f->n; i++) {
		if (f->items[i].state == SECRET_ACTIVE) {
			f->items[i].state = SECRET_DEPRECATED;
			f->items[i].expires_at = until;
		}
	}
	p->state = SECRET_ACTIVE;
	for (size_t s = 0; s < cfg->nsecrets; s++) {
		char fp[SECRETS_FP_LEN + 1];
		if (strcmp(cfg->callback_secrets[s], p->secret) == 0)
			continue;
		secrets_fingerprint(cfg->callback_secrets[s], fp);
		if (retired(f, fp))
			continue;
		if (f->nretired == SECRETS_RETIRED_MAX)
			return cn_error_set(err, CN_ETOOBIG,
					    "the secrets file remembers %d retired secrets "
					    "already; remove old ones from auth.callback_secrets",
					    SECRETS_RETIRED_MAX);
		memcpy(f->retired[f->nretired].fingerprint, fp, sizeof fp);
		f->retired[f->nretired++].expires_at = until;
	}
	for (size_t i = 0; i < f->npatched; i++)
		free(f->patched_tools[i]);
	free(f->patched_tools);
	f->patched_tools = NULL;
	f->npatched = 0;
	return CN_OK;
}

static int finish_window(const struct config *cfg, struct ic_client *ic, const struct tool_catalog *catalog,
			 struct secrets_file *f, struct rot_doc *d, int64_t now, bool dry_run, FILE *out,
			 struct cn_error *err)
{
	if (pending_of(f))
		return cn_error_set(err, CN_EINVAL,
				    "a rotation is not complete (%zu tools have the new "
				    "secret so far): run rotate-secret to carry on first",
				    f->npatched);
	if (!window_end(f, now)) {
		fprintf(out, "rotate-secret --finish: no rotation window is open; nothing to do\n");
		return CN_OK;
	}
	cJSON *tools = NULL;
	int rc = sync_list_tools(ic, &tools, err);
	size_t done = 0;
	const cJSON *t;
	cJSON_ArrayForEach (t, tools) {
		if (rc || !ours(cfg, catalog, t))
			continue;
		const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "id"));
		if (dry_run) {
			fprintf(out, "  would remove the old secret of %s\n",
				cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name")));
			continue;
		}
		char p[300];
		snprintf(p, sizeof p, "/tools/%s/secrets", id);
		cJSON *body = cJSON_CreateObject();
		struct ic_response r;
		rc = body && cJSON_AddTrueToObject(body, "remove_deprecated")
			 ? ic_call(ic, "PATCH", p, body, &r, err)
			 : cn_error_set(err, CN_ENOMEM, "out of memory");
		if (body)
			ic_response_clear(&r);
		cJSON_Delete(body);
		done += rc == CN_OK;
	}
	cJSON_Delete(tools);
	if (rc || dry_run)
		return rc;
	for (size_t i = 0; i < f->n; i++)
		if (f->items[i].state == SECRET_DEPRECATED)
			f->items[i].expires_at = now;
	for (size_t i = 0; i < f->nretired; i++)
		if (f->retired[i].expires_at > now)
			f->retired[i].expires_at = now;
	tidy(cfg, f, now);
	rc = doc_write(d, f, err);
	bool running = false;
	if (rc == CN_OK)
		rc = tell(cfg, d, NULL, &running, err);
	if (rc == CN_OK)
		fprintf(out,
			"rotate-secret --finish: the old secret was removed from %zu tools and is no longer "
			"accepted%s\n",
			done,
			!running   ? ""
			: d->store ? " (every running replica has loaded that)"
				   : " (the daemon was told)");
	return rc;
}

int rotation_run(const struct config *cfg, struct ic_client *ic, const struct tool_catalog *catalog,
		 struct exec_store *store, bool finish, bool dry_run, FILE *out, struct cn_error *err)
{
	char *path = secrets_path(cfg);
	if (!path)
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	struct rot_doc d = {.path = path, .store = store};
	struct secrets_file f, before;
	bool exists;
	int64_t now = (int64_t)time(NULL);
	char ts[21], fp[SECRETS_FP_LEN + 1] = "";
	int rc = doc_read(&d, &f, &exists, err);
	if (rc) {
		free(path);
		return rc;
	}
	/* to put back when the daemon does not take the new secret */
	rc = doc_read(&d, &before, &exists, err);
	if (rc) {
		secrets_file_clear(&f);
		free(path);
		return rc;
	}
	if (finish) {
		rc = finish_window(cfg, ic, catalog, &f, &d, now, dry_run, out, err);
		goto out;
	}
	int64_t open_until = window_end(&f, now);
	if (open_until) {
		fmt_time(open_until, ts);
		rc = cn_error_set(
		    err, CN_EINVAL,
		    "the last rotation's window is open until %s (the old secret "
		    "is still accepted): run `rotate-secret --finish` to end it now, then rotate "
		    "again",
		    ts);
		goto out;
	}
	tidy(cfg, &f, now);
	struct secrets_entry *p = pending_of(&f);
	bool made = false;
	if (p) {
		secrets_fingerprint(p->secret, fp);
		fmt_time(p->created_at, ts);
		fprintf(out,
			"rotate-secret: carrying on with the rotation started at %s (secret %s; %zu tools "
			"have it)\n",
			ts, fp, f.npatched);
	} else if (dry_run) {
		fprintf(out,
			"rotate-secret (dry run): would make a new secret, have the daemon accept it, "
			"and give it to each tool below (the old one stays accepted %u hours)\n",
			cfg->rotation_window_hours);
	} else {
		if (f.n >= SECRETS_FILE_MAX) {
			rc = cn_error_set(err, CN_ETOOBIG, "%s holds %d secrets already", doc_where(&d),
					  SECRETS_FILE_MAX);
			goto out;
		}
		char secret[SECRETS_GENERATED_LEN + 1];
		if (secrets_generate(secret)) {
			rc = cn_error_set(err, CN_EIO, "no random bytes from the kernel for a new secret");
			goto out;
		}
		p = &f.items[f.n++];
		*p = (struct secrets_entry){
		    .secret = strdup(secret), .state = SECRET_PENDING, .created_at = now};
		explicit_bzero(secret, sizeof secret);
		if (!p->secret) {
			f.n--;
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
			goto out;
		}
		made = true;
		secrets_fingerprint(p->secret, fp);
		fprintf(out, "rotate-secret: made a new secret (fingerprint %s), kept in %s\n", fp,
			doc_where(&d));
	}

	if (!dry_run) {
		/* steps 1 and 2: the daemon accepts it before anyone is given it */
		bool running;
		bool written = (rc = doc_write(&d, &f, err)) == CN_OK;
		if (rc == CN_OK)
			rc = tell(cfg, &d, fp, &running, err);
		if (rc) {
			char why[sizeof err->message];
			snprintf(why, sizeof why, "%s", err->message);
			struct cn_error e2 = {0};
			if (made && d.store && written && doc_write(&d, &before, &e2))
				log_error("cannot put back the callback secrets in the state store: %s",
					  e2.message);
			else if (made && !d.store &&
				 (exists ? secrets_file_write(path, &before, &e2) : (unlink(path), CN_OK)))
				log_error("cannot put back %s: %s", path, e2.message);
			rc = cn_error_set(err, rc, "%s; nothing was changed on the platform%s", why,
					  made ? " and the new secret was dropped" : "");
			goto out;
		}
		if (d.store)
			fprintf(out, "rotate-secret: %s\n",
				running ? "every running replica accepts the new secret"
					: "no replica runs on this state store; they accept the new secret "
					  "when they start");
		else
			fprintf(out, "rotate-secret: %s\n",
				running ? "the running daemon accepts the new secret"
					: "no daemon runs on this state file; it accepts the "
					  "new secret when it starts");
		rc = ic_client_add_sensitive(ic, p->secret);
		if (rc) {
			cn_error_set(err, rc, "out of memory");
			goto out;
		}
	}

	/* step 3: each tool, once */
	cJSON *tools = NULL;
	rc = sync_list_tools(ic, &tools, err);
	size_t total = 0, given = 0;
	const cJSON *t;
	cJSON_ArrayForEach (t, tools) {
		if (rc || !ours(cfg, catalog, t))
			continue;
		total++;
		const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "id"));
		const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "name"));
		if (dry_run) {
			fprintf(out, "  would give the new secret to %s\n", name);
			continue;
		}
		if (secrets_file_patched(&f, id))
			continue;
		char ppath[300];
		snprintf(ppath, sizeof ppath, "/tools/%s/secrets", id);
		cJSON *body = cJSON_CreateObject();
		struct ic_response r = {0};
		if (!body || !cJSON_AddStringToObject(body, "add_secret", p->secret) ||
		    !cJSON_AddNumberToObject(body, "deprecate_old_after_hours", cfg->rotation_window_hours))
			rc = cn_error_set(err, CN_ENOMEM, "out of memory");
		else
			rc = ic_call(ic, "PATCH", ppath, body, &r, err);
		ic_response_clear(&r);
		cJSON *sec = cJSON_GetObjectItemCaseSensitive(body, "add_secret");
		if (cJSON_IsString(sec))
			explicit_bzero(sec->valuestring, strlen(sec->valuestring));
		cJSON_Delete(body);
		if (rc == CN_OK && (rc = secrets_file_add_patched(&f, id)) != CN_OK)
			cn_error_set(err, rc, "out of memory");
		if (rc == CN_OK)
			rc = doc_write(&d, &f, err);
		if (rc) {
			char why[sizeof err->message];
			snprintf(why, sizeof why, "%s", err->message);
			rc = cn_error_set(err, rc,
					  "%s: %s; %zu of this connector's tools have the new secret: "
					  "run rotate-secret again to carry on (both secrets are accepted "
					  "meanwhile)",
					  name, why, f.npatched);
			break;
		}
		given++;
		fprintf(out, "  %s: new secret added, the old one deprecated after %u hours\n", name,
			cfg->rotation_window_hours);
	}
	cJSON_Delete(tools);
	if (rc || dry_run)
		goto out;

	/* step 4 */
	/* the window counts from now, after the last tool got the secret: the platform's own
	 * window for each tool began at its PATCH, so it never ends after ours */
	int64_t until = (int64_t)time(NULL) + (int64_t)cfg->rotation_window_hours * 3600;
	bool running;
	rc = complete(cfg, &f, until, err);
	if (rc == CN_OK)
		rc = doc_write(&d, &f, err);
	if (rc == CN_OK)
		rc = tell(cfg, &d, fp, &running, err);
	if (rc == CN_OK) {
		fmt_time(until, ts);
		fprintf(out,
			"rotate-secret: done: %zu tools (%zu now) have the new secret, which tools "
			"registered from now on get too; the old one is accepted until %s (rotate-secret "
			"--finish ends that now). Keep %s: it holds the secret.\n",
			total, given, ts, doc_where(&d));
	}
out:
	secrets_file_clear(&f);
	secrets_file_clear(&before);
	free(path);
	return rc;
}
