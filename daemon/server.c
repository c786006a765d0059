/* Connections, framing, limits, dispatch and the group commit of sweepd.
 *
 * A line goes through fixed steps: linebuf finds the newline (bounded by
 * --max-line-bytes), a byte scan checks the nesting depth before cJSON parses
 * the text, the op is looked up in the dispatch table, and the
 * handler queues its reply. Each loop iteration ends in the check callback:
 * held leases are served, the open transaction is committed, and only then
 * is queued output written. In durable mode output also waits for the WAL
 * sync that covers its commit (see "durable acknowledgements" below). A failed
 * commit turns the replies that depended on it into storage errors and drops
 * their events.
 */
#include "server.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* Output a connection may have queued or in flight before it is dropped as
 * too slow (a watcher that stopped reading). */
#define MAX_OUTPUT_BYTES (64u * 1024 * 1024)
#define READ_BUFFER_BYTES (64 * 1024)

static char read_buffer[READ_BUFFER_BYTES];

/* Sorted by name for bsearch. */
static const op_entry op_table[] = {
    {"bye", ops_bye, 1},
    {"cancel", ops_cancel, 0},
    {"checkpoint", ops_checkpoint, 1},
    {"complete", ops_complete, 1},
    {"diverged", ops_diverged, 1},
    {"failed", ops_failed, 1},
    {"heartbeat", ops_heartbeat, 1},
    {"hello", ops_hello, 0},
    {"lease", ops_lease, 1},
    {"list", ops_list, 0},
    {"metrics", ops_metrics, 1},
    {"pause", ops_pause, 0},
    {"preempted", ops_preempted, 1},
    {"resume", ops_resume, 0},
    {"stats", ops_stats, 0},
    {"status", ops_status, 0},
    {"submit", ops_submit, 0},
    {"tickets", ops_tickets, 0},
    {"trials", ops_trials, 0},
    {"validate", ops_validate, 0},
    {"watch", ops_watch, 0},
    {"workers", ops_workers, 0},
};

static int op_compare(const void *key, const void *entry)
{
    return strcmp((const char *)key, ((const op_entry *)entry)->name);
}

static void conn_close(conn *c);
static void flush_all(server *srv, int force_commit);
static void flush_dirty(server *srv);

/* ---- output ---------------------------------------------------------------- */

static void on_idle(uv_idle_t *handle) { (void)handle; }

static void wake_loop(server *srv)
{
    if (!srv->idle_active && !srv->stopping) {
        /* An active idle handle makes the next poll return at once, so output
         * queued from a timer callback is flushed in this iteration. */
        if (uv_idle_start(&srv->idle, on_idle) == 0)
            srv->idle_active = 1;
    }
}

static void mark_dirty(conn *c)
{
    if (!c->dirty) {
        c->dirty = 1;
        c->dirty_next = c->srv->dirty_head;
        c->srv->dirty_head = c;
    }
    wake_loop(c->srv);
}

/* Queues a copy of the len bytes at text (a JSON object without newline) to c
 * and takes ownership of id_text (freed with cJSON_free). */
static void queue_line(conn *c, const char *text, size_t len, char *id_text)
{
    if (c->closing) {
        cJSON_free(id_text);
        return;
    }
    out_item *item = malloc(sizeof(*item));
    char *line = malloc(len + 2);
    if (!item || !line) {
        free(item);
        free(line);
        cJSON_free(id_text);
        log_error("server", "conn=%" PRIu64 " out of memory queueing output; closing", c->number);
        conn_close(c);
        return;
    }
    memcpy(line, text, len);
    line[len] = '\n';
    line[len + 1] = '\0';
    item->next = NULL;
    item->text = line;
    item->len = len + 1;
    item->id_text = id_text;
    /* Output queued inside a transaction reports on the commit that ends it.
     * Output queued outside one may show the newest commit, which is not
     * durable until its sync completes. */
    item->epoch = c->srv->commit_epoch + (store_in_transaction(c->srv->st) ? 1 : 0);
    if (c->out_tail)
        c->out_tail->next = item;
    else
        c->out_head = item;
    c->out_tail = item;
    mark_dirty(c);
}

/* Queues text (a JSON object without newline, malloc'ed by cJSON) to c and
 * frees it. */
static void queue_text(conn *c, char *text, char *id_text)
{
    queue_line(c, text, strlen(text), id_text);
    cJSON_free(text);
}

cJSON *server_json_add_int(cJSON *object, const char *name, int64_t value)
{
    char digits[24]; /* INT64_MIN takes 20 characters plus the terminator */
    snprintf(digits, sizeof(digits), "%" PRId64, value);
    return cJSON_AddRawToObject(object, name, digits);
}

/* Prints a request id for the reply, or returns NULL for no id and when out of
 * memory. The result is freed with cJSON_free. Integral ids, the usual case,
 * are printed with snprintf, which skips cJSON's print-and-reparse check. */
static char *id_to_text(const cJSON *id)
{
    if (!id)
        return NULL;
    int64_t integer = 0;
    if (!server_json_int(id, &integer))
        return cJSON_PrintUnformatted(id);
    char *text = cJSON_malloc(24);
    if (text)
        snprintf(text, 24, "%" PRId64, integer);
    return text;
}

