"""str and bytes fields through the batch slot: the default ``list[str]``/``list[bytes]`` and the
zero-copy form ``strings="buffers"``, checked against pyarrow (``to_pylist`` of the same rows, and
the offsets and data buffers of ``pa.array`` of them) with every kind of worker, shuffled, with
nulls, empty strings, non-ASCII text, ``fields=``, resume, batches too large for their arena, and
stored bytes that are not UTF-8 (which the buffer form delivers as they are: it never decodes)."""

from __future__ import annotations

from contextlib import closing

import numpy as np
import pyarrow as pa
import pytest
import torch

import fastload
from fastload.errors import RecordDecodeError, SchemaError
from fastload.loader import DataLoader, buffers
from fastload.loader.buffers import gather_fields, with_arenas
from fastload.loader.slots import SlotLayout, SlotRing

from ..format.crafting import Shard, craft_shard

N = 700
WORKERS = [(0, "thread"), (2, "thread"), (2, "process")]


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(7)
    text = [None if k % 11 == 4 else "" if k % 13 == 2 else ("é🙂" * int(rng.integers(0, 4))) + "w" * int(rng.integers(0, 300))
            for k in range(N)]
    raw = [bytes(rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8)) if k % 17 else None
           for k in range(N)]
    return pa.table({"id": np.arange(N, dtype=np.int64), "text": pa.array(text, pa.string()),
                     "raw": pa.array(raw, pa.binary()), "plain": pa.array([f"p{k}" for k in range(N)])})


@pytest.fixture(scope="module")
def root(table, tmp_path_factory):
    root = tmp_path_factory.mktemp("buffers") / "ds"
    fastload.pack(table, root, block_size="8KB", shard_size="64KB", progress=False)
    assert len(fastload.open(root).manifest.shard_names) > 2  # batches span shards
    return root


