/*
 * audit.h - the audit log of tool calls: what one record holds, how a
 * statement is fingerprinted, and the `audit` command's filter and answers.
 * The records are kept by the state store (execution_store.h,
 * exec_store_audit_*); this module holds what does not depend on where.
 *
 * What is recorded: one record per tool call whose signature verified
 * (request.c), whatever its answer: time of arrival, execution_id,
 * assistant_id, room_id, tool, source, the statement's fingerprint (and its
 * text with audit.include_statements), rows answered, bytes answered, HTTP
 * status, error code, duration. A call that fails the signature check is not
 * recorded: anyone can send those, and they must not fill the table (they
 * are counted in /metrics and logged). A replayed execution_id is a delivery
 * too: recorded with the stored answer's status and the code "replayed",
 * without fingerprint or rows (the first delivery under the same
 * execution_id has them). Parameter values and rows are never recorded.
 *
 * The fingerprint of a statement: SHA-256 of its text with every run of
 * whitespace (space, tab, CR, LF, VT, FF) made one space and the ends
 * trimmed, as the first 16 lowercase hex digits (64 bits). So the same
 * statement laid out differently gets the same fingerprint; another literal
 * or another case does not (values belong in parameters). MongoDB commands
 * are fingerprinted as the JSON text the driver got.
 */
#ifndef CN_AUDIT_H
#define CN_AUDIT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define AUDIT_FINGERPRINT_LEN 16
#define AUDIT_ID_MAX 200   /* bytes of assistant_id and room_id kept (cut at a character) */
#define AUDIT_NAME_MAX 64  /* a source name, an error code in a filter */
#define AUDIT_FILTER_MAX 200 /* audit_filter_format's text, NUL included */
#define AUDIT_PAGE_RECORDS 1000 /* records in one answer at most */
#define AUDIT_PAGE_BYTES (4u << 20) /* about this many bytes of records in one answer at most */

struct exec_store;

/* One tool call. Strings are borrowed (NULL: absent). */
struct audit_record {
	int64_t id;            /* set by the store: the order records were written in */
	int64_t at_ms;         /* unix time in ms when the call arrived */
	const char *execution_id; /* NULL when the body had none */
	const char *assistant_id;
	const char *room_id;
	const char *tool;      /* as the URL named it */
	const char *source;    /* NULL: the call used none */
	const char *fingerprint; /* AUDIT_FINGERPRINT_LEN hex digits; NULL: no statement */
	const char *statement; /* NULL unless audit.include_statements */
	int64_t rows;          /* rows answered; -1: no statement answered */
	int64_t bytes;         /* bytes of the answer's body */
	int status;            /* HTTP status */
	const char *code;      /* error code or "replayed"; NULL on success */
	int64_t duration_us;   /* from arrival to answer */
};

/* Which records, oldest first: those after the cursor (at_ms, id), of a
 * source, with a status or a code. */
struct audit_filter {
	int64_t after_ms;  /* records with (at_ms, id) > (after_ms, after_id); */
	int64_t after_id;  /*   --since T is (T, 0): every record from T on */
	char source[AUDIT_NAME_MAX + 1]; /* "": any */
	int status;        /* 0: any */
	char code[AUDIT_NAME_MAX + 1];   /* "": any; "ok": the successes (no code) */
};

/* Whether f's source, status and code select r (not its cursor). */
bool audit_filter_match(const struct audit_filter *f, const struct audit_record *r);

/* The fingerprint of text (len bytes) as described above, NUL-terminated. */
void audit_fingerprint(const char *text, size_t len, char out[AUDIT_FINGERPRINT_LEN + 1]);

/* Copy at most AUDIT_ID_MAX bytes of s into out, cut before a UTF-8
 * character that would not fit whole. */
void audit_copy_id(char out[AUDIT_ID_MAX + 1], const char *s);

/* The bytes r's strings take, NULs included; audit_record_pack copies them
 * into buf (that many bytes) and fills out with r's fields pointing there. */
size_t audit_record_strings(const struct audit_record *r);
void audit_record_pack(const struct audit_record *r, char *buf, struct audit_record *out);

/* --since: ISO 8601 (2026-01-20T12:00:00Z, with fractions or an offset;
 * 2026-01-20 is midnight UTC) or an age before now (30s, 90m, 24h, 7d, 2w).
 * Fills *ms (unix ms); on error why says what is wrong and what to write. */
int audit_parse_since(const char *text, int64_t now_ms, int64_t *ms, char *why, size_t whylen) CN_MUST_USE;
/* --source NAME and --status STATUS into f (an HTTP status 100..599, or an
 * error code of a-z and '_', "ok" for the successes). */
int audit_filter_set_source(struct audit_filter *f, const char *name, char *why, size_t whylen) CN_MUST_USE;
int audit_filter_set_status(struct audit_filter *f, const char *text, char *why, size_t whylen) CN_MUST_USE;

/* The filter as one word for the daemon's request files, and back:
 * "after=MS:ID[,source=NAME][,status=N][,code=CODE]". Parsing refuses
 * anything else (CN_EINVAL). */
void audit_filter_format(const struct audit_filter *f, char out[AUDIT_FILTER_MAX]);
int audit_filter_parse(const char *text, struct audit_filter *f) CN_MUST_USE;

/* A record as the command prints it: {"id","time","execution_id",
 * "assistant_id","room_id","tool","source","fingerprint",["statement",]
 * "rows","bytes","status","code","duration_ms"}; absent values are null.
 * NULL when out of memory. */
cJSON *audit_record_to_json(const struct audit_record *r);

/* One page of the log for filter text (audit_filter_format's): 
 * {"records":[...],"more":bool,"next":"<filter for the next page>"}, at most
 * AUDIT_PAGE_RECORDS records or about AUDIT_PAGE_BYTES. The daemon answers
 * the command's requests with it, and the command calls it itself when no
 * daemon runs. NULL with err on a bad filter or a store error. */
cJSON *audit_answer(struct exec_store *store, const char *filter, struct cn_error *err);

#endif
