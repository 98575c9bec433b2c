"""Every Arrow type, with nulls at random and any column names, reads back as pyarrow's own Python
values: ``fastload.open(out)[i] == table.slice(i, 1).to_pylist()[0]``, from a Table, a Parquet
file, a Feather file, Python dicts and a torch Dataset (the last two with the Table's schema,
since plain Python values cannot say uint8 or time32)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings

import fastload

from .arrow_space import tables
from .values import Rows, assert_rows


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(tables())
def test_every_arrow_type_reads_back_as_to_pylist(tmp_path_factory, table):
    tmp = tmp_path_factory.mktemp("arrow")
    want = [table.slice(i, 1).to_pylist()[0] for i in range(table.num_rows)]
    fastload.pack(table, tmp / "table", progress=False)
    ds = fastload.open(tmp / "table")
    assert_rows(ds, want, f"table {table.schema}")
    for name in ds.schema.names:  # nullable exactly where the source holds a null
        assert ds.schema[name].nullable == (table.column(name).null_count > 0 and ds.schema[name].kind != "null")
    schema = ds.schema.without_nullable()
    sources = {"dicts": want, "torch": Rows(want),
               "stream": pa.RecordBatchReader.from_batches(table.schema, table.to_batches())}
    feather.write_feather(table, tmp / "t.feather")
    sources["feather"] = tmp / "t.feather"
    try:
        pq.write_table(table, tmp / "t.parquet")
        sources["parquet"] = tmp / "t.parquet"
    except pa.ArrowNotImplementedError:  # Parquet writes no view types inside nested ones (pyarrow 26)
        pass
    for label, source in sources.items():
        fastload.pack(source, tmp / label, schema=schema if label in ("dicts", "torch") else None,
                      progress=False)
        assert_rows(fastload.open(tmp / label), want, f"{label} {table.schema}")
    try:  # a DataFrame's reference is what pyarrow makes of it (pandas' missing values as None)
        df = table.to_pandas()
        df_want = pa.Table.from_pandas(df, preserve_index=False).to_pylist()
    except (pa.ArrowException, TypeError, ValueError):
        return  # a type pandas cannot hold, or hold and give back
    fastload.pack(df, tmp / "dataframe", progress=False)
    assert_rows(fastload.open(tmp / "dataframe"), df_want, f"dataframe {table.schema}")
