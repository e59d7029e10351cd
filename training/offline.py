"""Offline pretraining: behaviour cloning on the logged coaching interactions, with RLlib's offline data path.

`app.coaching_interactions` holds what was served (action, propensity) and how the user responded. Each
interaction is paired with its user's features in the training snapshot (the features of the week it was
served are not kept, so the snapshot stands in for them: a documented approximation), written as
RLlib offline rows (`eps_id`, `obs`, `actions`, `rewards`, `new_obs`, ...) to Parquet, and RLlib's BC
learns to imitate the logged choices. Only accepted nudges and the logged NO_ACTIONs are imitated
(`accepted_only`, "filtered BC"): copying what users ignored would copy the logging policy's mistakes.

`bc_to_q_state` turns the BC network into the initial weights of a DQN Q-network: the same encoder, the
policy logits as the advantage head and a zero value head, so the DQN starts out choosing what BC
chooses and is then fine-tuned in the simulator (training.dqn.train_dqn's `init_state`).
"""

from __future__ import annotations

import gc
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from fincoach.actions import N_ACTIONS, NO_ACTION
from fincoach.feature_spec import FEATURES, N_FEATURES, normalise, raw_matrix
from fincoach.pseudonym import is_pseudonym, pseudonymise_many

log = logging.getLogger(__name__)


class OfflineDataError(ValueError):
    """The logged interactions cannot be used for pretraining (none left after matching)."""


@dataclass
class OfflineArgs:
    """Settings of the BC pretraining (RLlib BCConfig), sized for a small log on a few CPUs."""

    fcnet_hiddens: tuple[int, ...] = (256, 128, 64)  # must match the DQN's Q-network encoder
    lr: float = 3e-3  # Adam learning rate (RLlib BC: 1e-4)
    train_batch_size_per_learner: int = 128  # rows per gradient step (RLlib: 32)
    iterations: int = 4  # algo.train() calls (training curve points)
    epochs_per_iteration: int = 10  # passes over the log per algo.train() (dataset_num_iters_per_learner)
    accepted_only: bool = True  # imitate accepted nudges and NO_ACTIONs only
    seed: int = 7


def read_interactions(engine: sa.Engine) -> pd.DataFrame:
    """Every logged interaction: user, action, propensity, response, time served."""
    query = sa.text(
        "select user_id, action_id, propensity, response, served_at from app.coaching_interactions "
        "order by user_id, served_at, id"
    )
    with engine.connect() as conn:
        return pd.read_sql(query, conn)


def match_interactions(
    interactions: pd.DataFrame, snapshot: pd.DataFrame
) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """(usable interactions, their users' raw features from the snapshot, counts that reconcile)."""
    counts = {"logged": len(interactions)}
    if snapshot["user_id"].map(is_pseudonym).any():  # lake snapshots hold pseudonyms, the log app ids
        interactions = interactions.assign(user_id=pseudonymise_many(interactions["user_id"]))
    valid = interactions["action_id"].between(0, N_ACTIONS - 1)
    counts["rejected_unknown_action"] = int((~valid).sum())
    rows = interactions[valid]
    known = rows["user_id"].isin(snapshot["user_id"])
    counts["rejected_user_not_in_snapshot"] = int((~known).sum())
    rows = rows[known]
    features = snapshot.drop_duplicates("user_id").set_index("user_id")
    return rows, raw_matrix(features.loc[rows["user_id"]].reset_index()), counts


