/* Threads for Shampoo's inverse roots and per-block work (see
 * optim_roots.h).
 *
 * Two groups of the same kind: the pool (n_threads - 1 threads that help the
 * caller through a synchronous batch) and the background group (one thread
 * that computes a batch while the caller trains). A group wakes its threads
 * by bumping a generation number under its mutex. Each thread then claims
 * items from the batch's atomic counter until none is left, and the last one
 * to finish signals the group idle. That mutex publishes the results.
 *
 * Thread indexes: 0 is the caller, 1 to n_threads - 1 the pool, n_threads
 * the background thread. Each index has its own root workspace.
 */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "matrix_root.h"
#include "optim_roots.h"

/* One batch: fn(ctx, item, thread) for every item, claimed one at a time
 * through next. */
typedef struct root_batch {
    optim_item_fn fn;
    void *ctx;
    size_t n_items;
    atomic_size_t next;
    atomic_int cancel;
} root_batch;

/* The context of a batch of root tasks. */
typedef struct root_tasks {
    optim_roots *roots;
    optim_root_task *tasks;
} root_tasks;

typedef struct root_group root_group;

typedef struct root_thread {
    root_group *group;
    pthread_t thread;
    int index;
} root_thread;

struct root_group {
    optim_roots *owner;
    pthread_mutex_t mutex;
    pthread_cond_t wake, idle;
    root_thread *threads;
    int n_threads, n_started;
    unsigned long generation;   /* bumped once per batch */
    int busy;                   /* threads still on the current batch */
    int stopping;
    int locks_ready;            /* mutex and conditions initialised */
    root_batch batch;
};

struct optim_roots {
    enum root_method method;
    double matrix_eps;
    unsigned int csr;           /* the creator's MXCSR, copied by every thread */
    int n_threads;              /* the caller and the pool */
    matrix_root_work **works;   /* one per thread index, n_threads + 1 */
    root_group pool;            /* helpers of optim_roots_run */
    root_group background;      /* precondition_async; n_threads 0 when off */
    root_tasks background_tasks;  /* the context of the background batch */
};

static void compute_task(const optim_roots *roots, matrix_root_work *work, optim_root_task *task)
{
    double residual = 0.0;
    int rc = matrix_root_inverse_fourth(work, roots->method, task->stat, task->n, roots->matrix_eps, task->out,
                                        &residual);
    task->rejected = rc < 0;
    task->residual = residual;
    if (rc == 0 && task->out32) {
        size_t count = (size_t)task->n * (size_t)task->n;
        for (size_t i = 0; i < count; i++)
            task->out32[i] = (float)task->out[i];
    }
}

static void run_root_task(void *ctx, size_t item, int thread)
{
    root_tasks *batch = ctx;
    compute_task(batch->roots, batch->roots->works[thread], &batch->tasks[item]);
}

/* Claims and runs items until the batch is empty or cancelled. */
static void drain_batch(root_batch *batch, int thread)
{
    for (;;) {
        if (atomic_load(&batch->cancel))
            return;
        size_t i = atomic_fetch_add(&batch->next, 1);
        if (i >= batch->n_items)
            return;
        batch->fn(batch->ctx, i, thread);
    }
}

static void *thread_main(void *arg)
{
    root_thread *self = arg;
    root_group *group = self->group;
    unsigned long seen = 0;

#if defined(__SSE__)
    _mm_setcsr(group->owner->csr);
#endif
    pthread_mutex_lock(&group->mutex);
    for (;;) {
        while (!group->stopping && group->generation == seen)
            pthread_cond_wait(&group->wake, &group->mutex);
        if (group->stopping)
            break;
        seen = group->generation;
        pthread_mutex_unlock(&group->mutex);

        drain_batch(&group->batch, self->index);

        pthread_mutex_lock(&group->mutex);
        if (--group->busy == 0)
            pthread_cond_broadcast(&group->idle);
    }
    pthread_mutex_unlock(&group->mutex);
    return NULL;
}

/* Publishes a batch and wakes every thread of the group. The previous batch
 * must have been waited for. */
static void group_submit(root_group *group, optim_item_fn fn, void *ctx, size_t n)
{
    pthread_mutex_lock(&group->mutex);
    assert(group->busy == 0);
    group->batch.fn = fn;
    group->batch.ctx = ctx;
    group->batch.n_items = n;
    atomic_store(&group->batch.next, 0);
    atomic_store(&group->batch.cancel, 0);
    group->busy = group->n_threads;
    group->generation++;
    pthread_cond_broadcast(&group->wake);
    pthread_mutex_unlock(&group->mutex);
}

static void group_wait(root_group *group)
{
    pthread_mutex_lock(&group->mutex);
    while (group->busy > 0)
        pthread_cond_wait(&group->idle, &group->mutex);
    pthread_mutex_unlock(&group->mutex);
}

/* Initialises the group and starts n threads, with thread indexes from
 * first_index on. Returns 0, or -1 with err set; a group that failed part
 * way is still safe to pass to group_stop. */
