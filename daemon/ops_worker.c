/* Worker operations: hello (with re-presented leases), lease (held with
 * "wait"), heartbeat, metrics, checkpoint, complete, diverged, failed,
 * preempted, bye; plus the fencing and requeue logic shared with the
 * timers. A lease is (trial, attempt, token); the database holds the current
 * one, and a connection's held list only says whom to requeue when it goes.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"

/* ---- held leases ------------------------------------------------------------ */

int server_held_add(conn *c, const held_lease *lease)
{
    for (size_t i = 0; i < c->held_count; i++)
        if (c->held[i].trial == lease->trial) {
            c->held[i] = *lease;
            return 0;
        }
    if (c->held_count == c->held_cap) {
        size_t cap = c->held_cap ? c->held_cap * 2 : 4;
        held_lease *grown = realloc(c->held, cap * sizeof(*grown));
        if (!grown)
            return -1;
        c->held = grown;
        c->held_cap = cap;
    }
    c->held[c->held_count++] = *lease;
    return 0;
}

int server_held_remove(conn *c, int64_t trial)
{
    for (size_t i = 0; i < c->held_count; i++)
        if (c->held[i].trial == trial) {
            c->held[i] = c->held[--c->held_count];
            return 1;
        }
    return 0;
}

/* Makes c the holder of a lease checked against the database: it leaves the
 * orphan list or the connection that held it before. */
static void adopt(server *srv, conn *c, const held_lease *lease)
{
    for (size_t i = 0; i < srv->orphan_count; i++)
        if (!srv->orphans[i].adopted && srv->orphans[i].lease.trial == lease->trial) {
            srv->orphans[i].adopted = 1;
            log_info("lease", "sweep=%" PRId64 " trial=%" PRId64 " attempt=%" PRId64 " worker=%s re-presented after restart",
                     lease->sweep, lease->trial, lease->attempt, c->name);
        }
    for (conn *other = srv->conns; other; other = other->next)
        if (other != c && other->role == ROLE_WORKER && server_held_remove(other, lease->trial))
            log_info("lease", "trial=%" PRId64 " moved from worker=%s to worker=%s", lease->trial, other->name,
                     c->name);
    if (server_held_add(c, lease) != 0)
        log_error("lease", "trial=%" PRId64 " worker=%s out of memory recording the lease", lease->trial, c->name);
}

void server_trial_event(server *srv, int64_t sweep, int64_t trial, enum trial_state state, int64_t attempt,
                        const char *worker)
{
    if (srv->watcher_count == 0)
        return;
    cJSON *event = cJSON_CreateObject();
    if (!event)
        return;
    cJSON_AddStringToObject(event, "event", "trial");
    cJSON_AddNumberToObject(event, "sweep", (double)sweep);
    cJSON_AddNumberToObject(event, "trial", (double)trial);
    cJSON_AddStringToObject(event, "state", store_trial_state_name(state));
    cJSON_AddNumberToObject(event, "attempt", (double)attempt);
    if (worker)
        cJSON_AddStringToObject(event, "worker", worker);
    server_broadcast(srv, sweep, event);
}

void server_after_trial_end(server *srv, int64_t sweep)
{
    store_sweep *sw = store_sweep_find(srv->st, sweep);
    if (!sw)
        return;
    int64_t now = store_now_ms();
    int finished = store_sweep_check_finished(srv->st, sw, now);
    if (finished < 0) {
        log_error("sweep", "sweep=%" PRId64 " marking the sweep finished failed (%d)", sweep, finished);
        return;
    }
    if (finished == 0)
        return;
    log_info("sweep", "sweep=%" PRId64 " finished: completed=%" PRId64 " diverged=%" PRId64 " failed=%" PRId64
             " cancelled=%" PRId64, sweep, sw->counts[TRIAL_COMPLETED], sw->counts[TRIAL_DIVERGED],
             sw->counts[TRIAL_FAILED], sw->counts[TRIAL_CANCELLED]);
    store_event_add(srv->st, now, "finished", sweep, 0, NULL, NULL);
    cJSON *event = cJSON_CreateObject();
    if (!event)
        return;
    cJSON_AddStringToObject(event, "event", "sweep");
    cJSON_AddNumberToObject(event, "sweep", (double)sweep);
    cJSON_AddStringToObject(event, "state", "finished");
    server_broadcast(srv, sweep, event);
}

