"""The coaching environment: one simulated user, one coaching action a week (gymnasium API)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from fincoach.actions import ACTIONS, N_ACTIONS, action_mask
from fincoach.feature_spec import FEATURES, N_FEATURES, normalise, raw_matrix
from training.simulator import HORIZON, REWARD_MAX, REWARD_MIN, Simulator

_OBS_LOW = np.array([-f.clip for f in FEATURES], dtype=np.float32)
_OBS_HIGH = np.array([f.clip for f in FEATURES], dtype=np.float32)


def _users_matrix(users: Any) -> np.ndarray:
    """Raw feature matrix from a DataFrame, a list of mappings, or an (n, N_FEATURES) array."""
    if isinstance(users, np.ndarray):
        raw = np.atleast_2d(users).astype(np.float64)
        if raw.shape[1] != N_FEATURES:
            raise ValueError(
                f"users array must be (n, {N_FEATURES}) raw features in spec order, got {raw.shape}"
            )
        return raw
    if not hasattr(users, "columns"):  # records: snapshot rows carry user_id and maybe more, like the frame
        users = pd.DataFrame.from_records(list(users))
    return raw_matrix(users)


class CoachingEnv(gym.Env):
    """
    ## Description

    A FinCoach user over twelve weeks. Each step is one week: income arrives, the user spends, and the
    agent picks one coaching nudge from the action catalog (`fincoach.actions.ACTIONS`). Whether the user
    sees and accepts the nudge depends on latent traits (receptiveness per action type, fatigue from
    recent nudges, impulsivity, app engagement) and on how relevant the nudge is to their situation;
    accepting changes behaviour (a transfer to savings, an extra debt payment, spending less). The
    dynamics are in `training.simulator`. Each episode starts from one row of a feature snapshot.

    ## Action Space

    `Discrete(N_ACTIONS)`: the stable action ids of the catalog.

    | id | type                 | target      | amount | urgency |
    |----|----------------------|-------------|--------|---------|
    | 0  | NO_ACTION            | none        | 0      | low     |
    | 1  | SAVE_MORE            | savings     | 25     | low     |
    | 2  | SAVE_MORE            | savings     | 100    | medium  |
    | 3  | REDUCE_SPENDING      | dining      | 50     | medium  |
    | 4  | REDUCE_SPENDING      | shopping    | 50     | medium  |
    | 5  | PAY_DEBT_EXTRA       | highest_apr | 100    | high    |
    | 6  | BUILD_EMERGENCY_FUND | savings     | 50     | high    |
    | 7  | SET_GOAL             | none        | 0      | low     |
    | 8  | REVIEW_BUDGET        | all         | 0      | low     |
    | 9  | INVEST               | investments | 100    | low     |

    An action that `fincoach.actions.action_mask` does not allow for the user (paying debt one does not
    have, a goal when one is active, investing without a buffer or with costly debt) is carried out as
    NO_ACTION and costs a small penalty. `info["action_mask"]` gives the allowed actions of the current
    observation.

    ## Observation Space

    `Box(-clip, clip, (N_FEATURES,), float32)`: `fincoach.feature_spec.normalise` of the user's raw
    features, the exact transform used to serve real users (clip is 5 for every feature today).

    | index | name                    | raw unit / transform       | min | max |
    |-------|-------------------------|----------------------------|-----|-----|
    | 0     | monthly_income          | currency, log1p / 10       | -5  | 5   |
    | 1     | monthly_spend           | currency, log1p / 10       | -5  | 5   |
    | 2     | savings_rate            | ratio in [-1, 1]           | -5  | 5   |
    | 3     | essential_share         | share of spend             | -5  | 5   |
    | 4     | discretionary_share     | share of spend             | -5  | 5   |
    | 5     | spending_volatility     | coefficient of var. / 2    | -5  | 5   |
    | 6     | impulse_share           | share of spend             | -5  | 5   |
    | 7     | checking_balance        | currency, log1p / 10       | -5  | 5   |
    | 8     | savings_balance         | currency, log1p / 10       | -5  | 5   |
    | 9     | emergency_fund_months   | months / 6                 | -5  | 5   |
    | 10    | debt_total              | currency, log1p / 10       | -5  | 5   |
    | 11    | debt_to_income          | ratio                      | -5  | 5   |
    | 12    | max_debt_apr            | APR / 0.3                  | -5  | 5   |
    | 13    | goal_progress           | share of target            | -5  | 5   |
    | 14    | has_active_goal         | 0 / 1                      | -5  | 5   |
    | 15    | sessions_30d            | count, log1p / 4           | -5  | 5   |
    | 16    | days_since_last_session | days / 30                  | -5  | 5   |
    | 17    | nudge_acceptance_rate   | share                      | -5  | 5   |
    | 18    | age                     | years / 50                 | -5  | 5   |

    ## Rewards

    Reward is the lift over not coaching: the simulator runs an untreated twin of the user (same row,
    same seed, never nudged) and the financial components are the user's change minus the twin's.
    The twin does not depend on the policy, so this shifts every policy's return by the same amount
    (a policy that never nudges scores 0) and removes most of the noise. The reward is the sum of five
    clipped components (each in `info["reward_components"]`), so it lies in `[REWARD_MIN, REWARD_MAX]`
    = [-2.25, 1.7]:

    - `health` in [-1, 1]: lift in effective net worth (holdings plus two years of the interest they
      earn, minus debt plus two years of the interest it costs) over the user's weekly income;
    - `goal` in [-0.5, 0.5]: 2 x lift in (emergency-buffer score 1 - exp(-savings / 1.5 months of
      spending) + progress of the active goal);
    - `fatigue` in [-0.5, 0]: -0.005 x accumulated nudge fatigue, whenever a nudge is shown;
    - `overdraft` in [-0.2, 0.2]: -0.2 x (user overdrawn this week - twin overdrawn this week), on top
      of the fee that `health` already counts;
    - `invalid` in [-0.05, 0]: -0.05 for an action the mask does not allow.

    ## Starting State

    A user drawn uniformly from the snapshot (or `options["user_index"]`), with latent traits and every
    weekly shock drawn from a seed taken from `self.np_random`. Ratios such as the emergency fund are
    recomputed from the row's balances, so the first observation can differ slightly from the row.

    ## Episode End

    Never terminated (the user's finances go on); truncated after `horizon` weeks (12 by default).

    ## Arguments

    `CoachingEnv(config)` with `config` a mapping (RLlib passes its `env_config` this way), or keywords:

    - `users` (required): the snapshot, a DataFrame or list of mappings with every feature of the spec,
      or an `(n, N_FEATURES)` array of raw features in spec order;
    - `horizon` (default 12): weeks per episode;
    - `seed` (default None): seed of the first `reset()` without one (RLlib's `worker_index` and
      `vector_index` are added, so parallel copies differ).
    """

    metadata = {"render_modes": []}

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any):
        cfg = {**(dict(config) if config else {}), **kwargs}
        if "users" not in cfg:
            raise ValueError("CoachingEnv needs `users`: the feature snapshot to draw simulated users from")
        self._users = _users_matrix(cfg["users"])
        if len(self._users) == 0:
            raise ValueError("CoachingEnv needs at least one user in `users`")
        self.horizon = int(cfg.get("horizon", HORIZON))
        seed = cfg.get("seed")
        offset = int(getattr(config, "worker_index", 0)) * 1000 + int(getattr(config, "vector_index", 0))
        self._first_seed = None if seed is None else int(seed) + offset
        self.observation_space = gym.spaces.Box(_OBS_LOW, _OBS_HIGH, dtype=np.float32)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self.reward_bounds = (REWARD_MIN, REWARD_MAX)
        self.sim: Simulator | None = None

    def _observation(self) -> tuple[np.ndarray, np.ndarray]:
        raw = self.sim.raw_features()
        return normalise(raw)[0], action_mask(raw)[0]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        """Start a new user: a snapshot row and a fresh draw of traits and weekly shocks."""
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        super().reset(seed=seed)
        options = options or {}
        index = (
            int(options["user_index"])
            if "user_index" in options
            else int(self.np_random.integers(len(self._users)))
        )
        user_seed = int(self.np_random.integers(0, 2**62))
        self.sim = Simulator(self._users[index : index + 1], [user_seed], self.horizon)
        obs, mask = self._observation()
        return obs, {"action_mask": mask, "user_index": index}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        """One week with `action` shown to the user."""
        if self.sim is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {N_ACTIONS}), got {action!r}")
        result = self.sim.step([int(action)])
        obs, mask = self._observation()
        info = {
            "action_mask": mask,
            "executed_action": int(result.executed[0]),
            "invalid_action": bool(result.invalid[0]),
            "accepted": bool(result.accepted[0]),
            "action_type": ACTIONS[int(result.executed[0])].type,
            "reward_components": {k: float(v[0]) for k, v in result.components.items()},
            "flows": {k: float(v[0]) for k, v in result.flows.items()},
            "week": self.sim.t,
        }
        return obs, float(result.reward[0]), False, self.sim.done, info
