"""Feature store at scale: a full build for 100k users x 90 days, then one hourly update at 1M events/day.

The same is run on a 30-day history first: the hourly update should cost the same on both (it follows
the new rows, not the history), while the full build grows with the history. Data are generated with numpy and loaded with COPY. The full build is `dbt build --full-refresh` plus
`build_features`; the hourly update is the incremental `dbt build` (tests on the recent rows, as the
hourly DAG runs it) plus `refresh_features`, after one hour of new rows at 1M events a day (transactions,
app events, sessions, nudges). Then a 3-hour batch on the same history: the update should cost about 3x
the hourly one if it follows the new rows (the fixed cost of starting dbt makes it less). Prints the
figures and their ratios. Run: FINCOACH_DATABASE_URL=... .venv/bin/pytest -q -m bench tests/bench/test_feature_store_bench.py -s
"""

from __future__ import annotations

import datetime as dt
import io
import os
import time

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines.analytics_build import build_analytics
from pipelines.feature_refresh import refresh_features
from pipelines.features import build_features, publish_features
from pipelines.market import generate_market

pytestmark = pytest.mark.bench

# The size; FINCOACH_BENCH_USERS=20000 runs a smaller population at the same event rate.
USERS = int(os.environ.get("FINCOACH_BENCH_USERS", "100000"))
# history lengths, shortest first (the last one prints the comparison)
HISTORY_DAYS = tuple(int(d) for d in os.environ.get("FINCOACH_BENCH_DAYS", "30,90").split(","))
EVENTS_PER_DAY = 1_000_000
# history per user and day (~2.3 rows: 1.4 transactions, 0.2 sessions, 0.6 app events, 0.08 nudges)
TX_PER_DAY, SESSIONS_PER_DAY, EVENTS_PER_SESSION, NUDGES_PER_DAY = 1.4, 0.2, 3.0, 0.08
SPEND = np.array(["groceries", "dining", "transport", "entertainment", "shopping", "health", "travel"], dtype=object)
US = 1_000_000


def _copy(conn: sa.Connection, table: str, frame: pd.DataFrame) -> None:
    raw = conn.connection.driver_connection
    for start in range(0, len(frame), 1_000_000):
        buf = io.StringIO()
        frame.iloc[start:start + 1_000_000].to_csv(buf, index=False, header=False)
        with raw.cursor() as cur, cur.copy(
            f"copy app.{table} ({', '.join(frame.columns)}) from stdin with (format csv)"
        ) as copy:
            copy.write(buf.getvalue())


def _stamp(us: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(us, unit="us", utc=True))


def _activity(rng: np.random.Generator, user_ids: np.ndarray, lo_us: int, hi_us: int, n_tx: int, n_sessions: int,
              n_events: int, n_nudges: int, first_ids: dict[str, int]) -> dict[str, pd.DataFrame]:
    """Random rows of every event table with event times in [lo, hi)."""
    u = rng.choice(user_ids, n_tx)
    income = rng.random(n_tx) < 0.04
    amount = np.where(income, rng.integers(150_000, 600_000, n_tx), -rng.lognormal(3.3, 0.9, n_tx) * 100).round() / 100
    tx = pd.DataFrame({
        "user_id": u, "account_id": 2 * u - 1, "amount": amount,
        "category": np.where(income, "income", SPEND[rng.integers(0, len(SPEND), n_tx)]),
        "is_impulse": (~income) & (rng.random(n_tx) < 0.15), "occurred_at": _stamp(rng.integers(lo_us, hi_us, n_tx)),
    })
    su = rng.choice(user_ids, n_sessions)
    start = rng.integers(lo_us, hi_us, n_sessions)
    sid = np.arange(first_ids["session"], first_ids["session"] + n_sessions)
    sessions = pd.DataFrame({
        "user_id": su, "session_id": [f"b-{i}" for i in sid], "start_time": _stamp(start),
        "end_time": _stamp(start + rng.integers(30, 1800, n_sessions) * US), "actions_count": 3,
    })
    pick = rng.integers(0, n_sessions, n_events)
    events = pd.DataFrame({
        "user_id": su[pick], "event_type": np.array(["page_view", "click", "budget_view"], dtype=object)[
            rng.integers(0, 3, n_events)],
        "event_data": '{"page": "home"}', "timestamp": _stamp(start[pick] + rng.integers(0, 60, n_events) * US),
        "session_id": [f"b-{i}" for i in sid[pick]],
    })
    nu = rng.choice(user_ids, n_nudges)
    rid = np.arange(first_ids["nudge"], first_ids["nudge"] + n_nudges)
    served = rng.integers(lo_us, hi_us, n_nudges)
    nudges = pd.DataFrame({
        "request_id": [f"b-{i}" for i in rid], "user_id": nu, "action_id": 1, "action_type": "SAVE_MORE",
        "propensity": 0.1, "model_version": "bench", "source": "historical", "served_at": _stamp(served),
        "response": np.where(rng.random(n_nudges) < 0.3, "accepted", "dismissed"),
        "responded_at": _stamp(np.minimum(served + 3600 * US, hi_us - 1)),
    })
    return {"transactions": tx, "user_sessions": sessions, "user_events": events, "coaching_interactions": nudges}


