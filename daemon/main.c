/* sweepd: the sweep coordinator. Parses options, takes the state directory's
 * lock, opens the database, serves the protocol until SIGINT or SIGTERM, and
 * optionally runs local sweep-worker processes. The server lives in server.c,
 * storage in store.c, local workers in local_workers.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "detach.h"
#include "local_workers.h"
#include "log.h"
#include "server.h"
#include "store.h"

typedef struct options {
    char state_dir[PATH_MAX];
    const char *socket_path;
    const char *listen_address;
    const char *token_file;
    int workers; /* -1: one per core */
    double heartbeat_timeout_s;
    double idle_timeout_s;
    double grace_s;
    long max_connections;
    long max_line_bytes;
    int synchronous_full;
    int foreground;
} options;

static const char usage[] =
    "usage: sweepd [options]\n"
    "  --state-dir DIR          database, socket and checkpoints (default $XDG_STATE_HOME/sweepd,\n"
    "                           else ~/.local/state/sweepd)\n"
    "  --socket PATH            unix socket (default STATE_DIR/sweepd.sock, mode 0600)\n"
    "  --listen HOST:PORT       also accept TCP (needs --token-file); port 0 picks a free port\n"
    "  --token-file FILE        token every TCP connection must send in hello\n"
    "  --workers N|auto         local sweep-worker processes (default 0; auto: one per core)\n"
    "  --heartbeat-timeout S    seconds of worker silence before its trials are requeued (default 30)\n"
    "  --idle-timeout S         seconds before an idle client or a partial line is closed (default 30)\n"
    "  --grace S                seconds after a restart for workers to re-present leases (default 60)\n"
    "  --max-connections N      connections served at once (default 1024)\n"
    "  --max-line-bytes N       longest request line in bytes (default 1048576)\n"
    "  --synchronous full|normal  full: reply after the WAL is synced (default); normal: after COMMIT\n"
    "  --log-level LEVEL        debug, info, warn or error (default info)\n"
    "  --foreground             stay in the foreground and log to stderr; without it sweepd detaches\n"
    "                           once it listens and appends its log to STATE_DIR/sweepd.log\n";

