"""Features of every user as of a point in time (fincoach.feature_spec), their lake snapshot and online store.

Point in time: only rows with event time <= as_of are used (pipelines.feature_sql for the `dbt:`
features, pipelines.feature_python for the `python:` ones). The snapshot is staged in the lake under
`features/staging/<run_id>.parquet`, validated, then published to `features/as_of=.../` and swapped into
features.user_features_latest. The lake holds pseudonymised user ids (fincoach.pseudonym); the online
table in Postgres holds the real ids.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fincoach import lake
from fincoach.db import get_engine
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, FEATURES
from fincoach.pseudonym import pseudonymise_many
from pipelines.feature_math import FeatureBuildError, as_utc
from pipelines.feature_python import Reader, python_features
from pipelines.feature_sql import DBT_FEATURES, dbt_features
from pipelines.online_store import real_user_ids, swap_online_store
from pipelines.snapshots import SNAPSHOT_FILE, snapshot_dir

__all__ = ["KEY_COLUMNS", "FeatureBuildError", "build_features", "compute_features", "load_snapshot",
           "publish_features"]

log = logging.getLogger(__name__)

STAGING_PREFIX = "features/staging"
KEY_COLUMNS = ("user_id", "as_of", "feature_spec_version")
DEFAULTS = {f.name: f.default for f in FEATURES}
_NEEDED = ("fct_daily_user_financials", "dim_users", "stg_app__users", "stg_app__accounts", "stg_app__transactions",
           "stg_app__debts", "stg_app__goals", "stg_app__user_sessions", "stg_app__user_events",
           "stg_app__coaching_interactions", "stg_app__market_conditions")


def _require_analytics(conn: sa.Connection) -> None:
    """The dbt relations the features read must exist (dbt build has run on this database)."""
    missing = [
        name for name in _NEEDED
        if conn.execute(sa.text("select to_regclass(:r)"), {"r": f"analytics.{name}"}).scalar() is None
    ]
    if missing:
        raise FeatureBuildError(
            f"analytics.{', analytics.'.join(missing)} missing: run pipelines.analytics_build.build_analytics "
            "(dbt build) before building features"
        )


def read_users(q: Reader, as_of: datetime) -> pd.DataFrame:
    """The app profile of the users of `q` signed up by `as_of`, indexed by user_id."""
    return q(
        "select user_id, birth_year, declared_monthly_income::float8 as declared_monthly_income, "
        "pay_frequency, device_type, risk_tolerance "
        "from analytics.stg_app__users where created_at <= :as_of {users} order by user_id",
        as_of=as_of,
    ).set_index("user_id")


def monthly_features(q: Reader, as_of: datetime, index: pd.Index) -> pd.DataFrame:
    """The dbt: features of the users in `index` (the users of `q`), defaults where they have no rows."""
    monthly = dbt_features(q, as_of).reindex(index)
    for name in DBT_FEATURES:
        monthly[name] = monthly[name].fillna(DEFAULTS[name])
    return monthly


def compute_features(engine: Engine, as_of: datetime) -> pd.DataFrame:
    """Every spec feature as of `as_of` for the users signed up by then, by real user_id."""
    as_of = as_utc(as_of)
    with engine.connect() as conn:
        _require_analytics(conn)
        q = Reader(conn, None)
        users = read_users(q, as_of)
        monthly = monthly_features(q, as_of, users.index)
        python = python_features(q, as_of, users, monthly)
    frame = pd.concat([monthly, python], axis=1)[list(FEATURE_NAMES)].astype("float64")
    frame = frame.replace([np.inf, -np.inf], np.nan).fillna(DEFAULTS)
    frame.index = frame.index.astype("int64")
    return frame


def snapshot_table(features: pd.DataFrame, as_of: datetime) -> pa.Table:
    """The lake form of a feature frame (by real user_id): pseudonymised user_id, as_of, version, features."""
    frame = features.copy()
    frame.insert(0, "feature_spec_version", FEATURE_SPEC_VERSION)
    frame.insert(0, "as_of", pd.Timestamp(as_utc(as_of)))
    frame.insert(0, "user_id", pseudonymise_many(features.index.tolist()))
    return pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)


def _check_run_id(run_id: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", run_id):
        raise FeatureBuildError(f"run_id {run_id!r} must be file-safe (letters, digits, _ . -)")


def stage(table: pa.Table, run_id: str) -> str:
    """Write a snapshot table to the lake's staging area; its relpath."""
    _check_run_id(run_id)
    relpath = f"{STAGING_PREFIX}/{run_id}.parquet"
    lake.write_parquet(table, relpath)
    return relpath


