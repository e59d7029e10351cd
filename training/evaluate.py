"""Policy evaluation in the simulator: every policy meets the same users, with the same luck.

Users and their seeds are drawn from `seed` alone, and the simulator draws every shock up front from each
user's seed (see training.simulator), so evaluating two policies with the same arguments compares them
under common random numbers, and evaluating one policy twice gives identical numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fincoach.actions import ACTIONS, N_ACTIONS
from fincoach.feature_spec import raw_matrix
from fincoach.policy import Policy
from training.simulator import HORIZON, REWARD_COMPONENTS, SIMULATOR_VERSION, Simulator


def action_key(action_id: int) -> str:
    """Stable, metric-name-safe label of an action (`3_reduce_spending`)."""
    return f"{action_id}_{ACTIONS[action_id].type.lower()}"


def simulated_users(users: Any, n_users: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw features (n_users, N_FEATURES), per-user seeds) drawn from the snapshot rows with `seed`."""
    raw = raw_matrix(users)
    if len(raw) == 0:
        raise ValueError("no users to simulate: the snapshot is empty")
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(raw), size=n_users, replace=n_users > len(raw))
    seeds = rng.integers(0, 2**62, size=n_users)
    return raw[rows], seeds


def evaluate(policy: Policy, users: Any, n_users: int, seed: int, horizon: int = HORIZON) -> dict:
    """Run `policy` greedily on `n_users` simulated users for one episode; JSON-able summary."""
    raw, seeds = simulated_users(users, n_users, seed)
    sim = Simulator(raw, seeds, horizon)
    returns = np.zeros(n_users)
    components = {name: np.zeros(n_users) for name in REWARD_COMPONENTS}
    counts = np.zeros(N_ACTIONS)
    shown = seen = accepted = 0
    while not sim.done:
        decision = policy.act(sim.raw_features(), epsilon=0.0)
        result = sim.step(decision.actions)
        returns += result.reward
        for name, value in result.components.items():
            components[name] += value
        counts += np.bincount(result.executed, minlength=N_ACTIONS)
        shown += int(result.shown.sum())
        seen += int(result.seen.sum())
        accepted += int(result.accepted.sum())
    steps = n_users * horizon
    return {
        "policy": str(policy.version),
        "simulator": SIMULATOR_VERSION,
        "n_users": n_users,
        "seed": seed,
        "horizon": horizon,
        "mean_reward": float(returns.mean()),
        "stderr_reward": float(returns.std(ddof=1) / np.sqrt(n_users)) if n_users > 1 else 0.0,
        "components": {name: float(v.mean()) for name, v in components.items()},
        "acceptance_rate": accepted / shown if shown else 0.0,
        "seen_rate": seen / shown if shown else 0.0,
        "nudge_rate": shown / steps,
        "action_mix": {action_key(a): float(counts[a] / steps) for a in range(N_ACTIONS)},
    }
