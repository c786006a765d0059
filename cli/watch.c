/* sweepctl watch: a live view of one sweep and the workers, redrawn in place.
 *
 * One libuv loop owns the daemon connection, the timers and the signals
 * (SIGINT, SIGTERM, SIGWINCH). The view is built from the daemon's replies
 * to periodic status, workers and tickets requests, and kept current between
 * them by the watch event stream: heartbeat events update a worker's row,
 * trial and worker events trigger an early refresh. All requests share the
 * watch connection; replies are matched by id, events carry none.
 *
 * On a terminal the frame is redrawn in place (cursor up, clear to end of
 * line) and lines are cut to the terminal width so nothing wraps. Otherwise
 * one status line is printed every --interval seconds. The only terminal
 * state changed is the hidden cursor. It is shown again on every exit path
 * that runs through the loop (Ctrl-C, SIGTERM, end of sweep, lost connection).
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* Request kinds; each has at most one request in flight. */
enum watch_kind { KIND_WATCH, KIND_LIST, KIND_STATUS, KIND_WORKERS, KIND_TICKETS, KIND_COUNT };

static const char *const kind_ops[KIND_COUNT] = {"watch", "list", "status", "workers",
                                                 "tickets"};

/* Threshold sent when the sweep has no ticket_threshold: every completed run
 * counts as a winner, so only the best losses are shown. */
#define NO_THRESHOLD 1.0e308

/* Delay between an event and the refresh it triggers, so a burst of events
 * costs one round of requests. */
#define REFRESH_DELAY_MS 200

/* Status and workers requests on a terminal, when no event came. */
#define POLL_INTERVAL_MS 2000

/* Redraws on a terminal, so heartbeat ages and the ETA keep moving. */
#define REDRAW_INTERVAL_MS 500

typedef struct watch_state {
    uv_loop_t loop;
    cli_conn conn; /* connected by cli_conn_open; its fd moves to stream */
    union {
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } stream;
    uv_timer_t poll_timer;    /* periodic requests */
    uv_timer_t refresh_timer; /* the early refresh after events */
    uv_timer_t draw_timer;    /* redraws (terminal) or status lines */
    uv_signal_t sigint, sigterm, sigwinch;

    int tty;            /* stdout is a terminal */
    int columns;        /* terminal width */
    int lines_drawn;    /* lines of the last frame, to move back over */
    long long sweep;    /* the sweep shown; 0 until chosen */
    int until_done;
    int interval_s;     /* seconds between status lines off a terminal */
    int stopping;
    int exit_code;
    int have_threshold; /* tickets came with the sweep's ticket_threshold */
    int threshold_checked;

    long long next_id;
    long long pending[KIND_COUNT];  /* id in flight per kind, 0 when none */
    long long replied[KIND_COUNT];  /* id of the newest reply per kind */
    long long finished_id;          /* status reply that showed the sweep ended */
    long long pending_reply_id;     /* id of the reply being handled */

    cJSON *status;   /* latest status reply */
    cJSON *workers;  /* latest workers reply, updated by heartbeat events */
    cJSON *tickets;  /* latest tickets reply */
    uint64_t workers_at_ms; /* when the workers reply arrived */

    /* ETA: the first done count seen and when, then the latest change. */
    long long done_first;
    uint64_t done_first_ms;
    int have_done_first;

    char read_buf[65536];
} watch_state;

typedef struct watch_write {
    uv_write_t req;
    char data[];
} watch_write;

static void stop_watch(watch_state *w, int exit_code);

static uint64_t now_ms(watch_state *w)
{
    uv_update_time(&w->loop);
    return uv_now(&w->loop);
}

/* ---- requests ---- */

static void on_write(uv_write_t *req, int status)
{
    watch_state *w = req->data;
    free(req);
    if (status < 0 && !w->stopping) {
        fprintf(stderr, "sweepctl: sending to %s failed: %s\n", w->conn.addr.display,
                uv_strerror(status));
        stop_watch(w, CLI_EXIT_CONNECT);
    }
}

/* Sends a request of kind with members spliced in (see cli_conn_call),
 * unless one of that kind is still in flight. */
