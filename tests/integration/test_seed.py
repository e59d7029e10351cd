"""Loading synthetic data into schema app: complete, rerun-safe, atomic, and friendly to later inserts."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from pipelines import seed as seed_module
from pipelines.seed import SeedError, seed
from pipelines.synthetic import TABLES, generate

END = dt.date(2026, 3, 1)
ARGS = {"users": 30, "days": 14, "seed": 3, "end": END}


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"select count(*) from app.{t}")).scalar_one() for t in TABLES}


def test_seed_loads_exactly_what_the_generator_makes(clean_db):
    result = seed(clean_db, **ARGS)
    frames = generate(30, 14, 3, END)
    expected = {t: len(frames[t]) for t in TABLES}
    assert result == {"generated": expected, "inserted": expected}
    assert _counts(clean_db) == expected
    with clean_db.connect() as conn:
        balance = conn.execute(sa.text("select current_balance from app.accounts where account_id = 2")).scalar_one()
        first = conn.execute(sa.text("select * from app.transactions where transaction_id = 1")).mappings().one()
    assert float(balance) == pytest.approx(frames["accounts"].loc[1, "current_balance"], abs=0.005)
    row = frames["transactions"].iloc[0]
    assert float(first["amount"]) == pytest.approx(row["amount"], abs=0.005)
    assert first["category"] == row["category"]
    assert pd.Timestamp(first["occurred_at"]) == row["occurred_at"]


def test_second_identical_seed_inserts_nothing_and_changes_nothing(clean_db):
    seed(clean_db, **ARGS)
    before = _counts(clean_db)
    again = seed(clean_db, **ARGS)
    assert again["inserted"] == dict.fromkeys(TABLES, 0)
    assert again["generated"] == before
    assert _counts(clean_db) == before


def test_inserts_without_an_id_continue_after_the_seeded_ids(clean_db):
    seed(clean_db, **ARGS)
    with clean_db.begin() as conn:
        new_id = conn.execute(sa.text(
            "insert into app.users (created_at, birth_year, income_band, pay_frequency, monthly_income, region, "
            "device_type, risk_tolerance) values (now(), 1990, 'middle', 'monthly', 4000, 'west', 'ios', 'low') "
            "returning user_id"
        )).scalar_one()
        event_id = conn.execute(sa.text(
            "insert into app.user_events (user_id, event_type, \"timestamp\") values (:u, 'page_view', now()) "
            "returning id"
        ), {"u": new_id}).scalar_one()
    assert new_id == 31
    assert event_id == _counts(clean_db)["user_events"]


def test_smallest_population_loads(clean_db):
    result = seed(clean_db, users=1, days=7, seed=0, end=END)
    assert result["inserted"]["users"] == 1
    assert result["inserted"] == _counts(clean_db)


def test_json_columns_are_loaded_as_json_values(clean_db):
    seed(clean_db, **ARGS)
    with clean_db.connect() as conn:
        kinds = conn.execute(sa.text(
            "select (select array_agg(distinct jsonb_typeof(event_data)) from app.user_events), "
            "(select array_agg(distinct jsonb_typeof(context)) from app.user_events), "
            "(select array_agg(distinct jsonb_typeof(pages_visited)) from app.user_sessions), "
            "(select array_agg(distinct jsonb_typeof(context)) from app.financial_decisions)"
        )).one()
    assert [list(k) for k in kinds] == [["object"], ["object"], ["array"], ["object"]]


def test_a_failed_load_leaves_no_rows_behind(clean_db, monkeypatch):
    def broken(*args, **kwargs):
        frames = generate(*args, **kwargs)
        frames["coaching_interactions"].loc[0, "propensity"] = 2.0  # violates the check constraint, loaded last
        return frames

    monkeypatch.setattr(seed_module, "generate", broken)
    with pytest.raises(psycopg.errors.CheckViolation):
        seed(clean_db, **ARGS)
    assert _counts(clean_db) == dict.fromkeys(TABLES, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"users": 0}, "users"),
        ({"users": -5}, "users"),
        ({"days": 3}, "days"),
        ({"days": 100_000}, "days"),
        ({"seed": -1}, "seed"),
        ({"end": dt.datetime(2026, 3, 1, tzinfo=dt.UTC)}, "end"),
    ],
)
def test_bad_arguments_raise_a_seed_error_naming_the_argument(engine, kwargs, message):
    with pytest.raises(SeedError, match=message):
        seed(engine, **{**ARGS, **kwargs})