void server_reply_ok(conn *c, const cJSON *id, cJSON *fields)
{
    /* The id is printed once and used both in the reply and for the error
     * reply that replaces it if the group commit fails. */
    char *id_text = id_to_text(id);
    cJSON *reply = cJSON_CreateObject();
    if (!reply || (id && !id_text)) {
        log_error("server", "conn=%" PRIu64 " out of memory building a reply", c->number);
        cJSON_Delete(reply);
        cJSON_Delete(fields);
        cJSON_free(id_text);
        return;
    }
    cJSON_AddItemToObject(reply, "id", id_text ? cJSON_CreateRaw(id_text) : cJSON_CreateNull());
    cJSON_AddTrueToObject(reply, "ok");
    if (fields) {
        /* Move the fields over in order. */
        while (fields->child) {
            cJSON *item = cJSON_DetachItemViaPointer(fields, fields->child);
            cJSON_AddItemToObject(reply, item->string, item); /* copies the key */
        }
        cJSON_Delete(fields);
    }
    /* Most replies fit the server's print buffer, which saves cJSON's own
     * buffer allocation and its final realloc. cJSON_PrintPreallocated fails
     * when the text does not fit, and then cJSON allocates as usual. */
    server *srv = c->srv;
    if (cJSON_PrintPreallocated(reply, srv->reply_buf, (int)sizeof(srv->reply_buf), 0)) {
        cJSON_Delete(reply);
        queue_line(c, srv->reply_buf, strlen(srv->reply_buf), id_text);
        return;
    }
    char *text = cJSON_PrintUnformatted(reply);
    cJSON_Delete(reply);
    if (!text) {
        cJSON_free(id_text);
        log_error("server", "conn=%" PRIu64 " out of memory printing a reply", c->number);
        return;
    }
    queue_text(c, text, id_text);
}

static char *error_text(const char *id_text, enum proto_error code, const char *message)
{
    cJSON *reply = cJSON_CreateObject();
    if (!reply)
        return NULL;
    /* The id text is embedded as printed: parsing and printing it again would
     * round integers above 10^15 to cJSON's 15 significant digits. */
    cJSON_AddItemToObject(reply, "id", id_text ? cJSON_CreateRaw(id_text) : cJSON_CreateNull());
    cJSON_AddFalseToObject(reply, "ok");
    cJSON *err = cJSON_AddObjectToObject(reply, "error");
    cJSON_AddStringToObject(err, "code", proto_error_code(code));
    cJSON_AddStringToObject(err, "message", message);
    char *text = cJSON_PrintUnformatted(reply);
    cJSON_Delete(reply);
    return text;
}

void server_reply_error(conn *c, const cJSON *id, enum proto_error code, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    char *id_text = id_to_text(id);
    char *text = error_text(id_text, code, message);
    if (!text) {
        cJSON_free(id_text);
        log_error("server", "conn=%" PRIu64 " out of memory printing an error reply", c->number);
        return;
    }
    queue_text(c, text, id_text);
}

void server_reply_store_error(conn *c, const cJSON *id, int err, const char *what)
{
    switch (err) {
    case STORE_ERR_NOT_FOUND:
        server_reply_error(c, id, PROTO_ERR_NOT_FOUND, "%s: not found", what);
        break;
    case STORE_ERR_STALE:
        server_reply_error(c, id, PROTO_ERR_STALE_LEASE,
                           "%s: the lease is not the trial's current one; drop this trial", what);
        break;
    case STORE_ERR_STATE:
        server_reply_error(c, id, PROTO_ERR_INVALID_STATE, "%s: not allowed in the current state", what);
        break;
    case STORE_ERR_FULL:
        server_reply_error(c, id, PROTO_ERR_DISK_FULL, "%s: the database is full; free disk space and retry",
                           what);
        break;
    case STORE_ERR_NOMEM:
        server_reply_error(c, id, PROTO_ERR_INTERNAL, "%s: out of memory", what);
        break;
    default:
        server_reply_error(c, id, PROTO_ERR_STORAGE, "%s: the database reported an error; see the daemon log",
                           what);
        break;
    }
}

void server_push(conn *c, cJSON *event)
{
    char *text = cJSON_PrintUnformatted(event);
    cJSON_Delete(event);
    if (text)
        queue_text(c, text, NULL);
}

void server_broadcast(server *srv, int64_t sweep, cJSON *event)
{
    if (srv->watcher_count == 0) {
        cJSON_Delete(event);
        return;
    }
    char *text = NULL;
    for (conn *c = srv->conns; c; c = c->next) {
        if (!c->watching || c->closing)
            continue;
        if (sweep != 0 && c->watch_sweep != 0 && c->watch_sweep != sweep)
            continue;
        if (!text && !(text = cJSON_PrintUnformatted(event)))
            break;
        char *copy = strdup(text);
        if (copy)
            queue_text(c, copy, NULL);
    }
    cJSON_free(text);
    cJSON_Delete(event);
}

/* ---- writing --------------------------------------------------------------- */

typedef struct write_req {
    uv_write_t req;
    conn *c;
    size_t len;
    char data[];
} write_req;

static void maybe_close_after_flush(conn *c)
{
    if (c->close_after_flush && !c->out_head && c->writing_bytes == 0)
        conn_close(c);
}

static void on_write(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    conn *c = w->c;
    c->writing_bytes -= w->len;
    free(w);
    if (status < 0) {
        if (!c->closing)
            log_info("server", "conn=%" PRIu64 " peer=%s write failed: %s; closing", c->number, c->peer,
                     uv_strerror(status));
        conn_close(c);
    } else {
        maybe_close_after_flush(c);
    }
    /* A close above may have queued events (a worker leaving) for watchers.
     * While stopping, no check callback flushes them any more. */
    if (c->srv->stopping)
        flush_dirty(c->srv);
}

static void free_items(conn *c)
{
    out_item *item = c->out_head;
    while (item) {
        out_item *next = item->next;
        free(item->text);
        cJSON_free(item->id_text);
        free(item);
        item = next;
    }
    c->out_head = c->out_tail = NULL;
}

/* Writes the queued items of c whose commit is durable, in order and in one
 * uv_write. The first item still waiting for a sync ends the batch. */