static void send_request(watch_state *w, enum watch_kind kind, const char *members)
{
    if (w->stopping || w->pending[kind] != 0)
        return;

    long long id = w->next_id++;
    size_t cap = strlen(members ? members : "") + 96;
    watch_write *wr = malloc(sizeof(*wr) + cap);
    if (wr == NULL) {
        fprintf(stderr, "sweepctl: out of memory\n");
        stop_watch(w, CLI_EXIT_PROTOCOL);
        return;
    }
    int n = snprintf(wr->data, cap, "{\"id\":%lld,\"op\":\"%s\"%s%s}\n", id, kind_ops[kind],
                     members && members[0] ? "," : "", members ? members : "");
    uv_buf_t buf = uv_buf_init(wr->data, (unsigned)n);
    wr->req.data = w;
    int err = uv_write(&wr->req, (uv_stream_t *)&w->stream, &buf, 1, on_write);
    if (err < 0) {
        free(wr);
        fprintf(stderr, "sweepctl: sending to %s failed: %s\n", w->conn.addr.display,
                uv_strerror(err));
        stop_watch(w, CLI_EXIT_CONNECT);
        return;
    }
    w->pending[kind] = id;
}

static void send_sweep_request(watch_state *w, enum watch_kind kind)
{
    char members[160];
    if (w->sweep == 0)
        return;
    if (kind == KIND_TICKETS && w->threshold_checked && !w->have_threshold)
        snprintf(members, sizeof(members), "\"sweep\":%lld,\"by\":\"optimizer\","
                 "\"threshold\":%.17g", w->sweep, NO_THRESHOLD);
    else if (kind == KIND_TICKETS)
        snprintf(members, sizeof(members), "\"sweep\":%lld,\"by\":\"optimizer\"", w->sweep);
    else
        snprintf(members, sizeof(members), "\"sweep\":%lld", w->sweep);
    send_request(w, kind, members);
}

/* Requests everything the view shows. */
static void refresh(watch_state *w)
{
    if (w->sweep == 0) {
        send_request(w, KIND_LIST, NULL);
        return;
    }
    send_sweep_request(w, KIND_STATUS);
    send_request(w, KIND_WORKERS, NULL);
    send_sweep_request(w, KIND_TICKETS);
}

static void on_poll_timer(uv_timer_t *t) { refresh(t->data); }
static void on_refresh_timer(uv_timer_t *t) { refresh(t->data); }

static void refresh_soon(watch_state *w)
{
    if (!w->stopping && !uv_is_active((uv_handle_t *)&w->refresh_timer))
        uv_timer_start(&w->refresh_timer, on_refresh_timer, REFRESH_DELAY_MS, 0);
}

/* ---- rendering ---- */

static int sweep_finished(const char *state)
{
    return strcmp(state, "finished") == 0 || strcmp(state, "cancelled") == 0;
}

/* Prints the progress line: bar, done/total, running, failed, ETA. */
static void print_progress(watch_state *w, FILE *out, int bar_width)
{
    const cJSON *counts = cJSON_GetObjectItemCaseSensitive(w->status, "counts");
    long long done = 0, total = 0, running = 0, failed = 0;
    int bounded = cli_get_ll(w->status, "total", &total) && total > 0;
    char bar[128], eta[32] = "-";

    cli_get_ll(w->status, "done", &done);
    cli_get_ll(counts, "running", &running);
    cli_get_ll(counts, "failed", &failed);

    /* ETA from the rate of trials finished since the watch started. */
    uint64_t now = now_ms(w);
    if (!w->have_done_first) {
        w->done_first = done;
        w->done_first_ms = now;
        w->have_done_first = 1;
    } else if (bounded && done > w->done_first && now > w->done_first_ms) {
        double per_trial_s = (double)(now - w->done_first_ms) / 1000.0 /
                             (double)(done - w->done_first);
        cli_fmt_duration(per_trial_s * (double)(total - done), eta, sizeof(eta));
    }
    if (bounded && done >= total)
        snprintf(eta, sizeof(eta), "0s");

    if (bounded) {
        cli_fmt_bar(done, total, bar_width, bar, sizeof(bar));
        fprintf(out, "%s %lld/%lld done (%.1f%%)  running %lld  failed %lld  ETA %s\n", bar,
                done, total, 100.0 * (double)done / (double)total, running, failed, eta);
    } else {
        fprintf(out, "%lld done (unbounded)  running %lld  failed %lld\n", done, running,
                failed);
    }
}