/* Requeues one running trial as lost work and announces the result. */
static void requeue_one(server *srv, const held_lease *lease, const char *worker, const char *reason,
                        const char *location, int64_t step)
{
    enum trial_state state;
    int err = store_trial_requeue(srv->st, lease->trial, lease->attempt, reason, location, step, store_now_ms(), &state);
    if (err == STORE_ERR_STALE || err == STORE_ERR_NOT_FOUND)
        return; /* the trial moved on already */
    if (err != 0) {
        log_error("lease", "trial=%" PRId64 " attempt=%" PRId64 " requeue (%s) failed (%d)", lease->trial,
                  lease->attempt, reason, err);
        return;
    }
    log_info("lease", "sweep=%" PRId64 " trial=%" PRId64 " attempt=%" PRId64 " worker=%s requeued: %s -> %s",
             lease->sweep, lease->trial, lease->attempt, worker, reason, store_trial_state_name(state));
    server_trial_event(srv, lease->sweep, lease->trial, state, lease->attempt, worker);
    if (state == TRIAL_PENDING)
        srv->waiters_ready = 1;
    else
        server_after_trial_end(srv, lease->sweep);
}

void server_requeue_held(server *srv, conn *c, const char *reason)
{
    for (size_t i = 0; i < c->held_count; i++)
        requeue_one(srv, &c->held[i], c->name, reason, NULL, 0);
    c->held_count = 0;
}

void server_worker_gone(server *srv, conn *c)
{
    if (!srv->stopping) {
        server_requeue_held(srv, c, "disconnect");
        store_worker_seen(srv->st, c->name, NULL, 0, "gone", store_now_ms());
        store_event_add(srv->st, store_now_ms(), "worker_left", 0, 0, c->name, NULL);
    }
    log_info("worker", "worker=%s conn=%" PRIu64 " left", c->name, c->number);
    cJSON *event = cJSON_CreateObject();
    if (!event)
        return;
    cJSON_AddStringToObject(event, "event", "worker");
    cJSON_AddStringToObject(event, "worker", c->name);
    cJSON_AddStringToObject(event, "state", "left");
    server_broadcast(srv, 0, event);
}

void server_check_timeouts(server *srv, uint64_t now_ms)
{
    uint64_t timeout_ms = (uint64_t)(srv->opt.heartbeat_timeout_s * 1000.0);
    for (conn *c = srv->conns; c; c = c->next) {
        if (c->role != ROLE_WORKER || c->closing || c->held_count == 0)
            continue;
        if (now_ms - c->last_heard_ms < timeout_ms)
            continue;
        log_warn("lease", "worker=%s conn=%" PRIu64 " sent nothing for %.1f s (heartbeat timeout %.1f s); "
                 "requeueing its %zu trials", c->name, c->number, (double)(now_ms - c->last_heard_ms) / 1000.0,
                 srv->opt.heartbeat_timeout_s, c->held_count);
        server_requeue_held(srv, c, "heartbeat_timeout");
    }

    /* Requeue leases of the previous process that were not re-presented in time. */
    size_t left = 0;
    for (size_t i = 0; i < srv->orphan_count; i++) {
        orphan_lease *o = &srv->orphans[i];
        if (!o->adopted && now_ms >= o->deadline_ms) {
            log_info("lease", "trial=%" PRId64 " attempt=%" PRId64 " worker=%s not re-presented within the restart "
                     "grace (%.0f s)", o->lease.trial, o->lease.attempt, o->worker, srv->opt.grace_s);
            o->adopted = 1;
            requeue_one(srv, &o->lease, o->worker, "restart", NULL, 0);
        }
        if (!o->adopted)
            left++;
    }
    if (srv->orphan_count && left == 0) {
        free(srv->orphans);
        srv->orphans = NULL;
        srv->orphan_count = 0;
    }
}

