/*
 * log.h - one line per message on stderr, text or JSON. The macros test the
 * level before they evaluate their arguments. Never log a secret, a query
 * parameter or a row.
 */
#ifndef CN_LOG_H
#define CN_LOG_H

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

extern enum log_level log_current_level;

void log_set_level(enum log_level level);
int log_parse_level(const char *name, enum log_level *out); /* "info" -> LOG_LEVEL_INFO */
void log_set_json(int on);
void log_write(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A request log line: JSON object with the given pre-rendered fields. */
void log_request(const char *request_id, const char *tool, const char *source, int status,
		 long duration_ms, const char *error_code);

#define LOG_AT(level, ...)                            \
	do {                                          \
		if ((level) <= log_current_level)     \
			log_write((level), __VA_ARGS__); \
	} while (0)
#define log_error(...) LOG_AT(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) LOG_AT(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) LOG_AT(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