def arrow_buffers(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """pyarrow's own offsets (int64, from 0) and data bytes of an array of these rows."""
    arr = values.cast(pa.large_binary())
    offsets = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    return offsets - offsets[0], data[offsets[0]: offsets[-1]]


def check_buffers(batch: dict, name: str, want: pa.Array) -> None:
    offsets, data = batch[name + ".offsets"], batch[name]
    assert offsets.dtype == torch.int64 and data.dtype == torch.uint8 and offsets.shape == (len(want) + 1,)
    ref_offsets, ref_data = arrow_buffers(want)
    np.testing.assert_array_equal(offsets.numpy(), ref_offsets)
    np.testing.assert_array_equal(data.numpy(), ref_data)
    np.testing.assert_array_equal(batch[name + ".valid"].numpy(), want.is_valid().to_numpy(zero_copy_only=False))


@pytest.mark.parametrize("workers,kind", WORKERS)
def test_buffers_and_lists_equal_pyarrow_with_every_worker_kind(root, table, workers, kind):
    for strings in ("list", "buffers"):
        with closing(DataLoader(fastload.open(root), batch_size=64, shuffle=True, seed=3, num_workers=workers,
                        worker_type=kind, strings=strings)) as loader:
            seen = []
            for batch in loader:
                ids = batch["id"].numpy().copy()
                rows = table.take(ids)
                seen += ids.tolist()
                if strings == "list":
                    assert batch["text"] == rows.column("text").to_pylist()
                    assert batch["raw"] == rows.column("raw").to_pylist()
                    assert "text.offsets" not in batch
                else:
                    for name in ("text", "raw"):
                        check_buffers(batch, name, rows.column(name).combine_chunks())
                    assert "plain.valid" not in batch  # a field without nulls has no validity tensor
                    o, b = batch["plain.offsets"], batch["plain"]
                    assert [bytes(b[o[i]:o[i + 1]]).decode() for i in range(len(o) - 1)] == \
                        rows.column("plain").to_pylist()
            assert sorted(seen) == list(range(N))


def test_per_field_mode_and_fields(root, table):
    loader = DataLoader(root, batch_size=50, fields=["raw", "text"], strings={"text": "buffers"})
    batch = next(iter(loader))
    assert list(batch) == ["raw", "text", "text.offsets", "text.valid"]
    assert batch["raw"] == table.column("raw").to_pylist()[:50]
    check_buffers(batch, "text", table.column("text").combine_chunks()[:50])
    loader = DataLoader(root, batch_size=50, fields=["id", "raw"], strings="buffers")
    assert list(next(iter(loader))) == ["id", "raw", "raw.offsets", "raw.valid"]


def test_invalid_settings_are_clear_errors(root):
    with pytest.raises(ValueError, match="strings must be one of"):
        DataLoader(root, batch_size=4, strings="bytes")
    with pytest.raises(SchemaError, match="only .* fields have a buffer form"):
        DataLoader(root, batch_size=4, strings={"id": "buffers"})
    with pytest.raises(ValueError, match="not among fields"):
        DataLoader(root, batch_size=4, fields=["id"], strings={"text": "buffers"})
    with pytest.raises(SchemaError, match="names 'nope'"):
        DataLoader(root, batch_size=4, strings={"nope": "buffers"})
    with pytest.raises(ValueError, match="strings= make the default batch"):
        DataLoader(root, batch_size=4, strings="buffers", collate_fn=lambda rows: rows)


@pytest.mark.parametrize("workers,kind", [(0, "thread"), (2, "process")])
def test_resume_mid_epoch_gives_the_rest_of_the_epoch(root, workers, kind):
    def loader():
        return DataLoader(root, batch_size=32, shuffle=True, seed=5, num_workers=workers, worker_type=kind,
                          strings="buffers")

    with closing(loader()) as full:
        whole = [fastload.copy_batch(b) for b in full]
    with closing(loader()) as first:
        it = iter(first)
        for _ in range(7):
            next(it)
        state = first.state_dict()
    with closing(loader()) as resumed:
        resumed.load_state_dict(state)
        rest = list(map(fastload.copy_batch, resumed))
    assert len(rest) == len(whole) - 7
    for a, b in zip(rest, whole[7:]):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("workers,kind", WORKERS)
def test_a_batch_larger_than_its_arena_travels_beside_the_slot(root, table, monkeypatch, workers, kind):
    monkeypatch.setattr(buffers, "ARENA_MIN", 256)
    monkeypatch.setattr(buffers, "ARENA_MAX", 256)  # most batches of 64 rows do not fit
    with closing(DataLoader(root, batch_size=64, num_workers=workers, worker_type=kind, strings="buffers")) as loader:
        for k, batch in enumerate(loader):
            check_buffers(batch, "text", table.column("text").combine_chunks()[64 * k: 64 * (k + 1)])
        assert loader.stats()["bytes"] == stats_bytes(table)


def stats_bytes(table) -> int:
    """What the loader's statistics count: fixed fields' bytes and str/bytes payloads."""
    return 8 * len(table) + sum(len(arrow_buffers(table.column(n).combine_chunks())[1]) for n in ("text", "raw", "plain"))


@pytest.mark.parametrize("strings", ["list", "buffers"])
def test_statistics_count_payload_bytes_not_arena_room(root, table, strings):
    with closing(DataLoader(root, batch_size=64, num_workers=2, strings=strings)) as loader:
        for _ in loader:
            pass
        assert loader.stats()["bytes"] == stats_bytes(table)


class _NoOut:
    """A dataset whose gather puts no variable field into ``out`` (as the shard-by-shard gather of a remote
    dataset)."""

    def __init__(self, ds):
        self.ds, self.schema = ds, ds.schema

    def gather(self, indices, fields, out=None):
        cols = self.ds.gather(indices, fields)
        for name, arr in (out or {}).items():
            if isinstance(arr, np.ndarray):  # fixed fields are filled, as every gather does
                arr[:] = cols[name]
        return cols


def test_columns_gathered_elsewhere_are_copied_into_the_arena(root, table):
    ds = fastload.open(root)
    layout = with_arenas(SlotLayout.for_dataset(ds.schema, 64), ds, None)
    with SlotRing(layout, 1) as ring:
        idx = np.arange(100, 140, dtype=np.int64)[::-1].copy()
        slot = ring.arrays(0, len(idx))
        assert gather_fields(_NoOut(ds), idx, ["id"], ["text", "raw"], slot) == {}
        np.testing.assert_array_equal(slot["id"], idx)
        batch = fastload.loader.collate.to_torch(ds.schema, slot, {}, ["text", "raw"], strings={"text": "buffers"})
        check_buffers(batch, "text", table.column("text").take(idx).combine_chunks())
        assert batch["raw"] == table.column("raw").take(idx).to_pylist()


@pytest.mark.parametrize("verify", ["never", "first", "always"])
def test_invalid_utf8_is_an_error_as_str_and_delivered_as_stored_in_buffers(tmp_path, verify):
    root = tmp_path / "ds"
    with fastload.Writer(root, "id:int64,text:str") as w:
        for i in range(3):
            w.write({"id": i, "text": f"row {i}"})

    def edit(shard: Shard):
        at = int(shard.table["offset"][0]) - len(shard.head) + int(shard.cols[0, 1]) + 4 * 4
        assert bytes(shard.data[at + 5:at + 10]) == b"row 1"
        shard.data[at + 5:at + 7] = b"\xff\xfe"

    craft_shard(root, 0, edit)
    with pytest.raises(RecordDecodeError, match="field 'text' is not valid UTF-8"):
        next(iter(DataLoader(fastload.open(root, verify=verify), batch_size=3)))
    batch = next(iter(DataLoader(fastload.open(root, verify=verify), batch_size=3, strings="buffers")))
    o, data = batch["text.offsets"], batch["text"]
    assert [bytes(data[o[i]:o[i + 1]]) for i in range(3)] == [b"row 0", b"\xff\xfew 1", b"row 2"]


def test_a_rebuilt_torch_loader_gets_the_same_buffer_form(root, table):
    """Frameworks that rebuild the loader as torch's use its collate_fn on __getitems__ rows."""
    loader = DataLoader(root, batch_size=40, strings={"text": "buffers"})
    rebuilt = torch.utils.data.DataLoader(loader.dataset, batch_size=40, collate_fn=loader.collate_fn)
    for ours, theirs in zip(loader, rebuilt):
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) if isinstance(ours[k], torch.Tensor) else ours[k] == theirs[k]
                   for k in ours)
    rows = [{"text": t} for t in table.column("text").to_pylist()[:40]]  # plain rows: encoded here
    check_buffers(loader.collate_fn.__class__(loader.dataset.schema, ["text"], None, {"text": "buffers"})(rows),
                  "text", table.column("text").combine_chunks()[:40])


