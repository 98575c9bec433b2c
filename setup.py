"""Build the C extension (csrc/) with the package; nothing beyond a C compiler is needed."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fastload._native",
            sources=["csrc/fastload_native.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
