/*
 * fastload._jpeg: decode only a window of a JPEG, through the libjpeg API of a libjpeg-turbo
 * opened at run time (the one Pillow's wheels ship), so installing fastload needs no system library.
 *
 * RandomResizedCrop keeps ~half of an image on average; a full decode pays the inverse DCT,
 * chroma upsampling and colour conversion for every pixel. Here the columns outside the window
 * are never transformed (jpeg_crop_scanline), the rows above it are only entropy-decoded
 * (jpeg_skip_scanlines), and the decode stops after the window's last row (jpeg_abort_decompress),
 * so the rows below are not even entropy-decoded. libjpeg's DCT-domain scaling (1/2, 1/4, 1/8)
 * combines with it. The window's pixels are the same as in a full decode of the same library.
 *
 * load(path) -> capsule: dlopen the library, resolve its entry points, and check that it speaks
 *   the 6.2 ABI (jpeg_CreateDecompress checks our struct size), else raise OSError.
 * decode_window(lib, data, out, denom, top, left, bottom, right, fast)
 *   -> (top, left, height, width): decode rows [top, bottom) and at least columns [left, right) of
 *   the image scaled by 1/denom into out (C-contiguous uint8, height * width * 3 bytes used). The
 *   returned window is the decoded one: the columns widen to the decoder's block boundaries.
 *   Corrupt data, including what libjpeg only warns about, raises ValueError with its message.
 * probe_jpegs(lib, data, offsets, sizes): the (height, width) of every record's JPEG (a flat byte
 *   buffer cut by int64 offsets) into sizes (int64, n x 2), or (-1, -1) for one the batch kernel leaves
 *   to the Python path (not a JPEG, truncated, CMYK/YCCK, over MAX_PIXELS, an unreadable header).
 * native_entries(lib) -> (api, decode, clock): addresses for a batch kernel that calls
 *   fastload_jpeg_decode_window and fastload_monotonic_s without Python (fastload/_kernels/jpeg_batch.py).
 * The GIL is released while decoding and probing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "libjpeg62_abi.h"

#ifndef _WIN32
#include <dlfcn.h>
#endif

#define CAPSULE_NAME "fastload._jpeg.api"

typedef struct {
    struct jpeg62_api api;
    void *handle;
} library;

static void library_free(PyObject *capsule) {
    library *lib = PyCapsule_GetPointer(capsule, CAPSULE_NAME);
    if (lib == NULL) return;
#ifndef _WIN32
    if (lib->handle) dlclose(lib->handle);
#endif
    PyMem_Free(lib);
}

/* Errors and warnings leave the decode through this jump, with libjpeg's message. */
typedef struct {
    struct jpeg62_error_mgr pub;
    jmp_buf jump;
    char message[JPEG62_MSG_LENGTH_MAX];
} error_mgr;

static void on_error(struct jpeg62_common *cinfo) {
    error_mgr *err = (error_mgr *)cinfo->err;
    err->pub.format_message(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void on_message(struct jpeg62_common *cinfo, int level) {
    if (level < 0) on_error(cinfo); /* a warning means corrupt data: strict, as simplejpeg's default */
}

/* A zeroed cinfo whose errors and warnings go to err (the caller's setjmp catches them). */
static void init_decompress(const struct jpeg62_api *api, struct jpeg62_decompress *cinfo, error_mgr *err) {
    memset(cinfo, 0, sizeof *cinfo);
    cinfo->err = api->std_error(&err->pub);
    err->pub.error_exit = on_error;
    err->pub.emit_message = on_message;
    err->message[0] = '\0';
}

static void copy_message(char *message, const error_mgr *err) {
    strncpy(message, err->message, JPEG62_MSG_LENGTH_MAX - 1);
    message[JPEG62_MSG_LENGTH_MAX - 1] = '\0';
}

static int check_abi(const struct jpeg62_api *api, char *message) {
    struct jpeg62_decompress cinfo;
    error_mgr err;
    init_decompress(api, &cinfo, &err);
    if (setjmp(err.jump)) {
        copy_message(message, &err);
        return -1;
    }
    api->create_decompress(&cinfo, JPEG62_VERSION, sizeof cinfo);
    api->destroy_decompress(&cinfo);
    return 0;
}

static PyObject *load(PyObject *self, PyObject *args) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path)) return NULL;
#ifdef _WIN32
    PyErr_SetString(PyExc_OSError, "window decoding is not built on Windows");
    return NULL;
