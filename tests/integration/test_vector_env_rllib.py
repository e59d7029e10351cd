"""RLlib's env runner samples from the vectorised simulator (build_config): a tiny real DQN training run."""

import numpy as np
import pytest

from fincoach.actions import N_ACTIONS
from training.dqn import DQNArgs, build_config
from training.export import rlmodule_q_values
from training.masked_q import MASK_KEY, MaskedVectorObservation
from training.sample_users import sample_snapshot
from training.vector_env import VectorCoachingEnv

pytestmark = pytest.mark.slow


def test_rllib_dqn_trains_on_the_vector_env():
    import ray
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    users = sample_snapshot(200, 4)
    args = DQNArgs(
        total_timesteps=1500,
        num_steps_sampled_before_learning_starts=256,
        rollout_fragment_length=4,
        num_envs_per_env_runner=64,
        horizon=6,
    )
    config = build_config(users, args)
    ray.init(num_cpus=1, include_dashboard=False, ignore_reinit_error=True)
    algo = None
    try:
        algo = config.build_algo()
        runner = algo.env_runner
        assert isinstance(runner.env.unwrapped, VectorCoachingEnv) and runner.num_envs == 64
        assert isinstance(runner.env.env, MaskedVectorObservation)  # the mask rides in the observation
        assert MASK_KEY in runner.env.single_observation_space.spaces
        steps, iterations = 0, 0
        while steps < args.total_timesteps:
            result = algo.train()
            steps = int(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME])
            iterations += 1
        assert iterations >= 2 and steps >= 1500
        assert np.isfinite(result[ENV_RUNNER_RESULTS]["episode_return_mean"])
        obs = runner.env.unwrapped._observe()[0][:8]
        q = rlmodule_q_values(algo.get_module(), obs)  # the trained module scores every catalog action
        assert q.shape == (8, N_ACTIONS) and np.isfinite(q).all()
    finally:
        if algo is not None:
            algo.stop()
        ray.shutdown()
