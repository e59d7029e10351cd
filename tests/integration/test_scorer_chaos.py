"""Chaos: Postgres (with the MLflow registry on it) and Redis stop while the scorer is under load.

The scorer keeps answering: the champion stays in memory, users' features and recommendations come from
the cache, and the served log waits in memory. When the services return it recovers on its own: the log
is written, uncached users are served again, /readyz reports everything up.

Never the machine's own services: a throwaway embedded Postgres (pgserver, unix socket in a temp folder)
and, when `redis-server` is on PATH, a throwaway Redis on a free port.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from scorer_support import FEATURES, REPO, free_port, scorer_process, wait_for
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.slow

SETUP = """
import sys
from datetime import UTC, datetime
from pathlib import Path
sys.path.insert(0, "tests/integration")
from scorer_support import insert_users, register_champion
from fincoach.db import ensure_database, get_engine
from fincoach.migrate import migrate
ensure_database("postgres_mlflow")
from serving.batch import score_all_users
migrate(get_engine())
print(register_champion(sys.argv[1], Path(sys.argv[2])))
insert_users(get_engine(), list(range(1, 21)))
score_all_users("chaos", datetime.now(UTC))
"""


class Throwaway:
    """A pgserver in a folder of its own that can be stopped and started again (same socket, same URL)."""

    def __init__(self, folder: Path):
        import pgserver

        self._pgserver, self.folder = pgserver, folder
        self.server = pgserver.get_server(folder, cleanup_mode="stop")
        self.url = self.server.get_uri("postgres")

    def stop(self) -> None:
        self.server.cleanup()

    def start(self) -> None:
        self.server = self._pgserver.get_server(self.folder, cleanup_mode="stop")


@pytest.fixture()
def throwaway_pg(tmp_path) -> Iterator[Throwaway]:
    pg = Throwaway(tmp_path / "pg")
    yield pg
    pg.stop()


@pytest.fixture()
def throwaway_redis() -> Iterator[tuple[str, callable, callable]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH")
    port = free_port()
    procs: list[subprocess.Popen] = []

    def start() -> None:
        procs.append(subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no"], stdout=subprocess.DEVNULL))
        import redis

        wait_for(lambda: _pings(redis.Redis(port=port)))

    def stop() -> None:
        procs[-1].terminate()
        procs[-1].wait(timeout=10)

    start()
    yield f"redis://127.0.0.1:{port}/0", stop, start
    if procs[-1].poll() is None:
        stop()


def _pings(client) -> bool:  # noqa: ANN001
    import redis

    try:
        return client.ping()
    except (redis.ConnectionError, OSError):
        return False


def _load(client: httpx.Client, stop: threading.Event, answers: list) -> None:
    rng = random.Random(0)
    while not stop.is_set():
        user = rng.randint(1, 10)  # the warmed users
        kind = rng.choice(["features", "user", "recommendations"])
        try:
            if kind == "features":
                response = client.post("/score", json={"features": FEATURES})
            elif kind == "user":
                response = client.post("/score", json={"user_id": user})
            else:
                response = client.get(f"/recommendations/{user}")
        except httpx.HTTPError as exc:  # a hung or refused request is a failure too, not a silently dead thread
            answers.append((kind, "error", repr(exc)))
            continue
        body = response.json() if response.status_code == 200 else response.text
        answers.append((kind, response.status_code, body))
        time.sleep(0.01)


def test_the_scorer_keeps_answering_through_postgres_registry_and_redis_outages(throwaway_pg, throwaway_redis,
                                                                               tmp_path):
    redis_url, stop_redis, start_redis = throwaway_redis
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    # The registry on the throwaway server too (whatever MLFLOW_TRACKING_URI earlier tests left behind).
    registry = make_url(throwaway_pg.url).set(drivername="postgresql+psycopg2", database="postgres_mlflow")
    services = {"FINCOACH_DATABASE_URL": throwaway_pg.url, "FINCOACH_MODEL_NAME": name,
                "MLFLOW_TRACKING_URI": registry.render_as_string(hide_password=False)}
    env = {**os.environ, **services}
    setup = subprocess.run([sys.executable, "-c", SETUP, name, str(tmp_path / "policy")], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert setup.returncode == 0, setup.stderr[-3000:]
    champion = setup.stdout.strip().splitlines()[-1]

    with scorer_process(tmp_path / "scorer.log", FINCOACH_REDIS_URL=redis_url, **services) as client:
        wait_for(lambda: client.get("/readyz").json()["champion"] == champion, timeout=30)
        for user in range(1, 11):  # warm the cache
            assert client.get(f"/recommendations/{user}").status_code == 200
            assert client.post("/score", json={"user_id": user}).status_code == 200
        stop, answers = threading.Event(), []
        load = threading.Thread(target=_load, args=(client, stop, answers))
        load.start()
        try:
            time.sleep(1)
            throwaway_pg.stop()  # Postgres and the MLflow registry on it
            wait_for(lambda: not client.get("/readyz").json()["database"], timeout=10)
            down = wait_for(lambda: (r := client.get("/readyz").json())["registry"] is False and r, timeout=60)
            answered_while_down = len(answers)
            cached = client.post("/score", json={"user_id": 3})  # a warmed user: served, its row waits in memory
            waiting = client.get("/readyz").json()["log_pending"]
            uncached = client.post("/score", json={"user_id": 15})
            throwaway_pg.start()
            wait_for(lambda: client.get("/readyz").json()["database"], timeout=30)
            stop_redis()
            time.sleep(2)
            start_redis()
            time.sleep(1)
        finally:
            stop.set()
            load.join(timeout=10)
        wait_for(lambda: client.get("/readyz").json()["registry"] is True, timeout=30)
        recovered = client.get("/readyz").json()
        after = client.post("/score", json={"user_id": 15})
        wait_for(lambda: client.get("/readyz").json()["log_pending"] == 0, timeout=30)

    failed = [(kind, code, body) for kind, code, body in answers if code != 200]
    assert len(answers) > 100 and failed == []
    assert {body["source"] for kind, _, body in answers if kind != "recommendations"} == {"champion"}
    assert down["database"] is False and down["registry"] is False
    assert cached.status_code == 200 and cached.json()["source"] == "champion" and waiting > 0, (answered_while_down,
                                                                                              waiting)
    assert uncached.status_code == 503 and "not cached and Postgres is unreachable" in uncached.json()["detail"]
    assert recovered["database"] and recovered["redis"] and recovered["champion"] == champion
    assert after.status_code == 200
    served = [body["request_id"] for kind, _, body in answers if kind == "user"] + [cached.json()["request_id"]]
    engine = sa.create_engine(throwaway_pg.url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        logged = set(conn.execute(sa.text("select request_id from app.coaching_interactions")).scalars())
    engine.dispose()
    assert set(served) <= logged  # everything served during the outage was logged once it ended
