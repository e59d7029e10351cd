"""Action masking for RLlib's DQN: the env's `info["action_mask"]` rides along in the observation.

`MaskedObservation` wraps the coaching env (`MaskedVectorObservation` the vector env,
training.vector_env) so each observation is a Dict `{"observations": features, "action_mask": 0/1 per
action}` (batched per key for the vector env). `MaskedDQNTorchRLModule` builds RLlib's default DQN networks on the
features only and sets the Q-value of every masked action to -inf, so masked actions are never
chosen: not greedily, not by epsilon-greedy exploration (RLlib draws random actions among finite Q-values),
and not as the bootstrap action of the (double-Q) target. Fed plain features (no Dict), the module
returns unmasked Q-values: that is the network `training.export` copies, and serving masks with
`fincoach.actions.action_mask` (the same function the env uses) in `fincoach.policy.Policy.act`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector.utils import batch_space
from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS
from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule
from ray.rllib.core.columns import Columns

FEATURES_KEY, MASK_KEY = "observations", "action_mask"


def _masked_space(features: gym.Space, n_actions: int) -> gym.spaces.Dict:
    return gym.spaces.Dict(
        {FEATURES_KEY: features, MASK_KEY: gym.spaces.Box(0.0, 1.0, (n_actions,), np.float32)}
    )


def _with_mask(obs: np.ndarray, info: dict) -> dict:
    return {FEATURES_KEY: obs, MASK_KEY: np.asarray(info["action_mask"], dtype=np.float32)}


class MaskedObservation(gym.Wrapper):
    """Observation = {"observations": the env's observation, "action_mask": info["action_mask"]}."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = _masked_space(env.observation_space, env.action_space.n)

    def reset(self, **kwargs: Any) -> tuple[dict, dict]:
        """Reset the env; the mask of the first observation comes from its info."""
        obs, info = self.env.reset(**kwargs)
        return _with_mask(obs, info), info

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict]:
        """Step the env; the mask of the next observation comes from its info."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return _with_mask(obs, info), reward, terminated, truncated, info


class MaskedVectorObservation(gym.vector.VectorWrapper):
    """MaskedObservation for a vector env: {"observations": (n, features), "action_mask": infos["action_mask"]}."""

    def __init__(self, env: gym.vector.VectorEnv):
        super().__init__(env)
        self.single_observation_space = _masked_space(env.single_observation_space, env.single_action_space.n)
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)

    def reset(self, **kwargs: Any) -> tuple[dict, dict]:
        """Reset every sub-env; the masks of the first observations come from the infos."""
        obs, infos = self.env.reset(**kwargs)
        return _with_mask(obs, infos), infos

    def step(self, actions: Any) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step every sub-env; the masks of the next observations come from the infos."""
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        return _with_mask(obs, infos), rewards, terminated, truncated, infos


class MaskedDQNTorchRLModule(DefaultDQNTorchRLModule):
    """RLlib's default DQN module on the features, with -inf Q-values for masked actions."""

    def __init__(self, *args: Any, observation_space: gym.Space | None = None, **kwargs: Any):
        if isinstance(observation_space, gym.spaces.Dict):  # the networks see the features only
            observation_space = observation_space[FEATURES_KEY]
        super().__init__(*args, observation_space=observation_space, **kwargs)

    def _qf_forward_helper(self, batch: dict, encoder: Any, head: Any) -> dict:
        obs = batch[Columns.OBS]
        if not isinstance(obs, dict):
            return super()._qf_forward_helper(batch, encoder, head)
        out = super()._qf_forward_helper({**batch, Columns.OBS: obs[FEATURES_KEY]}, encoder, head)
        allowed = obs[MASK_KEY] > 0.5
        out[QF_PREDS] = torch.where(allowed, out[QF_PREDS], torch.full_like(out[QF_PREDS], -torch.inf))
        return out
