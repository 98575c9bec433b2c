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
 * memory alive for the duration of the call. Every read from file memory is checked against the
 * bounds of the block it belongs to (``inside`` below) before it happens.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "gather_core.h"

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

/* Views taken from the arguments, released together whatever happened. */
typedef struct {
    Py_buffer views[12];
    int n;
} Views;

static void release(Views *v) {
    for (int k = 0; k < v->n; k++) PyBuffer_Release(&v->views[k]);
    v->n = 0;
}

/* The next view, as int64 (what non-NULL) or as a writable output (what NULL); on failure the
 * views taken so far are released and NULL is returned with the Python error set. */
static Py_buffer *take(Views *v, PyObject *obj, const char *what) {
    Py_buffer *view = &v->views[v->n];
    if ((what != NULL ? get_i64(obj, view, what) : get_out(obj, view)) != 0) {
        release(v);
        return NULL;
    }
    v->n++;
    return view;
}

static PyObject *outside_error(Py_ssize_t i) {
    PyErr_Format(PyExc_ValueError, "record at position %zd would be read outside its block's bytes", i);
    return NULL;
}

/* gather_fixed(addrs, itemsize, out, lo, hi): out[i*itemsize : (i+1)*itemsize] = *addrs[i], each
 * read inside [lo[i], hi[i]). */
static PyObject *gather_fixed(PyObject *self, PyObject *args) {
    PyObject *addrs_obj, *out_obj, *lo_obj, *hi_obj;
    Py_ssize_t itemsize;
    if (!PyArg_ParseTuple(args, "OnOOO", &addrs_obj, &itemsize, &out_obj, &lo_obj, &hi_obj)) return NULL;
    Views v = {.n = 0};
    Py_buffer *addrs, *out, *lo, *hi;
    if (!(addrs = take(&v, addrs_obj, "addrs")) || !(out = take(&v, out_obj, NULL)) ||
        !(lo = take(&v, lo_obj, "lo")) || !(hi = take(&v, hi_obj, "hi")))
        return NULL;
    Py_ssize_t n = addrs->len / 8;
    if (itemsize < 0 || (itemsize > 0 && out->len / itemsize < n) || lo->len != addrs->len || hi->len != addrs->len) {
        release(&v);
        PyErr_SetString(PyExc_ValueError, "out must hold len(addrs) * itemsize, and lo and hi match addrs");
        return NULL;
    }
    const int64_t *a = (const int64_t *)addrs->buf, *l = (const int64_t *)lo->buf, *h = (const int64_t *)hi->buf;
    char *dst = (char *)out->buf;
    Py_ssize_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++)
        if (!inside(a[i], itemsize, l[i], h[i])) { bad = i; break; }
    /* Specialised widths let the compiler emit plain loads/stores instead of memcpy calls. */
    if (bad < 0 && itemsize == 8) {
        for (Py_ssize_t i = 0; i < n; i++) memcpy(dst + i * 8, (const void *)(intptr_t)a[i], 8);
    } else if (bad < 0 && itemsize == 4) {
        for (Py_ssize_t i = 0; i < n; i++) memcpy(dst + i * 4, (const void *)(intptr_t)a[i], 4);
    } else if (bad < 0) {
        for (Py_ssize_t i = 0; i < n; i++)
            memcpy(dst + i * itemsize, (const void *)(intptr_t)a[i], (size_t)itemsize);
    }
    Py_END_ALLOW_THREADS
    release(&v);
    if (bad >= 0) return outside_error(bad);
    Py_RETURN_NONE;
}

/* gather_var(addrs, lengths, out, lo, hi) -> total bytes: payloads copied back to back into out,
 * each read inside [lo[i], hi[i]). */
