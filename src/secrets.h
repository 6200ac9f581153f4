/*
 * secrets.h - the callback secrets the connector accepts, and the file in
 * which `rotate-secret` keeps the ones it makes.
 *
 * Accepted, at a given time: every secret of auth.callback_secrets that is
 * not retired (or whose retirement is still ahead), and every secret of the
 * rotation file that has not expired. The primary secret, the one
 * `register` gives a tool it creates, is the rotation file's active secret,
 * else the first configured one that is not retired.
 *
 * The rotation file (auth.secrets_file, default STATE.secrets) is JSON,
 * mode 0600, written to FILE.tmp, flushed and renamed over FILE, so a
 * reader sees the old file or the new one, never half of one. A file that
 * others may read (group or world permission bits) is refused. Its form:
 *
 *   {"version": 1,
 *    "secrets": [{"secret": "<64 hex>", "state": "pending|active|deprecated",
 *                 "created_at": "2026-01-20T12:00:00Z", "expires_at": null | "..."}],
 *    "retired": [{"fingerprint": "<16 hex>", "expires_at": "..."}],
 *    "patched_tools": ["tool_abc", ...]}
 *
 * pending: made by a rotation that has not given it to every tool yet
 * (patched_tools lists the tool ids that have it); accepted, not primary.
 * active: the primary. deprecated: accepted until expires_at. retired: a
 * configured secret, named by the first 16 hex digits of its SHA-256,
 * accepted until expires_at (the file never holds a configured secret).
 *
 * The daemon holds the accepted secrets as an immutable, reference-counted
 * snapshot (struct secret_set): a request takes a reference, verifies with
 * it and lets go; secrets_reload() builds the next snapshot from the config
 * and the file and publishes it with a pointer swap under a short lock, so a
 * request never waits for a reload and never sees half of one. The running
 * daemon reloads when rotate-secret asks it to (control.h, verb "secrets").
 *
 * With state.backend postgres the replicas share the rotation document in
 * the state store instead (execution_store.h, exec_store_secrets_*): the
 * daemon opens with secrets_open_doc(), its beat reads the document's
 * version and reloads with secrets_reload_doc() when it changed, and
 * rotate-secret waits until every live replica reports the new version.
 */
#ifndef CN_SECRETS_H
#define CN_SECRETS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "status.h"

#define SECRETS_FP_LEN 16      /* hex digits of a fingerprint */
#define SECRETS_FILE_MAX 8     /* secrets a rotation file holds */
#define SECRETS_RETIRED_MAX 32 /* retired fingerprints it remembers */
#define SECRETS_TOOLS_MAX 1024 /* tool ids in patched_tools */
#define SECRETS_TOOL_ID_MAX 128
#define SECRETS_MAX (CONFIG_MAX_SECRETS + SECRETS_FILE_MAX)
#define SECRETS_GENERATED_LEN 64 /* hex digits of a secret rotate-secret makes (32 random bytes) */

/* ---- the snapshot requests verify with ---- */

struct secret_item {
	char *value;
	int64_t expires_at; /* unix time; 0: does not expire */
	char fingerprint[SECRETS_FP_LEN + 1];
	bool primary;
};

struct secret_set {
	atomic_uint refs;
	struct secret_item items[SECRETS_MAX];
	size_t n;
};

/* The secrets of set accepted at now, into out (at most SECRETS_MAX);
 * returns how many. The pointers live as long as the reference. */
size_t secret_set_current(const struct secret_set *set, int64_t now, const char **out);
/* The primary secret, or NULL when every secret is retired or expired. */
const char *secret_set_primary(const struct secret_set *set, int64_t now);
void secret_set_release(struct secret_set *set); /* NULL is a no-op */

struct secrets;

/* Read the rotation file of cfg (a missing file is an empty one) and build
 * the first snapshot. CN_EIO / CN_ECONFIG with a message naming the file
 * when it cannot be read, is not valid, or others may read it. */
