/*
 * fastload._gather_pool's shared state: the pool of C threads, its ring of slots and its
 * configuration. gather_pool.c is the Python type (configure, submit, wait, drain, close);
 * gather_pool_tasks.c is what runs without the GIL (a task's gather and checks, the threads'
 * loop, the consumer's own share of the work while it waits); gather_pool_order.c sets the
 * plan's arithmetic (keyed_order.h) for tasks that compute their own indices; gather_pool_wait.c
 * is the consumer's wait; gather_pool_seats.c decides how many gatherers run at once.
 */
#ifndef FASTLOAD_GATHER_POOL_H
#define FASTLOAD_GATHER_POOL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gather_core.h"
#include "keyed_order.h"

enum { IDLE = 0, QUEUED, RUNNING, DONE };
enum { OK = 0, OUT_OF_RANGE = 1, OUTSIDE_BLOCK = 2, CORRUPT = 3, TOO_LARGE = 4 };
#define ARENA_ALIGN 64 /* loader/slots.py ALIGN */
#define CONSUMER (-1) /* the worker id of a task the waiting consumer ran itself */

typedef struct {
    int state, status, worker;
    Py_ssize_t n, position; /* rows; the first position that failed */
    int64_t batch;          /* the order's batch whose indices the task computes first; -1: given */
    int64_t field;          /* the field that failed */
    double busy;            /* seconds spent on the task */
} Slot;

typedef struct {
    Py_ssize_t itemsize;   /* 0: a variable-size field, gathered into an arena (loader/buffers.py) */
    Py_ssize_t row_bytes;  /* a variable field's arena bytes per row of the batch */
    const int64_t *column; /* the field's column address in every block */
} Field;

/* A buffer of 8-byte integers whose struct format code is one of codes ("qlQL": any int64 or
 * uint64, "QL": uint64), after an optional byte-order prefix. */
static inline int is_8byte_int(const Py_buffer *v, const char *codes) {
    return v->itemsize == 8 && v->format != NULL && strchr(codes, v->format[strspn(v->format, "<=")]) != NULL;
}

/* Bytes before the payloads in an arena of n rows: n + 1 int64 offsets, then n validity bytes,
 * each part aligned (loader/buffers.py _header). */