static PyObject *gather_var(PyObject *self, PyObject *args) {
    PyObject *addrs_obj, *len_obj, *out_obj, *lo_obj, *hi_obj;
    if (!PyArg_ParseTuple(args, "OOOOO", &addrs_obj, &len_obj, &out_obj, &lo_obj, &hi_obj)) return NULL;
    Views v = {.n = 0};
    Py_buffer *addrs, *lens, *out, *lo, *hi;
    if (!(addrs = take(&v, addrs_obj, "addrs")) || !(lens = take(&v, len_obj, "lengths")) ||
        !(out = take(&v, out_obj, NULL)) || !(lo = take(&v, lo_obj, "lo")) || !(hi = take(&v, hi_obj, "hi")))
        return NULL;
    Py_ssize_t n = addrs->len / 8;
    const int64_t *a = (const int64_t *)addrs->buf, *l = (const int64_t *)lens->buf;
    const int64_t *lo_a = (const int64_t *)lo->buf, *hi_a = (const int64_t *)hi->buf;
    int64_t total = 0;
    int bad = lens->len != addrs->len || lo->len != addrs->len || hi->len != addrs->len;
    Py_ssize_t outside = -1;
    for (Py_ssize_t i = 0; i < n && !bad; i++) {
        if (l[i] < 0 || l[i] > out->len - total) bad = 1;  /* also keeps total from overflowing */
        else if (!inside(a[i], l[i], lo_a[i], hi_a[i])) { outside = i; break; }
        else total += l[i];
    }
    if (bad || outside >= 0) {
        release(&v);
        if (outside >= 0) return outside_error(outside);
        PyErr_SetString(PyExc_ValueError, "lengths, lo and hi must match addrs, lengths be >= 0 and fit in out");
        return NULL;
    }
    char *dst = (char *)out->buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        memcpy(dst, (const void *)(intptr_t)a[i], (size_t)l[i]);
        dst += l[i];
    }
    Py_END_ALLOW_THREADS
    release(&v);
    return PyLong_FromLongLong(total);
}

/* gather_padded(src, offsets, row_bytes, out): row i gets the first min(len_i, row_bytes) bytes of
 * src[offsets[i] : offsets[i+1]], the rest zeroed; offsets must rise from >= 0 to <= len(src). */
static PyObject *gather_padded(PyObject *self, PyObject *args) {
    PyObject *src_obj, *off_obj, *out_obj;
    Py_ssize_t row;
    if (!PyArg_ParseTuple(args, "OOnO", &src_obj, &off_obj, &row, &out_obj)) return NULL;
    Views v = {.n = 0};
    Py_buffer *src, *offs, *out;
    if (PyObject_GetBuffer(src_obj, &v.views[0], PyBUF_C_CONTIGUOUS) != 0) return NULL;
    src = &v.views[0];
    v.n = 1;
    if (!(offs = take(&v, off_obj, "offsets")) || !(out = take(&v, out_obj, NULL))) return NULL;
    Py_ssize_t n = offs->len / 8 - 1;
    const int64_t *o = (const int64_t *)offs->buf;
    int bad = n < 0 || row < 0 || (row > 0 && out->len / row < n) || o[0] < 0 || o[n] > src->len;
    for (Py_ssize_t i = 0; i < n && !bad; i++)
        if (o[i + 1] < o[i]) bad = 1;
    if (bad) {
        release(&v);
        PyErr_SetString(PyExc_ValueError,
                        "offsets must rise from >= 0 to <= len(src), and out hold (len(offsets) - 1) * row_bytes");
        return NULL;
    }
    const char *base = (const char *)src->buf;
    char *dst = (char *)out->buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t len = o[i + 1] - o[i];
        size_t take_n = (uint64_t)len < (uint64_t)row ? (size_t)len : (size_t)row;
        memcpy(dst + i * row, base + o[i], take_n);
        memset(dst + i * row + take_n, 0, (size_t)row - take_n);
    }
    Py_END_ALLOW_THREADS
    release(&v);
    Py_RETURN_NONE;
}

/*
 * gather_rows(local, block_first, block_addr, block_lo, block_hi, n_records, itemsize, out): a
 * fixed-size field of one raw shard. For each shard-local record number: find its block (binary
 * search over block_first), then copy itemsize bytes from block_addr[block] + (record -
 * block_first[block]) * itemsize, inside [block_lo, block_hi). block_addr already includes the
 * field's column offset. Doing the lookup here instead of in ~15 NumPy calls cut get_batch
 * overhead per 64-record batch of 4 KB rows from ~27 us to ~12 us (measured with timeit on this
 * 2-core VM; the bare copy is ~6 us).
 * Raises IndexError for a record outside [0, n_records).
 */
