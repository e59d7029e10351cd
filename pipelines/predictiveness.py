"""How predictive each feature of a snapshot is of what the users did in the 30 days after its as_of.

Outcomes, measured over (as_of, as_of + 30 days], so only for an as_of whose next 30 days are known:

- `next_30d_savings`: net money moved into savings accounts (daily mart savings_transfers);
- `goal_reached`: 1 if a goal created by as_of is achieved and its row changed after as_of (the app keeps
  no achievement time: the row's updated_at stands for it), among users with a goal;
- `nudge_acceptance`: share of the nudges served in those 30 days that were accepted, among users served one.

For each feature and outcome: Pearson and Spearman correlation and mutual information (scikit-learn,
k-NN estimator, seeded). Written to features.predictiveness (replacing that as_of's rows) and logged to
MLflow as one run with the table as an artifact. The features are those of the snapshot published for
that as_of, or (none published) the same point-in-time features computed now.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from fincoach import lake
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, FEATURES
from pipelines.feature_math import FeatureBuildError, as_utc
from pipelines.feature_python import read
from pipelines.features import compute_features
from pipelines.online_store import real_user_ids
from pipelines.snapshots import SNAPSHOT_FILE, snapshot_dir

log = logging.getLogger(__name__)

HORIZON_DAYS = 30
OUTCOMES = ("next_30d_savings", "goal_reached", "nudge_acceptance")
MIN_USERS = 20
_SEED = 0
_COLUMNS = ("as_of", "feature_spec_version", "feature", "feature_group", "outcome", "n_users", "pearson",
            "spearman", "mutual_information", "run_id")


class PredictivenessError(FeatureBuildError):
    """The report cannot be computed for this as_of (its outcomes are not known yet)."""


def outcomes(engine: Engine, as_of: datetime) -> pd.DataFrame:
    """The three outcomes per user_id over (as_of, as_of + 30 days] (NaN where an outcome does not apply)."""
    as_of = as_utc(as_of)
    until = as_of + timedelta(days=HORIZON_DAYS)
    with engine.connect() as conn:
        latest = conn.execute(sa.text("select max(occurred_at) from analytics.stg_app__transactions")).scalar()
        if latest is None or latest < until:
            raise PredictivenessError(
                f"the 30 days after {as_of.isoformat()} are not known yet (data ends {latest}): "
                f"pick an as_of at or before {(latest - timedelta(days=HORIZON_DAYS)).isoformat() if latest else '-'}"
            )
        savings = read(
            conn,
            "select user_id, sum(savings_transfers)::float8 as next_30d_savings from analytics.fct_daily_user_financials "
            "where date_day >= :start and date_day < :end group by user_id",
            start=as_of.date(), end=until.date(),
        ).set_index("user_id")
        goals = read(
            conn,
            "select user_id, max(case when goal_status = 'achieved' and updated_at > :as_of then 1 else 0 end)::float8 "
            "as goal_reached from analytics.stg_app__goals where created_at <= :as_of group by user_id",
            as_of=as_of,
        ).set_index("user_id")
        nudges = read(
            conn,
            "select user_id, avg(case when response = 'accepted' then 1.0 else 0.0 end)::float8 as nudge_acceptance "
            "from analytics.stg_app__coaching_interactions "
            "where action_id <> 0 and served_at > :as_of and served_at <= :until group by user_id",
            as_of=as_of, until=until,
        ).set_index("user_id")
    return pd.concat([savings, goals, nudges], axis=1)


def snapshot_features(as_of: datetime) -> pd.DataFrame | None:
    """The features of the snapshot published for exactly `as_of`, by app user_id (None if there is none)."""
    relpath = f"{snapshot_dir(as_of)}/{SNAPSHOT_FILE}"
    if not lake.exists(relpath):
        return None
    frame = lake.read_table(relpath).to_pandas()
    if not set(FEATURE_NAMES) <= set(frame.columns):
        return None
    frame["user_id"] = real_user_ids(frame.user_id)
    return frame.dropna(subset=["user_id"]).set_index("user_id")[list(FEATURE_NAMES)]


def _scores(x: np.ndarray, y: np.ndarray, discrete: bool) -> tuple[float | None, float | None, float]:
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    constant = np.ptp(x) == 0 or np.ptp(y) == 0
    pearson = None if constant else float(np.corrcoef(x, y)[0, 1])
    spearman = None if constant else float(pd.Series(x).rank().corr(pd.Series(y).rank()))
    if np.ptp(x) == 0:
        return pearson, spearman, 0.0
    if discrete:
        mi = mutual_info_classif(x.reshape(-1, 1), y.astype(int), random_state=_SEED)[0]
    else:
        mi = mutual_info_regression(x.reshape(-1, 1), y, random_state=_SEED)[0]
    return pearson, spearman, float(mi)


def predictiveness_table(features: pd.DataFrame, targets: pd.DataFrame, as_of: datetime, run_id: str) -> pd.DataFrame:
    """One row per (feature, outcome): n_users, Pearson, Spearman, mutual information."""
    groups = {f.name: f.group for f in FEATURES}
    rows = []
    joined = features.join(targets, how="left")
    for outcome in OUTCOMES:
        users = joined[joined[outcome].notna()]
        if len(users) < MIN_USERS:
            log.warning("predictiveness %s: %d users, fewer than %d: skipped", outcome, len(users), MIN_USERS)
            continue
        y = users[outcome].to_numpy(dtype=float)
        for name in FEATURE_NAMES:
            pearson, spearman, mi = _scores(users[name].to_numpy(dtype=float), y, outcome == "goal_reached")
            rows.append((as_of, FEATURE_SPEC_VERSION, name, groups[name], outcome, len(users), pearson, spearman, mi,
                         run_id))
    return pd.DataFrame(rows, columns=list(_COLUMNS))


def _store(engine: Engine, table: pd.DataFrame, as_of: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("delete from features.predictiveness where as_of = :a and feature_spec_version = :v"),
                     {"a": as_of, "v": FEATURE_SPEC_VERSION})
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"copy features.predictiveness ({', '.join(_COLUMNS)}) from stdin") as copy:
            for row in table.itertuples(index=False):
                copy.write_row([None if isinstance(v, float) and np.isnan(v) else v for v in row])


def _log_mlflow(table: pd.DataFrame, as_of: datetime, run_id: str) -> str:
    import mlflow

    from fincoach.tracking import configure_mlflow

    configure_mlflow()
    with mlflow.start_run(run_name=f"feature-predictiveness-{as_of:%Y%m%dT%H%M%S}") as run:
        mlflow.set_tags({"kind": "feature_predictiveness", "as_of": as_of.isoformat(),
                         "feature_spec_version": FEATURE_SPEC_VERSION, "pipeline_run_id": run_id})
        mlflow.log_metrics({f"mi/{r.outcome}/{r.feature}": r.mutual_information for r in table.itertuples()})
        mlflow.log_metrics({f"spearman/{r.outcome}/{r.feature}": r.spearman for r in table.itertuples()
                            if r.spearman is not None and not np.isnan(r.spearman)})
        mlflow.log_text(table.to_csv(index=False), "predictiveness.csv")
        return run.info.run_id


def report_predictiveness(engine: Engine, as_of: datetime, run_id: str) -> dict:
    """Compute the report for `as_of` (its next 30 days must be known), store it and log it to MLflow."""
    as_of = as_utc(as_of)
    targets = outcomes(engine, as_of)
    features = snapshot_features(as_of)
    if features is None:  # no snapshot published for that as_of: the same numbers, computed now
        features = compute_features(engine, as_of)
    table = predictiveness_table(features, targets, as_of, run_id)
    if table.empty:
        raise PredictivenessError(f"fewer than {MIN_USERS} users with any outcome after {as_of.isoformat()}")
    _store(engine, table, as_of)
    mlflow_run = _log_mlflow(table, as_of, run_id)
    top = table.sort_values("mutual_information", ascending=False).groupby("outcome").head(3)
    log.info("predictiveness as of %s: %d rows, MLflow run %s", as_of.isoformat(), len(table), mlflow_run)
    return {
        "as_of": as_of.isoformat(),
        "rows": len(table),
        "outcomes": sorted(set(table.outcome)),
        "mlflow_run_id": mlflow_run,
        "top": {o: top[top.outcome == o].feature.tolist() for o in sorted(set(top.outcome))},
    }


def daily_report(engine: Engine, interval_end: datetime, run_id: str) -> dict:
    """The hourly DAG's step: at the first run of a UTC day, report the as_of 30 days before; else skip."""
    interval_end = as_utc(interval_end)
    if interval_end.hour != 0:
        return {"skipped": "the report runs once a day, in the run ending at 00:00 UTC"}
    as_of = interval_end - timedelta(days=HORIZON_DAYS)
    try:
        return report_predictiveness(engine, as_of, run_id)
    except PredictivenessError as exc:  # a young platform: nothing 30 days old yet
        log.warning("predictiveness skipped: %s", exc)
        return {"skipped": str(exc)}