/* Prints the per-optimizer block: best loss and winner fraction so far. */
static void print_tickets(watch_state *w, FILE *out)
{
    static const char *const headers[] = {"optimizer", "finished", "best_loss", "winners",
                                          "fraction"};
    static const unsigned char right[] = {0, 1, 1, 1, 1};
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(w->tickets, "groups");
    const cJSON *g;
    cli_table table;

    if (cJSON_GetArraySize(groups) == 0)
        return;
    if (w->have_threshold) {
        char threshold[64];
        cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(w->tickets, "threshold"), "-",
                       threshold, sizeof(threshold));
        fprintf(out, "per optimizer (winners: final loss below %s)\n", threshold);
    } else {
        fprintf(out, "per optimizer (no ticket_threshold in the spec)\n");
    }
    cli_table_init(&table, 5, headers, right);
    cJSON_ArrayForEach(g, groups) {
        char label[128], finished[32], best[32], winners[32], fraction[32];
        cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(g, "value"), "-", label, sizeof(label));
        cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(g, "finished"), "0", finished,
                       sizeof(finished));
        cli_fmt_loss(cJSON_GetObjectItemCaseSensitive(g, "best_loss"), best, sizeof(best));
        if (w->have_threshold) {
            cli_fmt_scalar(cJSON_GetObjectItemCaseSensitive(g, "winners"), "0", winners,
                           sizeof(winners));
            cli_fmt_percent(g, "fraction", fraction, sizeof(fraction));
        } else {
            snprintf(winners, sizeof(winners), "-");
            snprintf(fraction, sizeof(fraction), "-");
        }
        const char *cells[] = {label, finished, best, winners, fraction};
        cli_table_add(&table, cells);
    }
    cli_table_finish(&table, NULL, out);
}

/* Prints the worker rows, with heartbeat ages advanced to now. */
static void print_workers(watch_state *w, FILE *out)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(w->workers, "workers");
    cJSON *shown = cJSON_Duplicate(list, 1);
    double elapsed_ms = (double)(now_ms(w) - w->workers_at_ms);
    cJSON *worker;
    cli_table table;

    if (shown == NULL || cJSON_GetArraySize(shown) == 0) {
        fprintf(out, "no workers connected\n");
        cJSON_Delete(shown);
        return;
    }
    cJSON_ArrayForEach(worker, shown) {
        double age;
        if (cli_get_double(worker, "heartbeat_age_ms", &age) && isfinite(age))
            cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(worker, "heartbeat_age_ms"),
                                 age + elapsed_ms);
    }
    cli_workers_table(shown, &table);
    cli_table_finish(&table, NULL, out);
    cJSON_Delete(shown);
}

/* Writes the whole view into a malloc'd string. Returns NULL when out of
 * memory. */
static char *render_frame(watch_state *w)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (out == NULL)
        return NULL;

    if (w->status == NULL) {
        if (w->sweep == 0)
            fprintf(out, "waiting for a sweep; submit one with 'sweepctl submit SPEC.json'\n");
        else
            fprintf(out, "sweep %lld: waiting for the daemon\n", w->sweep);
    } else {
        char loss[32];
        long long best_trial;
        fprintf(out, "sweep %lld \"%s\"  %s", w->sweep, cli_get_str(w->status, "name", ""),
                cli_get_str(w->status, "state", "-"));
        cli_fmt_loss(cJSON_GetObjectItemCaseSensitive(w->status, "best_loss"), loss,
                     sizeof(loss));
        fprintf(out, "  best loss %s", loss);
        if (cli_get_ll(w->status, "best_trial", &best_trial))
            fprintf(out, " (trial %lld)", best_trial);
        fprintf(out, "\n");
        /* The rest of the progress line takes about 60 columns. */
        int bar_width = 10;
        if (w->columns > 100)
            bar_width = 40;
        else if (w->columns > 70)
            bar_width = w->columns - 60;
        print_progress(w, out, bar_width);
    }
    fprintf(out, "\n");
    print_workers(w, out);
    if (w->tickets != NULL) {
        fprintf(out, "\n");
        print_tickets(w, out);
    }
    if (w->tty)
        fprintf(out, "\nCtrl-C to exit\n");
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* Writes all of buf to stdout, retrying short writes. */
static void write_stdout(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* stdout is gone; the next exit path reports nothing more */
        buf += n;
        len -= (size_t)n;
    }
}

