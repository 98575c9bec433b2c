"""Numba kernels of the hot path: module-level ``@njit(nogil=True, cache=True)`` functions that
take arrays and scalars and write into a given ``out`` (debug them with ``NUMBA_DISABLE_JIT=1``)."""
