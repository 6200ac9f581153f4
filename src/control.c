/*
 * control.c - the pid file with its lock, and the request directory through
 * which `refresh` and `drift` reach a running daemon (see control.h).
 *
 * Every file name is built from the state path and a request id made of
 * digits, letters and '-' only; whatever else appears in the directory is
 * ignored (and removed at the next start). Requests and answers are
 * bounded in size.
 */
#include "control.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define CONTROL_MAX_ANSWER (16u << 20)
_Static_assert(CONTROL_MAX_REQUEST == 256, "serve_one reads a word of at most 255 bytes");
#define CONTROL_POLL_MS 50

struct control {
	int fd;
	char *pid_path;
	char *dir;
	char *reload_path;
};

static char *path_with(const char *base, const char *suffix)
{
	size_t n = strlen(base) + strlen(suffix) + 1;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s%s", base, suffix);
	return p;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t w = write(fd, data, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return CN_EIO;
		data += w;
		len -= (size_t)w;
	}
	return CN_OK;
}

/* Write path through path.tmp and a rename, so a reader sees all or nothing. */
static int write_file(const char *path, const char *data, size_t len)
{
	char tmp[4200];
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
		return CN_EIO;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return CN_EIO;
	int rc = write_all(fd, data, len);
	if (close(fd) != 0)
		rc = CN_EIO;
	if (rc == CN_OK && rename(tmp, path) != 0)
		rc = CN_EIO;
	if (rc)
		unlink(tmp);
	return rc;
}

/* The whole file (at most max bytes), NUL-terminated; NULL when it cannot be read. */
static char *read_file(const char *path, size_t max, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	while (buf) {
		if (n == cap) {
			if (cap >= max) {
				free(buf);
				buf = NULL;
				break;
			}
			cap *= 2;
			char *p = realloc(buf, cap + 1);
			if (!p) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = p;
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			buf = NULL;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (buf) {
		buf[n] = '\0';
		if (len)
			*len = n;
	}
	return buf;
}

static bool id_ok(const char *id, size_t n)
{
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') || id[i] == '-'))
			return false;
	return true;
}

/* ---- the daemon's side -------------------------------------------------- */

static void clear_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)) != NULL) {
		char p[4200];
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
}