def _load_history(engine: sa.Engine, now: dt.datetime, days: int) -> int:
    rng = np.random.default_rng(0)
    ids = np.arange(1, USERS + 1)
    hi_us = int(now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * US)
    lo_us = hi_us - days * 86_400 * US
    users = pd.DataFrame({
        "user_id": ids, "created_at": _stamp(np.full(USERS, lo_us - 86_400 * US)),
        "birth_year": rng.integers(1950, 2005, USERS), "income_band": rng.choice(["low", "middle", "high"], USERS),
        "pay_frequency": rng.choice(["monthly", "biweekly"], USERS), "monthly_income": 3000,
        "region": "west", "device_type": rng.choice(["ios", "android", "web"], USERS),
        "risk_tolerance": rng.choice(["low", "medium", "high"], USERS),
    })
    accounts = pd.DataFrame({
        "account_id": np.arange(1, 2 * USERS + 1), "user_id": np.repeat(ids, 2),
        "account_type": np.tile(["checking", "savings"], USERS), "opened_at": users.created_at.repeat(2).to_numpy(),
        "current_balance": rng.integers(0, 500_000, 2 * USERS) / 100,
    })
    goals = pd.DataFrame({
        "user_id": ids[: USERS // 2], "goal_type": "vacation", "target_amount": 5000, "current_amount": 1200,
        "target_date": (now + dt.timedelta(days=200)).date(), "status": "active", "created_at": users.created_at[: USERS // 2],
    })
    debts = pd.DataFrame({
        "user_id": ids[: USERS // 3], "debt_type": "credit_card", "balance": 2500, "apr": 0.21, "min_payment": 50,
        "created_at": users.created_at[: USERS // 3],
    })
    n_sessions = int(USERS * days * SESSIONS_PER_DAY)
    history = _activity(rng, ids, lo_us, hi_us, int(USERS * days * TX_PER_DAY), n_sessions,
                        int(n_sessions * EVENTS_PER_SESSION), int(USERS * days * NUDGES_PER_DAY),
                        {"session": 1, "nudge": 1})
    market = generate_market(days, 0, now.date() + dt.timedelta(days=1))
    # a real history was written over time: its rows' updated_at is their event time, not the load time
    for frame, column in [(users, "created_at"), (accounts, "opened_at"), (goals, "created_at"),
                          (debts, "created_at"), (history["transactions"], "occurred_at"),
                          (history["user_sessions"], "start_time"), (history["user_events"], "timestamp"),
                          (history["coaching_interactions"], "served_at")]:
        frame["updated_at"] = frame[column]
    with engine.begin() as conn:
        # generated rows are consistent by construction: skip the per-row foreign-key triggers while loading
        conn.execute(sa.text("set local session_replication_role = replica"))
        for table, frame in [("users", users), ("accounts", accounts), ("goals", goals), ("debts", debts),
                             *history.items(), ("market_conditions", market)]:
            _copy(conn, table, frame)
        conn.execute(sa.text("select setval(pg_get_serial_sequence('app.users', 'user_id'), :n)"), {"n": USERS})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("analyze"))
    return sum(len(f) for f in history.values())


def _new_rows(engine: sa.Engine, t0: dt.datetime, t1: dt.datetime, batch: int) -> int:
    """The app's traffic at EVENTS_PER_DAY between t0 and t1 (41,666 rows an hour); `batch` keeps ids apart."""
    per_hour = EVENTS_PER_DAY // 24 * (t1 - t0).total_seconds() / 3600
    rng = np.random.default_rng(batch)
    lo, hi = int(t0.timestamp() * US), int(t1.timestamp() * US)
    first = {"session": batch * 10**9, "nudge": batch * 10**9}
    rows = _activity(rng, np.arange(1, USERS + 1), lo, hi, int(per_hour * 0.35), int(per_hour * 0.08),
                     int(per_hour * 0.55), int(per_hour * 0.02), first)
    with engine.begin() as conn:
        for table, frame in rows.items():
            _copy(conn, table, frame)
        flows = rows["transactions"].groupby("account_id").amount.sum()
        conn.execute(sa.text("create temp table bench_flows (account_id bigint, amount numeric) on commit drop"))
        _copy_temp = conn.connection.driver_connection
        with _copy_temp.cursor() as cur, cur.copy("copy bench_flows from stdin") as copy:
            for account_id, amount in flows.items():
                copy.write_row((int(account_id), round(float(amount), 2)))
        conn.execute(sa.text("update app.accounts a set current_balance = a.current_balance + f.amount "
                             "from bench_flows f where f.account_id = a.account_id"))
    return sum(len(f) for f in rows.values())


def _update(engine: sa.Engine, t0: dt.datetime, t1: dt.datetime, batch: int, run_id: str) -> dict:
    """New rows between t0 and t1, then the hourly update (incremental dbt build, feature refresh as of t1)."""
    new_rows = _new_rows(engine, t0, t1, batch)
    started = time.perf_counter()
    dbt = build_analytics(run_id, recent_tests=True)
    refreshed = refresh_features(engine, t1, run_id, overlap=dt.timedelta(0))
    seconds = time.perf_counter() - started
    assert refreshed["mode"] == "incremental", refreshed.get("full_reason")
    assert dbt["full_refresh"] is False and dbt["recent_tests"] and "refreshed_after_drift" not in dbt
    publish_features(refreshed, run_id)
    return {"new_rows": new_rows, "seconds": seconds, "dbt": dbt, "features": refreshed}


def _line(name: str, u: dict) -> str:
    dbt, f = u["dbt"], u["features"]
    return (f"\n  {name}: {u['seconds']:7.1f}s  ({u['new_rows']:,} new rows, {1000 * u['seconds'] / u['new_rows']:.2f} s "
            f"per 1k; dbt build {dbt['seconds']:.1f}s [models {dbt['model_seconds']:.1f}s, tests {dbt['test_seconds']:.1f}s "
            f"summed], features {f['seconds']:.1f}s [finding changed users {f['find_changed_seconds']:.1f}s; recomputed "
            f"{f['recomputed_by_group']} of {f['rows']:,} users])")


_RESULTS: dict[int, dict] = {}


@pytest.mark.parametrize("days", HISTORY_DAYS)
def test_hourly_incremental_update_versus_full_build(clean_db, days):
    now = dt.datetime.now(dt.UTC)
    if now.hour >= 19:
        pytest.skip("the updates (1 + 3 hours) would cross a UTC day (a full build by design): run it before 19:00")
    started = time.perf_counter()
    history_rows = _load_history(clean_db, now, days)
    load_s = time.perf_counter() - started
    t0 = dt.datetime.now(dt.UTC)
    t1, t2 = t0 + dt.timedelta(hours=1), t0 + dt.timedelta(hours=4)

    started = time.perf_counter()
    full_dbt = build_analytics("bench-full", full_refresh=True)
    built = build_features(clean_db, t0, "bench-full")
    full_s = time.perf_counter() - started
    publish_features(built, "bench-full")

    # proportionality: the same history, then 1 hour and 3 hours of new rows
    hour = _update(clean_db, t0, t1, 1, "bench-hour")
    three = _update(clean_db, t1, t2, 2, "bench-3-hours")
    _RESULTS[days] = {"full": full_s, "hour": hour["seconds"], "rows": history_rows}

    print(
        f"\nfeature store bench: {USERS:,} users x {days} days, {history_rows:,} history rows (loaded in {load_s:.0f}s)"
        f"\n  full build   : {full_s:7.1f}s  (dbt build --full-refresh {full_dbt['seconds']:.1f}s [models "
        f"{full_dbt['model_seconds']:.1f}s, tests {full_dbt['test_seconds']:.1f}s summed], features {built['seconds']:.1f}s)"
        + _line("hourly update", hour) + _line("3-hour update", three)
        + f"\n  ratio full / hourly: {full_s / hour['seconds']:.1f}x   features only: "
        f"{built['seconds'] / hour['features']['seconds']:.1f}x   dbt only: {full_dbt['seconds'] / hour['dbt']['seconds']:.1f}x"
        f"\n  3-hour / 1-hour update: {three['seconds'] / hour['seconds']:.2f}x for {three['new_rows'] / hour['new_rows']:.1f}x "
        f"the new rows"
        f"\n  slowest dbt nodes, full  : {full_dbt['slowest']}"
        f"\n  slowest dbt nodes, hourly: {hour['dbt']['slowest']}"
    )
    if len(_RESULTS) > 1 and days == max(_RESULTS):
        short = min(_RESULTS)
        print(f"\n  history {days} / {short} days: {_RESULTS[days]['rows'] / _RESULTS[short]['rows']:.1f}x the rows, "
              f"full build {_RESULTS[days]['full'] / _RESULTS[short]['full']:.2f}x, "
              f"hourly update {_RESULTS[days]['hour'] / _RESULTS[short]['hour']:.2f}x")
    assert hour["features"]["users_recomputed"] < hour["features"]["rows"]
    assert hour["seconds"] < full_s
