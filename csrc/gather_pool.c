/*
 * fastload._gather_pool: loader worker threads in C, for batches of fixed fields from raw shards.
 *
 * Why: with Python worker threads each batch costs a task hand-off and a result hand-off through
 * Python queues (two wake-ups and the GIL taken by three threads), 17-28 us of workers' CPU and
 * 16-27 us of the consumer's per 64 x 4 KB batch on this project's 2-core machine, against a
 * ~44 us copy (docs/benchmarks.md). Here the consumer queues ``(slot, indices)`` and the threads,
 * which never take the GIL, run the same bounds-checked gather as fastload._native.gather_multi
 * (gather_core.h) straight into the slot, one field after another, and checks the checksum of each
 * block the first time a batch reads it (xxHash's XXH3-64, as the reader). A thread sleeps only when no
 * task is queued, and is woken only then. A consumer whose batch is not done gathers it itself
 * when no thread has taken it, and (consumer_helps) other queued batches rather than sleep; it
 * sleeps (GIL released) only when none is left to take, and is woken only by the thread that
 * finishes the batches it waits for. A task may also be a batch number of the loader's plan,
 * whose indices the thread computes first (gather_pool_order.c, keyed_order.h).
 *
 * Memory: every buffer a task reads or writes (tables, field columns, slot views) is held with
 * the buffer protocol from configure() until the next configure() or close(), and configure()
 * refuses while a task is out or its result not taken; the mapped shards behind the table addresses are the caller's to
 * keep mapped (the Python side holds the dataset that maps them).
 */
#include "gather_pool.h" /* first: Python.h sets the feature macros */

#include <errno.h>
#include <string.h>
#include <time.h>

static void release_config(Pool *p) {
    for (int k = 0; k < p->n_views; k++) PyBuffer_Release(&p->views[k]);
    PyMem_Free(p->views);
    PyMem_Free(p->fields);
    PyMem_Free(p->outs);
    p->views = NULL;
    p->fields = NULL;
    p->outs = NULL;
    p->verified = NULL;
    p->expected = NULL;
    p->n_views = p->n_fields = 0;
    p->configured = 0;
}

/* Stop and join the threads (waiting for their current task). */
static void stop_threads(Pool *p) {
    if (!p->started) return;
    if (getpid() != p->owner) {
        p->started = 0;
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_cond_broadcast(&p->unpark);
    pthread_mutex_unlock(&p->lock);
    for (int k = 0; k < p->started; k++) pthread_join(p->threads[k], NULL);
    p->started = 0;
}

static int pool_init(Pool *p, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"n_threads", "n_slots", "batch_size", "consumer_helps", "seats", NULL};
    int n_threads;
    Py_ssize_t n_slots, batch_size;
    int helps = 0, seats = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "inn|pi", kwlist, &n_threads, &n_slots, &batch_size, &helps,
                                     &seats))
        return -1;
    if (p->threads != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a GatherPool is initialised once");
        return -1;
    }
    if (n_threads < 1 || n_threads > 1024 || n_slots < 1 || n_slots > (1 << 20) || batch_size < 1 ||
        batch_size > (1 << 24) || seats < 0) {
        PyErr_SetString(PyExc_ValueError, "n_threads must be in [1, 1024], n_slots in [1, 2**20], batch_size in "
                                          "[1, 2**24], seats >= 0");
        return -1;
    }
    p->n_slots = n_slots;
    p->batch_size = batch_size;
    p->consumer_helps = helps;
    /* with one seat or none no thread parks: some thread must run while the consumer sleeps */
    p->spares = seats >= 2 && n_threads >= seats ? n_threads - seats + 1 : 0;
    p->helper_mode = p->spares > 0;
    p->waiting = p->also = -1;
    p->owner = getpid();
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    pthread_cond_init(&p->unpark, NULL);
    p->fifo = PyMem_Calloc((size_t)n_slots, sizeof(Py_ssize_t));
    p->slots = PyMem_Calloc((size_t)n_slots, sizeof(Slot));
    p->indices = PyMem_Calloc((size_t)(n_slots * batch_size), sizeof(int64_t));
    p->blocks = PyMem_Calloc((size_t)(n_slots * batch_size), sizeof(int64_t));
    p->scratch = PyMem_Calloc((size_t)(n_slots * 3 * batch_size), sizeof(int64_t));
    p->threads = PyMem_Calloc((size_t)n_threads, sizeof(pthread_t));
    if (!p->fifo || !p->slots || !p->indices || !p->blocks || !p->scratch || !p->threads) {
        PyErr_NoMemory();
        return -1;
    }
    p->n_threads = n_threads;
    for (int k = 0; k < n_threads; k++) {
        Start *start = malloc(sizeof(Start));
        int rc = start == NULL ? ENOMEM : 0;
        if (start != NULL) {
            start->pool = p;
            start->id = k;
            rc = pthread_create(&p->threads[k], NULL, pool_worker_main, start);
            if (rc != 0) free(start);
#ifdef __linux__
            else pthread_setname_np(p->threads[k], "fastload-gather"); /* how ps, top and tests tell them */
#endif
        }
        if (rc != 0) {
            stop_threads(p);
            errno = rc;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        p->started++;
    }
    return 0;
}

