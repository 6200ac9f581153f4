/*
 * result_writer.h - the result sink that turns a driver's columns and cells
 * into the platform's response body, enforcing the row cap and the byte cap
 * while it streams:
 *
 * {"result":{"columns":[..],"column_types":[..],"rows":[[..],..],
 *  "row_count":N,"truncated":false,"execution_time_ms":N}}
 *
 * The whole body never exceeds max_bytes: a row that would not fit is
 * dropped, truncated becomes true and the sink answers CN_SINK_FULL. Reaching
 * max_rows with more rows pending also sets truncated. Columns whose origin
 * the is_hidden callback names are left out of columns, types and rows.
 *
 * Value mapping: NULL -> null; BOOL -> true/false; INT -> number;
 * DOUBLE -> number (shortest round-trip form), NaN/Infinity -> string;
 * NUMERIC -> number written exactly as given when it is a valid JSON number,
 * else a string ("NaN", "Infinity"); TEXT -> string (invalid UTF-8 replaced);
 * JSON -> embedded as is when it is valid RFC 8259 JSON, else a string;
 * BYTES -> base64 string.
 */
#ifndef CN_RESULT_WRITER_H
#define CN_RESULT_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "connector_driver.h"

struct result_writer;

struct result_writer_opts {
	uint32_t max_rows;
	size_t max_bytes; /* the whole body, braces included */
	void *hidden_ctx;
	/* may be NULL; same meaning as cn_source_info.is_hidden */
	int (*is_hidden)(void *hidden_ctx, const char *schema, const char *table, const char *column);
};

struct result_writer *result_writer_new(const struct result_writer_opts *opts);
void result_writer_free(struct result_writer *w);
/* The sink to hand to a driver's execute(); valid while w lives. */
const struct cn_result_sink *result_writer_sink(struct result_writer *w);
/* Finish the body with execution_time_ms; returns a malloc'ed NUL-terminated
 * body in *body (caller frees) and its length. */
int result_writer_finish(struct result_writer *w, long execution_time_ms, char **body,
			 size_t *len) CN_MUST_USE;
uint64_t result_writer_row_count(const struct result_writer *w);
bool result_writer_truncated(const struct result_writer *w);

/* base64 of in into b (standard alphabet, with padding). */
int base64_encode(struct buf *b, const unsigned char *in, size_t len) CN_MUST_USE;

#endif