int server_load_orphans(server *srv)
{
    store_running *running = NULL;
    size_t count = 0;
    int err = store_running_trials(srv->st, &running, &count);
    if (err != 0)
        return err;
    if (count == 0)
        return 0;
    srv->orphans = calloc(count, sizeof(*srv->orphans));
    if (!srv->orphans) {
        free(running);
        return STORE_ERR_NOMEM;
    }
    uint64_t deadline = uv_now(srv->loop) + (uint64_t)(srv->opt.grace_s * 1000.0);
    for (size_t i = 0; i < count; i++) {
        orphan_lease *o = &srv->orphans[i];
        o->lease.trial = running[i].trial;
        o->lease.sweep = running[i].sweep;
        o->lease.attempt = running[i].attempt;
        memcpy(o->lease.lease, running[i].lease, sizeof(o->lease.lease));
        memcpy(o->worker, running[i].worker, sizeof(o->worker));
        o->deadline_ms = deadline;
    }
    srv->orphan_count = count;
    free(running);
    log_info("lease", "%zu trials were running when the daemon stopped; their workers have %.0f s to re-present "
             "them", count, srv->opt.grace_s);
    return 0;
}

/* Reads and checks the lease fields of a trial message. Returns 1 with
 * *lease filled, or 0 after queueing an error reply (bad_request, not_found,
 * stale_lease). A valid lease from a connection that did not hold it is
 * adopted, so a reconnected worker can carry on without a new hello. */
static int check_lease(request *req, held_lease *lease)
{
    const char *token = NULL;
    int has_trial = req_int(req, "trial", &lease->trial);
    int has_attempt = has_trial > 0 ? req_int(req, "attempt", &lease->attempt) : 0;
    int has_token = has_attempt > 0 ? req_string(req, "lease", &token) : 0;
    if (has_trial < 0 || has_attempt < 0 || has_token < 0)
        return 0;
    if (!has_trial || !has_attempt || !has_token) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST,
                           "trial, attempt and lease are required; copy them from the lease reply");
        return 0;
    }
    int err = store_trial_check_lease(req->c->srv->st, lease->trial, lease->attempt, token, &lease->sweep);
    if (err != 0) {
        if (err == STORE_ERR_STALE)
            log_info("lease", "trial=%" PRId64 " attempt=%" PRId64 " worker=%s stale lease rejected", lease->trial,
                     lease->attempt, req->c->name);
        server_reply_store_error(req->c, req->id, err, "trial");
        return 0;
    }
    snprintf(lease->lease, sizeof(lease->lease), "%s", token);
    int held = 0;
    for (size_t i = 0; i < req->c->held_count; i++)
        held |= req->c->held[i].trial == lease->trial;
    if (!held)
        adopt(req->c->srv, req->c, lease);
    return 1;
}

/* ---- hello and bye ---------------------------------------------------------- */

static int name_taken(server *srv, conn *self, const char *name)
{
    for (conn *c = srv->conns; c; c = c->next)
        if (c != self && c->role == ROLE_WORKER && !c->closing && strcmp(c->name, name) == 0)
            return 1;
    return 0;
}

/* Checks re-presented leases and adopts the valid ones; returns the per-lease
 * results for the reply. */
static cJSON *represent_leases(request *req, const cJSON *list)
{
    conn *c = req->c;
    cJSON *results = cJSON_CreateArray();
    const cJSON *item;
    cJSON_ArrayForEach(item, list)
    {
        const cJSON *trial = cJSON_GetObjectItemCaseSensitive(item, "trial");
        const cJSON *attempt = cJSON_GetObjectItemCaseSensitive(item, "attempt");
        const cJSON *token = cJSON_GetObjectItemCaseSensitive(item, "lease");
        cJSON *result = cJSON_CreateObject();
        if (!result)
            break;
        cJSON_AddItemToArray(results, result);
        held_lease lease = {0};
        if (!server_json_int(trial, &lease.trial) || !server_json_int(attempt, &lease.attempt) ||
            !cJSON_IsString(token)) {
            cJSON_AddFalseToObject(result, "ok");
            cJSON_AddStringToObject(result, "error", "bad_request");
            continue;
        }
        cJSON_AddNumberToObject(result, "trial", (double)lease.trial);
        cJSON_AddNumberToObject(result, "attempt", (double)lease.attempt);
        int err = store_trial_check_lease(c->srv->st, lease.trial, lease.attempt, token->valuestring, &lease.sweep);
        if (err != 0) {
            cJSON_AddFalseToObject(result, "ok");
            cJSON_AddStringToObject(result, "error", err == STORE_ERR_STALE ? "stale_lease"
                                                     : err == STORE_ERR_NOT_FOUND ? "not_found" : "storage_error");
            log_info("lease", "trial=%" PRId64 " attempt=%" PRId64 " worker=%s re-presented a lease that is not "
                     "current", lease.trial, lease.attempt, c->name);
            continue;
        }
        snprintf(lease.lease, sizeof(lease.lease), "%s", token->valuestring);
        adopt(c->srv, c, &lease);
        cJSON_AddTrueToObject(result, "ok");
    }
    return results;
}