#else
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        PyErr_Format(PyExc_OSError, "cannot open %s: %s", path, dlerror());
        return NULL;
    }
    library *lib = PyMem_Calloc(1, sizeof(library));
    if (lib == NULL) { dlclose(handle); return PyErr_NoMemory(); }
    lib->handle = handle;
    struct { void **slot; const char *name; } symbols[] = {
        {(void **)&lib->api.std_error, "jpeg_std_error"},
        {(void **)&lib->api.create_decompress, "jpeg_CreateDecompress"},
        {(void **)&lib->api.destroy_decompress, "jpeg_destroy_decompress"},
        {(void **)&lib->api.abort_decompress, "jpeg_abort_decompress"},
        {(void **)&lib->api.mem_src, "jpeg_mem_src"},
        {(void **)&lib->api.read_header, "jpeg_read_header"},
        {(void **)&lib->api.start_decompress, "jpeg_start_decompress"},
        {(void **)&lib->api.crop_scanline, "jpeg_crop_scanline"},
        {(void **)&lib->api.skip_scanlines, "jpeg_skip_scanlines"},
        {(void **)&lib->api.read_scanlines, "jpeg_read_scanlines"},
        {(void **)&lib->api.finish_decompress, "jpeg_finish_decompress"},
    };
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        *symbols[i].slot = dlsym(handle, symbols[i].name);
        if (*symbols[i].slot == NULL) {
            PyErr_Format(PyExc_OSError, "%s has no %s (not libjpeg-turbo >= 1.5?)", path, symbols[i].name);
            dlclose(handle); PyMem_Free(lib);
            return NULL;
        }
    }
    char message[JPEG62_MSG_LENGTH_MAX];
    if (check_abi(&lib->api, message) != 0) {
        PyErr_Format(PyExc_OSError, "%s does not speak the libjpeg 6.2 ABI: %s", path, message);
        dlclose(handle); PyMem_Free(lib);
        return NULL;
    }
    PyObject *capsule = PyCapsule_New(lib, CAPSULE_NAME, library_free);
    if (capsule == NULL) { dlclose(handle); PyMem_Free(lib); }
    return capsule;
#endif
}

typedef struct {
    int top, left, bottom, right;  /* in: the window asked for; out: the one decoded */
    int denom, fast;               /* denom 0: read the header only, its size into bottom and right */
    unsigned char *out;
    Py_ssize_t out_len;
} window_job;