static void flush_conn(conn *c)
{
    if (c->closing || !c->out_head) {
        if (c->closing)
            free_items(c);
        return;
    }
    uint64_t synced = c->srv->synced_epoch;
    size_t total = 0;
    out_item *stop = c->out_head;
    while (stop && stop->epoch <= synced) {
        total += stop->len;
        stop = stop->next;
    }
    if (total == 0)
        return;
    if (c->writing_bytes + total > MAX_OUTPUT_BYTES) {
        log_warn("server", "conn=%" PRIu64 " peer=%s has %zu bytes of unread output; closing it as too slow",
                 c->number, c->peer, c->writing_bytes + total);
        free_items(c);
        conn_close(c);
        return;
    }
    write_req *w = malloc(sizeof(*w) + total);
    if (!w) {
        log_error("server", "conn=%" PRIu64 " out of memory writing %zu bytes; closing", c->number, total);
        free_items(c);
        conn_close(c);
        return;
    }
    size_t off = 0;
    while (c->out_head != stop) {
        out_item *item = c->out_head;
        memcpy(w->data + off, item->text, item->len);
        off += item->len;
        c->out_head = item->next;
        free(item->text);
        cJSON_free(item->id_text);
        free(item);
    }
    if (!c->out_head)
        c->out_tail = NULL;
    if (c->sink) {
        c->sink(c->sink_arg, w->data, total);
        free(w);
        return;
    }
    w->c = c;
    w->len = total;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)total);
    int rc = uv_write(&w->req, &c->h.stream, &buf, 1, on_write);
    if (rc < 0) {
        free(w);
        log_info("server", "conn=%" PRIu64 " write failed: %s; closing", c->number, uv_strerror(rc));
        conn_close(c);
        return;
    }
    c->writing_bytes += total;
}

/* After a failed commit: replies that depended on it become errors, events
 * produced by it are dropped. */
static void fail_uncommitted(server *srv, int err)
{
    enum proto_error code = err == STORE_ERR_FULL ? PROTO_ERR_DISK_FULL : PROTO_ERR_STORAGE;
    const char *message = err == STORE_ERR_FULL ? "the database is full; nothing was stored; free disk space and retry"
                                                : "the commit failed; nothing was stored; see the daemon log";
    /* The transaction may have spanned several loop iterations, so output
     * of it can sit on any connection, parked or not. */
    uint64_t failed = srv->commit_epoch + 1;
    for (conn *c = srv->conns; c; c = c->next) {
        out_item **link = &c->out_head;
        c->out_tail = NULL;
        while (*link) {
            out_item *item = *link;
            if (item->epoch == failed) {
                /* A parked connection must be flushed again too, or its
                 * error replies would wait for a later successful sync. */
                mark_dirty(c);
            }
            if (item->epoch == failed && !item->id_text) {
                *link = item->next;
                free(item->text);
                free(item);
                continue;
            }
            if (item->epoch == failed) {
                item->epoch = 0;
                char *text = error_text(item->id_text, code, message);
                size_t len = text ? strlen(text) : 0;
                char *line = text ? malloc(len + 2) : NULL;
                if (line) {
                    memcpy(line, text, len);
                    line[len] = '\n';
                    line[len + 1] = '\0';
                    free(item->text);
                    item->text = line;
                    item->len = len + 1;
                }
                cJSON_free(text);
            }
            c->out_tail = item;
            link = &item->next;
        }
    }
}

/* ---- durable acknowledgements ---------------------------------------------- */

static void sync_start(server *srv);

/* Writes what c may write now; output still waiting for a sync parks c until
 * sync_done releases it. */
static void flush_or_park(conn *c)
{
    flush_conn(c);
    if (!c->closing && c->out_head && !c->parked) {
        c->parked = 1;
        c->parked_next = c->srv->parked_head;
        c->srv->parked_head = c;
    }
    maybe_close_after_flush(c);
}

/* Writes the output of parked connections that synced_epoch now allows;
 * what still waits parks again. */
static void release_parked(server *srv)
{
    conn *c = srv->parked_head;
    srv->parked_head = NULL;
    while (c) {
        conn *next = c->parked_next;
        c->parked = 0;
        c->parked_next = NULL;
        flush_or_park(c);
        c = next;
    }
}

/* Pool thread: no loop or connection state is touched here. */
static void sync_work(uv_work_t *req)
{
    server *srv = req->data;
    srv->sync_errno = store_wal_sync(srv->st);
}

/* Loop thread, after sync_work: the commits up to sync_target are durable,
 * so the output that waited for them is written now. */
static void sync_done(uv_work_t *req, int status)
{
    server *srv = req->data;
    srv->sync_busy = 0;
    srv->syncs++;
    srv->sync_ns += uv_hrtime() - srv->sync_started_ns;
    int err = status < 0 ? -status : srv->sync_errno;
    if (err != 0) {
        /* After a failed fdatasync the kernel may have dropped the dirty
         * pages, and a retry can report success without writing them. The
         * commits cannot be promised durable, and replying with errors
         * would claim they did not happen: stop, and let the restart recover
         * from what reached the disk. */
        log_error("server", "syncing the WAL failed: %s; commits %" PRIu64 " to %" PRIu64
                  " cannot be acknowledged; exiting so a restart recovers from the disk",
                  strerror(err), srv->synced_epoch + 1, srv->sync_target);
        _exit(3);
    }
    srv->synced_epoch = srv->sync_target;

    /* While stopping, no check callback runs any more: commit what the
     * last iterations wrote, start its sync and write what is ready here. */
    if (srv->stopping)
        flush_all(srv, 1);
    release_parked(srv);
    sync_start(srv);
}

