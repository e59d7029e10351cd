"""Features of every user as of a point in time (fincoach.feature_spec), their lake snapshot and online store.

Point in time: only rows with event time <= as_of are used. The `dbt:` features are windows over
analytics.fct_daily_user_financials, whose grain is a UTC day: they use the 30 complete UTC days before
as_of (exactly the 30 days ending at as_of when as_of is midnight), so a mid-day as_of never sees part of
a later day. impulse_share uses the same days so it shares monthly_spend's denominator. The `python:`
features come from the staging views: balances are rolled back from the current balance by the flows
after as_of, session and nudge windows end exactly at as_of. Debts and goals hold only their current
state in the app, so those features use the rows created by as_of with their current values.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fincoach import lake
from fincoach.db import get_engine
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, FEATURES
from pipelines.snapshots import SNAPSHOT_FILE, snapshot_dir

log = logging.getLogger(__name__)

STAGING_PREFIX = "features/staging"
KEY_COLUMNS = ("user_id", "as_of", "feature_spec_version")
DBT_FEATURES = tuple(f.name for f in FEATURES if f.source.startswith("dbt:"))
PYTHON_FEATURES = tuple(f.name for f in FEATURES if f.source.startswith("python:"))
DEFAULTS = {f.name: f.default for f in FEATURES}

WINDOW_DAYS = 30
NUDGE_WINDOW_DAYS = 90
SESSION_CAP_DAYS = 90.0
EMERGENCY_FUND_CAP_MONTHS = 24.0
DEBT_TO_INCOME_CAP = 5.0
SPEND_CATEGORIES = (
    "rent", "utilities", "groceries", "transport", "health", "dining", "entertainment", "shopping", "travel",
)


class FeatureBuildError(ValueError):
    """Features cannot be built or published with the given input (the message says what to do)."""


# --- the dbt: features, one SQL window over the daily mart -------------------------------------------

_DBT_FEATURES_SQL = """
with

window_days as (
    select
        user_id,
        date_day,
        income::float8 as income,
        spend_total::float8 as spend,
        spend_essential::float8 as spend_essential,
        spend_discretionary::float8 as spend_discretionary
    from analytics.fct_daily_user_financials
    where date_day >= :window_start and date_day < :window_end
),

first_days as (
    select
        user_id,
        min(date_day) as first_date_day
    from analytics.fct_daily_user_financials
    where date_day < :window_end
    group by user_id
),

totals as (
    select
        window_days.user_id,
        sum(income) as income,
        sum(spend) as spend,
        sum(spend_essential) as spend_essential,
        sum(spend_discretionary) as spend_discretionary,
        sum(spend * spend) as spend_squared,
        -- days of the window the user was already active: days after their last transaction count as 0
        (:window_end - greatest(min(first_days.first_date_day), :window_start))::float8 as active_days
    from window_days
    inner join first_days
        on window_days.user_id = first_days.user_id
    group by window_days.user_id
),

daily_stats as (
    select
        *,
        spend / active_days as mean_spend,
        sqrt(greatest(spend_squared / active_days - (spend / active_days) ^ 2, 0)) as sd_spend
    from totals
)

select
    user_id,
    greatest(income, 0) as monthly_income,
    greatest(spend, 0) as monthly_spend,
    case
        when income > 0 then least(greatest((income - spend) / income, -1), 1)
        when spend > 0 then -1
        else 0
    end as savings_rate,
    case when spend > 0 then least(greatest(spend_essential / spend, 0), 1) else 0 end as essential_share,
    case when spend > 0 then least(greatest(spend_discretionary / spend, 0), 1) else 0 end as discretionary_share,
    case when mean_spend > 0 then sd_spend / mean_spend else 0 end as spending_volatility
from daily_stats
"""


def as_utc(moment: datetime) -> datetime:
    """A plain UTC datetime (Airflow passes pendulum DateTimes, which pandas does not compare with)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise FeatureBuildError(f"as_of must be timezone-aware (got {moment.isoformat()}); pass e.g. UTC")
    d = moment.astimezone(UTC)
    return datetime(d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond, tzinfo=UTC)


