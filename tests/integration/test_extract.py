"""Postgres → lake extraction by watermark: complete first run, idempotent reruns, exact increments.

Rows land in the hour partition of their own updated_at (see pipelines.extract); here every row changes
within seconds of the extract, so all of them share the hour of the first interval end.
"""

from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from fincoach import lake
from fincoach.pseudonym import pseudonymise
from pipelines.extract import SOURCE_TABLES, extract_all, lake_schema, raw_partition
from pipelines.seed import seed

END = dt.date(2026, 3, 1)


def _now(engine: sa.Engine) -> dt.datetime:
    """The database clock (updated_at comes from it), as a tz-aware datetime."""
    with engine.connect() as conn:
        return conn.execute(sa.text("select clock_timestamp()")).scalar_one()


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"select count(*) from app.{t}")).scalar_one() for t in SOURCE_TABLES}


@pytest.fixture()
def seeded(clean_db: sa.Engine) -> sa.Engine:
    """30 users × 14 days in schema app, and a lake without raw extracts."""
    fs, root = lake.filesystem()
    if lake.exists("raw"):
        fs.delete_dir(f"{root}/raw")
    seed(clean_db, users=30, days=14, seed=3, end=END)
    return clean_db


def test_first_run_extracts_every_row_into_the_hour_of_the_interval(seeded):
    end = _now(seeded)
    result = extract_all(seeded, end, "run-1")
    counts = _counts(seeded)
    hour = (end - dt.timedelta(microseconds=1)).astimezone(dt.UTC)
    assert set(result) == set(SOURCE_TABLES)
    for table, info in result.items():
        partition = f"raw/{table}/dt={hour:%Y-%m-%d}/hour={hour:%H}"
        assert info["rows"] == counts[table] > 0, table
        assert info["low"] is None and info["high"] == end.astimezone(dt.UTC).isoformat()
        assert info["partition"] == partition == raw_partition(table, end)
        assert info["path"] == lake.uri(f"{partition}/run-1.parquet")
        assert lake.list_files(partition) == ["run-1.parquet"]
        assert lake.read_table(partition).num_rows == counts[table]
    with seeded.connect() as conn:
        runs = conn.execute(sa.text("select table_name, row_count, low_watermark, high_watermark, run_id "
                                    "from ops.extract_runs")).all()
        user = conn.execute(sa.text("select monthly_income, created_at from app.users where user_id = 7")).one()
        event = conn.execute(sa.text("select event_data::text from app.user_events where id = 1")).scalar_one()
    assert {(r.table_name, r.row_count, r.low_watermark, r.high_watermark, r.run_id) for r in runs} == {
        (t, counts[t], None, end, "run-1") for t in SOURCE_TABLES
    }
    users = lake.read_table(result["users"]["partition"]).to_pylist()
    assert users[6]["user_id"] == pseudonymise(7)  # the lake holds pseudonyms, never app ids
    assert users[6]["monthly_income"] == float(user.monthly_income)
    assert users[6]["created_at"] == user.created_at
    assert lake.read_table(result["user_events"]["partition"]).column("event_data")[0].as_py() == event
    with seeded.connect() as conn:
        pages = conn.execute(sa.text("select pages_visited::text from app.user_sessions order by id")).scalars().all()
    assert lake.read_table(result["user_sessions"]["partition"]).column("pages_visited").to_pylist() == pages


def test_parquet_files_have_the_declared_schema(seeded):
    result = extract_all(seeded, _now(seeded), "run-1")
    fs, root = lake.filesystem()
    for table, info in result.items():
        schema = pq.read_schema(f"{root}/{info['partition']}/run-1.parquet", filesystem=fs)
        assert schema.equals(lake_schema(table)), table


def test_rerun_of_the_same_interval_with_another_run_id_leaves_one_identical_file(seeded):
    end = _now(seeded)
    first = extract_all(seeded, end, "run-1")
    tables = {t: lake.read_table(first[t]["partition"]) for t in SOURCE_TABLES}
    again = extract_all(seeded, end, "run-2")
    for table in SOURCE_TABLES:
        names = {"path": None, "paths": None, "quarantine_paths": None, "seconds": None}
        assert {**again[table], **names} == {**first[table], **names}
        assert again[table]["path"].endswith("/run-2.parquet")
        assert lake.list_files(again[table]["partition"]) == ["run-2.parquet"]
        assert lake.read_table(again[table]["partition"]).equals(tables[table]), table
    with seeded.connect() as conn:
        runs = conn.execute(sa.text("select count(*), min(run_id), max(run_id) from ops.extract_runs")).one()
    assert tuple(runs) == (len(SOURCE_TABLES), "run-2", "run-2")