/* Decode job->window of data into job->out; 0, or -1 with message set. Runs without the GIL. */
static int decode(const struct jpeg62_api *api, const unsigned char *data, Py_ssize_t len, window_job *job,
                  char *message) {
    struct jpeg62_decompress cinfo;
    error_mgr err;
    /* volatile: read after a longjmp back into this frame */
    volatile int created = 0;
    init_decompress(api, &cinfo, &err);
    if (setjmp(err.jump)) {
        copy_message(message, &err);
        if (created) api->destroy_decompress(&cinfo);
        return -1;
    }
    api->create_decompress(&cinfo, JPEG62_VERSION, sizeof cinfo);
    created = 1;
    api->mem_src(&cinfo, data, (unsigned long)len);
    api->read_header(&cinfo, 1);
    if (cinfo.jpeg_color_space == JPEG62_JCS_CMYK || cinfo.jpeg_color_space == JPEG62_JCS_YCCK) {
        snprintf(message, JPEG62_MSG_LENGTH_MAX, "CMYK/YCCK JPEG: decode it whole");
        api->destroy_decompress(&cinfo);
        return -1;
    }
    if (job->denom == 0) {
        job->bottom = (int)cinfo.image_height;
        job->right = (int)cinfo.image_width;
        api->destroy_decompress(&cinfo);
        return 0;
    }
    cinfo.out_color_space = JPEG62_JCS_RGB;
    cinfo.scale_num = 1;
    cinfo.scale_denom = (unsigned int)job->denom;
    cinfo.dct_method = job->fast ? JPEG62_JDCT_IFAST : JPEG62_JDCT_ISLOW;
    cinfo.do_fancy_upsampling = 1;
    api->start_decompress(&cinfo);
    int height = (int)cinfo.output_height, width = (int)cinfo.output_width;
    int top = job->top < 0 ? 0 : job->top, bottom = job->bottom > height ? height : job->bottom;
    int left = job->left < 0 ? 0 : job->left, right = job->right > width ? width : job->right;
    if (cinfo.out_color_components != 3 || top >= bottom || left >= right) {
        snprintf(message, JPEG62_MSG_LENGTH_MAX, "window rows [%d, %d) x columns [%d, %d) is empty in a %dx%d image",
                 job->top, job->bottom, job->left, job->right, height, width);
        api->destroy_decompress(&cinfo);
        return -1;
    }
    jdimension xoffset = (jdimension)left, cols = (jdimension)(right - left);
    if (left > 0 || right < width) api->crop_scanline(&cinfo, &xoffset, &cols);
    if ((Py_ssize_t)(bottom - top) * cols * 3 > job->out_len) {
        snprintf(message, JPEG62_MSG_LENGTH_MAX, "out holds %zd bytes, the window needs %zd",
                 job->out_len, (Py_ssize_t)(bottom - top) * cols * 3);
        api->destroy_decompress(&cinfo);
        return -1;
    }
    if (top > 0 && api->skip_scanlines(&cinfo, (jdimension)top) != (jdimension)top) {
        snprintf(message, JPEG62_MSG_LENGTH_MAX, "could not skip to row %d", top);
        api->destroy_decompress(&cinfo);
        return -1;
    }
    unsigned char *rows[16];
    Py_ssize_t stride = (Py_ssize_t)cols * 3;
    while ((int)cinfo.output_scanline < bottom) {
        int want = bottom - (int)cinfo.output_scanline;
        if (want > 16) want = 16;
        for (int r = 0; r < want; r++) rows[r] = job->out + ((Py_ssize_t)cinfo.output_scanline - top + r) * stride;
        if (api->read_scanlines(&cinfo, rows, (jdimension)want) == 0) {
            snprintf(message, JPEG62_MSG_LENGTH_MAX, "no rows decoded at row %u", cinfo.output_scanline);
            api->destroy_decompress(&cinfo);
            return -1;
        }
    }
    if (bottom < height) api->abort_decompress(&cinfo); /* the rows below are never decoded */
    else api->finish_decompress(&cinfo);
    api->destroy_decompress(&cinfo);
    job->top = top;
    job->bottom = bottom;
    job->left = (int)xoffset;
    job->right = (int)(xoffset + cols);
    return 0;
}

/* The batch kernel's entry (called from Numba code, no Python): job holds
 * {denom, fast, top, left, bottom, right} in and the decoded window's {top, left, bottom, right}
 * back in its last four. Pointers come as integers, the kernel's only portable way to pass them.
 * 0, or -1 when the window does not decode (the caller decodes that image the Python way). */
__attribute__((visibility("default"))) int fastload_jpeg_decode_window(intptr_t api, intptr_t data, int64_t len,
                                                                     intptr_t out, int64_t out_len, intptr_t job) {
    int32_t *io = (int32_t *)job;
    window_job w = {.denom = io[0], .fast = io[1], .top = io[2], .left = io[3], .bottom = io[4], .right = io[5],
                    .out = (unsigned char *)out, .out_len = (Py_ssize_t)out_len};
    char message[JPEG62_MSG_LENGTH_MAX];
    if (w.denom != 1 && w.denom != 2 && w.denom != 4 && w.denom != 8) return -1;
    if (decode((const struct jpeg62_api *)api, (const unsigned char *)data, (Py_ssize_t)len, &w, message) != 0)
        return -1;
    io[2] = w.top; io[3] = w.left; io[4] = w.bottom; io[5] = w.right;
    return 0;
}

/* Seconds on the clock perf_counter reads (CLOCK_MONOTONIC), for the kernel's stage timings. */
__attribute__((visibility("default"))) double fastload_monotonic_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define MAX_PIXELS (2LL * 89478485LL) /* fastload.image.decode.MAX_PIXELS: Pillow's bomb limit */

/* Height and width of a complete JPEG the window decoder takes (its header readable, not
 * CMYK/YCCK, at most MAX_PIXELS), else -1. */
static int probe_one(const struct jpeg62_api *api, const unsigned char *data, Py_ssize_t len, int64_t *hw) {
    hw[0] = hw[1] = -1;
    if (len < 4 || data[0] != 0xFF || data[1] != 0xD8 || data[len - 2] != 0xFF || data[len - 1] != 0xD9)
        return -1; /* not a JPEG, or truncated: the Python path decides (and raises) */
    window_job header = {.denom = 0};
    char message[JPEG62_MSG_LENGTH_MAX];
    if (decode(api, data, len, &header, message) != 0) return -1;
    long long h = header.bottom, w = header.right;
    if (h <= 0 || w <= 0 || h * w > MAX_PIXELS) return -1;
    hw[0] = h;
    hw[1] = w;
    return 0;
}

