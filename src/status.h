/* status.h - names and messages of the status codes (table in connector_driver.h). */
#ifndef CN_STATUS_H
#define CN_STATUS_H

#include "connector_driver.h"

#define CN_MUST_USE __attribute__((warn_unused_result))

/* "CN_EQUERY"; "CN_UNKNOWN" for codes outside the table. Static strings. */
const char *cn_status_name(int code);
/* "query execution failed". Static strings. */
const char *cn_status_message(int code);

#endif
