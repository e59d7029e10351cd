"""The training stage as the fincoach_training DAG runs it: train → evaluate → register → promote.

Each function takes and returns a small JSON-able dict (passed between Airflow tasks as XCom). Models
live in MLflow: the candidate is logged with `fincoach.policy_model.log_policy` in a run named after
the DAG run, registered as `settings.model_name` with alias `challenger`, and gets alias `champion`
only through the gate (`training.gate.decide`).

Users are split by a hash of `user_id`: one in five is held out of training and used for evaluation
(all users for both when the snapshot is too small to hold out `MIN_HOLDOUT_USERS`); users of the
archetypes in `settings.holdout_archetypes` are never trained on, so their segment in the evaluation
measures generalisation to a user type the agent has not seen. Every policy (candidate, champion, rules,
random, LinUCB, Thompson sampling) is evaluated on the same simulated users with the same seeds
(`settings.train_seed`), and OPE is checked against the simulator (training.evaluation_run). Training and
evaluation simulate with the DAG run's calibration (training.calibrate.load_calibration of `run_id`).

Online learning: with `settings.train_from_champion`, a new candidate starts from the champion's
weights (when the architecture matches) instead of from scratch.

Reruns: registering is keyed on the MLflow run, so a retried `register_candidate` reuses the version it
made; the gate sets aliases and tags, which a retry sets to the same values.
"""

from __future__ import annotations

import logging
import math
import tempfile
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fincoach import lake
from fincoach.actions import ACTION_CATALOG_VERSION, catalog_document
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, normalise, raw_matrix, spec_document
from fincoach.settings import get_settings
from training.registry import CHALLENGER, load_champion, make_champion
from training.segments import archetype

log = logging.getLogger(__name__)
WARM_START_EPSILON = 0.3  # exploration at the start of a candidate that starts from the champion

HOLDOUT_SHARE = 5  # one user in this many is held out of training for evaluation
MIN_HOLDOUT_USERS = 20
MAX_PARAM_CHARS = 500  # simulator_params (the reason a calibration was not used) as an MLflow param / tag


class SnapshotError(ValueError):
    """The feature snapshot cannot be read or does not match the feature spec."""


def read_snapshot(features_uri: str) -> pd.DataFrame:
    """The snapshot at `features_uri` (a lake URI or a local Parquet path): user_id and every feature."""
    prefix = lake.uri("")
    if features_uri.startswith(prefix):
        frame = lake.read_table(features_uri.removeprefix(prefix)).to_pandas()
    elif "://" not in features_uri or features_uri.startswith("file://"):
        path = Path(features_uri.removeprefix("file://"))
        if not path.exists():
            raise SnapshotError(f"no feature snapshot at {path}: publish one first (the fincoach_hourly DAG)")
        frame = pd.read_parquet(path)
    else:
        raise SnapshotError(f"{features_uri} is neither under the lake ({prefix}) nor a local path")
    missing = [c for c in ("user_id", *FEATURE_NAMES) if c not in frame.columns]
    if missing:
        raise SnapshotError(
            f"snapshot {features_uri} lacks {', '.join(missing)}: it was not built with this feature spec"
        )
    if frame.empty:
        raise SnapshotError(f"snapshot {features_uri} has no users")
    return frame


def holdout_archetypes() -> tuple[str, ...]:
    """Archetypes never trained on (settings.holdout_archetypes)."""
    return tuple(a.strip() for a in get_settings().holdout_archetypes.split(",") if a.strip())