def test_later_interval_extracts_exactly_the_rows_updated_since(seeded):
    first_end = _now(seeded)
    extract_all(seeded, first_end, "run-1")
    with seeded.begin() as conn:
        conn.execute(sa.text("update app.goals set current_amount = current_amount + 1 where goal_id <= 3"))
        amounts = dict(conn.execute(sa.text("select goal_id, current_amount from app.goals where goal_id <= 3")).all())
    second_end = first_end + dt.timedelta(hours=1)
    result = extract_all(seeded, second_end, "run-2")
    goals = result["goals"]
    assert goals["rows"] == 3 and goals["low"] == first_end.astimezone(dt.UTC).isoformat()
    # the updated rows land in the hour they changed in, which the second run rewrote from the database
    rows = lake.read_table(raw_partition("goals", _now(seeded))).to_pylist()
    assert len(rows) == _counts(seeded)["goals"]
    assert {r["goal_id"]: r["current_amount"] for r in rows if r["goal_id"] <= 3} == {
        k: float(v) for k, v in amounts.items()
    }
    for table in set(SOURCE_TABLES) - {"goals"}:
        assert result[table]["rows"] == 0, table


def test_rerun_after_a_delete_removes_the_row_from_its_hour(seeded):
    first_end = _now(seeded)
    extract_all(seeded, first_end, "run-1")
    with seeded.begin() as conn:
        conn.execute(sa.text("update app.debts set balance = balance + 1 where debt_id = 1"))
    second_end = first_end + dt.timedelta(hours=1)
    assert extract_all(seeded, second_end, "run-2")["debts"]["rows"] == 1
    with seeded.begin() as conn:
        conn.execute(sa.text("delete from app.debts where debt_id = 1"))
    again = extract_all(seeded, second_end, "run-3")["debts"]
    assert again["rows"] == 0
    ids = lake.read_table("raw/debts").column("debt_id").to_pylist()
    assert 1 not in ids and len(ids) == _counts(seeded)["debts"]


def test_two_intervals_ending_in_the_same_hour_share_one_file_without_losing_rows(seeded):
    first_end = _now(seeded)
    first = extract_all(seeded, first_end, "run-1")
    with seeded.begin() as conn:
        conn.execute(sa.text("update app.goals set status = 'abandoned' where goal_id = 1"))
    hour_end = first_end.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    second = extract_all(seeded, hour_end, "run-2")
    goals = second["goals"]
    assert goals["partition"] == first["goals"]["partition"]
    # the file is re-read for the whole hour: every row of both intervals, goal 1 in its latest version
    assert goals["rows"] == 1 and goals["file_rows"] == first["goals"]["rows"]
    statuses = dict(zip(*lake.read_table(goals["partition"]).select(["goal_id", "status"]).to_pydict().values(),
                        strict=True))
    assert statuses[1] == "abandoned"
    assert lake.list_files(goals["partition"]) == ["run-2.parquet"]
    assert second["users"]["file_rows"] == first["users"]["rows"]  # the earlier interval's rows stay in the lake
    with seeded.connect() as conn:
        paths = set(conn.execute(sa.text("select path from ops.extract_runs where table_name = 'goals'")).scalars())
    assert paths == {goals["path"]}


@pytest.mark.parametrize(
    ("interval_end", "run_id", "message"),
    [
        (dt.datetime(2026, 3, 1, 12), "run-1", "timezone-aware"),
        ("2026-03-01T12:00:00+00:00", "run-1", "timezone-aware"),
        (dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC), "bad/run id", "run_id"),
    ],
)
def test_bad_interval_end_or_run_id_is_refused(engine, interval_end, run_id, message):
    with pytest.raises(ValueError, match=message):
        extract_all(engine, interval_end, run_id)


def test_a_column_added_to_an_app_table_stops_the_extract_with_a_schema_drift_error(clean_db):
    from pipelines.extract import SchemaDriftError, extract_table

    with clean_db.begin() as conn:
        conn.execute(sa.text("alter table app.debts add column lender text"))
    try:
        with pytest.raises(SchemaDriftError, match="lender"):
            extract_table(clean_db, "debts", dt.datetime.now(dt.UTC), "drift")
    finally:
        with clean_db.begin() as conn:
            conn.execute(sa.text("alter table app.debts drop column lender"))