static int parse_seconds(const char *option, const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || *end || !(v > 0) || v > 86400.0 * 365) {
        fprintf(stderr, "sweepd: %s %s is invalid; give a positive number of seconds\n", option, text);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_count(const char *option, const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || *end || v < min || v > max) {
        fprintf(stderr, "sweepd: %s %s is invalid; give an integer from %ld to %ld\n", option, text, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int default_state_dir(char *out, size_t size)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (xdg && xdg[0])
        n = snprintf(out, size, "%s/sweepd", xdg);
    else if (home && home[0])
        n = snprintf(out, size, "%s/.local/state/sweepd", home);
    else {
        fprintf(stderr, "sweepd: neither XDG_STATE_HOME nor HOME is set; pass --state-dir DIR\n");
        return -1;
    }
    return n > 0 && (size_t)n < size ? 0 : -1;
}

static int parse_options(int argc, char **argv, options *opt)
{
    enum { OPT_STATE = 256, OPT_SOCKET, OPT_LISTEN, OPT_TOKEN, OPT_WORKERS, OPT_HB, OPT_IDLE, OPT_GRACE, OPT_MAXCONN, OPT_MAXLINE,
           OPT_SYNC, OPT_LEVEL, OPT_FG, OPT_HELP };
    static const struct option longopts[] = {
        {"state-dir", required_argument, NULL, OPT_STATE},
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"token-file", required_argument, NULL, OPT_TOKEN},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"heartbeat-timeout", required_argument, NULL, OPT_HB},
        {"idle-timeout", required_argument, NULL, OPT_IDLE},
        {"grace", required_argument, NULL, OPT_GRACE},
        {"max-connections", required_argument, NULL, OPT_MAXCONN},
        {"max-line-bytes", required_argument, NULL, OPT_MAXLINE},
        {"synchronous", required_argument, NULL, OPT_SYNC},
        {"log-level", required_argument, NULL, OPT_LEVEL},
        {"foreground", no_argument, NULL, OPT_FG},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    memset(opt, 0, sizeof(*opt));
    opt->heartbeat_timeout_s = 30;
    opt->idle_timeout_s = 30;
    opt->grace_s = 60;
    opt->max_connections = 1024;
    opt->max_line_bytes = PROTO_MAX_LINE_BYTES;
    opt->synchronous_full = 1;
    const char *state_dir = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        long n;
        switch (ch) {
        case OPT_STATE: state_dir = optarg; break;
        case OPT_SOCKET: opt->socket_path = optarg; break;
        case OPT_LISTEN: opt->listen_address = optarg; break;
        case OPT_TOKEN: opt->token_file = optarg; break;
        case OPT_WORKERS:
            if (strcmp(optarg, "auto") == 0)
                opt->workers = -1;
            else if (parse_count("--workers", optarg, 0, 1024, &n) != 0)
                return -1;
            else
                opt->workers = (int)n;
            break;
        case OPT_HB:
            if (parse_seconds("--heartbeat-timeout", optarg, &opt->heartbeat_timeout_s) != 0)
                return -1;
            break;
        case OPT_IDLE:
            if (parse_seconds("--idle-timeout", optarg, &opt->idle_timeout_s) != 0)
                return -1;
            break;
        case OPT_GRACE:
            if (parse_seconds("--grace", optarg, &opt->grace_s) != 0)
                return -1;
            break;
        case OPT_MAXCONN:
            if (parse_count("--max-connections", optarg, 1, 1000000, &opt->max_connections) != 0)
                return -1;
            break;
        case OPT_MAXLINE:
            if (parse_count("--max-line-bytes", optarg, 1024, 1L << 30, &opt->max_line_bytes) != 0)
                return -1;
            break;
        case OPT_SYNC:
            if (strcmp(optarg, "full") == 0)
                opt->synchronous_full = 1;
            else if (strcmp(optarg, "normal") == 0)
                opt->synchronous_full = 0;
            else {
                fprintf(stderr, "sweepd: --synchronous %s is invalid; use full or normal\n", optarg);
                return -1;
            }
            break;
        case OPT_LEVEL: {
            enum log_level level;
            if (log_parse_level(optarg, &level) != 0) {
                fprintf(stderr, "sweepd: --log-level %s is invalid; use debug, info, warn or error\n", optarg);
                return -1;
            }
            log_set_level(level);
            break;
        }
        case OPT_FG: opt->foreground = 1; break;
        case OPT_HELP: fputs(usage, stdout); exit(0);
        default: fputs(usage, stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sweepd: unexpected argument %s\n%s", argv[optind], usage);
        return -1;
    }
    if (opt->listen_address && !opt->token_file) {
        fprintf(stderr, "sweepd: --listen needs --token-file FILE; TCP clients must present that token\n");
        return -1;
    }
    if (state_dir) {
        if (snprintf(opt->state_dir, sizeof(opt->state_dir), "%s", state_dir) >= (int)sizeof(opt->state_dir)) {
            fprintf(stderr, "sweepd: --state-dir is too long\n");
            return -1;
        }
    } else if (default_state_dir(opt->state_dir, sizeof(opt->state_dir)) != 0) {
        return -1;
    }
    return 0;
}

/* Creates dir and its parents with mode 0700. */
static int make_dirs(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Takes the state directory's lock. Returns the open lock fd, or -1 after
 * printing who holds it. The fd stays open for the life of the process. */
static int take_lock(const char *state_dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/sweepd.lock", state_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("main", "opening %s failed: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        if (n > 0)
            pid[n] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        log_error("main", "another sweepd (pid %s) holds %s; stop it or use another --state-dir",
                  pid[0] ? pid : "unknown", state_dir);
        close(fd);
        return -1;
    }
    char text[32];
    int len = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != len)
        log_warn("main", "writing the pid to %s failed: %s", path, strerror(errno));
    return fd;
}

/* Creates STATE_DIR/checkpoints and writes its absolute path to out, so
 * local workers and the hello reply name it whatever the working directory
 * of the reader. Returns 0, or -1 after logging. */
static int make_checkpoint_dir(const char *state_dir, char *out, size_t size)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/checkpoints", state_dir);
    if (make_dirs(path) != 0) {
        log_error("main", "creating the checkpoint directory %s failed: %s", path, strerror(errno));
        return -1;
    }
    char absolute[PATH_MAX];
    if (!realpath(path, absolute)) {
        log_error("main", "resolving the checkpoint directory %s failed: %s", path, strerror(errno));
        return -1;
    }
    snprintf(out, size, "%s", absolute);
    return 0;
}

/* Reads the token: the file's first line, without trailing whitespace. */
static int read_token(const char *path, char *out, size_t size)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        log_error("main", "opening the token file %s failed: %s", path, strerror(errno));
        return -1;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 0077))
        log_warn("main", "token file %s is readable by other users; chmod 600 it", path);
    if (!fgets(out, (int)size, f))
        out[0] = '\0';
    fclose(f);
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ' || out[n - 1] == '\t'))
        out[--n] = '\0';
    if (n < 16) {
        log_error("main", "token file %s contains %zu bytes; write a token of at least 16 characters", path, n);
        return -1;
    }
    return 0;
}

