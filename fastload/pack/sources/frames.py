"""Data frames and Hugging Face datasets as pack sources: each is an Arrow table first.

A pandas DataFrame becomes ``pyarrow.Table.from_pandas(df)`` with pandas' own index rule (a
RangeIndex is dropped, any other index, named or not, is kept as a column); a column that
Arrow cannot convert (values of several types) is a SchemaError naming the column and the first
row that differs. A polars DataFrame becomes ``df.to_arrow()``. A ``datasets.Dataset`` gives its
Arrow table (with a selection or shuffle applied), and a ``DatasetDict`` its only split.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ...errors import SchemaError, SourceError
from .base import Source, SourceInfo
from .python_objects import ArrowTableSource


class FrameSource(ArrowTableSource):
    """An Arrow table made from a data frame or dataset object, with its own description."""

    def __init__(self, table: Any, description: str, metadata: dict[str, Any] | None = None):
        super().__init__(table)
        self.description = f"{description} ({table.num_rows:,} rows, {table.num_columns} columns)"
        self._metadata = metadata or {}

    def info(self) -> SourceInfo:
        try:
            info = super().info()
        except SourceError as exc:  # a column no field can hold (all nulls): a schema problem
            raise SchemaError(f"{self.description}: {exc}") from None
        info.metadata = {**info.metadata, **self._metadata}
        return info


def frame_source(obj: Any) -> Source | None:
    """A source for a pandas or polars DataFrame or a Hugging Face dataset; None for other objects."""
    kind = type(obj)
    module, name = kind.__module__, kind.__name__
    if module.startswith("pandas") and name == "DataFrame":
        return FrameSource(_from_pandas(obj), "pandas DataFrame")
    if module.startswith("polars") and name in ("DataFrame", "LazyFrame"):
        frame = obj.collect() if name == "LazyFrame" else obj
        return FrameSource(frame.to_arrow(), f"polars {name}")
    if module.startswith("datasets") and name == "DatasetDict":
        splits = list(obj)
        if len(splits) != 1:
            raise SourceError(f"a Hugging Face DatasetDict with splits {splits}: pack one split at a time "
                              f"(fastload.pack(ds[{splits[0]!r}], ...))")
        return frame_source(obj[splits[0]])
    if module.startswith("datasets") and name == "Dataset":
        return FrameSource(_hf_table(obj), "Hugging Face Dataset", class_label_metadata(obj.features.to_dict()))
    return None


def _from_pandas(df: Any):
    import pyarrow as pa

    try:
        return pa.Table.from_pandas(df)  # preserve_index=None: pandas' own rule for the index
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError) as exc:
        raise _pandas_problem(df, exc) from None


def _pandas_problem(df: Any, exc: Exception) -> SchemaError:
    """Name the column (and row) that Arrow could not convert, and say what to do."""
    import pyarrow as pa

    for position, name in enumerate(df.columns):
        column = df.iloc[:, position]
        try:
            pa.array(column, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as col_exc:
            return SchemaError(f"DataFrame column {name!r}: {_odd_row(column) or col_exc}; convert the "
                               f"column (e.g. df[{name!r}].astype(str)) or drop those rows, then pack again")
    return SchemaError(f"the DataFrame cannot be converted to Arrow: {exc}")


def _odd_row(column: Any) -> str | None:
    """``row 60 (index 'x') holds 'x' (str) where most rows hold int``, or None when types agree."""
    present = [(row, label, v) for row, (label, v) in enumerate(column.items())
               if not (v is None or (isinstance(v, float) and v != v))]  # None and NaN: missing
    kinds = Counter(type(v).__name__ for _, _, v in present)
    if len(kinds) < 2:
        return None
    common = kinds.most_common(1)[0][0]
    row, label, value = next(p for p in present if type(p[2]).__name__ != common)
    return f"row {row} (index {label!r}) holds {value!r} ({type(value).__name__}) where most rows hold {common}"


def _hf_table(dataset: Any):
    """The rows of a ``datasets.Dataset`` as one Arrow table, in the dataset's order."""
    if getattr(dataset, "_indices", None) is None:
        return dataset.data.table  # memory-mapped as the dataset holds it: no copy
    return dataset.with_format("arrow")[:]  # a select/shuffle/filter: rows taken in that order


def class_label_metadata(features: dict[str, Any]) -> dict[str, Any]:
    """``{"class_labels": {column: [names]}}`` for the ClassLabel columns of Hugging Face features."""
    labels = {name: list(feature["names"]) for name, feature in features.items()
              if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and "names" in feature}
    return {"class_labels": labels} if labels else {}
