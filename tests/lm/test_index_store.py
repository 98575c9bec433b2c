"""The packing index's files: written with NumPy's own .npy bytes, read back by np.load."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fastload.lm import index_store
from fastload.lm.index_store import write_new_file, npy_header


@pytest.mark.parametrize("arr", [np.arange(1001, dtype=np.int32) * 7, np.arange(5, dtype=np.int64) - 2 ** 40,
                                 np.zeros(0, np.int32), np.arange(12, dtype=np.uint32).reshape(3, 4)],
                         ids=["int32", "int64", "empty", "2-d"])
def test_index_arrays_are_the_bytes_np_save_writes(tmp_path, arr):
    write_new_file(tmp_path / "a.npy", [npy_header(arr), arr])
    np.save(tmp_path / "b.npy", arr, allow_pickle=False)
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    back = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert back.dtype == arr.dtype and np.array_equal(back, arr)


def test_a_file_is_never_written_over(tmp_path):
    (tmp_path / "a").write_bytes(b"old")
    with pytest.raises(FileExistsError):
        write_new_file(tmp_path / "a", [b"new"])
    assert (tmp_path / "a").read_bytes() == b"old"


def test_a_short_write_goes_on_where_it_stopped(tmp_path, monkeypatch):
    def short_writev(fd, views):  # as the kernel may: part of the first buffer only
        return os.write(fd, bytes(views[0][:3]))

    monkeypatch.setattr(index_store.os, "writev", short_writev)
    arr = np.arange(100_000, dtype=np.int32)
    write_new_file(tmp_path / "a.npy", [npy_header(arr), arr])
    assert np.array_equal(np.load(tmp_path / "a.npy"), arr)
