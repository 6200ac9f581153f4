#include "driver_loader.h"

#include "buf.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef CN_INSTALL_DRIVER_DIR
#define CN_INSTALL_DRIVER_DIR "/usr/local/lib/interactor-connector/drivers"
#endif

int driver_check_table(const struct cn_driver *api, const char *name, const char *path,
		       struct cn_error *err)
{
	if (!api)
		return cn_error_set(err, CN_EABI, "%s: cn_driver_entry() returned NULL", path);
	if (api->abi_version != CN_DRIVER_ABI_VERSION)
		return cn_error_set(err, CN_EABI,
				    "%s: driver ABI version %u, this connector needs %u: rebuild the driver "
				    "against this connector's connector_driver.h",
				    path, api->abi_version, CN_DRIVER_ABI_VERSION);
	if (api->struct_size < sizeof(struct cn_driver))
		return cn_error_set(err, CN_EABI,
				    "%s: driver table is %u bytes, this connector needs at least %zu: "
				    "rebuild the driver",
				    path, api->struct_size, sizeof(struct cn_driver));
	if (!api->name || strcmp(api->name, name) != 0)
		return cn_error_set(err, CN_EABI, "%s: module calls itself '%s', expected '%s'", path,
				    api->name ? api->name : "(null)", name);
	if (!api->open || !api->close || !api->introspect || !api->check || !api->execute)
		return cn_error_set(err, CN_EABI, "%s: driver '%s' lacks a required function", path, name);
	return CN_OK;
}

static int valid_name(const char *name)
{
	if (!*name || strlen(name) > 32)
		return 0;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return 0;
	return 1;
}

static int load_from(const char *dir, const char *name, struct driver_module **out,
		     struct cn_error *err)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof path, "%s/%s.so", dir, name);
	if (n < 0 || (size_t)n >= sizeof path)
		return cn_error_set(err, CN_ENOTFOUND, "%s/%s.so: path too long", dir, name);
	if (access(path, F_OK) != 0)
		return cn_error_set(err, CN_ENOTFOUND, "%s: no such driver module", path);

	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl)
		return cn_error_set(err, CN_EABI, "%s: cannot load: %s", path, dlerror());
	cn_driver_entry_fn entry;
	*(void **)&entry = dlsym(dl, CN_DRIVER_ENTRY_SYMBOL);
	if (!entry) {
		cn_error_set(err, CN_EABI, "%s: not a connector driver (no %s symbol)", path,
			     CN_DRIVER_ENTRY_SYMBOL);
		dlclose(dl);
		return CN_EABI;
	}
	const struct cn_driver *api = entry();
	int rc = driver_check_table(api, name, path, err);
	if (rc) {
		dlclose(dl);
		return rc;
	}
	struct driver_module *m = calloc(1, sizeof *m);
	char *copy = strdup(path);
	if (!m || !copy) {
		free(m);
		free(copy);
		dlclose(dl);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	atomic_init(&m->refs, 1);
	m->dl = dl;
	m->api = api;
	m->path = copy;
	*out = m;
	return CN_OK;
}

#ifndef CN_DRIVER_SUBDIR
#define CN_DRIVER_SUBDIR "lib/interactor-connector/drivers"
#endif

/* The directory of /proc/self/exe into out. */
static int exe_dir(char *out, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", out, len - 1);
	if (n <= 0)
		return -1;
	out[n] = '\0';
	char *slash = strrchr(out, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	return 0;
}

int driver_load(const char *dir, const char *name, struct driver_module **out, struct cn_error *err)
{
	*out = NULL;
	if (!valid_name(name))
		return cn_error_set(err, CN_EINVAL,
				    "driver name '%s' is not valid: use lowercase letters, digits and _",
				    name);
	if (dir && *dir)
		return load_from(dir, name, out, err);

	/* the build tree, a relocated install, the configured install prefix */
	char bin[PATH_MAX], dirs[3][PATH_MAX];
	size_t ndirs = 0;
	if (exe_dir(bin, sizeof bin) == 0) {
		snprintf(dirs[ndirs++], PATH_MAX, "%s/drivers", bin);
		snprintf(dirs[ndirs++], PATH_MAX, "%s/../%s", bin, CN_DRIVER_SUBDIR);
	}
	snprintf(dirs[ndirs++], PATH_MAX, "%s", CN_INSTALL_DRIVER_DIR);
	struct buf tried;
	buf_init(&tried, 4096);
	for (size_t i = 0; i < ndirs; i++) {
		int rc = load_from(dirs[i], name, out, err);
		if (rc != CN_ENOTFOUND) {
			buf_free(&tried);
			return rc;
		}
		if (buf_printf(&tried, "%s%s/%s.so", i ? ", " : "", dirs[i], name))
			break; /* the list is only for the message */
	}
	cn_error_set(err, CN_ENOTFOUND,
		     "driver '%s' not found: looked for %s; set drivers.dir in the config or build "
		     "the driver",
		     name, tried.data ? tried.data : "");
	buf_free(&tried);
	return CN_ENOTFOUND;
}

struct driver_module *driver_module_hold(struct driver_module *m)
{
	atomic_fetch_add(&m->refs, 1);
	return m;
}

void driver_unload(struct driver_module *m)
{
	if (!m || atomic_fetch_sub(&m->refs, 1) > 1)
		return;
	if (m->dl)
		dlclose(m->dl);
	free(m->path);
	free(m);
}
