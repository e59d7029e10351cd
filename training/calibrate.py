"""Calibrate the simulator from data: archetypes, their income and spending processes, response rates.

`calibrate_simulator(features_uri, run_id)` is the first task of the fincoach_training DAG:

1. archetypes: k-means (scikit-learn) on standardised features of the snapshot's training users;
2. per archetype, the weekly income and spending processes fitted to each user's history in
   `analytics.fct_daily_user_financials` (log-sd of income, how often a week brings little pay, log-sd of
   essential, discretionary and impulse spending, the impulse level);
3. the acceptance-logit shift per action type that makes the simulator's acceptance rate match the one
   logged in `coaching_interactions` (uniform-logging rates, fitted by simulation, three rounds);
4. the weekly churn rate from users whose app sessions stopped;
5. validation on the held-out users (training.sim_validation): a calibration that fails is not used and
   the default parameters are, with the reason.

Parameters, the validation report and the decision are logged to MLflow (a run `calibration-<run_id>`)
and stored in the lake (`simulator/calibration/run_id=<run_id>/`), where `load_calibration(run_id)` finds
them for training and evaluation. A rerun for the same run id gives the same parameters and replaces them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from fincoach import db, lake
from fincoach.actions import ACTION_TYPES, ACTIONS, N_ACTIONS
from fincoach.feature_spec import raw_matrix
from fincoach.settings import get_settings
from training import history
from training.sim_params import DEFAULT_PARAMS, ArchetypeParams, SimParams, cluster_matrix
from training.simulator import Simulator
from training.user_model import COL

log = logging.getLogger(__name__)

MAX_ARCHETYPES = 4
USERS_PER_ARCHETYPE = 100  # at least this many training users per archetype
MIN_WEEKS = 6  # weeks of history a user needs to count in the process fit
MIN_SERVED = 30  # nudges of a type needed to fit its response rate (else: the prior, shift 0)
HISTORY_DAYS = 84
_PREFIX = "simulator/calibration"


class CalibrationError(ValueError):
    """The simulator cannot be calibrated from this snapshot (say why and what to do)."""


def fit_archetypes(raw: np.ndarray, seed: int) -> tuple[SimParams, np.ndarray]:
    """SimParams with k-means centroids (k from the number of users) and each user's archetype."""
    from sklearn.cluster import KMeans

    x = cluster_matrix(raw)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    k = int(np.clip(len(raw) // USERS_PER_ARCHETYPE, 1, MAX_ARCHETYPES))
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit((x - mean) / scale)
    params = SimParams(
        source="calibrated",
        centroids=km.cluster_centers_.tolist(),
        mean=mean.tolist(),
        scale=scale.tolist(),
        archetypes=[ArchetypeParams(share=float((km.labels_ == j).mean())) for j in range(k)],
    )
    return params, km.labels_


def _user_processes(weekly: pd.DataFrame, raw: np.ndarray, user_ids: np.ndarray) -> pd.DataFrame:
    """Per user with enough history: the process statistics the archetype parameters are medians of."""
    full = weekly[weekly["days"] == 7]
    rows = {}
    row_of = {int(u): i for i, u in enumerate(user_ids)}
    for user, g in full.groupby("user_id"):
        if len(g) < MIN_WEEKS or int(user) not in row_of:
            continue
        r = raw[row_of[int(user)]]
        vol = float(np.clip(r[COL["spending_volatility"]], 0, 3))
        income4 = g["income"].rolling(4).sum().dropna()
        planned = (g["discretionary"] - g["impulse"]).clip(lower=0)
        base_impulse = r[COL["impulse_share"]] * max(r[COL["monthly_spend"]], 0) / (52 / 12)
        impulsivity = np.clip(0.15 + 1.5 * r[COL["impulse_share"]], 0, 1)

        def logsd(x: pd.Series) -> float:
            x = x[x > 0]
            return float(np.log(x).std()) if len(x) >= 3 else np.nan

        rows[int(user)] = {
            "income_sd": 2.0 * logsd(income4),  # 4-week sums: sd of a week is about twice theirs
            "income_drop_p": float((income4 < 0.75 * income4.median()).mean())
            if income4.median() > 0
            else np.nan,
            "essential_sd": 2.0 * logsd(g["essential"].rolling(4).sum().dropna())
            - 0.1 * vol,  # monthly bills
            "discretionary_sd": logsd(planned) - 0.3 * vol,
            "impulse_sd": logsd(g["impulse"]),
            "save_share": g["savings_in"].sum() / g["income"].sum() if g["income"].sum() > 0 else np.nan,
            "impulse_scale": g["impulse"].mean() / (base_impulse * (0.5 + impulsivity))
            if base_impulse > 0
            else np.nan,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


_BOUNDS = {
    "income_sd": (0.01, 0.5),
    "income_drop_p": (0.0, 0.2),
    "essential_sd": (0.01, 1.0),
    "discretionary_sd": (0.02, 1.5),
    "impulse_sd": (0.1, 1.5),
    "impulse_scale": (0.2, 5.0),
    "save_share": (0.0, 0.5),
}


def fit_processes(
    params: SimParams, labels: np.ndarray, stats: pd.DataFrame, user_ids: np.ndarray
) -> SimParams:
    """Each archetype's process parameters: medians over its users' statistics (default where too few)."""
    label_of = pd.Series(labels, index=user_ids)
    fitted = []
    for j, arch in enumerate(params.archetypes):
        mine = stats[stats.index.isin(label_of.index[label_of == j])]
        values = {}
        for name, (lo, hi) in _BOUNDS.items():
            col = mine[name].dropna() if name in mine else pd.Series(dtype=float)
            values[name] = float(np.clip(col.median(), lo, hi)) if len(col) >= 5 else getattr(arch, name)
        fitted.append(replace(arch, **values))
    return replace(params, archetypes=fitted)


def simulated_acceptance(raw: np.ndarray, params: SimParams, seed: int) -> dict[str, float]:
    """Share of nudges accepted per action type when every action is shown once to every user."""
    rates: dict[str, list[float]] = {t: [] for t in ACTION_TYPES}
    seeds = np.random.default_rng(seed).integers(0, 2**62, len(raw))
    for action in range(1, N_ACTIONS):
        result = Simulator(raw, seeds, horizon=1, params=params).step(np.full(len(raw), action))
        rates[ACTIONS[action].type].append(float(result.accepted.mean()))
    return {t: float(np.mean(v)) for t, v in rates.items() if v}


def _logit(p: float) -> float:
    p = float(np.clip(p, 1e-3, 1 - 1e-3))
    return float(np.log(p / (1 - p)))


def fit_responses(raw: np.ndarray, params: SimParams, counts: pd.DataFrame, seed: int) -> SimParams:
    """Acceptance-logit shift per action type matching the logged acceptance rates (3 rounds)."""
    observed = {
        t: (counts.loc[t, "accepted"] + 0.5) / (counts.loc[t, "served"] + 1.0)
        for t in counts.index
        if t in ACTION_TYPES and t != "NO_ACTION" and counts.loc[t, "served"] >= MIN_SERVED
    }
    shifts = dict(params.response_logit)
    for _ in range(3):
        sim = simulated_acceptance(raw, replace(params, response_logit=shifts), seed)
        for t, rate in observed.items():
            shifts[t] = float(np.clip(shifts[t] + _logit(rate) - _logit(sim[t]), -4.0, 4.0))
    return replace(params, response_logit=shifts)


def fit_churn(earlier: int, gone: int) -> float:
    """Weekly churn rate from the share of active users whose sessions stopped for four weeks."""
    if earlier < 50:
        return DEFAULT_PARAMS.churn_weekly
    four_weeks = (gone + 0.5) / (earlier + 1.0)
    return float(np.clip(1.0 - (1.0 - four_weeks) ** 0.25, 1e-4, 0.05))


def _as_of(frame: pd.DataFrame, features_uri: str) -> datetime:
    if "as_of" not in frame.columns or frame["as_of"].isna().all():
        raise CalibrationError(f"snapshot {features_uri} has no as_of column: publish it with the pipelines")
    return pd.Timestamp(frame["as_of"].max()).to_pydatetime()


def calibrate_params(train: pd.DataFrame, as_of: datetime, seed: int) -> SimParams:
    """Fit every calibrated parameter on the training users of a snapshot taken at `as_of`."""
    with db.get_engine().connect() as conn:
        train = history.with_app_user_ids(conn, train)
    raw, ids = raw_matrix(train), train["user_id"].to_numpy()
    params, labels = fit_archetypes(raw, seed)
    start = (as_of - timedelta(days=HISTORY_DAYS)).date()
    with db.get_engine().connect() as conn:
        weekly = history.weekly_flows(conn, [int(u) for u in ids], start, as_of.date())
        counts = history.response_counts(conn, as_of)
        earlier, gone = history.four_week_dropout(conn, as_of)
    params = fit_processes(params, labels, _user_processes(weekly, raw, ids), ids)
    sample = raw[np.random.default_rng(seed).permutation(len(raw))[:2000]]
    params = replace(fit_responses(sample, params, counts, seed), churn_weekly=fit_churn(earlier, gone))
    return params


def _store(run_id: str, params: SimParams, used: str, report: dict) -> str:
    table = pa.table(
        {
            "run_id": [run_id],
            "used": [used],
            "params": [params.dumps()],
            "report": [json.dumps(report, sort_keys=True, default=float)],
        }
    )
    return lake.replace_partition(table, f"{_PREFIX}/run_id={run_id}", "calibration.parquet")


def load_calibration(run_id: str) -> SimParams:
    """The simulator parameters to use for `run_id`: the calibration if it passed validation, else defaults."""
    partition = f"{_PREFIX}/run_id={run_id}"
    if not lake.exists(partition):
        log.warning("no simulator calibration for run %s: using the default parameters", run_id)
        return DEFAULT_PARAMS
    row = lake.read_table(partition).to_pylist()[0]
    return SimParams.from_dict(json.loads(row["params"]))


def describe_calibration(params: SimParams) -> str:
    """Which simulator parameters a run uses, for MLflow: `calibrated`, or `default (<why>)`."""
    if params.source == "calibrated":
        return "calibrated"
    return params.source if params.source != "default" else "default (no calibration stored for this run)"


def _log_mlflow(run_id: str, params: SimParams, report: dict, used: str, reason: str) -> str:
    import mlflow

    from fincoach.tracking import configure_mlflow

    configure_mlflow()
    name = f"calibration-{run_id}"
    found = mlflow.search_runs(
        filter_string=f"tags.`fincoach.run_id` = '{run_id}' and tags.`fincoach.stage` = 'calibration'",
        output_format="list",
    )
    with mlflow.start_run(run_id=found[0].info.run_id if found else None, run_name=name) as run:
        mlflow.set_tags(
            {
                "fincoach.run_id": run_id,
                "fincoach.stage": "calibration",
                "sim.used": used,
                "sim.reason": reason[:5000],
            }
        )
        mlflow.log_params(
            {"sim.archetypes": len(params.archetypes), "sim.churn_weekly": f"{params.churn_weekly:.6f}"}
        )
        mlflow.log_metrics({f"sim/{k}": float(v) for k, v in _flat_metrics(params, report).items()})
        mlflow.log_dict(params.to_dict(), "simulator/sim_params.json")
        mlflow.log_dict(report, "simulator/validation.json")
    return run.info.run_id


def _flat_metrics(params: SimParams, report: dict) -> dict[str, float]:
    out = {f"response_logit/{t}": v for t, v in params.response_logit.items()}
    for j, a in enumerate(params.archetypes):
        out |= {f"archetype_{j}/{k}": v for k, v in vars(a).items()}
    for who in ("calibrated", "default"):
        for metric, ks in report.get(who, {}).get("ks", {}).items():
            out[f"validation/{who}/ks_{metric}"] = ks
    return out


def calibrate_simulator(features_uri: str, run_id: str) -> dict:
    """Calibrate on the snapshot's training users, validate on the held-out ones, log and store; a summary."""
    from training.sim_validation import validate
    from training.workflow import read_snapshot, split_users

    s = get_settings()
    frame = read_snapshot(features_uri)
    try:
        as_of = _as_of(frame, features_uri)
    except CalibrationError as exc:  # training goes on with the default simulator, saying why
        log.warning("simulator not calibrated for run %s: %s", run_id, exc)
        reason = f"not calibrated: {exc}"
        uri = _store(
            run_id, replace(DEFAULT_PARAMS, source=f"default ({reason})"), "default", {"error": str(exc)}
        )
        return {
            "run_id": run_id,
            "features_uri": features_uri,
            "calibration_uri": uri,
            "used": "default",
            "reason": reason,
            "archetypes": 0,
            "ks": {},
            "mlflow_run_id": None,
        }
    train, holdout = split_users(frame)
    params = calibrate_params(train, as_of, s.train_seed)
    report = {
        "calibrated": validate(params, holdout, as_of, s.train_seed),
        "default": validate(DEFAULT_PARAMS, holdout, as_of, s.train_seed),
        "threshold_ks": s.sim_validation_max_ks,
    }
    passed = report["calibrated"]["passed"]
    used = "calibrated" if passed else "default"
    reason = report["calibrated"]["reason"]
    if not passed:
        log.warning(
            "simulator calibration for run %s failed validation, using the defaults: %s", run_id, reason
        )
    chosen = params if passed else replace(DEFAULT_PARAMS, source=f"default (calibration failed: {reason})")
    uri = _store(run_id, chosen, used, {**report, "fitted": params.to_dict()})
    mlflow_run_id = _log_mlflow(run_id, params, report, used, reason)
    return {
        "run_id": run_id,
        "features_uri": features_uri,
        "calibration_uri": uri,
        "used": used,
        "reason": reason,
        "archetypes": len(params.archetypes),
        "ks": report["calibrated"]["ks"],
        "mlflow_run_id": mlflow_run_id,
    }
