/* Threads for Shampoo's inverse roots (see optim_roots.h).
 *
 * Two groups of the same kind: the pool (n_threads - 1 threads that help the
 * caller through a synchronous batch) and the background group (one thread
 * that computes a batch while the caller trains). A group wakes its threads
 * by bumping a generation number under its mutex. Each thread then claims
 * tasks from the batch's atomic counter until none is left, and the last one
 * to finish signals the group idle. That mutex publishes the task results.
 */
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

/* One batch of tasks, claimed one at a time through next. */
typedef struct root_batch {
    optim_root_task *tasks;
    size_t n_tasks;
    atomic_size_t next;
    atomic_int cancel;
} root_batch;

typedef struct root_group root_group;

typedef struct root_thread {
    root_group *group;
    pthread_t thread;
    matrix_root_work *work;
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
    matrix_root_work *caller_work;
    root_group pool;            /* helpers of optim_roots_run */
    root_group background;      /* precondition_async; n_threads 0 when off */
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

/* Claims and computes tasks until the batch is empty or cancelled. */
static void drain_batch(const optim_roots *roots, matrix_root_work *work, root_batch *batch)
{
    for (;;) {
        if (atomic_load(&batch->cancel))
            return;
        size_t i = atomic_fetch_add(&batch->next, 1);
        if (i >= batch->n_tasks)
            return;
        compute_task(roots, work, &batch->tasks[i]);
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

        drain_batch(group->owner, self->work, &group->batch);

        pthread_mutex_lock(&group->mutex);
        if (--group->busy == 0)
            pthread_cond_broadcast(&group->idle);
    }
    pthread_mutex_unlock(&group->mutex);
    return NULL;
}

/* Publishes a batch and wakes every thread of the group. */
static void group_submit(root_group *group, optim_root_task *tasks, size_t n)
{
    pthread_mutex_lock(&group->mutex);
    group->batch.tasks = tasks;
    group->batch.n_tasks = n;
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

/* Initialises the group and starts n threads. Returns 0, or -1 with err set;
 * a group that failed part way is still safe to pass to group_stop. */
static int group_start(root_group *group, optim_roots *owner, int n, int max_side, const char *what,
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
        t->work = matrix_root_work_create(max_side);
        if (!t->work) {
            snprintf(err, err_size, "out of memory creating a root workspace of side %d for a Shampoo %s thread",
                     max_side, what);
            return -1;
        }
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

/* Cancels the batch in flight, stops and joins the started threads, and
 * frees their workspaces. */
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
    for (int i = 0; group->threads && i < group->n_threads; i++)
        matrix_root_work_free(group->threads[i].work);
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
    roots->caller_work = matrix_root_work_create(max_side);
    if (!roots->caller_work) {
        snprintf(err, err_size, "out of memory creating a root workspace of side %d", max_side);
        optim_roots_free(roots);
        return -1;
    }
    if (group_start(&roots->pool, roots, n_threads > 1 ? n_threads - 1 : 0, max_side, "pool", err,
                    err_size) < 0 ||
        group_start(&roots->background, roots, background ? 1 : 0, max_side, "background", err, err_size) < 0) {
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
    matrix_root_work_free(roots->caller_work);
    free(roots);
}

void optim_roots_run_here(optim_roots *roots, optim_root_task *tasks, size_t n)
{
    for (size_t i = 0; i < n; i++)
        compute_task(roots, roots->caller_work, &tasks[i]);
}

void optim_roots_run(optim_roots *roots, optim_root_task *tasks, size_t n)
{
    if (roots->pool.n_threads == 0 || n == 0) {
        optim_roots_run_here(roots, tasks, n);
        return;
    }

    /* The pool's threads and the caller each call LAPACK; OpenBLAS threads
     * of their own would only compete with them for the cores. */
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    group_submit(&roots->pool, tasks, n);
    drain_batch(roots, roots->caller_work, &roots->pool.batch);
    group_wait(&roots->pool);
    openblas_set_num_threads(blas_threads);
}

void optim_roots_start(optim_roots *roots, optim_root_task *tasks, size_t n)
{
    group_submit(&roots->background, tasks, n);
}

void optim_roots_wait(optim_roots *roots)
{
    if (roots->background.n_threads > 0)
        group_wait(&roots->background);
}

int optim_roots_threads(const optim_roots *roots)
{
    return roots->pool.n_threads + 1;
}
