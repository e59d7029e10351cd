"""Off-policy evaluation: what a target policy would score, estimated from a log of another policy's choices.

The log holds, per served recommendation, the user's features, the action, the probability with which the
logging policy chose it (the propensity; `fincoach.policy.Policy.act` reports it) and the reward that
followed. The value estimated is the mean one-week reward per decision under the target policy, on the
logged users' states. Estimators:

- IPS: mean of w r, with w = pi(a|x) / mu(a|x);
- SNIPS: sum(w r) / sum(w) (self-normalised: bounded, a little biased);
- DM: mean of sum_a pi(a|x) q(x, a), with q a ridge regression of the reward per action (2-fold
  cross-fitted: each half is scored by the model fitted on the other half);
- DR: DM plus the IPS-weighted residual w (r - q(x, a)).

Each comes with a 95% CI from a bootstrap over users (a user's weeks are correlated, so users are
resampled as clusters). `simulate_log` makes such a log in the simulator and keeps the simulator's state
before every logged week, so `true_value` can replay the target policy on exactly those states with the
same luck: the estimate's error against the simulator's on-policy value is then known.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fincoach.actions import N_ACTIONS
from fincoach.policy import Policy
from training.bandits import LinearBandit
from training.evaluate import simulated_users
from training.sim_params import SimParams
from training.simulator import HORIZON, Simulator
from training.stats import CONFIDENCE, N_BOOTSTRAP

ESTIMATORS = ("ips", "snips", "dm", "dr")


@dataclass
class LoggedData:
    """m logged decisions: contexts, actions, logging propensities, rewards, and the user of each."""

    raw: np.ndarray  # (m, N_FEATURES) raw features when the action was chosen
    actions: np.ndarray  # (m,) int
    propensities: np.ndarray  # (m,) probability of the logged action under the logging policy
    rewards: np.ndarray  # (m,) one-week reward that followed
    users: np.ndarray  # (m,) cluster id (the user) for the bootstrap
    snapshots: list[Simulator] = field(default_factory=list)  # simulator before each week (ground truth)


def simulate_log(
    logging_policy: Policy,
    users: Any,
    n_users: int,
    seed: int,
    epsilon: float,
    horizon: int = HORIZON,
    params: SimParams | None = None,
) -> LoggedData:
    """A log of `logging_policy` (epsilon-greedy) serving `n_users` simulated users for `horizon` weeks.

    `params`: the simulator's parameters (None: the defaults); the ground truth replays the same simulator.
    """
    if not 0 < epsilon <= 1:
        raise ValueError(f"the logging policy must explore (0 < epsilon <= 1) for OPE, got {epsilon}")
    raw0, seeds = simulated_users(users, n_users, seed)
    sim = Simulator(raw0, seeds, horizon, params=params)
    rng = np.random.default_rng(seed + 1)
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("raw", "actions", "propensities", "rewards", "users")
    }
    snapshots = []
    while not sim.done:
        snapshots.append(copy.deepcopy(sim))
        raw = sim.raw_features()
        decision = logging_policy.act(raw, epsilon=epsilon, rng=rng)
        result = sim.step(decision.actions)
        for key, value in (
            ("raw", raw),
            ("actions", decision.actions),
            ("propensities", decision.propensities),
            ("rewards", result.reward),
            ("users", np.arange(n_users)),
        ):
            parts[key].append(value)
    return LoggedData(**{k: np.concatenate(v) for k, v in parts.items()}, snapshots=snapshots)


def log_from_interactions(interactions: Any, snapshot: Any) -> tuple[LoggedData, dict[str, int]]:
    """The served log (app.coaching_interactions) as LoggedData: reward 1 if accepted; no ground truth.

    Features are the users' in `snapshot` (the log does not keep the features at serving time).
    """
    from training.offline import match_interactions

    rows, raw, counts = match_interactions(interactions, snapshot)
    counts["used"] = len(rows)
    log = LoggedData(
        raw=raw,
        actions=rows["action_id"].to_numpy(dtype=np.int64),
        propensities=rows["propensity"].to_numpy(dtype=np.float64),
        rewards=(rows["response"] == "accepted").to_numpy(dtype=np.float64),
        users=rows["user_id"].to_numpy(),
    )
    return log, counts


def target_probabilities(policy: Policy, raw: np.ndarray) -> np.ndarray:
    """(m, N_ACTIONS) pi(a|x): a policy's own `probabilities`, else one-hot on its greedy choice."""
    if hasattr(policy, "probabilities"):
        return np.asarray(policy.probabilities(raw), dtype=np.float64)
    actions = policy.act(raw, epsilon=0.0).actions
    probs = np.zeros((len(raw), N_ACTIONS))
    probs[np.arange(len(raw)), actions] = 1.0
    return probs


