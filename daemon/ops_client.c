/* Client operations: submit, validate, list, status, trials, tickets,
 * workers, pause, resume, cancel and watch. Specs are compiled by spec.c
 * with the literal kinds of the request line, so 0 and 0.0 keep their
 * meaning; everything else reads the store's cache or its queries.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_kinds.h"
#include "log.h"
#include "server.h"

/* Default and ceiling of the trials "limit" and the validate "show" field. */
#define TRIALS_DEFAULT_LIMIT 1000
#define TRIALS_MAX_LIMIT 100000
#define VALIDATE_MAX_SHOW 1000

/* Compiles the request's "spec" object. Returns the spec, or NULL after an
 * error reply (bad_request when missing, invalid_spec with the path). */
static sweep_spec *compile_request_spec(request *req, int generic)
{
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(req->root, "spec");
    if (!cJSON_IsObject(spec)) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST, "spec: missing or not a JSON object");
        return NULL;
    }
    json_kinds *kinds = json_kinds_scan(req->line, req->len, req->root);
    if (!kinds)
        log_warn("spec", "conn=%" PRIu64 " number kinds unavailable; integral values count as integers",
                 req->c->number);
    sweep_spec *compiled = NULL;
    char err[1024];
    int rc = spec_compile(spec, kinds, generic, &compiled, err, sizeof(err));
    json_kinds_free(kinds);
    if (rc != 0) {
        server_reply_error(req->c, req->id, PROTO_ERR_INVALID_SPEC, "%s", err);
        return NULL;
    }
    return compiled;
}

/* Adds "warnings" (a list of strings) when the spec has any. */
static void add_warnings(cJSON *obj, const sweep_spec *spec)
{
    size_t n = spec_warning_count(spec);
    if (n == 0)
        return;
    cJSON *list = cJSON_AddArrayToObject(obj, "warnings");
    for (size_t i = 0; list && i < n; i++)
        cJSON_AddItemToArray(list, cJSON_CreateString(spec_warning(spec, i)));
}

static void add_size(cJSON *obj, const sweep_spec *spec)
{
    uint64_t n = 0;
    if (spec_trial_count(spec, &n))
        cJSON_AddNumberToObject(obj, "size", (double)n);
    else
        cJSON_AddNullToObject(obj, "size");
    cJSON_AddStringToObject(obj, "method", spec_method(spec) == SPEC_GRID ? "grid" : "random");
}

void ops_submit(request *req)
{
    conn *c = req->c;
    server *srv = c->srv;
    sweep_spec *spec = compile_request_spec(req, 0);
    if (!spec)
        return;
    uint64_t seed = 0;
    if (!spec_seed(spec, &seed)) {
        int rc = uv_random(NULL, NULL, &seed, sizeof(seed), 0, NULL);
        if (rc != 0) {
            spec_free(spec);
            log_error("sweep", "drawing a seed failed: %s", uv_strerror(rc));
            server_reply_error(c, req->id, PROTO_ERR_INTERNAL, "drawing a random seed failed; set \"seed\" in the spec");
            return;
        }
        seed &= (UINT64_C(1) << 53) - 1; /* exact as a JSON number */
    }
    int64_t sweep = 0;
    int64_t now = store_now_ms();
    cJSON *fields = cJSON_CreateObject();
    add_size(fields, spec);
    add_warnings(fields, spec);
    const char *name = spec_name(spec);
    cJSON_AddStringToObject(fields, "name", name);
    int err = store_sweep_create(srv->st, spec, seed, now, &sweep);
    if (err != 0) {
        spec_free(spec);
        cJSON_Delete(fields);
        server_reply_store_error(c, req->id, err, "submit");
        return;
    }
    store_event_add(srv->st, now, "submitted", sweep, 0, NULL, NULL);
    cJSON_AddNumberToObject(fields, "sweep", (double)sweep);
    cJSON_AddNumberToObject(fields, "seed", (double)seed);
    store_sweep *sw = store_sweep_find(srv->st, sweep);
    log_info("sweep", "sweep=%" PRId64 " name=%s submitted: %s, %s trials, seed %" PRIu64, sweep, sw->name,
             spec_method(sw->spec) == SPEC_GRID ? "grid" : "random",
             cJSON_IsNull(cJSON_GetObjectItem(fields, "size")) ? "unbounded" : "bounded", seed);
    for (size_t i = 0; i < spec_warning_count(spec); i++)
        log_warn("sweep", "sweep=%" PRId64 " %s", sweep, spec_warning(spec, i));
    server_reply_ok(c, req->id, fields);
    srv->waiters_ready = 1;

    cJSON *event = cJSON_CreateObject();
    cJSON_AddStringToObject(event, "event", "sweep");
    cJSON_AddNumberToObject(event, "sweep", (double)sweep);
    cJSON_AddStringToObject(event, "state", "running");
    server_broadcast(srv, sweep, event);
}

