/*
 * mongo_types.h - BSON values as the connector's cells, and BSON documents
 * as JSON text. Pure: no connection, no locking.
 *
 * A top-level field becomes one cell:
 *
 *   BSON                     cell        as written in the answer
 *   int32, int64             INT         a number, exactly
 *   double                   DOUBLE      a number; NaN and infinities as strings
 *   decimal128               NUMERIC     a number written exactly ("1.10", "1E+3"),
 *                                        NaN and infinities as strings
 *   string, symbol           TEXT
 *   bool                     BOOL
 *   null, undefined          NULL        (a field a document lacks is NULL too)
 *   ObjectId                 TEXT        24 hex digits
 *   date                     TEXT        ISO 8601 in UTC with milliseconds,
 *                                        "2024-05-01T10:00:00.000Z" (years past
 *                                        9999 or before 0 with a sign: "+10000-...")
 *   binary (UUID, 16 bytes)  TEXT        "0f8fad5b-d9cb-469f-a165-70867728950e"
 *   binary (other)           BYTES       base64
 *   regex                    TEXT        "/pattern/flags"
 *   JavaScript code          TEXT        the code
 *   document, array          JSON        relaxed JSON, nested values written as above
 *                                        (ObjectId as its hex string, dates as ISO
 *                                        strings, int64 and decimal as exact numbers,
 *                                        binary as base64, a UUID as its string)
 *   timestamp                JSON        {"$timestamp": {"t": seconds, "i": increment}}
 *   minKey, maxKey           JSON        {"$minKey": 1}, {"$maxKey": 1}
 *   DBPointer                JSON        {"$dbPointer": {"$ref": "coll", "$id": "hex"}}
 *
 * Hidden fields: while a document or array is written, every member whose
 * path (dots, array positions left out: "items.sku") the scrub callback
 * names is left out, at any depth.
 */
#ifndef MONGO_TYPES_H
#define MONGO_TYPES_H

#include <stdbool.h>
#include <stddef.h>

#include <bson/bson.h>

#include "connector_driver.h"
#include "../common/dstr.h"

#define MT_MAX_DEPTH 200 /* deeper documents are written as the string "(nested too deeply)" */

struct mt_scrub {
	void *ctx;
	/* Non-zero when the field at path is hidden; NULL: nothing is hidden. */
	int (*is_hidden)(void *ctx, const char *path);
};

/* The MongoDB $type alias of a BSON type: "int", "long", "double", "decimal",
 * "string", "bool", "date", "objectId", "object", "array", "binData", "null",
 * "regex", "timestamp", "javascript", "minKey", ... */
const char *mt_type_name(bson_type_t t);

/* The value at it (a top-level field named path) as a cell. Text the cell
 * points to lives in scratch (valid until its next use) or in the document.
 * CN_OK or CN_ENOMEM. */
int mt_cell(const bson_iter_t *it, const char *path, const struct mt_scrub *scrub, struct dstr *scratch,
	    struct cn_value *out);

/* The value at it as JSON appended to out; path names it for scrubbing. */
int mt_json_value(struct dstr *out, const bson_iter_t *it, const char *path, const struct mt_scrub *scrub);

/* A whole document as a JSON object (scrubbed from its top level). */
int mt_json_document(struct dstr *out, const bson_t *doc, const struct mt_scrub *scrub);

/* A BSON array (keys "0", "1", ...) as a JSON array. */
int mt_json_array(struct dstr *out, const bson_t *arr, const struct mt_scrub *scrub);

/* ms since the epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ" (size >= 32). */
void mt_format_date(int64_t ms, char *buf, size_t size);

#endif
