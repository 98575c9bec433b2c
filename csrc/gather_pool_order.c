/*
 * GatherPool's tasks by batch number: set_order() takes an epoch plan's full batches as
 * arithmetic (fastload/plan/batch_formula.py, keyed_order.h), submit_batch(slot, k) queues batch
 * k, whose indices the thread that takes it computes, and order_batch(k, out) computes them here
 * (for tests and for a batch gathered again in Python).
 */
#include "gather_pool.h" /* first: Python.h sets the feature macros */

#include <string.h>

PyObject *pool_set_order(Pool *p, PyObject *args) {
    KeyedOrder o = {0};
    PyObject *keys;
    if (!pool_usable(p) || !PyArg_ParseTuple(args, "LLLLLLpOII", &o.count, &o.batch_size, &o.base, &o.global_batch,
                                             &o.nodes, &o.n, &o.pad, &keys, &o.low, &o.high))
        return NULL;
    if (o.count < 0 || o.batch_size < 1 || o.batch_size > p->batch_size || o.base < 0 || o.global_batch < 1 ||
        o.nodes < 1 || o.n < 0 || o.low + o.high > 62 || (o.count > 0 && o.n < 1) ||
        o.count > (((int64_t)1 << 62) - o.base) / o.global_batch) {
        PyErr_SetString(PyExc_ValueError, "an order needs 0 <= count, 1 <= batch_size <= the pool's, base >= 0, "
                                          "global_batch >= 1, nodes >= 1, n >= 1 and positions under 2**62");
        return NULL;
    }
    if (keys != Py_None) {
        Py_buffer view;
        if (PyObject_GetBuffer(keys, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) return NULL;
        int ok = view.len == (Py_ssize_t)sizeof(o.keys) && is_8byte_int(&view, "QL");
        if (ok) memcpy(o.keys, view.buf, sizeof(o.keys));
        PyBuffer_Release(&view);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "keys must be %d uint64 round keys", KEYED_ROUNDS);
            return NULL;
        }
        if (((uint64_t)1 << (o.low + o.high)) < (uint64_t)o.n || o.low < 1 || o.high < 1) {
            PyErr_SetString(PyExc_ValueError, "low + high bits must cover n, each at least 1");
            return NULL;
        }
        o.shuffled = 1;
    }
    if (!pool_all_idle(p, "set_order()")) return NULL;
    p->order = o; /* no task is out: no thread reads it now */
    p->has_order = 1;
    Py_RETURN_NONE;
}

static int batch_number(Pool *p, int64_t k) {
    if (!p->has_order) {
        PyErr_SetString(PyExc_RuntimeError, "no order set (set_order)");
        return 0;
    }
    if (k < 0 || k >= p->order.count) {
        PyErr_Format(PyExc_IndexError, "batch %lld is outside the order's [0, %lld)", (long long)k,
                     (long long)p->order.count);
        return 0;
    }
    return 1;
}

PyObject *pool_submit_batch(Pool *p, PyObject *args) {
    Py_ssize_t slot;
    long long k;
    if (!pool_usable(p) || !PyArg_ParseTuple(args, "nL", &slot, &k) || !batch_number(p, k)) return NULL;
    if (!p->configured) {
        PyErr_SetString(PyExc_RuntimeError, "submit_batch() before configure()");
        return NULL;
    }
    if (slot < 0 || slot >= p->n_slots) return PyErr_Format(PyExc_IndexError, "slot %zd is out of range", slot);
    pthread_mutex_lock(&p->lock);
    int idle = p->slots[slot].state == IDLE;
    if (idle) pool_enqueue(p, slot, (Py_ssize_t)p->order.batch_size, k);
    pthread_mutex_unlock(&p->lock);
    if (!idle) {
        PyErr_SetString(PyExc_ValueError, "slot is busy");
        return NULL;
    }
    Py_RETURN_NONE;
}

PyObject *pool_order_batch(Pool *p, PyObject *args) {
    long long k;
    PyObject *obj;
    if (!PyArg_ParseTuple(args, "LO", &k, &obj) || !batch_number(p, k)) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) != 0) return NULL;
    int ok = view.len == p->order.batch_size * 8 && is_8byte_int(&view, "qlQL");
    if (ok) keyed_batch(&p->order, k, view.buf);
    PyBuffer_Release(&view);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "out must be a contiguous int64 array of the order's batch_size");
        return NULL;
    }
    Py_RETURN_NONE;
}