void ops_validate(request *req)
{
    int generic = 0;
    int64_t show = 0;
    if (req_bool(req, "generic", &generic) < 0 || req_int(req, "show", &show) < 0)
        return;
    if (show < 0 || show > VALIDATE_MAX_SHOW) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST, "show: %" PRId64 " is out of range; use 0 to %d",
                           show, VALIDATE_MAX_SHOW);
        return;
    }
    sweep_spec *spec = compile_request_spec(req, generic);
    if (!spec)
        return;
    cJSON *fields = cJSON_CreateObject();
    add_size(fields, spec);
    add_warnings(fields, spec);
    uint64_t count = 0;
    int bounded = spec_trial_count(spec, &count);
    uint64_t seed = 0;
    spec_seed(spec, &seed); /* 0 when unset: the preview of a random sweep is for seed 0 */
    cJSON *trials = cJSON_AddArrayToObject(fields, "trials");
    for (int64_t i = 0; i < show && (!bounded || (uint64_t)i < count); i++) {
        cJSON *params = spec_trial_params(spec, seed, (uint64_t)i);
        if (!params)
            break;
        cJSON_AddItemToArray(trials, params);
    }
    spec_free(spec);
    server_reply_ok(req->c, req->id, fields);
}

static store_sweep *find_sweep(request *req, int required)
{
    int64_t id = 0;
    int has = req_int(req, "sweep", &id);
    if (has < 0)
        return NULL;
    if (!has) {
        if (required)
            server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST, "sweep: missing; give the sweep id");
        return NULL;
    }
    store_sweep *sw = store_sweep_find(req->c->srv->st, id);
    if (!sw)
        server_reply_error(req->c, req->id, PROTO_ERR_NOT_FOUND, "sweep %" PRId64 " not found; list the sweeps with the list op (sweepctl list)", id);
    return sw;
}

void ops_list(request *req)
{
    store *st = req->c->srv->st;
    cJSON *fields = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(fields, "sweeps");
    for (size_t i = 0; i < store_sweep_count(st); i++) {
        store_sweep *sw = store_sweep_at(st, i);
        cJSON *obj = cJSON_CreateObject();
        cJSON_AddItemToArray(list, obj);
        cJSON_AddNumberToObject(obj, "sweep", (double)sw->id);
        cJSON_AddStringToObject(obj, "name", sw->name);
        cJSON_AddStringToObject(obj, "state", store_sweep_state_name(sw->state));
        cJSON_AddStringToObject(obj, "method", sw->spec && spec_method(sw->spec) == SPEC_GRID ? "grid" : "random");
        if (sw->bounded)
            cJSON_AddNumberToObject(obj, "size", (double)sw->size);
        else
            cJSON_AddNullToObject(obj, "size");
        cJSON *counts = cJSON_AddObjectToObject(obj, "counts");
        for (int s = 0; s < TRIAL_STATE_COUNT; s++)
            cJSON_AddNumberToObject(counts, store_trial_state_name((enum trial_state)s), (double)sw->counts[s]);
        cJSON_AddNumberToObject(obj, "created", (double)sw->created_ms / 1000.0);
    }
    server_reply_ok(req->c, req->id, fields);
}

void ops_status(request *req)
{
    store *st = req->c->srv->st;
    cJSON *fields = cJSON_CreateObject();
    int err = 0;
    if (cJSON_GetObjectItemCaseSensitive(req->root, "sweep")) {
        store_sweep *sw = find_sweep(req, 1);
        if (!sw) {
            cJSON_Delete(fields);
            return;
        }
        err = store_query_status(st, sw, fields);
    } else {
        cJSON *list = cJSON_AddArrayToObject(fields, "sweeps");
        for (size_t i = 0; i < store_sweep_count(st) && err == 0; i++) {
            cJSON *obj = cJSON_CreateObject();
            cJSON_AddItemToArray(list, obj);
            err = store_query_status(st, store_sweep_at(st, i), obj);
        }
    }
    if (err != 0) {
        cJSON_Delete(fields);
        server_reply_store_error(req->c, req->id, err, "status");
        return;
    }
    server_reply_ok(req->c, req->id, fields);
}