/* Redraws the frame over the previous one, each line cut to the width. */
static void draw_frame(watch_state *w)
{
    char *frame = render_frame(w);
    char *out = NULL;
    size_t out_size = 0;
    FILE *f;

    if (frame == NULL || (f = open_memstream(&out, &out_size)) == NULL) {
        free(frame);
        return;
    }
    if (w->lines_drawn > 0)
        fprintf(f, "\r\x1b[%dA", w->lines_drawn);
    int lines = 0;
    for (char *line = frame; *line != '\0';) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        size_t max = w->columns > 1 ? (size_t)w->columns - 1 : len;
        fwrite(line, 1, len < max ? len : max, f);
        fputs("\x1b[K\n", f);
        lines++;
        line += len + (nl ? 1 : 0);
    }
    fputs("\x1b[J", f);
    if (fclose(f) == 0)
        write_stdout(out, out_size);
    w->lines_drawn = lines;
    free(out);
    free(frame);
}

/* Prints one status line, for output that is not a terminal. */
static void print_status_line(watch_state *w)
{
    time_t now = time(NULL);
    struct tm tm;
    char stamp[32], loss[32];
    long long done = 0, total = 0, running = 0, failed = 0, nworkers;
    const cJSON *counts = cJSON_GetObjectItemCaseSensitive(w->status, "counts");

    localtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
    if (w->status == NULL) {
        printf("%s waiting for %s\n", stamp, w->sweep ? "the daemon" : "a sweep");
        fflush(stdout);
        return;
    }
    cli_get_ll(w->status, "done", &done);
    cli_get_ll(counts, "running", &running);
    cli_get_ll(counts, "failed", &failed);
    nworkers = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(w->workers, "workers"));
    cli_fmt_loss(cJSON_GetObjectItemCaseSensitive(w->status, "best_loss"), loss, sizeof(loss));
    printf("%s sweep %lld %s: %lld/", stamp, w->sweep, cli_get_str(w->status, "state", "-"),
           done);
    if (cli_get_ll(w->status, "total", &total))
        printf("%lld", total);
    else
        printf("unbounded");
    printf(" done, running %lld, failed %lld, best loss %s, workers %lld\n", running, failed,
           loss, nworkers);
    fflush(stdout);
}

static void on_draw_timer(uv_timer_t *t)
{
    watch_state *w = t->data;
    if (w->tty)
        draw_frame(w);
    else
        print_status_line(w);
}

/* ---- replies and events ---- */

/* Picks the sweep to show from a list reply: the newest one that is not
 * finished or cancelled, else the newest. */
static void choose_sweep(watch_state *w, const cJSON *reply)
{
    const cJSON *s;
    long long newest = 0, newest_live = 0, id;

    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(reply, "sweeps")) {
        if (!cli_get_ll(s, "sweep", &id))
            continue;
        if (id > newest)
            newest = id;
        if (id > newest_live && !sweep_finished(cli_get_str(s, "state", "")))
            newest_live = id;
    }
    w->sweep = newest_live ? newest_live : newest;
    if (w->sweep != 0)
        refresh(w);
}

/* Ends the watch (with --until-done) once the workers and tickets replies
 * are as new as the status reply that showed the sweep ended, so the final
 * frame is complete. The daemon answers one connection's requests in order,
 * so a reply to a later id reflects a state at least as new. */
static void finish_when_current(watch_state *w)
{
    static const enum watch_kind needed[] = {KIND_WORKERS, KIND_TICKETS};
    int current = 1;

    for (size_t i = 0; i < 2; i++) {
        enum watch_kind kind = needed[i];
        if (w->replied[kind] > w->finished_id)
            continue;
        current = 0;
        if (w->pending[kind] == 0) {
            if (kind == KIND_WORKERS)
                send_request(w, kind, NULL);
            else
                send_sweep_request(w, kind);
        }
    }
    if (!current)
        return;
    if (w->tty)
        draw_frame(w);
    else
        print_status_line(w);
    stop_watch(w, CLI_EXIT_OK);
}

