"""The serving policy comes from the MLflow registry or falls back to rules, and the scorer answers over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import torch
import uvicorn

from fincoach import tracking
from fincoach.actions import N_ACTIONS, action_mask, action_text
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, N_FEATURES, vector_from_mapping
from fincoach.policy import META_FILE, write_policy_artifact
from fincoach.policy_model import PolicyPyfunc, log_policy
from fincoach.rules import RULES_VERSION
from fincoach.settings import get_settings, reload_settings
from serving.app import create_app
from serving.batch import score_all_users
from serving.model_loader import load_policy

REPO = Path(__file__).resolve().parents[2]
FEATURES = {name: 0.0 for name in FEATURE_NAMES} | {
    "monthly_income": 3000.0, "monthly_spend": 2500.0, "savings_rate": 0.02, "discretionary_share": 0.4,
    "emergency_fund_months": 0.5, "debt_total": 4000.0, "max_debt_apr": 0.22, "age": 35.0,
}


def _set_env(**values: str | None) -> dict[str, str | None]:
    """Set (or unset, for None) environment variables, re-read the settings; return the previous values."""
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    reload_settings()
    return saved


@pytest.fixture()
def model_name(engine) -> Iterator[str]:
    """A fresh registered-model name for this test, so no test sees another's champion."""
    name = f"test-coach-{uuid.uuid4().hex[:8]}"
    saved = _set_env(FINCOACH_MODEL_NAME=name)
    yield name
    _set_env(**saved)


def _without_loaded_policy(self: PolicyPyfunc) -> dict:
    return {k: v for k, v in self.__dict__.items() if k != "policy"}


def _register_champion(name: str, folder: Path, bias: np.ndarray | None = None,
                       feature_spec_version: str | None = None) -> str:
    """Train nothing: script a linear Q-network, log it the way training does, register it as champion."""
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
    # PolicyPyfunc keeps the TorchScript policy it loads to infer the signature, then MLflow cannot pickle it
    # (reported; see test_log_policy_with_an_input_example_works). Until fixed, pickle it without that.
    with pytest.MonkeyPatch.context() as mp, mlflow.start_run():
        mp.setattr(PolicyPyfunc, "__getstate__", _without_loaded_policy, raising=False)
        info = log_policy(folder, input_example=example)
    version = mlflow.register_model(info.model_uri, name).version
    mlflow.MlflowClient().set_registered_model_alias(name, "champion", version)
    return f"{name}/{version}"


@pytest.mark.xfail(strict=True, raises=mlflow.exceptions.MlflowException,
                   reason="fincoach.policy_model.PolicyPyfunc cannot be pickled after MLflow called load_context")
def test_log_policy_with_an_input_example_works(engine, tmp_path):
    net = torch.jit.script(torch.nn.Linear(N_FEATURES, N_ACTIONS))
    folder = write_policy_artifact(tmp_path, net, {"run_id": "test"})
    tracking.configure_mlflow()
    with mlflow.start_run():
        log_policy(folder, input_example=pd.DataFrame([FEATURES], columns=list(FEATURE_NAMES)))


# --- which policy serves -------------------------------------------------------------------------------------


def test_without_a_registered_model_the_rules_serve_and_say_why(model_name):
    loaded = load_policy()

    assert (loaded.source, loaded.model_version) == ("rules", RULES_VERSION)
    assert f"models:/{model_name}@champion" in loaded.fallback_reason
    assert "MlflowException" in loaded.fallback_reason


def test_the_registered_champion_serves(model_name, tmp_path):
    bias = np.zeros(N_ACTIONS)
    bias[2] = 5.0  # SAVE_MORE 100, allowed for everyone
    version = _register_champion(model_name, tmp_path / "policy", bias=bias)

    loaded = load_policy()

    assert (loaded.source, loaded.model_version, loaded.fallback_reason) == ("champion", version, None)
    raw = np.array([[FEATURES[n] for n in FEATURE_NAMES]])
    assert loaded.policy.act(raw).actions.tolist() == [2]


def test_a_champion_of_another_feature_spec_is_refused(model_name, tmp_path):
    _register_champion(model_name, tmp_path / "policy", feature_spec_version="v0-retired")

    loaded = load_policy()

    assert loaded.source == "rules"
    assert "IncompatibleModelError" in loaded.fallback_reason
    assert f"feature spec v0-retired, this code serves {FEATURE_SPEC_VERSION}" in loaded.fallback_reason


