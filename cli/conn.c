/* The client side of the sweepd protocol: find the daemon, connect, send a
 * request line, read the reply with the same id.
 *
 * Connections are blocking sockets with a poll() timeout on every read,
 * because a command makes a few calls and exits. `watch` connects here too and
 * then hands the socket to its libuv loop. Replies are framed by
 * common/linebuf.h with a ceiling of CLI_MAX_REPLY_BYTES per line.
 */
#include "cli.h"
#include "log.h"
#include "proto.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Maximum token length accepted from a token file. */
#define TOKEN_MAX_BYTES 4096

/* Fills addr from "unix:PATH", "tcp:HOST:PORT" ("tcp:[::1]:PORT" for IPv6)
 * or a bare path. Returns 0, or -1 with a reason in why. */
static int parse_address(const char *text, cli_address *addr, char *why, size_t why_size)
{
    if (strncmp(text, "tcp:", 4) == 0) {
        const char *hostport = text + 4;
        const char *colon = strrchr(hostport, ':');
        if (colon == NULL || colon == hostport || colon[1] == '\0') {
            snprintf(why, why_size, "expected tcp:HOST:PORT");
            return -1;
        }
        const char *host = hostport;
        size_t host_len = (size_t)(colon - hostport);
        if (host[0] == '[' && host_len >= 2 && host[host_len - 1] == ']') {
            host++;
            host_len -= 2;
        }
        if (host_len == 0 || host_len >= sizeof(addr->host) ||
            strlen(colon + 1) >= sizeof(addr->port)) {
            snprintf(why, why_size, "the host or port is empty or too long");
            return -1;
        }
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end != '\0' || port <= 0 || port > 65535) {
            snprintf(why, why_size, "the port must be a number from 1 to 65535");
            return -1;
        }
        addr->is_tcp = 1;
        memcpy(addr->host, host, host_len);
        addr->host[host_len] = '\0';
        snprintf(addr->port, sizeof(addr->port), "%ld", port);
        snprintf(addr->display, sizeof(addr->display), "tcp:%s:%s", addr->host, addr->port);
        return 0;
    }

    const char *path = strncmp(text, "unix:", 5) == 0 ? text + 5 : text;
    if (path == text && strchr(text, '/') == NULL) {
        snprintf(why, why_size, "expected unix:PATH, tcp:HOST:PORT or a socket path");
        return -1;
    }
    struct sockaddr_un sun;
    if (path[0] == '\0' || strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(why, why_size, "a unix socket path must have 1 to %zu bytes",
                 sizeof(sun.sun_path) - 1);
        return -1;
    }
    /* The length check above keeps both copies inside their buffers. */
    size_t len = strlen(path);
    addr->is_tcp = 0;
    memcpy(addr->path, path, len + 1);
    memcpy(addr->display, "unix:", 5);
    memcpy(addr->display + 5, path, len + 1);
    return 0;
}

