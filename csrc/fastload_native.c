/*
 * fastload._native: batch gathers from absolute addresses.
 *
 * The reader computes, with vectorised NumPy, the address of every requested record inside
 * memory-mapped shards or decompressed blocks; these functions then copy them into one output
 * buffer with the GIL released. One call serves a whole batch across any number of shards and
 * decompressed blocks, which a Numba kernel (typed on one array per call) cannot. bench/kernels.py
 * measures them against the same kernel in Numba: 7.9 vs 1.9 GB/s, 4.1x (docs/benchmarks.md).
 *
 * Every function validates its buffers and returns None or raises; callers keep the mapped
 * memory alive for the duration of the call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int get_i64(PyObject *obj, Py_buffer *view, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) return -1;
    if (view->itemsize != 8 || (view->format && strchr("qlQL", view->format[0]) == NULL &&
                                !(view->format[0] == '<' && strchr("qlQL", view->format[1])))) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous int64 array", what);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int get_out(PyObject *obj, Py_buffer *view) {
    return PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE);
}

/* gather_fixed(addrs, itemsize, out): out[i*itemsize : (i+1)*itemsize] = *addrs[i] */
static PyObject *gather_fixed(PyObject *self, PyObject *args) {
    PyObject *addrs_obj, *out_obj;
    Py_ssize_t itemsize;
    if (!PyArg_ParseTuple(args, "OnO", &addrs_obj, &itemsize, &out_obj)) return NULL;
    Py_buffer addrs, out;
    if (get_i64(addrs_obj, &addrs, "addrs") != 0) return NULL;
    if (get_out(out_obj, &out) != 0) { PyBuffer_Release(&addrs); return NULL; }
    Py_ssize_t n = addrs.len / 8;
    if (itemsize < 0 || out.len < n * itemsize) {
        PyBuffer_Release(&addrs); PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "out is smaller than len(addrs) * itemsize");
        return NULL;
    }
    const int64_t *a = (const int64_t *)addrs.buf;
    char *dst = (char *)out.buf;
    Py_BEGIN_ALLOW_THREADS
    /* Specialised widths let the compiler emit plain loads/stores instead of memcpy calls. */
    if (itemsize == 8) {
        for (Py_ssize_t i = 0; i < n; i++) memcpy(dst + i * 8, (const void *)(intptr_t)a[i], 8);
    } else if (itemsize == 4) {
        for (Py_ssize_t i = 0; i < n; i++) memcpy(dst + i * 4, (const void *)(intptr_t)a[i], 4);
    } else {
        for (Py_ssize_t i = 0; i < n; i++)
            memcpy(dst + i * itemsize, (const void *)(intptr_t)a[i], (size_t)itemsize);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&addrs); PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

/* gather_var(addrs, lengths, out) -> total bytes: payloads copied back to back into out. */
static PyObject *gather_var(PyObject *self, PyObject *args) {
    PyObject *addrs_obj, *len_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OOO", &addrs_obj, &len_obj, &out_obj)) return NULL;
    Py_buffer addrs, lens, out;
    if (get_i64(addrs_obj, &addrs, "addrs") != 0) return NULL;
    if (get_i64(len_obj, &lens, "lengths") != 0) { PyBuffer_Release(&addrs); return NULL; }
    if (get_out(out_obj, &out) != 0) { PyBuffer_Release(&addrs); PyBuffer_Release(&lens); return NULL; }
    Py_ssize_t n = addrs.len / 8;
    const int64_t *a = (const int64_t *)addrs.buf, *l = (const int64_t *)lens.buf;
    int64_t total = 0;
    int bad = lens.len != addrs.len;
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        if (l[i] < 0) bad = 1;
        total += l[i];
    }
    if (bad || total > out.len) {
        PyBuffer_Release(&addrs); PyBuffer_Release(&lens); PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "lengths must match addrs, be >= 0 and fit in out");
        return NULL;
    }
    char *dst = (char *)out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        memcpy(dst, (const void *)(intptr_t)a[i], (size_t)l[i]);
        dst += l[i];
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&addrs); PyBuffer_Release(&lens); PyBuffer_Release(&out);
    return PyLong_FromLongLong(total);
}

