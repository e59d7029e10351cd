"""The hourly incremental feature refresh equals a full build, recomputing only the users that changed."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pytest
import sqlalchemy as sa

from fincoach.feature_spec import FEATURE_NAMES
from fincoach.pseudonym import pseudonymise
from pipelines.analytics_build import build_analytics
from pipelines.feature_refresh import refresh_features
from pipelines.features import build_features, load_snapshot, publish_features

pytestmark = pytest.mark.slow


def _spend(conn: sa.Connection, users: tuple[int, ...], amount: float, category: str, at: dt.datetime) -> None:
    """A purchase on each user's checking account at `at`; the backend moves the balance with it."""
    params = {"users": list(users), "amount": amount, "category": category, "at": at}
    conn.execute(sa.text(
        "insert into app.transactions (user_id, account_id, amount, category, is_impulse, occurred_at) "
        "select user_id, account_id, :amount, :category, false, :at from app.accounts "
        "where account_type = 'checking' and user_id = any(:users)"
    ), params)
    conn.execute(sa.text("update app.accounts set current_balance = current_balance + :amount "
                         "where account_type = 'checking' and user_id = any(:users)"), params)


def _frame(result: dict):
    return load_snapshot(result["staging_path"]).set_index("user_id")


def test_incremental_refresh_equals_a_full_build_of_the_same_as_of(clean_db):
    from pipelines.seed import seed

    seed(clean_db, users=80, days=45, seed=13)
    build_analytics("refresh-0")
    time.sleep(1.0)
    t0 = dt.datetime.now(dt.UTC)
    t1 = min(t0 + dt.timedelta(minutes=20), t0.replace(hour=23, minute=59, second=59))
    publish_features(build_features(clean_db, t0, "refresh-0"), "refresh-0")

    with clean_db.begin() as conn:  # an hour of activity: new, late and changed rows
        _spend(conn, (1, 2), -50, "dining", t0 + dt.timedelta(minutes=5))
        _spend(conn, (3,), -70, "groceries", t0 - dt.timedelta(hours=2))  # late: happened before t0, arrives after
        _spend(conn, (8,), -40, "shopping", t0 - dt.timedelta(days=2))  # late by days: moves the dbt: windows
        conn.execute(sa.text(
            "insert into app.user_sessions (user_id, session_id, start_time, end_time) values (4, 'new-s', :s, :e)"
        ), {"s": t0 + dt.timedelta(minutes=1), "e": t0 + dt.timedelta(minutes=9)})
        conn.execute(sa.text(
            "insert into app.coaching_interactions (request_id, user_id, action_id, action_type, propensity, "
            "model_version, source, served_at) values ('new-r', 5, 1, 'SAVE_MORE', 0.5, 'test', 'online', :s)"
        ), {"s": t0 + dt.timedelta(minutes=2)})
        conn.execute(sa.text(
            "update app.coaching_interactions set response = 'accepted', responded_at = :r "
            "where id = (select min(id) from app.coaching_interactions where user_id = 6 and response is null)"
        ), {"r": t0 + dt.timedelta(minutes=3)})
        conn.execute(sa.text("update app.goals set current_amount = current_amount + 10 where user_id = 7"))
        conn.execute(sa.text(
            "insert into app.users (created_at, birth_year, income_band, pay_frequency, monthly_income, region, "
            "device_type, risk_tolerance) values (:c, 1990, 'low', 'monthly', 2000, 'west', 'android', 'high')"
        ), {"c": t0 + dt.timedelta(minutes=4)})
    build_analytics("refresh-1")

    incremental = refresh_features(clean_db, t1, "refresh-inc", overlap=dt.timedelta(0))
    full = build_features(clean_db, t1, "refresh-full")
    assert incremental["mode"] == "incremental", incremental.get("full_reason")
    assert incremental["rows"] == full["rows"] == 81
    assert 8 <= incremental["users_recomputed"] < 81
    # the dbt: features of the late user and the new one only; the buyers' money features
    late_by_days = 1 + ((t0 - dt.timedelta(hours=2)).date() < t0.date())  # user 8, and user 3 just after midnight
    assert incremental["recomputed_by_group"]["monthly"] == late_by_days + 1
    assert incremental["recomputed_by_group"]["money"] >= 5
    a, b = _frame(incremental), _frame(full)
    assert list(a.index) == list(b.index) and list(a.columns) == list(b.columns)
    np.testing.assert_allclose(a[list(FEATURE_NAMES)].to_numpy(), b[list(FEATURE_NAMES)].to_numpy(), rtol=1e-9, atol=1e-9)
    # summed in another order (the carried users' windows move on): equal up to float rounding
    assert a.loc[pseudonymise(1), "monthly_spend"] == pytest.approx(b.loc[pseudonymise(1), "monthly_spend"], rel=1e-12)


def test_a_new_day_or_an_empty_online_store_gives_a_full_build(clean_db):
    from pipelines.seed import seed

    seed(clean_db, users=10, days=14, seed=2)
    build_analytics("refresh-empty")
    now = dt.datetime.now(dt.UTC)
    first = refresh_features(clean_db, now, "refresh-first")
    assert first["mode"] == "full" and "no single previous snapshot" in first["full_reason"]
    publish_features(first, "refresh-first")
    tomorrow = refresh_features(clean_db, now + dt.timedelta(days=1), "refresh-tomorrow")
    assert tomorrow["mode"] == "full" and "new UTC day" in tomorrow["full_reason"]
