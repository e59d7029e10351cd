"""Scorer latency at fixed request rates over loopback, beside a bare FastAPI endpoint in the same run.

Load comes from a separate process (tests/bench/loadgen.py, open loop). Prints p50/p99 per endpoint and
rate, and the p99 ratio to the bare endpoint. Aim: p99 < 10 ms at 500 requests/s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from scorer_support import API_KEY, REPO, free_port, insert_users, scorer_process, wait_until_up  # noqa: E402

from serving.batch import score_all_users  # noqa: E402

pytestmark = pytest.mark.bench

RATES = (200, 500, 1000)
SECONDS = 5
USERS = 1000
BARE = """
import uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/readyz")
def ready() -> dict:
    return {"ok": True}
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
"""


def _load(url: str, rate: int, method: str, path: str, body: str | None = None) -> dict:
    args = [sys.executable, str(Path(__file__).with_name("loadgen.py")), url, str(rate), str(SECONDS), method, path,
            body or "-", f"users={USERS}", f"X-API-Key: {API_KEY}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout)


def _redis_url() -> str | None:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return "redis://127.0.0.1:6379/0"
    except OSError:
        return None


def test_scorer_latency_at_fixed_rates(clean_db, tmp_path):
    insert_users(clean_db, list(range(1, USERS + 1)))
    score_all_users("bench", datetime.now(UTC))
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE.replace("{port}", str(port))], cwd=REPO)
    redis_url = _redis_url()
    env = {"FINCOACH_MODEL_NAME": f"bench-none-{uuid.uuid4().hex[:8]}",
           "FINCOACH_CACHE_PREFIX": f"fincoach-bench-{uuid.uuid4().hex[:8]}",
           "FINCOACH_SCORER_RELOAD_SECONDS": "30", "FINCOACH_SCORER_LOG_FLUSH_SECONDS": "0.2",
           "FINCOACH_SCORER_WORKERS": os.environ.get("FINCOACH_SCORER_WORKERS", "1")}
    if redis_url:
        env["FINCOACH_REDIS_URL"] = redis_url
    results = []
    try:
        wait_until_up(f"http://127.0.0.1:{port}")
        with scorer_process(tmp_path / "scorer.log", **env) as client:
            url = str(client.base_url)
            for path in ("/recommendations/{user}", "/score"):  # warm every user once (cache, connections)
                _load(url, 500, "GET" if path != "/score" else "POST", path,
                      '{"user_id": {user}}' if path == "/score" else None)
            for rate in RATES:
                baseline = _load(f"http://127.0.0.1:{port}", rate, "GET", "/readyz")
                for name, method, path, body in (
                    ("POST /score", "POST", "/score", '{"user_id": {user}}'),
                    ("GET /recommendations/{id}", "GET", "/recommendations/{user}", None),
                ):
                    measured = _load(url, rate, method, path, body)
                    results.append({"endpoint": name, "bare": baseline, **measured})
    finally:
        bare.terminate()
        bare.wait(timeout=10)

    print(f"\nscorer latency over loopback, {SECONDS}s per point, Redis {'on' if redis_url else 'off'}, "
          f"{env['FINCOACH_SCORER_WORKERS']} worker(s)")
    print(f"{'endpoint':28} {'rps':>5} {'p50 ms':>8} {'p99 ms':>8} {'bare p50':>9} {'bare p99':>9} {'p99 ratio':>9}")
    for r in results:
        ratio = r["p99_ms"] / r["bare"]["p99_ms"]
        print(f"{r['endpoint']:28} {r['rate']:>5} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['bare']['p50_ms']:>9.2f} {r['bare']['p99_ms']:>9.2f} {ratio:>8.1f}x  {r['statuses']}")
    assert all(set(r["statuses"]) == {"200"} for r in results)