static PyObject *probe_jpegs(PyObject *self, PyObject *args) {
    PyObject *capsule;
    Py_buffer data, offsets, sizes;
    if (!PyArg_ParseTuple(args, "Oy*y*w*", &capsule, &data, &offsets, &sizes)) return NULL;
    library *lib = PyCapsule_GetPointer(capsule, CAPSULE_NAME);
    Py_ssize_t n = offsets.len / (Py_ssize_t)sizeof(int64_t) - 1;
    const int64_t *off = offsets.buf;
    int ok = lib != NULL && n >= 0 && sizes.len >= n * 2 * (Py_ssize_t)sizeof(int64_t);
    for (Py_ssize_t k = 0; ok && k < n; k++)
        ok = off[k] >= 0 && off[k] <= off[k + 1] && off[k + 1] <= data.len;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t k = 0; k < n; k++)
            probe_one(&lib->api, (const unsigned char *)data.buf + off[k], (Py_ssize_t)(off[k + 1] - off[k]),
                      (int64_t *)sizes.buf + 2 * k);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&sizes);
    if (!ok) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "probe_jpegs: offsets must be int64, ascending, within data, and "
                                              "sizes must hold 2 int64 per record");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *native_entries(PyObject *self, PyObject *capsule) {
    library *lib = PyCapsule_GetPointer(capsule, CAPSULE_NAME);
    if (lib == NULL) return NULL;
    return Py_BuildValue("NNN", PyLong_FromVoidPtr(&lib->api), PyLong_FromVoidPtr((void *)fastload_jpeg_decode_window),
                         PyLong_FromVoidPtr((void *)fastload_monotonic_s));
}

static PyObject *decode_window(PyObject *self, PyObject *args) {
    PyObject *capsule, *out_obj;
    Py_buffer data, out;
    window_job job;
    if (!PyArg_ParseTuple(args, "Oy*Oiiiiii", &capsule, &data, &out_obj, &job.denom, &job.top, &job.left,
                          &job.bottom, &job.right, &job.fast))
        return NULL;
    library *lib = PyCapsule_GetPointer(capsule, CAPSULE_NAME);
    if (lib == NULL) { PyBuffer_Release(&data); return NULL; }
    if (job.denom != 1 && job.denom != 2 && job.denom != 4 && job.denom != 8) {
        PyBuffer_Release(&data);
        PyErr_Format(PyExc_ValueError, "denom must be 1, 2, 4 or 8, not %d", job.denom);
        return NULL;
    }
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) != 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    job.out = out.buf;
    job.out_len = out.len;
    char message[JPEG62_MSG_LENGTH_MAX];
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = decode(&lib->api, data.buf, data.len, &job, message);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    if (status != 0) {
        PyErr_Format(PyExc_ValueError, "JPEG window decode failed: %s", message);
        return NULL;
    }
    return Py_BuildValue("iiii", job.top, job.left, job.bottom - job.top, job.right - job.left);
}

static PyMethodDef methods[] = {
    {"load", load, METH_VARARGS, "load(path) -> capsule: open a libjpeg-turbo (6.2 ABI) for decode_window"},
    {"decode_window", decode_window, METH_VARARGS,
     "decode_window(lib, data, out, denom, top, left, bottom, right, fast) -> (top, left, height, width)"},
    {"probe_jpegs", probe_jpegs, METH_VARARGS,
     "probe_jpegs(lib, data, offsets, sizes): (height, width) of each complete JPEG the window decoder takes, else -1"},
    {"native_entries", native_entries, METH_O,
     "native_entries(lib) -> (api, decode, clock): addresses for a kernel calling the decoder without Python"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jpeg",
                                    "Decode a window of a JPEG through a libjpeg-turbo found at run time.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__jpeg(void) {
    PyObject *m = PyModule_Create(&module);
    /* the probe's size limit, which fastload.image.decode.MAX_PIXELS must equal (a test checks) */
    if (m != NULL && PyModule_AddObject(m, "MAX_PIXELS", PyLong_FromLongLong(MAX_PIXELS)) < 0) Py_CLEAR(m);
    return m;
}
