"""Helpers of the scorer tests: a scorer process on a free port, a registered champion, users with features."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import sqlalchemy as sa
import torch

from fincoach import tracking
from fincoach.actions import N_ACTIONS
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, N_FEATURES
from fincoach.policy import META_FILE, write_policy_artifact
from fincoach.policy_model import log_policy

REPO = Path(__file__).resolve().parents[2]
API_KEY = "scorer-test-key"
FEATURES = {name: 0.0 for name in FEATURE_NAMES} | {
    "monthly_income": 3000.0, "monthly_spend": 2500.0, "savings_rate": 0.02, "discretionary_share": 0.4,
    "emergency_fund_months": 0.5, "debt_total": 4000.0, "max_debt_apr": 0.22, "age": 35.0,
}


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen | None = None, timeout: float = 90) -> None:
    """Wait until GET /readyz answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"scorer exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"scorer at {url} did not come up in {timeout}s")


@contextmanager
def scorer_process(log_path: Path, **env: str) -> Iterator[httpx.Client]:
    """`fincoach serve`'s app in its own process on a free port; yields a client that sends the API key."""
    port = free_port()
    full_env = {**os.environ, "FINCOACH_SCORER_PORT": str(port), "FINCOACH_API_KEYS": API_KEY,
                "FINCOACH_SCORER_RELOAD_SECONDS": "0.5", "FINCOACH_SCORER_LOG_FLUSH_SECONDS": "0.05", **env}
    with log_path.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from serving.app import run; run()"],
                                cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc)
        with httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}, timeout=10) as client:
            yield client
    except Exception:
        print(log_path.read_text())
        raise
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def register_champion(name: str, folder: Path, bias: np.ndarray | None = None,
                      feature_spec_version: str | None = None, alias: str = "champion") -> str:
    """Train nothing: script a linear Q-network, log it the way training does, give it `alias`."""
    net = torch.nn.Linear(N_FEATURES, N_ACTIONS)
    if bias is not None:
        with torch.no_grad():
            net.weight.zero_()
            net.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    write_policy_artifact(folder, torch.jit.script(net), {"run_id": "test"})
    if feature_spec_version:
        meta = json.loads((folder / META_FILE).read_text())
        (folder / META_FILE).write_text(json.dumps({**meta, "feature_spec_version": feature_spec_version}))
    tracking.configure_mlflow()
    example = pd.DataFrame([FEATURES], columns=list(FEATURE_NAMES))
    with mlflow.start_run():
        info = log_policy(folder, input_example=example)
    version = mlflow.register_model(info.model_uri, name).version
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, alias, version)
    if alias == "champion":
        client.set_model_version_tag(name, version, "gate.decision", "promoted")
    return f"{name}/{version}"


def insert_users(engine: sa.Engine, user_ids: list[int], features: dict[str, float] | None = None) -> None:
    """App users with the same stored features."""
    names = ", ".join(FEATURE_NAMES)
    binds = ", ".join(f":{n}" for n in FEATURE_NAMES)
    values = features or FEATURES
    with engine.begin() as conn:
        conn.execute(sa.text(
            "insert into app.users (user_id, created_at, birth_year, income_band, pay_frequency, monthly_income, "
            "region, device_type, risk_tolerance) values (:u, '2025-01-01', 1990, 'middle', 'monthly', 3000, "
            "'north', 'web', 'low')"), [{"u": uid} for uid in user_ids])
        conn.execute(sa.text(
            f"insert into features.user_features_latest (user_id, as_of, feature_spec_version, {names}) "
            f"values (:u, '2026-03-01', :v, {binds})"),
            [{"u": uid, "v": FEATURE_SPEC_VERSION, **values} for uid in user_ids])


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):  # noqa: ANN001, ANN201
    """Poll until `predicate()` is truthy; return its value (AssertionError on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
