"""Damaged datasets fail with a FormatError that says which file, and where in it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import fastload
from fastload import FastloadError, FormatError, Manifest, Writer
from fastload.errors import (
    OutputExistsError, RecordDecodeError, SchemaError, SourceError, StorageError, WorkerError,
)
from fastload.format.codec import checksum
from fastload.format.shard_reader import ShardReader
from fastload.format.spec import BLOCK_DTYPE, HEADER_PREFIX, MANIFEST_NAME, TRAILER_DTYPE

from .helpers import flip_byte, patch, shards

N = 60


def build(root, compression: str = "none"):
    """60 records in blocks of 8 and shards of 3 blocks (zstd blocks are ~65% of their raw size)."""
    rng = np.random.default_rng(0)
    with Writer(root, "id:int64,text:str,vec:float32[4]", block_size=300,
                shard_size=1600 if compression == "none" else 1100, compression=compression) as w:
        for i in range(N):
            w.write({"id": i, "text": f"record {i} " * (i % 4), "vec": rng.random(4, np.float32)})
    return root


@pytest.fixture
def root(tmp_path):
    root = build(tmp_path / "ds")
    assert len(shards(root)) >= 3
    return root


def shard_records(root, s: int) -> range:
    """Global record numbers held by shard ``s``."""
    m = Manifest.loads((root / MANIFEST_NAME).read_bytes())
    start = int(m.shard_records[:s].sum())
    return range(start, start + int(m.shard_records[s]))


def trailer_field_offset(name: str) -> int:
    """Offset of a trailer field, counted from the end of the shard (negative)."""
    return -TRAILER_DTYPE.itemsize + TRAILER_DTYPE.fields[name][1]


# -- the error hierarchy ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, builtin",
    [(FormatError, ValueError), (SchemaError, ValueError), (SourceError, ValueError),
     (RecordDecodeError, ValueError), (StorageError, OSError), (OutputExistsError, FileExistsError),
     (WorkerError, RuntimeError)],
)
def test_error_hierarchy(cls, builtin):
    assert issubclass(cls, FastloadError) and issubclass(cls, builtin)
    assert issubclass(FastloadError, Exception) and not issubclass(FastloadError, ValueError)


# -- blocks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_flipped_block_byte_names_shard_block_and_records(tmp_path, compression):
    root = build(tmp_path / "ds", compression)
    path = shards(root)[1]
    reader = ShardReader.open(path)
    assert reader.n_blocks >= 3
    b = 1
    first, count = int(reader.first_record[b]), int(reader.block_records[b])
    offset = int(reader.blocks["offset"][b]) + int(reader.blocks["stored_size"][b]) // 2
    del reader
    flip_byte(path, offset)

    ds = fastload.open(root)  # opening reads the manifest only
    records = shard_records(root, 1)
    with pytest.raises(FormatError) as info:
        ds.get_batch([0, records[first + count - 1]])
    msg = str(info.value)
    assert str(path) in msg and f"block {b} " in msg
    assert f"records {first}..{first + count - 1}" in msg and "checksum" in msg
    assert isinstance(info.value, ValueError)
    # the other blocks of the same shard stay readable
    other = records[int(first + count)]
    assert ds[other]["id"] == other and ds[records[0]]["id"] == records[0]
    with pytest.raises(FormatError, match=f"block {b} "):
        ds[records[first]]  # still failing on the next read: a bad block is never marked verified


def test_verify_never_reads_a_damaged_raw_block_without_error(root):
    path = shards(root)[0]
    reader = ShardReader.open(path)
    offset = int(reader.blocks["offset"][1])  # first byte of block 1: the low byte of its first id
    first = int(reader.first_record[1])
    del reader
    flip_byte(path, offset)
    ds = fastload.open(root, verify="never")
    assert ds[first]["id"] == first ^ 0xFF  # the damage comes through, unchecked
    with pytest.raises(FormatError, match="block 1 "):
        fastload.open(root)[first]
    with pytest.raises(FormatError, match="block 1 "):
        fastload.open(root, verify="always")[first]


def test_verify_never_still_reports_undecompressable_blocks(tmp_path):
    root = build(tmp_path / "ds", "zstd")
    path = shards(root)[0]
    reader = ShardReader.open(path)
    b = int(np.flatnonzero(reader.blocks["codec"] == 1)[0])
    offset, first = int(reader.blocks["offset"][b]), int(reader.first_record[b])
    del reader
    patch(path, offset, b"\x00\x00\x00\x00")  # destroy the zstd frame magic
    with pytest.raises(FormatError, match=f"block {b} cannot be decompressed") as info:
        fastload.open(root, verify="never")[first]
    assert str(path) in str(info.value)


@pytest.mark.parametrize("which", ["end past the block", "start after the end"])
def test_verify_never_refuses_variable_offsets_that_leave_the_block(root, which):
    """Unchecked blocks must not make the gather read outside them: bad offsets are a FormatError."""
    path = shards(root)[0]
    reader = ShardReader.open(path)
    b, n = 1, int(reader.block_records[1])
    text_column = int(reader.blocks["offset"][b]) + int(reader.col_offsets[b][1])
    first = int(reader.first_record[b])
    offsets = np.frombuffer(reader.buf[text_column : text_column + 4 * (n + 1)], "<u4").copy()
    del reader
    if which == "end past the block":  # the block's last record ends 200 bytes too far
        k, record = n, n - 1
        new = int(offsets[n]) + 200
    else:  # a middle record starts after it ends
        k = record = n // 2
        new = 0xFFFF0000
    patch(path, text_column + 4 * k, np.uint32(new).tobytes())
    ds = fastload.open(root, verify="never")
    with pytest.raises(FormatError):
        ds.get_batch([first + record], fields=["text"])
    assert ds[first]["id"] == first  # the fixed column of the same block is untouched


def test_verify_mode_is_validated(root):
    with pytest.raises(ValueError, match="'first', 'always', 'never'"):
        fastload.open(root, verify="sometimes")[0]


# -- whole shards ---------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0, 10, 100, -1, -64])
def test_truncated_shard_names_the_shard(root, keep):
    path = shards(root)[1]
    size = path.stat().st_size
    os.truncate(path, keep % size if keep >= 0 else size + keep)
    ds = fastload.open(root)
    with pytest.raises(FormatError) as info:
        ds[shard_records(root, 1)[0]]
    assert str(path) in str(info.value) and "truncated" in str(info.value)
    with pytest.raises(FormatError, match="truncated|not a fastload shard") as info:
        ShardReader.open(path)
    assert str(path) in str(info.value)
    assert ds[0]["id"] == 0  # shard 0 is intact


def test_missing_shard(root):
    path = shards(root)[2]
    path.unlink()
    with pytest.raises(FormatError, match="missing") as info:
        fastload.open(root)[shard_records(root, 2)[0]]
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "where, new, message",
    [
        ("trailer_magic", b"XX", "no trailer at its end"),
        ("trailer_version", np.uint32(3).tobytes(), "format version 3 is newer than this fastload reads"),
        ("trailer_n_records", np.uint64(999).tobytes(), "wrong record count"),
        ("trailer_n_blocks", np.uint64(7).tobytes(), "index is truncated or misplaced"),
        ("trailer_n_fields", np.uint32(2).tobytes(), "disagree on the number of fields"),
        ("trailer_index_offset", np.uint64(64).tobytes(), "index is"),
        ("trailer_index_checksum", b"\x00" * 8, "index is corrupt"),
        ("trailer_header_checksum", b"\x00" * 8, "header is corrupt"),
        ("index_byte", None, "index is corrupt"),
        ("header_magic", b"XX", "bad magic bytes at its start"),
        ("header_json", None, "header is corrupt"),
        ("header_json_len", np.uint32(3).tobytes(), "header is corrupt"),
    ],
)
@pytest.mark.parametrize("verify", ["first", "never"])
def test_damaged_trailer_index_or_header(root, where, new, message, verify):
    path = shards(root)[1]
    reader = ShardReader.open(path)
    index_offset = int(np.frombuffer(reader.buf[-TRAILER_DTYPE.itemsize:], TRAILER_DTYPE)["index_offset"][0])
    del reader
    if where.startswith("trailer_"):
        patch(path, trailer_field_offset(where[len("trailer_"):]), new)
    elif where == "index_byte":
        flip_byte(path, index_offset + 3)
    elif where == "header_magic":
        patch(path, 0, new)
    elif where == "header_json":
        flip_byte(path, HEADER_PREFIX.itemsize + 5)
    elif where == "header_json_len":
        patch(path, HEADER_PREFIX.fields["json_len"][1], new)
    with pytest.raises(FormatError) as info:
        fastload.open(root, verify=verify)[shard_records(root, 1)[0]]
    assert message in str(info.value) and str(path) in str(info.value)
    if where == "trailer_version":
        assert "upgrade fastload" in str(info.value)


def rewrite_index(path, edit) -> None:
    """Edit a shard's block table / column offsets and store a matching index checksum (a crafted
    or buggy-writer index that checksums cannot catch)."""
    data = bytearray(path.read_bytes())
    trailer = np.frombuffer(bytes(data[-TRAILER_DTYPE.itemsize:]), TRAILER_DTYPE)[0]
    start, length = int(trailer["index_offset"]), int(trailer["index_size"])
    n_blocks, n_fields = int(trailer["n_blocks"]), int(trailer["n_fields"])
    table = np.frombuffer(bytes(data[start : start + n_blocks * BLOCK_DTYPE.itemsize]), BLOCK_DTYPE).copy()
    cols = np.frombuffer(bytes(data[start + table.nbytes : start + length]), "<u4")
    cols = cols.reshape(n_blocks, -1).copy()  # column starts, then (version 2) bitmap starts
    edit(table, cols)
    index = table.tobytes() + cols.tobytes()
    data[start : start + length] = index
    patch_at = len(data) + trailer_field_offset("index_checksum")
    data[patch_at : patch_at + 8] = np.uint64(checksum(index)).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t, c: t["offset"].__setitem__(0, 0), "blocks outside the data area"),
        (lambda t, c: t["stored_size"].__setitem__(-1, t["stored_size"][-1] + 10**6), "outside the data area"),
        (lambda t, c: t["first_record"].__setitem__(1, t["first_record"][1] + 1), "wrong record count"),
        (lambda t, c: t["n_records"].__setitem__(0, t["n_records"][0] + 1), "wrong record count"),
        (lambda t, c: t["codec"].__setitem__(0, 7), "an unknown codec"),
        (lambda t, c: t["raw_size"].__setitem__(0, t["raw_size"][0] + 8), "stored and raw sizes differ"),
        (lambda t, c: c.__setitem__((0, 2), t["raw_size"][0] - 4), "column 'vec' running past its block"),
        (lambda t, c: c.__setitem__((0, 1), t["raw_size"][0]), "column 'text' running past its block"),
    ],
)
def test_checksum_valid_but_inconsistent_index(root, edit, message):
    path = shards(root)[1]
    rewrite_index(path, edit)
    with pytest.raises(FormatError, match="index is inconsistent") as info:
        fastload.open(root, verify="never")[shard_records(root, 1)[0]]
    assert message in str(info.value) and str(path) in str(info.value)


def test_header_and_trailer_versions_must_agree(root):
    path = shards(root)[1]
    data = bytearray(path.read_bytes())
    json_len = int(np.frombuffer(bytes(data[:16]), HEADER_PREFIX)["json_len"][0])
    header_end = -(-(HEADER_PREFIX.itemsize + json_len) // 64) * 64
    data[8:12] = np.uint32(1).tobytes()  # the header prefix claims version 1, the trailer 2
    at = len(data) + trailer_field_offset("header_checksum")
    data[at : at + 8] = np.uint64(checksum(bytes(data[:header_end]))).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="disagree on the format version") as info:
        fastload.open(root)[shard_records(root, 1)[0]]
    assert str(path) in str(info.value)


def test_shard_of_another_schema(root, tmp_path):
    """A shard that does not match the manifest's schema is refused, naming both schemas."""
    m = Manifest.loads((root / MANIFEST_NAME).read_bytes())
    m.schema = fastload.Schema.parse("id:int32,text:str,vec:float32[4]")
    m.write(root)
    with pytest.raises(FormatError, match=r"has schema \(id: int64.*the manifest \(id: int32"):
        fastload.open(root)[0]