/* gather_padded(addrs, lengths, row_bytes, out): row i gets min(len, row_bytes) bytes, rest zeroed. */
static PyObject *gather_padded(PyObject *self, PyObject *args) {
    PyObject *addrs_obj, *len_obj, *out_obj;
    Py_ssize_t row;
    if (!PyArg_ParseTuple(args, "OOnO", &addrs_obj, &len_obj, &row, &out_obj)) return NULL;
    Py_buffer addrs, lens, out;
    if (get_i64(addrs_obj, &addrs, "addrs") != 0) return NULL;
    if (get_i64(len_obj, &lens, "lengths") != 0) { PyBuffer_Release(&addrs); return NULL; }
    if (get_out(out_obj, &out) != 0) { PyBuffer_Release(&addrs); PyBuffer_Release(&lens); return NULL; }
    Py_ssize_t n = addrs.len / 8;
    if (lens.len != addrs.len || row < 0 || out.len < n * row) {
        PyBuffer_Release(&addrs); PyBuffer_Release(&lens); PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "lengths must match addrs and out hold len(addrs) * row_bytes");
        return NULL;
    }
    const int64_t *a = (const int64_t *)addrs.buf, *l = (const int64_t *)lens.buf;
    char *dst = (char *)out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        size_t take = l[i] < 0 ? 0 : ((size_t)l[i] < (size_t)row ? (size_t)l[i] : (size_t)row);
        memcpy(dst + i * row, (const void *)(intptr_t)a[i], take);
        memset(dst + i * row + take, 0, (size_t)row - take);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&addrs); PyBuffer_Release(&lens); PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

/*
 * gather_rows(local, block_first, block_addr, itemsize, out): fixed-size field of one raw shard.
 * For each shard-local record number: find its block (binary search over block_first), then copy
 * itemsize bytes from block_addr[block] + (record - block_first[block]) * itemsize. block_addr
 * already includes the field's column offset. Doing the lookup here instead of in ~15 NumPy calls
 * cut get_batch overhead per 64-record batch of 4 KB rows from ~27 us to ~12 us (measured with
 * timeit on this 2-core VM; the bare copy is ~6 us).
 * Raises IndexError for a record outside [0, n_records).
 */
static PyObject *gather_rows(PyObject *self, PyObject *args) {
    PyObject *local_obj, *first_obj, *addr_obj, *out_obj;
    Py_ssize_t itemsize, n_records;
    if (!PyArg_ParseTuple(args, "OOOnnO", &local_obj, &first_obj, &addr_obj, &n_records, &itemsize, &out_obj))
        return NULL;
    Py_buffer local, first, addr, out;
    if (get_i64(local_obj, &local, "local") != 0) return NULL;
    if (get_i64(first_obj, &first, "block_first") != 0) { PyBuffer_Release(&local); return NULL; }
    if (get_i64(addr_obj, &addr, "block_addr") != 0) {
        PyBuffer_Release(&local); PyBuffer_Release(&first); return NULL;
    }
    if (get_out(out_obj, &out) != 0) {
        PyBuffer_Release(&local); PyBuffer_Release(&first); PyBuffer_Release(&addr); return NULL;
    }
    Py_ssize_t n = local.len / 8, nb = first.len / 8;
    const int64_t *loc = (const int64_t *)local.buf, *bf = (const int64_t *)first.buf,
                  *ba = (const int64_t *)addr.buf;
    int bad = addr.len != first.len || nb == 0 || itemsize <= 0 || out.len < n * itemsize;
    Py_ssize_t bad_index = -1;
    for (Py_ssize_t i = 0; i < n && !bad; i++)
        if (loc[i] < 0 || loc[i] >= n_records) { bad_index = i; break; }
    if (bad || bad_index >= 0) {
        if (bad_index >= 0)
            PyErr_Format(PyExc_IndexError, "record %lld is outside the shard's %zd records",
                         (long long)loc[bad_index], n_records);
        else
            PyErr_SetString(PyExc_ValueError, "block tables must match, be non-empty, and out hold n * itemsize");
        PyBuffer_Release(&local); PyBuffer_Release(&first); PyBuffer_Release(&addr); PyBuffer_Release(&out);
        return NULL;
    }
    char *dst = (char *)out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t r = loc[i];
        Py_ssize_t lo = 0, hi = nb - 1;  /* last block whose first record <= r */
        while (lo < hi) {
            Py_ssize_t mid = (lo + hi + 1) / 2;
            if (bf[mid] <= r) lo = mid; else hi = mid - 1;
        }
        memcpy(dst + i * itemsize, (const void *)(intptr_t)(ba[lo] + (r - bf[lo]) * itemsize), (size_t)itemsize);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&local); PyBuffer_Release(&first); PyBuffer_Release(&addr); PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

/* last index i in [lo, hi) with a[i] <= v (a sorted ascending, a[lo] <= v) */
static Py_ssize_t last_le(const int64_t *a, Py_ssize_t lo, Py_ssize_t hi, int64_t v) {
    hi -= 1;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi + 1) / 2;
        if (a[mid] <= v) lo = mid; else hi = mid - 1;
    }
    return lo;
}