int cli_address_resolve(const cli_ctx *ctx, cli_address *addr)
{
    char why[128];
    char path[512];
    const char *text;

    memset(addr, 0, sizeof(*addr));
    if (ctx->connect != NULL) {
        text = ctx->connect;
        addr->from = "--connect";
    } else if ((text = getenv("SWEEPD_SOCKET")) != NULL && text[0] != '\0') {
        addr->from = "$SWEEPD_SOCKET";
    } else {
        /* The daemon's default state directory, where it creates sweepd.sock. */
        const char *state = getenv("XDG_STATE_HOME");
        const char *home = getenv("HOME");
        if (state != NULL && state[0] != '\0')
            snprintf(path, sizeof(path), "%s/sweepd/sweepd.sock", state);
        else if (home != NULL && home[0] != '\0')
            snprintf(path, sizeof(path), "%s/.local/state/sweepd/sweepd.sock", home);
        else {
            fprintf(stderr, "sweepctl: cannot find the daemon: neither $XDG_STATE_HOME nor "
                            "$HOME is set; pass --connect unix:PATH\n");
            return CLI_EXIT_USAGE;
        }
        text = path;
        addr->from = "the default socket";
    }

    if (parse_address(text, addr, why, sizeof(why)) != 0) {
        fprintf(stderr, "sweepctl: invalid daemon address '%s' (from %s): %s\n", text,
                addr->from, why);
        return CLI_EXIT_USAGE;
    }
    if (addr->is_tcp && ctx->token_file == NULL) {
        fprintf(stderr, "sweepctl: %s needs a token: pass --token-file FILE with the file "
                        "given to 'sweepd --token-file'\n", addr->display);
        return CLI_EXIT_USAGE;
    }
    if (!addr->is_tcp && ctx->token_file != NULL) {
        fprintf(stderr, "sweepctl: --token-file applies only to TCP, but the daemon address "
                        "is %s (from %s)\n", addr->display, addr->from);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

static void print_not_listening(const cli_address *addr, int err)
{
    fprintf(stderr, "sweepctl: cannot connect to sweepd at %s (from %s): %s\n", addr->display,
            addr->from, strerror(err));
    if (!addr->is_tcp)
        fprintf(stderr, "sweepctl: no daemon is listening there. Start one with "
                        "'sweepd --state-dir DIR' (its socket is DIR/sweepd.sock, pass "
                        "--connect unix:DIR/sweepd.sock) or run 'make demo'.\n");
    else
        fprintf(stderr, "sweepctl: check that sweepd runs with --listen %s:%s and that the "
                        "address is reachable.\n", addr->host, addr->port);
}

static int connect_unix(const cli_address *addr)
{
    struct sockaddr_un sun;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        print_not_listening(addr, errno);
        return -1;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, addr->path, strlen(addr->path) + 1);
    while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        if (errno == EINTR)
            continue;
        int err = errno;
        close(fd);
        print_not_listening(addr, err);
        return -1;
    }
    return fd;
}

static int connect_tcp(const cli_address *addr)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res, *ai;
    int err = ECONNREFUSED;

    int gai = getaddrinfo(addr->host, addr->port, &hints, &res);
    if (gai != 0) {
        fprintf(stderr, "sweepctl: cannot resolve host '%s' of %s: %s\n", addr->host,
                addr->display, gai_strerror(gai));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int rc;
        while ((rc = connect(fd, ai->ai_addr, ai->ai_addrlen)) != 0 && errno == EINTR)
            ;
        if (rc == 0) {
            freeaddrinfo(res);
            return fd;
        }
        err = errno;
        close(fd);
    }
    freeaddrinfo(res);
    print_not_listening(addr, err);
    return -1;
}

/* Reads the token file: its first line, without surrounding whitespace.
 * Returns a malloc'd string or NULL after printing why. */
static char *read_token(const char *file)
{
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        fprintf(stderr, "sweepctl: cannot open token file '%s': %s\n", file, strerror(errno));
        return NULL;
    }
    char *buf = malloc(TOKEN_MAX_BYTES + 2);
    if (buf == NULL) {
        fclose(f);
        fprintf(stderr, "sweepctl: out of memory reading the token file\n");
        return NULL;
    }
    size_t n = fread(buf, 1, TOKEN_MAX_BYTES + 1, f);
    int read_error = ferror(f);
    fclose(f);
    if (read_error || n > TOKEN_MAX_BYTES) {
        fprintf(stderr, "sweepctl: cannot read token file '%s': %s\n", file,
                read_error ? "read error" : "longer than 4096 bytes");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    char *nl = strpbrk(buf, "\r\n");
    if (nl != NULL)
        *nl = '\0';
    size_t len = strlen(buf);
    while (len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))
        buf[--len] = '\0';
    char *start = buf + strspn(buf, " \t");
    if (*start == '\0') {
        fprintf(stderr, "sweepctl: token file '%s' is empty\n", file);
        free(buf);
        return NULL;
    }
    memmove(buf, start, strlen(start) + 1);
    return buf;
}

/* Sends the hello that a TCP connection must open with. Returns 0 or an
 * exit code after printing why. */