def test_example_decoding_with_a_fast_tokenizer(root, table):
    """The documented use: a tokenizer reads each row straight from the bytes tensor."""
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0, "w": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    batch = next(iter(DataLoader(root, batch_size=64, fields=["text"], strings="buffers")))
    o, data = batch["text.offsets"].tolist(), batch["text"].numpy()
    texts = [bytes(data[o[i]:o[i + 1]]).decode() for i in range(64)]
    want = [t or "" for t in table.column("text").to_pylist()[:64]]
    assert texts == want
    assert [e.ids for e in tok.encode_batch(texts)] == [e.ids for e in tok.encode_batch(want)]


@pytest.mark.parametrize("small_arena", [False, True])
@pytest.mark.parametrize("strings", ["list", "buffers"])
@pytest.mark.parametrize("workers", [1, 2])
def test_a_field_without_nulls_goes_through_the_c_threads(root, table, monkeypatch, workers, strings, small_arena):
    """Thread workers gather a str field without nulls in C, into its arena (loader/native_pool.py):
    the same rows as pyarrow's take, shuffled; a batch larger than its arena (small_arena: most of
    them) is gathered again in Python and travels beside the slot."""
    from fastload.loader.native_pool import NativePool

    if small_arena:  # room for 64 bytes of payloads in a batch of 64 rows
        monkeypatch.setattr(buffers, "ARENA_MIN", 64)
        monkeypatch.setattr(buffers, "ARENA_MAX", 64)
    statuses = []
    use_formula = NativePool.use_formula

    def counted(pool, formula):  # record every task's status from the C threads
        count = use_formula(pool, formula)
        c_wait = pool.wait
        pool.wait = lambda *a: statuses.append(c_wait(*a)) or statuses[-1]
        return count

    monkeypatch.setattr(NativePool, "use_formula", counted)
    with closing(DataLoader(root, batch_size=64, shuffle=True, seed=5, num_workers=workers, fields=("id", "plain"),
                            strings=strings, persistent_workers=True)) as loader:
        seen = []
        for batch in loader:
            want = table.column("plain").combine_chunks().take(pa.array(batch["id"].numpy()))
            if strings == "list":
                assert batch["plain"] == want.to_pylist()
            else:
                ref_offsets, ref_data = arrow_buffers(want)
                np.testing.assert_array_equal(batch["plain.offsets"].numpy(), ref_offsets)
                np.testing.assert_array_equal(batch["plain"].numpy(), ref_data)
            seen.extend(batch["id"].tolist())
        assert sorted(seen) == list(range(N))
        assert isinstance(loader._producer._state.pool, NativePool)
    too_large = [r for r in statuses if r[0] == 4]  # gathered again in Python, sent beside the slot
    assert len(statuses) == len(loader) and (len(too_large) >= len(loader) - 1 if small_arena else not too_large)