/* Starts a sync covering every commit so far, unless one is in flight (its
 * completion starts the next). */
static void sync_start(server *srv)
{
    if (srv->sync_busy || srv->synced_epoch == srv->commit_epoch)
        return;
    srv->sync_target = srv->commit_epoch;
    srv->sync_started_ns = uv_hrtime();
    srv->sync_work.data = srv;
    int rc = uv_queue_work(srv->loop, &srv->sync_work, sync_work, sync_done);
    if (rc == 0) {
        srv->sync_busy = 1;
        return;
    }
    /* libuv refuses only invalid arguments; sync in place rather than hold
     * the replies forever. */
    log_warn("server", "queueing a WAL sync failed: %s; syncing on the loop thread", uv_strerror(rc));
    srv->sync_busy = 1;
    sync_work(&srv->sync_work);
    sync_done(&srv->sync_work, 0);
}

/* After a successful commit: in durable mode the output waits for a sync,
 * otherwise the commit is acknowledged at once. */
static void committed(server *srv)
{
    srv->commit_epoch++;
    if (store_durable(srv->st)) {
        sync_start(srv);
        return;
    }
    srv->synced_epoch = srv->commit_epoch;
    release_parked(srv);
}

/* Writes the output of every dirty connection. Closing a connection can
 * queue events for others, so it repeats until the list stays empty. */
static void flush_dirty(server *srv)
{
    while (srv->dirty_head) {
        conn *c = srv->dirty_head;
        srv->dirty_head = NULL;
        while (c) {
            conn *next = c->dirty_next;
            c->dirty = 0;
            c->dirty_next = NULL;
            flush_or_park(c);
            c = next;
        }
    }
}

/* The end of every loop iteration: serve held leases, commit, write. In
 * durable mode the commit waits while a WAL sync is in flight, and the
 * transaction takes the next iterations' writes too. Their replies would
 * wait for the next sync anyway, and one commit of the larger batch writes
 * each changed page to the WAL once instead of once per iteration. sync_done
 * is followed by this check callback in the same iteration, which commits. */
static void flush_all(server *srv, int force_commit)
{
    if (srv->waiters_ready && !srv->stopping)
        server_serve_waiters(srv);
    int commit_now = force_commit || !srv->sync_busy || !store_durable(srv->st);
    if (store_in_transaction(srv->st) && commit_now) {
        uint64_t start_ns = uv_hrtime();
        int err = store_commit(srv->st);
        srv->commit_ns += uv_hrtime() - start_ns;
        if (srv->batch_requests > srv->max_batch)
            srv->max_batch = srv->batch_requests;
        srv->batch_requests = 0;
        if (err != 0) {
            log_error("server", "group commit failed (%d); replying with an error to the requests it contained", err);
            fail_uncommitted(srv, err);
        } else {
            committed(srv);
        }
    }
    flush_dirty(srv);
    if (srv->idle_active) {
        uv_idle_stop(&srv->idle);
        srv->idle_active = 0;
    }
}

static void on_check(uv_check_t *handle) { flush_all(handle->data, 0); }

/* ---- connections ----------------------------------------------------------- */

static void on_close(uv_handle_t *handle)
{
    conn *c = handle->data;
    server *srv = c->srv;
    free_items(c);
    linebuf_free(&c->in);
    free(c->held);
    cJSON_Delete(c->wait_id);
    /* Unlink from the dirty and parked lists if it is still there. */
    for (conn **link = &srv->dirty_head; *link; link = &(*link)->dirty_next) {
        if (*link == c) {
            *link = c->dirty_next;
            break;
        }
    }
    for (conn **link = &srv->parked_head; c->parked && *link; link = &(*link)->parked_next) {
        if (*link == c) {
            *link = c->parked_next;
            break;
        }
    }
    free(c);
}

static void wait_list_remove(server *srv, conn *c)
{
    if (!c->waiting)
        return;
    conn *prev = NULL;
    for (conn *w = srv->wait_head; w; prev = w, w = w->wait_next) {
        if (w == c) {
            if (prev)
                prev->wait_next = w->wait_next;
            else
                srv->wait_head = w->wait_next;
            if (srv->wait_tail == w)
                srv->wait_tail = prev;
            break;
        }
    }
    c->waiting = 0;
    c->wait_next = NULL;
}

/* Closes c: a worker's held trials are requeued (unless the daemon is
 * stopping, when they wait for the restart grace instead). Memory is freed in
 * on_close. */
static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    server *srv = c->srv;
    wait_list_remove(srv, c);
    if (c->watching)
        srv->watcher_count--;
    if (c->role == ROLE_WORKER)
        server_worker_gone(srv, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->conn_count--;
    if (!uv_is_closing((uv_handle_t *)&c->h.stream))
        uv_close((uv_handle_t *)&c->h.stream, on_close);
}

void server_close_after_flush(conn *c)
{
    uv_read_stop(&c->h.stream);
    c->close_after_flush = 1;
}

/* Replies with an error, stops reading and closes once the reply is out. */
static void reject_and_close(conn *c, const cJSON *id, enum proto_error code, const char *message)
{
    server_reply_error(c, id, code, "%s", message);
    server_close_after_flush(c);
}

/* Returns 1 when the text nests deeper than max_depth. Strings are skipped
 * with their escapes, so brackets inside strings do not count. */
static int too_deep(const char *text, size_t len, int max_depth)
{
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (in_string) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_string = 0;
        } else if (ch == '"') {
            in_string = 1;
        } else if (ch == '{' || ch == '[') {
            if (++depth > max_depth)
                return 1;
        } else if (ch == '}' || ch == ']') {
            depth--;
        }
    }
    return 0;
}

