"""Load synthetic users and their history into schema app: COPY to staging, insert new rows, one transaction."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import time

import pandas as pd
import sqlalchemy as sa

from pipelines.market import generate_market
from pipelines.synthetic import TABLES, generate

log = logging.getLogger(__name__)

MAX_USERS = 1_000_000
MAX_DAYS = 3660
_JSON_COLUMNS = {
    "user_events": ("event_data", "context"),
    "financial_decisions": ("context",),
    "user_sessions": ("pages_visited",),
}
_LOCK_KEY = 7_341_002  # advisory lock: two seeds at once take turns instead of racing on the same ids


class SeedError(ValueError):
    """The arguments of a seed cannot produce a usable data set."""


def _check(users: int, days: int, seed: int, end: dt.date) -> None:
    if not isinstance(users, int) or not 1 <= users <= MAX_USERS:
        raise SeedError(f"users must be an integer from 1 to {MAX_USERS:,}, got {users!r}")
    if not isinstance(days, int) or not 7 <= days <= MAX_DAYS:
        raise SeedError(f"days must be an integer from 7 (one week of history) to {MAX_DAYS}, got {days!r}")
    if not isinstance(seed, int) or seed < 0:
        raise SeedError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(end, dt.date) or isinstance(end, dt.datetime):
        raise SeedError(f"end must be a datetime.date (the day after the last simulated day), got {end!r}")


def _csv(frame: pd.DataFrame, table: str) -> bytes:
    """The frame as COPY CSV: jsonb as JSON text, NULL as an unquoted empty field."""
    out = frame.copy()
    for col in _JSON_COLUMNS.get(table, ()):
        out[col] = [json.dumps(v) for v in out[col]]
    buf = io.StringIO()
    out.to_csv(buf, index=False, header=False)  # ISO timestamps with offset: what COPY expects
    return buf.getvalue().encode()


def _load_table(cursor, table: str, frame: pd.DataFrame) -> int:
    """COPY `frame` into a staging table, then insert the rows app.<table> does not have yet; rows inserted."""
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    stage = f"seed_{table}"
    cursor.execute(f"create temp table {stage} (like app.{table} including defaults) on commit drop")
    with cursor.copy(f"copy {stage} ({cols}) from stdin with (format csv)") as copy:
        copy.write(_csv(frame, table))
    cursor.execute(f"insert into app.{table} ({cols}) select {cols} from {stage} on conflict do nothing")
    return cursor.rowcount


def seed(engine: sa.Engine, users: int, days: int, seed: int, end: dt.date | None = None) -> dict:
    """Generate `users` synthetic users over `days` days before `end` (default today, UTC) into schema app.

    Rerun-safe: rows whose id (or unique key) is already there are left alone. Returns
    {"generated": {table: rows}, "inserted": {table: rows}} for the user tables; the market conditions of
    the period (pipelines.market) go to app.market_conditions too, days already there are kept.
    """
    end = end or dt.datetime.now(dt.UTC).date()
    _check(users, days, seed, end)
    started = time.perf_counter()
    frames = generate(users, days, seed, end)
    log.info("generated %s rows for %d users x %d days (seed %d) in %.1fs",
             f"{sum(len(f) for f in frames.values()):,}", users, days, seed, time.perf_counter() - started)
    generated = {t: len(frames[t]) for t in TABLES}
    inserted: dict[str, int] = {}
    with engine.begin() as conn:
        conn.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        raw = conn.connection.driver_connection  # psycopg 3, inside this same transaction
        with raw.cursor() as cursor:
            for table in TABLES:
                t0 = time.perf_counter()
                inserted[table] = _load_table(cursor, table, frames[table])
                log.info("app.%s: %s generated, %s inserted (%.1fs)", table, f"{generated[table]:,}",
                         f"{inserted[table]:,}", time.perf_counter() - t0)
            for table in TABLES:  # later inserts without an id must not collide with the seeded ids
                pk = frames[table].columns[0]
                cursor.execute(
                    f"select setval(pg_get_serial_sequence('app.{table}', '{pk}'), "
                    f"coalesce((select max({pk}) from app.{table}), 0) + 1, false)"
                )
            market = generate_market(days, seed, end)
            market_inserted = _load_table(cursor, "market_conditions", market)
    log.info("seed done: %s rows inserted in %.1fs", f"{sum(inserted.values()):,}", time.perf_counter() - started)
    log.info("app.market_conditions: %d days generated, %d inserted", len(market), market_inserted)
    return {"generated": generated, "inserted": inserted}
