"""The hourly feature refresh: recompute only the users whose features can have changed since the last one.

Within one UTC day the `dbt:` windows (complete days) do not move, so a user's features change only if
(a) one of their rows changed (updated_at after the previous snapshot, with an overlap), (b) one of their
rows crossed a window boundary between the two as_ofs (a session leaving the 30-day window, income
leaving the payday lookback, ...), or (c) a session of theirs was still running. Those users are
recomputed by `compute_features`; every other user keeps the previous online row, with the features that
depend on time alone moved on exactly: days since the last session and nudge grow, days to payday
shrink, and the goal and market features (small tables) are recomputed for all. A new UTC day, a new
spec, or no previous online snapshot gives a full build. The result equals a full build of the same as_of
(tests/integration/test_feature_refresh.py).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION
from pipelines import feature_math as fm
from pipelines.feature_python import Reader, goal_features, market_features, read
from pipelines.features import build_features, compute_features, snapshot_table, stage

log = logging.getLogger(__name__)

# Rows committed late by a long transaction carry an updated_at before they became visible.
UPDATE_OVERLAP = timedelta(hours=1)
# Above this share of changed users, computing everyone in one pass is cheaper than filtering by id.
FILTER_MAX_SHARE = 0.5
_CHANGED_TABLES = ("users", "accounts", "transactions", "goals", "debts", "user_events", "user_sessions",
                   "coaching_interactions")
# (table, event-time column, window lengths whose lower boundary matters, extra filter)
_BOUNDARIES = (
    ("transactions", "occurred_at", (fm.WINDOW_DAYS,), ""),
    ("transactions", "occurred_at", (fm.PAYDAY_LOOKBACK_DAYS,), "and category = 'income'"),
    ("user_sessions", "start_time", (fm.WINDOW_DAYS, int(fm.SESSION_CAP_DAYS)), ""),
    ("user_events", '"timestamp"', (fm.WINDOW_DAYS,), ""),
    ("coaching_interactions", "served_at", (fm.RECENT_NUDGE_DAYS, fm.NUDGE_WINDOW_DAYS), "and action_id <> 0"),
)


def _previous(conn: sa.Connection) -> tuple[datetime, str, pd.DataFrame] | None:
    """(as_of, spec version, features by user_id) of the online store, if it holds one snapshot."""
    head = conn.execute(sa.text(
        "select min(as_of) as as_of, max(as_of) as last, min(feature_spec_version) as version, "
        "max(feature_spec_version) as last_version from features.user_features_latest"
    )).one()
    if head.as_of is None or head.as_of != head.last or head.version != head.last_version:
        return None
    frame = read(conn, f"select user_id, {', '.join(FEATURE_NAMES)} from features.user_features_latest")
    return head.as_of, head.version, frame.set_index("user_id").astype("float64")


def _full_reason(previous: tuple[datetime, str, pd.DataFrame] | None, as_of: datetime) -> str | None:
    if previous is None:
        return "the online store holds no single previous snapshot"
    prev_as_of, version, _ = previous
    if version != FEATURE_SPEC_VERSION:
        return f"the online store was built with spec {version}, this code has {FEATURE_SPEC_VERSION}"
    if prev_as_of >= as_of:
        return f"as_of {as_of.isoformat()} is not after the online snapshot ({prev_as_of.isoformat()})"
    if fm.window_bounds(prev_as_of)[1] != fm.window_bounds(as_of)[1]:
        return "a new UTC day: the daily windows moved"
    return None


def dirty_users(
    conn: sa.Connection, prev_as_of: datetime, as_of: datetime, overlap: timedelta = UPDATE_OVERLAP
) -> set[int]:
    """Users whose features can differ between the two as_ofs (see the module docstring)."""
    parts = [f"select user_id from app.{t} where updated_at > :since" for t in _CHANGED_TABLES]
    params: dict[str, object] = {"since": prev_as_of - overlap, "prev": prev_as_of, "as_of": as_of}
    for i, (table, column, windows, extra) in enumerate(_BOUNDARIES):
        for days in windows:
            params[f"lo{i}_{days}"], params[f"hi{i}_{days}"] = prev_as_of - timedelta(days=days), as_of - timedelta(days=days)
            parts.append(f"select user_id from app.{table} where {column} > :lo{i}_{days} "
                         f"and {column} <= :hi{i}_{days} {extra}")
        # rows whose event time falls between the two as_ofs enter the windows
        parts.append(f"select user_id from app.{table} where {column} > :prev and {column} <= :as_of {extra}")
    # sessions still running at the previous as_of: their duration grew
    parts.append("select user_id from app.user_sessions where start_time <= :prev and start_time > :month_ago "
                 "and (end_time is null or end_time > :prev)")
    params["month_ago"] = as_of - timedelta(days=fm.WINDOW_DAYS)
    sql = " union ".join(parts)
    return set(conn.execute(sa.text(sql), params).scalars())


def _moved_on(carried: pd.DataFrame, hours: float, recent_income: pd.Index) -> pd.DataFrame:
    """The time-only features of users without new rows, `hours` later."""
    out = carried.copy()
    days = hours / 24.0
    for name, cap in (("days_since_last_session", fm.SESSION_CAP_DAYS), ("days_since_last_nudge", fm.NUDGE_CAP_DAYS)):
        seen = out[name] < cap
        out.loc[seen, name] = (out.loc[seen, name] + days).clip(upper=cap)
    paid = out.index.isin(recent_income)
    out.loc[paid, "days_to_payday"] = (out.loc[paid, "days_to_payday"] - days).clip(lower=0)
    out.loc[~paid, "days_to_payday"] = fm.PAYDAY_DEFAULT_DAYS
    return out


def refresh_features(engine: Engine, as_of: datetime, run_id: str, overlap: timedelta = UPDATE_OVERLAP) -> dict:
    """Stage the snapshot as of `as_of`, recomputing only the users whose features can have changed.

    `overlap`: how far before the previous as_of a row's updated_at still marks its user as changed.
    """
    as_of = fm.as_utc(as_of)
    started = time.perf_counter()
    with engine.connect() as conn:
        previous = _previous(conn)
        reason = _full_reason(previous, as_of)
        if reason is None:
            prev_as_of, _, prev = previous
            users = pd.Index(read(conn, "select user_id from analytics.stg_app__users where created_at <= :as_of "
                                        "order by user_id", as_of=as_of).user_id, dtype="int64")
            dirty = (dirty_users(conn, prev_as_of, as_of, overlap) | set(users.difference(prev.index))) & set(users)
            recent_income = pd.Index(read(
                conn, "select distinct user_id from app.transactions where category = 'income' and amount > 0 "
                      "and occurred_at > :since and occurred_at <= :as_of",
                since=as_of - timedelta(days=fm.PAYDAY_LOOKBACK_DAYS), as_of=as_of,
            ).user_id)
            hours = (as_of - prev_as_of).total_seconds() / 3600.0
            carried = _moved_on(prev.reindex(users.difference(pd.Index(sorted(dirty)))), hours, recent_income)
            goal_features(carried, Reader(conn, None), as_of)
            for name, value in market_features(conn, as_of).items():
                carried[name] = value
    if reason is not None:
        result = build_features(engine, as_of, run_id)
        log.info("feature refresh as of %s: full build (%s)", as_of.isoformat(), reason)
        return {**result, "full_reason": reason}
    dirty_seconds = round(time.perf_counter() - started, 2)
    if not dirty:
        fresh = carried.iloc[:0]
    elif len(dirty) > FILTER_MAX_SHARE * len(users):
        fresh = compute_features(engine, as_of).reindex(pd.Index(sorted(dirty), dtype="int64"))
    else:
        fresh = compute_features(engine, as_of, sorted(dirty))
    features = pd.concat([fresh, carried[list(FEATURE_NAMES)]]).sort_index().astype("float64")
    relpath = stage(snapshot_table(features, as_of), run_id)
    seconds = round(time.perf_counter() - started, 2)
    log.info("feature refresh as of %s: %d of %d users recomputed in %.1fs", as_of.isoformat(), len(fresh),
             len(features), seconds)
    return {
        "rows": len(features),
        "staging_path": relpath,
        "as_of": as_of.isoformat(),
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "mode": "incremental",
        "users_recomputed": len(fresh),
        "previous_as_of": prev_as_of.isoformat(),
        "find_changed_seconds": dirty_seconds,
        "seconds": seconds,
    }