static PyObject *gather_rows(PyObject *self, PyObject *args) {
    PyObject *local_obj, *first_obj, *addr_obj, *lo_obj, *hi_obj, *out_obj;
    Py_ssize_t itemsize, n_records;
    if (!PyArg_ParseTuple(args, "OOOOOnnO", &local_obj, &first_obj, &addr_obj, &lo_obj, &hi_obj, &n_records,
                          &itemsize, &out_obj))
        return NULL;
    Views v = {.n = 0};
    Py_buffer *local, *first, *addr, *blo, *bhi, *out;
    if (!(local = take(&v, local_obj, "local")) || !(first = take(&v, first_obj, "block_first")) ||
        !(addr = take(&v, addr_obj, "block_addr")) || !(blo = take(&v, lo_obj, "block_lo")) ||
        !(bhi = take(&v, hi_obj, "block_hi")) || !(out = take(&v, out_obj, NULL)))
        return NULL;
    Py_ssize_t n = local->len / 8, nb = first->len / 8;
    const int64_t *loc = (const int64_t *)local->buf, *bf = (const int64_t *)first->buf,
                  *ba = (const int64_t *)addr->buf, *lo_a = (const int64_t *)blo->buf, *hi_a = (const int64_t *)bhi->buf;
    int bad = addr->len != first->len || blo->len != first->len || bhi->len != first->len || nb == 0 ||
              itemsize <= 0 || out->len / itemsize < n;
    Py_ssize_t bad_index = -1;
    for (Py_ssize_t i = 0; i < n && !bad; i++)
        if (loc[i] < 0 || loc[i] >= n_records) { bad_index = i; break; }
    if (bad || bad_index >= 0) {
        if (bad_index >= 0)
            PyErr_Format(PyExc_IndexError, "record %lld is outside the shard's %zd records",
                         (long long)loc[bad_index], n_records);
        else
            PyErr_SetString(PyExc_ValueError, "block tables must match, be non-empty, and out hold n * itemsize");
        release(&v);
        return NULL;
    }
    char *dst = (char *)out->buf;
    Py_ssize_t outside = -1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t b = last_le(bf, 0, nb, loc[i]);
        int64_t src = row_source(bf, ba, lo_a, hi_a, b, loc[i], itemsize);
        if (src < 0) { outside = i; break; }
        memcpy(dst + i * itemsize, (const void *)(intptr_t)src, (size_t)itemsize);
    }
    Py_END_ALLOW_THREADS
    release(&v);
    if (outside >= 0) return outside_error(outside);
    Py_RETURN_NONE;
}

/* The arguments both multi-shard gathers share: the eight int64 tables (idx, shard_start,
 * shard_lo, shard_hi, block_first, block_addr, block_lo, block_hi), then the optional blocks_out. */
typedef struct {
    BlockTables tables;
    const int64_t *idx, *ba;
    Py_ssize_t n;          /* records in idx */
    int mismatch;          /* the tables' lengths disagree: the caller reports it */
    int64_t *blocks_out;   /* NULL when not given */
    Py_ssize_t blocks_len; /* int64 that blocks_out holds */
} MultiArgs;

/* Fills m from objs (as v's first eight views) and blocks_obj (Py_None: no blocks_out); returns
 * -1 with an exception set (v released) for a bad argument, 0 otherwise. */
