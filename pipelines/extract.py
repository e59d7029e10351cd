"""Postgres → Parquet lake, by watermark: the app rows changed in a data interval, one file per table and hour.

For each app table, the rows with low < updated_at <= high are streamed out of Postgres (COPY ... TO STDOUT
as CSV, parsed by Arrow in blocks) and written to `raw/<table>/dt=YYYY-MM-DD/hour=HH/<run_id>.parquet`, the
hour being the one that contains the interval end. high is the interval end; low is the high watermark of
the latest earlier interval (NULL: from the beginning), or, when the interval was extracted before, the low
recorded then, so a rerun selects the same rows and replaces the same file. ops.extract_runs records each
interval per table.

Parquet types (explicit, see SCHEMAS): ids bigint → int64, integer → int32, text → string, boolean → bool,
date → date32, timestamptz → timestamp[us, tz=UTC], jsonb → string holding the JSON text, and every
numeric/double → float64 (numeric(12,2) money round-trips exactly to the cent; pandas and numpy features
work on float64 directly, where decimals would come back as Python objects).

When two intervals end in the same hour (manual runs are not aligned on hours), their partition is shared:
the file then holds the rows of all of them, so the later run never deletes the earlier one's rows.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa

from fincoach import lake

log = logging.getLogger(__name__)

SOURCE_TABLES: tuple[str, ...] = (
    "users", "accounts", "transactions", "goals", "debts", "user_events",
    "financial_decisions", "user_sessions", "coaching_interactions",
)
WATERMARK_COLUMN = "updated_at"

_TS = pa.timestamp("us", tz="UTC")
_JSON = pa.string()  # jsonb, as its JSON text


def _schema(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(name, typ, nullable=nullable) for name, typ, nullable in fields])


# (column, Arrow type, nullable) in DDL order; the first column is the primary key.
SCHEMAS: dict[str, pa.Schema] = {
    "users": _schema(
        ("user_id", pa.int64(), False), ("created_at", _TS, False), ("birth_year", pa.int32(), False),
        ("income_band", pa.string(), False), ("pay_frequency", pa.string(), False),
        ("monthly_income", pa.float64(), False), ("region", pa.string(), False),
        ("device_type", pa.string(), False), ("risk_tolerance", pa.string(), False),
        ("tracking_opt_out", pa.bool_(), False), ("updated_at", _TS, False),
    ),
    "accounts": _schema(
        ("account_id", pa.int64(), False), ("user_id", pa.int64(), False), ("account_type", pa.string(), False),
        ("opened_at", _TS, False), ("current_balance", pa.float64(), False), ("updated_at", _TS, False),
    ),
    "transactions": _schema(
        ("transaction_id", pa.int64(), False), ("user_id", pa.int64(), False), ("account_id", pa.int64(), False),
        ("amount", pa.float64(), False), ("category", pa.string(), False), ("merchant", pa.string(), True),
        ("is_impulse", pa.bool_(), False), ("occurred_at", _TS, False), ("updated_at", _TS, False),
    ),
    "goals": _schema(
        ("goal_id", pa.int64(), False), ("user_id", pa.int64(), False), ("goal_type", pa.string(), False),
        ("target_amount", pa.float64(), False), ("current_amount", pa.float64(), False),
        ("target_date", pa.date32(), False), ("status", pa.string(), False), ("created_at", _TS, False),
        ("updated_at", _TS, False),
    ),
    "debts": _schema(
        ("debt_id", pa.int64(), False), ("user_id", pa.int64(), False), ("debt_type", pa.string(), False),
        ("balance", pa.float64(), False), ("apr", pa.float64(), False), ("min_payment", pa.float64(), False),
        ("created_at", _TS, False), ("updated_at", _TS, False),
    ),
    "user_events": _schema(
        ("id", pa.int64(), False), ("user_id", pa.int64(), False), ("event_type", pa.string(), False),
        ("event_data", _JSON, False), ("timestamp", _TS, False), ("session_id", pa.string(), True),
        ("context", _JSON, False), ("updated_at", _TS, False),
    ),
    "financial_decisions": _schema(
        ("id", pa.int64(), False), ("user_id", pa.int64(), False), ("decision_type", pa.string(), False),
        ("amount", pa.float64(), True), ("category", pa.string(), True), ("context", _JSON, False),
        ("outcome", pa.string(), True), ("timestamp", _TS, False), ("updated_at", _TS, False),
    ),
    "user_sessions": _schema(
        ("id", pa.int64(), False), ("user_id", pa.int64(), False), ("session_id", pa.string(), False),
        ("start_time", _TS, False), ("end_time", _TS, True), ("actions_count", pa.int32(), False),
        ("pages_visited", _JSON, False), ("updated_at", _TS, False),
    ),
    "coaching_interactions": _schema(
        ("id", pa.int64(), False), ("request_id", pa.string(), False), ("user_id", pa.int64(), False),
        ("action_id", pa.int32(), False), ("action_type", pa.string(), False),
        ("propensity", pa.float64(), False), ("model_version", pa.string(), False),
        ("source", pa.string(), False), ("served_at", _TS, False), ("response", pa.string(), True),
        ("responded_at", _TS, True), ("updated_at", _TS, False),
    ),
}

_RUN_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_BLOCK = 1 << 22  # bytes of CSV Arrow parses at a time


class SchemaDriftError(RuntimeError):
    """An app table's columns no longer match the Parquet schema declared here."""


