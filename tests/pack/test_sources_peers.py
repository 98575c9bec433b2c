"""Peer-format pack sources on datasets written by the peers' own writers (tests/data/peers/).

The fixtures and their ``expected.json`` come from ``tools/make_peer_fixtures.py``, which checks
them against the peers' own readers; these tests read them without the peers installed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import fastload
from fastload.errors import SourceError
from fastload.pack.sources.base import BadRow, Chunk
from fastload.pack.sources.litdata import LitDataSource, decode_nested
from fastload.pack.sources.mds import MDSSource
from fastload.pack.sources.webdataset import WebDatasetSource, split_key

PEERS = Path(__file__).resolve().parent.parent / "data" / "peers"
SOURCES = {
    "wds": WebDatasetSource, "mds": MDSSource, "mds_zstd": MDSSource, "litdata": LitDataSource,
    "litdata_zstd": LitDataSource, "litdata_text": LitDataSource, "litdata_tokens": LitDataSource,
}


# -- helpers ----------------------------------------------------------------------------------
def expected(name: str) -> dict:
    return json.loads((PEERS / name / "expected.json").read_text())


def read_all(source) -> tuple[list[Chunk], list[BadRow]]:
    """Every segment in order, read through pickled copies as a pack worker reads them."""
    copy = pickle.loads(pickle.dumps(source))
    items = [item for seg in source.segments() for item in copy.read(pickle.loads(pickle.dumps(seg)))]
    return [i for i in items if isinstance(i, Chunk)], [i for i in items if isinstance(i, BadRow)]


def rows_of(chunks: list[Chunk]) -> list[dict]:
    rows = []
    for c in chunks:
        cols = {k: (v.to_pylist() if isinstance(v, (pa.Array, pa.ChunkedArray)) else list(v))
                for k, v in c.columns.items()}
        rows.extend(dict(zip(cols, vals)) for vals in zip(*cols.values()))
    return rows


def same(got, want) -> bool:
    """``got`` (a value read by fastload) against ``want`` (its JSON form in expected.json)."""
    if isinstance(want, dict) and "b64" in want:
        return bytes(got) == base64.b64decode(want["b64"])
    if isinstance(want, dict) and "sha256" in want:
        return len(got) == want["len"] and hashlib.sha256(bytes(got)).hexdigest() == want["sha256"]
    if isinstance(want, dict) and "dtype" in want:
        arr = np.asarray(got)
        return arr.dtype.name == want["dtype"] and list(arr.shape) == want["shape"] and arr.tolist() == want["values"]
    if isinstance(got, np.generic):
        got = got.item()
    return type(got) is type(want) and got == want


def assert_records(rows: list[dict], records: list[dict], what: str) -> None:
    assert len(rows) == len(records), what
    for i, (got, want) in enumerate(zip(rows, records)):
        assert list(got) == list(want), f"{what} record {i}: fields"
        for k in want:
            assert same(got[k], want[k]), f"{what} record {i} field {k!r}: {got[k]!r} != {want[k]!r}"


def copy_fixture(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(PEERS / name, tmp_path / name))


# -- every fixture: schema and records --------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_fixture_reads_as_the_peer_wrote_it(name):
    source = SOURCES[name](str(PEERS / name))
    exp = expected(name)
    schema = source.info().schema
    assert {f.name: f.spec for f in schema} == exp["fields"]
    chunks, bad = read_all(source)
    assert bad == []
    assert_records(rows_of(chunks), exp["records"], name)
    for c in chunks:  # every chunk names a file of the dataset and where its rows start
        assert Path(c.origin).parent == PEERS / name and Path(c.origin).is_file()
        assert 0 <= c.first_row and len(c) > 0


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_segments_cover_every_file_once_in_order(name):
    source = SOURCES[name](str(PEERS / name))
    segs = source.segments()
    assert segs == SOURCES[name](str(PEERS / name)).segments()
    assert pickle.loads(pickle.dumps(segs)) == segs
    files = [s if isinstance(s, str) else s.path for s in segs]
    assert len(set(files)) == len(files)
    if name == "wds":
        assert files == sorted(str(p) for p in (PEERS / name).glob("*.tar"))
    else:
        index = json.loads((PEERS / name / "index.json").read_text())
        listed = index["shards"] if "shards" in index else index["chunks"]
        names = [(e.get("zip_data") or e["raw_data"])["basename"] if "raw_data" in e else e["filename"] for e in listed]
        assert [Path(f).name for f in files] == names
    assert sum(source.segment_bytes(s) for s in segs) == source.info().bytes_hint > 0


def test_litdata_token_blocks_match_litdata_reader():
    exp = expected("litdata_tokens")
    source = LitDataSource(str(PEERS / "litdata_tokens"), block_size=exp["block_size"])
    assert source.info().schema.describe() == f"tokens: uint16[{exp['block_size']}]"
    chunks, bad = read_all(source)
    assert bad == []
    blocks = [b for c in chunks for b in c.columns["tokens"]]
    assert len(blocks) == len(exp["blocks"])
    assert all(same(b, want) for b, want in zip(blocks, exp["blocks"]))


# -- WebDataset: keys, tars given several ways, broken tars -------------------------------------
def test_split_key_follows_webdataset():
    assert split_key("dir/abc.seg.PNG") == ("dir/abc", "seg.png")
    assert split_key("a.b/c.txt") == ("a.b/c", "txt")
    assert split_key("noext") is None
    assert split_key("dir/.hidden") is None


def test_wds_accepts_dir_glob_and_list_alike():
    tars = sorted(str(p) for p in (PEERS / "wds").glob("*.tar"))
    for given in (str(PEERS / "wds"), str(PEERS / "wds" / "*.tar"), list(reversed(tars)), tars[:1] + tars):
        assert WebDatasetSource(given).segments() == tars
    with pytest.raises(SourceError, match="nothing-here"):
        WebDatasetSource([str(PEERS / "wds" / "nothing-here.tar")])


def test_wds_tar_gz_reads_the_same(tmp_path):
    for tar in sorted((PEERS / "wds").glob("*.tar")):
        (tmp_path / (tar.name + ".gz")).write_bytes(gzip.compress(tar.read_bytes()))
    chunks, bad = read_all(WebDatasetSource(str(tmp_path)))
    assert bad == []
    assert_records(rows_of(chunks), expected("wds")["records"], "wds .tar.gz")


def member_offsets(tar_path: Path) -> list[tuple[str, int, int]]:
    with tarfile.open(tar_path) as tar:
        return [(m.name, m.offset, m.offset_data) for m in tar.getmembers()]


@pytest.mark.parametrize("cut", ["in_data", "in_header"])
def test_wds_truncated_tar_gives_rows_then_a_bad_row(tmp_path, cut):
    folder = copy_fixture("wds", tmp_path)
    second = sorted(folder.glob("*.tar"))[1]
    members = member_offsets(second)
    name, offset, data_at = members[25]  # a member of the fourth sample of the second tar
    data = second.read_bytes()
    second.write_bytes(data[: data_at + 3] if cut == "in_data" else data[: offset + 100])
    chunks, bad = read_all(WebDatasetSource(str(folder)))
    records = expected("wds")["records"]
    per_tar = len(records) // 2
    lost_sample = 25 // 7  # members are written sample by sample, 7 per sample
    assert_records(rows_of(chunks), records[: per_tar + lost_sample], "rows before the cut")
    assert len(bad) == 1
    assert bad[0].origin == str(second) and bad[0].row == lost_sample
    assert name in bad[0].reason or f"byte {offset}" in bad[0].reason
    assert "truncated" in bad[0].reason


def test_wds_garbage_header_is_not_a_silent_end(tmp_path):
    folder = copy_fixture("wds", tmp_path)
    first = sorted(folder.glob("*.tar"))[0]
    _, offset, _ = member_offsets(first)[14]  # the first member of the third sample
    data = bytearray(first.read_bytes())
    data[offset : offset + 512] = b"\x07" * 512
    first.write_bytes(bytes(data))
    chunks, bad = read_all(WebDatasetSource(str(folder)))
    assert len(bad) == 1 and bad[0].origin == str(first) and f"header at byte {offset}" in bad[0].reason
    # the unreadable header might have been the second sample's: it is counted lost with the rest
    assert bad[0].row == 1 and "sample 'sample000001' and everything after it are lost" in bad[0].reason
    records = expected("wds")["records"]
    assert_records(rows_of(chunks), records[:1] + records[len(records) // 2 :], "rows around the bad header")


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_wds_bad_samples_are_bad_rows_and_the_rest_reads(tmp_path, jpeg_bytes):
    write_tar(tmp_path / "a.tar", [
        ("s0.cls", b"3"), ("s0.jpg", jpeg_bytes), ("s0.txt", b"zero"),
        ("s1.cls", b"three"), ("s1.jpg", jpeg_bytes), ("s1.txt", b"one"),  # cls not an integer
        ("s2.cls", b"5"), ("s2.jpg", jpeg_bytes), ("s2.txt", b"two"), ("s2.extra", b"?"),  # extra field
        ("s3.cls", b"7"), ("s3.jpg", jpeg_bytes), ("s3.txt", b"x"), ("s3.txt", b"y"),  # duplicate
        ("s4.cls", b" 9\n"), ("s4.txt.gz", gzip.compress(b"four")),  # no jpg: null, for on_error
    ])
    source = WebDatasetSource(str(tmp_path / "a.tar"))
    assert source.info().schema.describe() == "__key__: str, cls: int64, jpg: image[jpeg], txt: str"
    chunks, bad = read_all(source)
    assert [(b.row, b.where()) for b in bad] == [(i, f"{tmp_path / 'a.tar'} sample {i}") for i in (1, 2, 3)]
    assert "'three' is not an integer" in bad[0].reason
    assert "['extra']" in bad[1].reason and "two members with extension 'txt'" in bad[2].reason
    rows = rows_of(chunks)
    assert [r["__key__"] for r in rows] == ["s0", "s4"] and [c.first_row for c in chunks] == [0, 4]
    assert rows[0]["cls"] == 3 and rows[0]["jpg"] == jpeg_bytes and rows[1]["cls"] == 9
    assert rows[1]["txt"] == "four" and rows[1]["jpg"] is None


def test_wds_gzip_bomb_and_oversized_members_are_bad_rows(tmp_path):
    """A .gz member inflating past the cap (issue 10: 1 MB became 2.15 GB of memory) stops
    inflating at the cap and is a bad row naming the member; so is a member stored over the cap,
    unread; the samples around them are packed."""
    limit = 1 << 20
    bomb = gzip.compress(b"\0" * (limit * 8), compresslevel=9)
    assert len(bomb) < limit // 64
    write_tar(tmp_path / "a.tar", [
        ("s0.cls", b"1"), ("s0.txt", b"zero"),
        ("s1.cls", b"2"), ("s1.txt.gz", bomb),
        ("s2.cls", b"3"), ("s2.txt", b"x" * (limit + 1)),
        ("s3.cls", b"4"), ("s3.txt.gz", gzip.compress(b"three")),
    ])
    source = WebDatasetSource(str(tmp_path / "a.tar"), max_member_bytes=limit)
    chunks, bad = read_all(source)
    assert [r["__key__"] for r in rows_of(chunks)] == ["s0", "s3"] and rows_of(chunks)[1]["txt"] == "three"
    assert [b.row for b in bad] == [1, 2]
    assert f"member s1.txt.gz inflates to more than the {limit} bytes allowed" in bad[0].reason
    assert f"member s2.txt is {limit + 1} bytes, more than the {limit} allowed" in bad[1].reason
    report = fastload.pack(source, tmp_path / "out", on_error="skip", progress=False)
    assert report.records == 2 and report.skipped == 2
    with pytest.raises(SourceError, match="s1.txt.gz inflates to more than"):
        fastload.pack(source, tmp_path / "out2", progress=False)


def test_wds_unreadable_everywhere_is_a_source_error(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"not a tar at all" * 10)
    with pytest.raises(SourceError, match="no readable sample"):
        WebDatasetSource(str(tmp_path / "x.tar")).info()


# -- MDS ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [MDSSource, LitDataSource])
def test_missing_index_is_a_source_error_naming_it(tmp_path, cls):
    with pytest.raises(SourceError, match=str(tmp_path / "index.json")):
        cls(str(tmp_path))


def edit_index(folder: Path, change) -> None:
    index = json.loads((folder / "index.json").read_text())
    change(index)
    (folder / "index.json").write_text(json.dumps(index))


def test_mds_unsupported_compression_and_encodings(tmp_path):
    folder = copy_fixture("mds_zstd", tmp_path)
    edit_index(folder, lambda ix: ix["shards"][2].update(compression="br:5"))
    with pytest.raises(SourceError, match=r"shard 2 is compressed with 'br:5'"):
        MDSSource(str(folder))
    folder = copy_fixture("mds", tmp_path / "pkl")

    def to_pickle(ix):
        for shard in ix["shards"]:
            shard["column_encodings"][shard["column_names"].index("meta")] = "pkl"
    edit_index(folder, to_pickle)
    with pytest.raises(SourceError, match=r"column 'meta' has encoding 'pkl'"):
        MDSSource(str(folder))


def test_mds_damaged_shards_become_bad_rows(tmp_path):
    folder = copy_fixture("mds", tmp_path)
    shards = sorted(folder.glob("*.mds"))
    shards[0].unlink()  # a missing shard: one bad row for the shard
    data = shards[2].read_bytes()
    shards[2].write_bytes(data[: len(data) - 700])  # a cut shard: its last samples are bad
    records = expected("mds")["records"]
    chunks, bad = read_all(MDSSource(str(folder)))
    assert bad[0].origin == str(shards[0]) and bad[0].row is None and "No such file" in bad[0].reason
    cut = [b for b in bad[1:]]
    assert cut and all(b.origin == str(shards[2]) and "outside" in b.reason for b in cut)
    assert [b.row for b in cut] == list(range(6 - len(cut), 6))
    rows = rows_of(chunks)
    kept = records[6 : 12 + 6 - len(cut)] + records[18:]
    assert_records(rows, kept, "rows of the intact shards and samples")


def test_mds_corrupt_zstd_shard_is_a_bad_row(tmp_path):
    folder = copy_fixture("mds_zstd", tmp_path)
    shard = sorted(folder.glob("*.zstd"))[1]
    shard.write_bytes(b"\x00" * 64)
    chunks, bad = read_all(MDSSource(str(folder)))
    assert len(bad) == 1 and bad[0].origin == str(shard) and "zstd" in bad[0].reason
    assert len(rows_of(chunks)) == 24 - 6


def test_mds_prefers_a_cached_decompressed_shard(tmp_path):
    """A Streaming cache holds shard.N.mds beside shard.N.mds.zstd: reading it skips zstd."""
    import zstandard

    folder = copy_fixture("mds_zstd", tmp_path)
    for packed in sorted(folder.glob("*.zstd")):
        with zstandard.ZstdDecompressor().stream_reader(packed.read_bytes()) as r:
            (folder / packed.stem).write_bytes(r.read())
    shard = sorted(folder.glob("*.zstd"))[0]
    shard.write_bytes(b"garbage")  # would be a bad row if it were read
    chunks, bad = read_all(MDSSource(str(folder)))
    assert bad == []
    assert_records(rows_of(chunks), expected("mds_zstd")["records"], "cached raw shards")


# -- LitData ------------------------------------------------------------------------------------
def test_litdata_unsupported_serializers_are_named(tmp_path):
    folder = copy_fixture("litdata", tmp_path)
    edit_index(folder, lambda ix: ix["config"]["data_format"].__setitem__(1, "pickle"))
    with pytest.raises(SourceError, match=r"leaf 'text' uses serializer 'pickle'"):
        LitDataSource(str(folder)).info()
    edit_index(folder, lambda ix: ix["config"]["data_format"].__setitem__(1, "video"))
    with pytest.raises(SourceError, match=r"leaf 'text' uses serializer 'video'"):
        LitDataSource(str(folder)).info()
    edit_index(folder, lambda ix: ix["config"].update(encryption={"level": "chunk"}))
    with pytest.raises(SourceError, match="encrypted"):
        LitDataSource(str(folder))


def test_litdata_unmerged_index_is_named(tmp_path):
    shutil.copy(PEERS / "litdata" / "index.json", tmp_path / "0.index.json")
    with pytest.raises(SourceError, match=r"0\.index\.json"):
        LitDataSource(str(tmp_path))


@pytest.mark.parametrize("name", ["litdata", "litdata_zstd"])
def test_litdata_damaged_chunks_become_bad_rows(tmp_path, name):
    folder = copy_fixture(name, tmp_path)
    chunk_files = [folder / c["filename"] for c in json.loads((folder / "index.json").read_text())["chunks"]]
    data = chunk_files[1].read_bytes()
    chunk_files[1].write_bytes(data[: len(data) // 2])
    chunk_files[2].unlink()
    chunks, bad = read_all(LitDataSource(str(folder)))
    records = expected(name)["records"]
    if name == "litdata":  # items past the cut are bad one by one
        cut = [b for b in bad if b.origin == str(chunk_files[1])]
        assert cut and [b.row for b in cut] == list(range(10 - len(cut), 10))
        kept = records[: 20 - len(cut)]
    else:  # a cut zstd frame loses the whole chunk
        assert bad[0].origin == str(chunk_files[1]) and bad[0].row is None
        kept = records[:10]
    assert bad[-1].origin == str(chunk_files[2]) and "No such file" in bad[-1].reason
    assert_records(rows_of(chunks), kept, f"{name} intact rows")


def test_litdata_json_values_in_both_encodings():
    assert decode_nested(b'{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(ValueError, match="unknown tag 31"):
        decode_nested(b"\x1f")
    with pytest.raises(ValueError, match="bytes left"):
        decode_nested(b"\x0b\x0b")


# -- round trips through fastload.pack ----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_pack_round_trip(tmp_path, name):
    out = tmp_path / "out"
    report = fastload.pack(str(PEERS / name), out, progress=False)
    exp = expected(name)
    assert report.records == len(exp["records"]) and report.skipped == 0
    ds = fastload.open(out)
    assert {f.name: f.spec for f in ds.schema} == exp["fields"]
    assert_records([ds[i] for i in range(len(ds))], exp["records"], f"{name} packed")


def test_pack_is_byte_identical_across_worker_counts(tmp_path):
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        fastload.pack(str(PEERS / "mds_zstd"), out, progress=False, workers=workers, shard_size="8KB")
        outs.append(out)
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == sorted(p.name for p in outs[1].iterdir()) and len(names) > 2
    for n in names:
        assert (outs[0] / n).read_bytes() == (outs[1] / n).read_bytes(), n


def test_pack_skips_a_truncated_tar_sample(tmp_path):
    folder = copy_fixture("wds", tmp_path)
    second = sorted(folder.glob("*.tar"))[1]
    _, _, data_at = member_offsets(second)[25]
    second.write_bytes(second.read_bytes()[: data_at + 3])
    with pytest.raises(fastload.FastloadError, match="truncated"):
        fastload.pack(str(folder), tmp_path / "raise", progress=False)
    report = fastload.pack(str(folder), tmp_path / "skip", progress=False, on_error="skip")
    assert report.skipped == 1 and report.records == 8 + 3
