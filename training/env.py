"""The coaching environment: one simulated user, one coaching action a week (gymnasium API).

The class docstring's action and observation tables are generated at import from the action catalog and
the feature spec in force, so they never go stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from fincoach.actions import ACTIONS, N_ACTIONS, action_mask
from fincoach.feature_spec import FEATURES, N_FEATURES, normalise, raw_matrix
from training import reward as rw
from training.sim_features import FORMULAS
from training.sim_params import SimParams
from training.simulator import HORIZON, Simulator

OBS_LOW = np.array([-f.clip for f in FEATURES], dtype=np.float32)
OBS_HIGH = np.array([f.clip for f in FEATURES], dtype=np.float32)


def users_matrix(users: Any) -> np.ndarray:
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


def sim_params(value: Any) -> SimParams | None:
    """SimParams from an env config value: None, a SimParams or its dict."""
    if value is None or isinstance(value, SimParams):
        return value
    return SimParams.from_dict(dict(value))


def _action_table() -> str:
    rows = ["| id | type | family | target | amount | bucket | urgency |", "|----|---|---|---|---|---|---|"]
    rows += [
        f"| {a.id} | {a.type} | {a.family} | {a.category} | {a.amount:g} | {a.amount_bucket} | {a.urgency} |"
        for a in ACTIONS
    ]
    return "\n    ".join(rows)


def _observation_table() -> str:
    rows = [
        "| index | name | raw meaning | transform | min | max | in the simulator |",
        "|---|---|---|---|---|---|---|",
    ]
    for j, f in enumerate(FEATURES):
        how = "rebuilt each week" if f.name in FORMULAS else "starting value, carried"
        transform = f"{f.transform} / {f.scale:g}"
        rows.append(f"| {j} | {f.name} | {f.description} | {transform} | {-f.clip:g} | {f.clip:g} | {how} |")
    return "\n    ".join(rows)


def _reward_table() -> str:
    return "\n    ".join(f"- `{k}` in [{lo:g}, {hi:g}]" for k, (lo, hi) in rw.REWARD_CLIPS.items())


class CoachingEnv(gym.Env):
    """
    ## Description

    A FinCoach user over twelve weeks. Each step is one week: income arrives, the user spends, and the
    agent picks one coaching nudge from the action catalog (`fincoach.actions.ACTIONS`). Whether the user
    sees and accepts it depends on latent traits (receptiveness per action type, fatigue from recent
    nudges, impulsivity, app engagement, churn risk) and on how relevant it is to their situation;
    accepting changes behaviour. Market conditions (interest and inflation regime, equity returns) are an
    exogenous process shared by every user of a run. Dynamics: `training.simulator`.

    ## Action Space

    `Discrete(N_ACTIONS)`: the stable ids of the action catalog.

    {actions}

    An action `fincoach.actions.action_mask` does not allow for the user is carried out as NO_ACTION and
    costs the `invalid` penalty; `info["action_mask"]` gives the allowed actions of the observation.

    ## Observation Space

    `Box(-clip, clip, (N_FEATURES,), float32)`: `fincoach.feature_spec.normalise` of the user's raw
    features, the exact transform used to serve real users. The simulator rebuilds every feature with a
    formula (`training.sim_features.FORMULAS`) and carries the others at their starting value.

    {observations}

    ## Rewards

    A vector of components (each step's values in `info["reward_components"]`, the episode's sums in
    `info["episode_components"]` at its last step), scalarised with non-negative weights
    (`FINCOACH_REWARD_WEIGHTS` or `reward_weights`, all 1 by default); `reward_bounds` is the range.
    Financial components are lifts over an untreated twin of the user (same row and luck, never nudged):
    a policy that never nudges scores 0. See `training.reward`.

    {rewards}

    ## Starting State

    A user drawn uniformly from the snapshot (or `options["user_index"]`), with latent traits and weekly
    luck from a seed taken from `self.np_random`, a market path and a calendar start from it too.

    ## Episode End

    Terminated when the user leaves the app (churn: absorbing, nothing can reach them any more);
    truncated after `horizon` weeks (12 by default).

    ## Arguments

    `CoachingEnv(config)` with `config` a mapping (RLlib passes its `env_config` this way), or keywords:

    - `users` (required): the snapshot, a DataFrame or list of mappings with every feature of the spec,
      or an `(n, N_FEATURES)` array of raw features in spec order;
    - `horizon` (default 12): weeks per episode;
    - `seed` (default None): seed of the first `reset()` without one (RLlib's `worker_index` and
      `vector_index` are added, so parallel copies differ);
    - `reward_weights` (default: the setting): JSON, `k=v,...` or a mapping of component weights;
    - `sim_params` (default: `training.sim_params.DEFAULT_PARAMS`): a calibration (SimParams or its dict).
    """

    metadata = {"render_modes": []}

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any):
        cfg = {**(dict(config) if config else {}), **kwargs}
        if "users" not in cfg:
            raise ValueError("CoachingEnv needs `users`: the feature snapshot to draw simulated users from")
        self._users = users_matrix(cfg["users"])
        if len(self._users) == 0:
            raise ValueError("CoachingEnv needs at least one user in `users`")
        self.horizon = int(cfg.get("horizon", HORIZON))
        self.weights = rw.resolve_weights(cfg.get("reward_weights"))
        self.params = sim_params(cfg.get("sim_params"))
        seed = cfg.get("seed")
        offset = int(getattr(config, "worker_index", 0)) * 1000 + int(getattr(config, "vector_index", 0))
        self._first_seed = None if seed is None else int(seed) + offset
        self.observation_space = gym.spaces.Box(OBS_LOW, OBS_HIGH, dtype=np.float32)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self.reward_bounds = rw.bounds(self.weights)
        self.reward_range = self.reward_bounds
        self.sim: Simulator | None = None
        self._episode: dict[str, float] = {}

    def _observation(self) -> tuple[np.ndarray, np.ndarray]:
        raw = self.sim.raw_features()
        return normalise(raw)[0], action_mask(raw)[0]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        """Start a new user: a snapshot row and a fresh draw of traits, luck, market and calendar."""
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        super().reset(seed=seed)
        options = options or {}
        if "user_index" in options:
            index = int(options["user_index"])
        else:
            index = int(self.np_random.integers(len(self._users)))
        user_seed, market_seed, day = (int(x) for x in self.np_random.integers(0, 2**62, 3))
        self.sim = Simulator(
            self._users[index : index + 1],
            [user_seed],
            self.horizon,
            params=self.params,
            market_seed=market_seed,
            start_day=day % 365,
            reward_weights=self.weights,
        )
        self._episode = dict.fromkeys(rw.REWARD_COMPONENTS, 0.0)
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
        components = {k: float(v[0]) for k, v in result.components.items()}
        for k, v in components.items():
            self._episode[k] += v
        terminated, truncated = bool(result.churned[0]), self.sim.done and not bool(result.churned[0])
        info = {
            "action_mask": mask,
            "executed_action": int(result.executed[0]),
            "invalid_action": bool(result.invalid[0]),
            "accepted": bool(result.accepted[0]),
            "churned": terminated,
            "action_type": ACTIONS[int(result.executed[0])].type,
            "reward_components": components,
            "flows": {k: float(v[0]) for k, v in result.flows.items()},
            "week": self.sim.t,
        }
        if terminated or truncated:
            info["episode_components"] = dict(self._episode)
        return obs, float(result.reward[0]), terminated, truncated, info


CoachingEnv.__doc__ = (
    CoachingEnv.__doc__.replace("{actions}", _action_table())
    .replace("{observations}", _observation_table())
    .replace("{rewards}", _reward_table())
)
