"""A Ray or Dask pack does not clean (yet): the cleaning options are refused, never ignored."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(60)


def test_a_dask_pack_refuses_cleaning_options_rather_than_ignore_them(tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    import pandas as pd
    import pyarrow.compute as pc

    import fastload

    frame = dd.from_pandas(pd.DataFrame({"text": ["a", "b", "a"]}), npartitions=2)
    for option in ({"dedup": "text"}, {"filter": pc.field("text") != "b"}, {"drop_invalid": True},
                   {"filter": "len(text) > 0", "dedup": True}):
        with pytest.raises(ValueError, match="apply to a single-machine pack, not to a Dask collection"):
            fastload.pack(frame, tmp_path / "x", **option)
