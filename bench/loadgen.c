/* Load generator for sweepd: N simulated workers on N unix-socket
 * connections, each leasing a trial and completing it at once, one request in
 * flight per connection, multiplexed with epoll(7). The load generator's own
 * CPU time per reply thus does not grow with N. Prints one JSON line:
 * lifecycles per second, the p50/p99 lease latency, and from the daemon's
 * stats op the commits, requests per commit and mean commit time of the run.
 * Without --rate the loop is closed: a worker requests its next lease as soon
 * as its complete is acknowledged, and latency runs from request written to
 * reply read. With --rate R it is open: worker i requests leases at R/N per
 * second on a fixed schedule staggered over the workers, and latency runs
 * from the scheduled time, so waiting behind a slow reply counts too. It also
 * times client queries (status, tickets) and measures idle connections.
 *
 *   loadgen --socket PATH --workers N --lifecycles M [--rate R]   lease + complete
 *   loadgen --socket PATH --query status|tickets --sweep S --repeat K
 *   loadgen --socket PATH --idle N --pid PID               RSS growth per idle connection
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sys/epoll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "linebuf.h"

typedef struct sim_worker {
    int fd;
    linebuf in;
    int state;          /* 0: lease in flight, 1: complete in flight, 2: waiting for next_ns */
    uint64_t sent_ns;   /* when the lease was sent, or was due with --rate */
    uint64_t next_ns;   /* when the next lease is due with --rate */
    char complete[256]; /* the complete request for the current trial */
    long id;
} sim_worker;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int connect_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *text, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, text, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        text += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads until one whole line is buffered; returns it parsed, or NULL. */
static cJSON *read_reply(int fd, linebuf *in)
{
    for (;;) {
        char *line;
        size_t len;
        int rc = linebuf_next(in, &line, &len);
        if (rc == 1)
            return cJSON_ParseWithLength(line, len);
        if (rc < 0)
            return NULL;
        char buf[65536];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0 || linebuf_append(in, buf, (size_t)n) != 0)
            return NULL;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sends a lease request; due_ns is its scheduled time (0: now). */
static int send_lease(sim_worker *w, uint64_t due_ns)
{
    char req[64];
    int n = snprintf(req, sizeof(req), "{\"id\":%ld,\"op\":\"lease\"}\n", ++w->id);
    w->state = 0;
    w->sent_ns = due_ns ? due_ns : now_ns();
    return send_all(w->fd, req, (size_t)n);
}

/* The daemon's counters from the stats op, for the deltas of one run. */
typedef struct daemon_stats {
    double requests, commits, commit_seconds, syncs, sync_seconds, max_batch, cpu_seconds;
} daemon_stats;

static int read_stats(const char *socket_path, daemon_stats *out)
{
    int fd = connect_unix(socket_path);
    linebuf in;
    if (fd < 0 || linebuf_init(&in, 1 << 20) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    const char *req = "{\"id\":1,\"op\":\"stats\"}\n";
    cJSON *reply = send_all(fd, req, strlen(req)) == 0 ? read_reply(fd, &in) : NULL;
    int ok = cJSON_IsTrue(cJSON_GetObjectItem(reply, "ok"));
    if (ok) {
        out->requests = cJSON_GetNumberValue(cJSON_GetObjectItem(reply, "requests"));
        out->commits = cJSON_GetNumberValue(cJSON_GetObjectItem(reply, "commits"));
        out->commit_seconds = cJSON_GetNumberValue(cJSON_GetObjectItem(reply, "commit_seconds"));
        out->syncs = cJSON_GetNumberValue(cJSON_GetObjectItem(reply, "syncs"));
        out->sync_seconds = cJSON_GetNumberValue(cJSON_GetObjectItem(reply, "sync_seconds"));
        out->max_batch = cJSON_GetNumberValue(cJSON_GetObjectItem(reply, "max_batch"));
        out->cpu_seconds = cJSON_GetNumberValue(cJSON_GetObjectItem(reply, "cpu_seconds"));
    }
    cJSON_Delete(reply);
    close(fd);
    linebuf_free(&in);
    return ok ? 0 : -1;
}

static int run_workers(const char *socket_path, int nworkers, long lifecycles, double rate)
{
    sim_worker *ws = calloc((size_t)nworkers, sizeof(*ws));
    struct epoll_event events[256];
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    uint64_t *lat = calloc((size_t)lifecycles + (size_t)nworkers, sizeof(*lat));
    if (!ws || epfd < 0 || !lat) {
        fprintf(stderr, "loadgen: out of memory or epoll_create1 failed\n");
        return 1;
    }
    for (int i = 0; i < nworkers; i++) {
        ws[i].fd = connect_unix(socket_path);
        if (ws[i].fd < 0 || linebuf_init(&ws[i].in, 1 << 20) != 0) {
            fprintf(stderr, "loadgen: connecting worker %d to %s failed: %s\n", i, socket_path, strerror(errno));
            return 1;
        }
        char hello[128];
        int n = snprintf(hello, sizeof(hello), "{\"id\":0,\"op\":\"hello\",\"version\":1,\"role\":\"worker\",\"name\":\"lg%d\"}\n", i);
        cJSON *reply = NULL;
        if (send_all(ws[i].fd, hello, (size_t)n) != 0 || !(reply = read_reply(ws[i].fd, &ws[i].in))) {
            fprintf(stderr, "loadgen: hello of worker %d failed\n", i);
            return 1;
        }
        cJSON_Delete(reply);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, ws[i].fd, &ev) != 0) {
            fprintf(stderr, "loadgen: epoll_ctl failed: %s\n", strerror(errno));
            return 1;
        }
    }

    daemon_stats before = {0}, after = {0};
    if (read_stats(socket_path, &before) != 0) {
        fprintf(stderr, "loadgen: the stats request to %s failed\n", socket_path);
        return 1;
    }
    long done = 0, started = 0, nlat = 0, idle = 0;
    uint64_t t0 = now_ns();
    /* With --rate, worker i's leases are due every period_ns, starting at
     * t0 + i * period_ns / nworkers. */
    uint64_t period_ns = rate > 0 ? (uint64_t)(1e9 * nworkers / rate) : 0;
    for (int i = 0; i < nworkers && started < lifecycles; i++, started++) {
        if (period_ns) {
            ws[i].state = 2;
            ws[i].next_ns = t0 + period_ns * (uint64_t)i / (uint64_t)nworkers;
        } else if (send_lease(&ws[i], 0) != 0) {
            return 1;
        }
    }
    int active = (int)started;
    while (active > 0) {
        /* Send the leases that are due, and sleep in poll until the next one. */
        int timeout_ms = 10000;
        if (period_ns) {
            uint64_t now = now_ns(), soonest = UINT64_MAX;
            for (int i = 0; i < nworkers; i++) {
                if (ws[i].state != 2)
                    continue;
                if (ws[i].next_ns <= now) {
                    if (send_lease(&ws[i], ws[i].next_ns) != 0)
                        return 1;
                } else if (ws[i].next_ns < soonest) {
                    soonest = ws[i].next_ns;
                }
            }
            if (soonest != UINT64_MAX)
                timeout_ms = (int)((soonest - now + 999999) / 1000000);
        }
        int rc = epoll_wait(epfd, events, (int)(sizeof(events) / sizeof(events[0])), timeout_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0 && period_ns)
            continue;
        if (rc <= 0) {
            fprintf(stderr, "loadgen: epoll_wait %s with %d requests in flight\n", rc == 0 ? "timed out" : "failed",
                    active);
            return 1;
        }
        for (int e = 0; e < rc; e++) {
            int i = (int)events[e].data.u32;
            sim_worker *w = &ws[i];
            char buf[65536];
            ssize_t n = read(w->fd, buf, sizeof(buf));
            if (n <= 0 || linebuf_append(&w->in, buf, (size_t)n) != 0) {
                fprintf(stderr, "loadgen: worker %d lost its connection\n", i);
                return 1;
            }
            char *line;
            size_t len;
            while (linebuf_next(&w->in, &line, &len) == 1) {
                cJSON *reply = cJSON_ParseWithLength(line, len);
                if (!reply || !cJSON_IsTrue(cJSON_GetObjectItem(reply, "ok"))) {
                    fprintf(stderr, "loadgen: error reply: %.*s\n", (int)(len > 300 ? 300 : len), line);
                    return 1;
                }
                if (w->state == 0) {
                    lat[nlat++] = now_ns() - w->sent_ns;
                    cJSON *t = cJSON_GetObjectItem(reply, "trial");
                    if (cJSON_IsNull(t)) {
                        idle++;
                        active--;
                        epoll_ctl(epfd, EPOLL_CTL_DEL, w->fd, NULL);
                        cJSON_Delete(reply);
                        continue;
                    }
                    int m = snprintf(w->complete, sizeof(w->complete),
                                     "{\"id\":%ld,\"op\":\"complete\",\"trial\":%.0f,\"attempt\":%.0f,\"lease\":\"%s\","
                                     "\"final_loss\":%.4f,\"steps\":1,\"seconds\":0.001}\n",
                                     ++w->id, cJSON_GetObjectItem(t, "trial")->valuedouble,
                                     cJSON_GetObjectItem(t, "attempt")->valuedouble,
                                     cJSON_GetObjectItem(t, "lease")->valuestring,
                                     1.0 + (double)(rand() % 1000) / 1000.0);
                    w->state = 1;
                    if (send_all(w->fd, w->complete, (size_t)m) != 0)
                        return 1;
                } else {
                    done++;
                    if (started < lifecycles && period_ns) {
                        started++;
                        w->state = 2;
                        w->next_ns = w->sent_ns + period_ns;
                    } else if (started < lifecycles) {
                        started++;
                        if (send_lease(w, 0) != 0)
                            return 1;
                    } else {
                        active--;
                        epoll_ctl(epfd, EPOLL_CTL_DEL, w->fd, NULL);
                    }
                }
                cJSON_Delete(reply);
            }
        }
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    if (read_stats(socket_path, &after) != 0) {
        fprintf(stderr, "loadgen: the stats request to %s failed\n", socket_path);
        return 1;
    }
    qsort(lat, (size_t)nlat, sizeof(*lat), cmp_u64);
    double p50 = nlat ? (double)lat[nlat / 2] / 1e3 : 0, p99 = nlat ? (double)lat[(size_t)((double)nlat * 0.99)] / 1e3 : 0;
    double commits = after.commits - before.commits;
    double syncs = after.syncs - before.syncs;
    /* The stats request of "before" is counted in the run; it is one request. */
    double requests = after.requests - before.requests - 1;
    printf("{\"workers\":%d,\"rate\":%.0f,\"lifecycles\":%ld,\"seconds\":%.3f,\"lifecycles_per_s\":%.0f,"
           "\"lease_p50_us\":%.0f,\"lease_p99_us\":%.0f,\"out_of_trials\":%ld,\"commits_per_s\":%.0f,"
           "\"requests_per_commit\":%.1f,\"commit_ms_mean\":%.2f,\"syncs_per_s\":%.0f,\"sync_ms_mean\":%.2f,"
           "\"max_batch\":%.0f,\"daemon_cpu_us_per_request\":%.1f}\n",
           nworkers, rate, done, secs, (double)done / secs, p50, p99, idle, commits / secs,
           commits > 0 ? requests / commits : 0.0,
           commits > 0 ? 1e3 * (after.commit_seconds - before.commit_seconds) / commits : 0.0, syncs / secs,
           syncs > 0 ? 1e3 * (after.sync_seconds - before.sync_seconds) / syncs : 0.0, after.max_batch,
           requests > 0 ? 1e6 * (after.cpu_seconds - before.cpu_seconds) / requests : 0.0);
    for (int i = 0; i < nworkers; i++) {
        close(ws[i].fd);
        linebuf_free(&ws[i].in);
    }
    free(ws);
    close(epfd);
    free(lat);
    return 0;
}

static int run_query(const char *socket_path, const char *op, long sweep, int repeat, const char *extra)
{
    int fd = connect_unix(socket_path);
    linebuf in;
    if (fd < 0 || linebuf_init(&in, 64 << 20) != 0) {
        fprintf(stderr, "loadgen: connecting to %s failed\n", socket_path);
        return 1;
    }
    uint64_t *t = calloc((size_t)repeat, sizeof(*t));
    for (int i = 0; i < repeat; i++) {
        char req[256];
        int n = snprintf(req, sizeof(req), "{\"id\":%d,\"op\":\"%s\",\"sweep\":%ld%s}\n", i, op, sweep, extra);
        uint64_t t0 = now_ns();
        cJSON *reply = NULL;
        if (send_all(fd, req, (size_t)n) != 0 || !(reply = read_reply(fd, &in))) {
            fprintf(stderr, "loadgen: %s failed\n", op);
            return 1;
        }
        t[i] = now_ns() - t0;
        if (!cJSON_IsTrue(cJSON_GetObjectItem(reply, "ok"))) {
            char *text = cJSON_PrintUnformatted(reply);
            fprintf(stderr, "loadgen: %s error: %s\n", op, text);
            return 1;
        }
        cJSON_Delete(reply);
    }
    qsort(t, (size_t)repeat, sizeof(*t), cmp_u64);
    printf("{\"op\":\"%s%s\",\"repeat\":%d,\"median_ms\":%.2f,\"max_ms\":%.2f}\n", op,
           strstr(extra, "\"by\"") ? "+by" : "", repeat,
           (double)t[repeat / 2] / 1e6, (double)t[repeat - 1] / 1e6);
    free(t);
    close(fd);
    linebuf_free(&in);
    return 0;
}

static long rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static int run_idle(const char *socket_path, int count, long pid)
{
    int probe = connect_unix(socket_path);
    linebuf in;
    if (probe < 0 || linebuf_init(&in, 1 << 20) != 0)
        return 1;
    const char *list = "{\"id\":1,\"op\":\"list\"}\n";
    cJSON *r = NULL;
    if (send_all(probe, list, strlen(list)) != 0 || !(r = read_reply(probe, &in)))
        return 1;
    cJSON_Delete(r);
    long before = rss_kib(pid);
    int *fds = calloc((size_t)count, sizeof(*fds));
    for (int i = 0; i < count; i++) {
        fds[i] = connect_unix(socket_path);
        if (fds[i] < 0) {
            fprintf(stderr, "loadgen: idle connection %d failed: %s\n", i, strerror(errno));
            return 1;
        }
    }
    /* A round trip on the probe after the connects: the daemon has accepted them all by then. */
    if (send_all(probe, list, strlen(list)) != 0 || !(r = read_reply(probe, &in)))
        return 1;
    cJSON_Delete(r);
    long after = rss_kib(pid);
    printf("{\"idle_connections\":%d,\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,\"bytes_per_connection\":%.0f}\n",
           count, before, after, (double)(after - before) * 1024.0 / count);
    for (int i = 0; i < count; i++)
        close(fds[i]);
    free(fds);
    close(probe);
    linebuf_free(&in);
    return 0;
}

int main(int argc, char **argv)
{
    const char *socket_path = NULL, *query = NULL, *extra = "";
    int workers = 0, repeat = 5, idle = 0;
    long lifecycles = 0, sweep = 1, pid = 0;
    double rate = 0;
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'}, {"workers", required_argument, NULL, 'w'},
        {"lifecycles", required_argument, NULL, 'n'}, {"query", required_argument, NULL, 'q'},
        {"sweep", required_argument, NULL, 'S'}, {"repeat", required_argument, NULL, 'r'},
        {"extra", required_argument, NULL, 'e'}, {"idle", required_argument, NULL, 'i'},
        {"pid", required_argument, NULL, 'p'}, {"rate", required_argument, NULL, 'R'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 's': socket_path = optarg; break;
        case 'w': workers = atoi(optarg); break;
        case 'n': lifecycles = atol(optarg); break;
        case 'q': query = optarg; break;
        case 'S': sweep = atol(optarg); break;
        case 'r': repeat = atoi(optarg); break;
        case 'e': extra = optarg; break;
        case 'i': idle = atoi(optarg); break;
        case 'p': pid = atol(optarg); break;
        case 'R': rate = atof(optarg); break;
        default: fprintf(stderr, "usage: see the comment at the top of bench/loadgen.c\n"); return 2;
        }
    }
    if (!socket_path) {
        fprintf(stderr, "loadgen: --socket PATH is required\n");
        return 2;
    }
    if (query)
        return run_query(socket_path, query, sweep, repeat > 0 ? repeat : 1, extra);
    if (idle > 0)
        return run_idle(socket_path, idle, pid);
    if (workers <= 0 || lifecycles <= 0) {
        fprintf(stderr, "loadgen: give --workers N and --lifecycles M (both > 0)\n");
        return 2;
    }
    return run_workers(socket_path, workers, lifecycles, rate);
}
