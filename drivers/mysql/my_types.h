/*
 * my_types.h - the MySQL/MariaDB driver's type mapping: how each result
 * column is bound in the binary protocol and how its value becomes a cell.
 *
 *   TINYINT..BIGINT, YEAR     integer (BIGINT UNSIGNED above 2^63-1: exact
 *                             number text)
 *   DECIMAL                   number exactly as the server prints it
 *   FLOAT                     number, shortest text that reads back as the float
 *   DOUBLE                    number (NaN/Infinity cannot occur in MySQL)
 *   DATE                      "2024-02-29"
 *   DATETIME                  "2024-02-29T13:45:59.123456" (the column's fraction digits)
 *   TIMESTAMP                 "2024-02-29T13:45:59.125Z" (the session runs in UTC)
 *   TIME                      "-838:59:59.000000" (hours may pass 24, sign kept)
 *   BIT(n)                    integer (above 2^63-1: exact number text)
 *   JSON                      embedded JSON (MySQL's JSON type; MariaDB's JSON
 *                             columns are text marked json in the column metadata)
 *   BLOB, BINARY, VARBINARY   base64 (binary character set 63)
 *   GEOMETRY                  base64 of the server's value (SRID + WKB)
 *   CHAR, VARCHAR, TEXT, ENUM, SET, UUID, INET6 ...   text
 *   NULL                      null
 * Zero dates ('0000-00-00') are passed on as the server writes them.
 */
#ifndef MY_TYPES_H
#define MY_TYPES_H

#include <stdbool.h>
#include <stddef.h>

#include <mysql.h>

#include "connector_driver.h"

enum my_kind { MY_K_INT, MY_K_FLOAT, MY_K_DOUBLE, MY_K_NUMERIC, MY_K_DATE, MY_K_DATETIME,
	       MY_K_TIMESTAMP, MY_K_TIME, MY_K_BIT, MY_K_JSON, MY_K_BYTES, MY_K_TEXT };

/* One result column: its binding and its buffers. */
struct my_col {
	enum my_kind kind;
	char type[40];    /* the type name for column_types */
	unsigned decimals; /* fraction digits of temporal columns */
	bool is_unsigned;
	union {
		long long i;
		float f;
		double d;
		MYSQL_TIME t;
	} num;
	char *buf;        /* variable-length values; owned */
	unsigned long cap; /* buf's size - 1 (room for a NUL) */
	unsigned long len;
	my_bool isnull, error;
	char text[96];    /* formatted numbers and times */
};

/* Decide kind and type name from the field and set up bind (zeroed by the
 * caller) to read into col. CN_OK or CN_ENOMEM. */
int my_col_setup(struct my_col *col, const MYSQL_FIELD *f, MYSQL_BIND *bind);
void my_col_free(struct my_col *col);
/* After MYSQL_DATA_TRUNCATED: grow the buffers of the long values and fetch
 * them again; *rebind tells the caller to bind the result again. */
int my_col_refetch(struct my_col *col, MYSQL_BIND *bind, MYSQL_STMT *st, unsigned i, bool *rebind);
/* The cell of the fetched row (pointers into col, valid until the next fetch). */
void my_col_value(struct my_col *col, struct cn_value *v);

#endif