def test_an_unreachable_registry_falls_back_to_rules(engine):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    saved = _set_env(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{closed}", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    tracking.configure_mlflow.cache_clear()
    try:
        loaded = load_policy()
    finally:
        _set_env(**saved)
        tracking.configure_mlflow.cache_clear()
        tracking.configure_mlflow()

    assert loaded.source == "rules"
    assert f"127.0.0.1:{closed}" in loaded.fallback_reason


# --- the scorer over HTTP --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"scorer exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"scorer at {url} did not come up in {timeout}s")


@pytest.fixture(scope="module")
def scorer(engine, tmp_path_factory) -> Iterator[str]:
    """`serving.app.run()` in its own process on a free port, with no champion registered: the rules answer."""
    port = _free_port()
    env = {**os.environ, "FINCOACH_SCORER_PORT": str(port), "FINCOACH_MODEL_NAME": f"test-none-{uuid.uuid4().hex[:8]}"}
    log_path = tmp_path_factory.mktemp("scorer") / "scorer.log"
    with log_path.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from serving.app import run; run()"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://{get_settings().scorer_host}:{port}"
    try:
        _wait_until_up(url, proc)
        yield url
    except Exception:
        print(log_path.read_text())
        raise
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _users(engine: sa.Engine, user_ids: list[int]) -> None:
    names = ", ".join(FEATURE_NAMES)
    binds = ", ".join(f":{n}" for n in FEATURE_NAMES)
    with engine.begin() as conn:
        for uid in user_ids:
            conn.execute(sa.text(
                "insert into app.users (user_id, created_at, birth_year, income_band, pay_frequency, monthly_income, "
                "region, device_type, risk_tolerance) values (:u, '2025-01-01', 1990, 'middle', 'monthly', 3000, "
                "'north', 'web', 'low')"), {"u": uid})
            conn.execute(sa.text(
                f"insert into features.user_features_latest (user_id, as_of, feature_spec_version, {names}) "
                f"values (:u, '2026-03-01', :v, {binds})"), {"u": uid, "v": FEATURE_SPEC_VERSION, **FEATURES})


def test_healthz_names_the_rules_fallback(scorer):
    body = httpx.get(f"{scorer}/healthz").json()

    assert body["status"] == "ok"
    assert (body["source"], body["model_version"]) == ("rules", RULES_VERSION)
    assert "could not be loaded" in body["fallback_reason"]


def test_recommendations_of_a_scored_user_come_ranked_and_unknown_users_get_404(scorer, clean_db):
    _users(clean_db, [1, 2])
    score_all_users("http-1", datetime.now(UTC))

    body = httpx.get(f"{scorer}/recommendations/1").json()
    missing = httpx.get(f"{scorer}/recommendations/999")

    k = get_settings().recommendations_per_user
    assert body["user_id"] == 1
    assert [r["rank"] for r in body["recommendations"]] == list(range(1, k + 1))
    first = body["recommendations"][0]
    assert first["action_text"] == action_text(first["action_id"]) and first["run_id"] == "http-1"
    assert first["parameters"].keys() == {"amount", "category", "urgency"}
    assert missing.status_code == 404 and "no unexpired recommendations for user 999" in missing.json()["detail"]


def test_expired_recommendations_are_not_served(scorer, clean_db):
    _users(clean_db, [1])
    score_all_users("http-2", datetime(2020, 1, 1, tzinfo=UTC))

    assert httpx.get(f"{scorer}/recommendations/1").status_code == 404


def test_score_by_user_logs_the_online_choice_with_its_propensity(scorer, clean_db):
    _users(clean_db, [7])

    body = httpx.post(f"{scorer}/score", json={"user_id": 7}).json()

    assert (body["source"], body["model_version"]) == ("rules", RULES_VERSION)
    assert "could not be loaded" in body["fallback_reason"]
    assert body["action_text"] == action_text(body["action_id"])
    with clean_db.connect() as conn:
        logged = conn.execute(sa.text(
            "select request_id, action_id, propensity, model_version, source from app.coaching_interactions "
            "where user_id = 7")).mappings().all()
    assert [dict(r) for r in logged] == [{
        "request_id": body["request_id"], "action_id": body["action_id"], "propensity": body["propensity"],
        "model_version": RULES_VERSION, "source": "online",
    }]


def test_score_by_features_answers_without_logging(scorer, clean_db):
    body = httpx.post(f"{scorer}/score", json={"features": FEATURES}).json()

    eps, n_valid = get_settings().serving_epsilon, int(action_mask(vector_from_mapping(FEATURES))[0].sum())
    if body["action_type"] == "PAY_DEBT_EXTRA":  # the first rule (debt at 22% APR), unless it explored
        assert (body["score"], body["propensity"]) == (10.0, pytest.approx(1 - eps + eps / n_valid))
    else:
        assert body["propensity"] == pytest.approx(eps / n_valid)
    assert body["request_id"] is None
    with clean_db.connect() as conn:
        assert conn.execute(sa.text("select count(*) from app.coaching_interactions")).scalar() == 0


def test_features_that_do_not_match_the_spec_are_422_naming_them(scorer):
    features = {k: v for k, v in FEATURES.items() if k != "age"} | {"shoe_size": 42.0}

    response = httpx.post(f"{scorer}/score", json={"features": features})

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert (detail["unknown"], detail["missing"]) == (["shoe_size"], ["age"])


def test_a_score_request_needs_exactly_one_of_user_and_features(scorer):
    assert httpx.post(f"{scorer}/score", json={}).status_code == 422
    assert httpx.post(f"{scorer}/score", json={"user_id": 1, "features": FEATURES}).status_code == 422


def test_score_for_a_user_without_features_is_404(scorer, clean_db):
    response = httpx.post(f"{scorer}/score", json={"user_id": 12345})

    assert response.status_code == 404
    assert "has no features" in response.json()["detail"]


def test_the_scorer_serves_the_champion_when_there_is_one(model_name, tmp_path, clean_db):
    bias = np.zeros(N_ACTIONS)
    bias[8] = 3.0  # REVIEW_BUDGET
    version = _register_champion(model_name, tmp_path / "policy", bias=bias)
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.config.port}"
    try:
        _wait_until_up(url)
        health = httpx.get(f"{url}/healthz").json()
        scored = httpx.post(f"{url}/score", json={"features": FEATURES}).json()
    finally:
        server.should_exit = True
        thread.join(timeout=10)

    assert (health["source"], health["model_version"], health["fallback_reason"]) == ("champion", version, None)
    assert (scored["source"], scored["model_version"], scored["fallback_reason"]) == ("champion", version, None)
    assert scored["score"] == pytest.approx(bias[scored["action_id"]])  # the network's Q-value, not a rule's
