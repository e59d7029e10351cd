"""Incremental marts: hourly incremental dbt runs, late rows included, give the same tables as a full refresh."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines.analytics_build import INCREMENTAL_MARTS, build_analytics
from pipelines.synthetic import TABLES, generate

pytestmark = pytest.mark.slow

END = dt.date(2025, 5, 1)
KEYS = {"fct_transactions": "transaction_id", "fct_daily_user_financials": "user_day_key",
        "fct_coaching_outcomes": "interaction_id", "fct_sessions": "session_id",
        "fct_engagement_daily": "user_id, activity_date", "dim_users": "user_id"}


def _copy(conn: sa.Connection, table: str, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    import json

    cols = list(frame.columns)
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"copy app.{table} ({', '.join(cols)}) from stdin") as copy:
        for row in frame.itertuples(index=False):
            copy.write_row([json.dumps(v) if isinstance(v, dict | list) else (None if pd.isna(v) else v) for v in row])


def _marts(engine: sa.Engine) -> dict[str, pd.DataFrame]:
    with engine.connect() as conn:
        return {
            m: pd.read_sql(sa.text(f"select * from analytics.{m} order by {KEYS[m]}"), conn)
            for m in INCREMENTAL_MARTS
        }


def _arrive(engine: sa.Engine, tx: pd.DataFrame, interactions: pd.DataFrame, sessions: pd.DataFrame,
            events: pd.DataFrame) -> None:
    """New rows reach the app; the backend moves the current balances by the same amounts."""
    with engine.begin() as conn:
        _copy(conn, "transactions", tx)
        _copy(conn, "coaching_interactions", interactions)
        _copy(conn, "user_sessions", sessions)
        _copy(conn, "user_events", events)
        for account_id, amount in tx.groupby("account_id").amount.sum().items():
            conn.execute(sa.text("update app.accounts set current_balance = current_balance + :a where account_id = :i"),
                         {"a": float(amount), "i": int(account_id)})


def test_incremental_runs_with_late_rows_equal_a_full_refresh(clean_db):
    frames = generate(60, 45, 21, END)
    tx, ci = frames["transactions"], frames["coaching_interactions"]
    us, ev = frames["user_sessions"], frames["user_events"]
    t1, t2 = pd.Timestamp(END - dt.timedelta(days=12), tz="UTC"), pd.Timestamp(END - dt.timedelta(days=5), tz="UTC")
    late = (tx.occurred_at >= t1 - pd.Timedelta(days=2)) & (tx.occurred_at < t1) & (tx.index % 5 == 0)
    first = (tx.occurred_at < t1) & ~late
    second = ((tx.occurred_at >= t1) & (tx.occurred_at < t2)) | late  # two days of late rows come in with it
    third = tx.occurred_at >= t2
    accounts = frames["accounts"].copy()
    pending = tx[~first].groupby("account_id").amount.sum()
    accounts["current_balance"] = (accounts.current_balance - accounts.account_id.map(pending).fillna(0)).round(2)
    with clean_db.begin() as conn:
        _copy(conn, "users", frames["users"])
        _copy(conn, "accounts", accounts)
    # events arrive with their sessions, and some late: after the session row, in the next run
    late_ev = (ev["timestamp"] >= t1 - pd.Timedelta(days=1)) & (ev["timestamp"] < t1) & (ev.index % 4 == 0)
    _arrive(clean_db, tx[first], ci[ci.served_at < t1], us[us.start_time < t1], ev[(ev["timestamp"] < t1) & ~late_ev])
    assert build_analytics("inc-0", full_refresh=True)["tests_failed"] == 0

    _arrive(clean_db, tx[second], ci[(ci.served_at >= t1) & (ci.served_at < t2)],
            us[(us.start_time >= t1) & (us.start_time < t2)], ev[((ev["timestamp"] >= t1) & (ev["timestamp"] < t2)) | late_ev])
    with clean_db.begin() as conn:  # a response arrives late for an old nudge: its row changes
        conn.execute(sa.text("update app.coaching_interactions set response = 'accepted' "
                             "where id = (select min(id) from app.coaching_interactions where response is null)"))
        conn.execute(sa.text("update app.user_sessions set actions_count = actions_count + 1 "  # an old session grows
                             "where id = (select min(id) from app.user_sessions)"))
    run1 = build_analytics("inc-1")
    _arrive(clean_db, tx[third], ci[ci.served_at >= t2], us[us.start_time >= t2], ev[ev["timestamp"] >= t2])
    run2 = build_analytics("inc-2")
    for run in (run1, run2):
        assert run["full_refresh"] is False and "refreshed_after_drift" not in run
    incremental = _marts(clean_db)
    assert len(incremental["fct_transactions"]) == len(tx)

    build_analytics("inc-full", full_refresh=True)
    full = _marts(clean_db)
    for mart in INCREMENTAL_MARTS:
        # session seconds are double precision: summed in another order, equal up to rounding
        exact = mart != "fct_engagement_daily"
        pd.testing.assert_frame_equal(incremental[mart], full[mart], check_exact=exact, rtol=1e-12, obj=mart)


def test_every_app_table_feeds_a_staging_model():
    from pipelines.analytics_build import DBT_PROJECT_DIR

    staged = {p.stem.removeprefix("stg_app__") for p in (DBT_PROJECT_DIR / "models" / "staging").glob("stg_app__*.sql")}
    assert set(TABLES) | {"market_conditions"} == staged


def _untouched(engine: sa.Engine, table: str, sql: str) -> None:
    """Run `sql` with the touch_updated_at trigger of app.<table> off: a change as if made back then."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"alter table app.{table} disable trigger touch_updated_at"))
        conn.execute(sa.text(sql))
        conn.execute(sa.text(f"alter table app.{table} enable trigger touch_updated_at"))


