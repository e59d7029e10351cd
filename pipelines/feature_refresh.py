"""The hourly feature refresh: recompute only the feature groups whose inputs can have changed since the last one.

Within one UTC day the `dbt:` windows (complete days) do not move, so a feature group of a user changes
only if (a) one of the user's rows of the tables the group reads changed (updated_at after the previous
snapshot, with an overlap), (b) one of those rows crossed a window boundary between the two as_ofs (a
session leaving the 30-day window, income leaving the payday lookback, ...), or (c) a session of theirs
was still running. Each group is recomputed for its own changed users only (reading their rows through the
user_id indexes, pipelines.feature_python.Reader), so the cost follows the new rows: an hour of purchases
recomputes the money features of the buyers, not their sessions. Every other value is the previous online
row, with the features that depend on time alone moved on exactly: days since the last session and nudge
grow, days to payday shrink; the goal, profile and market features (small tables) are recomputed for all.
A new UTC day, a new spec, or no previous online snapshot gives a full build. The result equals a full
build of the same as_of (tests/integration/test_feature_refresh.py).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION
from pipelines import feature_math as fm
from pipelines.feature_python import (
    Reader,
    engagement_features,
    goal_features,
    market_features,
    money_features,
    nudge_features,
    profile_features,
    read,
)
from pipelines.feature_sql import DBT_FEATURES
from pipelines.features import DEFAULTS, build_features, monthly_features, read_users, snapshot_table, stage

log = logging.getLogger(__name__)

# Rows committed late by a long transaction carry an updated_at before they became visible.
UPDATE_OVERLAP = timedelta(hours=1)
# The app tables each recomputed group reads (goals, profile and market are recomputed for every user).
# The dbt: features ("monthly") read complete UTC days only: within a day just a late transaction, one
# that happened on an earlier day, changes them (_LATE_TRANSACTIONS), so an hour of purchases recomputes
# the buyers' money_features, not their 90 days of daily rows.
GROUP_TABLES = {
    "monthly": (),
    "money": ("users", "accounts", "transactions", "debts"),  # money_features
    "engagement": ("user_sessions", "user_events"),
    "nudges": ("coaching_interactions",),
}
# (group, table, event-time column, window lengths whose lower boundary matters, extra filter)
_BOUNDARIES = (
    ("money", "transactions", "occurred_at", (fm.WINDOW_DAYS,), ""),
    ("money", "transactions", "occurred_at", (fm.PAYDAY_LOOKBACK_DAYS,), "and category = 'income'"),
    ("engagement", "user_sessions", "start_time", (fm.WINDOW_DAYS, int(fm.SESSION_CAP_DAYS)), ""),
    ("engagement", "user_events", '"timestamp"', (fm.WINDOW_DAYS,), ""),
    ("nudges", "coaching_interactions", "served_at", (fm.RECENT_NUDGE_DAYS, fm.NUDGE_WINDOW_DAYS), "and action_id <> 0"),
)


_LATE_TRANSACTIONS = "select user_id from app.transactions where updated_at > :since and occurred_at < :day_start"


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
) -> dict[str, set[int]]:
    """Per group of GROUP_TABLES, the users whose features of that group can differ between the two as_ofs."""
    params: dict[str, object] = {"since": prev_as_of - overlap, "prev": prev_as_of, "as_of": as_of,
                                 "month_ago": as_of - timedelta(days=fm.WINDOW_DAYS)}
    parts: dict[str, list[str]] = {
        group: [f"select user_id from app.{t} where updated_at > :since" for t in tables]
        for group, tables in GROUP_TABLES.items()
    }
    for i, (group, table, column, windows, extra) in enumerate(_BOUNDARIES):
        for days in windows:
            params[f"lo{i}_{days}"], params[f"hi{i}_{days}"] = prev_as_of - timedelta(days=days), as_of - timedelta(days=days)
            parts[group].append(f"select user_id from app.{table} where {column} > :lo{i}_{days} "
                                f"and {column} <= :hi{i}_{days} {extra}")
        # rows whose event time falls between the two as_ofs enter the windows
        parts[group].append(f"select user_id from app.{table} where {column} > :prev and {column} <= :as_of {extra}")
    parts["monthly"].append(_LATE_TRANSACTIONS)
    params["day_start"] = fm.window_bounds(as_of)[1]
    # sessions still running at the previous as_of: their duration grew
    parts["engagement"].append("select user_id from app.user_sessions where start_time <= :prev "
                               "and start_time > :month_ago and (end_time is null or end_time > :prev)")
    sql = " union all ".join(
        f"select '{group}' as feature_group, user_id from ({' union '.join(selects)}) as {group}"
        for group, selects in parts.items()
    )
    found: dict[str, set[int]] = {group: set() for group in GROUP_TABLES}
    for group, user_id in conn.execute(sa.text(sql), params):
        found[group].add(int(user_id))
    return found


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


def _recompute(conn: sa.Connection, features: pd.DataFrame, users: pd.DataFrame, group: str, ids: set[int],
               as_of: datetime) -> None:
    """Overwrite the features of `group` of the users `ids` in `features` with values computed as of `as_of`."""
    if not ids:
        return
    q = Reader(conn, ids)
    index = pd.Index(sorted(ids), dtype="int64")
    out = pd.DataFrame(index=index)
    if group == "monthly":
        out = monthly_features(q, as_of, index)[list(DBT_FEATURES)]
    elif group == "money":  # after "monthly": it reads the dbt: features as they are now
        money_features(out, q, as_of, features.loc[index, list(DBT_FEATURES)], users.reindex(index))
    elif group == "engagement":
        engagement_features(out, q, as_of)
    else:
        nudge_features(out, q, as_of)
    features.loc[index, list(out.columns)] = out.astype("float64").to_numpy()


def refresh_features(engine: Engine, as_of: datetime, run_id: str, overlap: timedelta = UPDATE_OVERLAP) -> dict:
    """Stage the snapshot as of `as_of`, recomputing only the feature groups of the users that can have changed.

    `overlap`: how far before the previous as_of a row's updated_at still marks its user as changed.
    """
    as_of = fm.as_utc(as_of)
    started = time.perf_counter()
    with engine.connect() as conn:
        previous = _previous(conn)
        reason = _full_reason(previous, as_of)
        if reason is None:
            prev_as_of, _, prev = previous
            everyone = Reader(conn, None)
            users = read_users(everyone, as_of)
            new_users = set(users.index.difference(prev.index))
            dirty = {group: (ids | new_users) & set(users.index)
                     for group, ids in dirty_users(conn, prev_as_of, as_of, overlap).items()}
            dirty_seconds = round(time.perf_counter() - started, 2)
            recent_income = pd.Index(read(
                conn, "select distinct user_id from app.transactions where category = 'income' and amount > 0 "
                      "and occurred_at > :since and occurred_at <= :as_of",
                since=as_of - timedelta(days=fm.PAYDAY_LOOKBACK_DAYS), as_of=as_of,
            ).user_id)
            hours = (as_of - prev_as_of).total_seconds() / 3600.0
            features = _moved_on(prev.reindex(users.index), hours, recent_income)[list(FEATURE_NAMES)]
            for group, ids in dirty.items():
                _recompute(conn, features, users, group, ids, as_of)
            goal_features(features, everyone, as_of)
            profile_features(features, users, as_of)
            for name, value in market_features(conn, as_of).items():
                features[name] = value
    if reason is not None:
        result = build_features(engine, as_of, run_id)
        log.info("feature refresh as of %s: full build (%s)", as_of.isoformat(), reason)
        return {**result, "full_reason": reason}
    # the same clean-up as compute_features (carried values are clean already)
    features = features[list(FEATURE_NAMES)].astype("float64").replace([np.inf, -np.inf], np.nan).fillna(DEFAULTS)
    features.index = features.index.astype("int64")
    relpath = stage(snapshot_table(features, as_of), run_id)
    seconds = round(time.perf_counter() - started, 2)
    recomputed = set().union(*dirty.values())
    by_group = {group: len(ids) for group, ids in dirty.items()}
    log.info("feature refresh as of %s: %d of %d users recomputed (%s) in %.1fs", as_of.isoformat(),
             len(recomputed), len(features), by_group, seconds)
    return {
        "rows": len(features),
        "staging_path": relpath,
        "as_of": as_of.isoformat(),
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "mode": "incremental",
        "users_recomputed": len(recomputed),
        "recomputed_by_group": by_group,
        "previous_as_of": prev_as_of.isoformat(),
        "find_changed_seconds": dirty_seconds,
        "seconds": seconds,
    }