def test_a_shard_whose_header_differs_from_the_others_is_parsed_and_refused(root, monkeypatch):
    """Shards sharing a header are parsed once per dataset; a shard whose header text differs
    (here, a checksum-valid header of another schema) is parsed for itself and refused, after
    the shards before it opened with theirs."""
    from fastload.format import shard_reader

    path = shards(root)[1]
    data = bytearray(path.read_bytes())
    json_len = int(np.frombuffer(bytes(data[:16]), HEADER_PREFIX)["json_len"][0])
    header_end = -(-(HEADER_PREFIX.itemsize + json_len) // 64) * 64
    text = bytes(data[16:16 + json_len])
    assert text.count(b'"int64"') == 1
    data[16:16 + json_len] = text.replace(b'"int64"', b'"int32"')  # the same length: the layout holds
    at = len(data) + trailer_field_offset("header_checksum")
    data[at:at + 8] = np.uint64(checksum(bytes(data[:header_end]))).tobytes()
    path.write_bytes(bytes(data))
    parsed = []
    real = shard_reader.load_json
    monkeypatch.setattr(shard_reader, "load_json", lambda data, what: parsed.append(what) or real(data, what))
    ds = fastload.open(root)
    for s in (0, 2, 0):
        ds.get_batch(list(shard_records(root, s)))
    assert len(parsed) == 1  # the header shards 0 and 2 share, once
    with pytest.raises(FormatError, match=r"has schema \(id: int32.*the manifest \(id: int64") as info:
        ds[shard_records(root, 1)[0]]
    assert str(path) in str(info.value) and len(parsed) == 2


def test_manifest_that_lies_about_sizes_and_counts(root):
    original = (root / MANIFEST_NAME).read_bytes()
    m = Manifest.loads(original)
    m.shard_bytes[1] += 64  # a checksum-valid manifest (say, from a buggy tool)
    m.write(root)
    with pytest.raises(FormatError, match="the manifest says"):
        fastload.open(root)[shard_records(root, 1)[0]]
    m = Manifest.loads(original)
    m.shard_records[0] += 1
    m.write(root)
    with pytest.raises(FormatError, match="records, the manifest says"):
        fastload.open(root)[0]


# -- the manifest ---------------------------------------------------------------------------------
def edit_manifest(root, edit) -> None:
    path = root / MANIFEST_NAME
    body = json.loads(path.read_bytes())
    edit(body)
    path.write_text(json.dumps(body, sort_keys=True, indent=1))


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b["shards"]["records"].__setitem__(0, b["shards"]["records"][0] + 1),
        lambda b: b.__setitem__("num_records", b["num_records"] - 1),
        lambda b: b["shards"]["bytes"].__setitem__(1, 1),
        lambda b: b["schema"][0].__setitem__("dtype", "int32"),
        lambda b: b.__setitem__("metadata", {"edited": True}),
        lambda b: b.pop("manifest_checksum"),
    ],
)
def test_edited_manifest_is_refused(root, edit):
    edit_manifest(root, edit)
    with pytest.raises(FormatError) as info:
        fastload.open(root)
    assert str(root / MANIFEST_NAME) in str(info.value) and "checksum mismatch" in str(info.value)


