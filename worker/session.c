/* The worker session; see session.h. One function, pump(), decides what to
 * send next from the current state, and every event (reply, pushed event,
 * trial wake-up, timer, signal, reconnect) ends by calling it:
 *
 *   not connected or no hello yet  -> nothing (conn reconnects, hello on open)
 *   trial held, lease not accepted -> heartbeat with the lease (re-presents it)
 *   trial held                     -> metrics, checkpoint, then the final report
 *   no trial, leaving              -> bye, then exit
 *   no trial                       -> lease with wait: true (held by the daemon)
 */
#include "session.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "paths.h"
#include "proto.h"

#define METRICS_BATCH_MAX 256

static void pump(session *s);
static void stop_session(session *s, int exit_code);

/* ---- sending ---- */

/* Sends msg (consumed) as a request of kind; returns 0 or -1. */
static int send_request(session *s, cJSON *msg, enum req_kind kind, int count)
{
    int slot = -1;
    for (int i = 0; i < SESSION_MAX_INFLIGHT; i++) {
        if (s->inflight[i].id == 0) {
            slot = i;
            break;
        }
    }
    if (msg == NULL || slot < 0) {
        log_error("session", "failed to build request (out of memory or %d requests in flight)",
                  SESSION_MAX_INFLIGHT);
        cJSON_Delete(msg);
        return -1;
    }
    long long id = ++s->next_request_id;
    if (cJSON_AddNumberToObject(msg, "id", (double)id) == NULL) {
        cJSON_Delete(msg);
        return -1;
    }
    char *text = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    if (text == NULL)
        return -1;
    int rc = conn_send(&s->conn, text, strlen(text));
    log_debug("session", "sent %s", text);
    cJSON_free(text);
    if (rc != 0)
        return -1;
    s->inflight[slot].id = id;
    s->inflight[slot].kind = kind;
    s->inflight[slot].count = count;
    return 0;
}

static cJSON *new_request(const char *op)
{
    cJSON *msg = cJSON_CreateObject();
    if (msg != NULL && cJSON_AddStringToObject(msg, "op", op) == NULL) {
        cJSON_Delete(msg);
        return NULL;
    }
    return msg;
}

/* Adds the trial, attempt and lease fields every trial message carries. */
static cJSON *add_lease_fields(cJSON *msg, const trial *t)
{
    if (msg == NULL)
        return NULL;
    if (cJSON_AddNumberToObject(msg, "trial", (double)t->id) == NULL ||
        cJSON_AddNumberToObject(msg, "attempt", (double)t->attempt) == NULL ||
        cJSON_AddStringToObject(msg, "lease", t->lease) == NULL) {
        cJSON_Delete(msg);
        return NULL;
    }
    return msg;
}

/* Adds a loss: a number when finite, else "nan", "inf" or "-inf". */
static int add_loss(cJSON *obj, const char *name, double value)
{
    const char *text = trial_nonfinite_text(value);
    if (text != NULL)
        return cJSON_AddStringToObject(obj, name, text) ? 0 : -1;
    return cJSON_AddNumberToObject(obj, name, value) ? 0 : -1;
}

static void send_hello(session *s)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';

    cJSON *msg = new_request("hello");
    cJSON *caps = cJSON_CreateObject();
    int ok = msg != NULL && caps != NULL &&
             cJSON_AddNumberToObject(msg, "version", PROTO_VERSION) &&
             cJSON_AddStringToObject(msg, "role", "worker") &&
             cJSON_AddStringToObject(msg, "name", s->opt.name) &&
             cJSON_AddStringToObject(msg, "host", host) &&
             cJSON_AddNumberToObject(msg, "pid", (double)getpid()) &&
             cJSON_AddNumberToObject(caps, "threads", s->opt.threads) &&
             cJSON_AddStringToObject(caps, "checkpoint", s->opt.checkpoint_url ? "url" : "dir");
    if (ok && s->opt.token[0] != '\0')
        ok = cJSON_AddStringToObject(msg, "token", s->opt.token) != NULL;

    /* After a reconnect, re-present the held lease so the daemon keeps the
     * trial with this worker or rejects the lease as stale. */
    if (ok && s->has_trial && !s->dropped) {
        cJSON *leases = cJSON_AddArrayToObject(msg, "leases");
        cJSON *held = cJSON_CreateObject();
        ok = leases != NULL && held != NULL && cJSON_AddItemToArray(leases, held);
        if (!ok)
            cJSON_Delete(held);
        else
            ok = cJSON_AddNumberToObject(held, "trial", (double)s->cur.id) &&
                 cJSON_AddNumberToObject(held, "attempt", (double)s->cur.attempt) &&
                 cJSON_AddStringToObject(held, "lease", s->cur.lease);
    }
    if (ok)
        ok = cJSON_AddItemToObject(msg, "capabilities", caps);
    if (!ok) {
        cJSON_Delete(caps);
        cJSON_Delete(msg);
        log_error("session", "out of memory building hello");
        conn_drop(&s->conn, "out of memory");
        return;
    }
    if (send_request(s, msg, REQ_HELLO, 0) != 0)
        conn_drop(&s->conn, "failed to send hello");
}

