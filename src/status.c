#include "status.h"

const char *cn_status_name(int code)
{
	switch (code) {
#define CN_STATUS_NAME(name, value, msg) \
	case (value):                    \
		return #name;
		CN_STATUS_TABLE(CN_STATUS_NAME)
#undef CN_STATUS_NAME
	}
	return "CN_UNKNOWN";
}

const char *cn_status_message(int code)
{
	switch (code) {
#define CN_STATUS_MSG(name, value, msg) \
	case (value):                   \
		return msg;
		CN_STATUS_TABLE(CN_STATUS_MSG)
#undef CN_STATUS_MSG
	}
	return "unknown status";
}
