"""dbt build of the behaviour marts (fct_sessions, fct_engagement_daily, fct_decisions) on hand-made rows."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from pipelines.analytics_build import build_analytics

pytestmark = pytest.mark.slow

SESSIONS = [  # user, session, start, end, actions, pages
    (1, "s-1", "2026-03-01T09:00:00Z", "2026-03-01T09:10:00Z", 3, ["home", "budget"]),
    (1, "s-2", "2026-03-01T20:00:00Z", "2026-03-01T20:05:00Z", 1, ["goals"]),
    (2, "s-3", "2026-03-02T23:59:00Z", None, 2, ["home"]),
]
EVENTS = [  # user, session, type, data, at
    (1, "s-1", "page_view", {"page": "home"}, "2026-03-01T09:01:00Z"),
    (1, "s-1", "click", {"page": "budget", "element": "button"}, "2026-03-01T09:02:00Z"),
    (1, "s-1", "nudge_view", {"action_id": 3}, "2026-03-01T09:03:00Z"),
    (1, "s-2", "page_view", {"page": "goals"}, "2026-03-01T20:01:00Z"),
    (2, "s-3", "page_view", {"page": "home"}, "2026-03-03T00:01:00Z"),
]
DECISIONS = [  # user, type, amount, category, outcome, source, at
    (1, "set_budget", 100, "dining", "completed", "nudge", "2026-03-01T10:00:00Z"),
    (2, "set_budget", 50, "dining", "abandoned", "organic", "2026-03-01T11:00:00Z"),
    (2, "set_budget", 70, "dining", None, "organic", "2026-03-01T12:00:00Z"),
    (1, "transfer_to_savings", 200, None, "completed", "organic", "2026-03-01T13:00:00Z"),
]


def _rows(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql)).all()]


def test_behaviour_marts_have_their_grain_and_figures(clean_db, users_factory):
    users_factory(clean_db, (1, 2))
    with clean_db.begin() as conn:
        for u, s, start, end, n, pages in SESSIONS:
            conn.execute(sa.text(
                "insert into app.user_sessions (user_id, session_id, start_time, end_time, actions_count, "
                "pages_visited) values (:u, :s, :a, :b, :n, cast(:p as jsonb))"),
                {"u": u, "s": s, "a": start, "b": end, "n": n, "p": json.dumps(pages)})
        for u, s, t, d, at in EVENTS:
            conn.execute(sa.text(
                'insert into app.user_events (user_id, session_id, event_type, event_data, "timestamp") '
                "values (:u, :s, :t, cast(:d as jsonb), :at)"), {"u": u, "s": s, "t": t, "d": json.dumps(d), "at": at})
        for u, t, amt, cat, out, src, at in DECISIONS:
            conn.execute(sa.text(
                'insert into app.financial_decisions (user_id, decision_type, amount, category, outcome, context, '
                '"timestamp") values (:u, :t, :a, :c, :o, cast(:ctx as jsonb), :at)'),
                {"u": u, "t": t, "a": amt, "c": cat, "o": out, "ctx": json.dumps({"source": src}), "at": at})
    result = build_analytics("marts-test")
    assert result["tests_failed"] == 0

    assert _rows(clean_db, "select session_id, duration_seconds, is_open, pages_visited_count, events_count "
                           "from analytics.fct_sessions order by 1") == [
        ("s-1", 600.0, False, 2, 3), ("s-2", 300.0, False, 1, 1), ("s-3", None, True, 1, 1),
    ]
    assert _rows(clean_db, "select user_id, activity_date::text, sessions_count, total_session_seconds, "
                           "events_count, features_used, nudges_viewed from analytics.fct_engagement_daily "
                           "order by 1, 2") == [
        (1, "2026-03-01", 2, 900.0, 4, 4, 1),  # pages home, budget, goals + the nudge_view event
        (2, "2026-03-02", 1, 0.0, 0, 0, 0),  # the session started before midnight
        (2, "2026-03-03", 0, 0.0, 1, 1, 0),
    ]
    assert _rows(clean_db, "select decision_type, decision_category, decisions_count, users_count, completed_count, "
                           "abandoned_count, pending_count, nudged_count, completion_rate, total_amount::float8 "
                           "from analytics.fct_decisions order by 1, 2") == [
        ("set_budget", "dining", 3, 2, 1, 1, 1, 1, 0.5, 220.0),
        ("transfer_to_savings", "none", 1, 1, 1, 0, 0, 0, 1.0, 200.0),
    ]