static void send_heartbeat(session *s, enum req_kind kind)
{
    cJSON *msg = new_request("heartbeat");
    /* Once the final report is sent, the daemon reads it before this
     * heartbeat and ends the lease, so a heartbeat carrying the lease would
     * be rejected as stale: send a plain keep-alive instead. */
    if (s->has_trial && !s->dropped && !s->final_sent) {
        msg = add_lease_fields(msg, &s->cur);
        if (msg != NULL && s->have_progress) {
            if (cJSON_AddNumberToObject(msg, "step", (double)s->progress.step) == NULL ||
                add_loss(msg, "loss", s->progress.train_loss) != 0 ||
                cJSON_AddNumberToObject(msg, "tokens_per_s", s->progress.tokens_per_s) == NULL) {
                cJSON_Delete(msg);
                msg = NULL;
            }
        }
    }
    if (send_request(s, msg, kind, 0) == 0 && kind == REQ_REATTACH)
        s->reattach_sent = 1;
}

static void send_metrics(session *s)
{
    size_t count = s->outbox_len < METRICS_BATCH_MAX ? s->outbox_len : METRICS_BATCH_MAX;

    /* A batch stops at the checkpoint chosen for a report, so that report
     * can go between its last point and the next one (see pump). */
    if (s->report_pending && s->outbox[0].step <= s->report_step) {
        size_t before = 0;
        while (before < count && s->outbox[before].step <= s->report_step)
            before++;
        count = before;
    }
    cJSON *msg = add_lease_fields(new_request("metrics"), &s->cur);
    cJSON *points = msg ? cJSON_AddArrayToObject(msg, "points") : NULL;
    for (size_t i = 0; points != NULL && i < count; i++) {
        cJSON *p = cJSON_CreateObject();
        if (p == NULL || !cJSON_AddItemToArray(points, p) ||
            cJSON_AddNumberToObject(p, "step", (double)s->outbox[i].step) == NULL ||
            add_loss(p, "train_loss", s->outbox[i].train_loss) != 0 ||
            add_loss(p, "val_loss", s->outbox[i].val_loss) != 0)
            points = NULL;
    }
    if (points == NULL) {
        cJSON_Delete(msg);
        log_error("session", "out of memory building metrics");
        return;
    }
    if (send_request(s, msg, REQ_METRICS, (int)count) == 0)
        s->metrics_sent = 1;
}

/* Sets a pin of the running trial. Once its thread is done nothing is
 * deleted any more, and its mutex is gone. */
static void set_pin(session *s, int slot, long step)
{
    if (!s->trial_thread_done)
        trial_pin(&s->cur, slot, step);
}

/* Chooses the newest checkpoint the loop has taken for the next report and
 * pins it. The loop takes it together with the metric points before it (the
 * thread queues point N before checkpoint N), so the batch that ends at its
 * step contains them all. */
static void choose_report(session *s)
{
    if (s->checkpoint_location[0] == '\0') {
        s->checkpoint_unsent = 0;
        return;
    }
    /* Two newer ones exist, so this one may be gone. The wake-up that
     * brings them calls this again. */
    if (!s->trial_thread_done && trial_pin_kept(&s->cur, TRIAL_PIN_CHOSEN, s->checkpoint_step) != 0)
        return;
    s->checkpoint_unsent = 0;
    memcpy(s->report_location, s->checkpoint_location, sizeof(s->report_location));
    s->report_step = s->checkpoint_step;
    s->report_pending = 1;
}

static void send_checkpoint(session *s)
{
    cJSON *msg = add_lease_fields(new_request("checkpoint"), &s->cur);
    if (msg != NULL && (cJSON_AddStringToObject(msg, "location", s->report_location) == NULL ||
                        cJSON_AddNumberToObject(msg, "step", (double)s->report_step) == NULL)) {
        cJSON_Delete(msg);
        msg = NULL;
    }
    s->report_pending = 0;
    if (send_request(s, msg, REQ_CHECKPOINT, 0) != 0) {
        s->checkpoint_unsent = 1; /* choose again later */
        return;
    }
    s->checkpoint_sent = 1;
    s->report_sent_step = s->report_step;
    set_pin(s, TRIAL_PIN_SENT, s->report_step);
    set_pin(s, TRIAL_PIN_CHOSEN, -1);
}

