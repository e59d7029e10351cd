"""Test fixtures: a real PostgreSQL for every test session.

Without FINCOACH_DATABASE_URL the embedded server (pgserver) is started in a temporary FINCOACH_HOME;
with it, a fresh database is created on that server for this session and dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from fincoach import db
from fincoach.migrate import migrate
from fincoach.settings import reload_settings

_TRUNCATE = """
truncate app.users, app.accounts, app.transactions, app.goals, app.debts, app.user_events,
         app.financial_decisions, app.user_sessions, app.coaching_interactions,
         features.user_features_latest, serving.recommendations,
         ops.extract_runs, ops.validation_results, ops.run_log,
         app.market_conditions, features.predictiveness, features.snapshot_runs,
         ops.ingest_counts, ops.quarantine_counts, ops.user_pseudonyms, ops.erasure_requests,
         app.coaching_opt_outs, serving.experiments, serving.experiment_arms, serving.experiment_exposures,
         serving.experiment_results, ops.deleted_rows restart identity cascade
"""


@pytest.fixture(scope="session", autouse=True)
def platform_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Point every setting at per-session state; yields the variables set."""
    home = tmp_path_factory.mktemp("fincoach")
    env = {
        "FINCOACH_HOME": str(home),
        "FINCOACH_LAKE_URI": str(home / "lake"),
    }
    created_db = None
    server = os.environ.get("FINCOACH_DATABASE_URL")
    if server:
        created_db = f"fincoach_test_{uuid.uuid4().hex[:8]}"
        env["FINCOACH_DATABASE_URL"] = make_url(server).set(database=created_db).render_as_string(
            hide_password=False
        )
    saved = {k: os.environ.get(k) for k in [*env, "MLFLOW_TRACKING_URI", "AIRFLOW_HOME"]}
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("AIRFLOW_HOME", None)
    os.environ.update(env)
    reload_settings()
    db.reset_engine()
    if created_db:
        db.ensure_database(created_db)
    yield env
    db.reset_engine()
    if created_db:
        admin = sa.create_engine(
            make_url(server).set(drivername="postgresql+psycopg", database="postgres"),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            for name in (created_db, f"{created_db}_mlflow", f"{created_db}_airflow"):
                conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    reload_settings()


@pytest.fixture(scope="session")
def engine(platform_env: dict[str, str]) -> Engine:
    """The platform engine on a migrated database."""
    eng = db.get_engine()
    migrate(eng)
    return eng


@pytest.fixture()
def clean_db(engine: Engine) -> Engine:
    """The engine, with every platform table emptied first."""
    with engine.begin() as conn:
        conn.execute(sa.text(_TRUNCATE))
    return engine


@pytest.fixture()
def own_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A lake of this test's own, so the snapshots it publishes are the only ones it sees (and others never see)."""
    monkeypatch.setenv("FINCOACH_LAKE_URI", str(tmp_path / "lake"))
    reload_settings()
    yield
    monkeypatch.undo()
    reload_settings()
