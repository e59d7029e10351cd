"""POST /events over real HTTP (uvicorn on loopback) into real Postgres: per-event errors, retries, consent."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
import sqlalchemy as sa

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