def _reward_model(log: LoggedData) -> np.ndarray:
    """(m, N_ACTIONS) cross-fitted ridge predictions of the reward of every action for every decision."""
    fold = np.unique(log.users, return_inverse=True)[1] % 2
    q = np.zeros((len(log.rewards), N_ACTIONS))
    for k in (0, 1):
        model = LinearBandit(ridge=1.0)
        train = fold != k
        if not train.any():  # a single user: fit and score on the same data
            train = np.ones_like(train)
        model.update(log.raw[train], log.actions[train], log.rewards[train])
        test = fold == k
        q[test] = LinearBandit.context(log.raw[test]) @ model.theta().T
    return q


def _cluster_ratio_ci(
    num: np.ndarray, den: np.ndarray, clusters: np.ndarray, seed: int
) -> tuple[float, float, float]:
    """(estimate, CI low, CI high) of sum(num) / sum(den), bootstrapping clusters."""
    ids, inverse = np.unique(clusters, return_inverse=True)
    num_c = np.bincount(inverse, weights=num, minlength=len(ids))
    den_c = np.bincount(inverse, weights=den, minlength=len(ids))
    estimate = float(num_c.sum() / den_c.sum()) if den_c.sum() > 0 else float("nan")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(ids), size=(N_BOOTSTRAP, len(ids)))
    dens = den_c[pick].sum(axis=1)
    boots = np.where(dens > 0, num_c[pick].sum(axis=1) / np.where(dens > 0, dens, 1.0), np.nan)
    alpha = (1.0 - CONFIDENCE) / 2.0
    lo, hi = np.nanquantile(boots, [alpha, 1.0 - alpha])
    return estimate, float(lo), float(hi)


def estimate(target: Policy, log: LoggedData, seed: int = 0) -> dict[str, dict[str, float]]:
    """{estimator: {value, ci_low, ci_high}} of the target's per-decision value from the log."""
    if (log.propensities <= 0).any() or (log.propensities > 1).any():
        raise ValueError("logged propensities must lie in (0, 1]: the log cannot support OPE otherwise")
    pi = target_probabilities(target, log.raw)
    idx = np.arange(len(log.actions))
    w = pi[idx, log.actions] / log.propensities
    q = _reward_model(log)
    dm = (pi * q).sum(axis=1)
    ones = np.ones_like(w)
    terms = {
        "ips": (w * log.rewards, ones),
        "snips": (w * log.rewards, w),
        "dm": (dm, ones),
        "dr": (dm + w * (log.rewards - q[idx, log.actions]), ones),
    }
    out = {}
    for name, (num, den) in terms.items():
        value, lo, hi = _cluster_ratio_ci(num, den, log.users, seed)
        out[name] = {"value": value, "ci_low": lo, "ci_high": hi}
    out["support"] = {"matched_share": float((w > 0).mean()), "max_weight": float(w.max())}
    return out


def true_value(target: Policy, log: LoggedData, seed: int = 0) -> dict[str, float]:
    """The simulator's on-policy value of `target` on the logged states: replay each week with its actions."""
    if not log.snapshots:
        raise ValueError("this log has no simulator snapshots (it is not from simulate_log): no ground truth")
    rewards, users = [], []
    for snap in log.snapshots:
        branch = copy.deepcopy(snap)
        raw = branch.raw_features()
        actions = target.act(raw, epsilon=0.0).actions
        rewards.append(branch.step(actions).reward)
        users.append(np.arange(branch.n))
    r, u = np.concatenate(rewards), np.concatenate(users)
    value, lo, hi = _cluster_ratio_ci(r, np.ones_like(r), u, seed)
    return {"value": value, "ci_low": lo, "ci_high": hi}


def check_against_simulator(target: Policy, log: LoggedData, seed: int = 0) -> dict[str, Any]:
    """Every estimator beside the simulator's truth: estimate, CI, error, and whether the CI covers it."""
    truth = true_value(target, log, seed)
    est = estimate(target, log, seed)
    out: dict[str, Any] = {"truth": truth, "support": est.pop("support")}
    for name, row in est.items():
        out[name] = {
            **row,
            "error": row["value"] - truth["value"],
            "covers_truth": bool(row["ci_low"] <= truth["value"] <= row["ci_high"]),
        }
    return out