static void pool_dealloc(Pool *p) {
    Py_BEGIN_ALLOW_THREADS
    stop_threads(p);
    Py_END_ALLOW_THREADS
    release_config(p);
    if (p->owner != 0) {
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->work);
        pthread_cond_destroy(&p->done);
        pthread_cond_destroy(&p->unpark);
    }
    PyMem_Free(p->fifo);
    PyMem_Free(p->slots);
    PyMem_Free(p->indices);
    PyMem_Free(p->blocks);
    PyMem_Free(p->scratch);
    PyMem_Free(p->threads);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

int pool_usable(Pool *p) {
    if (p->threads == NULL || !p->started) {
        PyErr_SetString(PyExc_RuntimeError, "this GatherPool is closed");
        return 0;
    }
    return 1;
}

/* Take a C-contiguous buffer into the pool's views; int64 unless writable. */
static Py_buffer *hold(Pool *p, PyObject *obj, int writable, const char *what) {
    Py_buffer *view = &p->views[p->n_views];
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : PyBUF_FORMAT)) != 0)
        return NULL;
    if (!writable && !is_8byte_int(view, "qlQL")) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous int64 array", what);
        return NULL;
    }
    p->n_views++;
    return view;
}

/* configure(shard_start, shard_lo, shard_hi, block_first, block_lo, block_hi, fields, verified=None,
 * expected=None): fields is a sequence of (column_addr, itemsize, outs), outs one writable buffer
 * per slot holding batch_size * itemsize bytes (itemsize 0: a variable-size field without nulls,
 * outs its arenas, loader/buffers.py: batch_size rows of equal bytes; a batch whose payloads
 * exceed its rows' arena ends with status 4); verified (one byte per block, writable: 0 until a
 * block's checksum was checked) and expected (its xxh3_64, uint64) turn on first-touch checks. */
