/* sweep-worker: leases trials from sweepd, trains each with the built-in
 * trainer, streams metrics, stores checkpoints and survives preemption.
 *
 * This file parses the options and runs the event loop; the protocol lives in
 * session.c, the training thread in trial.c. Usage and behaviour are
 * documented in docs/WORKER.md.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "trainer.h"
#include "paths.h"
#include "session.h"

static const char usage_text[] =
    "usage: sweep-worker [options]\n"
    "\n"
    "Leases trials from sweepd, trains them and reports the results.\n"
    "\n"
    "  --connect unix:PATH|tcp:HOST:PORT  daemon address (default: $SWEEPD_SOCKET, else\n"
    "                               $XDG_STATE_HOME/sweepd/sweepd.sock, else\n"
    "                               ~/.local/state/sweepd/sweepd.sock)\n"
    "  --token-file FILE            file holding the daemon's token (required over TCP)\n"
    "  --name NAME                  worker name (default: HOST-PID)\n"
    "  --threads N                  training threads (default 1)\n"
    "  --checkpoint-dir DIR         store checkpoints under DIR/SWEEP/TRIAL/ (default:\n"
    "                               the daemon's checkpoint_dir, else\n"
    "                               $XDG_STATE_HOME/sweepd/checkpoints)\n"
    "  --checkpoint-url URL         store checkpoints with HTTP PUT under URL/SWEEP/TRIAL/\n"
    "  --checkpoint-every STEPS     checkpoint interval in steps (default 100; 0 = only\n"
    "                               when preempted)\n"
    "  --cache-dir DIR              dataset cache (default $XDG_CACHE_HOME/sweepd, else\n"
    "                               ~/.cache/sweepd)\n"
    "  --max-trials N               exit after N reported trials (default: no limit)\n"
    "  --exit-when-idle SECONDS     exit when no trial arrives for SECONDS\n"
    "  --http-stall-timeout SECONDS fail a dataset or checkpoint transfer that moves\n"
    "                               less than 1 byte/s for SECONDS (default 30)\n"
    "  --max-memory BYTES           fail a trial that needs more memory (suffix K, M,\n"
    "                               G or T; default: physical memory)\n"
    "  --max-dataset-size BYTES     fail a dataset download whose body (after\n"
    "                               decoding gzip) is larger (suffix K, M, G or T;\n"
    "                               default 4G)\n"
    "  --log-level debug|info|warn|error  (default info)\n"
    "  --help                       show this text\n"
    "\n"
    "SIGTERM or SIGINT: checkpoint at the next step, report preempted, exit 0.\n"
    "A second signal exits at once with status 128+signal.\n"
    "Exit status: 0 after leaving normally, 1 on a fatal error (such as a rejected\n"
    "token), 2 on a usage error.\n";

/* SIGTERM and SIGINT that arrive before session_start() has started the
 * uv_signal handlers. main() blocks both on its own thread at once, so they
 * stay pending there until the handlers exist. A thread that a library
 * started before main() (OpenBLAS starts its pool at load time) does not
 * block them and would be killed by the default action, so on_early_signal
 * records them instead and main() raises them again once libuv listens. */
static volatile sig_atomic_t early_signal;
static volatile sig_atomic_t early_signal_count;

static void on_early_signal(int signum)
{
    early_signal = signum;
    if (early_signal_count < 2)
        early_signal_count++;
}

/* Blocks SIGTERM and SIGINT on the calling thread and routes them to
 * on_early_signal. Returns 0, or -1 with errno set. */
static int hold_stop_signals(sigset_t *stop_signals)
{
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = on_early_signal;
    sigemptyset(&action.sa_mask);
    sigemptyset(stop_signals);
    sigaddset(stop_signals, SIGTERM);
    sigaddset(stop_signals, SIGINT);
    if (sigprocmask(SIG_BLOCK, stop_signals, NULL) != 0)
        return -1;
    if (sigaction(SIGTERM, &action, NULL) != 0 || sigaction(SIGINT, &action, NULL) != 0)
        return -1;
    return 0;
}

