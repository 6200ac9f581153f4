/*
 * driver_loader.h - find and load a driver module (<dir>/<name>.so) with
 * dlopen(RTLD_NOW | RTLD_LOCAL), look up cn_driver_entry, and refuse a module
 * whose ABI version, struct size or name does not match, with a message that
 * names the file.
 *
 * Search order: the config's drivers.dir when set (and only it), else the
 * `drivers/` directory next to the running binary (the build tree), else
 * the install prefix's driver directory.
 */
#ifndef CN_DRIVER_LOADER_H
#define CN_DRIVER_LOADER_H

#include <stdatomic.h>

#include "connector_driver.h"
#include "status.h"

struct driver_module {
	atomic_uint refs;            /* driver_module_hold / driver_unload */
	void *dl;                    /* dlopen handle */
	const struct cn_driver *api; /* points into the module */
	char *path;                  /* the file that was loaded */
};

/* dir may be NULL or "" for the default search. On error every attempt is
 * undone and err names the file(s) tried. */
int driver_load(const char *dir, const char *name, struct driver_module **out,
		struct cn_error *err) CN_MUST_USE;
/* Another reference: sources kept across a reload share their module. */
struct driver_module *driver_module_hold(struct driver_module *m);
void driver_unload(struct driver_module *m); /* drops one reference; NULL is a no-op */

/* Check a driver table the way driver_load does (exposed for tests). */
int driver_check_table(const struct cn_driver *api, const char *name, const char *path,
		       struct cn_error *err) CN_MUST_USE;

#endif
