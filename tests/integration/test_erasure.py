"""Right to erasure: after `fincoach erase-user`, nothing of the user is left anywhere; other users are untouched."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from fincoach import lake
from fincoach.cli import main
from fincoach.pseudonym import pseudonymise
from pipelines.erasure import _tables_with_user_id, process_erasure_requests, request_erasure
from pipelines.extract import extract_all
from pipelines.seed import seed

VICTIM = 5


def _pg_counts(engine) -> dict[str, dict[int, int]]:
    """{table: {user_id: rows}} of every base table with a user_id column."""
    out = {}
    with engine.connect() as conn:
        for schema, table, _ in _tables_with_user_id(conn):
            rows = conn.execute(sa.text(f'select user_id, count(*) from "{schema}"."{table}" group by 1')).all()
            out[f"{schema}.{table}"] = dict(rows)
    return out


def _lake_rows() -> dict[str, list[dict]]:
    fs, root = lake.filesystem()
    out = {}
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet"):
            out[info.path.removeprefix(root)] = pq.read_table(info.path, filesystem=fs).to_pylist()
    return out


def _mentions(rows: list[dict], user: int) -> list[dict]:
    marks = {user, pseudonymise(user), str(user)}
    return [r for r in rows if r.get("user_id") in marks or any(pseudonymise(user) in str(v) for v in r.values())]


@pytest.fixture()
def platform(clean_db):
    """30 seeded users, extracted to the lake, with a feature snapshot and recommendations in both stores."""
    fs, root = lake.filesystem()
    for layer in ("raw", "quarantine", "features", "recommendations"):
        if lake.exists(layer):
            fs.delete_dir(f"{root}/{layer}")
    seed(clean_db, users=30, days=14, seed=3, end=dt.date(2026, 3, 1))
    with clean_db.connect() as conn:
        now = conn.execute(sa.text("select clock_timestamp()")).scalar_one()
    extract_all(clean_db, now, "run-1")
    users = list(range(1, 31))
    # a feature snapshot keyed by app id (today) and recommendations keyed by pseudonym (after the merge)
    lake.write_parquet(pa.table({"user_id": users, "x": [1.0] * 30}), "features/as_of=2026-03-01T000000/features.parquet")
    lake.write_parquet(pa.table({"user_id": [pseudonymise(u) for u in users], "rank": [1] * 30}),
                       "recommendations/dt=2026-03-01/run-1.parquet")
    with clean_db.begin() as conn:
        cols = conn.execute(sa.text(
            "select column_name from information_schema.columns where table_schema = 'features' "
            "and table_name = 'user_features_latest' order by ordinal_position")).scalars().all()
        values = ", ".join(["u", "now()", "'v1'", *["0"] * (len(cols) - 3)])
        conn.execute(sa.text(f"insert into features.user_features_latest select {values} from generate_series(1, 30) u"))
        conn.execute(sa.text(
            "insert into serving.recommendations (user_id, rank, action_id, action_type, action_text, score, "
            "propensity, model_version, run_id, generated_at, expires_at) "
            "select u, 1, 0, 'NO_ACTION', 'nothing', 0, 1, 'v1', 'run-1', now(), now() from generate_series(1, 30) u"))
    return clean_db


def test_erase_user_removes_every_trace_and_leaves_other_users_untouched(platform):
    before_pg, before_lake = _pg_counts(platform), _lake_rows()
    assert any(_mentions(rows, VICTIM) for rows in before_lake.values())
    assert all(VICTIM in before_pg[t] for t in ("app.users", "app.user_events", "features.user_features_latest",
                                                "serving.recommendations"))
    assert main(["erase-user", str(VICTIM)]) == 0

    after_pg, after_lake = _pg_counts(platform), _lake_rows()
    for table, per_user in before_pg.items():
        assert VICTIM not in after_pg[table], table
        assert after_pg[table] == {u: n for u, n in per_user.items() if u != VICTIM}, table
    for path, rows in after_lake.items():
        assert not _mentions(rows, VICTIM), path
    for path, rows in before_lake.items():  # other users' rows are all still there, unchanged
        kept = [r for r in rows if not _mentions([r], VICTIM)]
        assert after_lake.get(path, []) == kept, path
    with platform.connect() as conn:
        assert conn.execute(sa.text("select count(*) from ops.user_pseudonyms where user_id = :u"),
                            {"u": VICTIM}).scalar_one() == 0
        request = conn.execute(sa.text("select processed_at, details from ops.erasure_requests")).one()
        # the tombstones the deletes wrote that name the user (migration 0008) went with them
        assert conn.execute(sa.text("select count(*) from ops.deleted_rows where row_id = :u and table_name in "
                                    "('app.users', 'app.accounts', 'app.debts', 'app.goals')"),
                            {"u": VICTIM}).scalar_one() == 0
    assert request.processed_at is not None and request.details["removed"]["app.users"] == 1
    assert request.details["removed"]["ops.deleted_rows"] >= 2  # app.users and the user's accounts
    assert request.details["removed"]["lake features/"] == 1


def test_queued_requests_are_processed_by_the_hourly_task_once(platform):
    request_erasure(platform, 7)
    request_erasure(platform, 8)
    first = process_erasure_requests(platform)
    assert (first["requests"], first["users"]) == (2, 2)
    assert process_erasure_requests(platform) == {"requests": 0, "users": 0, "removed": {}}
    with platform.connect() as conn:
        left = conn.execute(sa.text("select count(*) from app.users where user_id in (7, 8)")).scalar_one()
    assert left == 0


def test_an_erasure_waits_for_a_running_extract_to_finish_writing(platform):
    import threading

    from pipelines.raw_lake import lake_lock

    request_erasure(platform, 9)
    done = threading.Event()
    with lake_lock(platform):  # an extract in progress
        worker = threading.Thread(target=lambda: (process_erasure_requests(platform), done.set()), daemon=True)
        worker.start()
        assert not done.wait(0.5)
    worker.join(30)
    assert done.is_set()
