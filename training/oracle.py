"""The relevance oracle: is a recommendation beneficial for this user at this moment, by the simulator?

A nudge is *relevant* when its expected outcome beats showing nothing. Expected over what we cannot see:
users who look exactly like this one now (same raw features) but whose latent traits and luck are fresh
draws of the simulator. For each recommendation the oracle simulates `draws` such look-alikes twice
with the same seeds (common random numbers): once shown the action, once shown NO_ACTION, both left
uncoached for the following `lookahead - 1` weeks so the action's lasting effect (a goal, a saving habit)
counts. The action is relevant iff the mean return difference is positive.

Only the simulator's public API is used (`Simulator(raw, seeds, horizon)`, `.step`). What the features
do not show (fatigue from earlier nudges) is drawn afresh, so the oracle is about the user as observed.
"""

from __future__ import annotations

import numpy as np

from fincoach.actions import NO_ACTION
from training.sim_params import SimParams
from training.simulator import Simulator

DEFAULT_DRAWS = 8
DEFAULT_LOOKAHEAD = 4


def expected_lift(
    raw: np.ndarray,
    actions: np.ndarray,
    draws: int = DEFAULT_DRAWS,
    lookahead: int = DEFAULT_LOOKAHEAD,
    seed: int = 0,
    params: SimParams | None = None,
) -> np.ndarray:
    """(n,) mean return of showing `actions[i]` to look-alikes of user i minus showing them nothing.

    `params`: the simulator's parameters (a calibration; None: the defaults).
    """
    raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
    actions = np.asarray(actions, dtype=np.int64).reshape(-1)
    if len(raw) != len(actions):
        raise ValueError(f"one action per user: {len(actions)} actions for {len(raw)} users")
    if draws < 1 or lookahead < 1:
        raise ValueError(f"draws and lookahead must be >= 1, got {draws} and {lookahead}")
    n = len(raw)
    if n == 0:
        return np.zeros(0)
    rep = np.repeat(raw, draws, axis=0)
    seeds = np.random.default_rng(seed).integers(0, 2**62, size=n * draws)
    sim = Simulator(np.concatenate([rep, rep]), np.concatenate([seeds, seeds]), lookahead, params=params)
    first = np.concatenate([np.repeat(actions, draws), np.full(n * draws, NO_ACTION)])
    total = sim.step(first).reward
    silent = np.full(2 * n * draws, NO_ACTION)
    while not sim.done:
        total = total + sim.step(silent).reward
    diff = total[: n * draws] - total[n * draws :]
    return diff.reshape(n, draws).mean(axis=1)


def relevant(raw: np.ndarray, actions: np.ndarray, **kwargs: int) -> np.ndarray:
    """(n,) bool: the oracle rates `actions[i]` beneficial for user i (expected_lift > 0)."""
    return expected_lift(raw, actions, **kwargs) > 0
