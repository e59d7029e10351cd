"""Baselines beside every learned agent: a uniform random policy and two contextual bandits.

Both bandits model the one-week reward of each action as linear in the context x = [1, normalise(raw)]
(a ridge regression per action, `A_a = lambda I + sum x x^T`, `b_a = sum r x`), and differ in how they
explore:

- LinUCB (Li et al. 2010) scores theta_a . x + alpha * sqrt(x^T A_a^-1 x), an optimistic upper bound;
- linear Thompson sampling (Agrawal & Goyal 2013) scores x . theta~ with theta~ ~ N(theta_a, v^2 A_a^-1)
  drawn afresh for every user and decision.

They are the plan's multi-armed-bandit answer to exploration versus exploitation: they learn online from
each week's reward in the simulator (`fit_bandit`), myopically (no credit for next weeks), through the
same `Policy` interface as the rules and DQN, so masking and evaluation are the same for all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fincoach.actions import N_ACTIONS, action_mask
from fincoach.feature_spec import N_FEATURES, normalise
from fincoach.policy import Decision, Policy
from training.sim_params import SimParams
from training.simulator import HORIZON, Simulator


class RandomPolicy(Policy):
    """Uniformly random among the actions allowed for each user (propensity 1 / allowed actions)."""

    version = "random"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def action_scores(self, raw: np.ndarray) -> np.ndarray:
        """Independent uniform scores: the argmax over allowed actions is a uniform choice."""
        return self.rng.random((len(np.atleast_2d(raw)), N_ACTIONS))

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        """(n, N_ACTIONS) uniform distribution over the actions allowed for each user."""
        mask = action_mask(np.atleast_2d(raw)).astype(np.float64)
        return mask / mask.sum(axis=1, keepdims=True)

    def act(self, raw: np.ndarray, epsilon: float = 0.0, rng: np.random.Generator | None = None) -> Decision:
        """A uniform choice among allowed actions with its true propensity."""
        decision = super().act(raw, epsilon=0.0)
        return Decision(
            decision.actions,
            self.probabilities(raw)[np.arange(len(decision.actions)), decision.actions],
            decision.scores,
        )


class LinearBandit(Policy):
    """Per-action ridge regression of the one-week reward on [1, normalised features]."""

    def __init__(self, ridge: float = 1.0):
        self.dim = N_FEATURES + 1
        self.A = np.repeat(ridge * np.eye(self.dim)[None], N_ACTIONS, axis=0)
        self.b = np.zeros((N_ACTIONS, self.dim))
        self.n_updates = 0

    @staticmethod
    def context(raw: np.ndarray) -> np.ndarray:
        """(n, N_FEATURES + 1) bandit context: a bias and the model input of the feature spec."""
        x = normalise(raw).astype(np.float64)
        return np.concatenate([np.ones((len(x), 1)), x], axis=1)

    def theta(self) -> np.ndarray:
        """(N_ACTIONS, dim) ridge estimate of each action's reward weights."""
        return np.linalg.solve(self.A, self.b[..., None])[..., 0]

    def update(self, raw: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Add a batch of (context, action, reward) observations."""
        x = self.context(raw)
        for a in np.unique(actions):
            rows = x[actions == a]
            self.A[a] += rows.T @ rows
            self.b[a] += rows.T @ rewards[actions == a]
        self.n_updates += len(actions)


class LinUCBPolicy(LinearBandit):
    """LinUCB: the ridge estimate plus `alpha` times its standard error (optimism under uncertainty)."""

    version = "linucb"

    def __init__(self, alpha: float = 0.5, ridge: float = 1.0):
        super().__init__(ridge)
        self.alpha = alpha

    def action_scores(self, raw: np.ndarray) -> np.ndarray:
        """Upper confidence bound of each action's reward."""
        x = self.context(np.atleast_2d(raw))
        a_inv = np.linalg.inv(self.A)
        mean = x @ self.theta().T
        width = np.sqrt(np.maximum(np.einsum("nd,ade,ne->na", x, a_inv, x), 0.0))
        return mean + self.alpha * width


class ThompsonPolicy(LinearBandit):
    """Linear Thompson sampling: score with weights drawn from the posterior, per user and decision."""

    version = "thompson"

    def __init__(self, v: float = 0.3, ridge: float = 1.0, seed: int = 0):
        super().__init__(ridge)
        self.v = v
        self.rng = np.random.default_rng(seed)

    def action_scores(self, raw: np.ndarray) -> np.ndarray:
        """x . theta~ with theta~ ~ N(theta_a, v^2 A_a^-1) drawn for every user."""
        x = self.context(np.atleast_2d(raw))
        theta = self.theta()
        chol = np.linalg.cholesky(self.A)  # A = L L^T, so L^-T z ~ N(0, A^-1)
        scores = np.empty((len(x), N_ACTIONS))
        for a in range(N_ACTIONS):
            z = self.rng.standard_normal((self.dim, len(x)))
            noise = np.linalg.solve(chol[a].T, z).T  # (n, dim)
            scores[:, a] = x @ theta[a] + self.v * np.einsum("nd,nd->n", x, noise)
        return scores


def fit_bandit(
    bandit: LinearBandit,
    users: np.ndarray,
    episodes: int,
    n_users: int,
    seed: int,
    horizon: int = HORIZON,
    params: SimParams | None = None,
) -> dict[str, Any]:
    """Let `bandit` act and learn from each week's reward on `episodes` x `n_users` simulated users.

    `users` is a raw feature matrix (spec order), `params` the simulator's (None: the defaults); returns
    the learning curve (mean reward per episode).
    """
    users = np.atleast_2d(users)
    rng = np.random.default_rng(seed)
    curve = []
    for _ in range(episodes):
        rows = rng.choice(len(users), size=n_users, replace=n_users > len(users))
        sim = Simulator(users[rows], rng.integers(0, 2**62, size=n_users), horizon, params=params)
        total = 0.0
        while not sim.done:
            raw = sim.raw_features()
            actions = bandit.act(raw).actions
            result = sim.step(actions)
            bandit.update(raw, actions, result.reward)
            total += float(result.reward.mean())
        curve.append(total)
    return {"episode_return_mean": curve, "updates": bandit.n_updates}