/* Unblocks SIGTERM and SIGINT once the uv_signal handlers run (so a signal
 * pending on this thread, or one blocked by the parent process across exec,
 * reaches them), then raises again any that on_early_signal recorded: a
 * second one still means "exit at once". Returns 0, or -1 with errno set. */
static int release_stop_signals(const sigset_t *stop_signals)
{
    if (sigprocmask(SIG_UNBLOCK, stop_signals, NULL) != 0)
        return -1;
    for (int i = 0; i < early_signal_count; i++)
        if (kill(getpid(), early_signal) != 0)
            return -1;
    return 0;
}

/* Parses a whole decimal number within [min, max]. */
static int parse_long(const char *option, const char *text, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < min || value > max) {
        fprintf(stderr, "sweep-worker: %s %s: expected a whole number from %ld to %ld\n", option,
                text, min, max);
        return -1;
    }
    *out = value;
    return 0;
}

/* Reads the token: the first line of the file, without surrounding spaces. */
static int read_token(const char *path, char *out, size_t out_size)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "sweep-worker: --token-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[1024];
    int ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    char *start = line;
    if (ok) {
        while (*start == ' ' || *start == '\t')
            start++;
        size_t len = strlen(start);
        while (len > 0 && strchr(" \t\r\n", start[len - 1]) != NULL)
            start[--len] = '\0';
        ok = len > 0 && len < out_size;
    }
    if (!ok) {
        fprintf(stderr, "sweep-worker: --token-file %s: expected the token on the first line "
                "(at most %zu bytes)\n", path, out_size - 1);
        return -1;
    }
    memcpy(out, start, strlen(start) + 1);
    return 0;
}

enum {
    OPT_CONNECT = 256, OPT_TOKEN_FILE, OPT_NAME, OPT_THREADS, OPT_CKPT_DIR, OPT_CKPT_URL,
    OPT_CKPT_EVERY, OPT_CACHE_DIR, OPT_MAX_TRIALS, OPT_IDLE, OPT_STALL, OPT_MAX_MEMORY,
    OPT_MAX_DATASET, OPT_LOG_LEVEL, OPT_HELP,
};