def test_manifest_number_edited_in_the_text(root):
    path = root / MANIFEST_NAME
    text = path.read_text()
    key = f'"num_records": {N}'
    assert key in text
    path.write_text(text.replace(key, f'"num_records": {N + 1}'))
    with pytest.raises(FormatError, match="corrupt"):
        fastload.open(root)


@pytest.mark.parametrize("keep", [0, 1, 50, -3])
def test_manifest_that_is_not_json(root, keep):
    path = root / MANIFEST_NAME
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(FormatError, match="is not valid JSON") as info:
        fastload.open(root)
    assert str(path) in str(info.value)


def test_manifest_of_something_else(root):
    path = root / MANIFEST_NAME
    for body in ({"format": "parquet"}, [1, 2], "fastload"):
        path.write_text(json.dumps(body))
        with pytest.raises(FormatError, match="is not a fastload manifest") as info:
            fastload.open(root)
        assert str(path) in str(info.value)
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(FormatError, match="not valid JSON"):
        fastload.open(root)


def test_missing_manifest(root):
    (root / MANIFEST_NAME).unlink()
    with pytest.raises(FormatError, match=f"{root} is not a fastload dataset \\(no {MANIFEST_NAME}\\)"):
        fastload.open(root)


@pytest.mark.parametrize("version", [3, 99, None, "1"])
def test_manifest_of_another_format_version(root, version):
    edit_manifest(root, lambda b: b.__setitem__("version", version))
    with pytest.raises(FormatError) as info:
        fastload.open(root)
    msg = str(info.value)
    assert f"format version {version}" in msg and "upgrade fastload" in msg
    assert str(root / MANIFEST_NAME) in msg