def build_features(engine: Engine, as_of: datetime, run_id: str) -> dict:
    """Compute every spec feature for every user as of `as_of`; stage the snapshot in the lake."""
    as_of = as_utc(as_of)
    _check_run_id(run_id)
    started = time.perf_counter()
    features = compute_features(engine, as_of)
    relpath = stage(snapshot_table(features, as_of), run_id)
    seconds = round(time.perf_counter() - started, 2)
    log.info("features: %d users as of %s in %.1fs -> %s", len(features), as_of.isoformat(), seconds, relpath)
    return {
        "rows": len(features),
        "staging_path": relpath,
        "as_of": as_of.isoformat(),
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "mode": "full",
        "users_recomputed": len(features),
        "seconds": seconds,
    }


def _relpath(path: str) -> str:
    """A lake relpath from a relpath or a full lake URI."""
    root = lake.uri("")
    return path.removeprefix(root) if path.startswith(root) else path


def load_snapshot(relpath: str) -> pd.DataFrame:
    """A feature snapshot (staged or published) as a DataFrame: user_id, as_of, feature_spec_version, features."""
    return lake.read_table(_relpath(relpath)).to_pandas()


def _record_run(build_result: dict, as_of: datetime, rows: int, relpath: str, run_id: str) -> None:
    """One row per published as_of in features.snapshot_runs (a republish replaces it)."""
    with get_engine().begin() as conn:
        conn.execute(
            sa.text(
                "insert into features.snapshot_runs (as_of, feature_spec_version, mode, users_total, "
                "users_recomputed, relpath, run_id) values (:as_of, :v, :mode, :rows, :recomputed, :relpath, :run) "
                "on conflict (as_of) do update set feature_spec_version = excluded.feature_spec_version, "
                "mode = excluded.mode, users_total = excluded.users_total, "
                "users_recomputed = excluded.users_recomputed, relpath = excluded.relpath, run_id = excluded.run_id, "
                "published_at = now()"
            ),
            {"as_of": as_of, "v": FEATURE_SPEC_VERSION, "mode": build_result.get("mode", "full"), "rows": rows,
             "recomputed": build_result.get("users_recomputed", rows), "relpath": relpath, "run": run_id},
        )


def publish_features(build_result: dict, run_id: str, online: bool = True) -> dict:
    """Publish a validated staged snapshot: lake `features/as_of=.../` and (`online`) features.user_features_latest.

    A backfill of past as_ofs publishes to the lake only: the online table keeps the newest features.
    """
    table = lake.read_table(_relpath(build_result["staging_path"]))
    expected = [*KEY_COLUMNS, *FEATURE_NAMES]
    if table.column_names != expected:
        raise FeatureBuildError(
            f"staged snapshot {build_result['staging_path']} has columns {table.column_names}, the spec wants "
            f"{expected}: rebuild it with build_features"
        )
    frame = table.to_pandas()
    versions = set(frame.feature_spec_version)
    if versions - {FEATURE_SPEC_VERSION}:
        raise FeatureBuildError(
            f"staged snapshot was built with feature spec {sorted(versions)}, this code has "
            f"{FEATURE_SPEC_VERSION}: rebuild it with build_features"
        )
    as_of = as_utc(datetime.fromisoformat(build_result["as_of"]))
    partition = snapshot_dir(as_of)
    relpath = f"{partition}/{SNAPSHOT_FILE}"
    lake.replace_partition(table, partition, SNAPSHOT_FILE)
    erased = 0
    if online:
        by_id = frame.assign(user_id=real_user_ids(frame.user_id))
        erased = int(by_id.user_id.isna().sum())  # users deleted between build and publish: not served
        swap_online_store(by_id.dropna(subset=["user_id"]), as_of)
    _record_run(build_result, as_of, len(frame), relpath, run_id)
    log.info("published %d feature rows as of %s (run %s) -> %s", len(frame), as_of.isoformat(), run_id, relpath)
    return {
        "rows": len(frame),
        "online_rows": len(frame) - erased if online else 0,
        "path": lake.uri(relpath),
        "relpath": relpath,
        "as_of": as_of.isoformat(),
        "feature_spec_version": FEATURE_SPEC_VERSION,
    }