int secrets_open(const struct config *cfg, struct secrets **out, struct cn_error *err) CN_MUST_USE;
/* The same from a rotation document of the state store (doc NULL: none
 * yet; copied); the file is never read. CN_ECONFIG when it is not valid. */
int secrets_open_doc(const struct config *cfg, const char *doc, struct secrets **out,
		     struct cn_error *err) CN_MUST_USE;
/* A new document of the state store (copied; NULL: none): the next
 * snapshot; on error the old one and the old document stay. */
int secrets_reload_doc(struct secrets *s, const char *doc, struct cn_error *err) CN_MUST_USE;
void secrets_free(struct secrets *s); /* NULL is a no-op */
/* Read the file again (shared: the document loaded last) and publish the
 * new snapshot; on error the old one stays. */
int secrets_reload(struct secrets *s, struct cn_error *err) CN_MUST_USE;
/* A reload of the configuration: the next snapshot from cfg (held from now
 * on) and its rotation file; on error nothing changes. Main thread. */
int secrets_use_config(struct secrets *s, const struct config *cfg, struct cn_error *err) CN_MUST_USE;
/* A reference to the current snapshot; pair with secret_set_release. */
struct secret_set *secrets_acquire(struct secrets *s);
/* The rotation file's path (malloc'ed): auth.secrets_file, or STATE.secrets. */
char *secrets_path(const struct config *cfg);

/* ---- the rotation file ---- */

enum secret_state { SECRET_PENDING, SECRET_ACTIVE, SECRET_DEPRECATED };

struct secrets_entry {
	char *secret;
	enum secret_state state;
	int64_t created_at;
	int64_t expires_at; /* 0: none */
};

struct secrets_retired {
	char fingerprint[SECRETS_FP_LEN + 1];
	int64_t expires_at;
};

struct secrets_file {
	struct secrets_entry items[SECRETS_FILE_MAX];
	size_t n;
	struct secrets_retired retired[SECRETS_RETIRED_MAX];
	size_t nretired;
	char **patched_tools;
	size_t npatched;
};

/* Parse the file's text (untrusted: bounded, every field checked).
 * CN_ECONFIG with what is wrong; out needs secrets_file_clear either way. */
int secrets_file_parse(const char *text, size_t len, struct secrets_file *out,
		       struct cn_error *err) CN_MUST_USE;
/* The file's JSON text (malloc'ed), or NULL on out of memory. */
char *secrets_file_format(const struct secrets_file *f);
/* Read path; *exists false (and an empty file) when there is none. */
int secrets_file_read(const char *path, struct secrets_file *out, bool *exists,
		      struct cn_error *err) CN_MUST_USE;
/* Write path (0600, through path.tmp, fsync and rename). */
int secrets_file_write(const char *path, const struct secrets_file *f, struct cn_error *err) CN_MUST_USE;
/* Free and wipe the secrets; the struct is empty afterwards. */
void secrets_file_clear(struct secrets_file *f);
/* Add a patched tool id (copied); CN_ENOMEM, or CN_ETOOBIG past SECRETS_TOOLS_MAX. */
int secrets_file_add_patched(struct secrets_file *f, const char *tool_id) CN_MUST_USE;
bool secrets_file_patched(const struct secrets_file *f, const char *tool_id);

/* The snapshot of cfg's secrets and f at now (a new reference), or NULL on
 * out of memory. */
struct secret_set *secret_set_build(const struct config *cfg, const struct secrets_file *f);

/* The first 16 hex digits of SHA-256(secret) into out[17]. */
void secrets_fingerprint(const char *secret, char out[SECRETS_FP_LEN + 1]);
/* A new secret: 32 bytes from the kernel's random source as 64 lowercase
 * hex digits into out[65]. CN_EIO when no random bytes can be had. */
int secrets_generate(char out[SECRETS_GENERATED_LEN + 1]) CN_MUST_USE;

#endif