def test_manifest_with_inconsistent_shard_table(root):
    m = Manifest.loads((root / MANIFEST_NAME).read_bytes())
    m.shard_checksums.append("0" * 16)
    m.write(root)
    with pytest.raises(FormatError, match="inconsistent"):
        fastload.open(root)


# -- verify_all -----------------------------------------------------------------------------------
def test_verify_all_passes_on_a_sound_dataset(root):
    seen = []
    fastload.open(root).verify_all(progress=lambda s, name: seen.append(name))
    assert seen == [p.name for p in shards(root)]


def test_verify_all_catches_a_flipped_byte_anywhere(root):
    path = shards(root)[1]
    size = path.stat().st_size
    reader = ShardReader.open(path)
    ends = (reader.blocks["offset"] + reader.blocks["stored_size"]).astype(int)
    gaps = [int(e) for e, nxt in zip(ends, reader.blocks["offset"][1:]) if int(nxt) > int(e)]
    header_end = HEADER_PREFIX.itemsize + int(np.frombuffer(reader.buf[:16], HEADER_PREFIX)["json_len"][0])
    del reader
    assert gaps, "expected alignment padding between blocks"
    # every region: header prefix, header JSON, header padding, blocks, padding between blocks,
    # index, trailer, and a stride through the whole file
    positions = {0, 9, 13, header_end - 1, header_end, *gaps, size - 70, size - 64, size - 30, size - 1,
                 *range(0, size, 97)}
    for pos in sorted(positions):
        flip_byte(path, pos)
        with pytest.raises(FormatError) as info:
            fastload.open(root, verify="never").verify_all()
        assert str(path) in str(info.value), pos
        flip_byte(path, pos)  # undo
    fastload.open(root).verify_all()