def test_hourly_build_tests_only_the_recent_rows(clean_db):
    """recent_tests: a bad row written long ago is left to the full tests; a new bad row fails the hourly build."""
    from pipelines.analytics_build import AnalyticsBuildError
    from pipelines.seed import seed

    seed(clean_db, users=20, days=14, seed=4)
    # a history written over time
    _untouched(clean_db, "transactions", "update app.transactions set updated_at = occurred_at")
    build_analytics("recent-0", full_refresh=True)
    # one row that went bad back then
    _untouched(clean_db, "transactions", "update app.transactions set category = 'crypto' "
               "where transaction_id = (select min(transaction_id) from app.transactions)")

    hourly = build_analytics("recent-1", recent_tests=True)
    assert hourly["recent_tests"] and "refreshed_after_drift" not in hourly
    with pytest.raises(AnalyticsBuildError, match="accepted_values_stg_app__transactions_category"):
        build_analytics("recent-full-tests")

    with clean_db.begin() as conn:
        conn.execute(sa.text("insert into app.transactions (user_id, account_id, amount, category, is_impulse, "
                             "occurred_at) select user_id, account_id, -5, 'crypto', false, now() "
                             "from app.accounts order by account_id limit 1"))
    with pytest.raises(AnalyticsBuildError, match="accepted_values_stg_app__transactions_category"):
        build_analytics("recent-2", recent_tests=True)


def test_a_mart_built_by_an_older_release_is_rebuilt_with_its_new_columns(clean_db):
    """An upgrade that adds a column to an incremental mart: the next hourly build rebuilds it whole."""
    from pipelines.analytics_build import outdated_marts
    from pipelines.seed import seed

    seed(clean_db, users=10, days=7, seed=5)
    build_analytics("old-release", full_refresh=True)
    with clean_db.begin() as conn:  # the table as the release before this column built it
        conn.execute(sa.text("alter table analytics.fct_daily_user_financials drop column updated_at"))
    assert outdated_marts() == {"fct_daily_user_financials": ["updated_at"]}

    hourly = build_analytics("new-release", recent_tests=True)
    assert hourly["refreshed_after_schema_change"] == {"fct_daily_user_financials": ["updated_at"]}
    assert hourly["full_refresh"] is True and hourly["tests_failed"] == 0
    assert outdated_marts() == {}
    with clean_db.connect() as conn:
        assert conn.execute(sa.text("select count(*) from analytics.fct_daily_user_financials "
                                    "where updated_at is null")).scalar() == 0
    assert build_analytics("next-hour", recent_tests=True)["full_refresh"] is False


