"""Benchmarks of issue 6: DQN throughput and wall time to beat the rules, the full evaluation, inference.

Run: `PYTHONPATH=$PWD .venv/bin/pytest -q -m bench tests/bench/test_training_bench.py -s`. Each prints its
figures with a baseline measured in the same run (RLlib's default DQN; the rules policy; batch of one).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from fincoach.feature_spec import raw_matrix
from fincoach.policy import ExportedPolicy
from fincoach.rules import RulePolicy
from training import ope
from training.bandits import LinUCBPolicy, RandomPolicy, ThompsonPolicy, fit_bandit
from training.dqn import DQNArgs, train_dqn
from training.evaluate import evaluate_all
from training.export import extract_q_network
from training.sample_users import sample_snapshot
from training.vector_env import rllib_env_creator

pytestmark = pytest.mark.bench

TRAIN_USERS, HELDOUT_USERS = sample_snapshot(2000, 11), sample_snapshot(2000, 12)
CHECK_EVERY = 4000  # env steps between checks against the rules
BUDGET = 20_000  # settings.train_timesteps: what the training DAG trains for


def _policy(module) -> ExportedPolicy:
    return ExportedPolicy(torch.jit.script(extract_q_network(module)), {"run_id": "bench"})


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def trained(ray_local):
    """The tuned DQN trained for the DAG's budget, checked against the rules on the way (time to beat them)."""
    checks: list[dict] = []
    clock = {"at": 0, "start": time.perf_counter(), "checking": 0.0}

    def check_against_rules(module, env_steps: int) -> bool:
        if env_steps - clock["at"] < CHECK_EVERY:
            return False
        t_check = time.perf_counter()
        clock["at"] = env_steps
        report, _ = evaluate_all(
            {"rules": RulePolicy(), "dqn": _policy(module)}, HELDOUT_USERS, 500, 3, oracle_draws=0
        )
        diff = report["vs_reference"]["dqn"]
        trained_s = t_check - clock["start"] - clock["checking"]
        checks.append({"env_steps": env_steps, "train_seconds": trained_s, **diff})
        print(
            f"  {env_steps:6d} env steps, {trained_s:5.0f} s: effect over rules {diff['diff_mean']:+.3f} "
            f"[{diff['diff_ci_low']:+.3f}, {diff['diff_ci_high']:+.3f}]",
            flush=True,
        )
        clock["checking"] += time.perf_counter() - t_check
        return False

    t0 = time.perf_counter()
    module, metrics = train_dqn(TRAIN_USERS, DQNArgs(total_timesteps=BUDGET), stop_when=check_against_rules)
    return module, metrics, checks, time.perf_counter() - t0


def test_dqn_throughput_and_wall_time_to_beat_the_rules(trained):
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.tune import register_env

    module, metrics, checks, wall = trained
    register_env("fincoach-plain", rllib_env_creator)  # RLlib default: SyncVectorEnv of one-user envs
    default = (
        DQNConfig()
        .environment("fincoach-plain", env_config={"users": raw_matrix(TRAIN_USERS), "action_masking": False})
        .debugging(seed=7)
    )
    _, base = train_dqn(TRAIN_USERS, DQNArgs(total_timesteps=1500), config=default)
    beat = next((c for c in checks if c["diff_ci_low"] > 0), None)
    print(
        f"\ntuned DQN: {metrics['env_steps_per_s']:.0f} env steps/s vs RLlib's default DQN "
        f"{base['env_steps_per_s']:.0f} env steps/s in the same run: x{metrics['env_steps_per_s'] / base['env_steps_per_s']:.1f}"
    )
    print(
        f"trained {metrics['env_steps']} env steps in {metrics['train_seconds']:.0f} s of training "
        f"({wall:.0f} s wall with the checks); first check with the effect's CI above 0: "
        + (f"{beat['env_steps']} env steps, {beat['train_seconds']:.0f} s of training" if beat else "never")
    )
    assert metrics["env_steps_per_s"] > base["env_steps_per_s"]
    assert beat is not None, checks