static int take_tables(Views *v, PyObject *const *objs, PyObject *blocks_obj, MultiArgs *m) {
    static const char *names[8] = {"idx", "shard_start", "shard_lo", "shard_hi", "block_first", "block_addr",
                                   "block_lo", "block_hi"};
    const int64_t *t[8];
    for (int k = 0; k < 8; k++) {
        Py_buffer *view = take(v, objs[k], names[k]);
        if (view == NULL) return -1;
        t[k] = (const int64_t *)view->buf;
    }
    Py_ssize_t ns = v->views[1].len / 8 - 1, nb = v->views[4].len / 8;
    m->tables = (BlockTables){.ss = t[1], .slo = t[2], .shi = t[3], .bf = t[4], .blo = t[6], .bhi = t[7],
                              .ns = ns, .nb = nb};
    m->idx = t[0];
    m->ba = t[5];
    m->n = v->views[0].len / 8;
    m->mismatch = ns < 1 || v->views[2].len != ns * 8 || v->views[3].len != ns * 8 || v->views[5].len != nb * 8 ||
                  v->views[6].len != nb * 8 || v->views[7].len != nb * 8;
    m->blocks_out = NULL;
    m->blocks_len = 0;
    if (blocks_obj != Py_None) {
        Py_buffer *view = take(v, blocks_obj, NULL);
        if (view == NULL) return -1;
        m->blocks_out = (int64_t *)view->buf;
        m->blocks_len = view->len / 8;
    }
    return 0;
}

/*
 * gather_multi(idx, shard_start, shard_lo, shard_hi, block_first, block_addr, block_lo, block_hi,
 * itemsize, out, blocks_out=None): a fixed field of a batch spread over many raw shards.
 * shard_start (n_shards + 1) holds cumulative record counts; shard s's blocks are rows
 * [shard_lo[s], shard_hi[s]) of the global block tables (an empty range: not available, an
 * error); block_first holds the shard-local first record of every block, block_addr the field's
 * column address in every block, and [block_lo, block_hi) the block's bytes. Random 64-record
 * batches touch ~13 of 13 shards in the token benchmark, where a Python loop over shards took 6x
 * the copy time (bench/read_random.py, docs/benchmarks.md).
 * With blocks_out, the global block of each record is written there, so the caller can verify
 * the blocks it touched (and only those) before handing the batch out.
 * Raises IndexError for an index outside [0, total records), ValueError for a read that would
 * leave its block.
 */
static PyObject *gather_multi(PyObject *self, PyObject *args) {
    PyObject *objs[8], *out_obj, *blocks_obj = Py_None;
    Py_ssize_t itemsize;
    if (!PyArg_ParseTuple(args, "OOOOOOOOnO|O", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5],
                          &objs[6], &objs[7], &itemsize, &out_obj, &blocks_obj))
        return NULL;
    Views v = {.n = 0};
    MultiArgs m;
    if (take_tables(&v, objs, blocks_obj, &m) < 0) return NULL;
    Py_ssize_t n = m.n;
    Py_buffer *out = take(&v, out_obj, NULL);
    if (out == NULL) return NULL;
    const char *err = NULL;
    if (m.blocks_out != NULL && m.blocks_len < n) err = "blocks_out holds fewer than len(idx) int64";
    if (m.mismatch || itemsize <= 0 || out->len / itemsize < n) err = "inconsistent tables or out too small";
    Py_ssize_t bad = err ? -1 : first_out_of_range(&m.tables, m.idx, n);
    if (err || bad >= 0) {
        if (bad >= 0) PyErr_Format(PyExc_IndexError, "index %lld is out of range", (long long)m.idx[bad]);
        else PyErr_SetString(PyExc_ValueError, err);
        release(&v);
        return NULL;
    }
    Py_ssize_t outside;
    Py_BEGIN_ALLOW_THREADS
    outside = gather_rows_multi(&m.tables, m.ba, m.idx, n, itemsize, (char *)out->buf, m.blocks_out);
    Py_END_ALLOW_THREADS
    release(&v);
    if (outside >= 0) return outside_error(outside);
    Py_RETURN_NONE;
}

/*
 * gather_var_multi(idx, shard_start, shard_lo, shard_hi, block_first, block_addr, block_lo,
 * block_hi, offsets_out, data_out, blocks_out=None) -> total bytes: a variable-size field of a
 * batch spread over many raw shards, with the tables of gather_multi (block_addr: the field's
 * column, n + 1 uint32 payload offsets then the payloads). offsets_out (len(idx) + 1 int64) gets
 * the batch's offsets from 0; the payloads are copied back to back into data_out only when the
 * total fits (else nothing is copied: the caller retries with room for the returned total).
 * The planning this replaces (per-shard NumPy locating, ~120 us for 256 records over 4 shards)
 * cost 9x the copy; here a batch of 256 ~200 B strings takes ~15 us (docs/benchmarks.md).
 * Raises IndexError for an index outside [0, total records), ValueError for an offset pair or a
 * payload that would leave its block (a corrupt index).
 */
