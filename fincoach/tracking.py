"""MLflow in effect: the tracking URI (a database on the platform's Postgres by default) and the experiment."""

from __future__ import annotations

from functools import lru_cache

from fincoach import db
from fincoach.settings import get_settings


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, or a `<main db>_mlflow` database on the same server (created if missing)."""
    configured = get_settings().mlflow_tracking_uri
    if configured:
        return configured
    name = f"{db.connection_parts()['dbname']}_mlflow"
    db.ensure_database(name)
    return db.database_url(name, driver="psycopg2")


@lru_cache(maxsize=1)
def configure_mlflow() -> str:
    """Point mlflow at the tracking store and the experiment (created with our artifact root); return its id."""
    import mlflow

    s = get_settings()
    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.get_experiment_by_name(s.mlflow_experiment)
    if experiment is None:
        try:
            experiment_id = mlflow.create_experiment(s.mlflow_experiment, artifact_location=s.artifact_root)
        except mlflow.exceptions.MlflowException:  # created concurrently
            experiment_id = mlflow.get_experiment_by_name(s.mlflow_experiment).experiment_id
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id
