"""Build the C extensions (csrc/) with the package; nothing beyond a C compiler is needed."""

import sys

from setuptools import Extension, setup

FLAGS = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(
    ext_modules=[
        Extension("fastload._native", sources=["csrc/fastload_native.c"], depends=["csrc/gather_core.h"],
                  extra_compile_args=FLAGS),
        # the loader's worker threads in C (the fast path of thread workers): the same gather, no GIL
        Extension("fastload._gather_pool",
                  sources=["csrc/gather_pool.c", "csrc/gather_pool_tasks.c", "csrc/gather_pool_order.c",
                           "csrc/gather_pool_seats.c", "csrc/gather_pool_wait.c"],
                  depends=["csrc/gather_pool.h", "csrc/gather_core.h", "csrc/keyed_order.h",
                           "csrc/third_party/xxhash/xxhash.h"],
                  extra_compile_args=FLAGS, extra_link_args=["-pthread"]),
        # xxHash's own XXH3-128 (vendored header) over many rows: pack's dedup hashes
        Extension("fastload._row_hash", sources=["csrc/row_hash.c"],
                  depends=["csrc/third_party/xxhash/xxhash.h"], extra_compile_args=FLAGS),
        # no JPEG headers or library at build time: libjpeg-turbo is opened at run time (dlopen)
        Extension("fastload._jpeg", sources=["csrc/jpeg_window.c"], depends=["csrc/libjpeg62_abi.h"],
                  extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
                  libraries=["dl"] if sys.platform.startswith("linux") else []),
    ]
)
