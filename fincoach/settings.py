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
    eval_users: int = 1000
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
    # How long batch scoring's swap waits for sessions still reading serving.recommendations before it
    # gives up and leaves the previous set in place (it tries in short steps, so other readers never stall).
    recommendations_swap_wait_seconds: float = 60.0
    # Share of traffic on which the served policy explores uniformly (gives every action a propensity > 0).
    serving_epsilon: float = 0.05
    # API keys accepted by the HTTP services (ingestion API, scorer), comma-separated. Unset: auth is off
    # and the services say so at start-up and in /healthz. Health checks never need a key.
    api_keys: str | None = None
    # Key of the keyed hash that pseudonymises user ids in the lake and in MLflow (fincoach.pseudonym).
    # The default is for a laptop only: set your own secret anywhere real data flows.
    pseudonym_key: str = "fincoach-dev-pseudonym-key"
    # Training and evaluation (issue 6).
    # The gate fails a candidate whose paired mean return in any segment (of at least 30 users) is this
    # much below the policy serving now (champion, or the rules without one).
    gate_segment_tolerance: float = 0.05
    # Archetypes (training.segments) never trained on, reported as the held-out generalisation test.
    holdout_archetypes: str = "spender"
    # Look-alike draws per recommendation of the relevance oracle (training.oracle); 0 turns it off.
    oracle_draws: int = 8
    # Exploration of the simulated logging policy (rules, epsilon-greedy) whose log OPE is checked on.
    ope_logging_epsilon: float = 0.3
    # Episodes x users the contextual bandit baselines learn from before evaluation.
    bandit_episodes: int = 20
    bandit_users: int = 200
    # Start each new candidate from the champion's weights when the architectures match (online learning).
    train_from_champion: bool = True
    # Without a champion: pretrain by behaviour cloning on app.coaching_interactions (training.offline)
    # when at least this many are logged, then fine-tune in the simulator.
    offline_pretrain: bool = True
    offline_min_interactions: int = 200

    # --- RL environment and simulator (issue 4) ---
    # Weights of the reward components (training.reward): JSON {"churn": 2} or churn=2,fatigue=0.5;
    # unnamed components weigh 1. An env config's `reward_weights` overrides this.
    reward_weights: str | None = None
    # KS statistic per metric above which a simulator calibration fails validation and is not used.
    sim_validation_max_ks: float = 0.35
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

    # --- Serving (issue 7): guardrails, the online scorer's reload, breaker, cache and log, experiments ---
    # Investment suggestions are vetoed with debt at or above this APR, or with less emergency fund than this.
    guardrail_high_interest_apr: float = 0.15
    guardrail_min_emergency_fund_months: float = 1.0
    # A user served this many nudges (anything but NO_ACTION) within the window gets NO_ACTION only.
    nudge_cap: int = 5
    nudge_cap_window_hours: int = 168
    # Scorer processes (uvicorn workers), each with its own models, cache client and log writer.
    scorer_workers: int = 1
    # How often the scorer checks whether the `champion` alias moved and re-reads experiments (seconds).
    scorer_reload_seconds: float = 30.0
    # Circuit breaker: consecutive model errors that open it, and how long it stays open (seconds).
    scorer_breaker_failures: int = 5
    scorer_breaker_reset_seconds: float = 30.0
    # Redis for the scorer's feature and prediction cache (e.g. redis://127.0.0.1:6379/0); unset: no cache.
    redis_url: str | None = None
    # Prefix of the scorer's cache keys (several deployments can share a Redis) and their time to live.
    cache_prefix: str = "fincoach"
    cache_ttl_seconds: int = 300
    # The scorer writes its served-recommendation log in the background, at most this long after serving.
    scorer_log_flush_seconds: float = 0.2
    # A/B analysis: prior standard deviation of the effect on acceptance (mSPRT mixture) and the test level.
    experiment_effect_sd: float = 0.05
    experiment_alpha: float = 0.05

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
