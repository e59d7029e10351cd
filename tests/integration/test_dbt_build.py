"""dbt build of the analytics schema on a real Postgres: the daily mart's grain, its totals, its tests."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from pipelines.analytics_build import DBT_PROJECT_DIR, AnalyticsBuildError, build_analytics, generate_docs

pytestmark = pytest.mark.slow

USERS = [  # user_id, created_at, birth_year
    (1, "2025-01-01T00:00:00Z", 1990),
    (2, "2025-01-01T00:00:00Z", 1980),
    (3, "2025-02-01T00:00:00Z", 2000),  # no transactions at all
]
ACCOUNTS = [  # account_id, user_id, account_type, current_balance
    (1, 1, "checking", 1800),
    (2, 1, "savings", 700),
    (3, 2, "checking", 50),
]
TRANSACTIONS = [  # user_id, account_id, amount, category, is_impulse, occurred_at
    (1, 1, 3000, "income", False, "2025-03-01T09:00:00Z"),
    (1, 1, -1000, "rent", False, "2025-03-01T18:00:00Z"),
    (1, 1, -80, "groceries", False, "2025-03-02T12:00:00Z"),
    (1, 1, -40, "dining", True, "2025-03-02T20:00:00Z"),
    (1, 1, -200, "savings_transfer", False, "2025-03-04T10:00:00Z"),
    (1, 2, 200, "savings_transfer", False, "2025-03-04T10:00:00Z"),
    (1, 1, -60, "shopping", True, "2025-03-06T23:59:59Z"),
    (1, 1, -120, "debt_payment", False, "2025-03-06T08:00:00Z"),
    (2, 3, -15, "transport", False, "2025-03-02T23:30:00-05:00"),  # 04:30 UTC on March 3rd
    (2, 3, -35, "health", False, "2025-03-03T10:00:00Z"),
]


def insert_rows(engine: sa.Engine, transactions: list[tuple]) -> None:
    """Hand-made app rows: USERS, ACCOUNTS and the given transactions."""
    with engine.begin() as conn:
        conn.execute(sa.text("truncate app.users restart identity cascade"))
        conn.execute(
            sa.text(
                "insert into app.users (user_id, created_at, birth_year, income_band, pay_frequency, "
                "monthly_income, region, device_type, risk_tolerance) "
                "values (:u, :c, :b, 'middle', 'monthly', 3000, 'north', 'ios', 'low')"
            ),
            [{"u": u, "c": c, "b": b} for u, c, b in USERS],
        )
        conn.execute(
            sa.text(
                "insert into app.accounts (account_id, user_id, account_type, opened_at, current_balance) "
                "values (:a, :u, :t, '2025-01-01', :bal)"
            ),
            [{"a": a, "u": u, "t": t, "bal": bal} for a, u, t, bal in ACCOUNTS],
        )
        conn.execute(
            sa.text(
                "insert into app.transactions (user_id, account_id, amount, category, is_impulse, occurred_at) "
                "values (:u, :a, :amt, :cat, :imp, :at)"
            ),
            [{"u": u, "a": a, "amt": amt, "cat": cat, "imp": imp, "at": at} for u, a, amt, cat, imp, at in transactions],
        )


@pytest.fixture(scope="module")
def built(engine: sa.Engine) -> dict:
    insert_rows(engine, TRANSACTIONS)
    return build_analytics("test-dbt")


def _daily(engine: sa.Engine, user_id: int) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("select * from analytics.fct_daily_user_financials where user_id = :u order by date_day"),
            {"u": user_id},
        ).all()


def test_build_reports_models_and_passing_tests(built):
    assert built["models"] >= 13  # 9 staging, 2 intermediate, 2 marts
    assert built["tests_passed"] > 50
    assert built["tests_failed"] == 0
    assert built["seconds"] > 0


def test_daily_mart_has_one_row_per_user_and_utc_day_including_quiet_days(engine, built):
    days = [str(r.date_day) for r in _daily(engine, 1)]
    assert days == [f"2025-03-0{d}" for d in range(1, 7)]  # 3rd and 5th have no transactions
    user2 = _daily(engine, 2)
    assert [str(r.date_day) for r in user2] == ["2025-03-03"]  # 23:30 at UTC-5 is the next UTC day
    assert user2[0].spend_essential == Decimal("50.00")
    assert _daily(engine, 3) == []
    with engine.connect() as conn:
        dupes = conn.execute(
            sa.text("select count(*) - count(distinct (user_id, date_day)) from analytics.fct_daily_user_financials")
        ).scalar()
    assert dupes == 0
    assert _daily(engine, 1)[2].user_day_key == "1-20250303"


def test_daily_totals_reconcile_with_app_transactions(engine, built):
    rows = _daily(engine, 1)
    total = {col: sum(getattr(r, col) for r in rows) for col in (
        "income", "spend_essential", "spend_discretionary", "spend_total", "impulse_spend",
        "savings_transfers", "debt_payments", "net_flow",
    )}
    assert total == {
        "income": 3000, "spend_essential": 1080, "spend_discretionary": 100, "spend_total": 1180,
        "impulse_spend": 100, "savings_transfers": 200, "debt_payments": 120, "net_flow": 1700,
    }
    with engine.connect() as conn:
        app_total = conn.execute(sa.text("select sum(amount) from app.transactions where user_id = 1")).scalar()
    assert total["net_flow"] == app_total
    # balances: the last day ends at the current balance, the first day starts from current - all flows
    assert rows[-1].checking_balance_eod == 1800 and rows[-1].savings_balance_eod == 700
    assert rows[0].checking_balance_eod == 1800 - 1500 + 2000  # opening 300, then +3000 -1000
    assert rows[0].savings_balance_eod == 500 and rows[3].savings_balance_eod == 700


def test_dim_users_has_every_user_with_current_position(engine, built):
    with engine.connect() as conn:
        dim = {r.user_id: r for r in conn.execute(sa.text("select * from analytics.dim_users")).all()}
    assert set(dim) == {1, 2, 3}
    assert dim[1].checking_balance == 1800 and dim[1].savings_balance == 700
    assert dim[3].accounts_count == 0 and dim[3].first_transaction_date is None
    with engine.connect() as conn:
        span = conn.execute(sa.text(
            "select min((occurred_at at time zone 'UTC')::date), max((occurred_at at time zone 'UTC')::date) "
            "from app.transactions where user_id = 1")).one()
    assert (dim[1].first_transaction_date, dim[1].last_transaction_date) == tuple(span)


def test_build_writes_nothing_into_the_repository(built):
    assert not (DBT_PROJECT_DIR / "target").exists()
    assert not (DBT_PROJECT_DIR / "logs").exists()


def test_generate_docs_returns_the_index_page(built):
    index = generate_docs()
    assert index.endswith("index.html")
    assert str(DBT_PROJECT_DIR) not in index


def test_unknown_category_fails_the_build_naming_the_test(engine, built):
    insert_rows(engine, [*TRANSACTIONS, (2, 3, -10, "crypto", False, "2025-03-03T12:00:00Z")])
    with pytest.raises(AnalyticsBuildError) as err:
        build_analytics("test-dbt-broken")
    assert "accepted_values_stg_app__transactions" in str(err.value)
    assert any("accepted_values" in name for name in err.value.failed)


def test_seeded_history_builds_with_one_row_per_user_day_and_reconciles(clean_db):
    """Runs last: replaces the hand-made rows with a synthetic population."""
    from pipelines.seed import seed

    seed(clean_db, users=200, days=21, seed=9)
    summary = build_analytics("test-dbt-seeded")
    assert summary["tests_failed"] == 0
    with clean_db.connect() as conn:
        expected_days = conn.execute(sa.text(
            "select coalesce(sum(last_day - first_day + 1), 0) from ("
            " select user_id, max((occurred_at at time zone 'UTC')::date) as last_day,"
            " min((occurred_at at time zone 'UTC')::date) as first_day from app.transactions group by user_id) t"
        )).scalar()
        rows = conn.execute(sa.text("select count(*) from analytics.fct_daily_user_financials")).scalar()
        mismatched = conn.execute(sa.text(
            "select count(*) from ("
            " select user_id, sum(amount) as total from app.transactions group by user_id) t"
            " join (select user_id, sum(net_flow) as total, sum(income) as income"
            "       from analytics.fct_daily_user_financials group by user_id) f using (user_id)"
            " join (select user_id, sum(amount) filter (where category = 'income') as income"
            "       from app.transactions group by user_id) i using (user_id)"
            " where t.total <> f.total or coalesce(i.income, 0) <> f.income"
        )).scalar()
    assert rows == expected_days > 0
    assert mismatched == 0


def _readme_queries() -> list[str]:
    readme = (DBT_PROJECT_DIR.parent / "README.md").read_text()
    section = readme.split("<!-- analyst-queries -->")[1].split("<!-- /analyst-queries -->")[0]
    return [block.split("```")[0] for block in section.split("```sql")[1:]]


def test_readme_analyst_queries_answer_on_the_seeded_marts(clean_db):
    """After the seeded build above: every example query of the README runs and returns rows."""
    queries = _readme_queries()
    assert len(queries) == 3
    with clean_db.connect() as conn:
        for sql in queries:
            rows = conn.execute(sa.text(sql)).all()
            assert rows, sql


def test_docs_describe_every_model_and_every_built_column(clean_db):
    import json
    from pathlib import Path

    target = Path(generate_docs()).parent
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    undocumented = []
    for uid, node in manifest["nodes"].items():
        if node["resource_type"] != "model" or node["package_name"] != "fincoach":
            continue
        if not node["description"].strip():
            undocumented.append(node["name"])
        built = {c.lower() for c in catalog["nodes"][uid]["columns"]}
        described = {name for name, col in node["columns"].items() if col["description"].strip()}
        undocumented += [f"{node['name']}.{c}" for c in sorted(built - described)]
    assert undocumented == []
    sources = [s for s in manifest["sources"].values() if s["package_name"] == "fincoach"]
    assert all(s["description"].strip() for s in sources)
    # the app's tables are feeds that can go stale; ops.deleted_rows (tombstones) is not
    feeds = [s for s in sources if s["source_name"] == "app"]
    assert feeds and all(s["freshness"]["error_after"]["count"] for s in feeds)


def test_fincoach_docs_generates_the_docs_an_analyst_opens(clean_db):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "fincoach.cli", "docs", "--no-serve"],
                         capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    index = out.stdout.strip().splitlines()[-1]
    assert index.endswith("index.html") and str(DBT_PROJECT_DIR) not in index


def test_hourly_builds_connect_with_jit_off(engine):
    """The hourly build's settings reach every connection dbt opens (libpq's PGOPTIONS), and go after it."""
    import psycopg

    from fincoach.db import connection_parts
    from pipelines.analytics_build import _HOURLY_PG_OPTIONS, _dbt_env

    parts = connection_parts()

    def jit() -> str:
        with psycopg.connect(host=parts["host"], port=parts["port"], user=parts["user"],
                             password=parts.get("password") or None, dbname=parts["dbname"]) as conn:
            return conn.execute("show jit").fetchone()[0]

    before = jit()
    with _dbt_env(_HOURLY_PG_OPTIONS):
        assert jit() == "off"
    assert jit() == before
