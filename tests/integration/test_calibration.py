"""Simulator calibration and validation on real data: synthetic users in Postgres, a real dbt build, the
feature pipeline's snapshot, MLflow on the fixture's Postgres."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import mlflow
import pytest
import sqlalchemy as sa

from fincoach.actions import ACTION_TYPES
from fincoach.settings import get_settings
from pipelines.analytics_build import build_analytics
from pipelines.features import build_features, publish_features
from pipelines.seed import seed
from training import calibrate
from training.sim_params import DEFAULT_PARAMS, SimParams
from training.sim_validation import METRICS, validate
from training.workflow import read_snapshot, split_users

pytestmark = pytest.mark.slow
END = dt.date(2026, 6, 1)


@pytest.fixture(scope="module")
def snapshot(engine):
    """600 synthetic users x 120 days, the analytics schema built by dbt, a published feature snapshot."""
    with engine.begin() as conn:
        conn.execute(sa.text("truncate app.users restart identity cascade"))
    seed(engine, 600, 120, 11, END)
    build_analytics("calib-test")
    as_of = dt.datetime(END.year, END.month, END.day, tzinfo=dt.UTC)
    published = publish_features(build_features(engine, as_of, "calib-test"), "calib-test")
    return published["path"], as_of


def test_calibration_fits_archetypes_processes_and_response_rates(snapshot):
    uri, as_of = snapshot
    frame = read_snapshot(uri)
    train, _ = split_users(frame)
    params = calibrate.calibrate_params(train, as_of, 7)
    assert 2 <= len(params.archetypes) <= calibrate.MAX_ARCHETYPES
    assert sum(a.share for a in params.archetypes) == pytest.approx(1.0)
    assert any(a.income_sd != DEFAULT_PARAMS.archetypes[0].income_sd for a in params.archetypes)
    assert set(params.response_logit) == set(ACTION_TYPES)
    fitted = {t: v for t, v in params.response_logit.items() if v != 0.0}
    assert {"SAVE_MORE", "REDUCE_SPENDING", "INVEST"} <= set(fitted)
    # The logged rates are matched by the simulator after fitting (within a few points).
    counts = calibrate.history.response_counts(calibrate.db.get_engine().connect(), as_of)
    from fincoach.feature_spec import raw_matrix

    sim = calibrate.simulated_acceptance(raw_matrix(train)[:2000], params, 7)
    for t in ("SAVE_MORE", "REDUCE_SPENDING", "INVEST"):
        observed = counts.loc[t, "accepted"] / counts.loc[t, "served"]
        assert abs(sim[t] - observed) < 0.05, (t, sim[t], observed)
    assert SimParams.from_dict(json.loads(params.dumps())) == params


def test_validation_passes_a_fitted_calibration_and_fails_a_broken_one(snapshot):
    uri, as_of = snapshot
    frame = read_snapshot(uri)
    train, holdout = split_users(frame)
    params = calibrate.calibrate_params(train, as_of, 7)
    good = validate(params, holdout, as_of, 7)
    assert set(good["ks"]) == set(METRICS) and good["n_users"] >= 50
    assert good["passed"], good
    # The uncalibrated defaults have no regular saving: their savings changes are off, and fail.
    default = validate(DEFAULT_PARAMS, holdout, as_of, 7)
    assert not default["passed"] and "savings_change" in default["reason"]
    assert default["ks"]["savings_change"] > good["ks"]["savings_change"]
    spendthrift = replace(params, archetypes=[replace(a, impulse_scale=5.0, save_share=0.4) for a in params.archetypes])
    bad = validate(spendthrift, holdout, as_of, 7)
    assert not bad["passed"] and "KS above" in bad["reason"]


def test_calibrate_simulator_logs_stores_and_falls_back_when_validation_fails(snapshot, monkeypatch):
    uri, _ = snapshot
    out = calibrate.calibrate_simulator(uri, "calib-run-1")
    assert out["used"] == "calibrated", out
    loaded = calibrate.load_calibration("calib-run-1")
    assert loaded.source == "calibrated" and len(loaded.archetypes) == out["archetypes"]
    run = mlflow.get_run(out["mlflow_run_id"])
    assert run.data.tags["sim.used"] == "calibrated"
    assert any(k.startswith("sim/validation/calibrated/ks_") for k in run.data.metrics)
    again = calibrate.calibrate_simulator(uri, "calib-run-1")  # a retry: same numbers, same MLflow run
    assert again["ks"] == out["ks"] and again["mlflow_run_id"] == out["mlflow_run_id"]

    monkeypatch.setattr(get_settings(), "sim_validation_max_ks", 0.0)  # nothing can pass
    failed = calibrate.calibrate_simulator(uri, "calib-run-2")
    assert failed["used"] == "default" and "KS above 0.0" in failed["reason"]
    fallback = calibrate.load_calibration("calib-run-2")
    assert fallback.archetypes == DEFAULT_PARAMS.archetypes and "calibration failed" in fallback.source
    assert mlflow.get_run(failed["mlflow_run_id"]).data.tags["sim.used"] == "default"
    assert calibrate.load_calibration("never-calibrated") == DEFAULT_PARAMS


def test_a_snapshot_without_as_of_is_not_calibrated_and_training_gets_the_defaults(engine, tmp_path):
    import pyarrow as pa

    from fincoach import lake
    from training.sample_users import sample_snapshot

    uri = lake.write_parquet(pa.Table.from_pandas(sample_snapshot(50, 2)), "features/as_of=no-as-of/features.parquet")
    out = calibrate.calibrate_simulator(uri, "calib-run-3")
    assert out["used"] == "default" and "as_of" in out["reason"]
    assert calibrate.load_calibration("calib-run-3").archetypes == DEFAULT_PARAMS.archetypes


def test_validation_without_two_full_months_of_history_fails_saying_so(snapshot):
    uri, _ = snapshot
    frame = read_snapshot(uri)
    _, holdout = split_users(frame)
    too_early = dt.datetime(2026, 3, 15, tzinfo=dt.UTC)  # the data starts in February: January is missing
    report = validate(DEFAULT_PARAMS, holdout, too_early, 7)
    assert not report["passed"] and "have every day of 2026-01-01..2026-03-01" in report["reason"]


def test_training_and_evaluation_simulate_with_the_dag_run_s_calibration(snapshot, monkeypatch):
    import uuid

    from fincoach.settings import reload_settings
    from training import workflow

    for key, value in {
        "FINCOACH_TRAIN_TIMESTEPS": "600",
        "FINCOACH_EVAL_USERS": "100",
        "FINCOACH_ORACLE_DRAWS": "1",
        "FINCOACH_BANDIT_EPISODES": "2",
        "FINCOACH_OFFLINE_PRETRAIN": "false",
        "FINCOACH_MODEL_NAME": f"test-calibrated-{uuid.uuid4().hex[:8]}",
    }.items():
        monkeypatch.setenv(key, value)
    reload_settings()
    try:
        uri, _ = snapshot
        run_id = "calib-train-1"
        assert calibrate.calibrate_simulator(uri, run_id)["used"] == "calibrated"
        used = calibrate.load_calibration(run_id)
        trained = workflow.train_candidate(uri, run_id)
        assert trained["run_id"] == run_id and trained["simulator_params"] == "calibrated"
        run = mlflow.get_run(trained["mlflow_run_id"])
        assert run.data.params["simulator_params"] == "calibrated"
        assert run.data.params["simulator_archetypes"] == str(len(used.archetypes))
        logged = mlflow.artifacts.load_dict(f"runs:/{trained['mlflow_run_id']}/simulator/sim_params.json")
        assert SimParams.from_dict(logged) == used and len(used.archetypes) >= 2
        evaluated = workflow.evaluate_candidate(trained)
        assert evaluated["simulator_params"] == "calibrated"
        assert mlflow.get_run(trained["mlflow_run_id"]).data.tags["eval.simulator_params"] == "calibrated"

        # A DAG run whose calibration failed validation trains on the defaults, and says why.
        monkeypatch.setattr(get_settings(), "sim_validation_max_ks", 0.0)
        assert calibrate.calibrate_simulator(uri, "calib-train-2")["used"] == "default"
        fallback = workflow.train_candidate(uri, "calib-train-2")
        assert fallback["simulator_params"].startswith("default (calibration failed: KS above 0.0")
        params = mlflow.get_run(fallback["mlflow_run_id"]).data.params
        assert params["simulator_params"] == fallback["simulator_params"][: workflow.MAX_PARAM_CHARS]
        assert params["simulator_archetypes"] == "1"
    finally:
        monkeypatch.undo()
        reload_settings()