typedef struct daemon_ctx {
    server srv;
    local_workers workers;
    uv_signal_t sigint, sigterm;
    int stopping;
} daemon_ctx;

static void on_signal(uv_signal_t *handle, int signum)
{
    daemon_ctx *d = handle->data;
    if (d->stopping) {
        log_info("main", "signal %d again; still stopping", signum);
        return;
    }
    d->stopping = 1;
    log_info("main", "signal %d: shutting down", signum);
    server_stop(&d->srv);
    local_workers_stop(&d->workers);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
}

static void close_walk(uv_handle_t *handle, void *arg)
{
    (void)arg;
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

int main(int argc, char **argv)
{
    options opt;
    if (parse_options(argc, argv, &opt) != 0)
        return 2;
    signal(SIGPIPE, SIG_IGN);

    if (make_dirs(opt.state_dir) != 0) {
        log_error("main", "creating the state directory %s failed: %s", opt.state_dir, strerror(errno));
        return 1;
    }
    static char token[512];
    if (opt.token_file && read_token(opt.token_file, token, sizeof(token)) != 0)
        return 1;
    char socket_path[PATH_MAX + 16], db_path[PATH_MAX + 16], checkpoint_dir[PATH_MAX + 16];
    snprintf(socket_path, sizeof(socket_path), "%s/sweepd.sock", opt.state_dir);
    snprintf(db_path, sizeof(db_path), "%s/sweepd.db", opt.state_dir);
    if (make_checkpoint_dir(opt.state_dir, checkpoint_dir, sizeof(checkpoint_dir)) != 0)
        return 1;

    /* Detach before the lock, the database and the loop exist, so the daemon
     * process owns all of them; the starting process waits for ready_fd. */
    int ready_fd = -1;
    if (!opt.foreground) {
        char log_path[PATH_MAX + 16];
        snprintf(log_path, sizeof(log_path), "%s/sweepd.log", opt.state_dir);
        if (detach_start(log_path, &ready_fd) != 0)
            return 1;
    }
    int lock_fd = take_lock(opt.state_dir);
    if (lock_fd < 0)
        return 1;

    char err[512];
    store *st = NULL;
    if (store_open(db_path, opt.synchronous_full, &st, err, sizeof(err)) != 0) {
        log_error("main", "%s", err);
        return 1;
    }
    log_info("main", "database %s (synchronous=%s, %zu sweeps)", db_path, opt.synchronous_full ? "full" : "normal",
             store_sweep_count(st));

    static daemon_ctx d;
    uv_loop_t *loop = uv_default_loop();
    server_options sopt = {
        .socket_path = opt.socket_path ? opt.socket_path : socket_path,
        .listen_address = opt.listen_address,
        .token = opt.token_file ? token : NULL,
        .checkpoint_dir = checkpoint_dir,
        .heartbeat_timeout_s = opt.heartbeat_timeout_s,
        .idle_timeout_s = opt.idle_timeout_s,
        .grace_s = opt.grace_s,
        .max_connections = (size_t)opt.max_connections,
        .max_line_bytes = (size_t)opt.max_line_bytes,
    };
    int rc = uv_signal_init(loop, &d.sigint);
    if (rc == 0)
        rc = uv_signal_init(loop, &d.sigterm);
    if (rc == 0) {
        d.sigint.data = d.sigterm.data = &d;
        rc = uv_signal_start(&d.sigint, on_signal, SIGINT);
    }
    if (rc == 0)
        rc = uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    int status = 0;
    if (rc != 0) {
        log_error("main", "installing signal handlers failed: %s", uv_strerror(rc));
        status = 1;
    } else if (server_start(&d.srv, loop, st, &sopt) != 0) {
        status = 1;
    } else {
        int workers = opt.workers;
        if (workers < 0) {
            workers = (int)uv_available_parallelism();
        }
        if (local_workers_start(&d.workers, loop, sopt.socket_path, checkpoint_dir, workers) != 0)
            status = 1;
        else
            detach_ready(ready_fd);
    }
    if (status != 0) {
        server_stop(&d.srv);
        local_workers_stop(&d.workers);
        uv_walk(loop, close_walk, NULL);
    }

    rc = uv_run(loop, UV_RUN_DEFAULT);
    local_workers_free(&d.workers);
    store_close(st);
    rc = uv_loop_close(loop);
    if (rc != 0) {
        log_error("main", "the event loop still had open handles at exit: %s", uv_strerror(rc));
        status = status ? status : 1;
    }
    close(lock_fd);
    log_info("main", "stopped (exit %d)", status);
    return status;
}