/* Builds complete / diverged / failed / preempted from the trial's outcome. */
static cJSON *build_final(session *s)
{
    const trial_report *r = &s->final;
    cJSON *msg = NULL;
    int ok = 1;
    switch (r->outcome) {
    case TRIAL_COMPLETE:
        msg = add_lease_fields(new_request("complete"), &s->cur);
        ok = msg && add_loss(msg, "final_loss", r->result.final_loss) == 0 &&
             add_loss(msg, "best_loss", r->result.best_loss) == 0 &&
             cJSON_AddNumberToObject(msg, "steps", (double)r->result.steps) &&
             cJSON_AddNumberToObject(msg, "seconds", r->result.seconds);
        break;
    case TRIAL_DIVERGED:
        msg = add_lease_fields(new_request("diverged"), &s->cur);
        ok = msg && cJSON_AddNumberToObject(msg, "step", (double)r->result.diverged_step) &&
             add_loss(msg, "loss", r->diverged_loss) == 0;
        break;
    case TRIAL_FAILED:
        msg = add_lease_fields(new_request("failed"), &s->cur);
        ok = msg && cJSON_AddStringToObject(msg, "error", r->error);
        break;
    case TRIAL_STOPPED:
    case TRIAL_RUNNING:
        /* The newest stored checkpoint; a fresh trial stopped before its
         * first checkpoint reports none and starts over elsewhere. */
        msg = add_lease_fields(new_request("preempted"), &s->cur);
        if (msg && s->checkpoint_location[0] != '\0')
            ok = cJSON_AddStringToObject(msg, "location", s->checkpoint_location) &&
                 cJSON_AddNumberToObject(msg, "step", (double)s->checkpoint_step);
        break;
    }
    if (!ok) {
        cJSON_Delete(msg);
        return NULL;
    }
    return msg;
}

static const char *final_op_name(enum trial_outcome outcome)
{
    switch (outcome) {
    case TRIAL_COMPLETE: return "complete";
    case TRIAL_DIVERGED: return "diverged";
    case TRIAL_FAILED: return "failed";
    default: return "preempted";
    }
}

/* ---- the held trial ---- */

/* A finished trial's checkpoint history, trimmed on libuv's thread pool
 * because deleting from a URL store blocks on HTTP. */
typedef struct trim_work {
    uv_work_t req;
    const ckpt_store *store;
    ckpt_history history;
    long long sweep, trial;
} trim_work;

static void trim_run(uv_work_t *req)
{
    trim_work *w = req->data;
    ckpt_store_trim(w->store, &w->history);
}

static void trim_done(uv_work_t *req, int status)
{
    trim_work *w = req->data;
    if (status == 0)
        log_info("ckpt", "sweep=%lld trial=%lld older checkpoints deleted; the newest %d kept",
                 w->sweep, w->trial, CKPT_KEEP);
    free(w);
}

/* Deletes the checkpoints the trial kept pinned beyond the newest
 * CKPT_KEEP, once its final report is acknowledged or was sent before the
 * daemon called the lease stale. */
static void trim_checkpoints(session *s)
{
    if (s->cur.history.count == 0)
        return;
    trim_work *w = malloc(sizeof(*w));
    if (w == NULL) {
        log_warn("ckpt", "sweep=%lld trial=%lld out of memory; older checkpoints left in place",
                 s->cur.sweep, s->cur.id);
        return;
    }
    w->req.data = w;
    w->store = s->cur.store;
    w->history = s->cur.history;
    w->sweep = s->cur.sweep;
    w->trial = s->cur.id;
    int rc = uv_queue_work(s->loop, &w->req, trim_run, trim_done);
    if (rc != 0) {
        log_warn("ckpt", "sweep=%lld trial=%lld uv_queue_work: %s; older checkpoints left in place",
                 s->cur.sweep, s->cur.id, uv_strerror(rc));
        free(w);
    }
}

static void on_wake_closed(uv_handle_t *handle)
{
    session *s = handle->data;
    s->wake_closing = 0;
    if (!s->stopped)
        pump(s);
}

/* Resets every per-trial field of the session. */
static void reset_trial_fields(session *s)
{
    s->has_trial = 0;
    s->dropped = 0;
    s->lease_presented = 0;
    s->reattach_sent = 0;
    s->trial_thread_done = 0;
    s->outbox_len = 0;
    s->checkpoint_unsent = 0;
    s->checkpoint_location[0] = '\0';
    s->checkpoint_step = 0;
    s->report_pending = 0;
    s->report_location[0] = '\0';
    s->report_step = -1;
    s->report_sent_step = -1;
    s->report_lost_step = -1;
    s->final_reported = 0;
    s->have_progress = 0;
    s->final_sent = 0;
    memset(&s->final, 0, sizeof(s->final));
}

/* Forgets the held trial once its thread is done and its report handled. */
static void clear_trial(session *s)
{
    reset_trial_fields(s);
    if (s->opt.max_trials > 0 && s->trials_done >= s->opt.max_trials && !s->leaving) {
        log_info("session", "finished %ld trials (--max-trials); leaving", s->trials_done);
        s->leaving = 1;
    }
}

/* Stops the trial and discards everything it would still report: the daemon
 * gave the trial to someone else or cancelled it. */