static inline int64_t arena_header(int64_t n) {
    int64_t offsets = (8 * (n + 1) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    return (offsets + n + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
}

/* Seconds from a to b. */
static inline double seconds_between(const struct timespec *a, const struct timespec *b) {
    return (double)(b->tv_sec - a->tv_sec) + 1e-9 * (double)(b->tv_nsec - a->tv_nsec);
}

/* CLOCK_MONOTONIC in seconds. */
static inline double monotonic_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A thread's clocks at one moment (gather_pool_seats.c): CLOCK_MONOTONIC, its CPU seconds and its
 * voluntary context switches (the times it blocked). */
typedef struct {
    struct timespec wall;
    double cpu;
    long blocked;
} ThreadReading;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    pthread_cond_t work;  /* a task was queued, or stop */
    pthread_cond_t done;  /* the slot the consumer waits for is done */
    pthread_t *threads;
    int n_threads, started, stop, idle, waking; /* waking: idle threads signalled, not yet up */
    int consumer_helps;   /* a waiting consumer runs any queued task, not only the one it waits for */
    /* Seats (gather_pool_seats.c): at most `seats` (a constructor argument) gatherers at once, a
     * helping consumer counted.
     * With as many threads as seats or more, the last `spares` threads park while the consumer
     * helps (helper mode, for a consumer whose time between waits is on the CPU), and run while it
     * only waits for its batch (thread mode, for one whose time between waits is not). */
    int spares, helper_mode, parked;
    pthread_cond_t unpark;  /* helper mode ended, or stop */
    double parked_s;        /* seconds spent parked, all spares together, until their last unpark */
    double parked_since;    /* the sum of monotonic_s() when each spare parked now parked */
    long switches;          /* mode changes so far */
    /* the consumer's time between waits over the current window (one in AWAY_EVERY measured):
     * wall and CPU seconds, voluntary context switches (it blocked), how many measured; its figures
     * when its last measured wait returned, and the waits since one was */
    double away_wall, away_cpu;
    long away_blocked;
    int away_n, away_set, away_skipped;
    ThreadReading left;
    double task_s;          /* seconds of the quickest task done in the window, and how many were done */
    long tasks;
    int sleeping;         /* the consumer sleeps on done (signalled once, by the thread that ends its wait) */
    Py_ssize_t waiting;   /* the slot the consumer sleeps on, or -1 (-2: on no task out) */
    Py_ssize_t also;      /* and the later slot it asked to sleep until, or -1 */
    Py_ssize_t n_slots, batch_size;
    Py_ssize_t *fifo;     /* queued slots, a ring of n_slots */
    Py_ssize_t head, count, out; /* out: tasks queued or running */
    Slot *slots;
    int64_t *indices;     /* n_slots x batch_size */
    int64_t *blocks;      /* n_slots x batch_size: each record's global block, for first-touch checks */
    int64_t *scratch;     /* n_slots x 3 x batch_size: a variable field's gather (gather_var_rows_multi) */
    /* the configuration: tables, fields, and per field and slot the output address */
    Py_buffer *views;
    int n_views;
    BlockTables tables;
    Field *fields;
    char **outs;          /* n_fields x n_slots */
    uint8_t *verified;    /* per block: checksum checked (NULL: never check), shared with Python */
    const uint64_t *expected; /* per block: xxh3_64 of its bytes [block_lo, block_hi) */
    int n_fields;
    int configured;
    KeyedOrder order;     /* for tasks of a batch number (set_order) */
    int has_order;
    pid_t owner;          /* a forked child has none of the threads: it must not join them */
} Pool;

/* For the Python methods: 0 with an exception set when closed, or when a task is out. */
int pool_usable(Pool *p);
int pool_all_idle(Pool *p, const char *what);
/* Queue slot's task (lock held): n rows, of the order's batch (-1: of the indices already in place). */
void pool_enqueue(Pool *p, Py_ssize_t slot, Py_ssize_t n, int64_t batch);
/* The order's methods (gather_pool_order.c). */
PyObject *pool_set_order(Pool *p, PyObject *args);
PyObject *pool_submit_batch(Pool *p, PyObject *args);
PyObject *pool_order_batch(Pool *p, PyObject *args);

/* The threads' loop (arg: a malloc'ed Start, freed by the thread). */
typedef struct {
    Pool *pool;
    int id;
} Start;
void *pool_worker_main(void *arg);

/* Seats (gather_pool_seats.c). A spare thread whose turn it is to park: parks until thread mode
 * or stop, lock held (released while parked). */
int seats_park(Pool *p, int id);
/* The calling (consumer's) thread now: the wall clock, and with spares and `usage` its CPU time
 * and voluntary context switches (getrusage: a system call, so read before taking the lock). At a
 * wait's start, usage is p->away_set: whether the time since the last wait is measured. */
void seats_read(Pool *p, ThreadReading *now, int usage);
/* The consumer's wait begins (lock held; now: seats_read just before): its time since its last
 * wait counts towards the mode, which may change here. */
void seats_wait_begins(Pool *p, const ThreadReading *now);
/* Thread mode: the spares run again (unparked now); lock held. */
void seats_all_run(Pool *p);
/* The consumer's wait ends (lock not needed: only the consumer's thread reads these). */
void seats_wait_ends(Pool *p);

/* Whether the consumer's wait is over (lock held). */
int pool_woken(Pool *p);

/* With the lock held: if a task is queued, take the oldest, run it in the calling thread with the
 * lock released (the GIL must not be held), and return 1 with the lock held again; else 0. */
int pool_run_queued(Pool *p);

/* The consumer's wait (gather_pool_wait.c): until target (a slot, or -2: no task out) is reached or
 * timeout seconds (< 0: no limit) pass; 1 reached, 0 timed out, -1 a signal handler raised. Called
 * with the GIL held and the lock not held. */
int pool_wait_for(Pool *p, Py_ssize_t target, Py_ssize_t also, double timeout);

#endif
