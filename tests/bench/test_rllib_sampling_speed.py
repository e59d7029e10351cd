"""RLlib's env runner sampling from the vector env against gymnasium's SyncVectorEnv of CoachingEnvs.

    PYTHONPATH=$PWD .venv/bin/pytest -q -m bench -s tests/bench/test_rllib_sampling_speed.py

The DQN module picks the actions (epsilon-greedy exploration), so the figures include RLlib's own work
per step (connectors, episode bookkeeping, the forward pass), which the vector env cannot remove.
"""

import time

import pytest

from training.dqn import DQNArgs, build_config
from training.sample_users import sample_snapshot
from training.vector_env import VectorCoachingEnv

pytestmark = pytest.mark.bench
N = 256


def _rate(config) -> tuple[float, str]:
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    runner = SingleAgentEnvRunner(config=config, worker_index=0, num_workers=0)
    runner.sample(num_timesteps=N * 4)  # warm-up
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 8.0:
        steps += sum(len(e) for e in runner.sample(num_timesteps=N * 16))
    kind = type(runner.env.unwrapped).__name__
    runner.stop()
    return steps / (time.perf_counter() - t0), kind


def test_rllib_samples_faster_from_the_vector_env():
    users = sample_snapshot(500, 0)
    vector = build_config(users, DQNArgs(num_envs_per_env_runner=N, rollout_fragment_length=16))
    sync_rate, sync_kind = _rate(vector.copy(copy_frozen=False).env_runners(gym_env_vectorize_mode="sync"))
    vector_rate, vector_kind = _rate(vector)
    assert vector_kind == VectorCoachingEnv.__name__ and sync_kind == "SyncVectorEnv"
    ratio = vector_rate / sync_rate
    print(
        f"\nRLlib env runner, {N} envs: SyncVectorEnv of CoachingEnv {sync_rate:,.0f} env steps/s; "
        f"VectorCoachingEnv {vector_rate:,.0f} env steps/s; ratio {ratio:.1f}x"
    )
    assert ratio >= 3