static void drop_trial(session *s, const char *why)
{
    if (!s->has_trial || s->dropped)
        return;
    log_warn("session", "sweep=%lld trial=%lld attempt=%lld dropped: %s", s->cur.sweep, s->cur.id,
             s->cur.attempt, why);
    s->dropped = 1;
    atomic_store(&s->cur.discard, 1);
    atomic_store(&s->cur.stop, 1);

    /* A final report went out after every checkpoint report was
     * acknowledged, so the next attempt resumes from the newest one. */
    if (s->final_reported)
        trim_checkpoints(s);
    if (s->trial_thread_done)
        clear_trial(s);
}

static void on_trial_wake(uv_async_t *handle)
{
    session *s = handle->data;
    trial_report r;
    trial_take(&s->cur, &r);

    if (r.have_progress) {
        s->progress = r.progress;
        s->have_progress = 1;
    }
    if (r.n_points > 0 && !s->dropped) {
        if (s->outbox_len + r.n_points > s->outbox_cap) {
            size_t cap = (s->outbox_len + r.n_points) * 2;
            metric_point *grown = realloc(s->outbox, cap * sizeof(*grown));
            if (grown == NULL) {
                log_error("session", "sweep=%lld trial=%lld out of memory; %zu metric points "
                          "dropped", s->cur.sweep, s->cur.id, r.n_points);
                r.n_points = 0;
            } else {
                s->outbox = grown;
                s->outbox_cap = cap;
            }
        }
        memcpy(s->outbox + s->outbox_len, r.points, r.n_points * sizeof(*r.points));
        s->outbox_len += r.n_points;
    }
    free(r.points);
    r.points = NULL;
    if (r.new_checkpoint) {
        memcpy(s->checkpoint_location, r.checkpoint_location, sizeof(s->checkpoint_location));
        s->checkpoint_step = r.checkpoint_step;
        /* A checkpoint already chosen for a report is not chosen again. */
        if (r.checkpoint_step > s->report_step)
            s->checkpoint_unsent = 1;
    }

    if (r.outcome != TRIAL_RUNNING && !s->trial_thread_done) {
        s->final = r;
        s->trial_thread_done = 1;
        s->wake_closing = 1;
        trial_finish(&s->cur, on_wake_closed);
        if (s->dropped)
            clear_trial(s);
        else
            log_info("session", "sweep=%lld trial=%lld attempt=%lld finished: %s at step %ld",
                     s->cur.sweep, s->cur.id, s->cur.attempt, final_op_name(r.outcome),
                     r.outcome == TRIAL_STOPPED ? s->checkpoint_step : r.result.steps);
    }
    pump(s);
}

static int get_int(const cJSON *obj, const char *name, long long *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsNumber(item))
        return -1;
    *out = (long long)item->valuedouble;
    return 0;
}

/* Takes a leased trial from the lease reply and starts its thread. A trial
 * whose params are invalid is reported failed at once; one that arrives while
 * leaving is handed back with preempted. */
static void start_trial(session *s, const cJSON *obj)
{
    trial *t = &s->cur;
    memset(t, 0, sizeof(*t));
    const cJSON *lease = cJSON_GetObjectItemCaseSensitive(obj, "lease");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(obj, "params");
    if (get_int(obj, "trial", &t->id) != 0 || get_int(obj, "sweep", &t->sweep) != 0 ||
        get_int(obj, "attempt", &t->attempt) != 0 || !cJSON_IsString(lease) ||
        strlen(lease->valuestring) >= sizeof(t->lease) || !cJSON_IsObject(params)) {
        log_error("session", "lease reply lacks trial, sweep, attempt, lease or params; "
                  "reconnecting");
        conn_drop(&s->conn, "malformed lease reply");
        return;
    }
    memcpy(t->lease, lease->valuestring, strlen(lease->valuestring) + 1);

    const cJSON *ckpt = cJSON_GetObjectItemCaseSensitive(obj, "checkpoint");
    if (cJSON_IsObject(ckpt)) {
        const cJSON *loc = cJSON_GetObjectItemCaseSensitive(ckpt, "location");
        long long step = 0;
        get_int(ckpt, "step", &step);
        if (cJSON_IsString(loc) && strlen(loc->valuestring) < sizeof(t->resume_location)) {
            memcpy(t->resume_location, loc->valuestring, strlen(loc->valuestring) + 1);
            t->resume_step = (long)step;
        }
    }

    reset_trial_fields(s);
    s->has_trial = 1;
    s->lease_presented = 1;
    memcpy(s->checkpoint_location, t->resume_location, sizeof(s->checkpoint_location));
    s->checkpoint_step = t->resume_step;
    log_info("lease", "sweep=%lld trial=%lld attempt=%lld lease=%s leased%s%s", t->sweep, t->id,
             t->attempt, t->lease, t->resume_location[0] ? ", resuming from " : "",
             t->resume_location);

    /* Handed back untouched when the worker is already leaving. */
    if (s->leaving) {
        s->final.outcome = TRIAL_STOPPED;
        s->trial_thread_done = 1;
        return;
    }

    char err[TRIAL_ERROR_MAX - 32];
    train_config_defaults(&t->cfg);
    if (train_config_set_json(&t->cfg, params, err, sizeof(err)) != 0 ||
        train_config_finalize(&t->cfg, err, sizeof(err)) != 0) {
        log_error("trial", "sweep=%lld trial=%lld attempt=%lld invalid params: %s", t->sweep, t->id,
                  t->attempt, err);
        s->final.outcome = TRIAL_FAILED;
        snprintf(s->final.error, sizeof(s->final.error), "params: %s", err);
        s->trial_thread_done = 1;
        return;
    }

    t->store = &s->store;
    t->cache_dir = s->opt.cache_dir;
    http_limits_default(&t->limits);
    t->limits.low_speed_time_s = s->opt.http_stall_timeout_s;
    if (s->opt.max_dataset_bytes > 0)
        t->limits.max_bytes = s->opt.max_dataset_bytes;
    t->threads = s->opt.threads;
    t->checkpoint_every = s->opt.checkpoint_every;
    atomic_init(&t->stop, 0);
    atomic_init(&t->discard, 0);
    int rc = trial_start(t, s->loop, on_trial_wake, s);
    if (rc != 0) {
        log_error("trial", "sweep=%lld trial=%lld attempt=%lld failed to start the trial thread: %s",
                  t->sweep, t->id, t->attempt, uv_strerror(rc));
        s->final.outcome = TRIAL_FAILED;
        snprintf(s->final.error, sizeof(s->final.error), "worker: failed to start thread: %s",
                 uv_strerror(rc));
        s->trial_thread_done = 1;
    }
}

