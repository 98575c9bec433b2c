"""Tables nobody here wrote pack and read back value for value: scikit-learn's bundled frames
(with their own column names), and the Parquet, Feather and ORC files in pyarrow's test data.

The reference for each is pyarrow reading the same input (``to_pylist()``); for a DataFrame,
``pa.Table.from_pandas(df)``. Files absent from the installed packages are skipped.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import fastload

from .values import assert_rows

sklearn_datasets = pytest.importorskip("sklearn.datasets")
FRAMES = ["load_iris", "load_wine", "load_breast_cancer", "load_diabetes", "load_linnerud"]
PYARROW_DATA = Path(pa.__file__).parent / "tests" / "data"


def packed(source, out, **options):
    fastload.pack(source, out, progress=False, **options)
    return fastload.open(out)


@pytest.mark.parametrize("loader", FRAMES)
def test_sklearn_frames_keep_their_names_and_values(tmp_path, loader):
    df = getattr(sklearn_datasets, loader)(as_frame=True).frame
    ds = packed(df, tmp_path / "frame")
    assert ds.schema.names == list(df.columns)  # 'sepal length (cm)', 'od280/od315_of_diluted_wines', ...
    assert_rows(ds, pa.Table.from_pandas(df, preserve_index=False).to_pylist(), loader)

    df.to_csv(tmp_path / "frame.csv", index=False)
    assert_rows(packed(tmp_path / "frame.csv", tmp_path / "csv"),
                pacsv.read_csv(tmp_path / "frame.csv").to_pylist(), f"{loader} csv")
    df.to_parquet(tmp_path / "frame.parquet", index=False)
    assert_rows(packed(tmp_path / "frame.parquet", tmp_path / "parquet", compression="zstd"),
                pq.read_table(tmp_path / "frame.parquet").to_pylist(), f"{loader} parquet")


def test_rename_gives_tidy_names(tmp_path):
    df = sklearn_datasets.load_iris(as_frame=True).frame
    ds = packed(df, tmp_path / "tidy", rename={"sepal length (cm)": "sepal_length", "target": "label"},
                schema="label:int8")
    assert ds.schema.names == ["sepal_length", "sepal width (cm)", "petal length (cm)", "petal width (cm)", "label"]
    assert ds.schema["label"].dtype == "int8"
    assert ds[0]["sepal_length"] == df["sepal length (cm)"][0] and ds[149]["label"] == 2


def pyarrow_files(pattern: str) -> list[Path]:
    return sorted(PYARROW_DATA.glob(pattern))


@pytest.mark.parametrize("path", pyarrow_files("parquet/*.parquet") + pyarrow_files("feather/*.feather"),
                         ids=lambda p: p.name)
def test_pyarrows_own_test_files(tmp_path, path):
    reader = pq.read_table if path.suffix == ".parquet" else feather.read_table
    ds = packed(path, tmp_path / "ds")
    assert_rows(ds, reader(path).to_pylist(), path.name)


@pytest.mark.parametrize("path", pyarrow_files("orc/*.orc"), ids=lambda p: p.name)
def test_orc_test_files_with_nested_dates_and_decimals(tmp_path, path):
    orc = pytest.importorskip("pyarrow.orc")
    table = orc.read_table(path)
    if table.num_rows == 0:
        pytest.skip("no rows")
    want = table.to_pylist()
    assert_rows(packed(table, tmp_path / "table"), want, path.name, sample=300)
    pq.write_table(table, tmp_path / "t.parquet")
    assert_rows(packed(tmp_path / "t.parquet", tmp_path / "parquet", compression="zstd"), want,
                f"{path.name} as parquet", sample=300)


def test_cli_quoted_schema_names_and_rename(tmp_path):
    import subprocess
    import sys

    sklearn_datasets.load_iris(as_frame=True).frame.to_csv(tmp_path / "iris.csv", index=False)
    proc = subprocess.run([sys.executable, "-m", "fastload._cli", "pack", str(tmp_path / "iris.csv"),
                           str(tmp_path / "out"), "--no-progress", "--schema", '"sepal width (cm)":float32',
                           "--rename", "sepal length (cm)=sepal_length", "--rename", '"target"=label'],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ds = fastload.open(tmp_path / "out")
    assert ds.schema.describe() == ('sepal_length: float64, "sepal width (cm)": float32, '
                                    '"petal length (cm)": float64, "petal width (cm)": float64, label: int64')
