"""Policy evaluation in the simulator: every policy meets the same users, with the same luck.

Users and their seeds are drawn from `seed` alone, and the simulator draws every shock up front from each
user's seed (see training.simulator), so evaluating two policies with the same arguments compares them
under common random numbers, and evaluating one policy twice gives identical numbers. The primary
outcome is a user's episode return (the reward is the lift over their untreated twin, so never coaching
scores 0); it is reported with a 95% bootstrap CI, per segment (training.segments), with the share of
nudges the oracle rates beneficial (training.oracle), and as a paired comparison between policies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fincoach.actions import ACTIONS, N_ACTIONS, NO_ACTION
from fincoach.feature_spec import raw_matrix
from fincoach.policy import Policy
from training.oracle import DEFAULT_DRAWS, expected_lift
from training.segments import segments
from training.sim_params import DEFAULT_PARAMS, SimParams
from training.simulator import HORIZON, REWARD_COMPONENTS, SIMULATOR_VERSION, Simulator
from training.stats import mean_with_ci, paired_comparison

MIN_SEGMENT_USERS = 30  # smaller segments are reported but flagged `small` (too noisy to gate on)


def action_key(action_id: int) -> str:
    """Stable, metric-name-safe label of an action (`3_reduce_spending`)."""
    return f"{action_id}_{ACTIONS[action_id].type.lower()}"


def simulated_users(users: Any, n_users: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw features (n_users, N_FEATURES), per-user seeds) drawn from the snapshot rows with `seed`."""
    raw = raw_matrix(users) if not isinstance(users, np.ndarray) else np.atleast_2d(users)
    if len(raw) == 0:
        raise ValueError("no users to simulate: the snapshot is empty")
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(raw), size=n_users, replace=n_users > len(raw))
    seeds = rng.integers(0, 2**62, size=n_users)
    return raw[rows], seeds


@dataclass
class Rollout:
    """Everything one policy did to the evaluation users (arrays over users), before summarising."""

    policy: str
    start_raw: np.ndarray  # (n, N_FEATURES) raw features at week 0 (what segments are defined on)
    returns: np.ndarray  # (n,) episode return per user: the primary outcome
    weekly: np.ndarray  # (horizon,) mean reward per week
    components: dict[str, np.ndarray]  # name -> (n,) summed reward component
    counts: np.ndarray  # (N_ACTIONS,) executed actions
    shown: int
    seen: int
    accepted: int
    nudged: int  # recommendations other than NO_ACTION
    relevant: int  # of those, the ones the oracle rates beneficial
    horizon: int


def rollout(
    policy: Policy,
    raw: np.ndarray,
    seeds: np.ndarray,
    horizon: int = HORIZON,
    oracle_draws: int = DEFAULT_DRAWS,
    params: SimParams | None = None,
) -> Rollout:
    """Run `policy` greedily on the users `raw` with `seeds` for one episode (oracle_draws=0: no relevance).

    `params`: the simulator's parameters, for the rollout and the oracle (a calibration; None: defaults).
    """
    sim = Simulator(raw, seeds, horizon, params=params)
    n = len(raw)
    returns, weekly = np.zeros(n), np.zeros(horizon)
    components = {name: np.zeros(n) for name in REWARD_COMPONENTS}
    counts = np.zeros(N_ACTIONS)
    shown = seen = accepted = nudged = relevant = 0
    oracle_seed = int(np.asarray(seeds[:1]).sum() % (2**31)) if n else 0
    while not sim.done:
        state = sim.raw_features()
        actions = policy.act(state, epsilon=0.0).actions
        if oracle_draws > 0:
            chosen = np.flatnonzero(actions != NO_ACTION)
            lift = expected_lift(
                state[chosen], actions[chosen], draws=oracle_draws, seed=oracle_seed + sim.t, params=params
            )
            nudged += len(chosen)
            relevant += int((lift > 0).sum())
        week = sim.t
        result = sim.step(actions)
        returns += result.reward
        weekly[week] = float(result.reward.mean())
        for name, value in result.components.items():
            components.setdefault(name, np.zeros(n))  # a simulator may report more components
            components[name] += value
        counts += np.bincount(result.executed, minlength=N_ACTIONS)
        shown += int(result.shown.sum())
        seen += int(result.seen.sum())
        accepted += int(result.accepted.sum())
    return Rollout(
        str(policy.version),
        raw,
        returns,
        weekly,
        components,
        counts,
        shown,
        seen,
        accepted,
        nudged,
        relevant,
        horizon,
    )