/* Returns the offset of the first NUL byte or invalid UTF-8 sequence, or
 * len when text is valid UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF) without a NUL byte. JSON text must be UTF-8
 * (RFC 8259, section 8.1). cJSON does not check it, so it would store and
 * echo invalid bytes, and it silently cuts strings at a NUL byte. */
static size_t utf8_valid_prefix(const unsigned char *text, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char b = text[i];
        if (b == 0)
            return i;
        if (b < 0x80) {
            i++;
            continue;
        }

        /* The sequence length and the range of the second byte, which
         * excludes overlong forms, surrogates and code points past U+10FFFF. */
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) {
            n = 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            n = 3;
            if (b == 0xE0)
                lo = 0xA0;
            else if (b == 0xED)
                hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            n = 4;
            if (b == 0xF0)
                lo = 0x90;
            else if (b == 0xF4)
                hi = 0x8F;
        } else {
            return i;
        }
        if (len - i < n || text[i + 1] < lo || text[i + 1] > hi)
            return i;
        for (size_t k = 2; k < n; k++)
            if (text[i + k] < 0x80 || text[i + k] > 0xBF)
                return i;
        i += n;
    }
    return len;
}

/* Constant-time comparison: the time depends on the lengths only. */
int server_token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t n = la > lb ? la : lb;
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < la ? (unsigned char)a[i] : 0;
        unsigned char y = i < lb ? (unsigned char)b[i] : 0;
        diff |= (unsigned char)(x ^ y);
    }
    return diff == 0;
}

/* Logs a failed authentication at most once per second, counting the rest. */
void server_log_auth_failure(server *srv, conn *c, const char *why)
{
    uint64_t now = uv_now(srv->loop);
    if (srv->auth_fail_logged_ms != 0 && now - srv->auth_fail_logged_ms < 1000) {
        srv->auth_fail_suppressed++;
        return;
    }
    log_warn("server", "conn=%" PRIu64 " peer=%s rejected: %s (%" PRIu64 " more rejections not logged)", c->number,
             c->peer, why, srv->auth_fail_suppressed);
    srv->auth_fail_logged_ms = now;
    srv->auth_fail_suppressed = 0;
}

static void log_bad_line(conn *c, const char *what, const char *line, size_t len)
{
    char sample[200];
    log_warn("server", "conn=%" PRIu64 " peer=%s %s; closing; line starts \"%s\"", c->number, c->peer, what,
             log_escape(line, len, 48, sample, sizeof(sample)));
}

/* Parses and dispatches one complete line. */
static void process_line(conn *c, char *line, size_t len)
{
    server *srv = c->srv;
    if (len == 0)
        return; /* blank lines are ignored */
    if (too_deep(line, len, PROTO_MAX_DEPTH)) {
        log_bad_line(c, "sent JSON nested deeper than 64 levels", line, len);
        reject_and_close(c, NULL, PROTO_ERR_TOO_DEEP, "the JSON nesting exceeds 64 levels; flatten the request");
        return;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        log_bad_line(c, "sent a line that is not a JSON object", line, len);
        cJSON_Delete(root);
        reject_and_close(c, NULL, PROTO_ERR_BAD_JSON,
                         "the line is not a valid JSON object; send one JSON object per line");
        return;
    }
    size_t valid = utf8_valid_prefix((const unsigned char *)line, len);
    if (valid < len) {
        char what[96];
        snprintf(what, sizeof(what), "sent a line with a NUL byte or invalid UTF-8 at byte %zu", valid);
        log_bad_line(c, what, line, len);
        server_reply_error(c, NULL, PROTO_ERR_BAD_JSON,
                           "byte %zu of the line is a NUL byte or not valid UTF-8; send UTF-8 JSON", valid);
        cJSON_Delete(root);
        server_close_after_flush(c);
        return;
    }
    request req = {.c = c, .root = root, .line = line, .len = len};
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (id && (cJSON_IsNumber(id) || cJSON_IsString(id)))
        req.id = id;
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(root, "op");

    if (!req.id) {
        server_reply_error(c, NULL, PROTO_ERR_BAD_REQUEST, "id: missing or not a number or string; add \"id\": 1");
    } else if (!cJSON_IsString(op)) {
        server_reply_error(c, req.id, PROTO_ERR_BAD_REQUEST, "op: missing or not a string; add \"op\": \"hello\"");
    } else if (c->is_tcp && !c->authed && strcmp(op->valuestring, "hello") != 0) {
        server_log_auth_failure(srv, c, "first request was not hello with a token");
        reject_and_close(c, req.id, PROTO_ERR_UNAUTHORIZED,
                         "a TCP connection must start with hello carrying the token from the token file");
    } else if (srv->stopping) {
        server_reply_error(c, req.id, PROTO_ERR_SHUTTING_DOWN, "the daemon is shutting down; retry later");
    } else {
        const op_entry *entry = bsearch(op->valuestring, op_table, sizeof(op_table) / sizeof(op_table[0]),
                                        sizeof(op_table[0]), op_compare);
        if (!entry) {
            char sample[100];
            server_reply_error(c, req.id, PROTO_ERR_UNKNOWN_OP, "op \"%s\" is unknown; see docs/PROTOCOL.md",
                               log_escape(op->valuestring, strlen(op->valuestring), 32, sample, sizeof(sample)));
        } else if (entry->worker_only && c->role != ROLE_WORKER) {
            server_reply_error(c, req.id, PROTO_ERR_NOT_WORKER,
                               "op %s needs hello with \"role\": \"worker\" first", entry->name);
        } else {
            srv->requests++;
            srv->batch_requests++;
            entry->handler(&req);
        }
    }
    cJSON_Delete(root);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    /* Reads are consumed before the callback returns, so one buffer serves
     * every connection. */
    buf->base = read_buffer;
    buf->len = sizeof(read_buffer);
}

