import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from fincoach.actions import N_ACTIONS, NO_ACTION
from fincoach.feature_spec import normalise, raw_matrix
from fincoach.policy import Policy
from fincoach.rules import RulePolicy
from training.env import CoachingEnv
from training.evaluate import evaluate
from training.sample_users import sample_snapshot
from training.simulator import HORIZON, REWARD_COMPONENTS, REWARD_MAX, REWARD_MIN


@pytest.fixture(scope="module")
def users():
    return sample_snapshot(200, 0)


class RandomPolicy(Policy):
    """Random scores that are a function of the state: the same state always gets the same scores."""

    version = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def action_scores(self, raw):
        key = int(np.abs(raw).sum() * 1000) % (2**32)
        return np.random.default_rng([self.seed, key]).random((len(raw), N_ACTIONS))


class Recording(Policy):
    """Wraps a policy and keeps every batch of raw features it was asked about."""

    def __init__(self, inner):
        self.inner, self.version, self.seen = inner, inner.version, []

    def action_scores(self, raw):
        self.seen.append(raw.copy())
        return self.inner.action_scores(raw)


def test_env_passes_the_gymnasium_checker(users):
    check_env(CoachingEnv({"users": users, "seed": 1}), skip_render_check=True)


def test_reset_with_a_seed_replays_the_same_episode(users):
    def rollout(env):
        obs, _ = env.reset(seed=42)
        trace = [obs]
        for a in [2, 3, 5, 0, 8, 1, 6, 7, 9, 4, 2, 3]:
            obs, reward, *_ = env.step(a)
            trace += [obs, reward]
        return trace

    a, b = rollout(CoachingEnv(users=users)), rollout(CoachingEnv(users=users))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_episode_is_truncated_after_the_horizon_never_terminated(users):
    env = CoachingEnv({"users": users, "horizon": 5})
    env.reset(seed=0)
    for week in range(1, 6):
        obs, reward, terminated, truncated, info = env.step(NO_ACTION)
        assert not terminated
        assert truncated == (week == 5)
        assert info["week"] == week
    assert CoachingEnv(users=users).horizon == HORIZON


def test_observation_is_the_serving_transform_of_the_raw_features(users):
    env = CoachingEnv(users=users)
    obs, info = env.reset(seed=3)
    np.testing.assert_array_equal(obs, normalise(env.sim.raw_features())[0])
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert info["action_mask"].shape == (N_ACTIONS,) and info["action_mask"].dtype == bool


def test_invalid_action_is_played_as_no_action_with_a_penalty(users):
    env = CoachingEnv(users=users)
    index = int(np.flatnonzero(users["debt_total"].to_numpy() <= 0)[0])  # no debt: PAY_DEBT_EXTRA is masked
    _, info = env.reset(seed=5, options={"user_index": index})
    assert not info["action_mask"][5]
    _, reward, _, _, info = env.step(5)
    assert info["invalid_action"] and info["executed_action"] == NO_ACTION and not info["accepted"]
    assert info["reward_components"]["invalid"] < 0
    assert reward == pytest.approx(sum(info["reward_components"].values()))


def test_rewards_are_bounded_over_many_random_episodes(users):
    env = CoachingEnv(users=users, seed=9)
    rewards = []
    for _ in range(200):
        env.reset()
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            rewards.append(reward)
            done = terminated or truncated
    assert min(rewards) >= REWARD_MIN and max(rewards) <= REWARD_MAX
    assert np.isfinite(rewards).all()


def test_env_takes_a_frame_records_or_an_array(users):
    for given in (users, users.to_dict("records"), raw_matrix(users)):
        obs, _ = CoachingEnv(users=given).reset(seed=1, options={"user_index": 7})
        expected, _ = CoachingEnv(users=users).reset(seed=1, options={"user_index": 7})
        np.testing.assert_array_equal(obs, expected)
    with pytest.raises(ValueError, match="users"):
        CoachingEnv({})


def test_evaluating_a_policy_twice_gives_identical_numbers(users):
    assert evaluate(RulePolicy(), users, 150, seed=4) == evaluate(RulePolicy(), users, 150, seed=4)
    assert evaluate(RandomPolicy(), users, 150, seed=4) == evaluate(RandomPolicy(), users, 150, seed=4)


def test_rules_and_random_policy_meet_identical_users(users):
    rules, random = Recording(RulePolicy()), Recording(RandomPolicy())
    evaluate(rules, users, 150, seed=4)
    evaluate(random, users, 150, seed=4)
    np.testing.assert_array_equal(rules.seen[0], random.seen[0])
    assert not np.array_equal(rules.seen[-1], random.seen[-1])  # and then the policies make a difference


