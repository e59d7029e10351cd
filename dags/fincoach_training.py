"""
### fincoach_training — features in, model out

Daily, or whenever a new feature snapshot is published: take the latest snapshot at or before the interval
end → calibrate the user simulator on it and validate it on held-out users (parameters and report in
MLflow; a calibration that fails validation is not used) → train a candidate RLlib DQN agent in the user
simulator, starting from the champion's weights (or
from behaviour cloning on the logged interactions) → evaluate it against the champion, the rules, a random
policy, LinUCB and Thompson sampling on the same held-out simulated users (95% CIs, paired tests, segments,
relevance, OPE checked against the simulator; plots and tables in MLflow) → register it in MLflow as
`fincoach-coach` (alias `challenger`) → promote it to `champion` only through the gate (CI lower bound
above rules and champion, no segment regression), which updates the asset `fincoach_model`. The gate's
decision and reason are logged to the MLflow run and the version; `fincoach model rollback` undoes a
promotion.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from fincoach.orchestration import FEATURES_ASSET, MODEL_ASSET


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * *", timezone="UTC"), assets=[Asset(FEATURES_ASSET)]
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=2)},
    tags=["fincoach", "training"],
    doc_md=__doc__,
)
def fincoach_training():
    @task
    def latest_snapshot() -> str:
        from fincoach.orchestration import interval_end, run_step
        from pipelines.snapshots import latest_snapshot_uri

        return run_step("latest_snapshot", latest_snapshot_uri, interval_end())

    @task
    def calibrate_simulator(features_uri: str) -> dict:
        from fincoach.orchestration import run_id, run_step
        from training.calibrate import calibrate_simulator

        return run_step("calibrate_simulator", calibrate_simulator, features_uri, run_id())

    @task
    def train_candidate(features_uri: str) -> dict:
        from fincoach.orchestration import run_id, run_step
        from training.workflow import train_candidate

        return run_step("train_candidate", train_candidate, features_uri, run_id())

    @task
    def evaluate_candidate(trained: dict) -> dict:
        from fincoach.orchestration import run_step
        from training.workflow import evaluate_candidate

        return run_step("evaluate_candidate", evaluate_candidate, trained)

    @task
    def register_candidate(evaluated: dict) -> dict:
        from fincoach.orchestration import run_step
        from training.workflow import register_candidate

        return run_step("register_candidate", register_candidate, evaluated)

    @task(outlets=[Asset(MODEL_ASSET)])
    def promote_if_better(registered: dict) -> dict:
        from fincoach.orchestration import run_step
        from training.workflow import promote_if_better

        return run_step("promote_if_better", promote_if_better, registered)

    snapshot = latest_snapshot()
    trained = train_candidate(snapshot)
    calibrate_simulator(snapshot) >> trained
    promote_if_better(register_candidate(evaluate_candidate(trained)))


fincoach_training()