def test_hourly_build_finds_old_deleted_rows_by_their_tombstones_and_rebuilds(clean_db):
    """A row deleted in the app long after it was built leaves no recent updated_at: its tombstone
    (ops.deleted_rows) makes the hourly drift test fail, the build rebuilds the marts whole, and the
    tombstones go once their rows are out of the marts."""
    from pipelines.seed import seed

    seed(clean_db, users=20, days=14, seed=4)
    _untouched(clean_db, "transactions", "update app.transactions set updated_at = occurred_at")
    _untouched(clean_db, "coaching_interactions", "update app.coaching_interactions set updated_at = served_at")
    build_analytics("deleted-0", full_refresh=True)
    with clean_db.begin() as conn:  # the oldest rows: days beyond the lookback of the newest updated_at
        tx = conn.execute(sa.text("delete from app.transactions where transaction_id = "
                                  "(select min(transaction_id) from app.transactions) returning transaction_id")).scalar_one()
        ci = conn.execute(sa.text("delete from app.coaching_interactions where id = "
                                  "(select min(id) from app.coaching_interactions) returning id")).scalar_one()

    hourly = build_analytics("deleted-1", recent_tests=True)
    (drift,) = hourly["refreshed_after_drift"]  # both tombstones, and nothing else, failed the drift test
    assert "assert_incremental_marts_match_their_sources" in drift and "Got 2 results" in drift
    with clean_db.connect() as conn:
        assert conn.execute(sa.text("select count(*) from analytics.fct_transactions where transaction_id = :i"),
                            {"i": tx}).scalar_one() == 0
        assert conn.execute(sa.text("select count(*) from analytics.fct_coaching_outcomes where interaction_id = :i"),
                            {"i": ci}).scalar_one() == 0
        assert conn.execute(sa.text("select count(*) from ops.deleted_rows")).scalar_one() == 0  # repaired: pruned
    assert "refreshed_after_drift" not in build_analytics("deleted-2", recent_tests=True)


def test_bulk_and_cascading_deletes_leave_one_tombstone_per_row(clean_db):
    """The statement-level triggers record every row of a bulk delete and of a cascade from app.users."""
    from pipelines.seed import seed

    seed(clean_db, users=3, days=7, seed=5)
    with clean_db.begin() as conn:
        account = conn.execute(sa.text("select account_id from app.transactions group by 1 "
                                       "having count(*) > 1 order by 1 limit 1")).scalar_one()
        bulk = conn.execute(sa.text("delete from app.transactions where account_id = :a returning transaction_id"),
                            {"a": account}).scalars().all()
        user = conn.execute(sa.text("select min(user_id) from app.coaching_interactions")).scalar_one()
        cascaded_tx = conn.execute(sa.text("select transaction_id from app.transactions where user_id = :u"),
                                   {"u": user}).scalars().all()
        cascaded_ci = conn.execute(sa.text("select id from app.coaching_interactions where user_id = :u"),
                                   {"u": user}).scalars().all()
        owned = {t: conn.execute(sa.text(f"select count(*) from app.{t} where user_id = :u"), {"u": user}).scalar_one()
                 for t in ("accounts", "debts", "goals")}
        conn.execute(sa.text("delete from app.users where user_id = :u"), {"u": user})
        tombstones = conn.execute(sa.text("select table_name, row_id from ops.deleted_rows")).all()
    assert len(bulk) > 1 and cascaded_tx and cascaded_ci and owned["accounts"]
    expected = [("app.transactions", i) for i in [*bulk, *cascaded_tx]]
    expected += [("app.coaching_interactions", i) for i in cascaded_ci]
    # the user-keyed tombstones (migration 0008): one per cascaded row and the user's own, naming the user
    expected += [(f"app.{table}", user) for table, n in owned.items() for _ in range(n)] + [("app.users", user)]
    assert sorted(tombstones) == sorted(expected)


