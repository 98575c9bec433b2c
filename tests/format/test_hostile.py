"""Crafted (not merely damaged) datasets: every checksum is recomputed over the crafted bytes, so only
the structural checks stand between them and a read. Each is a FormatError or RecordDecodeError
naming the file, never a crash, a hang, a read outside the dataset or a non-fastload exception
(issue 10: defects 1, 3, 5 and 9)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import zstandard

import fastload
from fastload import FastloadError, FormatError, RecordDecodeError, Writer
from fastload.format.spec import MANIFEST_NAME, MAX_BLOCK_RAW

from .crafting import Shard, craft_shard, edit_manifest, run_isolated, write_manifest, xxh

pytestmark = pytest.mark.timeout(60)


def small(root, n: int = 10, schema: str = "id:int64,text:str", **options):
    with Writer(root, schema, **options) as w:
        for i in range(n):
            w.write({"id": i, "text": f"row {i}"} if schema == "id:int64,text:str" else {"id": i})
    return root


def verify_cli(root) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastload._cli", "verify", str(root)], capture_output=True,
                          text=True, timeout=60)


# -- defect 1: a block table whose sums wrap in int64 -----------------------------------------------
@pytest.mark.parametrize("schema", ["id:int64,text:str", "id:int64"])  # general path; gather_multi
def test_block_offsets_that_wrap_int64_are_refused_not_read(tmp_path, schema):
    """offset = stored = raw = 2^62 made offset + stored wrap to a negative number, the block's
    bytes an empty slice (whose checksum the crafter supplies) and the C gather read far outside
    the map: a SIGSEGV, and ``fastload verify`` passed the shard."""
    root = small(tmp_path / "ds", schema=schema)

    def edit(shard: Shard):
        shard.table["offset"][0] = shard.table["stored_size"][0] = shard.table["raw_size"][0] = 2**62
        shard.table["checksum"][0] = xxh(b"")

    craft_shard(root, 0, edit, block_checksums=False)
    proc = run_isolated(f"""
        import fastload
        try:
            fastload.open({str(root)!r}, verify="never").get_batch([0, 3])
        except fastload.FormatError as exc:
            print("FormatError:", exc)
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FormatError:" in proc.stdout and "blocks outside the data area" in proc.stdout
    assert "shard-000000.fls" in proc.stdout
    verify = verify_cli(root)
    assert verify.returncode == 3 and "blocks outside the data area" in verify.stderr, verify.stderr


@pytest.mark.parametrize("field, value, message", [
    ("stored_size", 2**64 - 1, "outside the data area"),
    ("raw_size", 2**63, "raw size over the maximum"),
    ("first_record", 2**63 + 5, "wrong record count"),
    ("n_records", 2**32 - 1, "wrong record count"),
])
def test_block_table_values_near_the_integer_limits(tmp_path, field, value, message):
    root = small(tmp_path / "ds")
    craft_shard(root, 0, lambda shard: shard.table[field].__setitem__(0, value))
    with pytest.raises(FormatError, match=message) as info:
        fastload.open(root, verify="never")[0]
    assert "shard-000000.fls" in str(info.value)


@pytest.mark.parametrize("field, value, message", [
    ("n_blocks", 2**63, "more than the"),
    ("n_records", 2**64 - 1, "more than the"),
    ("n_fields", 2**32 - 1, "more than the"),
    ("index_offset", 2**64 - 64, "index is truncated or misplaced"),
])
def test_trailer_values_near_the_integer_limits(tmp_path, field, value, message):
    root = small(tmp_path / "ds")
    craft_shard(root, 0, lambda shard: shard.trailer[field].__setitem__(0, value), keep_trailer=(field,))
    with pytest.raises(FormatError, match=message):
        fastload.open(root)[0]


def test_columns_must_not_overlap_or_leave_their_block(tmp_path):
    root = small(tmp_path / "ds")
    craft_shard(root, 0, lambda shard: shard.cols.__setitem__((0, 1), 8))  # text's offsets inside id's column
    with pytest.raises(FormatError, match="column 'text' overlapping the column before it"):
        fastload.open(root, verify="never")[0]