/* Buffers bytes from c's peer and dispatches every complete line. */
static void conn_input(conn *c, const char *data, size_t n)
{
    uint64_t now = uv_now(c->srv->loop);
    c->last_input_ms = now;
    if (c->role == ROLE_WORKER)
        c->last_heard_ms = now;

    int rc = linebuf_append(&c->in, data, n);
    if (rc == -E2BIG) {
        log_bad_line(c, "sent a line longer than --max-line-bytes", c->in.data + c->in.start,
                     linebuf_pending(&c->in));
        reject_and_close(c, NULL, PROTO_ERR_LINE_TOO_LONG,
                         "the line exceeds the maximum line length; split the request");
        return;
    }
    if (rc != 0) {
        log_error("server", "conn=%" PRIu64 " out of memory buffering input; closing", c->number);
        conn_close(c);
        return;
    }
    char *line;
    size_t len;
    while (!c->closing && !c->close_after_flush && (rc = linebuf_next(&c->in, &line, &len)) == 1)
        process_line(c, line, len);
    if (rc == -E2BIG && !c->closing && !c->close_after_flush) {
        log_warn("server", "conn=%" PRIu64 " peer=%s sent a line longer than --max-line-bytes; closing", c->number,
                 c->peer);
        reject_and_close(c, NULL, PROTO_ERR_LINE_TOO_LONG, "the line exceeds the maximum line length; split the request");
        return;
    }
    if (linebuf_pending(&c->in) == 0)
        c->partial_since_ms = 0;
    else if (c->partial_since_ms == 0)
        c->partial_since_ms = now;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = stream->data;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            log_info("server", "conn=%" PRIu64 " peer=%s read failed: %s", c->number, c->peer, uv_strerror((int)nread));
        conn_close(c);
        return;
    }
    conn_input(c, buf->base, (size_t)nread);
}

/* Allocates a connection with an initialised but unopened handle and links it
 * into srv. Returns NULL after logging when out of memory or libuv fails. */
static conn *conn_create(server *srv, int is_tcp)
{
    conn *c = calloc(1, sizeof(*c));
    if (!c || linebuf_init(&c->in, srv->opt.max_line_bytes) != 0) {
        free(c);
        log_error("server", "out of memory accepting a connection");
        return NULL;
    }
    c->srv = srv;
    c->is_tcp = is_tcp;
    int rc = is_tcp ? uv_tcp_init(srv->loop, &c->h.tcp) : uv_pipe_init(srv->loop, &c->h.pipe, 0);
    if (rc != 0) {
        linebuf_free(&c->in);
        free(c);
        log_error("server", "initialising a connection failed: %s", uv_strerror(rc));
        return NULL;
    }
    c->h.stream.data = c;
    c->number = ++srv->next_conn_number;
    c->last_input_ms = uv_now(srv->loop);
    snprintf(c->peer, sizeof(c->peer), "unix");
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->conn_count++;
    return c;
}

static void on_connection(uv_stream_t *listener, int status)
{
    server *srv = listener->data;
    if (status < 0) {
        log_error("server", "accepting a connection failed: %s", uv_strerror(status));
        return;
    }
    conn *c = conn_create(srv, listener == (uv_stream_t *)&srv->tcp_listener);
    if (!c)
        return;

    int rc = uv_accept(listener, &c->h.stream);
    if (rc != 0) {
        log_error("server", "accepting a connection failed: %s", uv_strerror(rc));
        conn_close(c);
        return;
    }
    if (c->is_tcp) {
        struct sockaddr_storage addr;
        int addr_len = sizeof(addr);
        if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&addr, &addr_len) == 0) {
            char host[INET6_ADDRSTRLEN] = "?";
            int port = 0;
            if (addr.ss_family == AF_INET6) {
                uv_ip6_name((struct sockaddr_in6 *)&addr, host, sizeof(host));
                port = ntohs(((struct sockaddr_in6 *)&addr)->sin6_port);
            } else {
                uv_ip4_name((struct sockaddr_in *)&addr, host, sizeof(host));
                port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
            }
            snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
        }
        uv_tcp_nodelay(&c->h.tcp, 1);
    } else {
        c->authed = 1;
    }
    if (srv->conn_count > srv->opt.max_connections) {
        /* At most one line per second, so a connection flood cannot flood the log. */
        uint64_t now = uv_now(srv->loop);
        if (srv->conn_limit_logged_ms == 0 || now - srv->conn_limit_logged_ms >= 1000) {
            log_warn("server", "conn=%" PRIu64 " peer=%s rejected: %zu connections is the maximum (--max-connections) "
                     "(%" PRIu64 " more rejections not logged)", c->number, c->peer, srv->opt.max_connections,
                     srv->conn_limit_suppressed);
            srv->conn_limit_logged_ms = now;
            srv->conn_limit_suppressed = 0;
        } else {
            srv->conn_limit_suppressed++;
        }
        server_reply_error(c, NULL, PROTO_ERR_TOO_MANY_CONNECTIONS,
                           "the daemon serves at most %zu connections; retry later", srv->opt.max_connections);
        c->close_after_flush = 1;
        return;
    }
    rc = uv_read_start(&c->h.stream, on_alloc, on_read);
    if (rc != 0) {
        log_error("server", "conn=%" PRIu64 " starting to read failed: %s", c->number, uv_strerror(rc));
        conn_close(c);
    }
}

/* ---- timers ---------------------------------------------------------------- */

