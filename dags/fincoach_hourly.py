"""
### fincoach_hourly — data in, features out

Every hour: carry out pending erasure requests (`ops.erasure_requests`) → build `app.user_sessions` from
the events → extract the app's new rows (by watermark, with an overlap for late rows; failing rows go to
`quarantine/`, PII scrubbed, user ids pseudonymised) to Parquet in the lake → validate the raw extract
(Great Expectations) → `dbt build` the analytics schema → compute the features as of the interval end →
validate them → publish the snapshot (lake `features/as_of=…` and `features.user_features_latest`),
which updates the asset `fincoach_features`. A failed critical expectation stops everything downstream.
Within a UTC day the features are refreshed incrementally (only users with new rows are recomputed); the
first run of a day also writes the predictiveness report of the snapshot 30 days back.
Every task is idempotent for its data interval.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, dag, task

from fincoach.orchestration import FEATURES_ASSET


@dag(
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["fincoach", "data"],
    doc_md=__doc__,
)
def fincoach_hourly():
    @task
    def process_erasures() -> dict:
        from fincoach.db import get_engine
        from fincoach.orchestration import run_step
        from pipelines.erasure import process_erasure_requests

        return run_step("process_erasures", process_erasure_requests, get_engine())

    @task
    def build_sessions(erased: dict) -> dict:
        from fincoach.db import get_engine
        from fincoach.orchestration import interval_end, run_step
        from pipelines.sessions import build_sessions

        return run_step("build_sessions", build_sessions, get_engine(), interval_end())

    @task
    def extract() -> dict:
        from fincoach.db import get_engine
        from fincoach.orchestration import interval_end, run_id, run_step
        from pipelines.extract import extract_all

        return run_step("extract", extract_all, get_engine(), interval_end(), run_id())

    @task
    def validate_raw(extracted: dict) -> dict:
        from fincoach.orchestration import run_id, run_step
        from pipelines.validation import validate_raw

        return run_step("validate_raw", validate_raw, extracted, run_id())

    @task
    def dbt_build(raw_validation: dict) -> dict:
        from fincoach.orchestration import run_id, run_step
        from pipelines.analytics_build import build_analytics

        # incremental marts; the tests read only the rows this run can have written
        return run_step("dbt_build", build_analytics, run_id(), recent_tests=True)

    @task
    def build_features(dbt_result: dict) -> dict:
        from fincoach.db import get_engine
        from fincoach.orchestration import interval_end, run_id, run_step
        from pipelines.feature_refresh import refresh_features

        # incremental within a UTC day (only the users that changed), a full build otherwise
        return run_step("build_features", refresh_features, get_engine(), interval_end(), run_id())

    @task
    def validate_features(built: dict) -> dict:
        from fincoach.orchestration import run_id, run_step
        from pipelines.validation import validate_features

        run_step("validate_features", validate_features, built, run_id())
        return built

    @task(outlets=[Asset(FEATURES_ASSET)])
    def publish_features(built: dict) -> dict:
        from fincoach.orchestration import run_id, run_step
        from pipelines.features import publish_features

        return run_step("publish_features", publish_features, built, run_id())

    @task
    def feature_predictiveness(published: dict) -> dict:
        from fincoach.db import get_engine
        from fincoach.orchestration import interval_end, run_id, run_step
        from pipelines.predictiveness import daily_report

        return run_step("feature_predictiveness", daily_report, get_engine(), interval_end(), run_id())

    extracted = extract()
    build_sessions(process_erasures()) >> extracted
    feature_predictiveness(publish_features(validate_features(build_features(dbt_build(validate_raw(extracted))))))


fincoach_hourly()