def test_full_evaluation_on_1000_heldout_users(trained):
    module, _, _, _ = trained
    raw = raw_matrix(TRAIN_USERS)
    linucb, thompson = LinUCBPolicy(), ThompsonPolicy(seed=7)
    fit_bandit(linucb, raw, 20, 200, 7)
    fit_bandit(thompson, raw, 20, 200, 8)
    dqn = _policy(module)
    policies = {
        "rules": RulePolicy(),
        "dqn": dqn,
        "random": RandomPolicy(7),
        "linucb": linucb,
        "thompson": thompson,
    }
    t0 = time.perf_counter()
    report, _ = evaluate_all(policies, HELDOUT_USERS, 1000, 7, oracle_draws=8)
    print(
        f"\nevaluation of {len(policies)} policies on 1000 users with the oracle: {time.perf_counter() - t0:.1f} s"
    )
    print(
        f"{'policy':<10} {'mean':>7} {'95% CI':>17} {'vs rules':>8} {'95% CI':>17} {'p':>8} {'relevance':>9}"
    )
    for who, s in report["policies"].items():
        c = report["vs_reference"].get(
            who, {"diff_mean": 0, "diff_ci_low": 0, "diff_ci_high": 0, "p_value": 1}
        )
        print(
            f"{who:<10} {s['mean_reward']:7.3f} [{s['ci_low']:6.3f}, {s['ci_high']:6.3f}] "
            f"{c['diff_mean']:+8.3f} [{c['diff_ci_low']:+6.3f}, {c['diff_ci_high']:+6.3f}] {c['p_value']:8.1e} "
            f"{s['relevance'] if s['relevance'] is None else round(s['relevance'], 3)!s:>9}"
        )
    for kind in ("archetype", "age_band", "income_band"):
        rows = report["policies"]["dqn"]["segments"][kind]
        rules = report["policies"]["rules"]["segments"][kind]
        print(
            kind
            + ": "
            + ", ".join(
                f"{name} {row['mean']:.3f} (rules {rules[name]['mean']:.3f}, n={row['n']})"
                for name, row in rows.items()
            )
        )
    for eps in (0.3, 0.05):
        log = ope.simulate_log(RulePolicy(), HELDOUT_USERS, 1000, 9, eps)
        for who in ("dqn", "linucb", "random"):
            check = ope.check_against_simulator(policies[who], log)
            print(
                f"OPE eps={eps} {who:<7} truth {check['truth']['value']:.4f} "
                + " ".join(
                    f"{e} {check[e]['value']:.4f} (err {check[e]['error']:+.4f}{'' if check[e]['covers_truth'] else ' !'})"
                    for e in ope.ESTIMATORS
                )
                + f" matched {check['support']['matched_share']:.2f}"
            )
    assert report["vs_reference"]["dqn"]["diff_mean"] > 0


def test_exported_policy_inference_time_per_user(trained):
    module, _, _, _ = trained
    policy, rules = _policy(module), RulePolicy()
    raw = raw_matrix(sample_snapshot(1024, 5))

    def per_user(fn, batch: np.ndarray, repeats: int) -> float:
        fn(batch)
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn(batch)
        return (time.perf_counter() - t0) / repeats / len(batch)

    one = per_user(policy.act, raw[:1], 2000)
    batch = per_user(policy.act, raw, 50)
    rules_one = per_user(rules.act, raw[:1], 2000)
    print(
        f"\nexported DQN policy.act: {one * 1e6:.0f} us per user at batch 1, {batch * 1e6:.1f} us per user at "
        f"batch 1024 (x{one / batch:.0f}); rules policy at batch 1: {rules_one * 1e6:.0f} us "
        f"(DQN / rules = {one / rules_one:.1f})"
    )
    assert one < 1e-3
