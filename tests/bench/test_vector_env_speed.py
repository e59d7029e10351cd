"""Env steps per second: the vector env at N = 4096 against the same simulator one user at a time.

    PYTHONPATH=$PWD .venv/bin/pytest -q -m bench -s tests/bench/test_vector_env_speed.py
"""

import time

import numpy as np
import pytest

from fincoach.actions import N_ACTIONS
from training.env import CoachingEnv
from training.sample_users import sample_snapshot
from training.vector_env import VectorCoachingEnv

pytestmark = pytest.mark.bench
N = 4096


def _random_allowed(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    return (rng.random(mask.shape) * mask).argmax(axis=1)


def test_vector_env_is_at_least_100_times_faster_than_one_user_at_a_time():
    users = sample_snapshot(2000, 0)
    rng = np.random.default_rng(0)

    single = CoachingEnv(users=users, seed=0)
    _, info = single.reset()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 5.0:
        action = int(_random_allowed(rng, info["action_mask"][None, :])[0])
        _, _, terminated, truncated, info = single.step(action)
        steps += 1
        if terminated or truncated:
            _, info = single.reset()
    single_rate = steps / (time.perf_counter() - t0)

    vector = VectorCoachingEnv(users=users, num_envs=N, seed=0)
    _, info = vector.reset(seed=0)
    vector.step(_random_allowed(rng, info["action_mask"]))  # warm-up
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 5.0:
        _, _, _, _, info = vector.step(_random_allowed(rng, info["action_mask"]))
        steps += N
    vector_rate = steps / (time.perf_counter() - t0)

    ratio = vector_rate / single_rate
    print(
        f"\nsingle CoachingEnv: {single_rate:,.0f} env steps/s; VectorCoachingEnv N={N}: "
        f"{vector_rate:,.0f} env steps/s; ratio {ratio:,.0f}x ({N_ACTIONS} actions)"
    )
    assert ratio >= 100