def window_bounds(as_of: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the 30-day window: the 30 complete UTC days before as_of, as UTC midnights."""
    end = as_utc(as_of).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=WINDOW_DAYS), end


def _dbt_features(conn: sa.Connection, as_of: datetime) -> pd.DataFrame:
    start, end = window_bounds(as_of)
    frame = _read(conn, _DBT_FEATURES_SQL, window_start=start.date(), window_end=end.date())
    return frame.set_index("user_id")[list(DBT_FEATURES)]


def _require_analytics(conn: sa.Connection) -> None:
    """The dbt relations the features read must exist (dbt build has run on this database)."""
    needed = ["fct_daily_user_financials", "stg_app__users", "stg_app__accounts", "stg_app__transactions",
              "stg_app__debts", "stg_app__goals", "stg_app__user_sessions", "stg_app__coaching_interactions"]
    missing = [
        name for name in needed
        if conn.execute(sa.text("select to_regclass(:r)"), {"r": f"analytics.{name}"}).scalar() is None
    ]
    if missing:
        raise FeatureBuildError(
            f"analytics.{', analytics.'.join(missing)} missing: run pipelines.analytics_build.build_analytics "
            "(dbt build) before building features"
        )


# --- the python: features, pandas over the staging views ---------------------------------------------


def ratio(numerator: pd.Series, denominator: pd.Series, when_zero: float | pd.Series = 0.0) -> pd.Series:
    """numerator / denominator where the denominator is positive, else `when_zero`."""
    safe = denominator.where(denominator > 0, np.nan)
    out = numerator / safe
    return out.where(denominator > 0, when_zero)


def emergency_fund_months(savings: pd.Series, monthly_spend: pd.Series) -> pd.Series:
    """Months of spend the savings cover, in [0, 24] (24 with savings and no spend)."""
    no_spend = np.where(savings > 0, EMERGENCY_FUND_CAP_MONTHS, 0.0)
    return ratio(savings, monthly_spend, pd.Series(no_spend, index=savings.index)).clip(0, EMERGENCY_FUND_CAP_MONTHS)


def debt_to_income(debt: pd.Series, monthly_income: pd.Series, declared_income: pd.Series) -> pd.Series:
    """Debt / annual income (observed 30-day income, else the declared one) in [0, 5]; 5 with debt and no income."""
    income = monthly_income.where(monthly_income > 0, declared_income)
    no_income = np.where(debt > 0, DEBT_TO_INCOME_CAP, 0.0)
    return ratio(debt, 12.0 * income, pd.Series(no_income, index=debt.index)).clip(0, DEBT_TO_INCOME_CAP)


def nudge_acceptance_rate(accepted: pd.Series, served: pd.Series) -> pd.Series:
    """Accepted share of nudges with a Beta(1, 1) prior: 0.5 without nudges, never exactly 0 or 1."""
    return (accepted + 1.0) / (served + 2.0)


def _read(conn: sa.Connection, sql: str, times: tuple[str, ...] = (), **params: object) -> pd.DataFrame:
    """Rows of a query; `times` columns as UTC timestamps (even when there are no rows)."""
    frame = pd.read_sql(sa.text(sql), conn, params=params)
    for col in times:
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def _python_features(conn: sa.Connection, as_of: datetime, users: pd.DataFrame, monthly: pd.DataFrame) -> pd.DataFrame:
    start, end = window_bounds(as_of)
    out = pd.DataFrame(index=users.index)

    # impulse_share over the same complete days as monthly_spend
    tx = _read(
        conn,
        "select user_id, account_id, amount::float8 as amount, category, is_impulse, occurred_at "
        "from analytics.stg_app__transactions where occurred_at >= :start",
        times=("occurred_at",), start=start,
    )
    tx["is_impulse"] = tx.is_impulse.astype(bool)
    in_window = tx[(tx.occurred_at < end) & tx.category.isin(SPEND_CATEGORIES)]
    spend = (-in_window.amount).groupby(in_window.user_id).sum()
    impulse = (-in_window.amount[in_window.is_impulse]).groupby(in_window.user_id[in_window.is_impulse]).sum()
    spend, impulse = spend.reindex(out.index, fill_value=0.0), impulse.reindex(out.index, fill_value=0.0)
    out["impulse_share"] = ratio(impulse, spend).clip(0, 1)

    # balances as of as_of: the current balance minus every flow recorded after as_of
    accounts = _read(
        conn,
        "select account_id, user_id, account_type, current_balance::float8 as current_balance "
        "from analytics.stg_app__accounts where opened_at <= :as_of",
        as_of=as_of,
    )
    later = tx[tx.occurred_at > as_of].groupby("account_id").amount.sum()
    accounts["balance"] = accounts.current_balance - accounts.account_id.map(later).fillna(0.0)
    by_type = accounts.pivot_table(index="user_id", columns="account_type", values="balance", aggfunc="sum")
    for kind in ("checking", "savings"):
        col = by_type[kind] if kind in by_type else pd.Series(dtype=float)
        out[f"{kind}_balance"] = col.reindex(out.index).fillna(0.0)
    out["emergency_fund_months"] = emergency_fund_months(out.savings_balance, monthly.monthly_spend)

    debts = _read(
        conn,
        "select user_id, balance::float8 as balance, apr::float8 as apr "
        "from analytics.stg_app__debts where created_at <= :as_of",
        as_of=as_of,
    )
    out["debt_total"] = debts.groupby("user_id").balance.sum().reindex(out.index).fillna(0.0)
    out["debt_to_income"] = debt_to_income(out.debt_total, monthly.monthly_income, users.declared_monthly_income)
    open_debts = debts[debts.balance > 0]
    out["max_debt_apr"] = open_debts.groupby("user_id").apr.max().reindex(out.index).fillna(0.0)

    goals = _read(
        conn,
        "select user_id, (current_amount / target_amount)::float8 as progress from analytics.stg_app__goals "
        "where goal_status = 'active' and created_at <= :as_of",
        as_of=as_of,
    )
    goals["progress"] = goals.progress.clip(0, 1)
    out["goal_progress"] = goals.groupby("user_id").progress.mean().reindex(out.index).fillna(0.0)
    out["has_active_goal"] = out.index.isin(goals.user_id).astype(float)

    sessions = _read(
        conn,
        "select user_id, started_at from analytics.stg_app__user_sessions "
        "where started_at <= :as_of and started_at > :since",
        times=("started_at",), as_of=as_of, since=as_of - timedelta(days=SESSION_CAP_DAYS),
    )
    recent = sessions[sessions.started_at > as_of - timedelta(days=WINDOW_DAYS)]
    out["sessions_30d"] = recent.groupby("user_id").size().reindex(out.index).fillna(0).astype(float)
    last = sessions.groupby("user_id").started_at.max().reindex(out.index)
    days_since = (pd.Timestamp(as_of) - last).dt.total_seconds() / 86_400.0
    out["days_since_last_session"] = days_since.clip(0, SESSION_CAP_DAYS).fillna(SESSION_CAP_DAYS)

    nudges = _read(
        conn,
        "select user_id, coalesce(response = 'accepted' and coalesce(responded_at, served_at) <= :as_of, false) "
        "as accepted "
        "from analytics.stg_app__coaching_interactions "
        "where served_at <= :as_of and served_at > :since and action_type <> 'NO_ACTION'",
        as_of=as_of, since=as_of - timedelta(days=NUDGE_WINDOW_DAYS),
    )
    nudges["accepted"] = nudges.accepted.astype(float)
    per_user = nudges.groupby("user_id").accepted.agg(["sum", "size"]).reindex(out.index).fillna(0.0)
    out["nudge_acceptance_rate"] = nudge_acceptance_rate(per_user["sum"], per_user["size"])

    out["age"] = (as_of.year - users.birth_year).astype(float)
    return out[list(PYTHON_FEATURES)]


# --- build, publish, read ----------------------------------------------------------------------------


def _check_run_id(run_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", run_id):
        raise FeatureBuildError(f"run_id {run_id!r} must be file-safe (letters, digits, _ . -)")


def build_features(engine: Engine, as_of: datetime, run_id: str) -> dict:
    """Compute every spec feature for every user as of `as_of`; stage the snapshot in the lake."""
    as_of = as_utc(as_of)
    _check_run_id(run_id)
    started = time.perf_counter()
    with engine.connect() as conn:
        _require_analytics(conn)
        users = _read(
            conn,
            "select user_id, birth_year, declared_monthly_income::float8 as declared_monthly_income "
            "from analytics.stg_app__users where created_at <= :as_of order by user_id",
            as_of=as_of,
        ).set_index("user_id")
        monthly = _dbt_features(conn, as_of).reindex(users.index)
        for name in DBT_FEATURES:
            monthly[name] = monthly[name].fillna(DEFAULTS[name])
        python = _python_features(conn, as_of, users, monthly)

    frame = pd.concat([monthly, python], axis=1)[list(FEATURE_NAMES)].astype("float64")
    frame = frame.replace([np.inf, -np.inf], np.nan).fillna(DEFAULTS)
    frame.insert(0, "feature_spec_version", FEATURE_SPEC_VERSION)
    frame.insert(0, "as_of", pd.Timestamp(as_of))
    frame = frame.reset_index()
    frame["user_id"] = frame.user_id.astype("int64")

    relpath = f"{STAGING_PREFIX}/{run_id}.parquet"
    lake.write_parquet(pa.Table.from_pandas(frame, preserve_index=False), relpath)
    seconds = round(time.perf_counter() - started, 2)
    log.info("features: %d users as of %s in %.1fs -> %s", len(frame), as_of.isoformat(), seconds, relpath)
    return {
        "rows": len(frame),
        "staging_path": relpath,
        "as_of": as_of.isoformat(),
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "seconds": seconds,
    }


def _relpath(path: str) -> str:
    """A lake relpath from a relpath or a full lake URI."""
    root = lake.uri("")
    return path.removeprefix(root) if path.startswith(root) else path


def load_snapshot(relpath: str) -> pd.DataFrame:
    """A feature snapshot (staged or published) as a DataFrame: user_id, as_of, feature_spec_version, features."""
    return lake.read_table(_relpath(relpath)).to_pandas()


_SWAP_SQL = (
    "delete from features.user_features_latest",
    "insert into features.user_features_latest (user_id, as_of, feature_spec_version, {cols}) "
    "select user_id, %(as_of)s, %(version)s, {cols} from incoming_features",
)


def _swap_online_store(frame: pd.DataFrame, as_of: datetime) -> None:
    """Replace the whole online feature table in one transaction (readers see the old or the new set)."""
    cols = ", ".join(FEATURE_NAMES)
    with get_engine().begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            # Writers queue here; readers (ACCESS SHARE) are never blocked.
            cur.execute("lock table features.user_features_latest in exclusive mode")
            cur.execute(
                "create temp table incoming_features on commit drop as "
                f"select user_id, {cols} from features.user_features_latest with no data"
            )
            with cur.copy(f"copy incoming_features (user_id, {cols}) from stdin") as copy:
                values = [frame["user_id"].astype("int64").tolist()]
                values += [frame[name].astype("float64").tolist() for name in FEATURE_NAMES]
                for row in zip(*values, strict=True):
                    copy.write_row(row)
            for statement in _SWAP_SQL:
                cur.execute(statement.format(cols=cols), {"as_of": as_of, "version": FEATURE_SPEC_VERSION})


def publish_features(build_result: dict, run_id: str) -> dict:
    """Publish a validated staged snapshot: lake `features/as_of=.../` and features.user_features_latest."""
    table = lake.read_table(_relpath(build_result["staging_path"]))
    expected = [*KEY_COLUMNS, *FEATURE_NAMES]
    if table.column_names != expected:
        raise FeatureBuildError(
            f"staged snapshot {build_result['staging_path']} has columns {table.column_names}, the spec wants "
            f"{expected}: rebuild it with build_features"
        )
    frame = table.to_pandas()
    versions = set(frame.feature_spec_version)
    if versions - {FEATURE_SPEC_VERSION}:
        raise FeatureBuildError(
            f"staged snapshot was built with feature spec {sorted(versions)}, this code has "
            f"{FEATURE_SPEC_VERSION}: rebuild it with build_features"
        )
    as_of = as_utc(datetime.fromisoformat(build_result["as_of"]))
    partition = snapshot_dir(as_of)
    lake.replace_partition(table, partition, SNAPSHOT_FILE)
    _swap_online_store(frame, as_of)
    relpath = f"{partition}/{SNAPSHOT_FILE}"
    log.info("published %d feature rows as of %s (run %s) -> %s", len(frame), as_of.isoformat(), run_id, relpath)
    return {
        "rows": len(frame),
        "path": lake.uri(relpath),
        "relpath": relpath,
        "as_of": as_of.isoformat(),
        "feature_spec_version": FEATURE_SPEC_VERSION,
    }