static void on_tick(uv_timer_t *timer)
{
    server *srv = timer->data;
    uint64_t now = uv_now(srv->loop);
    uint64_t idle_ms = (uint64_t)(srv->opt.idle_timeout_s * 1000.0);

    conn *next;
    for (conn *c = srv->conns; c; c = next) {
        next = c->next;
        if (c->closing || c->close_after_flush)
            continue;
        int partial = c->partial_since_ms != 0 && now - c->partial_since_ms >= idle_ms;
        int idle = c->role != ROLE_WORKER && !c->watching && !c->waiting && now - c->last_input_ms >= idle_ms;
        if (partial || idle) {
            log_info("server", "conn=%" PRIu64 " peer=%s %s for %.1f s (--idle-timeout); closing", c->number,
                     c->peer, partial ? "left a partial line" : "sent nothing", srv->opt.idle_timeout_s);
            reject_and_close(c, NULL, PROTO_ERR_TIMEOUT,
                             partial ? "the line was not completed in time; send whole lines"
                                     : "the connection was idle too long; reconnect when needed");
        }
    }
    server_check_timeouts(srv, now);

    /* A requeue above opened a transaction and may have readied a trial for
     * a held lease request: commit and serve it in this iteration instead of
     * after the poll, which would wait for the next tick. */
    if (store_in_transaction(srv->st) || srv->waiters_ready)
        wake_loop(srv);
}

/* ---- start and stop -------------------------------------------------------- */

static int listen_unix(server *srv)
{
    const char *path = srv->opt.socket_path;
    /* The caller holds the state lock, so a socket file here is stale. */
    if (unlink(path) != 0 && errno != ENOENT)
        log_warn("server", "removing the stale socket %s failed: %s", path, strerror(errno));
    int rc = uv_pipe_init(srv->loop, &srv->unix_listener, 0);
    if (rc != 0)
        return rc;
    srv->unix_listener.data = srv;
    srv->unix_open = 1;
    mode_t old = umask(0177); /* the socket is created mode 0600 */
    rc = uv_pipe_bind(&srv->unix_listener, path);
    umask(old);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->unix_listener, 511, on_connection);
    if (rc != 0)
        log_error("server", "listening on unix:%s failed: %s; check the directory and path length (max 107 bytes)",
                  path, uv_strerror(rc));
    return rc;
}

static int listen_tcp(server *srv, char *bound, size_t bound_size)
{
    const char *address = srv->opt.listen_address;
    char host[256];
    const char *colon = strrchr(address, ':');
    if (!colon || colon == address || (size_t)(colon - address) >= sizeof(host)) {
        log_error("server", "--listen %s is invalid; use HOST:PORT such as 127.0.0.1:7370", address);
        return UV_EINVAL;
    }
    memcpy(host, address, (size_t)(colon - address));
    host[colon - address] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) {
        log_error("server", "--listen %s has an invalid port; use 0-65535", address);
        return UV_EINVAL;
    }
    /* Accept [::1]:PORT for IPv6. */
    if (host[0] == '[') {
        size_t n = strlen(host);
        if (n < 2 || host[n - 1] != ']') {
            log_error("server", "--listen %s is invalid; write IPv6 as [::1]:PORT", address);
            return UV_EINVAL;
        }
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&addr);
    if (rc != 0)
        rc = uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&addr);
    if (rc != 0) {
        log_error("server", "--listen %s: %s is not a numeric IPv4 or IPv6 address", address, host);
        return rc;
    }
    rc = uv_tcp_init(srv->loop, &srv->tcp_listener);
    if (rc != 0)
        return rc;
    srv->tcp_listener.data = srv;
    srv->tcp_open = 1;
    rc = uv_tcp_bind(&srv->tcp_listener, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->tcp_listener, 511, on_connection);
    if (rc != 0) {
        log_error("server", "listening on tcp:%s failed: %s", address, uv_strerror(rc));
        return rc;
    }
    int len = sizeof(addr);
    rc = uv_tcp_getsockname(&srv->tcp_listener, (struct sockaddr *)&addr, &len);
    if (rc != 0)
        return rc;
    char name[64];
    if (addr.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&addr, name, sizeof(name));
        snprintf(bound, bound_size, " tcp:[%s]:%d", name, ntohs(((struct sockaddr_in6 *)&addr)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&addr, name, sizeof(name));
        snprintf(bound, bound_size, " tcp:%s:%d", name, ntohs(((struct sockaddr_in *)&addr)->sin_port));
    }
    srv->has_tcp = 1;
    return 0;
}

int server_init(server *srv, uv_loop_t *loop, store *st, const server_options *opt)
{
    memset(srv, 0, sizeof(*srv));
    srv->loop = loop;
    srv->st = st;
    srv->opt = *opt;

    int rc = uv_check_init(loop, &srv->check);
    if (rc == 0)
        rc = uv_idle_init(loop, &srv->idle);
    if (rc == 0)
        rc = uv_timer_init(loop, &srv->tick);
    if (rc != 0)
        return rc;
    srv->check.data = srv->idle.data = srv->tick.data = srv;
    uv_unref((uv_handle_t *)&srv->check);
    rc = uv_check_start(&srv->check, on_check);
    if (rc != 0)
        return rc;

    int err = server_load_orphans(srv);
    if (err != 0)
        return err;

    /* Tick often enough to notice a timeout within a quarter of it. */
    double shortest = srv->opt.heartbeat_timeout_s < srv->opt.idle_timeout_s ? srv->opt.heartbeat_timeout_s
                                                                            : srv->opt.idle_timeout_s;
    uint64_t tick_ms = (uint64_t)(shortest * 1000.0 / 4.0);
    if (tick_ms < 20)
        tick_ms = 20;
    if (tick_ms > 1000)
        tick_ms = 1000;
    return uv_timer_start(&srv->tick, on_tick, tick_ms, tick_ms);
}

