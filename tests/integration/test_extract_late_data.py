"""Late rows, quarantine and privacy of the extract: hourly runs, a rerun and a backfill give the same lake bytes."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.fs as pafs
import pytest
import sqlalchemy as sa

from fincoach import lake
from fincoach.cli import main
from fincoach.pseudonym import pseudonymise
from fincoach.settings import reload_settings
from pipelines import raw_lake
from pipelines.extract import SOURCE_TABLES, backfill, extract_all

H = dt.timedelta(hours=1)
T0 = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=12)


def _snapshot() -> dict[str, list[bytes]]:
    """Every Parquet file of raw/ and quarantine/ by folder: {folder: [file bytes, ...]} (names carry run ids)."""
    fs, root = lake.filesystem()
    out: dict[str, list[bytes]] = {}
    for layer in ("raw", "quarantine"):
        if not lake.exists(layer):
            continue
        for info in fs.get_file_info(pafs.FileSelector(f"{root}/{layer}", recursive=True)):
            if info.type == pafs.FileType.File and info.base_name.endswith(".parquet"):
                folder = info.path.removeprefix(root).rsplit("/", 1)[0]
                with fs.open_input_file(info.path) as f:
                    out.setdefault(folder, []).append(f.read())
    return {k: sorted(v) for k, v in sorted(out.items())}


def _wipe_lake() -> None:
    fs, root = lake.filesystem()
    for layer in ("raw", "quarantine"):
        if lake.exists(layer):
            fs.delete_dir(f"{root}/{layer}")


def _event(conn, user: int, updated_at: dt.datetime, event_type: str = "page_view", data: object = None,
           timestamp: dt.datetime | None = None) -> None:
    conn.execute(
        sa.text(
            'insert into app.user_events (user_id, event_type, event_data, "timestamp", session_id, context, updated_at) '
            "values (:u, :t, cast(:d as jsonb), :ts, 's-1', cast(:c as jsonb), :up)"
        ),
        {"u": user, "t": event_type, "d": json.dumps({"page": "home"} if data is None else data),
         "ts": timestamp or updated_at - dt.timedelta(minutes=1), "c": json.dumps({"device": "ios"}), "up": updated_at},
    )


def _decision(conn, user: int, updated_at: dt.datetime, amount: float) -> None:
    conn.execute(
        sa.text(
            'insert into app.financial_decisions (user_id, decision_type, amount, context, "timestamp", updated_at) '
            "values (:u, 'set_budget', :a, '{}'::jsonb, :up, :up)"
        ),
        {"u": user, "a": amount, "up": updated_at},
    )


@pytest.fixture()
def users(clean_db: sa.Engine, users_factory) -> sa.Engine:
    _wipe_lake()
    users_factory(clean_db, (1, 2, 3), created_at=T0 - dt.timedelta(days=1))
    return clean_db


def _hourly_runs_with_late_and_bad_rows(engine: sa.Engine) -> None:
    m = dt.timedelta(minutes=1)
    with engine.begin() as conn:
        _event(conn, 1, T0 + 10 * m)
        _event(conn, 2, T0 + 20 * m, data={"page": "budget", "note": "call me on +44 20 7946 0958",
                                             "contact": "jane.doe@example.com"})
        _event(conn, 2, T0 + 25 * m, event_type="teleport")  # unknown event type
        _event(conn, 3, T0 + 26 * m, data="not an object")  # malformed JSON payload
        _event(conn, 3, T0 + 27 * m, data={"page": "x" * 9000})  # oversized payload
        _event(conn, 3, T0 + 28 * m, timestamp=T0 + dt.timedelta(days=5))  # far in the future
        _decision(conn, 1, T0 + 29 * m, -10.0)  # a decision amount cannot be negative
        _decision(conn, 1, T0 + 31 * m, 25.0)
    extract_all(engine, T0 + H, "hourly-1")
    with engine.begin() as conn:
        _event(conn, 1, T0 + 30 * m)  # committed an hour late, within the overlap
        _event(conn, 2, T0 + H + 5 * m)
    extract_all(engine, T0 + 2 * H, "hourly-2")
    with engine.begin() as conn:
        _event(conn, 3, T0 + 50 * m)  # two hours late: the last run whose overlap reaches hour 1
        _event(conn, 1, T0 + 2 * H + 5 * m)
    extract_all(engine, T0 + 3 * H, "hourly-3")
    extract_all(engine, T0 + 4 * H, "hourly-4")


def _hour_rows(table: str, key_time: dt.datetime, layer: str = "raw") -> list[dict]:
    folder = raw_lake.partition(layer, table, raw_lake.hour_key(key_time))
    return lake.read_table(folder).to_pylist() if lake.list_files(folder) else []


def test_rows_committed_late_within_the_overlap_land_in_their_own_hour(users):
    _hourly_runs_with_late_and_bad_rows(users)
    first_hour = _hour_rows("user_events", T0 + H)
    minutes = sorted(int((r["updated_at"] - T0).total_seconds() // 60) for r in first_hour)
    assert minutes == [10, 20, 30, 50]
    assert len(_hour_rows("user_events", T0 + 2 * H)) == 1 and len(_hour_rows("user_events", T0 + 3 * H)) == 1


def test_every_rejected_row_is_quarantined_with_its_reason_and_counts_reconcile(users):
    _hourly_runs_with_late_and_bad_rows(users)
    reasons = sorted(r["reason"] for r in _hour_rows("user_events", T0 + H, "quarantine"))
    assert reasons == [
        "future_timestamp:timestamp", "malformed_json:event_data", "oversized_payload:event_data",
        "unknown_event_type:event_type",
    ]
    assert [r["reason"] for r in _hour_rows("financial_decisions", T0 + H, "quarantine")] == [
        "negative_amount:amount"
    ]
    with users.connect() as conn:
        rows = conn.execute(sa.text(
            "select table_name, interval_end, extracted, accepted, quarantined, reasons from ops.quarantine_counts"
        )).all()
        in_db = conn.execute(sa.text("select count(*) from app.user_events")).scalar_one()
    assert len(rows) == 4 * len(SOURCE_TABLES)
    for r in rows:
        assert r.extracted == r.accepted + r.quarantined == r.accepted + sum(r.reasons.values()), r
    last = {r.table_name: r for r in rows if r.interval_end == T0 + 3 * H}  # its window holds hours 1 to 3
    assert last["user_events"].extracted == in_db and last["user_events"].quarantined == 4
    lake_rows = sum(len(_hour_rows("user_events", T0 + k * H, layer)) for k in (1, 2, 3)
                    for layer in ("raw", "quarantine"))
    assert lake_rows == in_db  # nothing lost, nothing doubled


def test_no_pii_and_no_app_user_ids_reach_the_lake(users):
    _hourly_runs_with_late_and_bad_rows(users)
    events = _hour_rows("user_events", T0 + H) + _hour_rows("user_events", T0 + H, "quarantine")
    text = json.dumps([r["event_data"] for r in events] + [r["context"] for r in events])
    assert "jane.doe" not in text and "7946" not in text and "call me" not in text
    note = next(json.loads(r["event_data"]) for r in events if "budget" in r["event_data"])
    assert note == {"page": "budget", "note": "[redacted]", "contact": "[redacted]"}
    assert {r["user_id"] for r in events} <= {pseudonymise(u) for u in (1, 2, 3)}
    assert {r["user_id"] for r in lake.read_table("raw/users").to_pylist()} == {pseudonymise(u) for u in (1, 2, 3)}
    with users.connect() as conn:
        mapping = dict(conn.execute(sa.text("select user_id, pseudonym from ops.user_pseudonyms")).all())
    assert mapping == {u: pseudonymise(u) for u in (1, 2, 3)}


def test_rerun_of_an_hour_and_backfill_of_the_range_rewrite_the_same_bytes(users, monkeypatch):
    _hourly_runs_with_late_and_bad_rows(users)
    hourly = _snapshot()
    assert len(hourly) >= 6  # users, events of three hours, decisions, and quarantine
    extract_all(users, T0 + 2 * H, "rerun")
    assert _snapshot() == hourly
    # the backfill reads every table in 3 primary-key slices on 3 connections: still the same bytes
    monkeypatch.setenv("FINCOACH_EXTRACT_WORKERS", "3")
    reload_settings()
    monkeypatch.setattr("pipelines.extract._MIN_SLICE", 1)
    _wipe_lake()
    with users.begin() as conn:
        conn.execute(sa.text("truncate ops.extract_runs, ops.quarantine_counts"))
    totals = backfill(users, T0, T0 + 4 * H, "backfill")
    monkeypatch.delenv("FINCOACH_EXTRACT_WORKERS")
    reload_settings()
    assert totals["user_events"]["intervals"] == 4
    assert _snapshot() == hourly


def test_a_row_later_than_the_overlap_is_missed_hourly_and_caught_by_a_backfill(users):
    _hourly_runs_with_late_and_bad_rows(users)
    with users.begin() as conn:
        _event(conn, 2, T0 + dt.timedelta(minutes=40))  # four hours late
    extract_all(users, T0 + 5 * H, "hourly-5")
    assert len(_hour_rows("user_events", T0 + H)) == 4
    assert main(["backfill-extract", T0.isoformat(), (T0 + 5 * H).isoformat()]) == 0
    assert len(_hour_rows("user_events", T0 + H)) == 5