void ops_hello(request *req)
{
    conn *c = req->c;
    server *srv = c->srv;

    /* Authentication first: on TCP nothing else is read before the token. */
    if (c->is_tcp && !c->authed) {
        /* Read directly, not with req_string, so a token of another type
         * gets the single unauthorized reply and not a bad_request too. */
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(req->root, "token");
        const char *token = cJSON_IsString(item) ? item->valuestring : NULL;
        if (!token || !srv->opt.token || !server_token_equal(token, srv->opt.token)) {
            server_log_auth_failure(srv, c, item && !cJSON_IsNull(item) ? "wrong token" : "no token in hello");
            server_reply_error(c, req->id, PROTO_ERR_UNAUTHORIZED,
                               "the token is missing or wrong; pass the daemon's token file to the client");
            server_close_after_flush(c);
            return;
        }
        c->authed = 1;
    }

    int64_t version = PROTO_VERSION;
    if (req_int(req, "version", &version) < 0)
        return;
    if (version != PROTO_VERSION) {
        server_reply_error(c, req->id, PROTO_ERR_UNSUPPORTED_VERSION,
                           "version %" PRId64 " is not supported; this daemon speaks version %d", version,
                           PROTO_VERSION);
        return;
    }
    const char *role = "client", *name = NULL, *host = NULL;
    int64_t pid = 0;
    if (req_string(req, "role", &role) < 0 || req_string(req, "name", &name) < 0 ||
        req_string(req, "host", &host) < 0 || req_int(req, "pid", &pid) < 0)
        return;
    const cJSON *leases = cJSON_GetObjectItemCaseSensitive(req->root, "leases");
    if (leases && !cJSON_IsArray(leases)) {
        server_reply_error(c, req->id, PROTO_ERR_BAD_REQUEST, "leases: expected a list of {trial, attempt, lease}");
        return;
    }

    cJSON *reply = cJSON_CreateObject();
    cJSON_AddNumberToObject(reply, "version", PROTO_VERSION);
    if (strcmp(role, "worker") == 0) {
        if (c->role == ROLE_WORKER) {
            cJSON_Delete(reply);
            server_reply_error(c, req->id, PROTO_ERR_INVALID_STATE,
                               "this connection already said hello as worker %s", c->name);
            return;
        }
        /* A unique name: the requested one, else with a -2, -3, ... suffix. */
        char base[48];
        snprintf(base, sizeof(base), "%s", name && name[0] ? name : "worker");
        snprintf(c->name, sizeof(c->name), "%s", base);
        for (int n = 2; name_taken(srv, c, c->name); n++)
            snprintf(c->name, sizeof(c->name), "%s-%d", base, n);
        snprintf(c->host, sizeof(c->host), "%s", host ? host : "");
        c->pid = pid;
        c->role = ROLE_WORKER;
        c->last_heard_ms = uv_now(srv->loop);
        store_worker_seen(srv->st, c->name, host, pid, "connected", store_now_ms());
        store_event_add(srv->st, store_now_ms(), "worker_joined", 0, 0, c->name, host);
        log_info("worker", "worker=%s conn=%" PRIu64 " peer=%s host=%s pid=%" PRId64 " joined", c->name, c->number,
                 c->peer, c->host, pid);

        cJSON *event = cJSON_CreateObject();
        cJSON_AddStringToObject(event, "event", "worker");
        cJSON_AddStringToObject(event, "worker", c->name);
        cJSON_AddStringToObject(event, "state", "joined");
        server_broadcast(srv, 0, event);

        cJSON_AddStringToObject(reply, "worker_id", c->name);
        cJSON_AddNumberToObject(reply, "heartbeat_timeout_ms", srv->opt.heartbeat_timeout_s * 1000.0);
        if (srv->opt.checkpoint_dir)
            cJSON_AddStringToObject(reply, "checkpoint_dir", srv->opt.checkpoint_dir);
        if (leases)
            cJSON_AddItemToObject(reply, "leases", represent_leases(req, leases));
    } else if (strcmp(role, "client") != 0) {
        cJSON_Delete(reply);
        server_reply_error(c, req->id, PROTO_ERR_BAD_REQUEST, "role \"%s\" is unknown; use \"worker\" or \"client\"",
                           role);
        return;
    }
    server_reply_ok(c, req->id, reply);
}

