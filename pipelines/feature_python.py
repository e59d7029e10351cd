"""The `python:` features: pandas over the analytics staging views and marts, point in time.

Only rows with event time <= as_of are used. Balances are rolled back from the current balance by the
flows after as_of; session, event and nudge windows end exactly at as_of; a session still running at
as_of lasts until as_of. Debts and goals hold only their current state in the app, so those features
use the rows created by as_of with their current values. Market features use the newest complete
market day before as_of (the close of the day before as_of's UTC day, like the dbt: windows).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime, timedelta

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pcsv
import sqlalchemy as sa

from fincoach.feature_spec import FEATURES
from pipelines import feature_math as fm

PYTHON_FEATURES = tuple(f.name for f in FEATURES if f.source.startswith("python:"))
SPEND_CATEGORIES = (
    "rent", "utilities", "groceries", "transport", "health", "dining", "entertainment", "shopping", "travel",
)
_DAY_SECONDS = 86_400.0


# Arrow types of the Postgres result types a feature query returns (by type OID); any other is read as text.
_ARROW_TYPES = {
    16: pa.bool_(), 20: pa.int64(), 21: pa.int64(), 23: pa.int64(), 700: pa.float64(), 701: pa.float64(),
    1700: pa.float64(), 1082: pa.date32(), 1114: pa.timestamp("us"), 1184: pa.timestamp("us", tz="UTC"),
}
# Postgres CSV: NULL is an unquoted empty field, an empty string a quoted one; booleans are t / f.
_CSV_OPTIONS = {"null_values": [""], "strings_can_be_null": True, "quoted_strings_can_be_null": False,
                "true_values": ["t"], "false_values": ["f"]}


def read(conn: sa.Connection, sql: str, times: tuple[str, ...] = (), **params: object) -> pd.DataFrame:
    """Rows of a query (`:name` parameters) on `conn`, in its transaction; `times` columns as UTC timestamps
    (even when there are no rows).

    Read by COPY to CSV parsed by Arrow, not row by row into Python objects (half the time of
    pandas.read_sql for the hourly refresh's 800k transaction rows); the parameters are bound client-side
    by psycopg (its own quoting and typed literals, never string formatting), as COPY takes none.
    """
    raw = conn.connection.driver_connection
    query = psycopg.ClientCursor(raw).mogrify(str(sa.text(sql).compile(dialect=conn.dialect)), params)
    described = raw.execute(f"select * from ({query}) as described limit 0").description or []
    types = {column.name: _ARROW_TYPES.get(column.type_code, pa.string()) for column in described}
    with raw.cursor() as cursor, cursor.copy(f"copy ({query}) to stdout with (format csv, header)") as copy:
        data = b"".join(bytes(block) for block in copy)
    table = pcsv.read_csv(pa.py_buffer(data), convert_options=pcsv.ConvertOptions(column_types=types, **_CSV_OPTIONS))
    frame = table.to_pandas()
    for col in times:
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def _days(later: pd.Timestamp | pd.Series, earlier: pd.Series | pd.Timestamp) -> pd.Series:
    return (later - earlier).dt.total_seconds() / _DAY_SECONDS  # type: ignore[union-attr]


def _per_user(values: pd.Series, index: pd.Index, fill: float = 0.0) -> pd.Series:
    return values.reindex(index).fillna(fill).astype(float)


class Reader:
    """Reads of one build: every query is limited to the users asked for (all when None).

    The users are copied into a temporary table (dropped with the transaction) that the queries join, so
    Postgres reads their rows through the user_id indexes instead of testing every row against a long list.
    """

    _count = itertools.count()

    def __init__(self, conn: sa.Connection, user_ids: Iterable[int] | None) -> None:
        self.conn, self.users = conn, ""
        if user_ids is not None:
            table = f"pick_users_{next(self._count)}"
            conn.execute(sa.text(f"create temp table {table} (user_id bigint primary key) on commit drop"))
            with conn.connection.driver_connection.cursor() as cur, cur.copy(f"copy {table} from stdin") as copy:
                for user_id in sorted(set(user_ids)):
                    copy.write_row((int(user_id),))
            conn.execute(sa.text(f"analyze {table}"))
            self.users = f"and user_id in (select user_id from {table})"

    def __call__(self, sql: str, times: tuple[str, ...] = (), **params: object) -> pd.DataFrame:
        return read(self.conn, sql.format(users=self.users), times, **params)


def money_features(out: pd.DataFrame, q: Reader, as_of: datetime, monthly: pd.DataFrame, users: pd.DataFrame) -> None:
    """Spending, balance, payday, debt and saving-streak features of the users of `out` (in place)."""
    start, end = fm.window_bounds(as_of)
    # every flow of the windows (and after as_of, to roll balances back); only income for the payday lookback
    since = min(start, as_of - timedelta(days=fm.WINDOW_DAYS))
    tx = q(
        "select user_id, account_id, amount::float8 as amount, category, is_impulse, occurred_at "
        "from analytics.stg_app__transactions where (occurred_at >= :since "
        "or (occurred_at >= :payday_since and category = 'income' and amount > 0)) {users}",
        times=("occurred_at",), since=since, payday_since=as_of - timedelta(days=fm.PAYDAY_LOOKBACK_DAYS),
    )
    tx["is_impulse"] = tx.is_impulse.astype(bool)
    # impulse_share over the same complete days as monthly_spend
    in_window = tx[(tx.occurred_at >= start) & (tx.occurred_at < end) & tx.category.isin(SPEND_CATEGORIES)]
    spend = (-in_window.amount).groupby(in_window.user_id).sum()
    impulse = (-in_window.amount[in_window.is_impulse]).groupby(in_window.user_id[in_window.is_impulse]).sum()
    out["impulse_share"] = fm.share(_per_user(impulse, out.index), _per_user(spend, out.index))

    # balances as of as_of (and 30 days before): the current balance minus every flow recorded after it
    accounts = q(
        "select account_id, user_id, account_type, current_balance::float8 as current_balance "
        "from analytics.stg_app__accounts where opened_at <= :as_of {users}",
        as_of=as_of,
    )
    later = tx[tx.occurred_at > as_of].groupby("account_id").amount.sum()
    month_ago = as_of - timedelta(days=fm.WINDOW_DAYS)
    in_month = tx[(tx.occurred_at > month_ago) & (tx.occurred_at <= as_of)].groupby("account_id").amount.sum()
    accounts["balance"] = accounts.current_balance - accounts.account_id.map(later).fillna(0.0)
    accounts["change"] = accounts.account_id.map(in_month).fillna(0.0)
    liquid = accounts[accounts.account_type.isin(("checking", "savings"))]
    by_type = accounts.pivot_table(index="user_id", columns="account_type", values="balance", aggfunc="sum")
    for kind in ("checking", "savings"):
        col = by_type[kind] if kind in by_type else pd.Series(dtype=float)
        out[f"{kind}_balance"] = _per_user(col, out.index)
    out["emergency_fund_months"] = fm.emergency_fund_months(out.savings_balance, monthly.monthly_spend)
    out["balance_trend"] = fm.balance_trend(
        _per_user(liquid.groupby("user_id").change.sum(), out.index), monthly.monthly_income
    )

    income = tx[(tx.category == "income") & (tx.amount > 0) & (tx.occurred_at <= as_of)]
    last_income = income.groupby("user_id").occurred_at.max().reindex(out.index)
    cycle = users.pay_frequency.map(fm.PAY_CYCLE_DAYS).fillna(fm.PAY_CYCLE_DAYS["monthly"])
    out["days_to_payday"] = fm.days_to_payday(_days(pd.Timestamp(as_of), last_income), cycle)

    debts = q(
        "select user_id, balance::float8 as balance, apr::float8 as apr "
        "from analytics.stg_app__debts where created_at <= :as_of {users}",
        as_of=as_of,
    )
    out["debt_total"] = _per_user(debts.groupby("user_id").balance.sum(), out.index)
    out["debt_to_income"] = fm.debt_to_income(out.debt_total, monthly.monthly_income, users.declared_monthly_income)
    open_debts = debts[debts.balance > 0]
    out["max_debt_apr"] = _per_user(open_debts.groupby("user_id").apr.max(), out.index)

    # weeks of net transfers into savings, from the daily mart (week 0 ends at the window end)
    streak_start = end - timedelta(days=7 * fm.STREAK_CAP_WEEKS)
    saved = q(
        "select user_id, date_day, savings_transfers::float8 as savings_transfers "
        "from analytics.fct_daily_user_financials "
        "where date_day >= :start and date_day < :end and savings_transfers <> 0 {users}",
        start=streak_start.date(), end=end.date(),
    )
    week = ((pd.Timestamp(end.date()) - pd.to_datetime(saved.date_day)).dt.days - 1) // 7
    weekly = saved.assign(week=week).groupby(["user_id", "week"]).savings_transfers.sum()
    matrix = (weekly > 0).unstack(fill_value=False).reindex(
        index=out.index, columns=range(fm.STREAK_CAP_WEEKS), fill_value=False
    )
    out["saving_streak_weeks"] = fm.saving_streak_weeks(matrix.to_numpy(dtype=bool))


def goal_features(out: pd.DataFrame, q: Reader, as_of: datetime) -> None:
    """goal_progress, has_active_goal, goal_pace_ratio, goals_achieved of the users of `out` (in place)."""
    goals = q(
        "select user_id, goal_status, (current_amount / target_amount)::float8 as progress, created_at, "
        "target_date from analytics.stg_app__goals where created_at <= :as_of {users}",
        times=("created_at",), as_of=as_of,
    )
    active = goals[goals.goal_status == "active"].copy()
    active["progress"] = active.progress.clip(0, 1)
    out["goal_progress"] = _per_user(active.groupby("user_id").progress.mean(), out.index)
    out["has_active_goal"] = out.index.isin(active.user_id).astype(float)
    due = pd.to_datetime(active.target_date).dt.tz_localize("UTC")
    active["pace"] = fm.goal_pace_ratio(
        active.progress, _days(pd.Timestamp(as_of), active.created_at), _days(due, active.created_at)
    )
    out["goal_pace_ratio"] = _per_user(active.groupby("user_id").pace.mean(), out.index, fill=1.0)
    achieved = goals[goals.goal_status == "achieved"]
    out["goals_achieved"] = _per_user(achieved.groupby("user_id").size(), out.index)


def engagement_features(out: pd.DataFrame, q: Reader, as_of: datetime) -> None:
    """Session and event features of the users of `out` (in place)."""
    month_ago = as_of - timedelta(days=fm.WINDOW_DAYS)
    sessions = q(
        "select user_id, started_at, ended_at from analytics.stg_app__user_sessions "
        "where started_at <= :as_of and started_at > :since {users}",
        times=("started_at", "ended_at"), as_of=as_of, since=as_of - timedelta(days=fm.SESSION_CAP_DAYS),
    )
    recent = sessions[sessions.started_at > month_ago].copy()
    n_sessions = _per_user(recent.groupby("user_id").size(), out.index)
    out["sessions_30d"] = n_sessions
    last = sessions.groupby("user_id").started_at.max().reindex(out.index)
    out["days_since_last_session"] = _days(pd.Timestamp(as_of), last).clip(0, fm.SESSION_CAP_DAYS).fillna(
        fm.SESSION_CAP_DAYS
    )
    ended = recent.ended_at.where(recent.ended_at.notna() & (recent.ended_at < pd.Timestamp(as_of)), pd.Timestamp(as_of))
    recent["minutes"] = ((ended - recent.started_at).dt.total_seconds() / 60.0).clip(lower=0)
    out["avg_session_minutes"] = _per_user(recent.groupby("user_id").minutes.mean(), out.index)
    evening = recent[recent.started_at.dt.hour >= fm.EVENING_START_HOUR]
    out["evening_session_share"] = fm.share(_per_user(evening.groupby("user_id").size(), out.index), n_sessions)

    events = q(
        "select user_id, count(*)::float8 as events, "
        "(count(distinct event_type) + count(distinct event_data ->> 'page'))::float8 as features_used "
        "from analytics.stg_app__user_events where event_at <= :as_of and event_at > :since {users} "
        "group by user_id",
        as_of=as_of, since=month_ago,
    ).set_index("user_id")
    out["features_used_30d"] = _per_user(events.features_used, out.index)
    out["clicks_per_session"] = fm.ratio(_per_user(events.events, out.index), n_sessions)


def nudge_features(out: pd.DataFrame, q: Reader, as_of: datetime) -> None:
    """Nudge features of the users of `out` (in place)."""
    nudges = q(
        "select user_id, served_at, "
        "coalesce(response = 'accepted' and coalesce(responded_at, served_at) <= :as_of, false) as accepted "
        "from analytics.stg_app__coaching_interactions "
        "where served_at <= :as_of and served_at > :since and action_id <> 0 {users}",
        times=("served_at",), as_of=as_of, since=as_of - timedelta(days=fm.NUDGE_WINDOW_DAYS),
    )
    nudges["accepted"] = nudges.accepted.astype(float)
    per_user = nudges.groupby("user_id").accepted.agg(["sum", "size"]).reindex(out.index).fillna(0.0)
    out["nudge_acceptance_rate"] = fm.nudge_acceptance_rate(per_user["sum"], per_user["size"])
    week = nudges[nudges.served_at > as_of - timedelta(days=fm.RECENT_NUDGE_DAYS)]
    out["nudges_7d"] = _per_user(week.groupby("user_id").size(), out.index)
    last = nudges.groupby("user_id").served_at.max().reindex(out.index)
    out["days_since_last_nudge"] = _days(pd.Timestamp(as_of), last).clip(0, fm.NUDGE_CAP_DAYS).fillna(fm.NUDGE_CAP_DAYS)


def market_features(conn: sa.Connection, as_of: datetime) -> dict[str, float]:
    """Rate, inflation and 90-day index return of the newest complete market day before as_of (its close)."""
    day = as_of.date()
    rows = read(
        conn,
        "select market_day, interest_rate, inflation_rate, index_level from analytics.stg_app__market_conditions "
        "where market_day < :day and market_day >= :since order by market_day",
        day=day, since=day - timedelta(days=fm.MARKET_RETURN_DAYS + 30),
    )
    defaults = {f.name: f.default for f in FEATURES if f.group == "market"}
    if rows.empty:
        return defaults
    today = rows.iloc[-1]
    base = rows[rows.market_day <= today.market_day - timedelta(days=fm.MARKET_RETURN_DAYS)]
    ret = float(today.index_level / base.iloc[-1].index_level - 1.0) if len(base) else defaults["market_return_3m"]
    return {
        "market_interest_rate": float(today.interest_rate),
        "market_inflation_rate": float(today.inflation_rate),
        "market_return_3m": ret,
    }


def profile_features(out: pd.DataFrame, users: pd.DataFrame, as_of: datetime) -> None:
    """Age, device and risk tolerance of the users of `out` (in place), from their `users` rows."""
    users = users.reindex(out.index)
    out["age"] = (as_of.year - users.birth_year).astype(float)
    out["mobile_device"] = users.device_type.isin(fm.MOBILE_DEVICES).astype(float)
    out["risk_tolerance"] = users.risk_tolerance.map(fm.RISK_TOLERANCE).astype(float)


def python_features(
    q: Reader, as_of: datetime, users: pd.DataFrame, monthly: pd.DataFrame,
) -> pd.DataFrame:
    """Every python: feature of `users` (indexed by user_id, the users of `q`) as of `as_of`; `monthly` holds
    the dbt: features."""
    out = pd.DataFrame(index=users.index)
    money_features(out, q, as_of, monthly, users)
    goal_features(out, q, as_of)
    engagement_features(out, q, as_of)
    nudge_features(out, q, as_of)
    profile_features(out, users, as_of)
    for name, value in market_features(q.conn, as_of).items():
        out[name] = value
    return out[list(PYTHON_FEATURES)]
