/* libFuzzer target for the sweepd protocol reader and dispatcher.
 *
 * Each input runs against a fresh daemon core: a real store on a temporary
 * SQLite file holding one 4-trial grid sweep, a watch subscriber, and one
 * connection without a socket that receives the input. Bytes go through the
 * server's own framing (linebuf, line and depth limits) and dispatch table.
 * Beyond "no crash, leak or sanitizer report" it checks that every byte the
 * daemon sends is a line holding a JSON object with either "id" and "ok" (and
 * a known error code when ok is false) or "event". Built and run by
 * tests/fuzz/run.sh (make fuzz); docs/RELIABILITY.md records the runs.
 *
 * Input format: byte 0 picks the peer. When its bit 0 is set, the peer is a
 * TCP peer that must first send hello with the token "fuzz-token". The rest
 * is the byte stream. In each line the marker @lease@ is replaced by the newest lease token the
 * daemon handed out, so the fuzzer can reach the trial messages that a valid
 * lease guards; tokens are random and could not be guessed otherwise.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <uv.h>

#include "log.h"
#include "proto.h"
#include "server.h"
#include "store.h"

#define LEASE_MARKER "@lease@"
#define LEASE_MARKER_LEN (sizeof(LEASE_MARKER) - 1)
#define TOKEN_LEN 32

/* Small limits so the fuzzer reaches the line-length checks quickly. */
#define FUZZ_MAX_LINE_BYTES 4096
#define FUZZ_MAX_CONNECTIONS 8

static char db_dir[256];
static char db_path[300];

/* Newest lease token seen in the daemon's output. */
static char last_token[TOKEN_LEN + 1];

static const char setup_lines[] =
    "{\"id\":\"w\",\"op\":\"watch\"}\n"
    "{\"id\":\"s\",\"op\":\"submit\",\"spec\":{\"method\":\"grid\",\"seed\":7,\"max_failures\":2,"
    "\"parameters\":{\"optimizer\":{\"values\":[\"adam\",\"sm3\"]},\"lr\":{\"values\":[0.001,0.01]},"
    "\"steps\":{\"value\":10}}}}\n";

/* Removes the database and its WAL and shared-memory files. */
static void remove_db(void)
{
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char path[320];
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", db_path, suffixes[i]);
        if (unlink(path) != 0 && errno != ENOENT)
            abort();
    }
}

/* Removes the database files and their directory when the fuzzer exits. */
static void remove_db_dir(void)
{
    remove_db();
    rmdir(db_dir);
}

/* Checks one output line and remembers a lease token found in it. */
static void check_output_line(const char *line, size_t len)
{
    cJSON *msg = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(msg))
        abort(); /* the daemon must only send JSON objects */

    const cJSON *event = cJSON_GetObjectItemCaseSensitive(msg, "event");
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(msg, "ok");
    if (cJSON_HasObjectItem(msg, "id")) {
        if (!cJSON_IsBool(ok))
            abort();
        if (cJSON_IsFalse(ok)) {
            const cJSON *err = cJSON_GetObjectItemCaseSensitive(msg, "error");
            const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
            const cJSON *message = cJSON_GetObjectItemCaseSensitive(err, "message");
            if (!cJSON_IsString(code) || proto_error_from_code(code->valuestring) < 0)
                abort();
            if (!cJSON_IsString(message) || message->valuestring[0] == '\0')
                abort(); /* every error carries a message */
        }
    } else if (!cJSON_IsString(event)) {
        abort();
    }

    const cJSON *trial = cJSON_GetObjectItemCaseSensitive(msg, "trial");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(trial, "lease");
    if (cJSON_IsString(token) && strlen(token->valuestring) == TOKEN_LEN)
        memcpy(last_token, token->valuestring, TOKEN_LEN + 1);
    cJSON_Delete(msg);
}

/* Output sink of both connections: a batch of whole '\n'-terminated lines. */
static void on_output(void *arg, const char *data, size_t len)
{
    (void)arg;
    if (len == 0 || data[len - 1] != '\n')
        abort();
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n')
            continue;
        check_output_line(data + start, i - start);
        start = i + 1;
    }
}

/* Feeds one piece of input with every lease marker replaced. */
static void feed_piece(server *srv, conn *c, const char *piece, size_t len)
{
    /* Each 7-byte marker becomes a 32-byte token, so 5x the length bounds it. */
    char *out = malloc(len * 5 + 1);
    if (!out)
        abort();
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (last_token[0] && len - i >= LEASE_MARKER_LEN && memcmp(piece + i, LEASE_MARKER, LEASE_MARKER_LEN) == 0) {
            memcpy(out + n, last_token, TOKEN_LEN);
            n += TOKEN_LEN;
            i += LEASE_MARKER_LEN;
        } else {
            out[n++] = piece[i++];
        }
    }
    server_conn_feed(c, out, n);
    free(out);
    server_flush(srv); /* the end of the loop iteration that read the bytes */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_set_level(LOG_ERROR);
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(db_dir, sizeof(db_dir), "%s/fuzz-proto-%ld", base, (long)getpid());
    if (mkdir(db_dir, 0700) != 0 && errno != EEXIST)
        abort();
    snprintf(db_path, sizeof(db_path), "%s/sweepd.db", db_dir);
    if (atexit(remove_db_dir) != 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;

    /* A fresh database per input, so no input depends on the ones before it. */
    remove_db();
    store *st = NULL;
    char err[256];
    if (store_open(db_path, 0, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_proto: opening %s failed: %s\n", db_path, err);
        abort();
    }
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        abort();
    server_options opt = {
        .socket_path = NULL,
        .token = "fuzz-token",
        .heartbeat_timeout_s = 30,
        .idle_timeout_s = 30,
        .grace_s = 60,
        .max_connections = FUZZ_MAX_CONNECTIONS,
        .max_line_bytes = FUZZ_MAX_LINE_BYTES,
    };
    server srv;
    if (server_init(&srv, &loop, st, &opt) != 0)
        abort();
    last_token[0] = '\0';

    /* A watcher, which also submits the sweep, then the fuzzed peer. */
    conn *watcher = server_conn_open_detached(&srv, 0, on_output, NULL);
    conn *peer = server_conn_open_detached(&srv, data[0] & 1, on_output, NULL);
    if (!watcher || !peer)
        abort();
    feed_piece(&srv, watcher, setup_lines, sizeof(setup_lines) - 1);

    /* The stream, one line at a time so lease markers see the newest token. */
    const char *stream = (const char *)data + 1;
    size_t left = size - 1;
    while (left > 0) {
        const char *newline = memchr(stream, '\n', left);
        size_t piece = newline ? (size_t)(newline - stream) + 1 : left;
        feed_piece(&srv, peer, stream, piece);
        stream += piece;
        left -= piece;
    }

    /* The peer hangs up (a worker's trials are requeued), then the daemon stops. */
    server_conn_close(peer);
    server_flush(&srv);
    server_stop(&srv);
    if (uv_run(&loop, UV_RUN_DEFAULT) != 0)
        abort();
    if (uv_loop_close(&loop) != 0)
        abort(); /* a handle was left open */
    store_close(st);
    return 0;
}