def test_evaluation_summary_is_complete(users):
    summary = evaluate(RulePolicy(), users, 100, seed=1)
    assert summary["n_users"] == 100 and summary["horizon"] == HORIZON
    assert set(summary["components"]) == set(REWARD_COMPONENTS)
    assert summary["mean_reward"] == pytest.approx(sum(summary["components"].values()))
    assert sum(summary["action_mix"].values()) == pytest.approx(1.0)
    assert 0.0 <= summary["acceptance_rate"] <= 1.0
    assert summary["stderr_reward"] > 0
    assert summary["components"]["invalid"] == 0.0  # Policy.act never picks a masked action


def test_never_coaching_is_worse_than_the_rules(users):
    class Silent(Policy):
        version = "silent"

        def action_scores(self, raw):
            scores = np.zeros((len(raw), N_ACTIONS))
            scores[:, NO_ACTION] = 1.0
            return scores

    silent = evaluate(Silent(), users, 300, seed=2)
    assert silent["mean_reward"] == 0.0 and silent["nudge_rate"] == 0.0
    assert evaluate(RulePolicy(), users, 300, seed=2)["mean_reward"] > 0.0


def test_docstring_tables_list_every_action_and_feature_of_the_contracts(users):
    from fincoach.actions import ACTIONS
    from fincoach.feature_spec import FEATURES

    doc = CoachingEnv.__doc__
    for section in ("## Description", "## Action Space", "## Observation Space", "## Rewards",
                    "## Starting State", "## Episode End", "## Arguments"):
        assert section in doc
    for a in ACTIONS:
        assert f"| {a.id} | {a.type} | {a.family} |" in doc
    for j, f in enumerate(FEATURES):
        assert f"| {j} | {f.name} |" in doc


def test_every_episode_reports_each_reward_component(users):
    env = CoachingEnv(users=users, seed=3)
    for _ in range(20):
        env.reset()
        total, done = {k: 0.0 for k in REWARD_COMPONENTS}, False
        while not done:
            _, _, terminated, truncated, info = env.step(2)
            for k, v in info["reward_components"].items():
                total[k] += v
            done = terminated or truncated
        assert info["episode_components"] == pytest.approx(total)


def test_reward_weights_come_from_the_setting_and_the_env_config_overrides_them(users, monkeypatch):
    from fincoach.settings import reload_settings
    from training.reward import RewardWeightsError, bounds, parse_weights

    monkeypatch.setenv("FINCOACH_REWARD_WEIGHTS", '{"churn": 3, "invalid": 0}')
    reload_settings()
    try:
        env = CoachingEnv(users=users)
        assert env.weights["churn"] == 3 and env.weights["invalid"] == 0 and env.weights["health"] == 1
        assert env.reward_bounds == bounds(env.weights)
        index = int(np.flatnonzero(users["debt_total"].to_numpy() <= 0)[0])
        env.reset(seed=5, options={"user_index": index})
        _, reward, *_ = env.step(5)  # invalid, but weighted 0
        assert reward == pytest.approx(0.0)
        assert CoachingEnv(users=users, reward_weights="churn=0.5").weights["churn"] == 0.5
    finally:
        monkeypatch.undo()
        reload_settings()
    assert parse_weights("health=2, goal=0.5")["goal"] == 0.5
    for bad in ("shoe=1", "health=-1", "health=x", "{bad json", "health"):
        with pytest.raises(RewardWeightsError):
            parse_weights(bad)


def test_a_user_who_leaves_the_app_ends_the_episode(users):
    env = CoachingEnv(users=users, seed=11)
    for _ in range(200):  # nudged every week, about one user in ten leaves within twelve weeks
        env.reset()
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(2)
            done = terminated or truncated
        assert terminated == info["churned"] and not (terminated and truncated)
        if terminated:
            assert info["reward_components"]["churn"] < 0 and info["week"] <= env.horizon
            break
    assert terminated, "nobody left the app"


def test_a_calibration_passed_in_the_env_config_drives_the_simulator(users):
    from dataclasses import replace

    from fincoach.actions import ACTION_TYPES
    from training.sim_params import DEFAULT_PARAMS, SimParams

    reluctant = replace(DEFAULT_PARAMS, source="test", response_logit=dict.fromkeys(ACTION_TYPES, -6.0))
    eager = replace(DEFAULT_PARAMS, source="test", response_logit=dict.fromkeys(ACTION_TYPES, 3.0))

    def acceptance(params: SimParams) -> float:
        env = CoachingEnv(users=users, seed=4, sim_params=params.to_dict())
        accepted = []
        for _ in range(30):
            env.reset()
            assert env.sim.params == params
            for _ in range(4):
                accepted.append(env.step(8)[4]["accepted"])
        return float(np.mean(accepted))

    assert acceptance(reluctant) < 0.02 < 0.3 < acceptance(eager)
