/* Error code table of the wire protocol; see proto.h. */
#include "proto.h"

#include <string.h>

static const char *const error_codes[] = {
#define PROTO_ERROR_CODE(name, code, message) code,
    PROTO_ERRORS(PROTO_ERROR_CODE)
#undef PROTO_ERROR_CODE
};

static const char *const error_messages[] = {
#define PROTO_ERROR_MESSAGE(name, code, message) message,
    PROTO_ERRORS(PROTO_ERROR_MESSAGE)
#undef PROTO_ERROR_MESSAGE
};

const char *proto_error_code(enum proto_error err)
{
    return (unsigned)err < PROTO_ERR_COUNT ? error_codes[err] : "internal";
}

const char *proto_error_message(enum proto_error err)
{
    return (unsigned)err < PROTO_ERR_COUNT ? error_messages[err] : "an internal error occurred";
}

int proto_error_from_code(const char *code)
{
    for (int i = 0; i < PROTO_ERR_COUNT; i++)
        if (strcmp(code, error_codes[i]) == 0)
            return i;
    return -1;
}