def raw_partition(table: str, interval_end: datetime) -> str:
    """Lake folder of `table` for the interval ending at `interval_end` (the hour that contains its last instant)."""
    last = (interval_end - timedelta(microseconds=1)).astimezone(UTC)
    return f"raw/{table}/dt={last:%Y-%m-%d}/hour={last:%H}"


def _hour_bounds(interval_end: datetime) -> tuple[datetime, datetime]:
    """Interval ends that share the partition of `interval_end`: (start, start + 1h]."""
    last = (interval_end - timedelta(microseconds=1)).astimezone(UTC)
    start = last.replace(minute=0, second=0, microsecond=0)
    return start, start + timedelta(hours=1)


class _CopyStream(io.RawIOBase):
    """A read-only file over the chunks of a COPY ... TO STDOUT, so Arrow can parse while rows arrive."""

    def __init__(self, chunks: Iterator[memoryview]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = bytes(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _check_columns(conn: sa.Connection, table: str) -> None:
    cols = conn.execute(
        sa.text(
            "select column_name from information_schema.columns "
            "where table_schema = 'app' and table_name = :t order by ordinal_position"
        ),
        {"t": table},
    ).scalars().all()
    expected = SCHEMAS[table].names
    if list(cols) != list(expected):
        raise SchemaDriftError(
            f"app.{table} has columns {list(cols)} but pipelines.extract.SCHEMAS declares {list(expected)}: "
            "update SCHEMAS (and the raw expectations) together with the migration"
        )


def _read_rows(conn: sa.Connection, table: str, low: datetime | None, high: datetime) -> pa.Table:
    """Rows of app.<table> with low < updated_at <= high, ordered by primary key, as an Arrow table."""
    schema = SCHEMAS[table]
    conn.execute(sa.text("set local timezone = 'UTC'"))
    conn.execute(sa.text("set local datestyle = 'ISO, YMD'"))
    cols = ", ".join(f'"{c}"' for c in schema.names)
    where = f"{WATERMARK_COLUMN} <= %(high)s" + (f" and {WATERMARK_COLUMN} > %(low)s" if low is not None else "")
    sql = f'copy (select {cols} from app.{table} where {where} order by "{schema.names[0]}") to stdout (format csv)'
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor, cursor.copy(sql, {"low": low, "high": high}) as copy:
        stream = io.BufferedReader(_CopyStream(iter(copy)), buffer_size=_BLOCK)
        if not stream.peek(1):
            return schema.empty_table()
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(column_names=schema.names, block_size=_BLOCK),
            convert_options=pacsv.ConvertOptions(
                column_types={f.name: f.type for f in schema},
                true_values=["t"], false_values=["f"],
                null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False,
            ),
        )
        batches = list(reader)
    return pa.Table.from_batches(batches).cast(schema)


def _previous_runs(conn: sa.Connection, table: str, interval_end: datetime) -> tuple[bool, datetime | None, list]:
    """(already extracted?, low watermark of this interval, other runs whose interval ends in the same hour)."""
    own = conn.execute(
        sa.text("select low_watermark from ops.extract_runs where table_name = :t and interval_end = :e"),
        {"t": table, "e": interval_end},
    ).first()
    if own is not None:
        low = own.low_watermark
    else:
        low = conn.execute(
            sa.text("select max(high_watermark) from ops.extract_runs where table_name = :t and interval_end < :e"),
            {"t": table, "e": interval_end},
        ).scalar()
    start, stop = _hour_bounds(interval_end)
    siblings = conn.execute(
        sa.text(
            "select interval_end, low_watermark, high_watermark from ops.extract_runs "
            "where table_name = :t and interval_end > :a and interval_end <= :b and interval_end <> :e"
        ),
        {"t": table, "a": start, "b": stop, "e": interval_end},
    ).all()
    return own is not None, low, siblings


def _clear_partition(partition: str) -> None:
    fs, root = lake.filesystem()
    for name in lake.list_files(partition):
        fs.delete_file(f"{root}/{partition}/{name}")


def extract_table(engine: sa.Engine, table: str, interval_end: datetime, run_id: str) -> dict:
    """Extract one app table for the interval ending at `interval_end`; see the module docstring."""
    if table not in SCHEMAS:
        raise ValueError(f"unknown source table {table!r}; expected one of {', '.join(SOURCE_TABLES)}")
    high = interval_end.astimezone(UTC)
    partition = raw_partition(table, high)
    with engine.begin() as conn:
        _check_columns(conn, table)
        rerun, low, siblings = _previous_runs(conn, table, high)
        # the file covers every interval of this hour: from the lowest low to the highest high
        lows = [low] + [s.low_watermark for s in siblings]
        file_low = None if any(x is None for x in lows) else min(lows)
        file_high = max([high] + [s.high_watermark for s in siblings])
        rows = _read_rows(conn, table, file_low, file_high)
    updated = rows.column(WATERMARK_COLUMN)
    mine = pc.less_equal(updated, pa.scalar(high, _TS))
    if low is not None:
        mine = pc.and_(mine, pc.greater(updated, pa.scalar(low, _TS)))
    n_rows = int(pc.sum(mine).as_py() or 0)
    if rows.num_rows:
        path: str | None = lake.replace_partition(rows, partition, f"{run_id}.parquet")
    else:
        _clear_partition(partition)  # a previous run of this hour may have left rows that are gone now
        path = None
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into ops.extract_runs "
                "(table_name, interval_end, low_watermark, high_watermark, row_count, path, run_id) "
                "values (:t, :e, :low, :e, :n, :p, :r) "
                "on conflict (table_name, interval_end) do update set low_watermark = excluded.low_watermark, "
                "high_watermark = excluded.high_watermark, row_count = excluded.row_count, path = excluded.path, "
                "run_id = excluded.run_id, extracted_at = now()"
            ),
            {"t": table, "e": high, "low": low, "n": n_rows, "p": path, "r": run_id},
        )
        if siblings:  # they share the file just written
            conn.execute(
                sa.text("update ops.extract_runs set path = :p where table_name = :t and interval_end = any(:ends)"),
                {"p": path, "t": table, "ends": [s.interval_end for s in siblings]},
            )
    log.info(
        "extract app.%s: %d rows (%s, %s]%s -> %s%s", table, n_rows, low.isoformat() if low is not None else "-inf",
        high.isoformat(), " (rerun)" if rerun else "", path or "no file",
        f" (file shared with {len(siblings)} other interval(s) of this hour: {rows.num_rows} rows)" if siblings else "",
    )
    return {
        "rows": n_rows,
        "path": path,
        "low": low.isoformat() if low is not None else None,
        "high": high.isoformat(),
        "partition": partition,
        "file_rows": rows.num_rows,
    }


def extract_all(engine: sa.Engine, interval_end: datetime, run_id: str) -> dict[str, dict]:
    """Extract every app table for the interval ending at `interval_end` (tz-aware) into the lake.

    Returns {table: {"rows", "path", "low", "high", "partition", "file_rows"}}: rows of this interval,
    the file written (None without rows), the watermarks as ISO strings, the lake folder, the rows in
    the file (more than rows only when another interval ended in the same hour).
    """
    if not isinstance(interval_end, datetime) or interval_end.tzinfo is None or interval_end.utcoffset() is None:
        raise ValueError(
            f"interval_end must be a timezone-aware datetime (e.g. datetime.now(UTC)), got {interval_end!r}"
        )
    if not _RUN_ID.match(run_id or ""):
        raise ValueError(f"run_id must be non-empty and use only letters, digits, '_', '.', '-': got {run_id!r}")
    return {table: extract_table(engine, table, interval_end, run_id) for table in SOURCE_TABLES}
