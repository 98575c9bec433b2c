/* XXH3-128 of many rows in one call: the record hashes of pack's dedup.
 *
 * The hash is xxHash's own (third_party/xxhash/xxhash.h, v0.8.4, BSD-2-Clause, inlined with its
 * SSE2/AVX2 paths), so the digests are those of the `xxhash` Python package by construction.
 * One Python call per row is the cost of the package over a column of short texts (0.45 s for
 * 1 M texts of ~225 bytes); this loop hashes the whole column in one call with the GIL released.
 * It replaced a Numba port of the algorithm whose first compile took 20-90 s per process.
 *
 * rows(data, offsets, out):  out[i] = (high, low) of XXH3-128(data[offsets[i]:offsets[i+1]])
 * fixed(data, width, out):   the same for rows of `width` bytes back to back in `data`
 * data: bytes-like (uint8), offsets: int64 (n + 1), out: writable uint64 (n, 2), C-contiguous.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define XXH_INLINE_ALL
#include "third_party/xxhash/xxhash.h"

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s must have items of %zd bytes, not %zd", what, itemsize, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static void put(uint64_t *out, Py_ssize_t i, XXH128_hash_t h) {
    out[2 * i] = h.high64;
    out[2 * i + 1] = h.low64;
}

static PyObject *rows(PyObject *self, PyObject *args) {
    PyObject *data_obj, *off_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OOO", &data_obj, &off_obj, &out_obj)) return NULL;
    Py_buffer data, off, out;
    if (get_buffer(data_obj, &data, 0, 1, "data") < 0) return NULL;
    if (get_buffer(off_obj, &off, 0, 8, "offsets") < 0) { PyBuffer_Release(&data); return NULL; }
    if (get_buffer(out_obj, &out, 1, 8, "out") < 0) { PyBuffer_Release(&data); PyBuffer_Release(&off); return NULL; }
    const int64_t *o = off.buf;
    Py_ssize_t n = off.len / 8 - 1;
    int bad = n < 0 || out.len / 16 < n;
    for (Py_ssize_t i = 0; !bad && i < n; i++)  /* every row inside data, offsets rising */
        bad = o[i] < 0 || o[i + 1] < o[i] || o[i + 1] > data.len;
    if (!bad) {
        const char *d = data.buf;
        uint64_t *h = out.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) put(h, i, XXH3_128bits(d + o[i], (size_t)(o[i + 1] - o[i])));
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&data); PyBuffer_Release(&off); PyBuffer_Release(&out);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "row_hash.rows: offsets must rise within data, and out hold (n, 2) uint64");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *fixed(PyObject *self, PyObject *args) {
    PyObject *data_obj, *out_obj;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "OnO", &data_obj, &width, &out_obj)) return NULL;
    Py_buffer data, out;
    if (get_buffer(data_obj, &data, 0, 1, "data") < 0) return NULL;
    if (get_buffer(out_obj, &out, 1, 8, "out") < 0) { PyBuffer_Release(&data); return NULL; }
    Py_ssize_t n = out.len / 16;
    int bad = width < 0 || (width > 0 && n > data.len / width);
    if (!bad) {
        const char *d = data.buf;
        uint64_t *h = out.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) put(h, i, XXH3_128bits(d + i * width, (size_t)width));
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&data); PyBuffer_Release(&out);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "row_hash.fixed: data must hold len(out) rows of width bytes");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"rows", rows, METH_VARARGS, "rows(data, offsets, out): XXH3-128 (high, low) of each data[offsets[i]:offsets[i+1]]"},
    {"fixed", fixed, METH_VARARGS, "fixed(data, width, out): XXH3-128 (high, low) of each width-byte row of data"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_row_hash", "XXH3-128 of many rows in one call.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__row_hash(void) { return PyModule_Create(&module); }
