"""The vector env: next-step autoreset as gymnasium 1.x defines it, and the same users as one at a time."""

import gymnasium as gym
import numpy as np
import pytest

from fincoach.actions import N_ACTIONS, NO_ACTION
from fincoach.feature_spec import FEATURE_NAMES, normalise, raw_matrix
from training.sample_users import sample_snapshot
from training.simulator import Simulator
from training.vector_env import VectorCoachingEnv, make_rllib_env_config, rllib_env_creator


@pytest.fixture(scope="module")
def users():
    return sample_snapshot(200, 3)


def test_spaces_and_autoreset_metadata_follow_gymnasium(users):
    env = VectorCoachingEnv(users=users, num_envs=8, seed=0)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert env.single_action_space == gym.spaces.Discrete(N_ACTIONS)
    obs, info = env.reset(seed=0)
    assert obs.shape == (8, *env.single_observation_space.shape) and env.observation_space.contains(obs)
    assert info["action_mask"].shape == (8, N_ACTIONS)


def test_the_step_after_an_episode_ends_resets_that_sub_env_with_zero_reward(users):
    env = VectorCoachingEnv(users=users, num_envs=16, horizon=3, seed=1)
    env.reset(seed=1)
    ended_before = np.zeros(16, dtype=bool)
    for _ in range(10):
        obs, reward, terminated, truncated, info = env.step(np.full(16, 2))
        assert not (terminated & truncated).any()
        if ended_before.any():  # reset step: first observation, no reward, no flags
            assert (reward[ended_before] == 0).all()
            assert not terminated[ended_before].any() and not truncated[ended_before].any()
            np.testing.assert_array_equal(env.sim.week[:16][ended_before], 0)
        ended = terminated | truncated
        if ended.any():
            assert set(info["_episode_health"]) <= {True, False}
            np.testing.assert_array_equal(info["_episode_health"], ended)
        ended_before = ended
    assert env.observation_space.contains(obs)


def test_rewards_of_a_vector_run_stay_in_bounds_and_masked_actions_are_never_executed(users):
    env = VectorCoachingEnv(users=users, num_envs=64, seed=2, reward_weights="churn=2,engagement=0.5")
    lo, hi = env.reward_bounds
    _, info = env.reset(seed=2)
    rng = np.random.default_rng(2)
    for _ in range(30):
        actions = rng.integers(0, N_ACTIONS, 64)
        allowed = info["action_mask"][np.arange(64), actions]
        _, reward, *_, info = env.step(actions)
        assert ((reward >= lo) & (reward <= hi)).all() and np.isfinite(reward).all()
        assert allowed.any()


def test_a_user_in_a_batch_lives_exactly_as_when_simulated_alone(users):
    raw, seeds = raw_matrix(users)[:20], np.arange(100, 120)
    batch = Simulator(raw, seeds, market_seed=5, start_day=40)
    alone = Simulator(raw[7:8], seeds[7:8], market_seed=5, start_day=40)
    actions = np.random.default_rng(0).integers(0, N_ACTIONS, (12, 20))
    for week in range(12):
        rb, ra = batch.step(actions[week]), alone.step(actions[week, 7:8])
        np.testing.assert_allclose(batch.raw_features()[7], alone.raw_features()[0], rtol=1e-12)
        assert rb.reward[7] == pytest.approx(ra.reward[0], abs=1e-12)


def test_reset_rows_leave_the_other_users_untouched(users):
    raw, seeds = raw_matrix(users)[:10], np.arange(10)
    a, b = Simulator(raw, seeds), Simulator(raw, seeds)
    a.step(np.full(10, 1))
    b.step(np.full(10, 1))
    a.reset_rows(np.array([3]), raw[5:6], np.array([99]))
    active = np.ones(10, dtype=bool)
    active[3] = False
    ra, rb = a.step(np.full(10, 2), active=active), b.step(np.full(10, 2))
    others = np.arange(10) != 3
    np.testing.assert_array_equal(a.raw_features()[others], b.raw_features()[others])
    np.testing.assert_array_equal(ra.reward[others], rb.reward[others])
    assert ra.reward[3] == 0 and a.week[3] == 0 and ra.executed[3] == NO_ACTION
    # the new user starts like a fresh simulation of that user; the market is the run's, not theirs
    own = [j for j, name in enumerate(FEATURE_NAMES) if not name.startswith("market_")]
    fresh = Simulator(raw[5:6], [99]).raw_features()
    np.testing.assert_array_equal(normalise(a.raw_features()[3:4])[:, own], normalise(fresh)[:, own])


def test_rllib_creator_builds_the_vector_env_only_when_asked_for_num_envs(users):
    config = make_rllib_env_config(users, horizon=4)
    assert isinstance(rllib_env_creator({**config, "num_envs": 3}), VectorCoachingEnv)
    assert not isinstance(rllib_env_creator(config), gym.vector.VectorEnv)


def test_gymnasium_vector_wrappers_accept_the_vector_env(users):
    from gymnasium.wrappers.vector import DictInfoToList, RecordEpisodeStatistics

    env = DictInfoToList(RecordEpisodeStatistics(VectorCoachingEnv(users=users, num_envs=8, horizon=2, seed=5)))
    _, infos = env.reset(seed=5)
    assert len(infos) == 8 and infos[0]["action_mask"].shape == (N_ACTIONS,)
    finished = []
    for _ in range(6):
        _, _, terminated, truncated, infos = env.step(np.full(8, 8))
        finished += [i for i in infos if "episode" in i]
    assert finished and all("episode_health" in i and i["episode"]["l"] >= 1 for i in finished)


def test_with_action_masking_the_vector_env_emits_the_dict_observation_of_masked_observation(users):
    config = make_rllib_env_config(users, horizon=3, action_masking=True)
    vector = rllib_env_creator({**config, "num_envs": 4, "seed": 9})
    single = rllib_env_creator(config)
    assert vector.single_observation_space == single.observation_space  # what MaskedDQNTorchRLModule is built on
    obs, infos = vector.reset(seed=9)
    assert vector.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["action_mask"], infos["action_mask"])
    for _ in range(5):
        obs, _, _, _, infos = vector.step(np.full(4, NO_ACTION))
        assert vector.observation_space.contains(obs)
        np.testing.assert_array_equal(obs["action_mask"], infos["action_mask"])
        np.testing.assert_array_equal(obs["observations"], normalise(vector.unwrapped.sim.raw_features())[:4])


def test_the_calibration_in_the_env_config_is_the_simulator_s(users):
    from dataclasses import replace

    from training.sim_params import DEFAULT_PARAMS

    calibrated = replace(DEFAULT_PARAMS, source="calibrated", churn_weekly=0.02)
    config = make_rllib_env_config(users, calibration=calibrated, action_masking=True)
    env = rllib_env_creator({**config, "num_envs": 2})
    env.reset(seed=0)
    assert env.unwrapped.sim.params == calibrated
    assert rllib_env_creator(make_rllib_env_config(users)).params is None  # no calibration: the defaults
