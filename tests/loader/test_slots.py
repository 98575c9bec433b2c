"""Shared-memory batch slots: layout arithmetic, views, attaching from another process, cleanup."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os

import numpy as np
import pytest

from fastload import Schema, SchemaError
from fastload.loader.slots import ALIGN, SlotLayout, SlotRing, our_segments

pytestmark = pytest.mark.timeout(60)

SCHEMA = Schema.parse("tok:uint16[33],id:int64,text:str,flag:bool,img:uint8[3,5,7],vec:float32[-1]")


def leaked() -> list[str]:
    return our_segments(os.listdir("/dev/shm"))


def test_layout_for_dataset_keeps_fixed_fields_aligned():
    layout = SlotLayout.for_dataset(SCHEMA, 10, None)
    assert layout.fields == (("tok", "<u2", (33,)), ("id", "<i8", ()), ("flag", "|b1", ()),
                             ("img", "|u1", (3, 5, 7)))
    assert layout.names == ("tok", "id", "flag", "img")
    assert [layout.row_bytes(n) for n in layout.names] == [66, 8, 1, 105]
    # each array rounded up to 64 bytes: 660 -> 704, 80 -> 128, 10 -> 64, 1050 -> 1088
    assert layout.offsets == (0, 704, 832, 896)
    assert layout.slot_bytes == 704 + 128 + 64 + 1088
    assert all(off % ALIGN == 0 for off in layout.offsets) and layout.slot_bytes % ALIGN == 0


def test_layout_for_chosen_fields_in_their_order():
    layout = SlotLayout.for_dataset(SCHEMA, 4, ["id", "text", "tok"])
    assert layout.names == ("id", "tok")  # text is variable-size: it does not live in a slot
    with pytest.raises(SchemaError, match=r"unknown fields \['nope'\]"):
        SlotLayout.for_dataset(SCHEMA, 4, ["id", "nope"])


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0, "fields": ()}, "batch_size must be a positive integer"),
    ({"batch_size": True, "fields": ()}, "batch_size must be a positive integer"),
    ({"batch_size": 2, "fields": (("a", "int8"),)}, r"\(name, dtype, shape\)"),
    ({"batch_size": 2, "fields": (("a", "nonsense", ()),)}, "not a NumPy dtype|data type"),
    ({"batch_size": 2, "fields": (("a", "int8", (0,)),)}, "positive sizes"),
    ({"batch_size": 2, "fields": (("a", "int8", ()), ("a", "int16", ()))}, "repeat a name"),
])
def test_layout_validation(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SlotLayout(**kwargs)


def test_layout_normalises_and_pickles():
    import pickle

    layout = SlotLayout(3, [["a", np.int16, [2, 2]]])
    assert layout.fields == (("a", "<i2", (2, 2)),)
    assert pickle.loads(pickle.dumps(layout)) == layout and hash(layout) == hash(pickle.loads(pickle.dumps(layout)))


def test_ring_arrays_are_disjoint_views_of_the_slots():
    layout = SlotLayout.for_dataset(SCHEMA, 8, None)
    with SlotRing(layout, 3) as ring:
        assert ring.name.startswith(f"fastload-{os.getpid()}-") and ring.name in leaked()
        for slot in range(3):
            for name, arr in ring.arrays(slot).items():
                assert arr.flags.c_contiguous and arr.flags.writeable and arr.shape[0] == 8
                arr[...] = slot + 1
        for slot in range(3):
            a = ring.arrays(slot)
            assert all((v == np.array(slot + 1).astype(v.dtype)).all() for v in a.values())
            assert (a["tok"] == slot + 1).all() and (a["img"] == slot + 1).all()
            assert a["tok"].dtype == np.dtype("<u2") and a["tok"].shape == (8, 33)
            assert a["img"].shape == (8, 3, 5, 7) and a["flag"].dtype == bool
            assert a["tok"].ctypes.data % ALIGN == 0 and a["id"].ctypes.data % ALIGN == 0
        short = ring.arrays(2, 3)
        assert short["tok"].shape == (3, 33) and short["id"].shape == (3,)
        assert short["tok"].ctypes.data == ring.arrays(2)["tok"].ctypes.data
        assert ring.arrays(1, 0)["img"].shape == (0, 3, 5, 7)
        with pytest.raises(IndexError, match="slot 3 is out of range"):
            ring.arrays(3)
        with pytest.raises(ValueError, match="0..8 rows"):
            ring.arrays(0, 9)
    assert ring.closed and leaked() == []
    with pytest.raises(ValueError, match="closed"):
        ring.arrays(0)


def test_each_slot_has_an_index_array_apart_from_its_fields():
    layout = SlotLayout.for_dataset(SCHEMA, 8, None)
    with SlotRing(layout, 3) as ring:
        for slot in range(3):
            for arr in ring.arrays(slot).values():
                arr[...] = 0
            ring.indices(slot)[:] = np.arange(8) + 100 * slot
        for slot in range(3):
            idx = ring.indices(slot)
            assert idx.dtype == np.int64 and idx.shape == (8,) and idx.ctypes.data % ALIGN == 0
            assert idx.tolist() == list(range(100 * slot, 100 * slot + 8))
            assert all((a == 0).all() for a in ring.arrays(slot).values())
        with pytest.raises(IndexError):
            ring.indices(3)


def _child_writes(name: str, layout: SlotLayout, n_slots: int, value: int) -> None:
    ring = SlotRing(layout, n_slots, create=False, name=name)
    ring.arrays(1)["id"][:] = value
    ring.close()  # an attached ring never unlinks


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_process_attaches_by_name_and_writes_into_the_owners_slots(method):
    layout = SlotLayout(4, (("id", "<i8", ()),))
    with SlotRing(layout, 2) as ring:
        proc = mp.get_context(method).Process(target=_child_writes, args=(ring.name, layout, 2, 42))
        proc.start()
        proc.join(30)
        assert proc.exitcode == 0
        assert ring.name in leaked()  # still there: only its owner removes it
        assert (ring.arrays(1)["id"] == 42).all() and (ring.arrays(0)["id"] == 0).all()
    assert leaked() == []


def test_attaching_checks_the_size_and_never_unlinks():
    layout = SlotLayout(4, (("id", "<i8", ()),))
    with SlotRing(layout, 2) as ring:
        with pytest.raises(ValueError, match="need"):
            SlotRing(layout, 3, create=False, name=ring.name)
        with pytest.raises(ValueError, match="needs its name"):
            SlotRing(layout, 2, create=False)
        other = SlotRing(layout, 2, create=False, name=ring.name)
        other.close()
        other.close()
        assert ring.name in leaked()
    assert leaked() == []


def test_views_outlive_close_safely_and_close_is_idempotent():
    layout = SlotLayout(4, (("id", "<i8", ()),))
    ring = SlotRing(layout, 2)
    view = ring.arrays(0)["id"]
    view[:] = 7
    ring.close()
    ring.close()
    assert leaked() == []  # unlinked at once...
    assert view.tolist() == [7, 7, 7, 7]  # ...while the memory stays mapped for the view
    view[0] = 1
    del view
    gc.collect()


def test_a_dropped_ring_is_unlinked_by_its_finalizer():
    ring = SlotRing(SlotLayout(2, (("id", "<i8", ()),)), 2)
    assert ring.name in leaked()
    del ring
    gc.collect()
    assert leaked() == []


def test_a_layout_without_fixed_fields_still_gets_a_ring():
    layout = SlotLayout.for_dataset(Schema.parse("text:str"), 16, None)
    assert layout.fields == () and layout.slot_bytes == 0
    with SlotRing(layout, 2) as ring:
        assert ring.arrays(1, 5) == {}
    assert leaked() == []