void ops_bye(request *req)
{
    conn *c = req->c;
    c->bye = 1;
    store_worker_seen(c->srv->st, c->name, NULL, 0, "leaving", store_now_ms());
    log_info("worker", "worker=%s conn=%" PRIu64 " is leaving; it gets no new lease", c->name, c->number);
    server_reply_ok(c, req->id, NULL);
}

/* ---- leases ----------------------------------------------------------------- */

static cJSON *lease_fields(const store_lease *lease)
{
    cJSON *fields = cJSON_CreateObject();
    cJSON *t = cJSON_AddObjectToObject(fields, "trial");
    server_json_add_int(t, "trial", lease->trial);
    server_json_add_int(t, "sweep", lease->sweep);
    server_json_add_int(t, "index", lease->index);
    server_json_add_int(t, "attempt", lease->attempt);
    cJSON_AddStringToObject(t, "lease", lease->lease);
    /* The params text printed for trials.params is the same JSON, so the
     * reply embeds it raw rather than printing the object a second time. */
    cJSON_AddItemToObject(t, "params", lease->params_text ? cJSON_CreateRaw(lease->params_text)
                                                          : cJSON_Duplicate(lease->params, 1));
    if (lease->checkpoint) {
        cJSON *ck = cJSON_AddObjectToObject(t, "checkpoint");
        cJSON_AddStringToObject(ck, "location", lease->checkpoint);
        server_json_add_int(ck, "step", lease->checkpoint_step);
    } else {
        cJSON_AddNullToObject(t, "checkpoint");
    }
    return fields;
}

/* Leases a trial to c and replies. Returns 1 when a trial was leased, 0 when
 * none is ready, -1 after an error reply. */
static int lease_to(conn *c, const cJSON *id)
{
    server *srv = c->srv;
    store_lease lease;
    int got = store_trial_lease(srv->st, c->name, store_now_ms(), &lease);
    if (got < 0) {
        server_reply_store_error(c, id, got, "lease");
        return -1;
    }
    if (got == 0)
        return 0;
    held_lease held = {.trial = lease.trial, .sweep = lease.sweep, .attempt = lease.attempt};
    memcpy(held.lease, lease.lease, sizeof(held.lease));
    if (server_held_add(c, &held) != 0)
        log_error("lease", "trial=%" PRId64 " worker=%s out of memory recording the lease", lease.trial, c->name);
    srv->leases++;
    log_debug("lease", "sweep=%" PRId64 " trial=%" PRId64 " attempt=%" PRId64 " worker=%s leased", lease.sweep,
              lease.trial, lease.attempt, c->name);
    server_reply_ok(c, id, lease_fields(&lease));
    server_trial_event(srv, lease.sweep, lease.trial, TRIAL_RUNNING, lease.attempt, c->name);
    store_lease_clear(&lease);
    return 1;
}

