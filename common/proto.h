/* The sweepd wire protocol: newline-delimited JSON over a unix or TCP socket.
 *
 * Every request is one JSON object on one line with an "op" and an "id"; the
 * reply echoes the id with "ok": true and its fields, or "ok": false and
 * {"error": {"code", "message"}}. The daemon also pushes unsolicited events
 * ({"event": ...}, no id) to watch subscribers and to workers. The messages
 * and their fields are documented with examples in docs/PROTOCOL.md; this
 * header holds the version, the limits and the stable error codes.
 */
#ifndef SWEEPD_PROTO_H
#define SWEEPD_PROTO_H

#include <stddef.h>

#define PROTO_VERSION 1

/* Defaults; sweepd takes options to change the first two. */
#define PROTO_MAX_LINE_BYTES (1024 * 1024)
#define PROTO_MAX_DEPTH 64

/* Stable error codes: X(enum suffix, wire code, one-line meaning). */
#define PROTO_ERRORS(X)                                                                   \
    X(BAD_JSON, "bad_json", "the line is not a valid JSON object")                        \
    X(LINE_TOO_LONG, "line_too_long", "the line exceeds the maximum line length")         \
    X(TOO_DEEP, "too_deep", "the JSON nesting exceeds the maximum depth")                 \
    X(BAD_REQUEST, "bad_request", "a field is missing or has the wrong type")             \
    X(UNKNOWN_OP, "unknown_op", "the op is not a known operation")                        \
    X(UNSUPPORTED_VERSION, "unsupported_version", "the protocol version is not supported") \
    X(UNAUTHORIZED, "unauthorized", "the connection has not presented a valid token")     \
    X(NOT_FOUND, "not_found", "the sweep, trial or worker does not exist")                \
    X(INVALID_SPEC, "invalid_spec", "the sweep spec is invalid")                          \
    X(INVALID_STATE, "invalid_state", "the operation is not allowed in the current state") \
    X(NOT_WORKER, "not_worker", "the operation needs a hello with role worker first")     \
    X(STALE_LEASE, "stale_lease", "the lease is not the trial's current lease")           \
    X(LEAVING, "leaving", "the worker announced it is leaving and gets no new lease")     \
    X(TOO_MANY_CONNECTIONS, "too_many_connections", "the connection limit is reached")    \
    X(TIMEOUT, "timeout", "the connection sent an incomplete line or nothing for too long") \
    X(DISK_FULL, "disk_full", "the database is full; free disk space and retry")          \
    X(STORAGE, "storage_error", "the database reported an error")                         \
    X(SHUTTING_DOWN, "shutting_down", "the daemon is shutting down")                      \
    X(INTERNAL, "internal", "an internal error occurred")

enum proto_error {
#define PROTO_ERROR_ENUM(name, code, message) PROTO_ERR_##name,
    PROTO_ERRORS(PROTO_ERROR_ENUM)
#undef PROTO_ERROR_ENUM
    PROTO_ERR_COUNT
};

/* Returns the wire code ("stale_lease") and the one-line meaning of err. */
const char *proto_error_code(enum proto_error err);
const char *proto_error_message(enum proto_error err);

/* Returns the error whose wire code is code, or -1. */
int proto_error_from_code(const char *code);

#endif