static int group_start(root_group *group, optim_roots *owner, int n, int first_index, const char *what,
                       char *err, size_t err_size)
{
    group->owner = owner;
    group->n_threads = n;
    if (pthread_mutex_init(&group->mutex, NULL) != 0 || pthread_cond_init(&group->wake, NULL) != 0 ||
        pthread_cond_init(&group->idle, NULL) != 0) {
        snprintf(err, err_size, "failed to initialise the Shampoo %s threads' locks", what);
        return -1;
    }
    group->locks_ready = 1;
    if (n == 0)
        return 0;
    group->threads = calloc((size_t)n, sizeof *group->threads);
    if (!group->threads) {
        snprintf(err, err_size, "out of memory creating %d Shampoo %s threads", n, what);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        root_thread *t = &group->threads[i];
        t->group = group;
        t->index = first_index + i;
        int rc = pthread_create(&t->thread, NULL, thread_main, t);
        if (rc != 0) {
            snprintf(err, err_size, "failed to start Shampoo %s thread %d of %d: %s; lower --threads", what,
                     i + 1, n, strerror(rc));
            return -1;
        }
        group->n_started++;
    }
    return 0;
}

/* Cancels the batch in flight, and stops and joins the started threads. */
static void group_stop(root_group *group)
{
    if (!group->locks_ready)
        return;
    pthread_mutex_lock(&group->mutex);
    atomic_store(&group->batch.cancel, 1);
    group->stopping = 1;
    pthread_cond_broadcast(&group->wake);
    pthread_mutex_unlock(&group->mutex);
    for (int i = 0; i < group->n_started; i++)
        pthread_join(group->threads[i].thread, NULL);
    free(group->threads);
    pthread_cond_destroy(&group->idle);
    pthread_cond_destroy(&group->wake);
    pthread_mutex_destroy(&group->mutex);
}

int optim_roots_create(optim_roots **out, int n_threads, int background, int max_side,
                       enum root_method method, double matrix_eps, char *err, size_t err_size)
{
    *out = NULL;
    optim_roots *roots = calloc(1, sizeof *roots);
    if (!roots) {
        snprintf(err, err_size, "out of memory creating the Shampoo root threads");
        return -1;
    }
    roots->method = method;
    roots->matrix_eps = matrix_eps;
#if defined(__SSE__)
    roots->csr = _mm_getcsr();
#endif
    roots->n_threads = n_threads > 1 ? n_threads : 1;

    /* Workspaces first, for every thread index, then the threads. */
    roots->works = calloc((size_t)roots->n_threads + 1, sizeof *roots->works);
    for (int i = 0; roots->works && i <= roots->n_threads; i++) {
        if (i == roots->n_threads && !background)
            break;
        roots->works[i] = matrix_root_work_create(max_side);
        if (!roots->works[i])
            break;
    }
    if (!roots->works || !roots->works[roots->n_threads - 1] || (background && !roots->works[roots->n_threads])) {
        snprintf(err, err_size, "out of memory creating %d root workspaces of side %d", roots->n_threads + 1,
                 max_side);
        optim_roots_free(roots);
        return -1;
    }
    if (group_start(&roots->pool, roots, roots->n_threads - 1, 1, "pool", err, err_size) < 0 ||
        group_start(&roots->background, roots, background ? 1 : 0, roots->n_threads, "background", err,
                    err_size) < 0) {
        optim_roots_free(roots);
        return -1;
    }
    *out = roots;
    return 0;
}

void optim_roots_free(optim_roots *roots)
{
    if (!roots)
        return;
    group_stop(&roots->background);
    group_stop(&roots->pool);
    for (int i = 0; roots->works && i <= roots->n_threads; i++)
        matrix_root_work_free(roots->works[i]);
    free(roots->works);
    free(roots);
}

void optim_roots_run_here(optim_roots *roots, optim_root_task *tasks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        compute_task(roots, roots->works[0], &tasks[i]);
}

void optim_roots_for_each(optim_roots *roots, optim_item_fn fn, void *ctx, size_t n)
{
    if (roots->pool.n_threads == 0 || n == 0) {
        for (size_t i = 0; i < n; i++)
            fn(ctx, i, 0);
        return;
    }

    /* The pool's threads and the caller each call BLAS or LAPACK; OpenBLAS
     * threads of their own would only compete with them for the cores. */
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    group_submit(&roots->pool, fn, ctx, n);
    drain_batch(&roots->pool.batch, 0);
    group_wait(&roots->pool);
    openblas_set_num_threads(blas_threads);
}

void optim_roots_run(optim_roots *roots, optim_root_task *tasks, size_t n)
{
    root_tasks batch = {roots, tasks};
    optim_roots_for_each(roots, run_root_task, &batch, n);
}

void optim_roots_start(optim_roots *roots, optim_root_task *tasks, size_t n)
{
    roots->background_tasks = (root_tasks){roots, tasks};
    group_submit(&roots->background, run_root_task, &roots->background_tasks, n);
}

void optim_roots_wait(optim_roots *roots)
{
    if (roots->background.n_threads > 0)
        group_wait(&roots->background);
}

int optim_roots_threads(const optim_roots *roots)
{
    return roots->n_threads;
}