static PyObject *pool_configure(Pool *p, PyObject *args) {
    PyObject *tab[6], *fields, *verified = Py_None, *expected = Py_None;
    if (!pool_usable(p) || !PyArg_ParseTuple(args, "OOOOOOO|OO", &tab[0], &tab[1], &tab[2], &tab[3], &tab[4], &tab[5],
                                        &fields, &verified, &expected))
        return NULL;
    if ((verified == Py_None) != (expected == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "verified and expected come together");
        return NULL;
    }
    if (!pool_all_idle(p, "configure()")) return NULL;
    PyObject *seq = PySequence_Fast(fields, "fields must be a sequence of (column_addr, itemsize, outs)");
    if (seq == NULL) return NULL;
    Py_ssize_t nf = PySequence_Fast_GET_SIZE(seq);
    release_config(p);
    p->views = PyMem_Calloc((size_t)(8 + nf * (1 + p->n_slots)), sizeof(Py_buffer));
    p->fields = PyMem_Calloc((size_t)(nf ? nf : 1), sizeof(Field));
    p->outs = PyMem_Calloc((size_t)(nf ? nf * p->n_slots : 1), sizeof(char *));
    if (!p->views || !p->fields || !p->outs) {
        Py_DECREF(seq);
        release_config(p);
        return PyErr_NoMemory();
    }
    static const char *names[6] = {"shard_start", "shard_lo", "shard_hi", "block_first", "block_lo", "block_hi"};
    const int64_t *t[6];
    Py_ssize_t len[6];
    for (int k = 0; k < 6; k++) {
        Py_buffer *view = hold(p, tab[k], 0, names[k]);
        if (view == NULL) goto fail;
        t[k] = view->buf;
        len[k] = view->len / 8;
    }
    Py_ssize_t ns = len[0] - 1, nb = len[3];
    if (ns < 1 || len[1] != ns || len[2] != ns || len[4] != nb || len[5] != nb) {
        PyErr_SetString(PyExc_ValueError, "inconsistent block tables");
        goto fail;
    }
    p->tables = (BlockTables){.ss = t[0], .slo = t[1], .shi = t[2], .bf = t[3], .blo = t[4], .bhi = t[5],
                              .ns = ns, .nb = nb};
    if (verified != Py_None) {
        Py_buffer *flags = hold(p, verified, 1, "verified"), *sums = flags ? hold(p, expected, 0, "expected") : NULL;
        if (sums == NULL) goto fail;
        if (flags->len != nb || sums->len != nb * 8) {
            PyErr_SetString(PyExc_ValueError, "verified (bytes) and expected (uint64) hold one entry per block");
            goto fail;
        }
        p->verified = flags->buf;
        p->expected = sums->buf;
    }
    for (Py_ssize_t f = 0; f < nf; f++) {
        PyObject *column, *outs;
        Py_ssize_t itemsize;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, f), "OnO", &column, &itemsize, &outs)) goto fail;
        Py_buffer *view = hold(p, column, 0, "column_addr");
        if (view == NULL) goto fail;
        if (view->len / 8 != nb || itemsize < 0) {
            PyErr_SetString(PyExc_ValueError, "column_addr must match the block tables and itemsize be >= 0");
            goto fail;
        }
        p->fields[f] = (Field){.itemsize = itemsize, .column = view->buf};
        Py_ssize_t row_bytes = -1;
        PyObject *outs_seq = PySequence_Fast(outs, "outs must be a sequence of one buffer per slot");
        if (outs_seq == NULL) goto fail;
        int ok = PySequence_Fast_GET_SIZE(outs_seq) == p->n_slots;
        for (Py_ssize_t s = 0; ok && s < p->n_slots; s++) {
            Py_buffer *out = hold(p, PySequence_Fast_GET_ITEM(outs_seq, s), 1, "out");
            if (out == NULL) { Py_DECREF(outs_seq); goto fail; }
            if (itemsize > 0) {
                ok = out->len / itemsize >= p->batch_size;
            } else { /* an arena: rows of equal bytes, the same in every slot, 8-byte aligned */
                ok = out->len % p->batch_size == 0 && (row_bytes < 0 || row_bytes == out->len / p->batch_size) &&
                     out->len >= arena_header(p->batch_size) && ((uintptr_t)out->buf & 7) == 0;
                row_bytes = out->len / p->batch_size;
            }
            p->outs[f * p->n_slots + s] = out->buf;
        }
        Py_DECREF(outs_seq);
        if (!ok) {
            PyErr_SetString(PyExc_ValueError, "outs must hold one buffer per slot of batch_size * itemsize bytes (an "
                                              "arena: batch_size rows of equal bytes, at least its header)");
            goto fail;
        }
        p->fields[f].row_bytes = row_bytes;
        p->n_fields++;
    }
    Py_DECREF(seq);
    p->configured = 1;
    Py_RETURN_NONE;
fail:
    Py_DECREF(seq);
    release_config(p);
    return NULL;
}

int pool_all_idle(Pool *p, const char *what) {
    pthread_mutex_lock(&p->lock);
    int busy = 0;
    for (Py_ssize_t s = 0; s < p->n_slots; s++) busy |= p->slots[s].state != IDLE;
    pthread_mutex_unlock(&p->lock);
    if (busy) PyErr_Format(PyExc_RuntimeError, "%s while tasks are out (or their results not taken)", what);
    return !busy;
}

void pool_enqueue(Pool *p, Py_ssize_t slot, Py_ssize_t n, int64_t batch) {
    p->slots[slot] = (Slot){.state = QUEUED, .n = n, .batch = batch, .worker = -1, .position = -1, .field = -1};
    p->fifo[(p->head + p->count) % p->n_slots] = slot;
    p->count++;
    p->out++;
    if (p->idle > p->waking) { /* one wake-up per idle thread: a woken one takes a while to run */
        p->waking++;
        pthread_cond_signal(&p->work);
    }
}

