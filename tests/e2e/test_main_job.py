"""The whole loop, end to end, through Airflow itself: `fincoach run` on a small synthetic population."""

from __future__ import annotations

import mlflow
import pytest
import sqlalchemy as sa

from fincoach import tracking
from fincoach.cli import main
from fincoach.settings import get_settings, reload_settings

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

USERS, DAYS = 200, 35


@pytest.fixture(scope="module")
def small_budget():
    mp = pytest.MonkeyPatch()
    mp.setenv("FINCOACH_TRAIN_TIMESTEPS", "1500")
    mp.setenv("FINCOACH_EVAL_USERS", "100")
    reload_settings()
    yield
    mp.undo()
    reload_settings()


def _counts(engine) -> dict[str, int]:
    tables = ["users", "transactions", "user_events", "coaching_interactions", "goals", "debts"]
    with engine.connect() as conn:
        counts = {t: conn.execute(sa.text(f"select count(*) from app.{t}")).scalar() for t in tables}
        counts["recommendations"] = conn.execute(sa.text("select count(*) from serving.recommendations")).scalar()
        counts["historical"] = conn.execute(
            sa.text("select count(*) from app.coaching_interactions where source = 'historical'")
        ).scalar()
    return counts


def _gate_steps(engine) -> list[dict]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("select details from ops.run_log where step = 'promote_if_better' order by id")
        ).scalars().all()


@pytest.fixture(scope="module")
def first_run(engine, small_budget):
    code = main(["run", "--users", str(USERS), "--days", str(DAYS), "--seed", "11"])
    assert code == 0
    return _counts(engine)


def test_main_job_writes_recommendations_for_every_user(engine, first_run):
    k = get_settings().recommendations_per_user
    with engine.connect() as conn:
        per_user = conn.execute(
            sa.text("select user_id, count(*) from serving.recommendations group by user_id")
        ).all()
        bad = conn.execute(
            sa.text("select count(*) from serving.recommendations where propensity <= 0 or propensity > 1 "
                    "or expires_at <= generated_at")
        ).scalar()
    assert len(per_user) == USERS
    # k each, but users at the nudge cap (from the historical log) or opted out get NO_ACTION only
    assert all(n in (1, k) for _, n in per_user) and sum(n == k for _, n in per_user) > USERS // 2
    assert bad == 0


def test_main_job_registers_a_version_with_an_alias_and_logs_the_gate_decision(engine, first_run):
    gate = _gate_steps(engine)[-1]
    assert gate["decision"] in {"promoted", "kept_challenger"}
    assert gate["reason"]
    tracking.configure_mlflow()
    client = mlflow.MlflowClient()
    name = get_settings().model_name
    version = client.get_model_version(name, gate["version"])
    aliases = set(version.aliases)
    assert "challenger" in aliases or "champion" in aliases
    if gate["decision"] == "promoted":
        assert str(client.get_model_version_by_alias(name, "champion").version) == str(gate["version"])
    run = client.get_run(version.run_id)
    assert run.data.tags.get("gate.decision") == gate["decision"]


def test_running_the_main_job_again_duplicates_nothing(engine, first_run):
    assert main(["run", "--users", str(USERS), "--days", str(DAYS), "--seed", "11"]) == 0
    again = _counts(engine)
    for table in ("users", "transactions", "user_events", "goals", "debts", "historical"):
        assert again[table] == first_run[table], table
    # A second run is a later interval: the first run's served nudges count towards the nudge cap, so some
    # users may now get NO_ACTION only; every user still has a set, and never more than k rows.
    k = get_settings().recommendations_per_user
    with engine.connect() as conn:
        per_user = conn.execute(sa.text("select count(*) from serving.recommendations group by user_id")).scalars().all()
    assert len(per_user) == USERS and all(n in (1, k) for n in per_user)
    assert len(_gate_steps(engine)) == 2
