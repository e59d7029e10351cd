"""
### fincoach_monitoring — is what we serve still sound?

Hourly: feature drift of the latest snapshot against the one before it (population stability index per
feature), and the mix of served actions and fallbacks in the current recommendations. Results go to
`ops.run_log`; drift beyond the threshold is raised as a warning in the task log (alerting and OPE of the
live policy come later).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task


@dag(
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=1)},
    tags=["fincoach", "monitoring"],
    doc_md=__doc__,
)
def fincoach_monitoring():
    @task
    def feature_drift() -> dict:
        from fincoach.orchestration import interval_end, run_step
        from pipelines.monitoring import feature_drift

        return run_step("feature_drift", feature_drift, interval_end())

    @task
    def served_action_mix() -> dict:
        from fincoach.orchestration import run_step
        from pipelines.monitoring import served_action_mix

        return run_step("served_action_mix", served_action_mix)

    [feature_drift(), served_action_mix()]


fincoach_monitoring()