int server_start(server *srv, uv_loop_t *loop, store *st, const server_options *opt)
{
    int rc = server_init(srv, loop, st, opt);
    if (rc != 0)
        return rc;
    rc = listen_unix(srv);
    if (rc != 0)
        return rc;
    char bound[128] = "";
    if (srv->opt.listen_address) {
        rc = listen_tcp(srv, bound, sizeof(bound));
        if (rc != 0)
            return rc;
    }
    log_info("server", "listening on unix:%s%s", srv->opt.socket_path, bound);
    return 0;
}

static void on_handle_closed(uv_handle_t *handle) { (void)handle; }

void server_stop(server *srv)
{
    if (srv->stopping)
        return;
    log_info("server", "stopping: no new connections; telling %zu connections", srv->conn_count);

    /* Stop accepting. */
    if (srv->unix_open && !uv_is_closing((uv_handle_t *)&srv->unix_listener))
        uv_close((uv_handle_t *)&srv->unix_listener, on_handle_closed);
    if (srv->tcp_open && !uv_is_closing((uv_handle_t *)&srv->tcp_listener))
        uv_close((uv_handle_t *)&srv->tcp_listener, on_handle_closed);
    if (srv->unix_open && unlink(srv->opt.socket_path) != 0 && errno != ENOENT)
        log_warn("server", "removing %s failed: %s", srv->opt.socket_path, strerror(errno));

    /* Tell workers and reply to held lease requests; running trials stay running so
     * their workers can re-present them after a restart. */
    for (conn *c = srv->conns; c; c = c->next) {
        if (c->role == ROLE_WORKER && !c->closing) {
            cJSON *event = cJSON_CreateObject();
            cJSON_AddStringToObject(event, "event", "shutdown");
            server_push(c, event);
        }
        if (c->waiting) {
            server_reply_error(c, c->wait_id, PROTO_ERR_SHUTTING_DOWN,
                               "the daemon is shutting down; keep the worker running and reconnect later");
        }
    }
    while (srv->wait_head)
        wait_list_remove(srv, srv->wait_head);

    flush_all(srv, 1);
    srv->stopping = 1;

    /* Close every connection once its output is written. */
    conn *next;
    for (conn *c = srv->conns; c; c = next) {
        next = c->next;
        uv_read_stop(&c->h.stream);
        c->close_after_flush = 1;
        maybe_close_after_flush(c);
    }
    uv_timer_stop(&srv->tick);
    uv_close((uv_handle_t *)&srv->tick, on_handle_closed);
    uv_check_stop(&srv->check);
    uv_close((uv_handle_t *)&srv->check, on_handle_closed);
    if (srv->idle_active)
        uv_idle_stop(&srv->idle);
    uv_close((uv_handle_t *)&srv->idle, on_handle_closed);
    free(srv->orphans);
    srv->orphans = NULL;
    srv->orphan_count = 0;
}

/* ---- connections without a socket ----------------------------------------- */

conn *server_conn_open_detached(server *srv, int is_tcp, server_output_fn sink, void *sink_arg)
{
    conn *c = conn_create(srv, is_tcp);
    if (!c)
        return NULL;
    snprintf(c->peer, sizeof(c->peer), "detached");
    c->authed = !is_tcp;
    c->sink = sink;
    c->sink_arg = sink_arg;
    return c;
}

void server_conn_feed(conn *c, const char *data, size_t len)
{
    if (!c->closing && !c->close_after_flush)
        conn_input(c, data, len);
}

void server_conn_close(conn *c) { conn_close(c); }

void server_flush(server *srv) { flush_all(srv, 1); }

/* ---- request field readers ------------------------------------------------- */

int server_json_int(const cJSON *item, int64_t *out)
{
    if (!cJSON_IsNumber(item))
        return 0;
    /* The range is checked before the cast, because converting a double
     * outside int64_t's range (1e300, inf) is undefined behaviour. */
    double v = item->valuedouble;
    if (!(v >= -9007199254740992.0 && v <= 9007199254740992.0) || v != floor(v))
        return 0;
    *out = (int64_t)v;
    return 1;
}

int req_int(request *req, const char *field, int64_t *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(req->root, field);
    if (!item)
        return 0;
    if (!server_json_int(item, out)) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST,
                           "%s: expected an integer from -2^53 to 2^53", field);
        return -1;
    }
    return 1;
}

int req_string(request *req, const char *field, const char **out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(req->root, field);
    if (!item || cJSON_IsNull(item))
        return 0;
    if (!cJSON_IsString(item)) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST, "%s: expected a string", field);
        return -1;
    }
    *out = item->valuestring;
    return 1;
}

int server_json_loss(const cJSON *item, double *out)
{
    if (cJSON_IsNumber(item)) {
        *out = item->valuedouble;
        return 1;
    }
    if (!cJSON_IsString(item))
        return 0;
    if (strcmp(item->valuestring, "nan") == 0)
        *out = NAN;
    else if (strcmp(item->valuestring, "inf") == 0)
        *out = INFINITY;
    else if (strcmp(item->valuestring, "-inf") == 0)
        *out = -INFINITY;
    else
        return 0;
    return 1;
}

int req_loss(request *req, const char *field, double *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(req->root, field);
    if (!item || cJSON_IsNull(item))
        return 0;
    if (server_json_loss(item, out))
        return 1;
    server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST,
                       "%s: expected a number or one of \"nan\", \"inf\", \"-inf\"", field);
    return -1;
}

int req_bool(request *req, const char *field, int *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(req->root, field);
    if (!item)
        return 0;
    if (!cJSON_IsBool(item)) {
        server_reply_error(req->c, req->id, PROTO_ERR_BAD_REQUEST, "%s: expected true or false", field);
        return -1;
    }
    *out = cJSON_IsTrue(item);
    return 1;
}