static int send_hello(const cli_ctx *ctx, cli_conn *conn)
{
    char *token = read_token(ctx->token_file);
    if (token == NULL)
        return CLI_EXIT_USAGE;

    int rc = CLI_EXIT_PROTOCOL;
    char *members = NULL;
    cJSON *tok = cJSON_CreateString(token);
    char *tok_text = tok ? cJSON_PrintUnformatted(tok) : NULL;
    size_t size = tok_text ? strlen(tok_text) + 64 : 0;
    if (tok_text != NULL && (members = malloc(size)) != NULL) {
        snprintf(members, size, "\"version\":%d,\"role\":\"client\",\"token\":%s",
                 PROTO_VERSION, tok_text);
        cJSON *reply = NULL;
        rc = cli_conn_call(conn, "hello", members, &reply, NULL);
        cJSON_Delete(reply);
    } else {
        fprintf(stderr, "sweepctl: out of memory building the hello request\n");
    }

    /* The token does not outlive the request. */
    explicit_bzero(token, strlen(token));
    if (tok_text != NULL)
        explicit_bzero(tok_text, strlen(tok_text));
    if (members != NULL)
        explicit_bzero(members, strlen(members));
    free(token);
    free(tok_text);
    free(members);
    cJSON_Delete(tok);
    return rc;
}

int cli_conn_open(const cli_ctx *ctx, cli_conn *conn)
{
    memset(conn, 0, sizeof(*conn));
    conn->fd = -1;
    conn->next_id = 1;

    int rc = cli_address_resolve(ctx, &conn->addr);
    if (rc != 0)
        return rc;
    if (linebuf_init(&conn->lb, CLI_MAX_REPLY_BYTES) != 0) {
        fprintf(stderr, "sweepctl: out of memory\n");
        return CLI_EXIT_CONNECT;
    }
    conn->fd = conn->addr.is_tcp ? connect_tcp(&conn->addr) : connect_unix(&conn->addr);
    if (conn->fd < 0) {
        cli_conn_close(conn);
        return CLI_EXIT_CONNECT;
    }
    if (conn->addr.is_tcp && (rc = send_hello(ctx, conn)) != 0) {
        cli_conn_close(conn);
        return rc;
    }
    return 0;
}

void cli_conn_close(cli_conn *conn)
{
    if (conn->fd >= 0)
        close(conn->fd);
    conn->fd = -1;
    if (conn->lb.data != NULL)
        linebuf_free(&conn->lb);
}

int cli_conn_send_line(cli_conn *conn, const char *text, size_t len)
{
    size_t off = 0;
    int newline_sent = 0;

    while (!newline_sent) {
        const char *p = off < len ? text + off : "\n";
        size_t n = off < len ? len - off : 1;
        ssize_t w = send(conn->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "sweepctl: sending to %s failed: %s\n", conn->addr.display,
                    strerror(errno));
            return CLI_EXIT_CONNECT;
        }
        if (off < len)
            off += (size_t)w;
        else
            newline_sent = 1;
    }
    return 0;
}

/* Reads until a complete line is buffered. Returns 1 with *line set, or an
 * exit code (> 1) after printing why. */
static int read_line(cli_conn *conn, char **line, size_t *len)
{
    char chunk[65536];

    for (;;) {
        int got = linebuf_next(&conn->lb, line, len);
        if (got == 1)
            return 1;
        if (got < 0) {
            fprintf(stderr, "sweepctl: a reply from %s exceeds %zu bytes; narrow the request "
                            "(e.g. --limit)\n", conn->addr.display, CLI_MAX_REPLY_BYTES);
            return CLI_EXIT_PROTOCOL;
        }

        struct pollfd pfd = {.fd = conn->fd, .events = POLLIN};
        int ready = poll(&pfd, 1, CLI_REPLY_TIMEOUT_S * 1000);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0) {
            fprintf(stderr, "sweepctl: no reply from %s within %d s\n", conn->addr.display,
                    CLI_REPLY_TIMEOUT_S);
            return CLI_EXIT_CONNECT;
        }
        ssize_t n = read(conn->fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "sweepctl: the daemon at %s closed the connection%s%s\n",
                    conn->addr.display, n < 0 ? ": " : " before replying",
                    n < 0 ? strerror(errno) : "");
            return CLI_EXIT_PROTOCOL;
        }
        int err = linebuf_append(&conn->lb, chunk, (size_t)n);
        if (err == -ENOMEM) {
            fprintf(stderr, "sweepctl: out of memory reading a reply\n");
            return CLI_EXIT_PROTOCOL;
        }
        if (err != 0) {
            fprintf(stderr, "sweepctl: a reply from %s exceeds %zu bytes; narrow the request "
                            "(e.g. --limit)\n", conn->addr.display, CLI_MAX_REPLY_BYTES);
            return CLI_EXIT_PROTOCOL;
        }
    }
}

