/*
 * fastload._gather_pool: the consumer's wait for a slot's batch (or for every task to be out), and
 * its own share of the copying while it waits (pool_run_queued, gather_pool_tasks.c), with the GIL
 * released and Python's signal handlers run between tasks. The Python type's wait() and drain()
 * (gather_pool.c) call it.
 */
#include "gather_pool.h" /* first: Python.h sets the feature macros */

#include <time.h>

#define WAIT_SLICE_NS 20000000L /* a waiting consumer checks Python's signal handlers this often */

static void deadline_after(struct timespec *ts, long ns) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_nsec += ns;
    ts->tv_sec += ts->tv_nsec / 1000000000L;
    ts->tv_nsec %= 1000000000L;
}

/* Wait until target (a slot, or -2: no task out) is reached or timeout seconds (< 0: no limit)
 * pass. Without a timeout the consumer waiting for a slot first runs queued tasks itself, oldest
 * first (a task cannot be cut short, so a timeout keeps the copies on the threads); when it
 * has to sleep, it sleeps until slot also (>= 0) is done too, so that one wake-up serves several
 * batches. The GIL is released meanwhile, and signal handlers run between tasks and every
 * WAIT_SLICE_NS. Returns 1 reached, 0 timed out, -1 a handler raised. Called with the GIL held
 * and the lock not held. */
int pool_wait_for(Pool *p, Py_ssize_t target, Py_ssize_t also, double timeout) {
    const int steal = timeout < 0 && target >= 0;
    ThreadReading start; /* read before the lock: the threads take it to publish each task */
    if (steal)
        seats_read(p, &start, p->away_set);
    else
        clock_gettime(CLOCK_MONOTONIC, &start.wall);
    const struct timespec t0 = start.wall;
    pthread_mutex_lock(&p->lock);
    if (steal) {
        seats_wait_begins(p, &start);
    } else if (p->helper_mode && target >= 0) { /* a consumer that will not help: every thread runs */
        seats_all_run(p);
    }
    p->waiting = target;
    p->also = -1;
    int reached = pool_woken(p);
    p->also = also;
    while (!reached) {
        long slice = WAIT_SLICE_NS;
        if (timeout >= 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            double left = timeout - seconds_between(&t0, &now);
            if (left <= 0) break;
            if (left * 1e9 < (double)slice) slice = (long)(left * 1e9) + 1;
        }
        /* the GIL is never waited for while holding the lock */
        pthread_mutex_unlock(&p->lock);
        PyThreadState *ts = PyEval_SaveThread();
        pthread_mutex_lock(&p->lock);
        struct timespec until;
        deadline_after(&until, slice);
        if (!(reached = pool_woken(p)) && steal) {
            /* rather than sleep, gather here: the batch waited for when no thread has taken it
             * yet (they are all waking up: a wake-up costs 5-20 us here, a batch ~45 us), and with
             * consumer_helps any queued batch, so that the consumer's core copies too */
            while (p->slots[target].state != DONE && p->count > 0 &&
                   (p->consumer_helps || p->helper_mode || p->slots[target].state == QUEUED))
                pool_run_queued(p);
            reached = p->slots[target].state == DONE;
        }
        if (!reached) {
            p->sleeping = 1;
            pthread_cond_timedwait(&p->done, &p->lock, &until);
            p->sleeping = 0;
            reached = pool_woken(p);
        }
        pthread_mutex_unlock(&p->lock);
        PyEval_RestoreThread(ts);
        if (!reached && PyErr_CheckSignals() != 0) {
            pthread_mutex_lock(&p->lock);
            p->waiting = -1;
            pthread_mutex_unlock(&p->lock);
            if (steal) seats_wait_ends(p);
            return -1;
        }
        pthread_mutex_lock(&p->lock);
    }
    p->waiting = -1;
    reached = target >= 0 ? p->slots[target].state == DONE : p->out == 0;
    pthread_mutex_unlock(&p->lock);
    if (steal) seats_wait_ends(p);
    return reached;
}
