"""Hour partitions of raw/ and quarantine/: rows grouped by the hour of their updated_at, each hour rewritten whole.

Hour key k is the hour (HH:00, HH+1:00] as whole hours since the epoch (an instant exactly on the hour
belongs to the hour before it, like a data interval that ends there). `replace_hours` makes every
partition of a key range hold exactly the given rows of its hour: partitions with rows get one new file
(`lake.replace_partition`), partitions of the range left without rows lose their files.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from fincoach import lake
from fincoach.settings import get_settings

HOUR_US = 3_600_000_000
WATERMARK_COLUMN = "updated_at"
_LAKE_LOCK = 7_341_005  # advisory lock: extracts share it, an erasure holds it alone


@contextmanager
def lake_lock(engine: sa.Engine, exclusive: bool = False) -> Iterator[None]:
    """Hold the lake lock: shared by extracts, exclusive for an erasure, so no extract that read a user's
    rows before their deletion writes them after the erasure scanned the lake."""
    with engine.connect() as conn:
        fn = "pg_advisory_lock" if exclusive else "pg_advisory_lock_shared"
        conn.execute(sa.text(f"select {fn}(:k)"), {"k": _LAKE_LOCK})
        conn.commit()
        try:
            yield
        finally:
            unlock = "pg_advisory_unlock" if exclusive else "pg_advisory_unlock_shared"
            conn.execute(sa.text(f"select {unlock}(:k)"), {"k": _LAKE_LOCK})
            conn.commit()


def hour_key(t: datetime) -> int:
    """Key of the hour that contains the last instant before `t`."""
    us = int(t.astimezone(UTC).timestamp() * 1_000_000)  # exact for microsecond datetimes
    return (us - 1) // HOUR_US


def _hour_of(key: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(hours=key)



def partition(layer: str, table: str, key: int) -> str:
    """Lake folder `<layer>/<table>/dt=YYYY-MM-DD/hour=HH` of hour key `key`."""
    h = _hour_of(key)
    return f"{layer}/{table}/dt={h:%Y-%m-%d}/hour={h:%H}"


def existing_keys(layer: str, table: str, first: int | None, last: int) -> list[int]:
    """Hour keys in [first, last] (first None: unbounded) with a partition folder in the lake."""
    lo = None if first is None else _hour_of(first).date()
    hi = _hour_of(last).date()
    keys = []
    for day_dir in lake.list_dirs(f"{layer}/{table}"):
        if not day_dir.startswith("dt="):
            continue
        day = datetime.fromisoformat(day_dir.removeprefix("dt=")).date()
        if (lo is not None and day < lo) or day > hi:
            continue
        for hour_dir in lake.list_dirs(f"{layer}/{table}/{day_dir}"):
            if hour_dir.startswith("hour="):
                when = datetime(day.year, day.month, day.day, int(hour_dir.removeprefix("hour=")), tzinfo=UTC)
                key = int(when.timestamp()) // 3600
                if (first is None or key >= first) and key <= last:
                    keys.append(key)
    return sorted(keys)


def row_keys(rows: pa.Table) -> pa.Array:
    """Hour key of every row (by its updated_at)."""
    us = pc.cast(rows[WATERMARK_COLUMN], pa.int64()).combine_chunks()
    return pc.divide(pc.subtract(us, 1), HOUR_US)  # integer division: updated_at is after the epoch


def hour_start(key: int) -> datetime:
    """Start of hour key `key` (the hour is (start, start + 1h])."""
    return _hour_of(key)


def replace_hours(
    layer: str, table: str, rows: pa.Table, first: int | None, last: int, run_id: str
) -> tuple[dict[int, tuple[str, int]], list[int]]:
    """Rewrite every hour partition of keys [first, last] from `rows`.

    Returns ({key: (file uri, rows)} of the files written, [keys whose partition was emptied]).
    """
    keys = row_keys(rows)
    if len(keys) > 1 and not pc.all(pc.greater_equal(keys[1:], keys[:-1])).as_py():
        order = pc.sort_indices(keys)  # stable: rows keep their primary-key order inside an hour
        rows, keys = rows.take(order), keys.take(order)
    hours = []  # (key, first row, rows): keys are sorted, so value_counts come in key order
    offset = 0
    for run in pc.value_counts(keys).to_pylist():
        hours.append((run["values"], offset, run["counts"]))
        offset += run["counts"]

    def write(hour: tuple[int, int, int]) -> str:
        key, offset, length = hour
        part = rows.slice(offset, length).combine_chunks()  # one layout, however the rows were read
        return lake.replace_partition(part, partition(layer, table, key), f"{run_id}.parquet")

    with ThreadPoolExecutor(max(1, get_settings().extract_workers)) as pool:  # Parquet encoding runs without the GIL
        paths = list(pool.map(write, hours))
    written = {key: (path, length) for (key, _, length), path in zip(hours, paths, strict=True)}
    with_rows = list(written)
    fs, root = lake.filesystem()
    cleared = sorted(set(existing_keys(layer, table, first, last)) - set(with_rows))
    for key in cleared:
        folder = partition(layer, table, key)
        for name in lake.list_files(folder):
            fs.delete_file(f"{root}/{folder}/{name}")
    return written, cleared