void ops_lease(request *req)
{
    conn *c = req->c;
    int wait = 0;
    if (req_bool(req, "wait", &wait) < 0)
        return;
    if (c->bye) {
        server_reply_error(c, req->id, PROTO_ERR_LEAVING, "this worker sent bye and gets no new lease");
        return;
    }
    if (c->waiting) {
        server_reply_error(c, req->id, PROTO_ERR_INVALID_STATE,
                           "a lease request with wait is already held for this connection");
        return;
    }
    int got = lease_to(c, req->id);
    if (got != 0)
        return;
    if (!wait) {
        cJSON *fields = cJSON_CreateObject();
        cJSON_AddNullToObject(fields, "trial");
        server_reply_ok(c, req->id, fields);
        return;
    }

    /* Hold the request until a trial is ready. */
    c->wait_id = cJSON_Duplicate(req->id, 1);
    if (!c->wait_id) {
        server_reply_error(c, req->id, PROTO_ERR_INTERNAL, "out of memory holding the lease request");
        return;
    }
    c->waiting = 1;
    c->wait_next = NULL;
    server *srv = c->srv;
    if (srv->wait_tail)
        srv->wait_tail->wait_next = c;
    else
        srv->wait_head = c;
    srv->wait_tail = c;
}

void server_serve_waiters(server *srv)
{
    srv->waiters_ready = 0;
    while (srv->wait_head) {
        conn *c = srv->wait_head;
        int got = lease_to(c, c->wait_id);
        if (got == 0)
            break;
        srv->wait_head = c->wait_next;
        if (!srv->wait_head)
            srv->wait_tail = NULL;
        c->waiting = 0;
        c->wait_next = NULL;
        cJSON_Delete(c->wait_id);
        c->wait_id = NULL;
    }
}

/* ---- trial messages --------------------------------------------------------- */

void ops_heartbeat(request *req)
{
    conn *c = req->c;
    server *srv = c->srv;
    int64_t step = 0;
    double loss = NAN, tokens_per_s = NAN;
    if (req_int(req, "step", &step) < 0 || req_loss(req, "loss", &loss) < 0 ||
        req_loss(req, "tokens_per_s", &tokens_per_s) < 0)
        return;
    held_lease lease = {0};
    if (cJSON_GetObjectItemCaseSensitive(req->root, "trial") && !check_lease(req, &lease))
        return;
    c->has_heartbeat = 1;
    c->hb_step = step;
    c->hb_loss = loss;
    c->hb_tokens_per_s = tokens_per_s;
    server_reply_ok(c, req->id, NULL);

    cJSON *event = cJSON_CreateObject();
    cJSON_AddStringToObject(event, "event", "heartbeat");
    cJSON_AddStringToObject(event, "worker", c->name);
    if (lease.trial) {
        cJSON_AddNumberToObject(event, "sweep", (double)lease.sweep);
        cJSON_AddNumberToObject(event, "trial", (double)lease.trial);
    }
    cJSON_AddNumberToObject(event, "step", (double)step);
    store_json_add_loss(event, "loss", loss);
    store_json_add_loss(event, "tokens_per_s", tokens_per_s);
    server_broadcast(srv, lease.sweep, event);
}