def _dated_history(engine: sa.Engine) -> int:
    """Seeded users whose every app row last changed on day `user_id` of 2025: only the highest user_id
    (returned) is within the late-row lookback of the newest change, so an hourly run of dim_users
    rebuilds that user and the ones changed since."""
    from pipelines.seed import seed

    seed(engine, users=20, days=14, seed=4)
    for table in ("users", "accounts", "debts", "goals", "transactions"):
        _untouched(engine, table, f"update app.{table} set updated_at = "
                   "timestamptz '2025-01-01 00:00+00' + user_id * interval '1 day'")
    with engine.connect() as conn:
        return conn.execute(sa.text("select max(user_id) from app.users")).scalar_one()


def _dim_users(engine: sa.Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.text("select * from analytics.dim_users order by user_id"), conn)


def _row_versions(engine: sa.Engine) -> dict[int, str]:
    """xmin of every dim_users row: a row the build rewrote (delete+insert) has a new one."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("select user_id, xmin::text from analytics.dim_users")).all())


def test_hourly_dim_users_rebuilds_only_the_changed_users_and_equals_a_full_refresh(clean_db):
    """A balance change, a deleted goal and a new transaction: the hourly build rewrites those three users
    (and the one within the lookback of the newest change), and dim_users equals a full refresh."""
    newest = _dated_history(clean_db)
    with clean_db.connect() as conn:
        moved, bought = conn.execute(sa.text("select user_id from app.users order by user_id limit 2")).scalars()
        gave_up, goal = conn.execute(sa.text(
            "select user_id, goal_id from app.goals where status = 'active' and user_id not in (:a, :b, :n) "
            "order by goal_id limit 1"), {"a": moved, "b": bought, "n": newest}).one()
    build_analytics("dim-0", full_refresh=True)
    before, versions = _dim_users(clean_db).set_index("user_id"), _row_versions(clean_db)

    with clean_db.begin() as conn:
        conn.execute(sa.text("update app.accounts set current_balance = current_balance + 10 where account_id = "
                             "(select min(account_id) from app.accounts where user_id = :u)"), {"u": moved})
        conn.execute(sa.text("delete from app.goals where goal_id = :g"), {"g": goal})
        conn.execute(sa.text("insert into app.transactions (user_id, account_id, amount, category, is_impulse, "
                             "occurred_at) select user_id, min(account_id), -12.5, 'groceries', false, now() "
                             "from app.accounts where user_id = :u group by user_id"), {"u": bought})
    hourly = build_analytics("dim-1", recent_tests=True)
    assert hourly["full_refresh"] is False and "refreshed_after_drift" not in hourly
    rewritten = {u for u, xmin in _row_versions(clean_db).items() if versions.get(u) != xmin}
    assert rewritten == {moved, gave_up, bought, newest}
    incremental = _dim_users(clean_db)
    after = incremental.set_index("user_id")
    assert after.active_goals_count[gave_up] == before.active_goals_count[gave_up] - 1  # found by its tombstone
    assert after.checking_balance[moved] + after.savings_balance[moved] + after.credit_card_balance[moved] \
        == before.checking_balance[moved] + before.savings_balance[moved] + before.credit_card_balance[moved] + 10
    assert after.last_transaction_date[bought] > before.last_transaction_date[bought]
    for user in (moved, bought):  # the watermark moved with their new rows
        assert after.updated_at[user] > before.updated_at[user]

    build_analytics("dim-full", full_refresh=True)
    pd.testing.assert_frame_equal(incremental, _dim_users(clean_db), check_exact=True)


def test_hourly_dim_users_follows_deletions_and_the_calendar(clean_db):
    """Rows deleted in the app leave no updated_at: a deleted debt rebuilds its user, a user deleted from
    app.users leaves dim_users (no full refresh), a stale age band is rebuilt, and the user tombstones go
    once they are older than the cutoff."""
    _dated_history(clean_db)
    with clean_db.begin() as conn:  # a user without transactions: deleting them leaves no row-id tombstone
        gone = conn.execute(sa.text(
            "insert into app.users (user_id, created_at, birth_year, income_band, pay_frequency, monthly_income, "
            "region, device_type, risk_tolerance, updated_at) values (1000, timestamptz '2025-01-01 00:00+00', 1990, 'low', "
            "'monthly', 2000, 'west', 'web', 'low', timestamptz '2025-01-02 00:00+00') returning user_id")).scalar_one()
        indebted, debt = conn.execute(sa.text("select user_id, debt_id from app.debts order by debt_id limit 1")).one()
        aged = conn.execute(sa.text("select user_id from app.users where birth_year < extract(year from now()) - 30 "
                                    "order by user_id limit 1")).scalar_one()
    build_analytics("tomb-0", full_refresh=True)
    full = _dim_users(clean_db)
    with clean_db.begin() as conn:
        conn.execute(sa.text("delete from app.debts where debt_id = :d"), {"d": debt})
        conn.execute(sa.text("delete from app.users where user_id = :u"), {"u": gone})
        # as if built in a year when the user was under 30: the new year moved their band
        conn.execute(sa.text("update analytics.dim_users set age_band = '18-29', user_segment = 'stale' "
                             "where user_id = :u"), {"u": aged})

    hourly = build_analytics("tomb-1", recent_tests=True)
    assert hourly["full_refresh"] is False and "refreshed_after_drift" not in hourly
    dim = _dim_users(clean_db).set_index("user_id")
    with clean_db.connect() as conn:
        debt_total = conn.execute(sa.text("select coalesce(sum(balance), 0) from app.debts where user_id = :u"),
                                  {"u": indebted}).scalar_one()
        tombstones = conn.execute(sa.text("select table_name, row_id from ops.deleted_rows order by 1")).all()
    assert dim.debt_total[indebted] == debt_total
    assert gone not in dim.index
    full_row = full.set_index("user_id").loc[aged]
    assert (dim.age_band[aged], dim.user_segment[aged]) == (full_row.age_band, full_row.user_segment)
    assert tombstones == [("app.debts", indebted), ("app.users", gone)]  # within the cutoff: kept

    with clean_db.begin() as conn:  # hours later, after a new change: the tombstones are past the cutoff
        conn.execute(sa.text("update ops.deleted_rows set deleted_at = deleted_at - interval '1 day'"))
        conn.execute(sa.text("update app.users set region = 'north' where user_id = :u"), {"u": indebted})
    build_analytics("tomb-2", recent_tests=True)
    with clean_db.connect() as conn:
        assert conn.execute(sa.text("select count(*) from ops.deleted_rows")).scalar_one() == 0
    assert "refreshed_after_drift" not in build_analytics("tomb-3")  # the whole-table drift test agrees


def test_dim_users_built_as_a_table_by_the_previous_release_is_rebuilt_incremental(clean_db):
    """The upgrade: dim_users was a table without the watermark; the next hourly build rebuilds it whole,
    with its unique index, and the one after runs incrementally."""
    from pipelines.seed import seed

    seed(clean_db, users=10, days=7, seed=5)
    build_analytics("table-release", full_refresh=True)
    with clean_db.begin() as conn:  # the table as the previous release built it
        conn.execute(sa.text("create table analytics.dim_users_previous as select * from analytics.dim_users"))
        conn.execute(sa.text("drop table analytics.dim_users cascade"))
        conn.execute(sa.text("alter table analytics.dim_users_previous drop column updated_at, "
                             "drop column transactions_updated_at"))
        conn.execute(sa.text("alter table analytics.dim_users_previous rename to dim_users"))

    hourly = build_analytics("incremental-release", recent_tests=True)
    assert hourly["refreshed_after_schema_change"] == {"dim_users": ["transactions_updated_at", "updated_at"]}
    with clean_db.connect() as conn:
        indexes = conn.execute(sa.text("select indexdef from pg_indexes where schemaname = 'analytics' "
                                       "and tablename = 'dim_users'")).scalars().all()
    assert any("UNIQUE" in i and "(user_id)" in i for i in indexes)
    assert build_analytics("next-hour", recent_tests=True)["full_refresh"] is False