/*
 * gather_multi(idx, shard_start, shard_block, block_first, block_addr, itemsize, out): a fixed
 * field of a batch spread over many raw shards. shard_start (n_shards + 1) holds cumulative record
 * counts, shard_block (n_shards + 1) each shard's first row in the global block tables,
 * block_first the shard-local first record of every block and block_addr the field's column
 * address in every block. Random 64-record batches touch ~13 of 13 shards in the token benchmark,
 * where a Python loop over shards took 6x the copy time (bench/read_random.py, docs/benchmarks.md).
 * With blocks_out, the global block of each record is written there, so the caller can verify
 * the blocks it touched (and only those) before handing the batch out.
 * Raises IndexError for an index outside [0, total records).
 */
static PyObject *gather_multi(PyObject *self, PyObject *args) {
    PyObject *objs[5], *out_obj, *blocks_obj = Py_None;
    Py_ssize_t itemsize;
    if (!PyArg_ParseTuple(args, "OOOOOnO|O", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &itemsize,
                          &out_obj, &blocks_obj))
        return NULL;
    static const char *names[5] = {"idx", "shard_start", "shard_block", "block_first", "block_addr"};
    Py_buffer v[5], out;
    int got = 0;
    for (; got < 5; got++)
        if (get_i64(objs[got], &v[got], names[got]) != 0) break;
    int ok = got == 5 && get_out(out_obj, &out) == 0;
    if (!ok) {
        for (int k = 0; k < got; k++) PyBuffer_Release(&v[k]);
        return NULL;
    }
    Py_buffer blocks_view = {0};
    int64_t *blocks_out = NULL;
    if (blocks_obj != Py_None) {
        if (get_out(blocks_obj, &blocks_view) != 0) {
            for (int k = 0; k < 5; k++) PyBuffer_Release(&v[k]);
            PyBuffer_Release(&out);
            return NULL;
        }
        blocks_out = (int64_t *)blocks_view.buf;
    }
    const int64_t *idx = v[0].buf, *ss = v[1].buf, *sb = v[2].buf, *bf = v[3].buf, *ba = v[4].buf;
    Py_ssize_t n = v[0].len / 8, ns = v[1].len / 8 - 1, nb = v[3].len / 8;
    int64_t total = ns >= 0 ? ss[ns] : 0;
    const char *err = NULL;
    if (blocks_out != NULL && blocks_view.len < n * 8) err = "blocks_out holds fewer than len(idx) int64";
    if (ns < 1 || v[2].len != v[1].len || v[4].len != v[3].len || itemsize <= 0 || out.len < n * itemsize ||
        sb[ns] > nb)
        err = "inconsistent tables or out too small";
    Py_ssize_t bad = -1;
    for (Py_ssize_t i = 0; i < n && !err; i++)
        if (idx[i] < 0 || idx[i] >= total) { bad = i; break; }
    if (err || bad >= 0) {
        if (bad >= 0) PyErr_Format(PyExc_IndexError, "index %lld is out of range", (long long)idx[bad]);
        else PyErr_SetString(PyExc_ValueError, err);
        for (int k = 0; k < 5; k++) PyBuffer_Release(&v[k]);
        PyBuffer_Release(&out);
        if (blocks_out != NULL) PyBuffer_Release(&blocks_view);
        return NULL;
    }
    char *dst = (char *)out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t s = last_le(ss, 0, ns, idx[i]);
        int64_t local = idx[i] - ss[s];
        Py_ssize_t b = last_le(bf, sb[s], sb[s + 1], local);
        memcpy(dst + i * itemsize, (const void *)(intptr_t)(ba[b] + (local - bf[b]) * itemsize), (size_t)itemsize);
        if (blocks_out != NULL) blocks_out[i] = b;
    }
    Py_END_ALLOW_THREADS
    for (int k = 0; k < 5; k++) PyBuffer_Release(&v[k]);
    PyBuffer_Release(&out);
    if (blocks_out != NULL) PyBuffer_Release(&blocks_view);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"gather_multi", gather_multi, METH_VARARGS,
     "gather_multi(idx, shard_start, shard_block, block_first, block_addr, itemsize, out, blocks_out=None): fixed field across raw shards."},
    {"gather_rows", gather_rows, METH_VARARGS,
     "gather_rows(local, block_first, block_addr, n_records, itemsize, out): fixed field of one raw shard."},
    {"gather_fixed", gather_fixed, METH_VARARGS,
     "gather_fixed(addrs, itemsize, out): copy itemsize bytes from each address into out, in order."},
    {"gather_var", gather_var, METH_VARARGS,
     "gather_var(addrs, lengths, out) -> int: copy each payload back to back into out; returns bytes."},
    {"gather_padded", gather_padded, METH_VARARGS,
     "gather_padded(addrs, lengths, row_bytes, out): one zero-padded row of row_bytes per payload."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "fastload's small C extension: batch gathers.", -1, methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