/* Reads the trials "where" object into matches. Returns the number of
 * conditions (0 when absent), or -1 after an error reply naming the field. */
static int read_where(request *req, store_param_match *matches)
{
    const cJSON *where = cJSON_GetObjectItemCaseSensitive(req->root, "where");
    if (!where || cJSON_IsNull(where))
        return 0;
    if (!cJSON_IsObject(where)) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST,
                           "where: expected an object of parameter values, such as {\"optimizer\": \"adam\"}");
        return -1;
    }
    int count = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, where)
    {
        char sample[100];
        if (count == STORE_MAX_PARAM_MATCHES) {
            server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST, "where: at most %d conditions are allowed",
                               STORE_MAX_PARAM_MATCHES);
            return -1;
        }
        if (!cJSON_IsString(item) && !cJSON_IsNumber(item) && !cJSON_IsBool(item)) {
            server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST,
                               "where.%s: expected a string, number or boolean; nested parameters are written "
                               "with dots, such as \"model.d_model\"",
                               log_escape(item->string, strlen(item->string), 64, sample, sizeof(sample)));
            return -1;
        }
        matches[count].name = item->string;
        matches[count].value = item;
        count++;
    }
    return count;
}

/* Reads an optional non-negative integer field. Returns 0, or -1 after an
 * error reply. */
static int read_count(request *req, const char *field, int64_t *out)
{
    int has = req_int(req, field, out);
    if (has < 0)
        return -1;
    if (has && *out < 0) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST, "%s: %" PRId64 " is negative; use 0 or more",
                           field, *out);
        return -1;
    }
    return 0;
}

void ops_stats(request *req)
{
    server *srv = req->c->srv;
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddNumberToObject(fields, "requests", (double)srv->requests);
    cJSON_AddNumberToObject(fields, "commits", (double)store_commit_count(srv->st));
    cJSON_AddNumberToObject(fields, "commit_seconds", (double)srv->commit_ns / 1e9);
    cJSON_AddNumberToObject(fields, "syncs", (double)srv->syncs);
    cJSON_AddNumberToObject(fields, "sync_seconds", (double)srv->sync_ns / 1e9);
    cJSON_AddNumberToObject(fields, "max_batch", (double)srv->max_batch);
    cJSON_AddNumberToObject(fields, "leases", (double)srv->leases);
    cJSON_AddNumberToObject(fields, "completions", (double)srv->completions);
    cJSON_AddNumberToObject(fields, "connections", (double)srv->conn_count);
    uv_rusage_t usage;
    if (uv_getrusage(&usage) == 0) {
        double cpu = (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
                     (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
        cJSON_AddNumberToObject(fields, "cpu_seconds", cpu);
    }
    server_reply_ok(req->c, req->id, fields);
}

void ops_trials(request *req)
{
    store_sweep *sw = find_sweep(req, 1);
    if (!sw)
        return;
    const char *state_name = NULL;
    store_param_match matches[STORE_MAX_PARAM_MATCHES];
    store_trials_query query = {.sweep = sw->id, .sort = "id", .limit = TRIALS_DEFAULT_LIMIT, .where = matches};
    if (req_string(req, "state", &state_name) < 0 || req_string(req, "sort", &query.sort) < 0 ||
        req_int(req, "limit", &query.limit) < 0 || read_count(req, "offset", &query.offset) < 0 ||
        read_count(req, "after", &query.after) < 0)
        return;
    int where_count = read_where(req, matches);
    if (where_count < 0)
        return;
    query.where_count = (size_t)where_count;
    query.state = -1;
    if (state_name && (query.state = store_trial_state_parse(state_name)) < 0) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST,
                           "state: \"%s\" is unknown; use pending, running, completed, diverged, failed or cancelled",
                           state_name);
        return;
    }
    const char *sort = query.sort;
    if (strcmp(sort, "id") != 0 && strcmp(sort, "final_loss") != 0 && strcmp(sort, "best_loss") != 0 &&
        strcmp(sort, "seconds") != 0) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST,
                           "sort: \"%s\" is unknown; use id, final_loss, best_loss or seconds", sort);
        return;
    }
    if (query.after > 0 && strcmp(sort, "id") != 0) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST,
                           "after: pages by trial id and needs sort \"id\"; use offset with sort \"%s\"", sort);
        return;
    }
    if (query.limit < 1 || query.limit > TRIALS_MAX_LIMIT) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST, "limit: %" PRId64 " is out of range; use 1 to %d",
                           query.limit, TRIALS_MAX_LIMIT);
        return;
    }
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddNumberToObject(fields, "sweep", (double)sw->id);
    int err = store_query_trials(req->c->srv->st, &query, fields);
    if (err != 0) {
        cJSON_Delete(fields);
        server_reply_store_error(req->c, req->id, err, "trials");
        return;
    }
    server_reply_ok(req->c, req->id, fields);
}