def offline_rows(
    interactions: pd.DataFrame, snapshot: pd.DataFrame, accepted_only: bool
) -> tuple[pd.DataFrame, dict]:
    """RLlib offline rows from logged interactions and the snapshot; counts that reconcile with the input."""
    rows, raw, counts = match_interactions(interactions, snapshot)
    if accepted_only:
        keep = ((rows["response"] == "accepted") | (rows["action_id"] == NO_ACTION)).to_numpy()
        counts["skipped_not_accepted"] = int((~keep).sum())
        rows, raw = rows[keep], raw[keep]
    counts["used"] = len(rows)
    if rows.empty:
        raise OfflineDataError(f"no logged interaction is usable for pretraining: {counts}")
    obs = normalise(raw)
    t = rows.groupby("user_id").cumcount().to_numpy()
    last = rows.groupby("user_id")["served_at"].transform("count").to_numpy() - 1 == t
    frame = pd.DataFrame(
        {
            "eps_id": rows["user_id"].astype(str).to_numpy(),
            "agent_id": None,
            "module_id": None,
            "obs": list(obs),
            "actions": rows["action_id"].astype(np.int64).to_numpy(),
            "rewards": (rows["response"] == "accepted").astype(np.float32).to_numpy(),
            "new_obs": list(obs),  # the next week's features are not logged
            "terminateds": False,
            "truncateds": last,
            "t": t,
        }
    )
    return frame, counts


def pretrain_bc(rows: pd.DataFrame, args: OfflineArgs) -> tuple[Any, dict]:
    """Train RLlib BC on offline rows (as `offline_rows` makes them); (RLModule, metrics)."""
    import gymnasium as gym
    from ray.rllib.algorithms.bc import BCConfig

    from training.dqn import start_ray

    clip = np.array([f.clip for f in FEATURES], dtype=np.float32)
    started = start_ray()
    algo = None
    with tempfile.TemporaryDirectory(prefix="fincoach-offline-") as tmp:
        path = Path(tmp) / "interactions.parquet"
        rows.to_parquet(path)
        try:
            config = (
                BCConfig()
                .environment(
                    observation_space=gym.spaces.Box(-clip, clip, (N_FEATURES,), np.float32),
                    action_space=gym.spaces.Discrete(N_ACTIONS),
                )
                .offline_data(
                    input_=[str(path)],
                    input_read_method_kwargs={"override_num_blocks": 1},
                    map_batches_kwargs={"concurrency": 1, "num_cpus": 1},
                    dataset_num_iters_per_learner=max(
                        1, args.epochs_per_iteration * len(rows) // args.train_batch_size_per_learner
                    ),
                )
                .training(lr=args.lr, train_batch_size_per_learner=args.train_batch_size_per_learner)
                .rl_module(
                    model_config={"fcnet_hiddens": list(args.fcnet_hiddens), "fcnet_activation": "relu"}
                )
                .debugging(seed=args.seed)
            )
            algo = config.build_algo()
            losses = []
            for _ in range(args.iterations):
                result = algo.train()
                learner = result.get("learners", {}).get("default_policy", {})
                losses.append(float(learner.get("policy_loss", np.nan)))
            from ray.rllib.core import DEFAULT_MODULE_ID

            state = algo.learner_group.foreach_learner(
                lambda learner: {
                    k: v.detach().cpu().clone()
                    for k, v in learner.module[DEFAULT_MODULE_ID].state_dict().items()
                }
            )
            module = config.get_rl_module_spec().build()
            module.load_state_dict(_single(state))
        finally:
            if algo is not None:
                algo.stop()
                del algo
                gc.collect()  # drop RLlib's dataset iterators while Ray still runs (else noisy errors)
            if started:
                import ray

                ray.shutdown()
    return module, {"policy_loss": losses, "rows": len(rows)}


def _single(results: Any) -> dict:
    """The one learner's result of `LearnerGroup.foreach_learner` (a list, or RemoteCallResults)."""
    first = next(iter(results))
    return first.get() if hasattr(first, "get") and not isinstance(first, dict) else first


def bc_to_q_state(bc_module: Any) -> dict:
    """Initial Q-network weights (training.export.QNetwork keys) from a BC module: encoder, logits, V = 0."""
    import torch

    encoder = bc_module._encoder.net.mlp.state_dict()
    head = bc_module._pi_head.net.mlp.state_dict()
    state = {f"encoder.{k}": v.detach().clone() for k, v in encoder.items()}
    state |= {f"advantage.{k}": v.detach().clone() for k, v in head.items()}
    last = max(int(k.split(".")[0]) for k in head)
    width = head[f"{last}.weight"].shape[1]
    state |= {"value.0.weight": torch.zeros(1, width), "value.0.bias": torch.zeros(1)}
    return state
