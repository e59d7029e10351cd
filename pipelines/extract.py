"""Postgres → Parquet lake, by watermark with an overlap for late rows: one file per table and hour of change.

For each app table, an extract for the interval ending at `high` reads the rows with
window_start < updated_at <= high, where window_start is the low watermark (the high watermark of the
latest earlier interval; when the interval was extracted before, the low recorded then) minus
`settings.extract_overlap_hours` (default 2), floored to the hour; without an earlier interval, every row.
Rows are read straight into Arrow (ADBC: a binary COPY, no Python per row), checked
(`pipelines.quarantine`), scrubbed of PII and pseudonymised (`pipelines.privacy`), then written by the
hour of their own updated_at: `raw/<table>/dt=YYYY-MM-DD/hour=HH/<run_id>.parquet` holds every accepted
row with updated_at in (HH:00, HH+1:00], in primary-key order (each key once: the table has one row per
key), and `quarantine/<table>/...` the rejected ones with a `reason`. Every hour partition of the window is
rewritten whole (`pipelines.raw_lake`), so a row that committed late but within the overlap lands in its
own hour, and a partition's content depends only on the database rows of that hour: rerunning an hour or
backfilling a range rewrites the same bytes as the hourly runs did (file names carry the run id). Only a
row changed again after its hour left the overlap differs: the hourly runs kept its older version in the
older hour, which a backfill can no longer see (raw/ is a log of versions; readers take the latest
updated_at per key).

The partition holding `high` is read up to the latest interval end already recorded in that hour, so a
rerun of an earlier, unaligned interval never drops rows a later run of the same hour wrote.
ops.extract_runs records each interval per table (row_count: accepted rows with low < updated_at <= high);
ops.quarantine_counts records extracted = accepted + quarantined for the whole window.

Speed (one day of 1.37M rows in a few seconds on 2 cores): a run extracts `settings.extract_workers` tables
at once, the largest first, under one lake lock (an erasure waits for the whole run). A large table is read
in primary-key slices on parallel connections, and each slice is checked and made lake-ready in its own
thread as soon as it arrives; the hour files are written in parallel. The tables of a run share their ADBC
connections and their pseudonyms (`privacy.Pseudonyms`: every app user's mapping recorded once, while the
first tables are read).

Parquet types (explicit, see SCHEMAS): ids bigint → int64, integer → int32, text → string, boolean → bool,
date → date32, timestamptz → timestamp[us, tz=UTC], jsonb → string holding the JSON text, and every
numeric/double → float64 (numeric(12,2) money round-trips exactly to the cent). In the lake, `user_id` is
the user's pseudonym (string; `lake_schema`), never the app id.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import adbc_driver_postgresql.dbapi as adbc
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from fincoach.db import libpq_url
from fincoach.settings import get_settings
from pipelines import privacy, raw_lake
from pipelines.quarantine import (
    JSON_ARRAY_COLUMNS,
    JSON_ARRAY_KEYS,
    JSON_OBJECT_COLUMNS,
    Split,
    concat_splits,
    split_rows,
)

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
        ("context", _JSON, False), ("updated_at", _TS, False), ("client_event_id", pa.string(), True),
    ),
    "financial_decisions": _schema(
        ("id", pa.int64(), False), ("user_id", pa.int64(), False), ("decision_type", pa.string(), False),
        ("amount", pa.float64(), True), ("category", pa.string(), True), ("context", _JSON, False),
        ("outcome", pa.string(), True), ("timestamp", _TS, False), ("updated_at", _TS, False),
        ("client_event_id", pa.string(), True),
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
# timed steps of an extract (result "seconds"); slices run at once, so read/check/privacy are the longest slice's
_STEPS = ("read", "check", "privacy", "write")


class SchemaDriftError(RuntimeError):
    """An app table's columns no longer match the Parquet schema declared here."""


def lake_schema(table: str) -> pa.Schema:
    """Schema of `table`'s files in raw/: SCHEMAS with user_id as the pseudonym string."""
    schema = SCHEMAS[table]
    if "user_id" not in schema.names:
        return schema
    i = schema.get_field_index("user_id")
    return schema.set(i, pa.field("user_id", pa.string(), nullable=schema.field(i).nullable))


def raw_partition(table: str, interval_end: datetime) -> str:
    """Lake folder of `table` for the hour that contains the last instant before `interval_end`."""
    return raw_lake.partition("raw", table, raw_lake.hour_key(interval_end))


def _floor_hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _check_columns(conn: sa.Connection, table: str) -> None:
    cols = conn.execute(  # pg_attribute: information_schema.columns costs ~10x as much
        sa.text(
            "select attname from pg_attribute "
            "where attrelid = to_regclass(:t) and attnum > 0 and not attisdropped order by attnum"
        ),
        {"t": f"app.{table}"},
    ).scalars().all()
    expected = SCHEMAS[table].names
    if list(cols) != list(expected):
        raise SchemaDriftError(
            f"app.{table} has columns {list(cols)} but pipelines.extract.SCHEMAS declares {list(expected)}: "
            "update SCHEMAS (and the raw expectations) together with the migration"
        )