# -- validity bitmaps (format version 2) ----------------------------------------------------------
@pytest.fixture
def nullable_root(tmp_path):
    """Like ``root``, with a null text in every fifth record: every block has a bitmap for it."""
    root = tmp_path / "nulls"
    with Writer(root, "id:int64,text:str,vec:float32[4]", block_size=300, shard_size=1600) as w:
        for i in range(N):
            w.write({"id": i, "text": None if i % 5 == 0 else f"record {i}", "vec": np.ones(4, np.float32) * i})
    return root


@pytest.mark.parametrize("edit, message", [
    (lambda t, c: c.__setitem__((0, 3 + 1), t["raw_size"][0]), "validity bitmap of 'text' running past its block"),
    (lambda t, c: c.__setitem__((0, 3 + 1), 2**32 - 2), "validity bitmap of 'text' running past its block"),
])
def test_bitmap_outside_its_block(nullable_root, edit, message):
    path = shards(nullable_root)[1]
    rewrite_index(path, edit)
    with pytest.raises(FormatError, match="index is inconsistent") as info:
        fastload.open(nullable_root, verify="never")[shard_records(nullable_root, 1)[0]]
    assert message in str(info.value) and str(path) in str(info.value)


def test_bitmap_for_a_field_the_manifest_does_not_mark_nullable(nullable_root):
    from fastload.format.manifest import _body_checksum

    def unmark(body):  # the manifest says text has no nulls; its checksum is made to match
        body["schema"][1].pop("nullable")
        body.pop("manifest_checksum")
        body["manifest_checksum"] = _body_checksum(body)

    edit_manifest(nullable_root, unmark)
    with pytest.raises(FormatError, match=r"holds nulls in fields \['text'\], which the manifest does not"):
        fastload.open(nullable_root, verify="never")[shard_records(nullable_root, 1)[0]]


def test_bitmap_overlapping_a_column(nullable_root):
    path = shards(nullable_root)[1]
    rewrite_index(path, lambda t, c: c.__setitem__((0, 3 + 0), c[0, 3 + 1]))  # id points at text's bitmap
    with pytest.raises(FormatError, match="index is inconsistent"):
        fastload.open(nullable_root, verify="never")[shard_records(nullable_root, 1)[0]]


def test_a_flipped_validity_bit_is_a_checksum_error(nullable_root):
    path = shards(nullable_root)[1]
    reader = ShardReader.open(path)
    at = int(reader.blocks["offset"][0]) + int(reader.bitmap_offsets[0, 1])
    want = [fastload.open(nullable_root)[i]["text"] for i in shard_records(nullable_root, 1)]
    del reader
    flip_byte(path, at)
    with pytest.raises(FormatError, match="block 0 .* is corrupt: checksum mismatch"):
        fastload.open(nullable_root)[shard_records(nullable_root, 1)[0]]
    # without checksums the flip changes which records read as null, and nothing worse
    got = [fastload.open(nullable_root, verify="never")[i]["text"] for i in shard_records(nullable_root, 1)]
    assert got != want and all(g is None or g.startswith("record ") or g == "" for g in got)