/* ---- replies ---- */

static const char *error_code(const cJSON *reply, char *message, size_t message_size)
{
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(reply, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(error, "message");
    snprintf(message, message_size, "%s", cJSON_IsString(text) ? text->valuestring : "");
    return cJSON_IsString(code) ? code->valuestring : "unknown";
}

/* Errors that a retry cannot fix end the held trial; others are retried at
 * the next heartbeat tick. Returns 1 when the trial was dropped. */
static int handle_trial_error(session *s, const char *op, const char *code, const char *message)
{
    log_error("session", "sweep=%lld trial=%lld attempt=%lld %s rejected: %s: %s", s->cur.sweep,
              s->cur.id, s->cur.attempt, op, code, message);
    if (strcmp(code, "stale_lease") == 0 || strcmp(code, "not_found") == 0 ||
        strcmp(code, "invalid_state") == 0) {
        drop_trial(s, code);
        return 1;
    }
    if (strcmp(code, "not_worker") == 0 || strcmp(code, "unauthorized") == 0) {
        conn_drop(&s->conn, code);
        return 0;
    }
    s->hold_until_tick = 1;
    return 0;
}

static void on_hello_reply(session *s, const cJSON *reply)
{
    char message[512];
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
        const char *code = error_code(reply, message, sizeof(message));
        int unauthorized = strcmp(code, "unauthorized") == 0;
        log_error("session", "hello rejected: %s: %s%s", code, message,
                  unauthorized ? " (check --token-file)" : "");

        /* Retrying with the same token cannot succeed, so a worker without a
         * trial leaves. One that has a trial keeps retrying, because its
         * results are lost otherwise and a restarted daemon may accept the
         * old token again. */
        if (unauthorized && !s->has_trial) {
            log_error("session", "exiting: the daemon rejects this worker's token; restart it "
                      "with --token-file naming the file given to 'sweepd --token-file'");
            stop_session(s, 1);
            return;
        }
        conn_drop(&s->conn, "hello rejected");
        return;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(reply, "worker_id");
    if (cJSON_IsString(id) && strlen(id->valuestring) < sizeof(s->worker_id)) {
        memcpy(s->worker_id, id->valuestring, strlen(id->valuestring) + 1);
        log_set_prefix(s->worker_id);
    }
    long long timeout_ms = 0;
    if (get_int(reply, "heartbeat_timeout_ms", &timeout_ms) != 0 || timeout_ms < 30)
        timeout_ms = 30000;
    s->heartbeat_interval_ms = (unsigned)(timeout_ms / 3);

    /* The daemon's checkpoint directory applies when no option chose one. */
    if (!s->store_ready) {
        char err[512], dir[4096];
        const cJSON *hint = cJSON_GetObjectItemCaseSensitive(reply, "checkpoint_dir");
        if (cJSON_IsString(hint) && hint->valuestring[0] == '/')
            snprintf(dir, sizeof(dir), "%s", hint->valuestring);
        else if (paths_state_dir("/checkpoints", dir, sizeof(dir)) != 0)
            snprintf(dir, sizeof(dir), "/tmp/sweepd-checkpoints-%d", (int)getuid());
        if (ckpt_store_init(&s->store, dir, NULL, s->opt.cache_dir, err, sizeof(err)) != 0) {
            log_error("session", "%s", err);
            stop_session(s, 1);
            return;
        }
        s->store.limits.low_speed_time_s = s->opt.http_stall_timeout_s;
        s->store_ready = 1;
        log_info("session", "checkpoints go to %s", dir);
    }

    /* The daemon's verdict on the re-presented lease. Without a "leases"
     * field, pump() re-presents it with a heartbeat instead. */
    const cJSON *leases = cJSON_GetObjectItemCaseSensitive(reply, "leases");
    const cJSON *item;
    cJSON_ArrayForEach(item, leases)
    {
        long long trial_id = -1;
        if (!s->has_trial || s->dropped || get_int(item, "trial", &trial_id) != 0 ||
            trial_id != s->cur.id)
            continue;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "ok"))) {
            s->lease_presented = 1;
            log_info("lease", "sweep=%lld trial=%lld attempt=%lld lease accepted again after "
                     "reconnecting", s->cur.sweep, s->cur.id, s->cur.attempt);
        } else {
            const cJSON *code = cJSON_GetObjectItemCaseSensitive(item, "error");
            drop_trial(s, cJSON_IsString(code) ? code->valuestring : "lease rejected");
        }
    }

    s->hello_done = 1;
    conn_reset_backoff(&s->conn);
    log_info("session", "connected as %s (heartbeat every %u ms)", s->worker_id,
             s->heartbeat_interval_ms);
}