def _by_segment(raw: np.ndarray, fn: Any) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for kind, labels in segments(raw).items():
        out[kind] = {}
        for name in sorted(set(labels.tolist())):
            where = labels == name
            row = fn(where)
            row["small"] = bool(where.sum() < MIN_SEGMENT_USERS)
            out[kind][name] = row
    return out


def summarise(r: Rollout, seed: int = 0) -> dict:
    """JSON-able summary of a rollout: primary outcome with CI, segments, relevance, behaviour."""
    n = len(r.returns)
    steps = n * r.horizon
    primary = mean_with_ci(r.returns, seed=seed)
    return {
        "policy": r.policy,
        "simulator": SIMULATOR_VERSION,
        "n_users": n,
        "horizon": r.horizon,
        "mean_reward": primary["mean"],
        "ci_low": primary["ci_low"],
        "ci_high": primary["ci_high"],
        "stderr_reward": primary["stderr"],
        "relevance": r.relevant / r.nudged if r.nudged else None,
        "components": {name: float(v.mean()) for name, v in r.components.items()},
        "acceptance_rate": r.accepted / r.shown if r.shown else 0.0,
        "seen_rate": r.seen / r.shown if r.shown else 0.0,
        "nudge_rate": r.shown / steps,
        "action_mix": {action_key(a): float(r.counts[a] / steps) for a in range(N_ACTIONS)},
        "weekly_reward": [float(x) for x in r.weekly],
        "segments": _by_segment(r.start_raw, lambda w: mean_with_ci(r.returns[w], seed=seed)),
    }


def compare(a: Rollout, b: Rollout, seed: int = 0) -> dict:
    """Paired effect of `a` over `b` (same users, same luck): overall and per segment."""
    if not np.array_equal(a.start_raw, b.start_raw):
        raise ValueError("compare needs rollouts on the same users: evaluate both with the same seed")
    return {
        "overall": paired_comparison(a.returns, b.returns, seed=seed),
        "segments": _by_segment(
            a.start_raw, lambda w: paired_comparison(a.returns[w], b.returns[w], seed=seed)
        ),
    }


def evaluate(
    policy: Policy,
    users: Any,
    n_users: int,
    seed: int,
    horizon: int = HORIZON,
    oracle_draws: int = DEFAULT_DRAWS,
    params: SimParams | None = None,
) -> dict:
    """Summary of `policy` on `n_users` simulated users drawn with `seed` (JSON-able)."""
    raw, seeds = simulated_users(users, n_users, seed)
    return {**summarise(rollout(policy, raw, seeds, horizon, oracle_draws, params), seed), "seed": seed}


def evaluate_all(
    policies: Mapping[str, Policy],
    users: Any,
    n_users: int,
    seed: int,
    horizon: int = HORIZON,
    reference: str = "rules",
    oracle_draws: int = DEFAULT_DRAWS,
    params: SimParams | None = None,
) -> tuple[dict, dict[str, Rollout]]:
    """Every policy on the same users and simulator `params`; ({summaries, comparisons vs `reference`}, rollouts)."""
    if reference not in policies:
        raise ValueError(f"reference policy {reference!r} is not among {sorted(policies)}")
    raw, seeds = simulated_users(users, n_users, seed)
    rollouts = {name: rollout(p, raw, seeds, horizon, oracle_draws, params) for name, p in policies.items()}
    report = {
        "n_users": n_users,
        "seed": seed,
        "horizon": horizon,
        "reference": reference,
        "simulator_params": (params or DEFAULT_PARAMS).source,
        "policies": {name: {**summarise(r, seed), "seed": seed} for name, r in rollouts.items()},
        "vs_reference": {
            name: compare(r, rollouts[reference], seed)["overall"]
            for name, r in rollouts.items()
            if name != reference
        },
    }
    return report, rollouts