def split_users(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training users, held-out evaluation users), by a stable hash of user_id and by archetype."""
    bucket = frame["user_id"].map(lambda u: zlib.crc32(str(u).encode()) % HOLDOUT_SHARE)
    holdout = (bucket == 0).to_numpy()
    if holdout.sum() < MIN_HOLDOUT_USERS or holdout.all():
        train, test = frame, frame
    else:
        train, test = frame[~holdout], frame[holdout]
    unseen = np.isin(archetype(raw_matrix(train)), holdout_archetypes())
    if unseen.all():
        raise SnapshotError(
            f"every training user is of a held-out archetype ({', '.join(holdout_archetypes())}): "
            "change FINCOACH_HOLDOUT_ARCHETYPES"
        )
    return train[~unseen], test


def _input_example(frame: pd.DataFrame) -> pd.DataFrame:
    # Every feature is float64 in the spec: an int column here would make the signature refuse floats.
    return frame[list(FEATURE_NAMES)].head(5).astype("float64").reset_index(drop=True)


def log_candidate(
    folder: str | Path,
    run_id: str,
    features_uri: str,
    input_example: pd.DataFrame,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    curve: list[dict[str, float]] | None = None,
    documents: dict[str, dict] | None = None,
) -> dict:
    """Log an exported policy folder (write_policy_artifact) as a candidate in a new MLflow run `run_id`.

    `metrics` go to the run as `train/<key>`; `total_env_steps`, `env_steps_per_s` and `seconds` also
    fill the returned train result, the same dict `train_candidate` returns. `documents`: artifact path
    -> JSON-able dict, logged on the run.
    """
    import mlflow

    from fincoach.policy_model import log_policy
    from fincoach.tracking import configure_mlflow

    configure_mlflow()
    metrics = metrics or {}
    with mlflow.start_run(run_name=run_id) as run:
        mlflow.set_tags({"fincoach.run_id": run_id, "fincoach.stage": "candidate"})
        mlflow.log_params(
            {
                **{k: str(v) for k, v in (params or {}).items()},
                "feature_spec_version": FEATURE_SPEC_VERSION,
                "action_catalog_version": ACTION_CATALOG_VERSION,
                "features_uri": features_uri,
            }
        )
        for row in curve or []:  # one point per training iteration
            points = {f"train/{k}": float(row[k]) for k in ("episode_return_mean", "env_steps") if k in row}
            mlflow.log_metrics(
                {k: v for k, v in points.items() if math.isfinite(v)}, step=int(row["iteration"])
            )
        mlflow.log_metrics({f"train/{k}": float(v) for k, v in metrics.items()})
        mlflow.log_dict(spec_document(), "contract/feature_spec.json")
        mlflow.log_dict(catalog_document(), "contract/action_catalog.json")
        for path, doc in (documents or {}).items():
            mlflow.log_dict(doc, path)
        info = log_policy(folder, input_example=input_example)
    return {
        "run_id": run_id,
        "mlflow_run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "features_uri": features_uri,
        "env_steps": int(metrics.get("total_env_steps", 0)),
        "env_steps_per_s": float(metrics.get("env_steps_per_s", 0.0)),
        "train_seconds": float(metrics.get("seconds", 0.0)),
    }


def train_candidate(features_uri: str, run_id: str) -> dict:
    """Train a DQN candidate on the snapshot, export it and log it to MLflow; the run and model URIs.

    The simulator runs with the calibration of DAG run `run_id` (training.calibrate.load_calibration: the
    defaults when it is missing or failed validation); MLflow param `simulator_params` says which.
    """
    from training.calibrate import describe_calibration, load_calibration
    from training.dqn import DQNArgs, train_dqn
    from training.export import check_batch, export_policy
    from training.simulator import SIMULATOR_VERSION
    from training.warm_start import initial_weights

    s = get_settings()
    frame = read_snapshot(features_uri)
    train_users, eval_users = split_users(frame)
    args = DQNArgs(total_timesteps=s.train_timesteps, seed=s.train_seed)
    init_state, init_from, offline_counts = initial_weights(train_users, args)
    if init_state is not None:
        args.epsilon_initial = WARM_START_EPSILON
    calibration = load_calibration(run_id)
    simulator_params = describe_calibration(calibration)
    module, result = train_dqn(train_users, args, init_state=init_state, calibration=calibration)
    real_obs = normalise(raw_matrix(train_users.head(256)))
    with tempfile.TemporaryDirectory(prefix="fincoach-export-") as tmp:
        folder = export_policy(
            module,
            Path(tmp) / "policy",
            meta={
                "run_id": run_id,
                "features_uri": features_uri,
                "trained_env_steps": result["env_steps"],
                "init_from": init_from,
            },
            obs=np.concatenate([real_obs, check_batch()]),
        )
        params = {
            **{f"dqn.{k}": v for k, v in asdict(args).items()},
            "simulator_version": SIMULATOR_VERSION,
            "simulator_params": simulator_params[:MAX_PARAM_CHARS],
            "simulator_archetypes": len(calibration.archetypes),
            "train_users": len(train_users),
            "eval_users_available": len(eval_users),
            "init_from": init_from,
            "holdout_archetypes": ",".join(holdout_archetypes()),
            **{f"offline.{k}": v for k, v in offline_counts.items()},
        }
        metrics = {
            "total_env_steps": result["env_steps"],
            "env_steps_per_s": result["env_steps_per_s"],
            "seconds": result["train_seconds"],
        }
        documents = {"simulator/sim_params.json": calibration.to_dict()}
        logged = log_candidate(
            folder, run_id, features_uri, _input_example(frame), params, metrics, result["curve"], documents
        )
    return {**logged, "simulator_params": simulator_params}


def _compact(summary: dict) -> dict:
    keys = ("policy", "mean_reward", "ci_low", "ci_high", "relevance", "nudge_rate", "acceptance_rate")
    return {k: summary[k] for k in keys}


def _compact_segments(segments: dict) -> dict:
    return {
        kind: {
            name: {k: row[k] for k in ("diff_mean", "diff_ci_low", "n", "small")}
            for name, row in rows.items()
        }
        for kind, rows in segments.items()
    }


def evaluate_candidate(train_result: dict) -> dict:
    """Evaluate the candidate (as it will be served), the champion and every baseline on the same users."""
    import mlflow

    from fincoach.policy_model import load_registered_policy
    from fincoach.tracking import configure_mlflow
    from training.calibrate import describe_calibration, load_calibration
    from training.evaluation_run import run_evaluation

    configure_mlflow()
    frame = read_snapshot(train_result["features_uri"])
    train_users, eval_users = split_users(frame)
    candidate = load_registered_policy(train_result["model_uri"])
    champion_policy, champion_version, champion_error = load_champion()
    run_id = train_result["mlflow_run_id"]
    client = mlflow.MlflowClient()
    steps = {m.step: m.value for m in client.get_metric_history(run_id, "train/env_steps")}
    curve = [
        {"iteration": m.step, "env_steps": steps.get(m.step, m.step), "episode_return_mean": m.value}
        for m in client.get_metric_history(run_id, "train/episode_return_mean")
    ]
    calibration = load_calibration(train_result["run_id"])  # the DAG run's, as in training
    result = run_evaluation(
        candidate, champion_policy, train_users, eval_users, run_id, curve, frame, params=calibration
    )
    report = result["report"]
    simulator_params = describe_calibration(calibration)
    client.set_tag(run_id, "eval.simulator_params", simulator_params[:MAX_PARAM_CHARS])
    client.set_tag(run_id, "eval.champion_version", champion_version or "none")
    client.set_tag(run_id, "eval.holdout_archetypes", ",".join(holdout_archetypes()))
    policies = report["policies"]
    out = {
        **train_result,
        "candidate": _compact(policies["candidate"]),
        "rules": _compact(policies["rules"]),
        "champion": _compact(policies["champion"]) if "champion" in policies else None,
        "baselines": {k: _compact(policies[k]) for k in ("random", "linucb", "thompson")},
        "effect_vs_rules": report["vs_reference"]["candidate"],
        "segments_vs_current": _compact_segments(result["segments_vs_current"]),
        "heldout_archetypes": {
            a: policies["candidate"]["segments"]["archetype"].get(a) for a in holdout_archetypes()
        },
        "ope": result["ope"],
        "ope_served": result["ope_served"],
        "champion_version": champion_version,
        "simulator_params": simulator_params,
    }
    if champion_error:
        out["champion_error"] = champion_error
    return out


def register_candidate(eval_result: dict) -> dict:
    """Register the candidate as a new version of settings.model_name with alias `challenger`."""
    import mlflow

    from fincoach.tracking import configure_mlflow

    configure_mlflow()
    name = get_settings().model_name
    client = mlflow.MlflowClient()
    run_id = eval_result["mlflow_run_id"]
    existing = client.search_model_versions(f"name = '{name}' and tags.`fincoach.mlflow_run_id` = '{run_id}'")
    if existing:  # a retry: the version was made already
        version = str(existing[0].version)
    else:
        version = str(
            mlflow.register_model(
                eval_result["model_uri"], name, tags={"fincoach.mlflow_run_id": run_id}
            ).version
        )
    cand, champ = eval_result["candidate"], eval_result.get("champion")
    tags = {
        "fincoach.run_id": eval_result.get("run_id", ""),
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "action_catalog_version": ACTION_CATALOG_VERSION,
        "eval.candidate_mean_reward": f"{cand['mean_reward']:.6f}",
        "eval.candidate_ci_low": f"{cand['ci_low']:.6f}",
        "eval.rules_mean_reward": f"{eval_result['rules']['mean_reward']:.6f}",
        "eval.champion_mean_reward": f"{champ['mean_reward']:.6f}" if champ else "none",
        "eval.champion_version": eval_result.get("champion_version") or "none",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    client.set_tag(run_id, "registry.version", version)
    return {**eval_result, "version": version}


def promote_if_better(register_result: dict) -> dict:
    """Make the candidate champion iff the gate passes; log the decision on the run and the version."""
    import mlflow

    from fincoach.tracking import configure_mlflow
    from training.gate import decide

    configure_mlflow()
    s = get_settings()
    client = mlflow.MlflowClient()
    version = register_result["version"]
    candidate, rules, champion = (
        register_result["candidate"],
        register_result["rules"],
        register_result.get("champion"),
    )
    promote, reason = decide(
        candidate, rules, champion, register_result.get("segments_vs_current"), s.gate_segment_tolerance
    )
    if register_result.get("champion_error"):
        champion_version, error = register_result["champion_version"], register_result["champion_error"]
        reason += f"; champion version {champion_version} not evaluated: {error}"
    if promote:
        make_champion(version, by="gate", reason=reason)
    decision = "promoted" if promote else "kept_challenger"
    run_id = register_result["mlflow_run_id"]
    for key, value in (("gate.decision", decision), ("gate.reason", reason)):
        client.set_tag(run_id, key, value)
        client.set_model_version_tag(s.model_name, version, key, value)
    log.info("gate for %s version %s: %s", s.model_name, version, reason)
    return {
        "version": version,
        "decision": decision,
        "reason": reason,
        "champion_version": version if promote else register_result.get("champion_version"),
        "previous_champion_version": register_result.get("champion_version"),
        "candidate_mean_reward": candidate["mean_reward"],
        "candidate_ci_low": candidate["ci_low"],
        "rules_mean_reward": rules["mean_reward"],
        "champion_mean_reward": champion["mean_reward"] if champion else None,
    }
