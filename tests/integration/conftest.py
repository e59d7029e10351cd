"""Fixtures of the integration tests: real HTTP servers (uvicorn on 127.0.0.1, a free port)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
import sqlalchemy as sa
import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serve(app, health: str = "/healthz", timeout: float = 30) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.config.port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if httpx.get(url + health, timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture()
def serve() -> Callable:
    """`with serve(app) as url:` runs `app` under uvicorn on loopback until the block ends."""
    return _serve


def add_users(engine, ids, opted_out=(), created_at=None) -> None:
    """Insert minimal app.users rows (created and last updated at `created_at`, default now)."""
    with engine.begin() as conn:
        for uid in ids:
            conn.execute(
                sa.text(
                    "insert into app.users (user_id, created_at, birth_year, income_band, pay_frequency, "
                    "monthly_income, region, device_type, risk_tolerance, tracking_opt_out, updated_at) values "
                    "(:u, coalesce(:c, now()), 1990, 'middle', 'monthly', 3000, 'west', 'ios', 'low', :o, "
                    "coalesce(:c, now()))"
                ),
                {"u": uid, "c": created_at, "o": uid in opted_out},
            )


@pytest.fixture()
def users_factory() -> Callable:
    """`users_factory(engine, ids, opted_out=(), created_at=None)` inserts minimal users."""
    return add_users


@pytest.fixture()
def loopback_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_port()
