#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

enum log_level log_current_level = LOG_LEVEL_INFO;
static int log_json;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
	log_current_level = level;
}

int log_parse_level(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return CN_OK;
		}
	}
	return CN_EINVAL;
}

void log_set_json(int on)
{
	log_json = on;
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" and a NUL into out. The part up to
 * the seconds is formatted once per second and thread. */
static void log_timestamp(char out[25])
{
	static _Thread_local time_t cached_sec = (time_t)-1;
	static _Thread_local char cached[24];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != cached_sec) {
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		if (strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm) != 19)
			memcpy(cached, "0000-00-00T00:00:00", 20);
		cached_sec = ts.tv_sec;
	}
	int ms = (int)(ts.tv_nsec / 1000000);
	memcpy(out, cached, 19);
	out[19] = '.';
	out[20] = (char)('0' + ms / 100);
	out[21] = (char)('0' + ms / 10 % 10);
	out[22] = (char)('0' + ms % 10);
	out[23] = 'Z';
	out[24] = '\0';
}

/* Emit one line, newline included, in one write() when the file takes it
 * whole (always on a pipe for lines under PIPE_BUF): one system call per line,
 * and no interleaving with other threads. */
static void log_emit(const char *line, size_t len)
{
	pthread_mutex_lock(&log_lock);
	while (len > 0) {
		ssize_t w = write(STDERR_FILENO, line, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break; /* nowhere to log to: nothing else to do */
		line += w;
		len -= (size_t)w;
	}
	pthread_mutex_unlock(&log_lock);
}

void log_write(enum log_level level, const char *fmt, ...)
{
	char msg[1024];
	char ts[25];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_timestamp(ts);

	struct buf b;
	buf_init(&b, 4096);
	int rc;
	if (log_json) {
		rc = buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_names[level]);
		if (rc == 0)
			rc = buf_json_string(&b, msg, strlen(msg));
		if (rc == 0)
			rc = buf_puts(&b, "}");
	} else {
		rc = buf_printf(&b, "%s %-5s %s", ts, level_names[level], msg);
	}
	if (rc == 0)
		rc = buf_puts(&b, "\n");
	if (rc == 0)
		log_emit(b.data, b.len);
	buf_free(&b);
}

void log_request(const char *request_id, const char *tool, const char *source, int status,
		 long duration_ms, const char *error_code)
{
	if (LOG_LEVEL_INFO > log_current_level)
		return;
	char ts[25];
	log_timestamp(ts);
	struct buf b;
	buf_init(&b, 4096);
	int rc = buf_puts(&b, "{\"ts\":\"");
	if (rc == 0)
		rc = buf_puts(&b, ts);
	if (rc == 0)
		rc = buf_puts(&b, "\",\"level\":\"info\",\"msg\":\"request\",\"request_id\":");
	/* Outside values are bounded: a log line never grows with the request. */
	if (rc == 0)
		rc = buf_json_string(&b, request_id ? request_id : "", request_id ? strnlen(request_id, 128) : 0);
	if (rc == 0)
		rc = buf_puts(&b, ",\"tool\":");
	if (rc == 0)
		rc = buf_json_string(&b, tool ? tool : "", tool ? strnlen(tool, 128) : 0);
	if (rc == 0 && source) {
		rc = buf_puts(&b, ",\"source\":");
		if (rc == 0)
			rc = buf_json_string(&b, source, strnlen(source, 128));
	}
	if (rc == 0)
		rc = buf_puts(&b, ",\"status\":");
	if (rc == 0)
		rc = buf_put_i64(&b, status);
	if (rc == 0)
		rc = buf_puts(&b, ",\"duration_ms\":");
	if (rc == 0)
		rc = buf_put_i64(&b, duration_ms);
	if (rc == 0 && error_code) {
		rc = buf_puts(&b, ",\"error\":\"");
		if (rc == 0)
			rc = buf_puts(&b, error_code);
		if (rc == 0)
			rc = buf_puts(&b, "\"");
	}
	if (rc == 0)
		rc = buf_puts(&b, "}\n");
	if (rc == 0)
		log_emit(b.data, b.len);
	buf_free(&b);
}
