"""Tracking middleware for a FastAPI/Starlette backend: every request becomes an event sent to POST /events.

One line in the backend:

    app.add_middleware(TrackingMiddleware, endpoint="http://ingest:8100", api_key="...")

Each HTTP request is recorded as an `interaction` event: `page_view` for a GET that accepts HTML, else
`api_call`, with the route template (`/accounts/{account_id}`, never the raw ids), method, status and
duration in ms, the user (header `X-User-Id`, or a `user_id(scope)` callable) and the session (header
`X-Session-Id` or cookie `fincoach_session`). Requests without a user are only counted.

Events go into a bounded in-memory buffer that a background thread sends in batches; the host app never
waits on the network. When the API is slow or down, batches are retried (the event ids make retries
safe) and, once the buffer is full, new events are dropped and counted (`EventSender.stats`): tracking
never slows or breaks the host app.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from fincoach.api_keys import API_KEY_HEADER
from fincoach.settings import get_settings

log = logging.getLogger(__name__)

USER_HEADER = b"x-user-id"
SESSION_HEADER = b"x-session-id"
SESSION_COOKIE = "fincoach_session"


class EventSender:
    """A bounded buffer of events and the daemon thread that posts them to the ingestion API in batches."""

    def __init__(self, endpoint: str | None = None, api_key: str | None = None, max_buffer: int = 10_000,
                 batch_size: int = 500, flush_interval: float = 1.0, timeout: float = 2.0,
                 max_attempts: int = 3) -> None:
        self.url = (endpoint or get_settings().ingest_url).rstrip("/") + "/events"
        self.headers = {API_KEY_HEADER: api_key} if api_key else {}
        self.max_buffer, self.batch_size, self.flush_interval = max_buffer, batch_size, flush_interval
        self.timeout, self.max_attempts = timeout, max_attempts
        self.stats: Counter = Counter()
        self._buffer: deque[tuple[int, dict]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None

    def offer(self, event: dict) -> bool:
        """Queue one event without blocking; False (and counted as dropped) when the buffer is full."""
        with self._lock:
            if len(self._buffer) >= self.max_buffer:
                self.stats["dropped"] += 1
                return False
            self._buffer.append((0, event))
            self.stats["recorded"] += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fincoach-tracking", daemon=True)
                self._thread.start()
            full = len(self._buffer) >= self.batch_size
        self._idle.clear()
        if full:
            self._wake.set()
        return True

    def pending(self) -> int:
        """Events waiting in the buffer."""
        with self._lock:
            return len(self._buffer)

    def _take(self) -> list[tuple[int, dict]]:
        with self._lock:
            n = min(self.batch_size, len(self._buffer))
            return [self._buffer.popleft() for _ in range(n)]

    def _give_back(self, batch: list[tuple[int, dict]]) -> None:
        """Requeue a failed batch at the front (while attempts and room remain); the rest is dropped."""
        with self._lock:
            for attempts, event in reversed(batch):
                if attempts + 1 < self.max_attempts and len(self._buffer) < self.max_buffer:
                    self._buffer.appendleft((attempts + 1, event))
                else:
                    self.stats["dropped"] += 1

    def _post(self, client: httpx.Client, batch: list[tuple[int, dict]]) -> bool:
        try:
            response = client.post(self.url, json={"events": [e for _, e in batch]}, headers=self.headers)
        except httpx.HTTPError as exc:
            self.stats["failed_posts"] += 1
            log.debug("tracking: ingestion API unreachable (%s)", exc)
            return False
        if response.status_code >= 500 or response.status_code in (401, 413, 429):
            self.stats["failed_posts"] += 1
            log.warning("tracking: ingestion API answered %d: %s", response.status_code, response.text[:200])
            return False
        try:
            body = response.json() if response.status_code in (200, 422) else {}
        except ValueError:  # not JSON (a proxy's error page): the batch was still delivered
            body = {}
        self.stats["sent"] += len(batch)
        self.stats["rejected"] += len(body.get("rejected", [])) if isinstance(body, dict) else 0
        return True

    def _run(self) -> None:
        backoff = 0.0
        with httpx.Client(timeout=self.timeout) as client:
            while not (self._stop.is_set() and not self.pending()):
                self._wake.wait(self.flush_interval + backoff)
                self._wake.clear()
                while batch := self._take():
                    if not self._post(client, batch):
                        self._give_back(batch)
                        backoff = min(30.0, max(0.5, backoff * 2))
                        if self._stop.is_set():
                            return
                        break
                    backoff = 0.0
                if not self.pending():
                    self._idle.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every buffered event was sent (or dropped); True when the buffer is empty."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            self._wake.set()
            self._idle.wait(0.05)
        return not self.pending()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is left (best effort, within `timeout`) and stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _session(scope: dict) -> str | None:
    found = _header(scope, SESSION_HEADER)
    if found:
        return found[:64]
    for part in (_header(scope, b"cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE and value:
            return value[:64]
    return None


def _default_user(scope: dict) -> int | None:
    raw = _header(scope, USER_HEADER)
    return int(raw) if raw and raw.isdigit() and 0 < int(raw) < 2**63 else None


def _route(scope: dict) -> str:
    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str):
        return template
    path = scope.get("path", "")
    for name, value in (scope.get("path_params") or {}).items():  # plain Starlette: template by hand
        path = path.replace(f"/{value}", f"/{{{name}}}", 1)
    return path


class TrackingMiddleware:
    """ASGI middleware that records every HTTP request as an event (see the module docstring)."""

    def __init__(self, app: Any, endpoint: str | None = None, api_key: str | None = None,
                 user_id: Callable[[dict], int | None] | None = None, sender: EventSender | None = None,
                 exclude_paths: tuple[str, ...] = ("/healthz", "/metrics")) -> None:
        self.app = app
        self.sender = sender or EventSender(endpoint, api_key)
        self.user_id = user_id or _default_user
        self.exclude_paths = exclude_paths

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            return await self.app(scope, self._lifespan(receive), send)
        if scope["type"] != "http" or scope.get("path") in self.exclude_paths:
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._record(scope, status["code"], (time.perf_counter() - started) * 1000)

    def _lifespan(self, receive: Callable) -> Callable:
        async def wrapped() -> dict:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                self.sender.close()
            return message

        return wrapped

    def _record(self, scope: dict, status: int, duration_ms: float) -> None:
        try:
            user = self.user_id(scope)
        except Exception:  # a faulty user_id callable of the host must not break its requests
            log.exception("tracking: user_id callable failed")
            self.sender.stats["errors"] += 1
            return
        if user is None:
            self.sender.stats["anonymous"] += 1
            return
        accept = _header(scope, b"accept") or ""
        method = scope.get("method", "GET")
        self.sender.offer({
            "kind": "interaction",
            "event_id": uuid.uuid4().hex,
            "user_id": user,
            "timestamp": datetime.now(UTC).isoformat(),
            "session_id": _session(scope),
            "event_type": "page_view" if method == "GET" and "text/html" in accept else "api_call",
            "event_data": {"path": _route(scope), "method": method, "status": status,
                           "duration_ms": round(duration_ms, 2)},
            "context": {"source": "middleware"},
        })
