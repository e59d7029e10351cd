"""The one lake writer and reader: Parquet under FINCOACH_LAKE_URI (a local folder or s3://), atomic writes."""

from __future__ import annotations

import uuid
from functools import lru_cache

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from fincoach.settings import get_settings


@lru_cache(maxsize=4)
def _filesystem(lake_uri: str, endpoint: str | None) -> tuple[pafs.FileSystem, str]:
    if lake_uri.startswith("s3://"):
        bucket_prefix = lake_uri.removeprefix("s3://").rstrip("/")
        kwargs = {"endpoint_override": endpoint} if endpoint else {}
        return pafs.S3FileSystem(**kwargs), bucket_prefix
    local = pafs.LocalFileSystem()
    local.create_dir(lake_uri, recursive=True)
    return local, lake_uri.rstrip("/")


def filesystem() -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path inside it) of the lake in effect."""
    s = get_settings()
    return _filesystem(s.lake, s.aws_endpoint_url)


def uri(relpath: str) -> str:
    """Full URI of a lake path, for messages and references passed between tasks."""
    return f"{get_settings().lake}/{relpath.strip('/')}"


def _write_options(schema: pa.Schema) -> dict:
    """Parquet settings: snappy; dictionary pages and min/max statistics only where they pay.

    Strings (categories, pseudonyms, JSON payloads) repeat, so they get dictionaries; ids, timestamps and
    amounts rarely do. Statistics serve range filters on ids, timestamps and amounts; on strings they only
    cost time (pseudonyms and JSON have no useful order).
    """
    strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    others = [f.name for f in schema if f.name not in strings]
    return {"compression": "snappy", "use_dictionary": strings, "write_statistics": others}


def write_parquet(table: pa.Table, relpath: str) -> str:
    """Write `table` at `relpath` so no reader ever sees a partial file (temporary name, then rename)."""
    fs, root = filesystem()
    final = f"{root}/{relpath.strip('/')}"
    parent = final.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    # On S3 the move is a server-side copy then a delete: readers see the old object or the whole new one,
    # and list_files / dataset reads skip the dot-named temporary key.
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}.parquet"
    try:
        pq.write_table(table, tmp, filesystem=fs, **_write_options(table.schema))
        fs.move(tmp, final)
    finally:
        if fs.get_file_info(tmp).type != pafs.FileType.NotFound:
            fs.delete_file(tmp)
    return uri(relpath)


def replace_partition(table: pa.Table, partition: str, filename: str) -> str:
    """Make `partition` hold exactly `filename` with `table` (rerun-safe: older files there are removed)."""
    path = write_parquet(table, f"{partition.strip('/')}/{filename}")
    for name in list_files(partition):
        if name != filename:
            fs, root = filesystem()
            fs.delete_file(f"{root}/{partition.strip('/')}/{name}")
    return path


def list_files(prefix: str) -> list[str]:
    """Names of the Parquet files directly under `prefix` (none if it does not exist)."""
    fs, root = filesystem()
    base = f"{root}/{prefix.strip('/')}"
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=False))
    return sorted(
        i.base_name for i in infos
        if i.type == pafs.FileType.File and i.base_name.endswith(".parquet") and not i.base_name.startswith(".")
    )


def list_dirs(prefix: str) -> list[str]:
    """Names of the folders directly under `prefix` (e.g. the `as_of=...` snapshots under `features`)."""
    fs, root = filesystem()
    base = f"{root}/{prefix.strip('/')}"
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=False))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def read_table(relpath: str) -> pa.Table:
    """Read a file or a (hive-partitioned) folder of Parquet from the lake."""
    fs, root = filesystem()
    return pq.read_table(f"{root}/{relpath.strip('/')}", filesystem=fs)


def exists(relpath: str) -> bool:
    """True if a file or folder exists at `relpath`."""
    fs, root = filesystem()
    return fs.get_file_info(f"{root}/{relpath.strip('/')}").type != pafs.FileType.NotFound