static PyObject *gather_var_multi(PyObject *self, PyObject *args) {
    PyObject *objs[8], *offsets_obj, *data_obj, *blocks_obj = Py_None;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOO|O", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5],
                          &objs[6], &objs[7], &offsets_obj, &data_obj, &blocks_obj))
        return NULL;
    Views v = {.n = 0};
    MultiArgs m;
    if (take_tables(&v, objs, blocks_obj, &m) < 0) return NULL;
    Py_ssize_t n = m.n;
    Py_buffer *offsets_view = take(&v, offsets_obj, "offsets_out");
    if (offsets_view == NULL) return NULL;
    if (offsets_view->readonly) {
        release(&v);
        PyErr_SetString(PyExc_ValueError, "offsets_out must be writable");
        return NULL;
    }
    Py_buffer *data = take(&v, data_obj, NULL);
    if (data == NULL) return NULL;
    int64_t *offsets = (int64_t *)offsets_view->buf;
    const char *err = NULL;
    if (m.blocks_out != NULL && m.blocks_len < n) err = "blocks_out holds fewer than len(idx) int64";
    if (offsets_view->len / 8 != n + 1) err = "offsets_out must hold len(idx) + 1 int64";
    if (m.mismatch) err = "inconsistent tables";
    Py_ssize_t bad = err ? -1 : first_out_of_range(&m.tables, m.idx, n);
    /* gather_var_rows_multi's scratch: 3 int64 per record */
    int64_t *src = err || bad >= 0 ? NULL : PyMem_Malloc((size_t)(n > 0 ? n : 1) * 3 * sizeof(int64_t));
    if (err || bad >= 0 || src == NULL) {
        if (bad >= 0) PyErr_Format(PyExc_IndexError, "index %lld is out of range", (long long)m.idx[bad]);
        else if (err) PyErr_SetString(PyExc_ValueError, err);
        else PyErr_NoMemory();
        release(&v);
        return NULL;
    }
    Py_ssize_t outside;
    int64_t sum;
    Py_BEGIN_ALLOW_THREADS
    outside = gather_var_rows_multi(&m.tables, m.ba, m.idx, n, offsets, (char *)data->buf, (int64_t)data->len,
                                    m.blocks_out, src, &sum);
    Py_END_ALLOW_THREADS
    PyMem_Free(src);
    release(&v);
    if (outside >= 0) return outside_error(outside);
    return PyLong_FromLongLong(sum);
}

static PyMethodDef methods[] = {
    {"gather_multi", gather_multi, METH_VARARGS,
     "gather_multi(idx, shard_start, shard_lo, shard_hi, block_first, block_addr, block_lo, block_hi, itemsize, "
     "out, blocks_out=None): fixed field across raw shards."},
    {"gather_var_multi", gather_var_multi, METH_VARARGS,
     "gather_var_multi(idx, shard_start, shard_lo, shard_hi, block_first, block_addr, block_lo, block_hi, "
     "offsets_out, data_out, blocks_out=None) -> int: variable field across raw shards."},
    {"gather_rows", gather_rows, METH_VARARGS,
     "gather_rows(local, block_first, block_addr, block_lo, block_hi, n_records, itemsize, out): fixed field of "
     "one raw shard."},
    {"gather_fixed", gather_fixed, METH_VARARGS,
     "gather_fixed(addrs, itemsize, out, lo, hi): copy itemsize bytes from each address, inside [lo, hi), into out."},
    {"gather_var", gather_var, METH_VARARGS,
     "gather_var(addrs, lengths, out, lo, hi) -> int: copy each payload (inside [lo, hi)) back to back into out."},
    {"gather_padded", gather_padded, METH_VARARGS,
     "gather_padded(src, offsets, row_bytes, out): one zero-padded row of row_bytes per payload of src."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "fastload's small C extension: batch gathers.", -1, methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
