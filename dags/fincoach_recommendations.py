"""
### fincoach_recommendations — model and features in, recommendations out

Whenever new features or a new champion appear: score every user with the champion (the rule-based
policy if no champion can be loaded, which the result says), write the top recommendations per user into
`serving.recommendations` through a staging table swapped in one transaction, log them as served with
their propensities, and write the same rows as Parquet to the lake (pseudonymised). Guardrails veto
harmful recommendations before anything is written. Then analyse every running A/B experiment of the
online scorer up to the end of the interval (serving.experiment_results and a plot).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from fincoach.orchestration import FEATURES_ASSET, MODEL_ASSET


@dag(
    schedule=(Asset(FEATURES_ASSET) | Asset(MODEL_ASSET)),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["fincoach", "serving"],
    doc_md=__doc__,
)
def fincoach_recommendations():
    @task
    def score_all_users() -> dict:
        from fincoach.orchestration import interval_end, run_id, run_step
        from serving.batch import score_all_users

        return run_step("score_all_users", score_all_users, run_id(), interval_end())

    @task
    def analyse_experiments() -> list:
        from fincoach.orchestration import interval_end, run_step
        from serving.experiment_analysis import analyse_running

        return run_step("analyse_experiments", analyse_running, interval_end())

    score_all_users() >> analyse_experiments()


fincoach_recommendations()