static void handle_reply(watch_state *w, enum watch_kind kind, cJSON *msg)
{
    int ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(msg, "ok"));
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(msg, "error");

    w->pending_reply_id = w->pending[kind];
    w->pending[kind] = 0;
    if (!ok && kind == KIND_TICKETS && !w->threshold_checked) {
        /* No ticket_threshold in the spec: ask again for best losses only. */
        w->threshold_checked = 1;
        w->have_threshold = 0;
        send_sweep_request(w, KIND_TICKETS);
        return;
    }
    if (!ok) {
        int rc = cli_report_daemon_error(kind_ops[kind], error);
        stop_watch(w, rc);
        return;
    }

    switch (kind) {
    case KIND_WATCH:
        return;
    case KIND_LIST:
        choose_sweep(w, msg);
        return;
    case KIND_STATUS:
        cJSON_Delete(w->status);
        w->status = cJSON_Duplicate(msg, 1);
        break;
    case KIND_WORKERS:
        cJSON_Delete(w->workers);
        w->workers = cJSON_Duplicate(msg, 1);
        w->workers_at_ms = now_ms(w);
        break;
    case KIND_TICKETS:
        if (!w->threshold_checked) {
            w->threshold_checked = 1;
            w->have_threshold = 1;
        }
        cJSON_Delete(w->tickets);
        w->tickets = cJSON_Duplicate(msg, 1);
        break;
    case KIND_COUNT:
        return;
    }

    w->replied[kind] = w->pending_reply_id;

    if (kind == KIND_STATUS && w->until_done && w->finished_id == 0 && w->status != NULL &&
        sweep_finished(cli_get_str(w->status, "state", "")))
        w->finished_id = w->replied[KIND_STATUS];
    if (w->finished_id != 0)
        finish_when_current(w);
}

/* Updates the row of the worker named in a heartbeat event. */
static void apply_heartbeat(watch_state *w, const cJSON *event)
{
    const char *name = cli_get_str(event, "worker", NULL);
    cJSON *worker;

    if (name == NULL || w->workers == NULL)
        return;
    cJSON_ArrayForEach(worker, cJSON_GetObjectItemCaseSensitive(w->workers, "workers")) {
        if (strcmp(cli_get_str(worker, "worker", ""), name) != 0)
            continue;
        static const char *const fields[] = {"trial", "step", "loss", "tokens_per_s"};
        for (size_t i = 0; i < 4; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(event, fields[i]);
            cJSON *copy = v ? cJSON_Duplicate(v, 1) : NULL;
            if (copy == NULL)
                continue;
            if (cJSON_GetObjectItemCaseSensitive(worker, fields[i]) != NULL)
                cJSON_ReplaceItemInObjectCaseSensitive(worker, fields[i], copy);
            else
                cJSON_AddItemToObject(worker, fields[i], copy);
        }
        /* Rendering adds the time since the workers reply to this age, so
         * this value makes the shown age start from 0 now. */
        double age = -(double)(now_ms(w) - w->workers_at_ms);
        cJSON_DeleteItemFromObjectCaseSensitive(worker, "heartbeat_age_ms");
        cJSON_AddNumberToObject(worker, "heartbeat_age_ms", age);
        return;
    }
    refresh_soon(w); /* a worker the view has not seen yet */
}

static void handle_event(watch_state *w, const cJSON *msg)
{
    const char *event = cli_get_str(msg, "event", "");
    long long sweep;

    if (cli_get_ll(msg, "sweep", &sweep) && w->sweep != 0 && sweep != w->sweep)
        return;
    if (strcmp(event, "heartbeat") == 0) {
        apply_heartbeat(w, msg);
    } else if (strcmp(event, "trial") == 0 || strcmp(event, "worker") == 0 ||
               strcmp(event, "sweep") == 0) {
        refresh_soon(w);
    } else if (strcmp(event, "shutdown") == 0) {
        fprintf(stderr, "sweepctl: the daemon at %s is shutting down\n", w->conn.addr.display);
        stop_watch(w, CLI_EXIT_CONNECT);
    }
    /* metrics and checkpoint events change nothing the view shows until the trial ends. */
}