void ops_metrics(request *req)
{
    conn *c = req->c;
    held_lease lease;
    if (!check_lease(req, &lease))
        return;
    const cJSON *points = cJSON_GetObjectItemCaseSensitive(req->root, "points");
    if (!cJSON_IsArray(points)) {
        server_reply_error(c, req->id, PROTO_ERR_BAD_REQUEST,
                           "points: expected a list of {step, train_loss, val_loss}");
        return;
    }
    /* Check every point before storing any, so a bad point stores nothing. */
    const cJSON *p;
    int i = 0;
    cJSON_ArrayForEach(p, points)
    {
        int64_t step = -1;
        if (!server_json_int(cJSON_GetObjectItemCaseSensitive(p, "step"), &step) || step < 0) {
            server_reply_error(c, req->id, PROTO_ERR_BAD_REQUEST,
                               "points[%d].step: expected an integer from 0 to 2^53", i);
            return;
        }
        static const char *const loss_names[2] = {"train_loss", "val_loss"};
        for (int k = 0; k < 2; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(p, loss_names[k]);
            double loss;
            if (v && !cJSON_IsNull(v) && !server_json_loss(v, &loss)) {
                server_reply_error(c, req->id, PROTO_ERR_BAD_REQUEST,
                                   "points[%d].%s: expected a number, null or one of \"nan\", \"inf\", \"-inf\"",
                                   i, loss_names[k]);
                return;
            }
        }
        i++;
    }
    int stored = 0;
    cJSON_ArrayForEach(p, points)
    {
        int64_t step = 0;
        server_json_int(cJSON_GetObjectItemCaseSensitive(p, "step"), &step); /* checked above */
        double losses[2] = {NAN, NAN};
        const char *names[2] = {"train_loss", "val_loss"};
        for (int k = 0; k < 2; k++) {
            /* Checked above; absent and null stay NaN. */
            server_json_loss(cJSON_GetObjectItemCaseSensitive(p, names[k]), &losses[k]);
        }
        int n = store_metrics_add(c->srv->st, lease.trial, lease.attempt, step, losses[0], losses[1]);
        if (n < 0) {
            server_reply_store_error(c, req->id, n, "metrics");
            return;
        }
        if (n == 0)
            continue;
        stored++;
        cJSON *event = cJSON_CreateObject();
        cJSON_AddStringToObject(event, "event", "metrics");
        cJSON_AddNumberToObject(event, "sweep", (double)lease.sweep);
        cJSON_AddNumberToObject(event, "trial", (double)lease.trial);
        cJSON_AddNumberToObject(event, "step", (double)step);
        store_json_add_loss(event, "train_loss", losses[0]);
        store_json_add_loss(event, "val_loss", losses[1]);
        server_broadcast(c->srv, lease.sweep, event);
    }
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddNumberToObject(fields, "stored", stored);
    server_reply_ok(c, req->id, fields);
}

/* Checks a checkpoint location: an http(s) URL, or a path with no ".."
 * component. Returns 1 when valid, else 0 after an error reply. */
static int check_location(request *req, const char *location)
{
    if (location[0] == '\0') {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST, "location: must not be empty");
        return 0;
    }
    if (strncmp(location, "http://", 7) == 0 || strncmp(location, "https://", 8) == 0)
        return 1;
    for (const char *p = location; (p = strstr(p, "..")) != NULL; p += 2) {
        int starts = p == location || p[-1] == '/';
        int ends = p[2] == '\0' || p[2] == '/';
        if (starts && ends) {
            server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST,
                               "location: \"..\" components are not allowed; send a path under the checkpoint "
                               "directory");
            return 0;
        }
    }
    return 1;
}

void ops_checkpoint(request *req)
{
    conn *c = req->c;
    held_lease lease;
    if (!check_lease(req, &lease))
        return;
    const char *location = NULL;
    int64_t step = 0;
    int has_location = req_string(req, "location", &location);
    int has_step = has_location > 0 ? req_int(req, "step", &step) : 0;
    if (has_location < 0 || has_step < 0)
        return;
    if (!has_location || !has_step) {
        server_reply_error(c, req->id, PROTO_ERR_BAD_REQUEST, "location (string) and step (integer) are required");
        return;
    }
    if (!check_location(req, location))
        return;
    int err = store_trial_checkpoint(c->srv->st, lease.trial, lease.attempt, location, step);
    if (err != 0) {
        server_reply_store_error(c, req->id, err, "checkpoint");
        return;
    }
    server_reply_ok(c, req->id, NULL);

    cJSON *event = cJSON_CreateObject();
    cJSON_AddStringToObject(event, "event", "checkpoint");
    cJSON_AddNumberToObject(event, "sweep", (double)lease.sweep);
    cJSON_AddNumberToObject(event, "trial", (double)lease.trial);
    cJSON_AddNumberToObject(event, "attempt", (double)lease.attempt);
    cJSON_AddNumberToObject(event, "step", (double)step);
    cJSON_AddStringToObject(event, "location", location);
    server_broadcast(c->srv, lease.sweep, event);
}

