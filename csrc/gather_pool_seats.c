/*
 * GatherPool's seats: at most `seats` (the process's cores) gatherers at once, the waiting
 * consumer counted when it helps.
 *
 * Why: on 2 cores, 1 thread plus a consumer that gathers queued batches while it waits copied
 * 2.6-2.7 M samples/s, 2 threads (the consumer sleeping until its batch is done) 2.3 M: each of
 * the consumer's sleeps and wake-ups preempts a copying thread (2.4 context switches a batch,
 * against 0.05 for 2 NumPy threads), and letting it help as well (3 copiers on 2 cores) gave 1.7 M
 * (docs/benchmarks.md). So with as many threads as seats or more, the last `spares` threads park
 * while the consumer helps. That is right when the consumer's time between waits is on the CPU (a
 * Python step holding the GIL, or nothing): its core is taken either way. When that time is not
 * on the CPU (a GIL-free wait: a device sync, I/O, a sleep) its core would sit idle without the
 * spares, so then they run and the consumer only takes a batch no thread has taken (thread mode),
 * provided that it blocks at least as long as a task takes (the quickest of the window's: a task
 * preempted by another process takes longer than the copy): for shorter waits the wake-ups that
 * thread mode brings cost more than the copy they add (2 threads with a ~35 us sleep a batch:
 * 0.7 M samples/s in thread mode, 1.3 M in helper mode).
 * The consumer measures its own wall time, CPU time and voluntary context switches between waits
 * (getrusage of its thread: 0.4 us a call here, where its CPU clock costs 0.6 us), between one in
 * AWAY_EVERY pairs of waits (two calls a batch were ~1% of a 2-thread batch's CPU), and the mode
 * follows them over windows of AWAY_WINDOW such measures, with hysteresis, so that a spare parks
 * or resumes rarely (each a wake-up), not once a batch. Both signs are needed: time off the CPU
 * alone is also what another process's load looks like (the consumer preempted: its core is not
 * idle), and blocking alone is also a short wait inside a CPU-bound step.
 */
#include "gather_pool.h" /* first: Python.h sets the feature macros */

#include <sys/resource.h>
#include <time.h>

#define AWAY_WINDOW 8     /* measured waits per decision */
#define AWAY_EVERY 2      /* the time before one wait in this many is measured */
#define THREADS_BELOW 0.4 /* CPU share of the consumer's time between waits under which spares run */
#define HELPER_ABOVE 0.6  /* and over which they park again */

int seats_park(Pool *p, int id) {
    if (!p->helper_mode || p->stop || id < p->n_threads - p->spares) return 0;
    /* a task's wake-up may have fallen to this thread: hand it to an idle one that runs */
    if (p->count > 0 && p->idle > p->waking) {
        p->waking++;
        pthread_cond_signal(&p->work);
    }
    double t0 = monotonic_s();
    p->parked++;
    p->parked_since += t0;
    while (p->helper_mode && !p->stop) pthread_cond_wait(&p->unpark, &p->lock);
    p->parked--;
    p->parked_since -= t0;
    p->parked_s += monotonic_s() - t0;
    return 1;
}

void seats_read(Pool *p, ThreadReading *now, int usage) {
    clock_gettime(CLOCK_MONOTONIC, &now->wall);
    if (p->spares == 0 || !usage) return; /* spares: fixed from the pool's start, no lock needed */
    struct rusage r;
    getrusage(RUSAGE_THREAD, &r);
    now->cpu = (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
               1e-6 * (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
    now->blocked = r.ru_nvcsw;
}

void seats_wait_begins(Pool *p, const ThreadReading *now) {
    if (p->spares == 0) return;
    if (p->away_set) {
        p->away_wall += seconds_between(&p->left.wall, &now->wall);
        p->away_cpu += now->cpu - p->left.cpu;
        p->away_blocked += now->blocked - p->left.blocked;
        p->away_n++;
        p->away_set = 0;
    }
    if (p->away_n < AWAY_WINDOW) return;
    double share = p->away_wall > 0 ? p->away_cpu / p->away_wall : 1.0;
    /* a copy's time: the quickest of the window (a task preempted by another process is longer) */
    double off_cpu = (p->away_wall - p->away_cpu) / p->away_n, task = p->tasks ? p->task_s : 0.0;
    if (p->helper_mode && share < THREADS_BELOW && p->away_blocked >= AWAY_WINDOW / 2 && off_cpu >= task) {
        seats_all_run(p);
    } else if (!p->helper_mode && (share > HELPER_ABOVE || p->away_blocked < AWAY_WINDOW / 4 || off_cpu < task / 2)) {
        p->helper_mode = 1; /* the spares park after their current task */
        p->switches++;
    }
    p->away_wall = p->away_cpu = 0.0;
    p->away_n = 0;
    p->away_blocked = 0;
    p->task_s = 0.0;
    p->tasks = 0;
}

void seats_wait_ends(Pool *p) {
    if (p->spares == 0 || ++p->away_skipped < AWAY_EVERY) return;
    p->away_skipped = 0;
    seats_read(p, &p->left, 1);
    p->away_set = 1;
}
/* Thread mode: the spares run again (unparked now); under the lock. */
void seats_all_run(Pool *p) {
    p->helper_mode = 0;
    p->switches++;
    if (p->parked) pthread_cond_broadcast(&p->unpark);
}

