/*
 * rotation.h - `rotate-secret`: a new callback secret for every tool of
 * this connector, with no callback refused on the way.
 *
 * The order is what makes it safe:
 *   1. make a strong secret (32 random bytes, hex) and keep it in the
 *      rotation file as pending (secrets.h): accepted, not yet given out;
 *   2. have the running daemon read the file again and confirm, by
 *      fingerprint, that it accepts the new secret (control.h, verb
 *      "secrets"); without that confirmation nothing goes to the platform
 *      and a newly made secret is taken back out of the file;
 *   3. give it to each of this connector's tools in dual-secret mode: PATCH
 *      /tools/{id}/secrets {"add_secret", "deprecate_old_after_hours":
 *      interactor.rotation_window_hours}; each tool done is written down
 *      (patched_tools), so a run cut short carries on where it stopped and
 *      never asks a tool twice; both secrets stay accepted meanwhile;
 *   4. when every tool has it: the new secret becomes active, the old ones
 *      deprecated (the file's) or retired (the config's), accepted until
 *      the window ends; the daemon is told again.
 * After the window the daemon refuses the old secret by itself (its expiry
 * is in the snapshot). `--finish` ends the window now: PATCH
 * {"remove_deprecated": true} on each tool, then the old secrets expire at
 * once. A new rotation is refused while a window is open.
 *
 * With state.backend postgres the rotation file is a document the replicas
 * share in the state store (execution_store.h), written with a
 * compare-and-set so two runs cannot interleave, and step 2 (and 4, and
 * --finish) waits up to 60 s until every running replica reports having
 * loaded it; rotate-secret fails naming how many have not.
 *
 * This connector's tools: those whose name has interactor.tool_prefix, or,
 * with an empty prefix, those named as the catalog registers them.
 */
#ifndef CN_ROTATION_H
#define CN_ROTATION_H

#include <stdbool.h>
#include <stdio.h>

#include "execution_store.h"
#include "interactor_client.h"
#include "tools.h"

/* Rotate (or with finish, end the window now). dry_run says what would be
 * done and changes nothing. A line per step on out. store: the shared state
 * store (state.backend postgres; borrowed), or NULL for the rotation file. */
int rotation_run(const struct config *cfg, struct ic_client *ic, const struct tool_catalog *catalog,
		 struct exec_store *store, bool finish, bool dry_run, FILE *out,
		 struct cn_error *err) CN_MUST_USE;

#endif
