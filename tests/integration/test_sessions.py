"""app.user_sessions built from events: right start/end/actions/pages, idempotent, never shrinks app rows."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa

from pipelines.seed import seed
from pipelines.sessions import build_sessions

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=30)
M = dt.timedelta(minutes=1)


def _event(conn, session: str, event_type: str, at: dt.datetime, page: str | None = None) -> None:
    conn.execute(
        sa.text('insert into app.user_events (user_id, event_type, event_data, "timestamp", session_id) '
                "values (1, :t, cast(:d as jsonb), :ts, :s)"),
        {"t": event_type, "d": json.dumps({"page": page} if page else {}), "ts": at, "s": session},
    )


def _sessions(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "select session_id, start_time, end_time, actions_count, pages_visited, updated_at "
            "from app.user_sessions order by session_id")).all()]


def test_sessions_are_built_from_events_and_a_rerun_writes_nothing(clean_db, users_factory):
    users_factory(clean_db, (1,))
    with clean_db.begin() as conn:
        _event(conn, "s-a", "session_start", T0)
        _event(conn, "s-a", "page_view", T0 + M, "home")
        _event(conn, "s-a", "click", T0 + 2 * M, "budget")
        _event(conn, "s-a", "page_view", T0 + 3 * M, "home")
        _event(conn, "s-a", "session_end", T0 + 5 * M)
        _event(conn, "s-b", "api_call", T0 + 10 * M)
        _event(conn, "s-b", "api_call", T0 + 12 * M)
    end = dt.datetime.now(dt.UTC) + M
    assert build_sessions(clean_db, end)["sessions_written"] == 2
    built = _sessions(clean_db)
    assert [r[:5] for r in built] == [
        ("s-a", T0, T0 + 5 * M, 3, ["home", "budget"]),
        ("s-b", T0 + 10 * M, T0 + 12 * M, 2, []),
    ]
    assert build_sessions(clean_db, end)["sessions_written"] == 0
    assert _sessions(clean_db) == built  # not even updated_at moved
    with clean_db.begin() as conn:
        _event(conn, "s-a", "page_view", T0 + 4 * M, "goals")  # a late event of a closed session
    assert build_sessions(clean_db, dt.datetime.now(dt.UTC) + M)["sessions_written"] == 1
    assert _sessions(clean_db)[0][3:5] == (4, ["home", "budget", "goals"])


def test_sessions_the_app_wrote_keep_their_detail(clean_db):
    seed(clean_db, users=20, days=10, seed=5, end=dt.date(2026, 3, 1))
    before = [r for r in _sessions(clean_db) if r[2] is not None]
    build_sessions(clean_db, dt.datetime.now(dt.UTC) + M)
    after = {r[0]: r for r in _sessions(clean_db)}
    assert before and all(after[r[0]] == r for r in before)
