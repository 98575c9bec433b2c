"""Property-based fuzz of the read side (issue 10): crafted trailers, block tables, column offsets,
headers and manifests with integers at the limits, and byte flips, every checksum recomputed; read
in a separate process (tests/format/fuzzing.py), so a crash or a hang fails the test instead of
killing pytest. Every read returns the right records or raises a FastloadError."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .fuzzing import (
    EXTREMES, FLIP_PARTS, HOSTILE_CHECKSUMS, HOSTILE_NAMES, MANIFEST_KEYS, TABLE_FIELDS, TRAILER_FIELDS, Mutation,
    Reader, apply, build, fresh_copy,
)

pytestmark = pytest.mark.timeout(300)

ints = st.one_of(st.sampled_from(EXTREMES), st.integers(0, 2**64 - 1), st.integers(-(2**63), -1))
small = st.integers(0, 10_000)
shards = st.integers(0, 3)

mutations = st.one_of(
    st.builds(Mutation, kind=st.just("trailer"), shard=shards, where=st.sampled_from(TRAILER_FIELDS), value=ints),
    st.builds(Mutation, kind=st.just("table"), shard=shards, where=st.sampled_from(TABLE_FIELDS), index=small,
              value=ints),
    st.builds(Mutation, kind=st.just("block_span"), shard=shards, index=small, value=ints),
    st.builds(Mutation, kind=st.just("cols"), shard=shards, index=small, value=ints),
    st.builds(Mutation, kind=st.just("json_len"), shard=shards, value=ints),
    st.builds(Mutation, kind=st.just("header_schema"), shard=shards, index=small,
              where=st.sampled_from(["shape", "dtype", "kind", "name"]),
              value=st.one_of(ints, st.sampled_from(["uint64", "int8", "str", "array", "", "../x", "bool"]))),
    st.builds(Mutation, kind=st.just("manifest"), shard=shards, where=st.sampled_from(MANIFEST_KEYS),
              value=st.one_of(ints, st.sampled_from(HOSTILE_NAMES + HOSTILE_CHECKSUMS), st.booleans(),
                              st.floats(allow_nan=False), st.none())),
    st.builds(Mutation, kind=st.just("flip"), shard=shards, where=st.sampled_from(FLIP_PARTS), index=small,
              value=st.integers(0, 254)),
    st.builds(Mutation, kind=st.sampled_from(["var_offset", "nd_shape"]), shard=shards, index=small, value=ints),
)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    return {c: build(root / c, c) for c in ("none", "zstd")}, root


@pytest.fixture(scope="module")
def reader():
    r = Reader(timeout=30.0)
    yield r
    r.close()


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(muts=st.lists(mutations, min_size=1, max_size=2), compression=st.sampled_from(["none", "zstd"]),
       verify=st.sampled_from(["never", "first"]))
def test_a_crafted_dataset_reads_right_or_raises_a_fastload_error(bases, reader, muts, compression, verify):
    base, work = bases
    root = fresh_copy(base[compression], work / "case")
    apply(root, muts)
    outcome, detail = reader.check(root, verify, strict=all(m.strict for m in muts))
    assert outcome in ("ok", "error"), f"{[m.describe() for m in muts]} ({compression}, verify={verify}): " \
                                       f"{outcome}: {detail}"


def test_the_fuzzer_can_fail(bases, reader):
    """The harness itself: an untouched dataset reads ok, a crafted one errs, and the server's
    crash is seen as one (so a test above could fail for each reason it claims to check)."""
    base, work = bases
    root = fresh_copy(base["none"], work / "sound")
    assert reader.check(root, "never", strict=True)[0] == "ok"
    apply(root, [Mutation("table", where="offset", value=2**62)])
    outcome, detail = reader.check(root, "never", strict=False)
    assert outcome == "error" and "blocks outside the data area" in detail
    reader.proc.stdin.write("not json\n")  # the server dies on a request it cannot parse
    reader.proc.stdin.flush()
    reader.proc.wait(30)
    assert reader.check(root, "never", strict=False)[0] == "error"  # restarted
