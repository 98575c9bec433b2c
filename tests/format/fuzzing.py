"""A fuzzer of the read side: crafted datasets, read in a separate process that may crash or hang.

A *case* is a small, known dataset with one or more :class:`Mutation` applied: an integer at the
limits written into a trailer, block table, column offset, header or manifest field, a byte
flipped anywhere in a shard, or a variable column's record offset rewritten; every checksum is
recomputed afterwards (tests/format/crafting.py), so only the reader's structural checks stand in
the way. :class:`Reader` runs ``python -m tests.format.fuzzing --serve`` and hands it cases; the
server opens each, reads every record three ways (one batch in random order, ``ds[i]`` one by one,
only the fixed fields), pads the 1-D variable arrays, and runs ``verify_all``, then answers:

- ``ok``: every read worked. The three reads agree with each other; and when the mutation leaves
  the stored data's meaning alone (``strict``: trailer, header, manifest), they equal the records
  the dataset was written from. A flipped payload byte with its checksum recomputed is new data,
  which no reader can tell from the original: there only agreement and well-formed values count.
- ``error``: a FastloadError (which every class of fastload.errors is) was raised.
- ``failure``: anything else: another exception, reads that disagree, a strict read that differs.

The parent sees a crash as the server's death and a hang as no answer within the timeout. The
test suite drives this with hypothesis (tests/format/test_fuzz.py); tools/fuzz_read.py runs it for
longer and reports the figures recorded in docs/format.md.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastload.format.spec import BLOCK_DTYPE, HEADER_PREFIX, MANIFEST_NAME, TRAILER_DTYPE

from .crafting import Shard, edit_manifest, refresh_manifest

SCHEMA = ("id:int64,tokens:uint16[8],text:str,var:uint16[-1],nd:float32[-1,2],blob:bytes,meta:json,"
          "flag:bool")
N_RECORDS = 40
REPO = Path(__file__).resolve().parents[2]

# integers at and around every limit a reader's arithmetic meets; widths are applied per field
EXTREMES = (0, 1, 2, 7, 8, 63, 64, 65, 255, 256, 2**15, 2**16 - 1, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
            2**32 + 1, 2**48, 2**48 + 1, 2**52, 2**62, 2**63 - 1, 2**63, 2**64 - 64, 2**64 - 1)
HOSTILE_NAMES = ("..", ".", "../shard-000000.fls", "/etc/passwd", "/dev/zero", "shard-000000.fls/x", "", "a" * 201,
                 ".shard-000000.fls.tmp-1-00000000", "shard-000001.fls", "manifest.json", "CON", "sh\u00e4rd")
HOSTILE_CHECKSUMS = ("/../../../../../../tmp/x", "0" * 15, "0" * 17, "G" * 16, "ABCDEF0123456789", "", "0" * 16)


def make_records(n: int = N_RECORDS, seed: int = 0) -> list[dict]:
    """The records the base datasets are written from: the reference the reads are compared with."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append({
            "id": i * 7 - 3,
            "tokens": rng.integers(0, 2**16, 8).astype(np.uint16),
            "text": "é" * (i % 5) + f"record {i}",
            "var": rng.integers(0, 2**16, i % 6).astype(np.uint16),
            "nd": rng.random((i % 4, 2)).astype(np.float32),
            "blob": bytes(rng.integers(0, 256, i % 9, dtype=np.uint8)),
            "meta": {"i": i, "even": i % 2 == 0, "tags": ["a"] * (i % 3)},
            "flag": bool(i % 3),
        })
    return out


def build(root: Path, compression: str) -> Path:
    """A base dataset: 2-4 shards of several blocks each."""
    import fastload

    with fastload.Writer(root, SCHEMA, block_size=400, shard_size=2000, compression=compression) as w:
        for r in make_records():
            w.write(r)
    return root


# -- mutations ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mutation:
    """One edit of a dataset. ``kind`` picks what; ``shard``, ``where``, ``index`` and ``value`` say
    which and to what (each kind uses those it needs; positions wrap around what exists)."""

    kind: str  # trailer | table | block_span | cols | json_len | header_schema | manifest | flip | var_offset | nd_shape
    shard: int = 0
    where: str = ""  # a field name, a manifest key, or the part of the file a flip hits
    index: int = 0  # block, column, position or entry
    value: int | str = 0

    @property
    def strict(self) -> bool:
        """True when a successful read must give the original records (the stored data is untouched)."""
        return self.kind in ("trailer", "json_len", "header_schema", "manifest")

    def describe(self) -> str:
        return f"{self.kind}(shard={self.shard}, where={self.where!r}, index={self.index}, value={self.value!r})"


TRAILER_FIELDS = ("version", "n_fields", "index_offset", "index_size", "n_blocks", "n_records")
TABLE_FIELDS = ("offset", "stored_size", "raw_size", "first_record", "n_records", "codec")
MANIFEST_KEYS = ("records", "bytes", "blocks", "num_records", "name", "checksum", "shape", "version")
FLIP_PARTS = ("head", "data", "index", "trailer")