static void handle_line(watch_state *w, const char *line, size_t len)
{
    cJSON *msg = cJSON_ParseWithLength(line, len);
    if (msg == NULL || !cJSON_IsObject(msg)) {
        fprintf(stderr, "sweepctl: malformed line from %s\n", w->conn.addr.display);
        cJSON_Delete(msg);
        stop_watch(w, CLI_EXIT_PROTOCOL);
        return;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    if (cJSON_IsNumber(id)) {
        for (int k = 0; k < KIND_COUNT; k++)
            if (w->pending[k] != 0 && (long long)id->valuedouble == w->pending[k]) {
                handle_reply(w, (enum watch_kind)k, msg);
                break;
            }
    } else if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(msg, "event"))) {
        handle_event(w, msg);
    }
    cJSON_Delete(msg);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    watch_state *w = handle->data;
    *buf = uv_buf_init(w->read_buf, sizeof(w->read_buf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    watch_state *w = stream->data;

    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF)
            fprintf(stderr, "sweepctl: the daemon at %s closed the connection\n",
                    w->conn.addr.display);
        else
            fprintf(stderr, "sweepctl: reading from %s failed: %s\n", w->conn.addr.display,
                    uv_strerror((int)nread));
        stop_watch(w, CLI_EXIT_CONNECT);
        return;
    }
    if (linebuf_append(&w->conn.lb, buf->base, (size_t)nread) != 0) {
        fprintf(stderr, "sweepctl: a line from %s exceeds %zu bytes\n", w->conn.addr.display,
                CLI_MAX_REPLY_BYTES);
        stop_watch(w, CLI_EXIT_PROTOCOL);
        return;
    }
    char *line;
    size_t len;
    int got;
    while (!w->stopping && (got = linebuf_next(&w->conn.lb, &line, &len)) != 0) {
        if (got < 0) {
            stop_watch(w, CLI_EXIT_PROTOCOL);
            return;
        }
        handle_line(w, line, len);
    }
}

/* ---- signals and shutdown ---- */

static void read_columns(watch_state *w)
{
    struct winsize ws;
    w->columns = 80;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        w->columns = ws.ws_col;
}

static void on_signal(uv_signal_t *handle, int signum)
{
    watch_state *w = handle->data;
    if (signum == SIGWINCH) {
        read_columns(w);
        if (w->tty) {
            /* Wrapped lines of the old frame cannot be counted; start over
             * below them. */
            write_stdout("\x1b[H\x1b[2J", 7);
            w->lines_drawn = 0;
            draw_frame(w);
        }
        return;
    }
    stop_watch(w, CLI_EXIT_OK);
}

static void on_close(uv_handle_t *handle)
{
    (void)handle; /* every handle is embedded in watch_state, freed after the loop */
}

/* Closes a handle that was initialised (a zeroed one has no loop). */
static void close_handle(uv_handle_t *handle)
{
    if (handle->loop != NULL && !uv_is_closing(handle))
        uv_close(handle, on_close);
}

static void stop_watch(watch_state *w, int exit_code)
{
    if (w->stopping)
        return;
    w->stopping = 1;
    w->exit_code = exit_code;
    if (w->tty)
        write_stdout("\x1b[?25h", 6); /* show the cursor again */

    close_handle((uv_handle_t *)&w->stream);
    close_handle((uv_handle_t *)&w->poll_timer);
    close_handle((uv_handle_t *)&w->refresh_timer);
    close_handle((uv_handle_t *)&w->draw_timer);
    close_handle((uv_handle_t *)&w->sigint);
    close_handle((uv_handle_t *)&w->sigterm);
    close_handle((uv_handle_t *)&w->sigwinch);
}

/* ---- setup ---- */

