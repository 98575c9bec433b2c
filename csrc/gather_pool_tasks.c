/*
 * What fastload._gather_pool runs without the GIL: a task's bounds-checked gather into its slot
 * and the first-touch checksums of the blocks it read, the threads' loop, and the same work done
 * by the waiting consumer. Plain C and pthreads: no Python object is touched here.
 */
#include "gather_pool.h" /* first: Python.h sets the feature macros */

#include <string.h>
#include <time.h>

#define XXH_INLINE_ALL
#include "third_party/xxhash/xxhash.h"

static void run_task(Pool *p, Py_ssize_t slot, Slot *result) {
    int64_t *idx = p->indices + slot * p->batch_size;
    int64_t *blocks = p->blocks + slot * p->batch_size;
    Py_ssize_t n = result->n;
    if (result->batch >= 0) keyed_batch(&p->order, result->batch, idx); /* set before the task, fixed while out */
    Py_ssize_t bad = first_out_of_range(&p->tables, idx, n);
    if (bad >= 0) {
        result->status = OUT_OF_RANGE;
        result->position = bad;
        return;
    }
    for (int f = 0; f < p->n_fields; f++) {
        const Field *field = &p->fields[f];
        char *out = p->outs[f * p->n_slots + slot];
        int64_t total = 0, head = arena_header(n), room = n * field->row_bytes - head;
        if (field->itemsize > 0)
            bad = gather_rows_multi(&p->tables, field->column, idx, n, field->itemsize, out, f == 0 ? blocks : NULL);
        else /* the arena: offsets at its start, the payloads after its header (validity unused: no nulls) */
            bad = gather_var_rows_multi(&p->tables, field->column, idx, n, (int64_t *)(void *)out, out + head,
                                        room, f == 0 ? blocks : NULL, p->scratch + slot * 3 * p->batch_size,
                                        &total);
        if (bad >= 0 || (field->itemsize == 0 && total > room)) { /* too large for the arena: Python sends it
                                                                    * beside the slot */
            result->status = bad >= 0 ? OUTSIDE_BLOCK : TOO_LARGE;
            result->position = bad;
            result->field = f;
            return;
        }
    }
    /* First touch: a block's checksum is checked before a batch that read it is handed out (in
     * the thread, not the consumer, so an epoch's first pass costs the training loop nothing); two
     * threads may check the same block at once, which only repeats the work. */
    for (Py_ssize_t i = 0; p->verified != NULL && p->n_fields > 0 && i < n; i++) {
        int64_t b = blocks[i];
        if (__atomic_load_n(&p->verified[b], __ATOMIC_RELAXED)) continue; /* flags race benignly */
        const int64_t lo = p->tables.blo[b], hi = p->tables.bhi[b];
        if (XXH3_64bits((const void *)(intptr_t)lo, (size_t)(hi - lo)) != p->expected[b]) {
            result->status = CORRUPT;
            result->position = i;
            return;
        }
        __atomic_store_n(&p->verified[b], 1, __ATOMIC_RELAXED);
    }
    result->status = OK;
}

int pool_woken(Pool *p) {
    if (p->waiting == -2) return p->out == 0;
    return p->waiting >= 0 && p->slots[p->waiting].state == DONE && (p->also < 0 || p->slots[p->also].state == DONE);
}

/* Take the oldest queued task and run it as `worker`: called and returns with the lock held, which
 * is released during the task. */
static void serve(Pool *p, int worker) {
    Py_ssize_t slot = p->fifo[p->head];
    p->head = (p->head + 1) % p->n_slots;
    p->count--;
    Slot result = p->slots[slot];
    p->slots[slot].state = RUNNING;
    pthread_mutex_unlock(&p->lock);
    result.worker = worker;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_task(p, slot, &result);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    result.busy = seconds_between(&t0, &t1);
    pthread_mutex_lock(&p->lock);
    if (p->tasks == 0 || result.busy < p->task_s) p->task_s = result.busy; /* the window's quickest task, for the
                                                                            * seats' mode (gather_pool_seats.c) */
    p->tasks++;
    result.state = DONE;
    p->slots[slot] = result;
    p->out--;
    if (p->sleeping && pool_woken(p)) {
        p->sleeping = 0;
        pthread_cond_signal(&p->done);
    }
}

int pool_run_queued(Pool *p) {
    if (p->count == 0) return 0;
    serve(p, CONSUMER);
    return 1;
}

void *pool_worker_main(void *arg) {
    Start start = *(Start *)arg;
    free(arg);
    Pool *p = start.pool;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (seats_park(p, start.id)) continue; /* a spare while the consumer helps (gather_pool_seats.c) */
        if (p->stop) break;
        if (p->count == 0) {
            p->idle++;
            pthread_cond_wait(&p->work, &p->lock);
            p->idle--;
            if (p->waking > 0) p->waking--;
            continue;
        }
        serve(p, start.id);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}
