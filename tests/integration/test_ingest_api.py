"""POST /events over real HTTP (uvicorn on loopback) into real Postgres: per-event errors, retries, consent."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fincoach.settings import reload_settings
from pipelines.ingest_api import create_app

KEY = "test-key-1"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture()
def api(clean_db, serve, users_factory, monkeypatch):
    """The ingestion API with an API key, users 1 and 2 tracked, user 3 opted out."""
    monkeypatch.setenv("FINCOACH_API_KEYS", KEY)
    monkeypatch.setenv("FINCOACH_INGEST_MAX_BODY_BYTES", "200000")
    reload_settings()
    users_factory(clean_db, (1, 2, 3), opted_out=(3,))
    with serve(create_app()) as url:
        yield url
    monkeypatch.delenv("FINCOACH_API_KEYS")
    monkeypatch.delenv("FINCOACH_INGEST_MAX_BODY_BYTES")
    reload_settings()


def _post(url: str, events: list[dict] | None = None, **kwargs) -> httpx.Response:
    kwargs.setdefault("headers", {"X-API-Key": KEY})
    if events is not None:
        kwargs["json"] = {"events": events}
    return httpx.post(f"{url}/events", timeout=10, **kwargs)


def _view(i: int, user: int = 1, **extra) -> dict:
    return {"kind": "interaction", "event_id": f"ev-{i}", "user_id": user, "timestamp": NOW.isoformat(),
            "session_id": "s-1", "event_type": "page_view", "event_data": {"page": "home"}, **extra}


def _rows(engine, sql: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).all()


def test_a_bad_event_is_named_by_index_and_field_while_the_good_ones_are_stored(api, clean_db):
    batch = [
        _view(1),
        {"kind": "session_start", "event_id": "ev-2", "user_id": 2, "timestamp": NOW.isoformat(), "session_id": "s-9"},
        {"kind": "decision", "event_id": "ev-3", "user_id": 1, "timestamp": NOW.isoformat(),
         "decision_type": "set_budget", "amount": 50, "category": "dining"},
        {"kind": "decision", "event_id": "ev-4", "user_id": 1, "timestamp": NOW.isoformat(),
         "decision_type": "set_budget", "amount": -5},
        {"kind": "teleport", "event_id": "ev-5", "user_id": 1, "timestamp": NOW.isoformat()},
        _view(6, colour="red"),
        _view(7, user=99),
        _view(8, timestamp=(NOW + dt.timedelta(days=2)).isoformat()),
    ]
    r = _post(api, batch)
    assert r.status_code == 422
    body = r.json()
    assert {k: body[k] for k in ("received", "accepted", "stored", "duplicates", "opted_out")} == {
        "received": 8, "accepted": 3, "stored": 3, "duplicates": 0, "opted_out": 0,
    }
    assert [(x["index"], x["event_id"], x["field"]) for x in body["rejected"]] == [
        (3, "ev-4", "amount"), (4, "ev-5", "kind"), (5, "ev-6", "colour"), (6, "ev-7", "user_id"),
        (7, "ev-8", "timestamp"),
    ]
    assert _rows(clean_db, "select client_event_id, event_type from app.user_events order by 1") == [
        ("ev-1", "page_view"), ("ev-2", "session_start"),
    ]
    assert _rows(clean_db, "select client_event_id, amount::float8 from app.financial_decisions") == [("ev-3", 50.0)]


def test_a_retried_batch_is_stored_once(api, clean_db):
    batch = [_view(i) for i in range(10)]
    first, again = _post(api, batch), _post(api, batch + [_view(10)])
    assert first.status_code == again.status_code == 200
    assert (first.json()["stored"], again.json()["stored"], again.json()["duplicates"]) == (10, 1, 10)
    assert _rows(clean_db, "select count(*) from app.user_events") == [(11,)]
    counts = dict(_rows(clean_db, "select outcome, events from ops.ingest_counts"))
    assert counts == {"stored": 11, "duplicate": 10}


def test_events_of_a_user_who_opted_out_are_counted_not_stored(api, clean_db):
    r = _post(api, [_view(1, user=3), _view(2, user=3), _view(3, user=1)])
    assert r.status_code == 200 and (r.json()["opted_out"], r.json()["stored"]) == (2, 1)
    assert _rows(clean_db, "select user_id from app.user_events") == [(1,)]
    assert dict(_rows(clean_db, "select outcome, events from ops.ingest_counts"))["opted_out"] == 2


def test_requests_without_a_key_or_too_large_or_not_json_get_a_clear_4xx(api, clean_db):
    assert _post(api, [_view(1)], headers={}).status_code == 401
    big = _post(api, [_view(i, event_data={"page": "p" * 1000}) for i in range(300)])
    assert big.status_code == 413 and "FINCOACH_INGEST_MAX_BODY_BYTES" in big.json()["detail"]
    bad = _post(api, content=b"{not json", headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    assert bad.status_code == 400 and "not JSON" in bad.json()["detail"]
    assert _post(api, json={"event": []}).status_code == 400
    oversized = _post(api, [_view(1, event_data={"page": "x" * 9000})])
    assert oversized.status_code == 422 and oversized.json()["rejected"][0]["field"] == "event_data"
    assert _rows(clean_db, "select count(*) from app.user_events") == [(0,)]
    assert httpx.get(f"{api}/healthz").json() == {"status": "ok", "auth": "on"}


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
_fields = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(["interaction", "decision", "session_start", "session_end", "x"]) | _json,
    "event_id": st.text(max_size=70) | _json, "user_id": st.integers(-5, 5) | _json,
    "timestamp": st.sampled_from([NOW.isoformat(), "2026-03-01T12:00:00", "yesterday"]) | _json,
    "event_type": st.sampled_from(["page_view", "click", "nope"]) | _json, "event_data": _json,
    "decision_type": st.sampled_from(["set_budget", "invest"]) | _json, "amount": _json, "context": _json,
    "session_id": _json, "outcome": _json, "category": _json,
})


_valid_ish = st.builds(
    lambda i, user, session, data, ctx, kind: {
        "kind": kind, "event_id": f"fz-{i}", "user_id": user, "timestamp": NOW.isoformat(), "session_id": session,
        "context": ctx, **({"event_type": "page_view", "event_data": data} if kind == "interaction"
                           else {"decision_type": "invest", "category": session, "amount": 1.5} if kind == "decision"
                           else {}),
    },
    st.integers(0, 10**6), st.integers(1, 4), st.text(min_size=1, max_size=64),
    st.dictionaries(st.text(max_size=10), st.text(max_size=20) | st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=10), _json, max_size=2),
    st.sampled_from(["interaction", "decision", "session_start", "session_end"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(_valid_ish | _fields | _json, min_size=1, max_size=5))
def test_any_batch_gets_a_2xx_or_4xx_never_a_5xx(api, batch):
    r = _post(api, batch)
    assert r.status_code in (200, 422), r.text
    body = r.json()
    assert body["accepted"] + len(body["rejected"]) == len(batch)
    assert body["stored"] + body["duplicates"] + body["opted_out"] == body["accepted"]


def test_text_postgres_cannot_store_is_rejected_not_a_5xx(api, clean_db):
    r = _post(api, [_view(1, session_id="a\x00b"), _view(2, event_data={"page": "x\x00"}), _view(3)])
    assert r.status_code == 422, r.text
    assert [(x["index"], x["field"]) for x in r.json()["rejected"]] == [(0, "session_id"), (1, "event_data")]
    assert r.json()["stored"] == 1
