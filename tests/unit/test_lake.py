"""The lake writer: atomic files, partitions replaced whole on rerun."""

import pyarrow as pa

from fincoach import lake


def test_replace_partition_leaves_exactly_the_new_file():
    t1 = pa.table({"x": [1, 2, 3]})
    t2 = pa.table({"x": [4, 5]})
    lake.replace_partition(t1, "raw/demo/dt=2026-01-01/hour=00", "run-a.parquet")
    lake.replace_partition(t2, "raw/demo/dt=2026-01-01/hour=00", "run-b.parquet")
    assert lake.list_files("raw/demo/dt=2026-01-01/hour=00") == ["run-b.parquet"]
    assert lake.read_table("raw/demo/dt=2026-01-01/hour=00/run-b.parquet").column("x").to_pylist() == [4, 5]


def test_no_temporary_files_remain_after_a_write():
    lake.write_parquet(pa.table({"x": [1]}), "tmpcheck/a.parquet")
    fs, root = lake.filesystem()
    import pyarrow.fs as pafs

    names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(f"{root}/tmpcheck"))]
    assert names == ["a.parquet"]


def test_list_dirs_and_missing_prefixes():
    assert lake.list_files("does/not/exist") == []
    assert lake.list_dirs("does/not/exist") == []
    lake.write_parquet(pa.table({"x": [1]}), "snapdemo/as_of=1/features.parquet")
    assert lake.list_dirs("snapdemo") == ["as_of=1"]