static void on_lease_reply(session *s, const cJSON *reply)
{
    char message[512];
    s->lease_waiting = 0;
    uv_timer_stop(&s->idle_timer);
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
        const char *code = error_code(reply, message, sizeof(message));
        if (strcmp(code, "leaving") != 0) {
            log_warn("session", "lease rejected: %s: %s; retrying at the next heartbeat", code,
                     message);
            s->hold_until_tick = 1;
        }
        return;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(reply, "trial");
    if (cJSON_IsObject(t))
        start_trial(s, t);
}

static void on_trial_reply(session *s, enum req_kind kind, int count, const cJSON *reply)
{
    char message[512];
    int ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"));
    const char *code = ok ? NULL : error_code(reply, message, sizeof(message));
    if (kind == REQ_REATTACH)
        s->reattach_sent = 0;
    if (kind == REQ_METRICS)
        s->metrics_sent = 0;
    if (kind == REQ_CHECKPOINT)
        s->checkpoint_sent = 0;
    if (kind == REQ_FINAL)
        s->final_sent = 0;
    if (!s->has_trial || s->dropped)
        return;

    if (!ok) {
        static const char *names[] = {"hello", "lease", "heartbeat", "heartbeat", "metrics",
                                      "checkpoint", NULL, "bye"};
        if (kind == REQ_CHECKPOINT)
            s->checkpoint_unsent = 1; /* retried with the newest one */
        const char *op = kind == REQ_FINAL ? final_op_name(s->final.outcome) : names[kind];
        handle_trial_error(s, op, code, message);
        return;
    }

    switch (kind) {
    case REQ_REATTACH:
        s->lease_presented = 1;
        log_info("lease", "sweep=%lld trial=%lld attempt=%lld lease accepted again after "
                 "reconnecting", s->cur.sweep, s->cur.id, s->cur.attempt);
        break;
    case REQ_METRICS:
        if ((size_t)count > s->outbox_len)
            count = (int)s->outbox_len;
        memmove(s->outbox, s->outbox + count, (s->outbox_len - (size_t)count) * sizeof(*s->outbox));
        s->outbox_len -= (size_t)count;
        break;
    case REQ_CHECKPOINT:
        /* The daemon has stored this one, so every one it may have had
         * before can go. */
        set_pin(s, TRIAL_PIN_HELD, s->report_sent_step);
        set_pin(s, TRIAL_PIN_SENT, -1);
        set_pin(s, TRIAL_PIN_LOST, -1);
        set_pin(s, TRIAL_PIN_LOST_OLDER, -1);
        s->report_sent_step = -1;
        s->report_lost_step = -1;
        break;
    case REQ_FINAL:
        log_info("session", "sweep=%lld trial=%lld attempt=%lld reported %s", s->cur.sweep,
                 s->cur.id, s->cur.attempt, final_op_name(s->final.outcome));
        s->trials_done++;
        trim_checkpoints(s);
        clear_trial(s);
        break;
    default:
        break;
    }
}

static void on_event(session *s, const cJSON *msg, const char *name)
{
    if (strcmp(name, "cancel") == 0) {
        long long trial_id = -1, attempt = -1;
        get_int(msg, "trial", &trial_id);
        get_int(msg, "attempt", &attempt);
        if (s->has_trial && trial_id == s->cur.id && (attempt < 0 || attempt == s->cur.attempt))
            drop_trial(s, "cancelled by the daemon");
        return;
    }
    if (strcmp(name, "shutdown") == 0) {
        log_info("session", "daemon is shutting down; training goes on, reconnecting later");
        return;
    }
    log_debug("session", "ignoring event %s", name);
}

