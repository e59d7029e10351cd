"""What real users did, read from the dbt marts and the app tables with parametrised SQL (for calibration
and validation of the simulator). Every reader takes an open connection and a time window."""

from __future__ import annotations

import logging
from datetime import date, datetime

import pandas as pd
import sqlalchemy as sa

from fincoach.pseudonym import app_user_ids, is_pseudonym

log = logging.getLogger(__name__)

# The same sums for weeks and for whole windows (constant SQL; every value is a bound parameter).
_SUMS = """
           sum(income)::float8 as income,
           sum(spend_essential)::float8 as essential,
           sum(spend_discretionary)::float8 as discretionary,
           sum(impulse_spend)::float8 as impulse,
           sum(spend_total)::float8 as spend,
           sum(savings_transfers)::float8 as savings_in,
           count(*)::int as days
    from analytics.fct_daily_user_financials
    where date_day >= cast(:start as date) and date_day < cast(:end as date)
      and user_id = any(:users)
"""
_WEEKLY = sa.text(
    f"select user_id, floor((date_day - cast(:start as date)) / 7)::int as week, {_SUMS} group by 1, 2 order by 1, 2"
)
_TOTALS = sa.text(f"select user_id, {_SUMS} group by 1 order by 1")
_BALANCES = sa.text(
    """
    select distinct on (user_id) user_id,
           checking_balance_eod::float8 as checking,
           savings_balance_eod::float8 as savings
    from analytics.fct_daily_user_financials
    where date_day < cast(:day as date) and user_id = any(:users)
    order by user_id, date_day desc
    """
)
_RESPONSES = sa.text(
    """
    select action_type,
           count(*)::int as served,
           sum(case when response = 'accepted' then 1 else 0 end)::int as accepted
    from analytics.stg_app__coaching_interactions
    where served_at < :before and response is not null
    group by 1
    order by 1
    """
)
_ACTIONS = sa.text(
    """
    select distinct on (user_id, week) user_id, week, action_id
    from (
        select user_id, action_id, served_at,
               floor(extract(epoch from served_at - :start) / 604800)::int as week
        from analytics.stg_app__coaching_interactions
        where served_at >= :start and served_at < :end and user_id = any(:users)
    ) served
    order by user_id, week, served_at
    """
)
_ACTIVE = sa.text(
    """
    select count(distinct user_id) filter (where start_time < :mid)::int as earlier,
           count(distinct user_id) filter (
               where start_time < :mid and user_id not in (
                   select user_id from app.user_sessions where start_time >= :mid and start_time < :end
               )
           )::int as gone
    from app.user_sessions
    where start_time >= :begin and start_time < :end
    """
)


def weekly_flows(conn: sa.Connection, users: list[int], start: date, end: date) -> pd.DataFrame:
    """Per user and week since `start` (0, 1, ...): income, spending by kind, transfers into savings, days."""
    return pd.read_sql(_WEEKLY, conn, params={"start": start, "end": end, "users": users})


def window_totals(conn: sa.Connection, users: list[int], start: date, end: date) -> pd.DataFrame:
    """Per user (index) totals over the days [start, end): income, spending by kind, transfers into savings, days."""
    return pd.read_sql(_TOTALS, conn, params={"start": start, "end": end, "users": users}).set_index(
        "user_id"
    )


def balances_before(conn: sa.Connection, users: list[int], day: date) -> pd.DataFrame:
    """Checking and savings balance at the end of the last day before `day`, indexed by user_id."""
    return pd.read_sql(_BALANCES, conn, params={"day": day, "users": users}).set_index("user_id")


def response_counts(conn: sa.Connection, before: datetime) -> pd.DataFrame:
    """Nudges with a known response served before `before`, and how many were accepted, per action type."""
    return pd.read_sql(_RESPONSES, conn, params={"before": before}).set_index("action_type")


def logged_actions(conn: sa.Connection, users: list[int], start: datetime, end: datetime) -> pd.DataFrame:
    """The first action served to each user in each week since `start`: user_id, week, action_id."""
    return pd.read_sql(_ACTIONS, conn, params={"start": start, "end": end, "users": users})


def four_week_dropout(conn: sa.Connection, as_of: datetime) -> tuple[int, int]:
    """(users with a session in the 4 weeks before the last 4, how many of them had none in the last 4)."""
    week = pd.Timedelta(days=7)
    end = pd.Timestamp(as_of)
    row = conn.execute(_ACTIVE, {"begin": end - 8 * week, "mid": end - 4 * week, "end": end}).one()
    return int(row.earlier), int(row.gone)


def with_app_user_ids(conn: sa.Connection, users: pd.DataFrame) -> pd.DataFrame:
    """`users` with `user_id` as app ids: lake snapshots carry pseudonyms (fincoach.pseudonym), the marts ids.

    Pseudonyms of no current app user (erased since the snapshot) are dropped, with a warning saying how many.
    """
    if not users["user_id"].map(is_pseudonym).any():
        return users.assign(user_id=users["user_id"].astype("int64"))
    real = app_user_ids(conn, users["user_id"])
    if real.isna().any():
        log.warning("%d snapshot users are no longer app users (erased?): left out", int(real.isna().sum()))
    return users[real.notna().to_numpy()].assign(user_id=real.dropna().astype("int64").to_numpy())
