"""The tracking middleware in a real small app under uvicorn, against the real ingestion API, and with it down."""

from __future__ import annotations

import statistics
import time

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, HTTPException

from pipelines.ingest_api import create_app as create_ingest_app
from pipelines.tracking_middleware import EventSender, TrackingMiddleware


def _host_app(sender: EventSender) -> FastAPI:
    app = FastAPI()
    app.add_middleware(TrackingMiddleware, sender=sender)  # the one line a backend adds

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    @app.get("/accounts/{account_id}")
    def account(account_id: int) -> dict:
        return {"account_id": account_id}

    @app.post("/budget")
    def budget() -> dict:
        raise HTTPException(status_code=409, detail="over budget")

    return app


def test_requests_become_events_in_postgres(clean_db, serve, users_factory):
    users_factory(clean_db, (1,))
    with serve(create_ingest_app()) as ingest_url:
        sender = EventSender(ingest_url, flush_interval=0.05, batch_size=7)
        with serve(_host_app(sender)) as url, httpx.Client(base_url=url) as client:
            for i in range(20):
                assert client.get(f"/accounts/{i}", headers={"X-User-Id": "1", "X-Session-Id": "s-7",
                                                             "Accept": "text/html"}).status_code == 200
            assert client.post("/budget", headers={"X-User-Id": "1"},
                               cookies={"fincoach_session": "s-8"}).status_code == 409
            assert client.get("/accounts/1").status_code == 200  # no user: counted only
            assert client.get("/healthz", headers={"X-User-Id": "1"}).status_code == 200  # excluded
            assert sender.flush()
    with clean_db.connect() as conn:
        rows = conn.execute(sa.text(
            "select event_type, session_id, event_data ->> 'path', (event_data ->> 'status')::int, "
            "(event_data ->> 'duration_ms')::float8 from app.user_events order by id")).all()
    assert len(rows) == 21 and sender.stats["sent"] == 21 and sender.stats["anonymous"] == 1
    assert {r[:4] for r in rows[:20]} == {("page_view", "s-7", "/accounts/{account_id}", 200)}
    assert rows[20][:4] == ("api_call", "s-8", "/budget", 409)
    assert all(r[4] >= 0 for r in rows)


@pytest.mark.parametrize("max_buffer", [50])
def test_the_host_app_is_not_slowed_or_broken_when_the_api_is_down(serve, loopback_port, max_buffer):
    sender = EventSender(f"http://127.0.0.1:{loopback_port}", max_buffer=max_buffer, batch_size=10,
                         flush_interval=0.05, timeout=0.5)
    with serve(_host_app(sender)) as url, httpx.Client(base_url=url) as client:
        timings = []
        for i in range(200):
            t0 = time.perf_counter()
            assert client.get(f"/accounts/{i}", headers={"X-User-Id": "1"}).status_code == 200
            timings.append(time.perf_counter() - t0)
    assert statistics.median(timings) < 0.05  # no request waited on the unreachable API
    assert sender.pending() <= max_buffer
    assert sender.stats["dropped"] > 0 and sender.stats["failed_posts"] > 0 and sender.stats["sent"] == 0
    assert sender.stats["recorded"] + sender.stats["dropped"] >= 200
    sender.close(timeout=1)
