"""Features as of a point in time, from a real dbt build on hand-made rows: values, no leakage, publishing."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from fincoach import lake
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, FEATURES
from fincoach.pseudonym import is_pseudonym, pseudonymise
from pipelines.analytics_build import build_analytics
from pipelines.features import FeatureBuildError, build_features, load_snapshot, publish_features

pytestmark = pytest.mark.slow

AS_OF = datetime(2025, 4, 1, tzinfo=UTC)  # window: the 30 UTC days March 2nd .. March 31st
REAL_ID = {pseudonymise(u): u for u in (1, 2, 3)}
MARKET_START = datetime(2024, 12, 1, tzinfo=UTC)


def _insert(conn: sa.Connection, table: str, rows: list[dict]) -> None:
    cols = list(rows[0])
    conn.execute(
        sa.text(f"insert into app.{table} ({', '.join(cols)}) values ({', '.join(':' + c for c in cols)})"), rows
    )


def _tx(user: int, account: int, amount: float, category: str, at: str, impulse: bool = False) -> dict:
    return {"user_id": user, "account_id": account, "amount": amount, "category": category,
            "is_impulse": impulse, "occurred_at": at}


def seed_hand_crafted(engine: sa.Engine) -> None:
    """User 1 has a full month of known numbers, user 2 only a profile, user 3 signs up after AS_OF."""
    with engine.begin() as conn:
        conn.execute(sa.text("truncate app.users restart identity cascade"))
        _insert(conn, "users", [
            {"user_id": u, "created_at": c, "birth_year": b, "income_band": "middle", "pay_frequency": "monthly",
             "monthly_income": 4000, "region": "north", "device_type": d, "risk_tolerance": r}
            for u, c, b, d, r in [(1, "2025-01-01Z", 1985, "ios", "low"), (2, "2025-01-01Z", 2000, "web", "high"),
                                  (3, "2025-04-10Z", 1990, "android", "medium")]
        ])
        # current balances include the flows after AS_OF below: checking -100 -500, savings +500
        _insert(conn, "accounts", [
            {"account_id": 1, "user_id": 1, "account_type": "checking", "opened_at": "2025-01-01Z", "current_balance": 2500},
            {"account_id": 2, "user_id": 1, "account_type": "savings", "opened_at": "2025-01-01Z", "current_balance": 6000},
        ])
        _insert(conn, "transactions", [
            _tx(1, 1, 4000, "income", "2025-02-20T09:00Z"),  # before the window: first day of activity
            _tx(1, 1, -300, "groceries", "2025-02-25T09:00Z"),  # the 10 days of history before the window
            _tx(1, 1, 4000, "income", "2025-03-05T09:00Z"),
            _tx(1, 1, -1500, "rent", "2025-03-06T09:00Z"),
            _tx(1, 1, -300, "groceries", "2025-03-10T09:00Z"),
            _tx(1, 1, -200, "dining", "2025-03-12T20:00Z", impulse=True),
            _tx(1, 1, -1000, "savings_transfer", "2025-03-15T09:00Z"),
            _tx(1, 2, 1000, "savings_transfer", "2025-03-15T09:00Z"),
            _tx(1, 1, -250, "debt_payment", "2025-03-20T09:00Z"),
            _tx(1, 1, -100, "savings_transfer", "2025-03-20T09:00Z"),  # savings in 3 weeks in a row
            _tx(1, 2, 100, "savings_transfer", "2025-03-20T09:00Z"),
            _tx(1, 1, -100, "savings_transfer", "2025-03-28T09:00Z"),
            _tx(1, 2, 100, "savings_transfer", "2025-03-28T09:00Z"),
            _tx(1, 1, -100, "shopping", "2025-03-29T15:00Z"),  # a Saturday in the last 7 days of March
            _tx(1, 1, -100, "groceries", "2025-04-02T09:00Z"),  # after AS_OF
            _tx(1, 1, -500, "savings_transfer", "2025-04-03T09:00Z"),
            _tx(1, 2, 500, "savings_transfer", "2025-04-03T09:00Z"),
        ])
        _insert(conn, "debts", [
            {"user_id": 1, "debt_type": "credit_card", "balance": 3000, "apr": 0.2, "min_payment": 50, "created_at": "2025-01-01Z"},
            {"user_id": 1, "debt_type": "student_loan", "balance": 9000, "apr": 0.05, "min_payment": 90, "created_at": "2025-01-01Z"},
            {"user_id": 1, "debt_type": "car", "balance": 5000, "apr": 0.3, "min_payment": 90, "created_at": "2025-04-05Z"},
        ])
        _insert(conn, "goals", [
            {"user_id": 1, "goal_type": "emergency", "target_amount": 10000, "current_amount": 2500,
             "target_date": "2025-12-31", "status": "active", "created_at": "2025-01-01Z"},
            {"user_id": 1, "goal_type": "holiday", "target_amount": 1000, "current_amount": 1500,
             "target_date": "2025-06-30", "status": "active", "created_at": "2025-01-01Z"},
            {"user_id": 1, "goal_type": "car", "target_amount": 500, "current_amount": 0,
             "target_date": "2025-06-30", "status": "achieved", "created_at": "2025-01-01Z"},
        ])
        _insert(conn, "user_sessions", [  # s3 is still running at as_of: it counts until as_of
            {"user_id": 1, "session_id": s, "start_time": t, "end_time": e} for s, t, e in
            [("s1", "2025-02-15T10:00Z", "2025-02-15T10:10Z"), ("s2", "2025-03-20T19:00Z", "2025-03-20T19:30Z"),
             ("s3", "2025-03-31T12:00Z", None)]
        ])
        _insert(conn, "user_events", [
            {"user_id": 1, "event_type": t, "event_data": f'{{"page": "{p}"}}', "timestamp": at, "session_id": s}
            for t, p, at, s in [
                ("budget_view", "budget", "2025-02-15T10:05Z", "s1"),  # before the 30 days
                ("page_view", "home", "2025-03-20T19:05Z", "s2"),
                ("click", "budget", "2025-03-20T19:10Z", "s2"),
                ("page_view", "goals", "2025-03-31T12:05Z", "s3"),
            ]
        ])
        # rates change on April 1st (the as_of day is not complete at as_of: the features use March 31st)
        _insert(conn, "market_conditions", [
            {"day": (MARKET_START + timedelta(days=i)).date(), "regime": "calm",
             "interest_rate": 0.04 if i < 121 else 0.05, "inflation_rate": 0.03, "index_level": 1000.0 + i}
            for i in range(126)
        ])
        _insert(conn, "coaching_interactions", [
            {"request_id": r, "user_id": 1, "action_id": a, "action_type": t, "propensity": 0.5,
             "model_version": "rules", "source": "batch", "served_at": s, "response": resp, "responded_at": ra}
            for r, a, t, s, resp, ra in [
                ("r1", 1, "SAVE_MORE", "2025-03-01T10:00Z", "accepted", "2025-03-10T10:00Z"),
                ("r2", 3, "REDUCE_SPENDING", "2025-03-05T10:00Z", "dismissed", "2025-03-06T10:00Z"),
                ("r3", 8, "REVIEW_BUDGET", "2025-03-30T10:00Z", "accepted", "2025-04-02T10:00Z"),
                ("r4", 0, "NO_ACTION", "2025-03-30T10:00Z", None, None),
            ]
        ])


@pytest.fixture(scope="module")
def built(engine: sa.Engine) -> dict:
    seed_hand_crafted(engine)
    build_analytics("test-features")
    return build_features(engine, AS_OF, "test-features")


@pytest.fixture(scope="module")
def snapshot(built: dict) -> pd.DataFrame:
    return _by_real_id(load_snapshot(built["staging_path"]))


def _by_real_id(frame: pd.DataFrame) -> pd.DataFrame:
    assert frame.user_id.map(is_pseudonym).all(), "the lake must hold pseudonyms only"
    return frame.assign(user_id=frame.user_id.map(REAL_ID)).set_index("user_id")


def test_snapshot_has_every_spec_feature_in_order_and_no_missing_values(built, snapshot):
    assert built["rows"] == 2 and built["staging_path"] == "features/staging/test-features.parquet"
    frame = load_snapshot(built["staging_path"])
    assert list(frame.columns) == ["user_id", "as_of", "feature_spec_version", *FEATURE_NAMES]
    values = frame[list(FEATURE_NAMES)].to_numpy()
    assert values.dtype == np.float64 and np.isfinite(values).all()
    assert set(frame.feature_spec_version) == {FEATURE_SPEC_VERSION}
    assert (frame.as_of == pd.Timestamp(AS_OF)).all()


def test_users_created_after_as_of_are_not_in_the_snapshot(snapshot):
    assert sorted(snapshot.index) == [1, 2]


def test_hand_crafted_user_gets_the_expected_numbers(snapshot):
    daily_spend = np.zeros(30)
    daily_spend[[4, 8, 10, 27]] = [1500, 300, 200, 100]  # March 6th, 10th, 12th, 29th in the window from March 2nd
    expected = {
        "monthly_income": 4000.0,
        "monthly_spend": 2100.0,
        "savings_rate": 1900 / 4000,
        "essential_share": 1800 / 2100,
        "discretionary_share": 300 / 2100,
        "spending_volatility": daily_spend.std() / daily_spend.mean(),
        "impulse_share": 200 / 2100,
        "checking_balance": 2500 + 100 + 500,
        "savings_balance": 6000 - 500,
        "emergency_fund_months": 5500 / 2100,
        "debt_total": 12000.0,  # the debt created after as_of is not counted
        "debt_to_income": 12000 / (12 * 4000),
        "max_debt_apr": 0.2,
        "goal_progress": (0.25 + 1.0) / 2,  # 1500 of 1000 is capped at 1
        "has_active_goal": 1.0,
        "sessions_30d": 2.0,
        "days_since_last_session": 0.5,
        "nudge_acceptance_rate": (1 + 1) / (3 + 2),  # r3 was accepted only after as_of; NO_ACTION is no nudge
        "age": 40.0,
        # v2
        "weekend_spend_share": 100 / 2100,
        "month_end_spend_share": 100 / 2100,
        "spend_trend": 2100 / (300 * 30 / 10),  # active 10 days (Feb 20th .. March 1st) before the window
        "days_to_payday": 30 - (26 + 15 / 24),  # paid March 5th 09:00, monthly
        "spending_velocity": 100 * 30 / 7 / 2100,
        "balance_trend": (4000 - 1500 - 300 - 200 - 250 - 100) / 4000,  # internal transfers cancel
        "dining_share": 200 / 2100,
        "shopping_share": 100 / 2100,
        "avg_session_minutes": (30 + 12 * 60) / 2,
        "features_used_30d": 2 + 3,  # page_view, click; home, budget, goals
        "clicks_per_session": 3 / 2,
        "saving_streak_weeks": 3.0,  # weeks ending March 31st, 24th, 17th; none in the week to March 10th
        "mobile_device": 1.0,
        "evening_session_share": 0.5,
        "goal_pace_ratio": (0.25 * 364 / 90 + 1.0 * 180 / 90) / 2,
        "goals_achieved": 1.0,
        "risk_tolerance": 0.0,
        "nudges_7d": 1.0,
        "days_since_last_nudge": 1 + 14 / 24,
        "market_interest_rate": 0.04,
        "market_inflation_rate": 0.03,
        "market_return_3m": (1000 + 120) / (1000 + 30) - 1,  # March 31st over December 31st
    }
    assert set(expected) == set(FEATURE_NAMES)
    got = snapshot.loc[1, list(expected)].astype(float).to_dict()
    assert got == pytest.approx(expected)


def test_user_without_data_gets_the_spec_defaults(snapshot):
    row = snapshot.loc[2]
    profile = {"age": 25.0, "risk_tolerance": 1.0, "mobile_device": 0.0}  # from the profile, not activity
    for f in FEATURES:
        if f.name not in profile and f.group != "market":
            assert row[f.name] == f.default, f.name
    assert row[list(profile)].to_dict() == profile
    assert row["market_interest_rate"] == snapshot.loc[1, "market_interest_rate"]


def test_naive_as_of_is_refused(engine, built):
    with pytest.raises(FeatureBuildError, match="timezone-aware"):
        build_features(engine, datetime(2025, 4, 1), "naive")


def test_airflow_pendulum_as_of_gives_the_same_snapshot(engine, built, snapshot):
    pendulum = pytest.importorskip("pendulum")
    as_of = pendulum.instance(AS_OF).in_timezone("Europe/Paris")  # what Airflow passes as data_interval_end
    result = build_features(engine, as_of, "test-features-pendulum")
    assert result["as_of"] == AS_OF.isoformat()
    pd.testing.assert_frame_equal(_by_real_id(load_snapshot(result["staging_path"])), snapshot)


def _sha(relpath: str) -> str:
    fs, root = lake.filesystem()
    with fs.open_input_stream(f"{root}/{relpath}") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _online(engine: sa.Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.text("select * from features.user_features_latest order by user_id"), conn)


def test_publish_is_idempotent_and_the_online_store_matches_the_snapshot(engine, built, snapshot):
    with engine.begin() as conn:  # a stale user from an older snapshot must disappear
        conn.execute(sa.text("delete from features.user_features_latest"))
        conn.execute(sa.text(
            f"insert into features.user_features_latest select 99, now(), 'old', {', '.join(['0'] * len(FEATURE_NAMES))}"
        ))
    first = publish_features(built, "test-features")
    digest, table = _sha(first["relpath"]), _online(engine)
    second = publish_features(built, "test-features")
    assert second == first
    assert _sha(second["relpath"]) == digest
    assert lake.list_files(first["relpath"].rsplit("/", 1)[0]) == ["features.parquet"]
    assert first["relpath"] == "features/as_of=2025-04-01T000000/features.parquet"
    assert first["path"] == lake.uri(first["relpath"])
    again = _online(engine)
    pd.testing.assert_frame_equal(again, table)
    assert list(again.user_id) == [1, 2]
    assert set(again.feature_spec_version) == {FEATURE_SPEC_VERSION}
    assert (again.as_of == pd.Timestamp(AS_OF)).all()
    published = _by_real_id(load_snapshot(first["path"]))
    np.testing.assert_allclose(again[list(FEATURE_NAMES)].to_numpy(), published[list(FEATURE_NAMES)].to_numpy())
    pd.testing.assert_frame_equal(published, snapshot)


def test_rows_after_as_of_do_not_change_the_features(engine, built, snapshot):
    """Runs last: it adds rows and rebuilds dbt."""
    with engine.begin() as conn:
        _insert(conn, "transactions", [
            _tx(1, 1, 9000, "income", "2025-04-01T00:00:01Z"),
            _tx(1, 1, -700, "dining", "2025-04-01T12:00Z", impulse=True),
            _tx(1, 1, -2000, "savings_transfer", "2025-04-20T09:00Z"),
            _tx(1, 2, 2000, "savings_transfer", "2025-04-20T09:00Z"),
        ])
        # the backend keeps current balances in step with the new transactions
        conn.execute(sa.text("update app.accounts set current_balance = current_balance + 6300 where account_id = 1"))
        conn.execute(sa.text("update app.accounts set current_balance = current_balance + 2000 where account_id = 2"))
        _insert(conn, "user_sessions", [{"user_id": 1, "session_id": "s4", "start_time": "2025-04-01T00:30Z"}])
        _insert(conn, "coaching_interactions", [
            {"request_id": "r5", "user_id": 1, "action_id": 1, "action_type": "SAVE_MORE", "propensity": 0.5,
             "model_version": "rules", "source": "online", "served_at": "2025-04-01T01:00Z",
             "response": "accepted", "responded_at": "2025-04-01T02:00Z"},
        ])
        _insert(conn, "goals", [
            {"user_id": 2, "goal_type": "holiday", "target_amount": 100, "current_amount": 10,
             "target_date": "2025-12-31", "status": "active", "created_at": "2025-04-02Z"},
        ])
        _insert(conn, "user_events", [
            {"user_id": 1, "event_type": "goal_update", "event_data": '{"page": "insights"}',
             "timestamp": "2025-04-01T00:35Z", "session_id": "s4"},
        ])
        # the running session ends after as_of; the market moves on April 1st and later
        conn.execute(sa.text("update app.user_sessions set end_time = '2025-04-01T03:00Z' where session_id = 's3'"))
        conn.execute(sa.text("update app.market_conditions set index_level = 1 where day >= '2025-04-01'"))
    build_analytics("test-features-later")
    later = build_features(engine, AS_OF, "test-features-later")
    pd.testing.assert_frame_equal(_by_real_id(load_snapshot(later["staging_path"])), snapshot)
