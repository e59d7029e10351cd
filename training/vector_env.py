"""The coaching environment vectorised: N simulated users stepped at once by one numpy simulator.

`VectorCoachingEnv` is a `gymnasium.vector.VectorEnv` with gymnasium 1.x next-step autoreset: the step
after a sub-environment terminated (its user churned) or was truncated (horizon reached) resets it and
returns its first observation with reward 0 and neither flag set. Observations, masks and rewards are
exactly those of `CoachingEnv` for the same user, seed, market and calendar (same simulator).

RLlib: `rllib_env_creator` builds the vector env when RLlib asks for a vector entry point (it passes
`num_envs`) and the single env otherwise. RLlib's SingleAgentEnvRunner registers a *registered* env name
with gymnasium including a `vector_entry_point`, and `gym_env_vectorize_mode="vector_entry_point"` makes
`gym.make_vec` call it: `with_vector_env(config, users, num_envs)` registers the creator
(`register_rllib_env`) and sets both on an AlgorithmConfig; `training.dqn.build_config` trains this way,
with `action_masking=True` (Dict observations with the mask, training.masked_q).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from fincoach.actions import N_ACTIONS, action_mask
from fincoach.feature_spec import normalise
from training import reward as rw
from training.env import OBS_HIGH, OBS_LOW, CoachingEnv, sim_params, users_matrix
from training.simulator import HORIZON, Simulator

VECTORIZE_MODE = "vector_entry_point"
RLLIB_ENV_NAME = "fincoach-coaching"  # the name registered with RLlib by register_rllib_env


class VectorCoachingEnv(gym.vector.VectorEnv):
    """`num_envs` FinCoach users in one vectorised simulator (same arguments as CoachingEnv, plus num_envs).

    `infos` hold `action_mask` (num_envs, N_ACTIONS) and, for sub-envs whose episode ended this step,
    `episode_<component>` (the episode's sum of each reward component) with gymnasium's `_<key>` masks.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, config: Mapping[str, Any] | None = None, **kwargs: Any):
        cfg = {**(dict(config) if config else {}), **kwargs}
        if "users" not in cfg:
            raise ValueError(
                "VectorCoachingEnv needs `users`: the feature snapshot to draw simulated users from"
            )
        self._users = users_matrix(cfg["users"])
        if len(self._users) == 0:
            raise ValueError("VectorCoachingEnv needs at least one user in `users`")
        self.num_envs = int(cfg.get("num_envs", 1))
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {self.num_envs}")
        self.horizon = int(cfg.get("horizon", HORIZON))
        self.weights = rw.resolve_weights(cfg.get("reward_weights"))
        self.params = sim_params(cfg.get("sim_params"))
        seed = cfg.get("seed")
        offset = int(cfg.get("worker_index", getattr(config, "worker_index", 0))) * 1000
        self._first_seed = None if seed is None else int(seed) + offset
        self.single_observation_space = gym.spaces.Box(OBS_LOW, OBS_HIGH, dtype=np.float32)
        self.single_action_space = gym.spaces.Discrete(N_ACTIONS)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.reward_bounds = rw.bounds(self.weights)
        self.sim: Simulator | None = None
        self._rng = np.random.default_rng()
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._episode = {k: np.zeros(self.num_envs) for k in rw.REWARD_COMPONENTS}

    def _draw_users(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rng.integers(len(self._users), size=k)
        return self._users[rows], self._rng.integers(0, 2**62, size=k)

    def _observe(self) -> tuple[np.ndarray, np.ndarray]:
        raw = self.sim.raw_features()
        return normalise(raw), action_mask(raw)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        """Every sub-env starts a new user; a market path and calendar start are drawn for the run."""
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        raw, seeds = self._draw_users(self.num_envs)
        market_seed, day = (int(x) for x in self._rng.integers(0, 2**62, 2))
        self.sim = Simulator(
            raw,
            seeds,
            self.horizon,
            params=self.params,
            market_seed=market_seed,
            start_day=day % 365,
            reward_weights=self.weights,
        )
        self._autoreset[:] = False
        for v in self._episode.values():
            v[:] = 0.0
        obs, mask = self._observe()
        return obs, {"action_mask": mask}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """One week for every sub-env; those that ended last step are reset instead (next-step autoreset)."""
        if self.sim is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        if len(actions) != self.num_envs or (actions < 0).any() or (actions >= N_ACTIONS).any():
            raise ValueError(f"expected {self.num_envs} action ids in [0, {N_ACTIONS}), got {actions!r}")
        restart = np.flatnonzero(self._autoreset)
        if len(restart):
            self.sim.reset_rows(restart, *self._draw_users(len(restart)))
            for v in self._episode.values():
                v[restart] = 0.0
        stepped = ~self._autoreset
        result = self.sim.step(actions, active=stepped)
        week = self.sim.week[: self.num_envs]
        terminated = result.churned & stepped
        truncated = (week >= self.horizon) & stepped & ~terminated
        ended = terminated | truncated
        infos: dict[str, Any] = {}
        for k, v in result.components.items():
            self._episode[k] += v
            if ended.any():
                infos[f"episode_{k}"] = np.where(ended, self._episode[k], 0.0)
                infos[f"_episode_{k}"] = ended.copy()
        self._autoreset = ended
        obs, mask = self._observe()
        infos["action_mask"] = mask
        return obs, result.reward.astype(np.float64), terminated, truncated, infos


def rllib_env_creator(config: Mapping[str, Any]) -> gym.Env | gym.vector.VectorEnv:
    """RLlib env creator: the vector env when RLlib passes `num_envs` (vector entry point), else one env.

    With `action_masking` in the config, observations are Dicts carrying the action mask
    (training.masked_q: MaskedVectorObservation, MaskedObservation), as MaskedDQNTorchRLModule expects.
    """
    masked = bool(config.get("action_masking", False))
    if masked:
        from training.masked_q import MaskedObservation, MaskedVectorObservation
    if "num_envs" in config:
        env = VectorCoachingEnv(config)
        return MaskedVectorObservation(env) if masked else env
    single = CoachingEnv(config)
    return MaskedObservation(single) if masked else single


def make_rllib_env_config(
    users: Any,
    horizon: int = HORIZON,
    reward_weights: str | Mapping[str, float] | None = None,
    calibration: Any = None,
    action_masking: bool = False,
) -> dict:
    """The env_config of the coaching env for RLlib (raw users, horizon, weights, SimParams dict, masking)."""
    params = sim_params(calibration)
    return {
        "users": users_matrix(users),
        "horizon": horizon,
        "reward_weights": reward_weights,
        "sim_params": None if params is None else params.to_dict(),
        "action_masking": action_masking,
    }


def register_rllib_env() -> str:
    """Register `rllib_env_creator` with RLlib under RLLIB_ENV_NAME (idempotent); the name."""
    from ray.tune.registry import register_env

    register_env(RLLIB_ENV_NAME, rllib_env_creator)
    return RLLIB_ENV_NAME


def with_vector_env(algo_config: Any, users: Any, num_envs: int, **env_kwargs: Any) -> Any:
    """`algo_config` (an RLlib AlgorithmConfig) sampling from VectorCoachingEnv with `num_envs` users."""
    return algo_config.environment(
        register_rllib_env(), env_config=make_rllib_env_config(users, **env_kwargs)
    ).env_runners(num_envs_per_env_runner=num_envs, gym_env_vectorize_mode=VECTORIZE_MODE)
