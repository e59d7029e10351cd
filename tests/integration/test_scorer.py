"""The serving policy comes from the MLflow registry or falls back to rules, and the scorer answers over HTTP."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import torch
import uvicorn
from scorer_support import (
    FEATURES,
    free_port,
    insert_users,
    register_champion,
    scorer_process,
    wait_for,
    wait_until_up,
)

from fincoach import tracking
from fincoach.actions import N_ACTIONS, action_text
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, N_FEATURES, vector_from_mapping
from fincoach.policy import write_policy_artifact
from fincoach.policy_model import log_policy
from fincoach.rules import RULES_VERSION
from fincoach.settings import get_settings, reload_settings
from serving.app import create_app
from serving.batch import score_all_users
from serving.decide import allowed_actions
from serving.guardrails import UserContext
from serving.model_loader import load_policy


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


def test_log_policy_with_an_input_example_works(engine, tmp_path):
    net = torch.jit.script(torch.nn.Linear(N_FEATURES, N_ACTIONS))
    folder = write_policy_artifact(tmp_path, net, {"run_id": "test"})
    tracking.configure_mlflow()
    with mlflow.start_run():
        info = log_policy(folder, input_example=pd.DataFrame([FEATURES], columns=list(FEATURE_NAMES)))

    assert info.signature is not None
    assert mlflow.pyfunc.load_model(info.model_uri).predict(
        pd.DataFrame([FEATURES], columns=list(FEATURE_NAMES))).shape == (1,)


def test_loading_a_registered_policy_leaves_no_temporary_folder(model_name, tmp_path, monkeypatch):
    import tempfile

    from fincoach.policy_model import load_registered_policy

    register_champion(model_name, tmp_path / "policy")
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))  # a temp folder no other process uses

    policy = load_registered_policy(f"models:/{model_name}@champion")

    assert list(private.iterdir()) == []
    assert policy.action_scores(np.array([[FEATURES[n] for n in FEATURE_NAMES]])).shape == (1, N_ACTIONS)


# --- which policy serves -------------------------------------------------------------------------------------


def test_without_a_registered_model_the_rules_serve_and_say_why(model_name):
    loaded = load_policy()

    assert (loaded.source, loaded.model_version) == ("rules", RULES_VERSION)
    assert f"models:/{model_name}@champion" in loaded.fallback_reason
    assert "MlflowException" in loaded.fallback_reason


def test_the_registered_champion_serves(model_name, tmp_path):
    bias = np.zeros(N_ACTIONS)
    bias[2] = 5.0  # SAVE_MORE 100, allowed for everyone
    version = register_champion(model_name, tmp_path / "policy", bias=bias)

    loaded = load_policy()

    assert (loaded.source, loaded.model_version, loaded.fallback_reason) == ("champion", version, None)
    raw = np.array([[FEATURES[n] for n in FEATURE_NAMES]])
    assert loaded.policy.act(raw).actions.tolist() == [2]


def test_a_champion_of_another_feature_spec_is_refused(model_name, tmp_path):
    register_champion(model_name, tmp_path / "policy", feature_spec_version="v0-retired")

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


@pytest.fixture(scope="module")
def scorer(engine, tmp_path_factory) -> Iterator[httpx.Client]:
    """`serving.app.run()` in its own process on a free port, with no champion registered: the rules answer."""
    log_path = tmp_path_factory.mktemp("scorer") / "scorer.log"
    with scorer_process(log_path, FINCOACH_MODEL_NAME=f"test-none-{uuid.uuid4().hex[:8]}") as client:
        yield client


def _logged(engine: sa.Engine, user_id: int) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "select request_id, action_id, propensity, model_version, source, response "
            "from app.coaching_interactions where user_id = :u order by id"), {"u": user_id}).mappings()]


def test_healthz_names_the_rules_fallback_and_needs_no_key(scorer):
    body = httpx.get(f"{scorer.base_url}/healthz").json()

    assert body["status"] == "ok" and body["auth"] == "on"
    assert (body["source"], body["model_version"]) == ("rules", RULES_VERSION)
    assert "@champion does not exist" in body["fallback_reason"]
    ready = httpx.get(f"{scorer.base_url}/readyz").json()
    assert ready["ready"] and ready["database"] and ready["registry"] is True and ready["champion"] is None


def test_everything_but_health_checks_needs_an_api_key(scorer):
    bare = httpx.Client(base_url=str(scorer.base_url))
    assert bare.get("/recommendations/1").status_code == 401
    assert bare.post("/score", json={"features": FEATURES}).status_code == 401
    assert bare.post("/feedback", json={"request_id": "x", "response": "accepted"}).status_code == 401
    assert bare.get("/metrics").status_code == 401
    assert bare.get("/openapi.json").status_code == 200


def test_recommendations_of_a_scored_user_come_ranked_and_unknown_users_get_404(scorer, clean_db):
    insert_users(clean_db, [1, 2])
    score_all_users("http-1", datetime.now(UTC))

    body = scorer.get("/recommendations/1").json()
    missing = scorer.get("/recommendations/999")

    k = get_settings().recommendations_per_user
    assert body["user_id"] == 1
    assert [r["rank"] for r in body["recommendations"]] == list(range(1, k + 1))
    first = body["recommendations"][0]
    assert first["action_text"] == action_text(first["action_id"]) and first["run_id"] == "http-1"
    assert first["parameters"].keys() == {"amount", "category", "urgency"}
    assert first["explanation"] and first["family"]
    assert missing.status_code == 404 and "no unexpired recommendations for user 999" in missing.json()["detail"]


def test_a_user_who_opts_out_after_the_batch_run_is_served_none_of_its_nudges(scorer, clean_db):
    insert_users(clean_db, [3])
    score_all_users("http-3", datetime.now(UTC))
    before = scorer.get("/recommendations/3").json()["recommendations"]
    assert any(r["action_type"] != "NO_ACTION" for r in before)
    with clean_db.begin() as conn:
        conn.execute(sa.text("insert into app.coaching_opt_outs (user_id) values (3)"))

    after = scorer.get("/recommendations/3")
    # exploration can rank NO_ACTION among the user's recommendations: that one may still be served
    served = after.json()["recommendations"] if after.status_code == 200 else []
    assert after.status_code in (200, 404) and all(r["action_type"] == "NO_ACTION" for r in served)
    assert after.status_code == 404 or served == [r for r in before if r["action_type"] == "NO_ACTION"]


def test_expired_recommendations_are_not_served(scorer, clean_db):
    insert_users(clean_db, [1])
    score_all_users("http-2", datetime(2020, 1, 1, tzinfo=UTC))

    assert scorer.get("/recommendations/1").status_code == 404


def test_score_by_user_logs_the_online_choice_with_its_propensity_and_feedback_is_stored(scorer, clean_db):
    insert_users(clean_db, [7])

    body = scorer.post("/score", json={"user_id": 7}).json()

    assert (body["source"], body["model_version"]) == ("rules", RULES_VERSION)
    assert "@champion does not exist" in body["fallback_reason"]
    assert body["action_text"] == action_text(body["action_id"]) and body["explanation"]
    feedback = scorer.post("/feedback", json={"request_id": body["request_id"], "response": "accepted"})
    assert feedback.status_code == 200 and feedback.json()["response"] == "accepted"
    assert _logged(clean_db, 7) == [{
        "request_id": body["request_id"], "action_id": body["action_id"], "propensity": body["propensity"],
        "model_version": RULES_VERSION, "source": "online", "response": "accepted",
    }]
    again = scorer.post("/feedback", json={"request_id": body["request_id"], "response": "accepted"})
    other = scorer.post("/feedback", json={"request_id": body["request_id"], "response": "dismissed"})
    unknown = scorer.post("/feedback", json={"request_id": "nope", "response": "dismissed"})
    assert (again.status_code, other.status_code, unknown.status_code) == (200, 409, 404)
    # text Postgres cannot store (the fuzzer's finding: a 500 from the database driver) is refused up front
    for unstorable in ('"a\\u0000b"', '"\\udc00x"'):
        refused = scorer.post("/feedback", content=f'{{"request_id": {unstorable}, "response": "ignored"}}',
                              headers={"Content-Type": "application/json"})
        assert refused.status_code == 422, (unstorable, refused.text)


def test_an_opted_out_user_is_served_no_action(scorer, clean_db):
    insert_users(clean_db, [8])
    with clean_db.begin() as conn:
        conn.execute(sa.text("insert into app.coaching_opt_outs (user_id) values (8)"))

    body = scorer.post("/score", json={"user_id": 8}).json()

    assert (body["action_type"], body["propensity"]) == ("NO_ACTION", 1.0)


def test_the_nudge_cap_counts_what_the_scorer_served(scorer, clean_db):
    insert_users(clean_db, [9], FEATURES | {"monthly_income": 9000.0})
    served = [scorer.post("/score", json={"user_id": 9}).json()["action_type"] for _ in range(12)]

    cap = get_settings().nudge_cap
    nudges = [i for i, t in enumerate(served) if t != "NO_ACTION"]
    assert len(nudges) == cap  # exploration may pick NO_ACTION before the cap: then the cap comes later
    assert all(t == "NO_ACTION" for t in served[nudges[-1] + 1:])


def test_score_by_features_answers_without_logging(scorer, clean_db):
    body = scorer.post("/score", json={"features": FEATURES}).json()

    # what the catalog's mask and the guardrails leave for this user (no emergency fund: no INVEST, ...)
    allowed, _ = allowed_actions(vector_from_mapping(FEATURES)[None, :], UserContext.none(1))
    eps, n_valid = get_settings().serving_epsilon, int(allowed[0].sum())
    if body["action_type"] == "PAY_DEBT_EXTRA":  # the first rule (debt at 22% APR), unless it explored
        assert (body["score"], body["propensity"]) == (10.0, pytest.approx(1 - eps + eps / n_valid))
    else:
        assert body["propensity"] == pytest.approx(eps / n_valid)
    assert body["request_id"] is None
    with clean_db.connect() as conn:
        assert conn.execute(sa.text("select count(*) from app.coaching_interactions")).scalar() == 0


def test_features_that_do_not_match_the_spec_are_422_naming_them(scorer):
    features = {k: v for k, v in FEATURES.items() if k != "age"} | {"shoe_size": 42.0}

    response = scorer.post("/score", json={"features": features})

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert (detail["unknown"], detail["missing"]) == (["shoe_size"], ["age"])


def test_a_score_request_needs_exactly_one_of_user_and_features(scorer):
    assert scorer.post("/score", json={}).status_code == 422
    assert scorer.post("/score", json={"user_id": 1, "features": FEATURES}).status_code == 422


def test_score_for_a_user_without_features_is_404(scorer, clean_db):
    response = scorer.post("/score", json={"user_id": 12345})

    assert response.status_code == 404
    assert "has no features" in response.json()["detail"]


def test_metrics_show_latency_outcomes_and_the_model_in_service(scorer):
    scorer.post("/score", json={"features": FEATURES})
    scorer.get("/recommendations/424242")

    text = scorer.get("/metrics").text

    assert 'fincoach_scorer_request_seconds_bucket{endpoint="/score"' in text
    assert 'fincoach_scorer_requests_total{endpoint="/recommendations/{user_id}",outcome="client_error"}' in text
    assert f'fincoach_scorer_model_info{{model_version="{RULES_VERSION}",tier="rules"}} 1.0' in text
    assert 'fincoach_scorer_fallbacks_total{tier="rules"}' in text


@contextmanager
def _serve_in_thread(**env: str | None) -> Iterator[str]:
    """create_app() served by uvicorn in a thread (the scorer reads this process's settings, changed by env)."""
    saved = _set_env(**env)
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.config.port}"
    try:
        wait_until_up(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        _set_env(**saved)


@pytest.fixture()
def in_process_scorer() -> Iterator[str]:
    """A scorer in this process that checks the registry every 0.3 s and needs no API key."""
    with _serve_in_thread(FINCOACH_SCORER_RELOAD_SECONDS="0.3", FINCOACH_SCORER_LOG_FLUSH_SECONDS="0.05",
                          FINCOACH_API_KEYS=None) as url:
        yield url


def test_the_scorer_serves_the_champion_when_there_is_one(model_name, tmp_path, clean_db):
    bias = np.zeros(N_ACTIONS)
    bias[8] = 3.0  # REVIEW_BUDGET
    version = register_champion(model_name, tmp_path / "policy", bias=bias)
    with _serve_in_thread(FINCOACH_API_KEYS=None) as url:
        health = httpx.get(f"{url}/healthz").json()
        scored = httpx.post(f"{url}/score", json={"features": FEATURES}).json()

    assert (health["source"], health["model_version"], health["fallback_reason"]) == ("champion", version, None)
    assert (scored["source"], scored["model_version"], scored["fallback_reason"]) == ("champion", version, None)
    assert scored["score"] == pytest.approx(bias[scored["action_id"]])  # the network's Q-value, not a rule's


def _hammer(url: str, stop: threading.Event, answers: list) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            response = client.post("/score", json={"features": FEATURES})
            answers.append((response.status_code, response.json() if response.status_code == 200 else response.text))


def test_a_moved_champion_alias_is_hot_reloaded_without_failing_a_request(model_name, tmp_path, clean_db,
                                                                           in_process_scorer):
    first = np.zeros(N_ACTIONS)
    first[8] = 3.0  # REVIEW_BUDGET
    v1 = register_champion(model_name, tmp_path / "v1", bias=first)
    wait_for(lambda: httpx.get(f"{in_process_scorer}/readyz").json()["champion"] == v1)
    stop, answers = threading.Event(), []
    threads = [threading.Thread(target=_hammer, args=(in_process_scorer, stop, answers)) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        second = np.zeros(N_ACTIONS)
        second[2] = 4.0  # SAVE_MORE 100
        v2 = register_champion(model_name, tmp_path / "v2", bias=second)
        wait_for(lambda: any(a[1]["model_version"] == v2 for a in answers[-20:] if a[0] == 200), timeout=20)
        wait_for(lambda: len(answers) > 50)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)

    assert {code for code, _ in answers} == {200}
    versions = [a["model_version"] for _, a in answers]
    assert versions[0] == v1 and versions[-1] == v2
    assert all(a["source"] == "champion" for _, a in answers)
    ready = httpx.get(f"{in_process_scorer}/readyz").json()
    assert (ready["champion"], ready["previous_champion"]) == (v2, v1)


def test_a_failing_champion_falls_back_to_the_previous_one_and_the_breaker_opens(model_name, tmp_path, clean_db,
                                                                                   in_process_scorer):
    good = np.zeros(N_ACTIONS)
    good[8] = 3.0
    v1 = register_champion(model_name, tmp_path / "v1", bias=good)
    wait_for(lambda: httpx.get(f"{in_process_scorer}/readyz").json()["champion"] == v1)
    v2 = register_champion(model_name, tmp_path / "v2", bias=np.full(N_ACTIONS, np.nan))  # a broken network
    wait_for(lambda: httpx.get(f"{in_process_scorer}/readyz").json()["champion"] == v2)

    answers = [httpx.post(f"{in_process_scorer}/score", json={"features": FEATURES}).json() for _ in range(8)]

    assert {(a["source"], a["model_version"]) for a in answers} == {("previous_champion", v1)}
    assert "ModelOutputError: non-finite score" in answers[0]["fallback_reason"]
    failures = get_settings().scorer_breaker_failures
    assert "circuit open" in answers[failures]["fallback_reason"]


def test_on_start_the_previous_champion_is_the_last_version_the_gate_promoted(model_name, tmp_path, clean_db):
    v1 = register_champion(model_name, tmp_path / "v1")
    v2 = register_champion(model_name, tmp_path / "v2")

    with _serve_in_thread(FINCOACH_API_KEYS=None) as url:
        ready = httpx.get(f"{url}/readyz").json()

    assert (ready["champion"], ready["previous_champion"]) == (v2, v1)