# -- defect 5: decompression bounded by the declared raw size, itself bounded -------------------
def zstd_dataset(root, n: int = 1000):
    with Writer(root, "id:int64", compression="zstd") as w:
        w.write_batch({"id": np.zeros(n, np.int64)})
    return root


def test_raw_size_past_the_maximum_is_refused_before_decompressing(tmp_path):
    root = zstd_dataset(tmp_path / "ds")
    craft_shard(root, 0, lambda shard: shard.table["raw_size"].__setitem__(0, 5 * 2**30))
    with pytest.raises(FormatError, match=f"raw size over the maximum of {MAX_BLOCK_RAW} bytes"):
        fastload.open(root)[0]


def test_raw_size_beyond_what_the_records_imply_is_refused(tmp_path):
    """1000 int64 records make 8000 raw bytes; a block claiming more holds no record to fill it."""
    root = zstd_dataset(tmp_path / "ds")
    craft_shard(root, 0, lambda shard: shard.table["raw_size"].__setitem__(0, 2**31))
    with pytest.raises(FormatError, match="a raw size beyond its last column 'id'"):
        fastload.open(root)[0]


def test_a_frame_declaring_more_than_the_block_is_never_inflated(tmp_path):
    """A ~170 KB shard whose zstd frame declares 4 GiB: refused before any output is allocated."""
    root = zstd_dataset(tmp_path / "ds")
    frame = bytearray(zstandard.ZstdCompressor(level=1, write_content_size=True).compress(b"\0" * 100_000))
    assert zstandard.frame_content_size(bytes(frame)) == 100_000
    # the frame header (RFC 8878): magic, descriptor, a window byte unless single-segment, a
    # dictionary id, then the content size, here 4 bytes (the descriptor's top two bits are 2)
    desc = frame[4]
    assert desc >> 6 == 2
    at = 5 + (0 if desc & 0x20 else 1) + (0, 1, 2, 4)[desc & 3]
    frame[at:at + 4] = np.uint32(2**32 - 1).tobytes()
    assert zstandard.frame_content_size(bytes(frame)) == 2**32 - 1

    def edit(shard: Shard):
        at = int(shard.table["offset"][0]) - len(shard.head)
        shard.data[at:] = bytes(frame) + b"\0" * (-len(frame) % 64)
        shard.table["stored_size"][0] = len(frame)

    craft_shard(root, 0, edit)
    proc = run_isolated(f"""
        import resource, fastload
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            fastload.open({str(root)!r})[0]
        except fastload.FormatError as exc:
            print("FormatError:", exc)
        print("grew_mb", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "frame declares 4294967295 bytes, the index 8000" in proc.stdout
    assert int(proc.stdout.split("grew_mb")[1]) < 64


# -- defect 3: names that leave the directory, symlinks, FIFOs, devices --------------------------
@pytest.mark.parametrize("name", ["../outside/shard.fls", "/etc/passwd", "/dev/zero", ".", "..", "a/b.fls",
                                  ".hidden.fls", "x" * 201, "", 7, None, "sh\u00e4rd.fls", "a\\b.fls"])
def test_shard_names_must_be_plain_file_names(tmp_path, name):
    root = small(tmp_path / "ds")
    edit_manifest(root, lambda b: b["shards"]["name"].__setitem__(0, name))
    with pytest.raises(FormatError, match="is not a plain file name") as info:
        fastload.open(root)  # refused with the manifest, before any shard is opened
    assert str(root / MANIFEST_NAME) in str(info.value)


def test_a_shard_symlinked_outside_is_refused(tmp_path):
    outside = small(tmp_path / "elsewhere")
    root = small(tmp_path / "ds")
    shard = root / "shard-000000.fls"
    shard.unlink()
    shard.symlink_to(outside / "shard-000000.fls")  # same bytes: only the link itself is wrong
    with pytest.raises(FormatError, match="is a symbolic link") as info:
        fastload.open(root)[0]
    assert str(shard) in str(info.value)


@pytest.mark.parametrize("make", ["fifo", "fifo_link", "device_link", "dir"])
def test_special_files_are_refused_without_opening_them(tmp_path, make):
    """A FIFO (a plain one, or a symlink to one outside) would block ``open`` forever; the
    checks run on ``lstat`` first, so nothing is opened. Both reading and ``verify`` end at once."""
    root = small(tmp_path / "ds")
    shard = root / "shard-000000.fls"
    shard.unlink()
    if make == "fifo":
        os.mkfifo(shard)
    elif make == "fifo_link":
        os.mkfifo(tmp_path / "pipe")
        shard.symlink_to(tmp_path / "pipe")
    elif make == "device_link":
        shard.symlink_to("/dev/zero")
    else:
        shard.mkdir()
    proc = run_isolated(f"""
        import fastload
        try:
            fastload.open({str(root)!r})[0]
        except fastload.FormatError as exc:
            print("FormatError:", exc)
    """, timeout=30)
    assert proc.returncode == 0 and "FormatError:" in proc.stdout, proc.stderr
    kind = {"fifo": "a FIFO", "dir": "a directory"}.get(make, "a symbolic link")
    assert f"{shard} cannot be opened: {shard} is {kind}" in proc.stdout
    verify = verify_cli(root)
    assert verify.returncode == 3 and kind in verify.stderr


def test_a_manifest_that_is_a_fifo_is_refused(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    os.mkfifo(root / MANIFEST_NAME)
    proc = run_isolated(f"""
        import fastload
        try:
            fastload.open({str(root)!r})
        except fastload.FormatError as exc:
            print("FormatError:", exc)
    """, timeout=30)
    assert "is a FIFO" in proc.stdout, proc.stderr


# -- defect 9: crafted manifests and headers ----------------------------------------------------
@pytest.mark.parametrize("edit, message", [
    (lambda b: (b["shards"]["records"].__setitem__(0, 2**63), b.__setitem__("num_records", 2**63)),
     "records: 9223372036854775808 is not an integer in 0..281474976710656"),
    (lambda b: b["shards"]["blocks"].__setitem__(0, 2**40), "blocks: 1099511627776 is not an integer"),
    (lambda b: b["shards"]["blocks"].__setitem__(0, 10**6), "do not fit"),
    (lambda b: b["shards"]["records"].__setitem__(0, True), "records: True is not an integer"),
    (lambda b: b["shards"]["bytes"].__setitem__(0, 1.5), "bytes: 1.5 is not an integer"),
    (lambda b: b["shards"]["checksum"].__setitem__(0, "ABCDEF0123456789"), "is not a checksum"),
    (lambda b: b["shards"].__setitem__("name", "shard-000000.fls"), "the shard table needs the lists"),
    (lambda b: b["schema"].append({"name": "v", "kind": "array", "dtype": "uint8", "shape": [2**64]}),
     "invalid schema"),
    (lambda b: b["schema"].append({"name": "v", "kind": "array", "dtype": "uint8", "shape": [2**32, 2**32]}),
     "gives records of 18446744073709551616 bytes"),
    (lambda b: b["schema"].append({"name": "v", "kind": "array", "dtype": "uint8", "shape": ["9"]}),
     "must hold integers"),
    (lambda b: b["schema"].append({"name": "v", "kind": "array", "dtype": "uint8", "shape": [2] * 33}),
     "1 to 32 sizes"),
    (lambda b: b.__setitem__("schema", {"name": "id"}), "a schema is a list"),
    (lambda b: b.__setitem__("schema", [7]), "malformed field description"),
    (lambda b: b.__setitem__("settings", []), "settings and metadata must be objects"),
    (lambda b: b.__setitem__("num_records", "10"), "num_records"),
    (lambda b: b.__setitem__("version", True), "format version True"),
])
def test_crafted_manifest_values(tmp_path, edit, message):
    root = small(tmp_path / "ds")
    edit_manifest(root, edit)
    with pytest.raises(FormatError) as info:
        fastload.open(root).get_batch(range(10))
    assert message in str(info.value) and str(root / MANIFEST_NAME) in str(info.value)


@pytest.mark.parametrize("extra", ['"x": ' + "[" * 100_000 + "]" * 100_000, '"x": ' + "9" * 5000,
                                   '"x": ' + "[" * 65 + "]" * 65])
def test_manifest_json_that_python_cannot_hold(tmp_path, extra):
    """100,000 levels of nesting were a RecursionError, a 5000-digit number a ValueError."""
    root = small(tmp_path / "ds")
    body = json.loads((root / MANIFEST_NAME).read_bytes())
    write_manifest(root, body, text=lambda t: t[:-1] + ", " + extra + "}")
    with pytest.raises(FormatError, match="nests JSON deeper than 64 levels|is not valid JSON"):
        fastload.open(root)


def test_shard_header_json_is_bounded_too(tmp_path):
    root = small(tmp_path / "ds")

    def edit(shard: Shard):
        header = shard.header_json
        shard.set_header_json(json.dumps(header, separators=(",", ":"))[:-1].encode()
                              + b',"x":' + b"[" * 100 + b"]" * 100 + b"}")

    craft_shard(root, 0, edit)
    with pytest.raises(FormatError, match="header nests JSON deeper than 64 levels") as info:
        fastload.open(root)[0]
    assert "shard-000000.fls" in str(info.value)


def test_the_manifest_may_not_name_a_shard_twice(tmp_path):
    root = small(tmp_path / "ds", n=20, shard_size=300, block_size=100)

    def edit(body):
        body["shards"]["name"][1] = body["shards"]["name"][0]

    edit_manifest(root, edit)
    with pytest.raises(FormatError, match="lists a shard name twice"):
        fastload.open(root)


# -- defect 9: payloads that are not values of their field ----------------------------------------
def test_a_variable_array_record_of_partial_elements(tmp_path):
    """uint16[-1] records of 3 and 1 bytes: the total (4) divides by 2, each record does not."""
    root = tmp_path / "ds"
    with Writer(root, "v:uint16[-1]") as w:
        w.write_batch({"v": [np.array([1, 2], np.uint16), np.array([], np.uint16)]})

    def edit(shard: Shard):
        at = int(shard.table["offset"][0]) - len(shard.head) + int(shard.cols[0, 0])
        shard.data[at + 4:at + 8] = np.uint32(3).tobytes()  # off = [0, 3, 4]

    craft_shard(root, 0, edit)
    ds = fastload.open(root)
    with pytest.raises(RecordDecodeError, match="block 0 record 0: field 'v': a payload of 3 bytes") as info:
        ds.get_batch([0, 1])
    assert str(root / "shard-000000.fls") in str(info.value)
    for pad in (False, True):
        with pytest.raises(RecordDecodeError, match="block 0 record 1: field 'v': a payload of 1 bytes"):
            ds.get_batch([1, 1], pad=pad)
    with pytest.raises(RecordDecodeError, match="record 1: field 'v': a payload of 1 bytes"):
        ds[1]


@pytest.mark.parametrize("prefix, message", [
    ([2**62, 2**62], "does not hold an array of shape"),
    ([-1, 2], "does not hold an array of shape"),
    ([1, 3], "matching [-1, 2]"),
])
def test_an_n_d_array_record_whose_shape_lies(tmp_path, prefix, message):
    root = tmp_path / "ds"
    with Writer(root, "v:float32[-1,2]") as w:
        w.write({"v": np.ones((3, 2), np.float32)})

    def edit(shard: Shard):
        at = int(shard.table["offset"][0]) - len(shard.head) + int(shard.cols[0, 0]) + 8
        shard.data[at:at + 16] = np.array(prefix, "<i8").tobytes()

    craft_shard(root, 0, edit)
    with pytest.raises(RecordDecodeError, match="block 0 record 0: field 'v'") as info:
        fastload.open(root)[0]
    assert message in str(info.value)


@pytest.mark.parametrize("verify", ["never", "first"])
def test_invalid_utf8_is_a_record_decode_error_naming_shard_and_record(tmp_path, verify):
    root = small(tmp_path / "ds", n=3)

    def edit(shard: Shard):
        at = int(shard.table["offset"][0]) - len(shard.head) + int(shard.cols[0, 1]) + 4 * 4
        assert bytes(shard.data[at + 5:at + 10]) == b"row 1"
        shard.data[at + 5:at + 7] = b"\xff\xfe"

    craft_shard(root, 0, edit)
    ds = fastload.open(root, verify=verify)
    with pytest.raises(RecordDecodeError) as info:
        ds.get_batch([0, 1])
    assert f"{root / 'shard-000000.fls'} block 0 record 1: field 'text' is not valid UTF-8" in str(info.value)
    assert ds[0]["text"] == "row 0"
    assert isinstance(info.value, FastloadError)