_SQL_TYPES = {pa.int64(): "int8", pa.int32(): "int4", pa.float64(): "float8", pa.bool_(): "bool",
              pa.date32(): "date", _TS: "timestamptz"}


_MIN_SLICE = 200_000  # primary keys per parallel read slice, at least


class _Readers:
    """The ADBC connections of one run, reused by its reads (thread-safe): connecting costs ~35 ms of CPU,
    as ADBC loads the server's type catalog on every new connection."""

    def __init__(self) -> None:
        self._idle: list[adbc.Connection] = []
        self._lock = threading.Lock()

    def fetch(self, sql: str) -> pa.Table:
        """The result of `sql` as Arrow, in a transaction of its own."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        conn = conn or adbc.connect(libpq_url())
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                rows = cursor.fetch_arrow_table()
            conn.commit()
        except BaseException:
            conn.close()  # in an unknown state: never reused
            raise
        with self._lock:
            self._idle.append(conn)
        return rows

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


@dataclass
class _Run:
    """What the tables of one run share: their read connections and their pseudonyms."""

    readers: _Readers
    pseudonyms: privacy.Pseudonyms


@contextmanager
def _run(engine: sa.Engine) -> Iterator[_Run]:
    run = _Run(_Readers(), privacy.Pseudonyms(engine))
    try:
        yield run
    finally:
        run.readers.close()


def _read_split(
    conn: sa.Connection, table: str, low: datetime | None, high: datetime, interval_end: datetime, run: _Run
) -> tuple[Split, dict[str, float]]:
    """The rows of app.<table> with low < updated_at <= high in primary-key order, checked against
    `interval_end` and made lake-ready (`_to_lake`); with the seconds of each step (the longest slice).

    Read with ADBC (binary COPY straight into Arrow, no Python per row); a large table is read in
    `settings.extract_workers` primary-key ranges at once, on as many connections, and each range is checked
    and made lake-ready in its own thread as soon as it is read (Arrow's kernels run without the GIL).
    numeric and jsonb are cast in SQL to float8 and text so the declared Arrow types come out.
    """
    schema = SCHEMAS[table]
    pk = schema.names[0]
    cols = ", ".join(f'"{f.name}"::{_SQL_TYPES.get(f.type, "text")}' for f in schema)
    lo_id, hi_id = conn.execute(sa.text(f'select min("{pk}"), max("{pk}") from app.{table}')).one()
    workers = max(1, min(get_settings().extract_workers, ((hi_id or 0) - (lo_id or 0)) // _MIN_SLICE))
    bounds = [] if lo_id is None else [lo_id - 1 + (hi_id - lo_id + 1) * i // workers for i in range(workers + 1)]
    where = f"{WATERMARK_COLUMN} <= %s" + (f" and {WATERMARK_COLUMN} > %s" if low is not None else "")
    params: tuple = (high,) if low is None else (high, low)
    # ADBC reads by COPY only a query without bind parameters (with them it reads row sets, ~30% more CPU):
    # psycopg binds the parameters client-side (its own quoting and typed literals), never string formatting.
    binder = psycopg.ClientCursor(conn.connection.driver_connection)
    queries = [
        binder.mogrify(f'select {cols} from app.{table} where {where} and "{pk}" > %s and "{pk}" <= %s order by "{pk}"',
                       (*params, a, b))
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]

    def known_users() -> pa.Array:
        return run.readers.fetch("select user_id from app.users").column(0).combine_chunks()

    def read_slice(query: str) -> tuple[Split | None, tuple[float, ...]]:
        clock = [time.perf_counter()]
        rows = run.readers.fetch(query)
        clock.append(time.perf_counter())
        if not rows.num_rows:
            return None, (clock[1] - clock[0], 0.0, 0.0)
        rows = pa.Table.from_arrays(rows.columns, schema=schema)
        split = split_rows(table, rows, users.result() if users else None, interval_end)
        clock.append(time.perf_counter())
        split = Split(_to_lake(table, split.accepted, run.pseudonyms),
                      _to_lake(table, split.quarantined, run.pseudonyms), split.reasons)
        clock.append(time.perf_counter())
        return split, tuple(b - a for a, b in itertools.pairwise(clock))

    with ThreadPoolExecutor(len(queries) + 1) as pool:
        users = pool.submit(known_users) if queries and table != "users" and "user_id" in schema.names else None
        done = list(pool.map(read_slice, queries))
    seconds = {step: max((d[i] for _, d in done), default=0.0) for i, step in enumerate(_STEPS[:-1])}
    return concat_splits([p for p, _ in done if p is not None], lake_schema(table)), seconds


def _window(conn: sa.Connection, table: str, high: datetime) -> tuple[bool, datetime | None, datetime | None, datetime]:
    """(already extracted?, low watermark, window start, window end) of the interval ending at `high`."""
    own = conn.execute(
        sa.text("select low_watermark from ops.extract_runs where table_name = :t and interval_end = :e"),
        {"t": table, "e": high},
    ).first()
    if own is not None:
        low = own.low_watermark
    else:
        low = conn.execute(
            sa.text("select max(high_watermark) from ops.extract_runs where table_name = :t and interval_end < :e"),
            {"t": table, "e": high},
        ).scalar()
    start = None if low is None else _floor_hour(low - timedelta(hours=get_settings().extract_overlap_hours))
    hour_start = _floor_hour(high - timedelta(microseconds=1))
    later = conn.execute(
        sa.text(
            "select max(interval_end) from ops.extract_runs "
            "where table_name = :t and interval_end > :e and interval_end <= :b"
        ),
        {"t": table, "e": high, "b": hour_start + timedelta(hours=1)},
    ).scalar()
    return own is not None, low, start, max(high, later or high)


def _to_lake(table: str, rows: pa.Table, pseudonyms: privacy.Pseudonyms) -> pa.Table:
    """Rows as they may enter the lake: JSON scrubbed of PII, user_id replaced by its pseudonym."""
    for col in (*JSON_OBJECT_COLUMNS.get(table, ()), *JSON_ARRAY_COLUMNS.get(table, ())):
        i = rows.schema.get_field_index(col)
        rows = rows.set_column(i, rows.schema.field(i), privacy.scrub_json_column(rows[col], JSON_ARRAY_KEYS.get(col)))
    if "user_id" in rows.column_names:
        i = rows.schema.get_field_index("user_id")
        rows = rows.set_column(i, pa.field("user_id", pa.string(), nullable=False), pseudonyms.column(rows["user_id"]))
    return rows


def extract_table(engine: sa.Engine, table: str, interval_end: datetime, run_id: str) -> dict:
    """Extract one app table for the interval ending at `interval_end`; see the module docstring."""
    _check_table(table)
    with raw_lake.lake_lock(engine), _run(engine) as run:
        return _extract_locked(engine, table, interval_end, run_id, run)


def _check_table(table: str) -> None:
    if table not in SCHEMAS:
        raise ValueError(f"unknown source table {table!r}; expected one of {', '.join(SOURCE_TABLES)}")


def _extract_locked(engine: sa.Engine, table: str, interval_end: datetime, run_id: str, run: _Run) -> dict:
    high = interval_end.astimezone(UTC)
    clock = [time.perf_counter()]
    with engine.begin() as conn:
        _check_columns(conn, table)
        rerun, low, start, read_high = _window(conn, table, high)
        split, seconds = _read_split(conn, table, start, read_high, high, run)
    accepted, quarantined = split.accepted, split.quarantined
    clock.append(time.perf_counter())
    first_key, last_key = None if start is None else raw_lake.hour_key(start) + 1, raw_lake.hour_key(high)
    written, cleared = raw_lake.replace_hours("raw", table, accepted, first_key, last_key, run_id)
    held, _ = raw_lake.replace_hours("quarantine", table, quarantined, first_key, last_key, run_id)
    updated = accepted.column(WATERMARK_COLUMN)
    mine = pc.less_equal(updated, pa.scalar(high, _TS))
    if low is not None:
        mine = pc.and_(mine, pc.greater(updated, pa.scalar(low, _TS)))
    n_rows = int(pc.sum(mine).as_py() or 0)
    clock.append(time.perf_counter())
    path, file_rows = written.get(last_key, (None, 0))
    counts = split.counts
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
        # every interval ending in a rewritten hour now points at that hour's new file (or at none)
        hours = [*((k, f) for k, (f, _) in written.items()), *((k, None) for k in cleared)]
        conn.execute(
            sa.text(
                "update ops.extract_runs r set path = h.path "
                "from unnest(cast(:a as timestamptz[]), cast(:p as text[])) h(hour_start, path) "
                "where r.table_name = :t and r.interval_end > h.hour_start "
                "and r.interval_end <= h.hour_start + interval '1 hour'"
            ),
            {"t": table, "a": [raw_lake.hour_start(k) for k, _ in hours], "p": [p for _, p in hours]},
        )
        conn.execute(
            sa.text(
                "insert into ops.quarantine_counts "
                "(table_name, interval_end, run_id, extracted, accepted, quarantined, reasons) "
                "values (:t, :e, :r, :x, :a, :q, cast(:reasons as jsonb)) "
                "on conflict (table_name, interval_end) do update set run_id = excluded.run_id, "
                "extracted = excluded.extracted, accepted = excluded.accepted, quarantined = excluded.quarantined, "
                "reasons = excluded.reasons, recorded_at = now()"
            ),
            {"t": table, "e": high, "r": run_id, "x": counts["extracted"], "a": counts["accepted"],
             "q": counts["quarantined"], "reasons": json.dumps(split.reasons)},
        )
    log.info(
        "extract app.%s: %d new rows (%s, %s]%s; window %s: %d read, %d accepted into %d file(s), %d quarantined %s",
        table, n_rows, low.isoformat() if low is not None else "-inf", high.isoformat(), " (rerun)" if rerun else "",
        start.isoformat() if start is not None else "-inf", counts["extracted"], counts["accepted"], len(written),
        counts["quarantined"], split.reasons or "",
    )
    return {
        "rows": n_rows,
        "path": path,
        "paths": sorted(f for f, _ in written.values()),
        "low": low.isoformat() if low is not None else None,
        "high": high.isoformat(),
        "window_start": start.isoformat() if start is not None else None,
        "partition": raw_partition(table, high),
        "file_rows": file_rows,
        **counts,
        "reasons": split.reasons,
        "quarantine_paths": sorted(f for f, _ in held.values()),
        "seconds": {step: round(t, 3) for step, t in {**seconds, "write": clock[2] - clock[1]}.items()},
    }


def _check_interval_end(interval_end: object) -> None:
    if not isinstance(interval_end, datetime) or interval_end.tzinfo is None or interval_end.utcoffset() is None:
        raise ValueError(
            f"interval_end must be a timezone-aware datetime (e.g. datetime.now(UTC)), got {interval_end!r}"
        )


def _check_run_id(run_id: str) -> None:
    if not _RUN_ID.match(run_id or ""):
        raise ValueError(f"run_id must be non-empty and use only letters, digits, '_', '.', '-': got {run_id!r}")


def extract_all(engine: sa.Engine, interval_end: datetime, run_id: str) -> dict[str, dict]:
    """Extract every app table for the interval ending at `interval_end` (tz-aware) into the lake.

    Returns {table: {...}}: "rows" (accepted rows of this interval), "path" (the file of the hour holding the
    interval end, None without rows), "paths" (every raw file written), "low"/"high"/"window_start" (ISO),
    "partition", "file_rows", "extracted"/"accepted"/"quarantined" (window counts), "reasons",
    "quarantine_paths".
    """
    _check_interval_end(interval_end)
    _check_run_id(run_id)
    # One lake lock for the whole run (an erasure waits for it): a lock taken per table could queue behind a
    # waiting erasure while another table of the run, holding its own, waits for the run's pseudonyms.
    # Tables are independent; the app users' pseudonyms are recorded while the first tables are read.
    with raw_lake.lake_lock(engine), _run(engine) as run, ThreadPoolExecutor(1) as side, \
            ThreadPoolExecutor(max(1, get_settings().extract_workers)) as pool:
        run.pseudonyms.first(side.submit(run.pseudonyms.record_app_users))
        futures = {table: pool.submit(_extract_locked, engine, table, interval_end, run_id, run)
                   for table in _largest_first(engine)}
        return {table: futures[table].result() for table in SOURCE_TABLES}


def _largest_first(engine: sa.Engine) -> list[str]:
    """SOURCE_TABLES, the largest (by the planner's row estimate) first: the longest extract starts at once."""
    with engine.connect() as conn:
        sizes = dict(conn.execute(sa.text(
            "select relname, reltuples from pg_class "
            "where relnamespace = 'app'::regnamespace and relkind in ('r', 'p') and relname = any(:t)"
        ), {"t": list(SOURCE_TABLES)}).all())
    return sorted(SOURCE_TABLES, key=lambda t: -sizes.get(t, 0))


def backfill(engine: sa.Engine, start: datetime, end: datetime, run_id: str) -> dict[str, dict]:
    """Re-extract every hour of (start, end] in order (hour-aligned interval ends); totals per table."""
    _check_interval_end(start)
    _check_interval_end(end)
    _check_run_id(run_id)
    at = _floor_hour(start) + timedelta(hours=1)
    if at > end:
        raise ValueError(f"backfill range ({start.isoformat()}, {end.isoformat()}] holds no whole hour end")
    totals = {t: {"intervals": 0, "rows": 0, "extracted": 0, "accepted": 0, "quarantined": 0} for t in SOURCE_TABLES}
    while at <= end:
        for table, info in extract_all(engine, at, run_id).items():
            totals[table]["intervals"] += 1
            for k in ("rows", "extracted", "accepted", "quarantined"):
                totals[table][k] += info[k]
        at += timedelta(hours=1)
    return totals
