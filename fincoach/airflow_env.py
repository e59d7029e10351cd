"""The environment Airflow runs in: its metadata database on the platform's Postgres, our DAGs folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fincoach import db, tracking
from fincoach.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DAGS_FOLDER = REPO_ROOT / "dags"


def airflow_environment() -> dict[str, str]:
    """Variables for an Airflow process (and the tasks it runs) pointing at the effective services."""
    s = get_settings()
    airflow_db = f"{db.connection_parts()['dbname']}_airflow"
    db.ensure_database(airflow_db)
    home = s.airflow_dir
    home.mkdir(parents=True, exist_ok=True)
    return {
        # the platform itself, resolved once so every task reaches the same services
        "FINCOACH_HOME": str(s.home_dir),
        "FINCOACH_DATABASE_URL": db.libpq_url(),
        "FINCOACH_LAKE_URI": s.lake,
        "MLFLOW_TRACKING_URI": tracking.tracking_uri(),
        # tasks import this checkout's packages, whatever the editable install points at
        "PYTHONPATH": str(REPO_ROOT),
        # Airflow
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db.database_url(airflow_db, driver="psycopg2"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__API__PORT": "8080",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "NO_PROXY": "*",  # macOS fork safety and no proxies for loopback
    }


def airflow_bin() -> str:
    """The `airflow` executable of this virtual environment."""
    return str(Path(sys.executable).with_name("airflow"))


def run_airflow(args: list[str], env: dict[str, str] | None = None, capture: bool = False) -> subprocess.CompletedProcess:
    """Run the `airflow` CLI of this virtual environment with the platform's environment."""
    full_env = {**os.environ, **(env or airflow_environment())}
    return subprocess.run(
        [airflow_bin(), *args], env=full_env, check=False, text=True, capture_output=capture
    )
