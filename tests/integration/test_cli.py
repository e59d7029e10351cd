"""The `fincoach` command: env and psql, the analysts' way in."""

from __future__ import annotations

import subprocess
import sys


def _fincoach(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fincoach.cli", *args], capture_output=True, text=True, check=False, timeout=120
    )


def test_env_prints_the_effective_settings_without_the_password(engine):
    out = _fincoach("env")
    assert out.returncode == 0, out.stderr
    for key in ("FINCOACH_DATABASE_URL", "FINCOACH_LAKE_URI", "MLFLOW_TRACKING_URI", "AIRFLOW_HOME", "RAY_ADDRESS"):
        assert key in out.stdout


def test_psql_runs_a_command_against_the_effective_database(engine):
    out = _fincoach("psql", "-c", "select count(*) as n_schemas from information_schema.schemata "
                                  "where schema_name in ('app','analytics','features','serving','ops')")
    assert out.returncode == 0, out.stderr
    assert "n_schemas" in out.stdout and " 5" in out.stdout


def test_a_bad_database_url_is_a_clear_error_not_a_traceback(engine, monkeypatch):
    monkeypatch.setenv("FINCOACH_DATABASE_URL", "mysql://root@localhost/x")
    out = _fincoach("env")
    assert out.returncode == 2
    assert "must point at PostgreSQL" in out.stdout
    assert "Traceback" not in out.stderr
