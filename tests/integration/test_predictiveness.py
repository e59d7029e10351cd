"""Predictiveness report on seeded data: every feature against three outcomes, in a table and in MLflow."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from fincoach.feature_spec import FEATURE_NAMES
from pipelines.analytics_build import build_analytics
from pipelines.predictiveness import OUTCOMES, PredictivenessError, report_predictiveness

pytestmark = pytest.mark.slow

END = dt.date(2023, 9, 1)


@pytest.fixture(scope="module")
def seeded(engine):
    from pipelines.seed import seed

    with engine.begin() as conn:
        conn.execute(sa.text("truncate app.users, app.market_conditions, features.predictiveness restart identity cascade"))
    seed(engine, users=150, days=80, seed=4, end=END)
    build_analytics("predictiveness")
    return engine


def test_report_for_a_past_as_of_is_stored_for_analysts_and_logged_to_mlflow(seeded):
    import mlflow

    as_of = dt.datetime(2023, 7, 20, tzinfo=dt.UTC)
    first = report_predictiveness(seeded, as_of, "pred-1")
    again = report_predictiveness(seeded, as_of, "pred-2")  # a rerun replaces, never duplicates
    assert first["rows"] == again["rows"] == len(FEATURE_NAMES) * len(OUTCOMES)
    with seeded.connect() as conn:
        rows = conn.execute(sa.text(
            "select outcome, count(*) as n, min(mutual_information) as mi_min, max(mutual_information) as mi_max, "
            "max(n_users) as users, max(run_id) as run from features.predictiveness where as_of = :a group by outcome"
        ), {"a": as_of}).all()
    assert {r.outcome for r in rows} == set(OUTCOMES)
    for r in rows:
        assert r.n == len(FEATURE_NAMES) and r.mi_min >= 0 and r.run == "pred-2"
        assert r.mi_max > 0.01, r  # some feature carries information about every outcome
    savings = next(r for r in rows if r.outcome == "next_30d_savings")
    assert savings.users == 150
    run = mlflow.MlflowClient().get_run(again["mlflow_run_id"])
    assert run.data.tags["kind"] == "feature_predictiveness"
    assert f"mi/next_30d_savings/{FEATURE_NAMES[0]}" in run.data.metrics


def test_an_as_of_whose_next_30_days_are_unknown_is_refused(seeded):
    with pytest.raises(PredictivenessError, match="are not known yet"):
        report_predictiveness(seeded, dt.datetime(2023, 8, 15, tzinfo=dt.UTC), "pred-late")