/* Finishes a trial message: reply, drop the hold, announce, finish the sweep. */
static void trial_ended(request *req, const held_lease *lease, enum trial_state state)
{
    conn *c = req->c;
    server *srv = c->srv;
    server_held_remove(c, lease->trial);
    srv->completions++;
    log_debug("lease", "sweep=%" PRId64 " trial=%" PRId64 " attempt=%" PRId64 " worker=%s -> %s", lease->sweep,
              lease->trial, lease->attempt, c->name, store_trial_state_name(state));
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddStringToObject(fields, "state", store_trial_state_name(state));
    server_reply_ok(c, req->id, fields);
    server_trial_event(srv, lease->sweep, lease->trial, state, lease->attempt, c->name);
    if (state == TRIAL_PENDING)
        srv->waiters_ready = 1;
    else
        server_after_trial_end(srv, lease->sweep);
}

void ops_complete(request *req)
{
    held_lease lease;
    if (!check_lease(req, &lease))
        return;
    double final_loss = NAN, best_loss = NAN, seconds = NAN;
    int64_t steps = -1;
    int has_final = req_loss(req, "final_loss", &final_loss);
    if (has_final < 0 || req_loss(req, "best_loss", &best_loss) < 0 || req_int(req, "steps", &steps) < 0 ||
        req_loss(req, "seconds", &seconds) < 0)
        return;
    if (!has_final) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST,
                           "final_loss: missing; send the final validation loss (\"nan\" when not finite)");
        return;
    }
    enum trial_state state;
    int err = store_trial_complete(req->c->srv->st, lease.trial, lease.attempt, final_loss, best_loss, steps, seconds,
                                   store_now_ms(), &state);
    if (err != 0) {
        server_reply_store_error(req->c, req->id, err, "complete");
        return;
    }
    trial_ended(req, &lease, state);
}

void ops_diverged(request *req)
{
    held_lease lease;
    if (!check_lease(req, &lease))
        return;
    int64_t step = -1;
    double loss = NAN;
    if (req_int(req, "step", &step) < 0 || req_loss(req, "loss", &loss) < 0)
        return;
    enum trial_state state;
    int err = store_trial_diverged(req->c->srv->st, lease.trial, lease.attempt, step, store_now_ms(), &state);
    if (err != 0) {
        server_reply_store_error(req->c, req->id, err, "diverged");
        return;
    }
    trial_ended(req, &lease, state);
}

void ops_failed(request *req)
{
    held_lease lease;
    if (!check_lease(req, &lease))
        return;
    const char *error = NULL;
    if (req_string(req, "error", &error) < 0)
        return;
    enum trial_state state;
    int err = store_trial_failed(req->c->srv->st, lease.trial, lease.attempt, error ? error : "(no message)",
                                 store_now_ms(), &state);
    if (err != 0) {
        server_reply_store_error(req->c, req->id, err, "failed");
        return;
    }
    char sample[200];
    log_info("lease", "sweep=%" PRId64 " trial=%" PRId64 " attempt=%" PRId64 " worker=%s failed: %s -> %s",
             lease.sweep, lease.trial, lease.attempt, req->c->name,
             log_escape(error ? error : "", error ? strlen(error) : 0, 120, sample, sizeof(sample)),
             store_trial_state_name(state));
    trial_ended(req, &lease, state);
}

void ops_preempted(request *req)
{
    held_lease lease;
    if (!check_lease(req, &lease))
        return;
    const char *location = NULL;
    int64_t step = 0;
    int has_location = req_string(req, "location", &location);
    if (has_location < 0 || req_int(req, "step", &step) < 0)
        return;
    if (has_location && !check_location(req, location))
        return;
    enum trial_state state;
    int err = store_trial_requeue(req->c->srv->st, lease.trial, lease.attempt, "preempted",
                                  has_location ? location : NULL, step, store_now_ms(), &state);
    if (err != 0) {
        server_reply_store_error(req->c, req->id, err, "preempted");
        return;
    }
    log_info("lease", "sweep=%" PRId64 " trial=%" PRId64 " attempt=%" PRId64 " worker=%s preempted at step %" PRId64
             " -> %s", lease.sweep, lease.trial, lease.attempt, req->c->name, step, store_trial_state_name(state));
    trial_ended(req, &lease, state);
}