static void on_line(conn *c, char *line, size_t len)
{
    session *s = c->data;
    cJSON *msg = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(msg)) {
        char sample[200];
        log_error("session", "daemon sent invalid JSON: %s; reconnecting",
                  log_escape(line, len, 64, sample, sizeof(sample)));
        cJSON_Delete(msg);
        conn_drop(c, "invalid JSON");
        return;
    }

    const cJSON *event = cJSON_GetObjectItemCaseSensitive(msg, "event");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
    if (cJSON_IsString(event) && id == NULL) {
        on_event(s, msg, event->valuestring);
    } else if (cJSON_IsNumber(id)) {
        long long rid = (long long)id->valuedouble;
        int slot = -1;
        for (int i = 0; i < SESSION_MAX_INFLIGHT; i++)
            if (s->inflight[i].id == rid)
                slot = i;
        if (slot < 0) {
            log_warn("session", "reply to unknown request id %lld ignored", rid);
        } else {
            enum req_kind kind = s->inflight[slot].kind;
            int count = s->inflight[slot].count;
            s->inflight[slot].id = 0;
            switch (kind) {
            case REQ_HELLO: on_hello_reply(s, msg); break;
            case REQ_LEASE: on_lease_reply(s, msg); break;
            case REQ_BYE:
                s->bye_acked = 1;
                break;
            case REQ_HEARTBEAT:
                if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(msg, "ok")) && s->has_trial)
                    on_trial_reply(s, kind, count, msg);
                break;
            default: on_trial_reply(s, kind, count, msg); break;
            }
        }
    }
    cJSON_Delete(msg);
    if (!s->stopped)
        pump(s);
}

/* ---- connection events, timers, signals ---- */

static void on_open(conn *c)
{
    session *s = c->data;
    log_debug("session", "connected; sending hello");
    send_hello(s);
}

static void on_close(conn *c, const char *reason)
{
    session *s = c->data;
    int had_hello = s->hello_done;
    memset(s->inflight, 0, sizeof(s->inflight));
    s->hello_done = 0;
    s->lease_waiting = s->bye_sent = s->reattach_sent = 0;
    /* A report in flight may or may not have been stored: keep it pinned
     * until a later report is acknowledged, and report the newest again. */
    if (s->checkpoint_sent && s->has_trial) {
        set_pin(s, TRIAL_PIN_LOST_OLDER, s->report_lost_step);
        set_pin(s, TRIAL_PIN_LOST, s->report_sent_step);
        s->report_lost_step = s->report_sent_step;
        s->checkpoint_unsent = 1;
    }
    s->metrics_sent = s->checkpoint_sent = s->final_sent = 0;
    s->lease_presented = 0;
    uv_timer_stop(&s->heartbeat_timer);
    if (s->stopped)
        return;
    if (had_hello)
        log_warn("session", "lost the connection to sweepd (%s)%s; reconnecting with backoff",
                 reason, s->has_trial ? ", training goes on" : "");
    /* Leaving with nothing left to report: no need to wait for the daemon. */
    if (s->leaving && !s->has_trial && !s->wake_closing)
        stop_session(s, 0);
}

static void on_heartbeat_timer(uv_timer_t *timer)
{
    session *s = timer->data;
    s->hold_until_tick = 0;
    if (s->hello_done && (!s->has_trial || s->lease_presented))
        send_heartbeat(s, REQ_HEARTBEAT);
    pump(s);
}

static void on_idle_timer(uv_timer_t *timer)
{
    session *s = timer->data;
    if (s->has_trial || s->leaving)
        return;
    log_info("session", "no trial within %.1f s (--exit-when-idle); leaving", s->opt.exit_when_idle_s);
    s->leaving = 1;
    if (!s->hello_done)
        stop_session(s, 0);
    else
        pump(s);
}

static void on_signal(uv_signal_t *handle, int signum)
{
    session *s = handle->data;
    s->signals_seen++;
    if (s->signals_seen > 1) {
        log_warn("session", "second %s: exiting at once without reporting", strsignal(signum));
        _exit(128 + signum);
    }
    log_info("session", "%s: stopping at the next step boundary, then reporting preempted "
             "(send it again to exit at once)", strsignal(signum));
    s->leaving = 1;
    uv_timer_stop(&s->idle_timer);
    if (s->has_trial && !s->trial_thread_done)
        atomic_store(&s->cur.stop, 1);
    if (!s->has_trial && !s->hello_done && !s->wake_closing)
        stop_session(s, 0);
    else
        pump(s);
}

static void on_handle_closed(uv_handle_t *handle)
{
}

static void stop_session(session *s, int exit_code)
{
    if (s->stopped)
        return;
    s->stopped = 1;
    s->exit_code = exit_code;
    if (s->has_trial && !s->trial_thread_done) {
        /* Only reached on a fatal error: stop the thread and wait for it. */
        atomic_store(&s->cur.discard, 1);
        atomic_store(&s->cur.stop, 1);
        trial_finish(&s->cur, on_handle_closed);
    }
    conn_stop(&s->conn);
    uv_close((uv_handle_t *)&s->heartbeat_timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->idle_timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->sigterm, on_handle_closed);
    uv_close((uv_handle_t *)&s->sigint, on_handle_closed);
    free(s->outbox);
    s->outbox = NULL;
}