void ops_tickets(request *req)
{
    store_sweep *sw = find_sweep(req, 1);
    if (!sw)
        return;
    double threshold = NAN;
    const char *by = NULL;
    int has = req_loss(req, "threshold", &threshold);
    if (has < 0 || req_string(req, "by", &by) < 0)
        return;
    if (!has && !(sw->spec && spec_ticket_threshold(sw->spec, &threshold))) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST,
                           "threshold: missing and sweep %" PRId64 " sets no ticket_threshold; pass a loss such as 1.5",
                           sw->id);
        return;
    }
    if (!isfinite(threshold)) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST, "threshold: must be a finite number");
        return;
    }
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddNumberToObject(fields, "sweep", (double)sw->id);
    cJSON_AddNumberToObject(fields, "threshold", threshold);
    if (by)
        cJSON_AddStringToObject(fields, "by", by);
    else
        cJSON_AddNullToObject(fields, "by");
    int err = store_query_tickets(req->c->srv->st, sw->id, threshold, by, fields);
    if (err == STORE_ERR_LIMIT) {
        cJSON_Delete(fields);
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST,
                           "by: parameter \"%s\" has more than %d values among finished trials; group by a "
                           "parameter with fewer values (such as optimizer), or list trials sorted by final_loss",
                           by, STORE_MAX_GROUPS);
        return;
    }
    if (err != 0) {
        cJSON_Delete(fields);
        server_reply_store_error(req->c, req->id, err, "tickets");
        return;
    }
    server_reply_ok(req->c, req->id, fields);
}

void ops_workers(request *req)
{
    server *srv = req->c->srv;
    uint64_t now = uv_now(srv->loop);
    cJSON *fields = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(fields, "workers");
    for (conn *c = srv->conns; c; c = c->next) {
        if (c->role != ROLE_WORKER || c->closing)
            continue;
        cJSON *w = cJSON_CreateObject();
        cJSON_AddItemToArray(list, w);
        cJSON_AddStringToObject(w, "worker", c->name);
        cJSON_AddStringToObject(w, "host", c->host);
        cJSON_AddNumberToObject(w, "pid", (double)c->pid);
        const char *state = "idle";
        if (c->bye)
            state = "leaving";
        else if (c->held_count)
            state = "running";
        cJSON_AddStringToObject(w, "state", state);
        if (c->held_count) {
            cJSON_AddNumberToObject(w, "trial", (double)c->held[0].trial);
            cJSON_AddNumberToObject(w, "attempt", (double)c->held[0].attempt);
        } else {
            cJSON_AddNullToObject(w, "trial");
            cJSON_AddNullToObject(w, "attempt");
        }
        if (c->has_heartbeat) {
            cJSON_AddNumberToObject(w, "step", (double)c->hb_step);
            store_json_add_loss(w, "loss", c->hb_loss);
            store_json_add_loss(w, "tokens_per_s", c->hb_tokens_per_s);
        } else {
            cJSON_AddNullToObject(w, "step");
            cJSON_AddNullToObject(w, "loss");
            cJSON_AddNullToObject(w, "tokens_per_s");
        }
        cJSON_AddNumberToObject(w, "heartbeat_age_ms", (double)(now - c->last_heard_ms));
    }
    server_reply_ok(req->c, req->id, fields);
}

static void reply_sweep_state(request *req, store_sweep *sw)
{
    cJSON *fields = cJSON_CreateObject();
    cJSON_AddNumberToObject(fields, "sweep", (double)sw->id);
    cJSON_AddStringToObject(fields, "state", store_sweep_state_name(sw->state));
    server_reply_ok(req->c, req->id, fields);

    cJSON *event = cJSON_CreateObject();
    cJSON_AddStringToObject(event, "event", "sweep");
    cJSON_AddNumberToObject(event, "sweep", (double)sw->id);
    cJSON_AddStringToObject(event, "state", store_sweep_state_name(sw->state));
    server_broadcast(req->c->srv, sw->id, event);
}

