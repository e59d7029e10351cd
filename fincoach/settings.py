"""Every setting of the platform, read once from environment variables (see ARCHITECTURE.md)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Effective configuration. Relative paths are resolved against the working directory."""

    model_config = SettingsConfigDict(env_prefix="FINCOACH_", extra="ignore")

    # Where the embedded services keep their state (Postgres data, lake, MLflow artifacts, Airflow home).
    home: Path = Path(".fincoach")
    # Unset: an embedded PostgreSQL (pgserver) under <home>/pg. Else any SQLAlchemy/libpq URL of a server.
    database_url: str | None = None
    # Parquet lake: a local folder (default <home>/lake) or s3://bucket/prefix.
    lake_uri: str | None = None
    # S3 API endpoint for an s3:// lake (MinIO, a local S3 server); unset: AWS itself.
    aws_endpoint_url: str | None = Field(None, validation_alias=AliasChoices("AWS_ENDPOINT_URL"))
    # Unset: a database `<main db>_mlflow` on the same Postgres, artifacts under <home>/mlartifacts.
    mlflow_tracking_uri: str | None = Field(None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI"))
    mlflow_artifact_root: str | None = None
    mlflow_experiment: str = "fincoach"
    model_name: str = "fincoach-coach"
    # Unset: a local Ray on this machine. Set to train on a cluster.
    ray_address: str | None = Field(None, validation_alias=AliasChoices("RAY_ADDRESS"))
    ray_num_cpus: int = 2
    # Training budget of one candidate (environment steps) and evaluation size (simulated users).
    train_timesteps: int = 20_000
    eval_users: int = 300
    # Seed of everything random in training and evaluation (reproducible runs).
    train_seed: int = 7
    airflow_home: Path | None = Field(None, validation_alias=AliasChoices("AIRFLOW_HOME"))
    # Online scorer.
    scorer_host: str = "127.0.0.1"
    scorer_port: int = 8000
    # How long a batch recommendation stays valid.
    recommendation_ttl_hours: int = 48
    # How many recommendations are kept per user.
    recommendations_per_user: int = 3
    # Share of traffic on which the served policy explores uniformly (gives every action a propensity > 0).
    serving_epsilon: float = 0.05
    # API keys accepted by the HTTP services (ingestion API, scorer), comma-separated. Unset: auth is off
    # and the services say so at start-up and in /healthz. Health checks never need a key.
    api_keys: str | None = None
    # Key of the keyed hash that pseudonymises user ids in the lake and in MLflow (fincoach.pseudonym).
    # The default is for a laptop only: set your own secret anywhere real data flows.
    pseudonym_key: str = "fincoach-dev-pseudonym-key"

    # --- Data collection and the lake (issue 5): ingestion API, extraction overlap, quarantine ---
    # Late rows: each extract re-reads this many hours before its low watermark (rows committed late land).
    extract_overlap_hours: float = 2.0
    # Connections that read one large table at once, by primary-key range (extract speed on many cores).
    extract_workers: int = 2
    # An event time later than the interval end plus this tolerance is quarantined as future_timestamp.
    future_tolerance_minutes: float = 5.0
    # Largest JSON payload of one event (event_data, context); larger ones are rejected or quarantined.
    max_payload_bytes: int = 8192
    # Ingestion API (POST /events): bind address, largest request body, most events in one batch.
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8100
    ingest_max_body_bytes: int = 4 * 1024 * 1024
    ingest_max_events: int = 5000
    # Where the tracking middleware sends events by default.
    ingest_url: str = "http://127.0.0.1:8100"

    @property
    def home_dir(self) -> Path:
        """Absolute state folder, created on first use."""
        path = self.home.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def lake(self) -> str:
        """Lake root URI: `s3://...` or an absolute local path."""
        if self.lake_uri:
            if "://" in self.lake_uri:
                return self.lake_uri.rstrip("/")
            return str(Path(self.lake_uri).expanduser().resolve())
        return str(self.home_dir / "lake")

    @property
    def artifact_root(self) -> str:
        """Default MLflow artifact location for the experiment."""
        if self.mlflow_artifact_root:
            return self.mlflow_artifact_root
        return (self.home_dir / "mlartifacts").as_uri()

    @property
    def airflow_dir(self) -> Path:
        """AIRFLOW_HOME in effect."""
        return (self.airflow_home or self.home_dir / "airflow").expanduser().resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()


def reload_settings() -> Settings:
    """Forget the cached settings and read the environment again (tests, the CLI after it sets variables)."""
    get_settings.cache_clear()
    return get_settings()