/* ---- the decision ---- */

static void pump(session *s)
{
    if (s->stopped || !s->hello_done || s->hold_until_tick)
        goto timers;

    if (s->has_trial) {
        if (!s->lease_presented) {
            if (!s->reattach_sent && !s->dropped)
                send_heartbeat(s, REQ_REATTACH);
            goto timers;
        }
        if (s->dropped)
            goto timers;
        /* A checkpoint at step N is reported once every point of step <= N
         * is acknowledged, because an attempt resumed from N re-reports only
         * later steps. The newest checkpoint is chosen and pinned (so it is
         * not deleted while it waits), the next metrics batch ends at its
         * step, and the report goes out when that batch is acknowledged,
         * before the batch after it. Waiting for an empty outbox instead
         * starved the report while training produced points faster than
         * they were acknowledged. */
        if (s->checkpoint_unsent && !s->report_pending)
            choose_report(s);
        if (s->report_pending && !s->checkpoint_sent &&
            (s->outbox_len == 0 || s->outbox[0].step > s->report_step)) {
            send_checkpoint(s);
            if (s->checkpoint_unsent)
                choose_report(s); /* so the next batch ends at it */
        }
        if (s->outbox_len > 0 && !s->metrics_sent)
            send_metrics(s);
        if (s->trial_thread_done && !s->final_sent && s->outbox_len == 0 && !s->metrics_sent &&
            !s->checkpoint_sent && !s->checkpoint_unsent && !s->report_pending) {
            cJSON *msg = build_final(s);
            if (send_request(s, msg, REQ_FINAL, 0) == 0) {
                s->final_sent = 1;
                s->final_reported = 1;
            }
        }
        goto timers;
    }

    if (s->wake_closing)
        goto timers;
    if (s->leaving) {
        if (!s->bye_sent && send_request(s, new_request("bye"), REQ_BYE, 0) == 0)
            s->bye_sent = 1;
        if (s->bye_acked) {
            log_info("session", "bye acknowledged; exiting");
            stop_session(s, 0);
        }
        goto timers;
    }
    if (!s->lease_waiting) {
        cJSON *msg = new_request("lease");
        if (msg != NULL && cJSON_AddBoolToObject(msg, "wait", 1) == NULL) {
            cJSON_Delete(msg);
            msg = NULL;
        }
        if (send_request(s, msg, REQ_LEASE, 0) == 0)
            s->lease_waiting = 1;
    }

timers:
    if (s->stopped)
        return;
    /* Heartbeats run while connected; the idle clock runs while no trial is held. */
    if (s->hello_done && !uv_is_active((uv_handle_t *)&s->heartbeat_timer))
        uv_timer_start(&s->heartbeat_timer, on_heartbeat_timer, s->heartbeat_interval_ms,
                       s->heartbeat_interval_ms);
    if (s->opt.exit_when_idle_s > 0 && !s->has_trial && !s->leaving &&
        !uv_is_active((uv_handle_t *)&s->idle_timer))
        uv_timer_start(&s->idle_timer, on_idle_timer, (uint64_t)(s->opt.exit_when_idle_s * 1000), 0);
    if (s->has_trial)
        uv_timer_stop(&s->idle_timer);
}

int session_start(session *s, uv_loop_t *loop, const worker_options *opt, char *err,
                  size_t err_size)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->opt = *opt;
    s->heartbeat_interval_ms = 10000;
    snprintf(s->worker_id, sizeof(s->worker_id), "%s", opt->name);

    if (opt->checkpoint_dir != NULL || opt->checkpoint_url != NULL) {
        if (ckpt_store_init(&s->store, opt->checkpoint_dir, opt->checkpoint_url, opt->cache_dir,
                            err, err_size) != 0)
            return -1;
        s->store.limits.low_speed_time_s = opt->http_stall_timeout_s;
        s->store_ready = 1;
    }

    conn_callbacks cb = {.on_open = on_open, .on_line = on_line, .on_close = on_close};
    if (conn_init(&s->conn, loop, opt->connect, &cb, s, err, err_size) != 0)
        return -1;

    int rc = uv_timer_init(loop, &s->heartbeat_timer);
    if (rc == 0)
        rc = uv_timer_init(loop, &s->idle_timer);
    if (rc == 0)
        rc = uv_signal_init(loop, &s->sigterm);
    if (rc == 0)
        rc = uv_signal_init(loop, &s->sigint);
    if (rc == 0)
        rc = uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    if (rc == 0)
        rc = uv_signal_start(&s->sigint, on_signal, SIGINT);
    if (rc != 0) {
        snprintf(err, err_size, "failed to set up timers and signals: %s", uv_strerror(rc));
        return -1;
    }
    s->heartbeat_timer.data = s->idle_timer.data = s;
    s->sigterm.data = s->sigint.data = s;

    conn_start(&s->conn);
    pump(s);
    return 0;
}
