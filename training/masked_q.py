"""Action masking for RLlib's DQN: the env's `info["action_mask"]` rides along in the observation.

`MaskedObservation` wraps the coaching env so each observation is a Dict `{"observations": features,
"action_mask": 0/1 per action}`. `MaskedDQNTorchRLModule` builds RLlib's default DQN networks on the
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
from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS
from ray.rllib.algorithms.dqn.torch.default_dqn_torch_rl_module import DefaultDQNTorchRLModule
from ray.rllib.core.columns import Columns

FEATURES_KEY, MASK_KEY = "observations", "action_mask"


class MaskedObservation(gym.Wrapper):
    """Observation = {"observations": the env's observation, "action_mask": info["action_mask"]}."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        n = env.action_space.n
        self.observation_space = gym.spaces.Dict(
            {FEATURES_KEY: env.observation_space, MASK_KEY: gym.spaces.Box(0.0, 1.0, (n,), np.float32)}
        )

    def _wrap(self, obs: np.ndarray, info: dict) -> dict:
        return {FEATURES_KEY: obs, MASK_KEY: np.asarray(info["action_mask"], dtype=np.float32)}

    def reset(self, **kwargs: Any) -> tuple[dict, dict]:
        """Reset the env; the mask of the first observation comes from its info."""
        obs, info = self.env.reset(**kwargs)
        return self._wrap(obs, info), info

    def step(self, action: int) -> tuple[dict, float, bool, bool, dict]:
        """Step the env; the mask of the next observation comes from its info."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._wrap(obs, info), reward, terminated, truncated, info


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