/* Replies to a pause, resume or cancel that store rejected. A state conflict
 * names the sweep's state and the states the operation accepts. */
static void reply_control_error(request *req, const store_sweep *sw, int err, const char *op,
                                const char *allowed)
{
    if (err == STORE_ERR_STATE) {
        server_reply_error(req->c, req->id, PROTO_ERR_INVALID_STATE,
                           "%s: sweep %" PRId64 " is %s; only a %s sweep can be %s", op, sw->id,
                           store_sweep_state_name(sw->state), allowed,
                           strcmp(op, "pause") == 0 ? "paused"
                           : strcmp(op, "resume") == 0 ? "resumed" : "cancelled");
        return;
    }
    server_reply_store_error(req->c, req->id, err, op);
}

void ops_pause(request *req)
{
    store_sweep *sw = find_sweep(req, 1);
    if (!sw)
        return;
    int err = store_sweep_pause(req->c->srv->st, sw->id, store_now_ms());
    if (err != 0) {
        reply_control_error(req, sw, err, "pause", "running");
        return;
    }
    store_event_add(req->c->srv->st, store_now_ms(), "paused", sw->id, 0, NULL, NULL);
    log_info("sweep", "sweep=%" PRId64 " paused", sw->id);
    reply_sweep_state(req, sw);
}

void ops_resume(request *req)
{
    store_sweep *sw = find_sweep(req, 1);
    if (!sw)
        return;
    int err = store_sweep_resume(req->c->srv->st, sw->id, store_now_ms());
    if (err != 0) {
        reply_control_error(req, sw, err, "resume", "paused");
        return;
    }
    store_event_add(req->c->srv->st, store_now_ms(), "resumed", sw->id, 0, NULL, NULL);
    log_info("sweep", "sweep=%" PRId64 " resumed", sw->id);
    req->c->srv->waiters_ready = 1;
    reply_sweep_state(req, sw);
}

void ops_cancel(request *req)
{
    server *srv = req->c->srv;
    store_sweep *sw = find_sweep(req, 1);
    if (!sw)
        return;
    int64_t *running = NULL;
    size_t count = 0;
    int err = store_sweep_cancel(srv->st, sw->id, store_now_ms(), &running, &count);
    if (err != 0) {
        reply_control_error(req, sw, err, "cancel", "running or paused");
        return;
    }
    store_event_add(srv->st, store_now_ms(), "cancelled", sw->id, 0, NULL, NULL);
    log_info("sweep", "sweep=%" PRId64 " cancelled; telling the workers of %zu running trials", sw->id, count);

    /* Tell each holder to stop, and forget the holds. */
    for (size_t i = 0; i < count; i++) {
        for (conn *c = srv->conns; c; c = c->next) {
            if (c->role != ROLE_WORKER || c->closing)
                continue;
            for (size_t k = 0; k < c->held_count; k++) {
                if (c->held[k].trial != running[i])
                    continue;
                cJSON *event = cJSON_CreateObject();
                cJSON_AddStringToObject(event, "event", "cancel");
                cJSON_AddNumberToObject(event, "trial", (double)running[i]);
                cJSON_AddNumberToObject(event, "attempt", (double)c->held[k].attempt);
                server_push(c, event);
                server_held_remove(c, running[i]);
                break;
            }
        }
        for (size_t k = 0; k < srv->orphan_count; k++)
            if (srv->orphans[k].lease.trial == running[i])
                srv->orphans[k].adopted = 1;
    }
    free(running);
    reply_sweep_state(req, sw);
}

void ops_watch(request *req)
{
    int64_t sweep = 0;
    int has = req_int(req, "sweep", &sweep);
    if (has < 0)
        return;
    if (has && !store_sweep_find(req->c->srv->st, sweep)) {
        server_reply_error(req->c, req->id, PROTO_ERR_NOT_FOUND, "sweep %" PRId64 " not found; list the sweeps with the list op (sweepctl list)", sweep);
        return;
    }
    if (!req->c->watching)
        req->c->srv->watcher_count++;
    req->c->watching = 1;
    req->c->watch_sweep = has ? sweep : 0;
    cJSON *fields = cJSON_CreateObject();
    if (has)
        cJSON_AddNumberToObject(fields, "sweep", (double)sweep);
    else
        cJSON_AddNullToObject(fields, "sweep");
    server_reply_ok(req->c, req->id, fields);
}
