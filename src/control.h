/*
 * control.h - how the command line reaches a running daemon. The daemon
 * owns its state file exclusively (execution_store.h), so a command that
 * needs it while the daemon runs (`refresh`, `drift`) asks the daemon:
 *
 *   STATE.pid         the daemon's pid, and a POSIX write lock (fcntl) on
 *                     the file that it holds from start to exit: a lock
 *                     held means a daemon runs, and F_GETLK names it, so a
 *                     stale pid file is never believed.
 *   STATE.requests/   (mode 0700) one file per request: the command writes
 *                     ID.tmp, renames it to ID.req ("refresh SOURCE",
 *                     "drift SOURCE", SOURCE "*" for all, "secrets *": read
 *                     the rotated callback secrets again, or "audit FILTER":
 *                     one page of the audit log, audit.h), and sends the
 *                     daemon SIGUSR1 with sigqueue(); the daemon renames it
 *                     to ID.work, does it, writes its JSON answer to
 *                     ID.json (through ID.json.tmp and a rename) and deletes
 *                     ID.work. The command waits for ID.json (bounded), reads
 *                     it and deletes it.
 *
 *   STATE.reload      the outcome of the daemon's latest reload (SIGHUP), as
 *                     JSON with its pid and an attempt number: `reload`
 *                     sends SIGHUP and waits for the next attempt to show.
 *
 * A plain SIGUSR1 (kill -USR1, not sigqueue) asks the daemon to refresh
 * every source. With no daemon, the commands open the state file
 * themselves; a daemon that starts meanwhile waits up to
 * CONTROL_STORE_WAIT_MS for it.
 *
 * STATE is the configured state.path. The files hold no secret; the
 * directory is the connector's user's alone.
 */
#ifndef CN_CONTROL_H
#define CN_CONTROL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <sys/types.h>

#include "status.h"

#define CONTROL_MAX_REQUEST 256
/* Every verb a request may have; each thread that serves requests answers some of them. */
#define CONTROL_VERBS "refresh drift secrets audit"
#define CONTROL_STORE_WAIT_MS 10000

struct control;

/* Daemon side: take STATE.pid's lock (CN_EBUSY with the other pid named
 * when another daemon holds it), write the pid, make STATE.requests/ and
 * empty it of an earlier run's files. */
int control_open(const char *state_path, struct control **out, struct cn_error *err) CN_MUST_USE;
/* Delete the pid file and let go of its lock. NULL is a no-op. */
void control_close(struct control *c);

/* Answer every pending request whose verb is one of verbs (space-separated,
 * e.g. "refresh drift"): answer(ctx, verb, source) returns the JSON to write
 * (consumed; NULL writes {"error":"out of memory"}). source is a name or
 * "*" (for "audit", the filter word). A request with another known verb is
 * left for the thread that serves it; one with an unknown verb is answered
 * with an error. Returns how many requests were looked at. */
typedef cJSON *(*control_answer_fn)(void *ctx, const char *verb, const char *source);
size_t control_serve(struct control *c, const char *verbs, control_answer_fn answer, void *ctx);

/* Daemon side: record the outcome of a reload (STATE.reload). */
int control_reload_note(struct control *c, const cJSON *outcome) CN_MUST_USE;
/* Command side: the latest outcome recorded, NULL when none can be read. */
cJSON *control_reload_outcome(const char *state_path);

/* Command side: the pid of the daemon that holds STATE.pid's lock, or 0
 * when none does. */
pid_t control_daemon(const char *state_path);
/* Ask the daemon pid (see control_daemon) and wait up to timeout_ms for
 * its answer (malloc'ed JSON in *answer). CN_ETIMEOUT when it did not
 * answer in time (the request is withdrawn), CN_EIO when the files cannot
 * be written or read. */
int control_ask(const char *state_path, pid_t pid, const char *verb, const char *source, unsigned timeout_ms,
		cJSON **answer, struct cn_error *err) CN_MUST_USE;

#endif
