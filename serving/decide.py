"""The serving decision, shared by batch and online scoring: epsilon-greedy among allowed actions, then rank.

`allowed` is the catalog mask (fincoach.actions.action_mask) and the guardrails together. The chosen action
is rank 1; the other allowed actions follow by score. Each rank carries the probability that this
epsilon-greedy policy would have chosen that action (its propensity), so off-policy evaluation can use any.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fincoach.actions import action_mask
from serving import guardrails
from serving.families import planned_amounts


@dataclass(frozen=True)
class Ranked:
    """Top-k actions per user (rank 1 = the choice), their scores, propensities and planned amounts."""

    actions: np.ndarray  # (n, k) int action ids
    valid: np.ndarray  # (n, k) bool: False where a user has fewer than k allowed actions
    scores: np.ndarray  # (n, k)
    propensities: np.ndarray  # (n, k)
    amounts: np.ndarray  # (n, k)


def allowed_actions(raw: np.ndarray, context: guardrails.UserContext) -> tuple[np.ndarray, np.ndarray]:
    """((n, N_ACTIONS) allowed mask, (n, N_ACTIONS) planned amounts) for raw features in spec order."""
    amounts = planned_amounts(raw)
    return action_mask(raw) & guardrails.allowed(raw, amounts, context), amounts


def rank(scores: np.ndarray, allowed: np.ndarray, amounts: np.ndarray, k: int, epsilon: float,
         rng: np.random.Generator) -> Ranked:
    """Choose epsilon-greedily among allowed actions (every row needs one), rank the next k-1 by score."""
    n, n_actions = scores.shape
    rows = np.arange(n)
    masked = np.where(allowed, scores, -np.inf)
    greedy = masked.argmax(axis=1)
    n_valid = allowed.sum(axis=1)
    chosen = greedy
    if epsilon > 0:
        explore = rng.random(n) < epsilon
        uniform = np.where(allowed, rng.random((n, n_actions)), -1.0)  # a uniform draw among allowed actions
        chosen = np.where(explore, uniform.argmax(axis=1), greedy)
    key = masked.copy()
    key[rows, chosen] = np.inf
    order = np.argsort(-key, axis=1, kind="stable")[:, :k]  # ties go to the lower id
    valid = np.take_along_axis(allowed, order, axis=1)
    p_greedy = (1.0 - epsilon + epsilon / n_valid)[:, None]
    p_other = (epsilon / n_valid)[:, None]
    propensities = np.where(order == greedy[:, None], p_greedy, p_other)
    return Ranked(
        actions=order,
        valid=valid,
        scores=np.take_along_axis(scores, order, axis=1),
        propensities=propensities,
        amounts=np.take_along_axis(np.asarray(amounts), order, axis=1),
    )