/* Initialises the loop's handles. Returns 0 or a libuv error. */
static int start_handles(watch_state *w)
{
    int err;
    int fd = w->conn.fd;

    if (w->conn.addr.is_tcp) {
        if ((err = uv_tcp_init(&w->loop, &w->stream.tcp)) < 0)
            return err;
        err = uv_tcp_open(&w->stream.tcp, fd);
    } else {
        if ((err = uv_pipe_init(&w->loop, &w->stream.pipe, 0)) < 0)
            return err;
        err = uv_pipe_open(&w->stream.pipe, fd);
    }
    if (err < 0)
        return err;
    w->conn.fd = -1; /* closing the stream closes the socket */
    w->stream.pipe.data = w;

    uv_timer_t *timers[] = {&w->poll_timer, &w->refresh_timer, &w->draw_timer};
    for (int i = 0; i < 3; i++) {
        if ((err = uv_timer_init(&w->loop, timers[i])) < 0)
            return err;
        timers[i]->data = w;
    }
    uv_signal_t *signals[] = {&w->sigint, &w->sigterm, &w->sigwinch};
    int signums[] = {SIGINT, SIGTERM, SIGWINCH};
    for (int i = 0; i < 3; i++) {
        if ((err = uv_signal_init(&w->loop, signals[i])) < 0)
            return err;
        signals[i]->data = w;
        if ((err = uv_signal_start(signals[i], on_signal, signums[i])) < 0)
            return err;
    }

    if ((err = uv_read_start((uv_stream_t *)&w->stream, on_alloc, on_read)) < 0)
        return err;
    uint64_t poll_ms = w->tty ? POLL_INTERVAL_MS : (uint64_t)w->interval_s * 1000;
    if (poll_ms > POLL_INTERVAL_MS)
        poll_ms = POLL_INTERVAL_MS;
    if ((err = uv_timer_start(&w->poll_timer, on_poll_timer, poll_ms, poll_ms)) < 0)
        return err;
    uint64_t draw_ms = w->tty ? REDRAW_INTERVAL_MS : (uint64_t)w->interval_s * 1000;
    return uv_timer_start(&w->draw_timer, on_draw_timer, draw_ms, draw_ms);
}

int cli_cmd_watch(cli_ctx *ctx, const cli_command *cmd, int argc, char **argv)
{
    const char *interval_text = NULL;
    int until_done = 0;
    const cli_opt opts[] = {
        {"until-done", NULL, &until_done, NULL, NULL, 0},
        {"interval", &interval_text, NULL, NULL, NULL, 0},
        {NULL, NULL, NULL, NULL, NULL, 0},
    };
    const char *pos[1];
    int npos;
    long long interval = 5;

    int rc = cli_parse_args(ctx, cmd, argc, argv, opts, pos, 0, 1, &npos);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    if (ctx->json)
        return cli_usage_error(cmd, "--json does not apply to watch; use 'sweepctl status "
                                    "--json' for machine-readable progress");
    if (interval_text != NULL &&
        (rc = cli_parse_count(cmd, "--interval", interval_text, &interval)) != 0)
        return rc;
    if (interval < 1 || interval > 3600)
        return cli_usage_error(cmd, "--interval %lld is out of range: expected 1 to 3600 "
                                    "seconds", interval);

    watch_state *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        fprintf(stderr, "sweepctl: out of memory\n");
        return CLI_EXIT_PROTOCOL;
    }
    w->until_done = until_done;
    w->interval_s = (int)interval;
    w->next_id = 1;
    w->tty = isatty(STDOUT_FILENO);
    read_columns(w);
    if (npos == 1 && (rc = cli_parse_sweep(cmd, pos[0], &w->sweep)) != 0) {
        free(w);
        return rc;
    }

    if ((rc = cli_conn_open(ctx, &w->conn)) != 0) {
        free(w);
        return rc;
    }
    w->next_id = w->conn.next_id;
    int err = uv_loop_init(&w->loop);
    if (err < 0) {
        fprintf(stderr, "sweepctl: cannot start the event loop: %s\n", uv_strerror(err));
        cli_conn_close(&w->conn);
        free(w);
        return CLI_EXIT_PROTOCOL;
    }
    w->loop.data = w;

    if ((err = start_handles(w)) < 0) {
        fprintf(stderr, "sweepctl: cannot start watching: %s\n", uv_strerror(err));
        stop_watch(w, CLI_EXIT_PROTOCOL);
    } else {
        char members[64] = "";
        if (w->sweep != 0)
            snprintf(members, sizeof(members), "\"sweep\":%lld", w->sweep);
        send_request(w, KIND_WATCH, members);
        refresh(w);
        if (w->tty)
            write_stdout("\x1b[?25l", 6); /* hide the cursor while redrawing */
    }

    uv_run(&w->loop, UV_RUN_DEFAULT);
    rc = w->exit_code;
    if (uv_loop_close(&w->loop) != 0)
        fprintf(stderr, "sweepctl: the event loop still had open handles at exit\n");
    cli_conn_close(&w->conn);
    cJSON_Delete(w->status);
    cJSON_Delete(w->workers);
    cJSON_Delete(w->tickets);
    free(w);
    return rc;
}
