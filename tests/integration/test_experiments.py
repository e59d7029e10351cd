"""A/B tests: sticky assignment in the scorer, exposures logged, analysis with intervals and an always-valid test."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from scorer_support import insert_users, scorer_process

from fincoach.cli import main
from serving.experiment_analysis import analyse_experiment, msprt_p_value, wilson
from serving.experiments import Experiment, ExperimentError, active_experiment, parse_arm

ARMS = ["control=alias:champion:0.5:control", "baseline=rules::0.5"]


def test_arms_parse_from_the_command_line():
    assert parse_arm("new=alias:challenger:0.25").share == 0.25
    assert parse_arm("base=rules::0.5:control").is_control
    with pytest.raises(ExperimentError, match="name=kind:ref:share"):
        parse_arm("oops")


def test_the_sequential_p_value_stays_at_one_without_an_effect_and_falls_with_one():
    assert msprt_p_value(50, 100, 50, 100, 0.05) == 1.0
    assert msprt_p_value(80, 200, 40, 200, 0.05) < 0.01
    low, high = wilson(30, 100)
    assert low < 0.3 < high and high - low < 0.2


def test_served_users_are_assigned_stickily_logged_as_exposed_and_analysed(clean_db, tmp_path):
    assert main(["experiment", "create", "exp-a", *[f"--arm={a}" for a in ARMS]]) == 0
    assert main(["experiment", "create", "exp-a", *[f"--arm={a}" for a in ARMS]]) == 2  # ids are never reused
    experiment: Experiment = active_experiment(clean_db)
    users = list(range(1, 81))
    insert_users(clean_db, users)

    with scorer_process(tmp_path / "scorer.log", FINCOACH_MODEL_NAME=f"test-none-{uuid.uuid4().hex[:8]}") as client:
        answers = {u: client.post("/score", json={"user_id": u}).json() for u in users}
        again = {u: client.post("/score", json={"user_id": u}).json()["arm"] for u in users[:10]}
        for answer in answers.values():  # the baseline arm's users accept, the control's dismiss
            response = "accepted" if answer["arm"] == "baseline" else "dismissed"
            assert client.post("/feedback", json={"request_id": answer["request_id"],
                                                  "response": response}).status_code == 200

    assert {u: a["arm"] for u, a in answers.items()} == {u: experiment.assign(u).name for u in users}
    assert again == {u: answers[u]["arm"] for u in users[:10]}
    assert {a["experiment_id"] for a in answers.values()} == {"exp-a"}
    with clean_db.connect() as conn:
        exposures = dict(conn.execute(sa.text(
            "select request_id, arm from serving.experiment_exposures where experiment_id = 'exp-a'")).all())
    assert {answers[u]["request_id"]: answers[u]["arm"] for u in users}.items() <= exposures.items()

    later = datetime.now(UTC) + timedelta(minutes=1)
    first = analyse_experiment("exp-a", later)
    second = analyse_experiment("exp-a", later + timedelta(hours=1))
    rerun = analyse_experiment("exp-a", later + timedelta(hours=1))

    by_arm = {a["arm"]: a for a in second["arms"]}
    n_base = sum(a["arm"] == "baseline" for a in answers.values())
    assert by_arm["baseline"]["accepted"] == n_base and by_arm["control"]["accepted"] == 0
    assert by_arm["baseline"]["exposures"] == n_base + sum(again[u] == "baseline" for u in again)
    assert by_arm["baseline"]["ci_low"] > by_arm["control"]["ci_high"]
    assert by_arm["baseline"]["significant"] is True and by_arm["control"]["msprt_p_value"] is None
    p_first = {a["arm"]: a["msprt_p_value"] for a in first["arms"]}["baseline"]
    assert by_arm["baseline"]["msprt_p_value"] <= p_first  # always valid: never rises across looks
    assert rerun["arms"] == second["arms"]
    with clean_db.connect() as conn:
        assert conn.execute(sa.text("select count(*) from serving.experiment_results")).scalar() == 4
    plot = Path(second["plot"])
    assert plot.exists() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["experiment", "stop", "exp-a"]) == 0
    assert active_experiment(clean_db) is None


def test_the_dag_task_analyses_every_running_experiment(clean_db):
    from serving.experiment_analysis import analyse_running
    from serving.experiments import create_experiment

    create_experiment(clean_db, "exp-b", [parse_arm(a) for a in ARMS])
    create_experiment(clean_db, "exp-c", [parse_arm(a) for a in ARMS])
    assert main(["experiment", "stop", "exp-c"]) == 0

    summaries = analyse_running(datetime.now(UTC))

    assert [s["experiment_id"] for s in summaries] == ["exp-b"]
    assert {a["arm"]: a["exposures"] for a in summaries[0]["arms"]} == {"baseline": 0, "control": 0}