/* submit(slot, indices): queue the gather of indices (int64, at most batch_size) into slot. */
static PyObject *pool_submit(Pool *p, PyObject *args) {
    Py_ssize_t slot;
    PyObject *obj;
    if (!pool_usable(p) || !PyArg_ParseTuple(args, "nO", &slot, &obj)) return NULL;
    if (!p->configured) {
        PyErr_SetString(PyExc_RuntimeError, "submit() before configure()");
        return NULL;
    }
    if (slot < 0 || slot >= p->n_slots) return PyErr_Format(PyExc_IndexError, "slot %zd is out of range", slot);
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_STRIDES | PyBUF_FORMAT) != 0) return NULL;
    Py_ssize_t n = view.ndim == 1 ? view.shape[0] : 0;
    const char *err = NULL;
    if (view.ndim != 1 || !is_8byte_int(&view, "qlQL"))
        err = "indices must be a 1-D int64 array";
    else if (n > p->batch_size)
        err = "more indices than batch_size";
    pthread_mutex_lock(&p->lock);
    if (err == NULL && p->slots[slot].state != IDLE) err = "slot is busy";
    if (err == NULL) {
        int64_t *dst = p->indices + slot * p->batch_size;
        for (Py_ssize_t i = 0; i < n; i++) memcpy(dst + i, (const char *)view.buf + i * view.strides[0], 8);
        pool_enqueue(p, slot, n, -1);
    }
    pthread_mutex_unlock(&p->lock);
    PyBuffer_Release(&view);
    if (err != NULL) {
        PyErr_SetString(PyExc_ValueError, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* wait(slot, timeout, also=-1) -> None (timed out) or (status, worker, position, field, busy seconds):
 * the result of slot's task, sleeping (if it must) until slot also's task is done too; the slot is idle
 * again once its result is returned. status: 0 done, 1 an index out of range at position, 2 a
 * read outside its block at position of field, 3 the block of the record at position is corrupt,
 * 4 the payloads of variable field `field` exceed the arena. */
static PyObject *pool_wait(Pool *p, PyObject *args) {
    Py_ssize_t slot, also = -1;
    double timeout;
    if (!pool_usable(p) || !PyArg_ParseTuple(args, "nd|n", &slot, &timeout, &also)) return NULL;
    if (slot < 0 || slot >= p->n_slots || also < -1 || also >= p->n_slots)
        return PyErr_Format(PyExc_IndexError, "slot %zd or %zd is out of range", slot, also);
    pthread_mutex_lock(&p->lock);
    int state = p->slots[slot].state;
    pthread_mutex_unlock(&p->lock);
    if (state == IDLE) {
        PyErr_Format(PyExc_ValueError, "slot %zd has no task", slot);
        return NULL;
    }
    int reached = pool_wait_for(p, slot, also, timeout);
    if (reached < 0) return NULL;
    if (!reached) Py_RETURN_NONE;
    pthread_mutex_lock(&p->lock);
    Slot r = p->slots[slot];
    p->slots[slot].state = IDLE;
    pthread_mutex_unlock(&p->lock);
    return Py_BuildValue("(iinLd)", r.status, r.worker, r.position, (long long)r.field, r.busy);
}

/* drain(timeout) -> bool: wait until no task is out (their results are dropped: every slot idle). */
static PyObject *pool_drain(Pool *p, PyObject *args) {
    double timeout;
    if (!pool_usable(p) || !PyArg_ParseTuple(args, "d", &timeout)) return NULL;
    int reached = pool_wait_for(p, -2, -1, timeout);
    if (reached < 0) return NULL;
    if (reached) {
        pthread_mutex_lock(&p->lock);
        for (Py_ssize_t s = 0; s < p->n_slots; s++) p->slots[s].state = IDLE;
        pthread_mutex_unlock(&p->lock);
    }
    return PyBool_FromLong(reached);
}

/* close(): stop and join the threads (each finishes its current task first). Idempotent. */
static PyObject *pool_close(Pool *p, PyObject *unused) {
    Py_BEGIN_ALLOW_THREADS
    stop_threads(p);
    Py_END_ALLOW_THREADS
    release_config(p);
    Py_RETURN_NONE;
}

static PyObject *pool_threads(Pool *p, void *closure) { return PyLong_FromLong(p->started); }

/* The seats' state, read under the lock: (spares, helper mode, spares parked now, seconds parked,
 * mode changes). */
static PyObject *pool_seats(Pool *p, void *closure) {
    if (p->owner == 0) return Py_BuildValue("(iiidl)", 0, 0, 0, 0.0, 0L);
    pthread_mutex_lock(&p->lock);
    int spares = p->spares, helper = p->helper_mode, parked = p->parked;
    double parked_s = p->parked_s + parked * monotonic_s() - p->parked_since; /* with the parking now */
    long switches = p->switches;
    pthread_mutex_unlock(&p->lock);
    return Py_BuildValue("(iiidl)", spares, helper, parked, parked_s, switches);
}

static PyMethodDef pool_methods[] = {
    {"configure", (PyCFunction)pool_configure, METH_VARARGS,
     "configure(shard_start, shard_lo, shard_hi, block_first, block_lo, block_hi, fields, verified=None, "
     "expected=None): what tasks gather; fields: (column_addr, itemsize, outs per slot) each; verified/expected: "
     "per block, checked flags and xxh3_64 checksums. Refused while tasks are out."},
    {"submit", (PyCFunction)pool_submit, METH_VARARGS, "submit(slot, indices): queue a batch into an idle slot."},
    {"set_order", (PyCFunction)pool_set_order, METH_VARARGS,
     "set_order(count, batch_size, base, global_batch, nodes, n, pad, keys, low, high): the plan's full batches "
     "as arithmetic (fastload.plan.batch_formula; keys None: no shuffle), for submit_batch. Refused while tasks "
     "are out."},
    {"submit_batch", (PyCFunction)pool_submit_batch, METH_VARARGS,
     "submit_batch(slot, k): queue batch k of the order, its indices computed by the thread that gathers it."},
    {"order_batch", (PyCFunction)pool_order_batch, METH_VARARGS,
     "order_batch(k, out): batch k's record indices into out (int64, batch_size of set_order)."},
    {"wait", (PyCFunction)pool_wait, METH_VARARGS,
     "wait(slot, timeout, also=-1) -> (status, worker, position, field, busy_s), or None on timeout (< 0: none); "
     "if it must sleep, until also's task is done too."},
    {"drain", (PyCFunction)pool_drain, METH_VARARGS, "drain(timeout) -> bool: wait until no task is out."},
    {"close", (PyCFunction)pool_close, METH_NOARGS, "close(): stop and join the threads."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pool_getset[] = {
    {"threads", (getter)pool_threads, NULL, "threads running (0 once closed)", NULL},
    {"seats", (getter)pool_seats, NULL,
     "(spares, helper_mode, parked, parked_s, switches): threads that park while the consumer helps, whether it "
     "does, how many are parked now, their seconds parked so far, and the mode's changes so far", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PoolType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "fastload._gather_pool.GatherPool",
    .tp_basicsize = sizeof(Pool),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "GatherPool(n_threads, n_slots, batch_size, consumer_helps=False, seats=0): C threads gathering "
              "fixed fields into slots; a consumer waiting without a timeout runs the task it waits for when no "
              "thread has taken it, and with consumer_helps any queued task. seats >= 2: at most that many "
              "gatherers at once, the helping consumer counted: with n_threads >= seats the last "
              "n_threads - seats + 1 threads park while the consumer helps, which it does while its time between "
              "waits is mostly on the CPU (csrc/gather_pool_seats.c).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)pool_init,
    .tp_dealloc = (destructor)pool_dealloc,
    .tp_methods = pool_methods,
    .tp_getset = pool_getset,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gather_pool",
                                    "fastload's loader worker threads in C (see csrc/gather_pool.c).", -1, NULL};

PyMODINIT_FUNC PyInit__gather_pool(void) {
    if (PyType_Ready(&PoolType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&PoolType);
    if (PyModule_AddObject(m, "GatherPool", (PyObject *)&PoolType) < 0) {
        Py_DECREF(&PoolType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