def _width(dtype: np.dtype, name: str) -> int:
    return dtype.fields[name][0].itemsize * 8


def apply(root: Path, mutations: list[Mutation]) -> None:
    """Apply ``mutations`` to the dataset at ``root`` and recompute every checksum after them."""
    body = json.loads((root / MANIFEST_NAME).read_bytes())
    names = body["shards"]["name"]
    manifest_edits = [m for m in mutations if m.kind == "manifest"]
    # edits that move the header's end or the index go last: a shard is cut into parts by them
    last = ("trailer", "json_len")
    for m in sorted((m for m in mutations if m.kind != "manifest"),
                    key=lambda m: m.kind in last or (m.kind == "flip" and m.where == "trailer")):
        path = root / names[m.shard % len(names)]
        try:
            shard = Shard.load(path)
            keep = _edit_shard(shard, m)
        except (ValueError, IndexError, KeyError, TypeError, ArithmeticError):  # an earlier edit broke what
            continue  # this one edits (the header JSON, the index's place): the file stays as it is
        shard.save(path, keep_trailer=keep)
    refresh_manifest(root)
    for m in manifest_edits:
        edit_manifest(root, lambda b, m=m: _edit_manifest(b, m))


def _edit_shard(shard: Shard, m: Mutation) -> tuple[str, ...]:
    """Edit one shard in place; returns the trailer fields whose crafted values must be kept."""
    nb = len(shard.table)
    if m.kind == "trailer":
        field = m.where or TRAILER_FIELDS[m.index % len(TRAILER_FIELDS)]
        shard.trailer[field] = int(m.value) % 2 ** _width(TRAILER_DTYPE, field)
        return (field,)
    if m.kind == "table" and nb:
        field = m.where or TABLE_FIELDS[m.index % len(TABLE_FIELDS)]
        shard.table[field][m.index % nb] = int(m.value) % 2 ** _width(BLOCK_DTYPE, field)
    elif m.kind == "block_span" and nb:  # where a block lies and how long it is, together (as in r1)
        row = shard.table[m.index % nb]
        offset = int(m.value) % 2**64
        # half the time a size whose sum with the offset wraps past 2^63 or 2^64 to a small number
        wrap = (2**63, 2**64)[m.index // 2 % 2] - offset + m.index // 4 % 4096
        size = EXTREMES[m.index // 2 % len(EXTREMES)] if m.index % 2 else wrap % 2**64
        row["offset"], row["stored_size"], row["raw_size"] = offset, size, size
    elif m.kind == "cols" and nb:
        b, j = m.index % nb, (m.index // nb) % shard.cols.shape[1]
        shard.cols[b, j] = int(m.value) % 2**32
    elif m.kind == "json_len":
        prefix = np.frombuffer(bytes(shard.head[:HEADER_PREFIX.itemsize]), HEADER_PREFIX).copy()
        prefix["json_len"] = int(m.value) % 2**32
        shard.head[:HEADER_PREFIX.itemsize] = prefix.tobytes()
    elif m.kind == "header_schema":
        header = shard.header_json
        field = header["schema"][m.index % len(header["schema"])]
        key = m.where or "shape"
        field[key] = [m.value] if key == "shape" else m.value
        shard.set_header_json(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    elif m.kind == "flip":
        part = {"head": shard.head, "data": shard.data}.get(m.where or FLIP_PARTS[m.index % 4])
        if part is None:  # the index or the trailer: edited as structures, flipped as bytes
            target = shard.table if (m.where or FLIP_PARTS[m.index % 4]) == "index" else shard.trailer
            raw = bytearray(target.tobytes())
            if raw:
                raw[m.index % len(raw)] ^= (int(m.value) % 255) + 1
                target[...] = np.frombuffer(bytes(raw), target.dtype).reshape(target.shape)
            return tuple(TRAILER_DTYPE.names) if target is shard.trailer else ()
        if part:
            part[m.index % len(part)] ^= (int(m.value) % 255) + 1
    elif m.kind in ("var_offset", "nd_shape") and nb:
        _edit_payload(shard, m)
    return ()


def _edit_payload(shard: Shard, m: Mutation) -> None:
    """Rewrite a variable column's record offset (``var_offset``) or an N-D record's stored shape
    (``nd_shape``) inside a raw block, before its checksum is recomputed."""
    from fastload import Schema

    schema = Schema.parse(SCHEMA)  # the layout the base was written with (a header edit may have lied)
    b = m.index % len(shard.table)
    n = int(shard.table["n_records"][b])
    if int(shard.table["codec"][b]) != 0 or n < 1:
        return
    block_at = int(shard.table["offset"][b]) - len(shard.head)
    var = [j for j, f in enumerate(schema) if not f.is_fixed]
    j = var[m.index % len(var)] if m.kind == "var_offset" else schema.index("nd")
    col = block_at + int(shard.cols[b, j])
    if m.kind == "var_offset":
        k = (m.index // 7) % (n + 1)
        shard.data[col + 4 * k:col + 4 * k + 4] = np.uint32(int(m.value) % 2**32).tobytes()
        return
    offsets = np.frombuffer(bytes(shard.data[col:col + 4 * (n + 1)]), "<u4")
    k = (m.index // 7) % n
    at = col + 4 * (n + 1) + int(offsets[k])
    if int(offsets[k + 1]) - int(offsets[k]) >= 16:  # a record with its shape stored
        dim = (m.index // 3) % 2
        shard.data[at + 8 * dim:at + 8 * dim + 8] = (int(m.value) % 2**64).to_bytes(8, "little")


def _edit_manifest(body: dict, m: Mutation) -> None:
    shards = body["shards"]
    s = m.shard % len(shards["name"])
    key = m.where or MANIFEST_KEYS[m.index % len(MANIFEST_KEYS)]
    if key in ("records", "bytes", "blocks"):
        shards[key][s] = m.value
    elif key == "num_records":
        body["num_records"] = m.value
    elif key in ("name", "checksum"):
        choices = HOSTILE_NAMES if key == "name" else HOSTILE_CHECKSUMS
        picks = type(m.value) is int  # an int picks a hostile string; anything else is written as it is
        shards[key][s] = choices[m.value % len(choices)] if picks else m.value
    elif key == "shape":
        body["schema"][1]["shape"] = [m.value]
    else:
        body["version"] = m.value


# -- the reading side, in its own process ---------------------------------------------------------
def read_case(root: str, verify: str, strict: bool, expected: list[dict]) -> tuple[str, str]:
    """Read a case every way; ``("ok" | "error" | "failure", detail)``. Runs in the server process."""
    import fastload

    from .helpers import assert_record_equal

    try:
        ds = fastload.open(root, verify=verify)
        n = len(ds)
        order = np.random.default_rng(n).permutation(n)
        batch = ds.get_batch(order)
        singles = [ds[i] for i in range(n)]
        fixed = [f.name for f in ds.schema if f.is_fixed]
        fixed_only = ds.get_batch(order, fields=fixed) if fixed else {}
        padded = ds.get_batch(order, fields=["var"], pad=True) if "var" in ds.schema else None
        fastload.open(root, verify="never").verify_all()
    except fastload.FastloadError as exc:
        return "error", f"{type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - the finding this fuzzer looks for
        return "failure", traceback.format_exc()
    try:
        for k, i in enumerate(order.tolist()):
            got = {name: (value[k].item() if ds.schema[name].kind == "scalar" else value[k])
                   for name, value in batch.items()}
            assert_record_equal(ds.schema, got, singles[i], f"batch row {k} vs ds[{i}]")
            for name in fixed:
                np.testing.assert_array_equal(fixed_only[name][k], batch[name][k])
            if padded is not None:
                values, lengths = padded["var"]
                assert int(lengths[k]) == len(batch["var"][k])
                np.testing.assert_array_equal(values[k, :lengths[k]], batch["var"][k])
        if strict:
            assert n == len(expected), f"{n} records, {len(expected)} written"
            for i in range(n):
                assert_record_equal(ds.schema, singles[i], expected[i], f"record {i}")
    except AssertionError:
        return "failure", traceback.format_exc()
    return "ok", f"{n} records"


def serve() -> None:
    """The server loop: one JSON request per stdin line, one JSON answer per stdout line."""
    expected = make_records()
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write into the answer stream
    for line in sys.stdin:
        req = json.loads(line)
        outcome, detail = read_case(req["root"], req["verify"], req["strict"], expected)
        out.write(json.dumps({"outcome": outcome, "detail": detail[-4000:]}) + "\n")
        out.flush()


class Reader:
    """The server process, restarted after a crash or a hang."""

    def __init__(self, timeout: float = 30.0):
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.format.fuzzing", "--serve"], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env={**os.environ, "PYTHONFAULTHANDLER": "1"})

    def check(self, root: Path, verify: str, strict: bool) -> tuple[str, str]:
        """``(outcome, detail)``, outcome one of ok, error, failure, crash, hang."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(json.dumps({"root": str(root), "verify": verify, "strict": strict}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            self.close()
            return "hang", f"no answer within {self.timeout:g} s"
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            return "crash", f"the reader process died with status {code}"
        answer = json.loads(line)
        return answer["outcome"], answer["detail"]

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def fresh_copy(base: Path, to: Path) -> Path:
    if to.exists():
        shutil.rmtree(to)
    shutil.copytree(base, to)
    return to


def save_case(directory: Path, mutations: list[Mutation], verify: str) -> None:
    """Keep a failing case's description next to its crafted files (for a rerun by hand)."""
    (directory / "case.pickle").write_bytes(pickle.dumps((mutations, verify)))


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    serve()