int cli_report_daemon_error(const char *op, const cJSON *error)
{
    const char *code = cli_get_str(error, "code", "unknown");
    const char *message = cli_get_str(error, "message", "(no message)");

    fprintf(stderr, "sweepctl: %s failed: %s: %s\n", op, code, message);
    return strcmp(code, "invalid_spec") == 0 ? CLI_EXIT_SPEC : CLI_EXIT_DAEMON;
}

int cli_conn_call(cli_conn *conn, const char *op, const char *members, cJSON **reply,
                  cJSON **error_out)
{
    long long id = conn->next_id++;
    size_t members_len = members ? strlen(members) : 0;
    size_t size = members_len + strlen(op) + 64;
    char *line = malloc(size);

    *reply = NULL;
    if (error_out != NULL)
        *error_out = NULL;
    if (line == NULL) {
        fprintf(stderr, "sweepctl: out of memory building the %s request\n", op);
        return CLI_EXIT_PROTOCOL;
    }
    int n = snprintf(line, size, "{\"id\":%lld,\"op\":\"%s\"%s%s}", id, op,
                     members_len ? "," : "", members_len ? members : "");
    int rc = cli_conn_send_line(conn, line, (size_t)n);
    free(line);
    if (rc != 0)
        return rc;

    /* Events may arrive before the reply; they carry no id and are skipped. */
    for (;;) {
        char *text;
        size_t len;
        rc = read_line(conn, &text, &len);
        if (rc != 1)
            return rc;

        cJSON *msg = cJSON_ParseWithLength(text, len);
        if (msg == NULL || !cJSON_IsObject(msg)) {
            char sample[200];
            fprintf(stderr, "sweepctl: malformed reply to %s from %s: \"%s\"\n", op,
                    conn->addr.display, log_escape(text, len, 120, sample, sizeof(sample)));
            cJSON_Delete(msg);
            return CLI_EXIT_PROTOCOL;
        }
        const cJSON *rid = cJSON_GetObjectItemCaseSensitive(msg, "id");
        if (rid == NULL || !cJSON_IsNumber(rid) || (long long)rid->valuedouble != id) {
            cJSON_Delete(msg); /* an event, or a reply to an earlier request */
            continue;
        }

        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(msg, "ok"))) {
            *reply = msg;
            return 0;
        }
        cJSON *error = cJSON_GetObjectItemCaseSensitive(msg, "error");
        if (error_out != NULL && cJSON_IsObject(error)) {
            *error_out = cJSON_DetachItemViaPointer(msg, error);
            cJSON_Delete(msg);
            const char *code = cli_get_str(*error_out, "code", "");
            return strcmp(code, "invalid_spec") == 0 ? CLI_EXIT_SPEC : CLI_EXIT_DAEMON;
        }
        rc = cli_report_daemon_error(op, error);
        cJSON_Delete(msg);
        return rc;
    }
}

int cli_call_once(const cli_ctx *ctx, const char *op, const char *members, cJSON **reply)
{
    cli_conn conn;

    *reply = NULL;
    int rc = cli_conn_open(ctx, &conn);
    if (rc != 0)
        return rc;
    rc = cli_conn_call(&conn, op, members, reply, NULL);
    cli_conn_close(&conn);
    return rc;
}

int cli_print_json(cJSON *reply)
{
    cJSON_DeleteItemFromObjectCaseSensitive(reply, "id");
    cJSON_DeleteItemFromObjectCaseSensitive(reply, "ok");
    char *text = cJSON_Print(reply);
    if (text == NULL) {
        fprintf(stderr, "sweepctl: out of memory printing JSON\n");
        return CLI_EXIT_PROTOCOL;
    }
    puts(text);
    free(text);
    return fflush(stdout) == 0 ? 0 : CLI_EXIT_PROTOCOL;
}