int control_open(const char *state_path, struct control **out, struct cn_error *err)
{
	*out = NULL;
	struct control *c = calloc(1, sizeof *c);
	if (c)
		c->fd = -1;
	if (!c || !(c->pid_path = path_with(state_path, ".pid")) ||
	    !(c->dir = path_with(state_path, ".requests")) ||
	    !(c->reload_path = path_with(state_path, ".reload"))) {
		control_close(c);
		return cn_error_set(err, CN_ENOMEM, "out of memory");
	}
	c->fd = open(c->pid_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (c->fd < 0) {
		int rc = cn_error_set(err, CN_EIO, "cannot open %s: %s", c->pid_path, strerror(errno));
		control_close(c);
		return rc;
	}
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	if (fcntl(c->fd, F_SETLK, &fl) != 0) {
		struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		long other = fcntl(c->fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK ? (long)q.l_pid : 0;
		int rc = cn_error_set(err, CN_EBUSY,
				      "%s is locked by process %ld: another connector daemon uses "
				      "this state file",
				      c->pid_path, other);
		close(c->fd);
		c->fd = -1;
		free(c->pid_path); /* not ours: do not delete it */
		c->pid_path = NULL;
		control_close(c);
		return rc;
	}
	char pid[32];
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(c->fd, 0) != 0 || write_all(c->fd, pid, (size_t)n) != CN_OK) {
		int rc = cn_error_set(err, CN_EIO, "cannot write %s: %s", c->pid_path, strerror(errno));
		control_close(c);
		return rc;
	}
	struct stat st;
	if ((mkdir(c->dir, 0700) != 0 && errno != EEXIST) || stat(c->dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
	    chmod(c->dir, 0700) != 0) {
		int rc = cn_error_set(err, CN_EIO, "cannot make the request directory %s: %s", c->dir,
				      strerror(errno));
		control_close(c);
		return rc;
	}
	clear_dir(c->dir);
	*out = c;
	return CN_OK;
}

void control_close(struct control *c)
{
	if (!c)
		return;
	if (c->fd >= 0 && c->pid_path)
		unlink(c->pid_path); /* while the lock is still ours */
	if (c->fd >= 0)
		close(c->fd);
	free(c->pid_path);
	free(c->dir);
	free(c->reload_path);
	free(c);
}

int control_reload_note(struct control *c, const cJSON *outcome)
{
	char *text = cJSON_PrintUnformatted(outcome);
	int rc = text ? write_file(c->reload_path, text, strlen(text)) : CN_ENOMEM;
	free(text);
	return rc;
}

cJSON *control_reload_outcome(const char *state_path)
{
	char *path = path_with(state_path, ".reload");
	size_t len = 0;
	char *text = path ? read_file(path, CONTROL_MAX_REQUEST * 64, &len) : NULL;
	cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
	free(text);
	free(path);
	return j;
}

/* Whether word is one of the space-separated words of list. */
static bool in_list(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; *p;) {
		size_t l = strcspn(p, " ");
		if (l == n && strncmp(p, word, n) == 0)
			return true;
		p += l + (p[l] == ' ');
	}
	return false;
}

/* The verb of a request file ("" when it cannot be read). */
static void request_verb(const char *path, char verb[16])
{
	char *text = read_file(path, CONTROL_MAX_REQUEST, NULL);
	verb[0] = '\0';
	if (text && sscanf(text, "%15s", verb) != 1)
		verb[0] = '\0';
	free(text);
}

/* One request file, claimed: "refresh demo\n" -> its answer. */
static void serve_one(struct control *c, const char *id, const char *verbs, control_answer_fn answer,
		      void *ctx)
{
	char req[4200], work[4200], done[4200], verb[16];
	snprintf(req, sizeof req, "%s/%s.req", c->dir, id);
	snprintf(work, sizeof work, "%s/%s.work", c->dir, id);
	snprintf(done, sizeof done, "%s/%s.json", c->dir, id);
	request_verb(req, verb);
	if (!in_list(verbs, verb) && in_list(CONTROL_VERBS, verb))
		return; /* the other thread's to answer */
	if (rename(req, work) != 0)
		return; /* withdrawn meanwhile */
	size_t len = 0;
	char *text = read_file(work, CONTROL_MAX_REQUEST, &len);
	char source[CONTROL_MAX_REQUEST] = "";
	cJSON *a = NULL;
	if (text && sscanf(text, "%15s %255s", verb, source) == 2 && in_list(verbs, verb)) {
		if (strcmp(verb, "secrets") != 0 && strcmp(verb, "audit") != 0)
			log_info("%s of %s asked for by the command line (request %s)", verb,
				 strcmp(source, "*") == 0 ? "every source" : source, id);
		/* secrets: the answer logs what it did; audit: often and read-only */
		a = answer(ctx, verb, source);
	} else {
		a = cJSON_CreateObject();
		cJSON_AddStringToObject(a, "error", "malformed request");
	}
	free(text);
	char *out = a ? cJSON_PrintUnformatted(a) : NULL;
	cJSON_Delete(a);
	const char *body = out ? out : "{\"error\":\"out of memory\"}";
	if (write_file(done, body, strlen(body)) != CN_OK)
		log_warn("cannot write the answer %s: %s", done, strerror(errno));
	free(out);
	unlink(work);
}

size_t control_serve(struct control *c, const char *verbs, control_answer_fn answer, void *ctx)
{
	DIR *d = opendir(c->dir);
	size_t served = 0;
	struct dirent *e;
	char ids[64][72];
	size_t nids = 0;
	/* collect first: answering writes into the directory */
	while (d && (e = readdir(d)) != NULL && nids < 64) {
		size_t n = strlen(e->d_name);
		if (n > 4 && strcmp(e->d_name + n - 4, ".req") == 0 && id_ok(e->d_name, n - 4)) {
			memcpy(ids[nids], e->d_name, n - 4);
			ids[nids++][n - 4] = '\0';
		}
	}
	if (d)
		closedir(d);
	for (size_t i = 0; i < nids; i++, served++)
		serve_one(c, ids[i], verbs, answer, ctx);
	return served;
}

/* ---- the command's side ------------------------------------------------- */

pid_t control_daemon(const char *state_path)
{
	char *path = path_with(state_path, ".pid");
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	free(path);
	if (fd < 0)
		return 0;
	struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	pid_t pid = 0;
	if (fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK) {
		pid = q.l_pid;
		if (pid <= 0) { /* a lock from another pid namespace: trust the file */
			char buf[32] = "";
			ssize_t n = read(fd, buf, sizeof buf - 1);
			pid = n > 0 ? (pid_t)strtol(buf, NULL, 10) : 0;
		}
	}
	close(fd);
	return pid;
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int control_ask(const char *state_path, pid_t pid, const char *verb, const char *source, unsigned timeout_ms,
		cJSON **answer, struct cn_error *err)
{
	char dir[4096], id[64], req[4200], done[4200], body[CONTROL_MAX_REQUEST];
	unsigned rnd = 0;
	*answer = NULL;
	if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd)
		rnd = (unsigned)now_ns();
	snprintf(dir, sizeof dir, "%s.requests", state_path);
	snprintf(id, sizeof id, "%ld-%llx-%08x", (long)getpid(), now_ns(), rnd);
	snprintf(req, sizeof req, "%s/%s.req", dir, id);
	snprintf(done, sizeof done, "%s/%s.json", dir, id);
	int n = snprintf(body, sizeof body, "%s %s\n", verb, source && *source ? source : "*");
	if (n < 0 || (size_t)n >= sizeof body)
		return cn_error_set(err, CN_EINVAL, "the source name is too long");
	if (write_file(req, body, (size_t)n) != CN_OK)
		return cn_error_set(err, CN_EIO,
				    "cannot write a request into %s (%s): run the command as the "
				    "daemon's user",
				    dir, strerror(errno));
	union sigval v = {.sival_int = 1};
	if (sigqueue(pid, SIGUSR1, v) != 0) {
		int e = errno;
		unlink(req);
		return cn_error_set(err, CN_EIO, "cannot signal the daemon (pid %ld): %s", (long)pid,
				    strerror(e));
	}
	long long deadline = now_ns() + (long long)timeout_ms * 1000000LL;
	struct timespec tick = {0, CONTROL_POLL_MS * 1000000L};
	for (;;) {
		size_t len;
		char *text = read_file(done, CONTROL_MAX_ANSWER, &len);
		if (text) {
			unlink(done);
			*answer = cJSON_ParseWithLength(text, len);
			free(text);
			if (!*answer)
				return cn_error_set(err, CN_EIO, "the daemon's answer %s is not JSON", done);
			return CN_OK;
		}
		if (now_ns() > deadline)
			break;
		nanosleep(&tick, NULL);
	}
	unlink(req);
	return cn_error_set(err, CN_ETIMEOUT, "the daemon (pid %ld) did not answer within %u s; see its log",
			    (long)pid, timeout_ms / 1000);
}