/* Fills opt from argv. Returns 0, 1 after --help, or -1 after printing an error. */
static int parse_options(int argc, char **argv, worker_options *opt, char *connect_buf,
                         size_t connect_size)
{
    static const struct option options[] = {
        {"connect", required_argument, NULL, OPT_CONNECT},
        {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
        {"name", required_argument, NULL, OPT_NAME},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"checkpoint-dir", required_argument, NULL, OPT_CKPT_DIR},
        {"checkpoint-url", required_argument, NULL, OPT_CKPT_URL},
        {"checkpoint-every", required_argument, NULL, OPT_CKPT_EVERY},
        {"cache-dir", required_argument, NULL, OPT_CACHE_DIR},
        {"max-trials", required_argument, NULL, OPT_MAX_TRIALS},
        {"exit-when-idle", required_argument, NULL, OPT_IDLE},
        {"http-stall-timeout", required_argument, NULL, OPT_STALL},
        {"max-memory", required_argument, NULL, OPT_MAX_MEMORY},
        {"max-dataset-size", required_argument, NULL, OPT_MAX_DATASET},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    memset(opt, 0, sizeof(*opt));
    opt->threads = 1;
    opt->checkpoint_every = 100;
    opt->http_stall_timeout_s = 30;

    int c;
    long value;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (c) {
        case OPT_CONNECT: opt->connect = optarg; break;
        case OPT_TOKEN_FILE:
            if (read_token(optarg, opt->token, sizeof(opt->token)) != 0)
                return -1;
            break;
        case OPT_NAME:
            if (optarg[0] == '\0' || strlen(optarg) >= sizeof(opt->name)) {
                fprintf(stderr, "sweep-worker: --name must have 1 to %zu bytes\n",
                        sizeof(opt->name) - 1);
                return -1;
            }
            memcpy(opt->name, optarg, strlen(optarg) + 1);
            break;
        case OPT_THREADS:
            if (parse_long("--threads", optarg, 1, 256, &value) != 0)
                return -1;
            opt->threads = (int)value;
            break;
        case OPT_CKPT_DIR: opt->checkpoint_dir = optarg; break;
        case OPT_CKPT_URL: opt->checkpoint_url = optarg; break;
        case OPT_CKPT_EVERY:
            if (parse_long("--checkpoint-every", optarg, 0, 1000000000L, &opt->checkpoint_every) != 0)
                return -1;
            break;
        case OPT_CACHE_DIR:
            if (strlen(optarg) >= sizeof(opt->cache_dir)) {
                fprintf(stderr, "sweep-worker: --cache-dir is too long\n");
                return -1;
            }
            memcpy(opt->cache_dir, optarg, strlen(optarg) + 1);
            break;
        case OPT_MAX_TRIALS:
            if (parse_long("--max-trials", optarg, 1, 1000000000L, &opt->max_trials) != 0)
                return -1;
            break;
        case OPT_IDLE: {
            char *end = NULL;
            errno = 0;
            opt->exit_when_idle_s = strtod(optarg, &end);
            if (errno != 0 || end == optarg || *end != '\0' || !(opt->exit_when_idle_s > 0) ||
                opt->exit_when_idle_s > 86400 * 365) {
                fprintf(stderr, "sweep-worker: --exit-when-idle %s: expected seconds above 0\n",
                        optarg);
                return -1;
            }
            break;
        }
        case OPT_STALL:
            if (parse_long("--http-stall-timeout", optarg, 1, 86400, &opt->http_stall_timeout_s) != 0)
                return -1;
            break;
        case OPT_MAX_MEMORY: {
            /* Process-wide: every trial's trainer_create() checks against it. */
            size_t bytes;
            if (trainer_parse_bytes(optarg, &bytes) != 0) {
                fprintf(stderr, "sweep-worker: invalid --max-memory %s: expected bytes > 0, e.g. 2G "
                        "or 512M\n", optarg);
                return -1;
            }
            trainer_set_memory_limit(bytes);
            break;
        }
        case OPT_MAX_DATASET: {
            size_t bytes;
            if (trainer_parse_bytes(optarg, &bytes) != 0 || bytes > (size_t)LLONG_MAX) {
                fprintf(stderr, "sweep-worker: invalid --max-dataset-size %s: expected bytes > 0, "
                        "e.g. 512M or 8G\n", optarg);
                return -1;
            }
            opt->max_dataset_bytes = (long long)bytes;
            break;
        }
        case OPT_LOG_LEVEL: {
            enum log_level level;
            if (log_parse_level(optarg, &level) != 0) {
                fprintf(stderr, "sweep-worker: --log-level %s: expected debug, info, warn or "
                        "error\n", optarg);
                return -1;
            }
            log_set_level(level);
            break;
        }
        case OPT_HELP: fputs(usage_text, stdout); return 1;
        default: fputs(usage_text, stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sweep-worker: unexpected argument %s; see --help\n", argv[optind]);
        return -1;
    }
    if (opt->checkpoint_dir != NULL && opt->checkpoint_url != NULL) {
        fprintf(stderr, "sweep-worker: give --checkpoint-dir or --checkpoint-url, not both\n");
        return -1;
    }

    /* Defaults that depend on the environment. */
    if (opt->connect == NULL) {
        const char *env = getenv("SWEEPD_SOCKET");
        char path[4096];
        if (env != NULL && env[0] != '\0') {
            opt->connect = strncmp(env, "unix:", 5) == 0 || strncmp(env, "tcp:", 4) == 0 ? env : NULL;
            if (opt->connect == NULL)
                snprintf(connect_buf, connect_size, "unix:%s", env);
        } else if (paths_state_dir("/sweepd.sock", path, sizeof(path)) == 0) {
            snprintf(connect_buf, connect_size, "unix:%s", path);
        } else {
            fprintf(stderr, "sweep-worker: no --connect, no $SWEEPD_SOCKET and no $HOME; give "
                    "--connect unix:PATH\n");
            return -1;
        }
        if (opt->connect == NULL)
            opt->connect = connect_buf;
    }
    if (strncmp(opt->connect, "tcp:", 4) == 0 && opt->token[0] == '\0') {
        fprintf(stderr, "sweep-worker: %s needs a token: pass --token-file FILE with the file "
                "given to 'sweepd --token-file'\n", opt->connect);
        return -1;
    }
    if (opt->name[0] == '\0') {
        char host[64];
        if (gethostname(host, sizeof(host)) != 0)
            snprintf(host, sizeof(host), "worker");
        host[sizeof(host) - 1] = '\0';
        snprintf(opt->name, sizeof(opt->name), "%s-%d", host, (int)getpid());
    }
    if (opt->cache_dir[0] == '\0' && paths_cache_dir(opt->cache_dir, sizeof(opt->cache_dir)) != 0) {
        fprintf(stderr, "sweep-worker: no $XDG_CACHE_HOME or $HOME; give --cache-dir DIR\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    sigset_t stop_signals;
    if (hold_stop_signals(&stop_signals) != 0) {
        fprintf(stderr, "sweep-worker: failed to set up SIGTERM and SIGINT: %s\n", strerror(errno));
        return 1;
    }
    /* After hold_stop_signals(): the blocked mask and any pending SIGTERM
     * survive the re-exec, so a signal in between is not lost. */
    if (trainer_process_init(argv) != 0)
        fprintf(stderr, "sweep-worker: could not re-execute with OPENBLAS_NUM_THREADS=1 (%s); "
                "OpenBLAS threads keep the default denormal handling\n", strerror(errno));

    worker_options opt;
    char connect_buf[4200];
    int rc = parse_options(argc, argv, &opt, connect_buf, sizeof(connect_buf));
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    log_set_prefix(opt.name);

    /* A peer closing a socket must give EPIPE, not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    CURLcode curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (curl_rc != CURLE_OK) {
        log_error("worker", "curl_global_init failed: %s", curl_easy_strerror(curl_rc));
        return 1;
    }

    uv_loop_t loop;
    rc = uv_loop_init(&loop);
    if (rc != 0) {
        log_error("worker", "uv_loop_init failed: %s", uv_strerror(rc));
        curl_global_cleanup();
        return 1;
    }
    static session s;
    char err[1024];
    if (session_start(&s, &loop, &opt, err, sizeof(err)) != 0) {
        fprintf(stderr, "sweep-worker: %s\n", err);
        curl_global_cleanup();
        return 2;
    }
    if (release_stop_signals(&stop_signals) != 0) {
        log_error("worker", "failed to unblock SIGTERM and SIGINT: %s", strerror(errno));
        curl_global_cleanup();
        return 1;
    }
    log_info("worker", "started: connect=%s threads=%d checkpoint_every=%ld cache=%s", opt.connect,
             opt.threads, opt.checkpoint_every, opt.cache_dir);

    rc = uv_run(&loop, UV_RUN_DEFAULT);
    if (rc != 0)
        log_warn("worker", "event loop ended with active handles");
    rc = uv_loop_close(&loop);
    if (rc != 0)
        log_warn("worker", "uv_loop_close: %s", uv_strerror(rc));
    curl_global_cleanup();
    log_info("worker", "exiting with status %d after %ld trials", s.exit_code, s.trials_done);
    return s.exit_code;
}
