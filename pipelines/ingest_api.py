"""The event ingestion API: `POST /events` takes a batch of events and stores each valid one once.

Answers: 200 when every event was accepted; 422 when some were not, with one entry per rejected event
naming its index, its event_id and the field, while the valid events of the same batch are still stored
(the body says how many); 400 for a body that is not a JSON object with an `events` list; 413 for a body
over `settings.ingest_max_body_bytes` or more than `settings.ingest_max_events` events; 401 without a
valid API key (when FINCOACH_API_KEYS is set). Accepted events are `stored`, `duplicates` (an event_id
seen before) or `opted_out` (the user opted out of tracking: counted, not stored).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from fincoach.api_keys import auth_enabled, require_api_key
from fincoach.db import get_engine
from fincoach.settings import get_settings
from pipelines.event_schemas import EVENT_LIST
from pipelines.ingest_store import record_counts, store_events

log = logging.getLogger(__name__)


class Rejection(BaseModel):
    """Why one event of a batch was not accepted."""

    index: int
    event_id: str | None
    field: str
    message: str


class IngestResponse(BaseModel):
    """What happened to a batch."""

    received: int
    accepted: int
    stored: int
    duplicates: int
    opted_out: int
    rejected: list[Rejection]


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _BodyTooLarge
    return bytes(body)


def _event_id(item: Any) -> str | None:
    value = item.get("event_id") if isinstance(item, dict) else None
    return value if isinstance(value, str) else None


def _rejections(items: list[Any], exc: ValidationError) -> dict[int, Rejection]:
    """One rejection per failing event: the first error's field (after the `kind` tag) and message."""
    out: dict[int, Rejection] = {}
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        index = int(loc[0])
        if index in out:
            continue
        rest = [str(p) for p in loc[2:]] if len(loc) > 1 else []
        field = ".".join(rest) or ("kind" if err["type"].startswith("union_tag") else "event")
        out[index] = Rejection(index=index, event_id=_event_id(items[index]), field=field, message=err["msg"])
    return out


def _validate(items: list[Any]) -> tuple[list[Any], list[int], dict[int, Rejection]]:
    """(valid events, their indices in the batch, rejections by index)."""
    try:
        return EVENT_LIST.validate_python(items), list(range(len(items))), {}
    except ValidationError as exc:
        rejected = _rejections(items, exc)
    good = [i for i in range(len(items)) if i not in rejected]
    return EVENT_LIST.validate_python([items[i] for i in good]), good, rejected


def _future(events: list[Any], indices: list[int], items: list[Any]) -> dict[int, Rejection]:
    limit = datetime.now(UTC) + timedelta(minutes=get_settings().future_tolerance_minutes)
    return {
        i: Rejection(index=i, event_id=e.event_id, field="timestamp",
                     message=f"timestamp {e.timestamp.isoformat()} is in the future (after {limit.isoformat()})")
        for e, i in zip(events, indices, strict=True) if e.timestamp > limit
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message})


def create_app() -> FastAPI:
    """The ingestion API application."""
    app = FastAPI(title="FinCoach event ingestion API", version="1")

    @app.get("/healthz")
    def healthz() -> dict:
        """Liveness, and whether API keys are required."""
        return {"status": "ok", "auth": "on" if auth_enabled() else "off"}

    @app.post("/events", response_model=IngestResponse, dependencies=[Depends(require_api_key)],
              responses={422: {"model": IngestResponse}, 400: {}, 413: {}})
    async def post_events(request: Request) -> Any:
        """Store a batch of events (see the module docstring for the answers)."""
        s = get_settings()
        try:
            body = await _read_body(request, s.ingest_max_body_bytes)
        except _BodyTooLarge:
            return _error(413, f"request body over {s.ingest_max_body_bytes} bytes (FINCOACH_INGEST_MAX_BODY_BYTES): "
                               "send smaller batches")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"body is not JSON: {exc}")
        items = payload.get("events") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items:
            return _error(400, 'body must be a JSON object {"events": [event, ...]} with at least one event')
        if len(items) > s.ingest_max_events:
            return _error(413, f"{len(items)} events in one batch, more than {s.ingest_max_events} "
                               "(FINCOACH_INGEST_MAX_EVENTS): split the batch")
        events, indices, rejected = _validate(items)
        future = _future(events, indices, items)
        if future:
            rejected.update(future)
            events = [e for e, i in zip(events, indices, strict=True) if i not in future]
            indices = [i for i in indices if i not in future]
        if events:
            result = await run_in_threadpool(store_events, get_engine(), events, len(rejected))
        else:
            result = None
            await run_in_threadpool(_count_rejected, len(rejected))
        for j in result.unknown_users if result else []:
            i = indices[j]
            rejected[i] = Rejection(index=i, event_id=events[j].event_id, field="user_id",
                                    message=f"unknown user {events[j].user_id}")
        accepted = len(items) - len(rejected)
        response = IngestResponse(
            received=len(items), accepted=accepted, stored=result.stored if result else 0,
            duplicates=result.duplicates if result else 0, opted_out=result.opted_out if result else 0,
            rejected=[rejected[i] for i in sorted(rejected)],
        )
        return JSONResponse(status_code=422 if rejected else 200, content=response.model_dump())

    return app


def _count_rejected(n: int) -> None:
    with get_engine().begin() as conn:
        record_counts(conn, {"rejected": n})


def run() -> None:
    """Serve the ingestion API on FINCOACH_INGEST_HOST:FINCOACH_INGEST_PORT until interrupted."""
    s = get_settings()
    if not auth_enabled():
        log.warning("FINCOACH_API_KEYS is not set: the ingestion API accepts requests without a key")
    uvicorn.run(create_app(), host=s.ingest_host, port=s.ingest_port, log_level="warning")
