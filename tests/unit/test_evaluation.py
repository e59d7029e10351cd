"""Evaluation statistics, segments, the relevance oracle, baselines, OPE and the gate, on the real simulator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fincoach.actions import ACTIONS, N_ACTIONS, NO_ACTION, action_mask
from fincoach.feature_spec import feature_index, raw_matrix
from fincoach.policy import Policy
from fincoach.rules import RulePolicy
from training import ope
from training.bandits import LinUCBPolicy, RandomPolicy, ThompsonPolicy, fit_bandit
from training.evaluate import compare, evaluate_all, simulated_users
from training.gate import decide
from training.oracle import expected_lift
from training.sample_users import sample_snapshot
from training.segments import ARCHETYPES, archetype, segments
from training.stats import bootstrap_ci, mean_with_ci, paired_comparison


@pytest.fixture(scope="module")
def users():
    return sample_snapshot(300, 5)


class Always(Policy):
    """Always the first allowed action of a type (NO_ACTION if none): a hand-made policy."""

    def __init__(self, action_type: str):
        self.version = f"always-{action_type.lower()}"
        self.ids = [a.id for a in ACTIONS if a.type == action_type]

    def action_scores(self, raw):
        scores = np.zeros((len(raw), N_ACTIONS))
        scores[:, NO_ACTION] = 0.5
        scores[:, self.ids] = 1.0
        return scores


def test_bootstrap_ci_covers_the_mean_and_shrinks_with_more_data():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 100), rng.normal(1.0, 1.0, 10_000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < 1.0 < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 5
    assert mean_with_ci(np.array([2.0]))["ci_low"] == 2.0


def test_paired_comparison_sees_a_small_effect_that_unpaired_intervals_miss():
    rng = np.random.default_rng(1)
    base = rng.normal(0.0, 5.0, 500)  # large between-user spread
    better = base + 0.1 + rng.normal(0.0, 0.05, 500)
    paired = paired_comparison(better, base)
    assert paired["diff_ci_low"] > 0 and paired["p_value"] < 1e-6 and paired["p_wilcoxon"] < 1e-6
    a, b = mean_with_ci(better), mean_with_ci(base)
    assert a["ci_low"] < b["ci_high"]  # the independent intervals overlap
    same = paired_comparison(base, base)
    assert same["diff_mean"] == 0.0 and same["p_value"] == 1.0
    with pytest.raises(ValueError, match="same users"):
        paired_comparison(base, base[:10])


def test_segments_cover_every_user_with_documented_archetypes(users):
    raw = raw_matrix(users)
    seg = segments(raw)
    assert set(seg) == {"income_band", "age_band", "archetype"}
    assert all(len(v) == len(raw) for v in seg.values())
    assert set(seg["archetype"]) <= set(ARCHETYPES) and len(set(seg["archetype"])) >= 4
    costly = raw.copy()
    costly[:, feature_index("debt_total")] = 5000.0
    costly[:, feature_index("max_debt_apr")] = 0.25
    assert (archetype(costly) == "indebted").all()


def test_oracle_rates_an_invalid_or_empty_nudge_as_not_beneficial(users):
    raw = raw_matrix(users)[:50]
    assert (expected_lift(raw, np.full(50, NO_ACTION), draws=2) == 0.0).all()
    no_debt = raw[:, feature_index("debt_total")] <= 0
    lift = expected_lift(raw[no_debt], np.full(no_debt.sum(), 5), draws=2)  # pay debt one does not have
    assert (lift < 0).all()
    a = expected_lift(raw, np.full(50, 3), draws=4, seed=1)
    np.testing.assert_array_equal(a, expected_lift(raw, np.full(50, 3), draws=4, seed=1))
    assert (a > 0).any()


def test_every_policy_meets_the_same_users_and_gets_ci_segments_and_relevance(users):
    linucb = LinUCBPolicy()
    curve = fit_bandit(linucb, raw_matrix(users), 4, 100, seed=0)["episode_return_mean"]
    assert len(curve) == 4 and linucb.n_updates == 4 * 100 * 12
    policies = {
        "rules": RulePolicy(),
        "random": RandomPolicy(0),
        "linucb": linucb,
        "thompson": ThompsonPolicy(seed=0),
        "silent": Always("NO_ACTION"),
    }
    report, rollouts = evaluate_all(policies, users, 200, seed=3, oracle_draws=2)
    json.dumps(report)
    first = rollouts["rules"].start_raw
    assert all(np.array_equal(r.start_raw, first) for r in rollouts.values())
    for name, s in report["policies"].items():
        assert s["ci_low"] <= s["mean_reward"] <= s["ci_high"], name
        assert {k["n"] for k in s["segments"]["archetype"].values()} and sum(
            row["n"] for row in s["segments"]["age_band"].values()
        ) == 200
    silent = report["policies"]["silent"]
    assert silent["mean_reward"] == 0.0 and silent["relevance"] is None
    assert 0.0 < report["policies"]["rules"]["relevance"] < 1.0
    vs = report["vs_reference"]["silent"]
    assert vs["diff_mean"] == pytest.approx(-report["policies"]["rules"]["mean_reward"])
    assert vs["diff_ci_high"] < 0 and vs["p_value"] < 0.01  # never coaching is worse than the rules
    seg = compare(rollouts["silent"], rollouts["rules"])["segments"]
    assert sum(row["n"] for row in seg["income_band"].values()) == 200


def test_random_policy_reports_its_true_propensity(users):
    raw = raw_matrix(users)
    decision = RandomPolicy(1).act(raw)
    allowed = action_mask(raw)
    assert allowed[np.arange(len(raw)), decision.actions].all()
    np.testing.assert_allclose(decision.propensities, 1.0 / allowed.sum(axis=1))


def test_bandits_learn_to_beat_random_in_the_simulator(users):
    raw = raw_matrix(users)
    linucb, thompson = LinUCBPolicy(), ThompsonPolicy(seed=2)
    fit_bandit(linucb, raw, 8, 150, seed=1)
    fit_bandit(thompson, raw, 8, 150, seed=2)
    report, _ = evaluate_all(
        {"rules": RulePolicy(), "random": RandomPolicy(0), "linucb": linucb, "thompson": thompson},
        users,
        300,
        seed=9,
        oracle_draws=0,
    )
    p = report["policies"]
    assert p["linucb"]["mean_reward"] > p["random"]["mean_reward"]
    assert p["thompson"]["mean_reward"] > p["random"]["mean_reward"]


def test_ope_estimates_are_close_to_the_simulator_truth(users):
    log = ope.simulate_log(RulePolicy(), users, 300, seed=4, epsilon=0.3)
    assert len(log.rewards) == 300 * 12 and len(log.snapshots) == 12
    # The logging policy itself: the weighting estimators must be close (weights near 1); the direct method
    # is only as good as its reward model (ridge on the features), so it is allowed its bias.
    check = ope.check_against_simulator(RulePolicy(), log)
    for est in ope.ESTIMATORS:
        row = check[est]
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
        assert abs(row["error"]) < (0.01 if est == "dm" else 0.004), (est, row)
    # Another policy: IPS and DR are unbiased, so their CIs should cover the truth.
    other = ope.check_against_simulator(Always("REDUCE_SPENDING"), log)
    assert other["support"]["matched_share"] > 0
    assert other["ips"]["covers_truth"] or other["dr"]["covers_truth"]
    with pytest.raises(ValueError, match="explore"):
        ope.simulate_log(RulePolicy(), users, 10, seed=0, epsilon=0.0)


def _seg(diff, n=100, small=False):
    return {"archetype": {"saver": {"diff_mean": diff, "diff_ci_low": diff - 0.1, "n": n, "small": small}}}


@pytest.mark.parametrize(
    ("low", "rules", "champ", "seg", "promote"),
    [
        (0.25, 0.20, None, 0.0, True),
        (0.20, 0.20, None, 0.0, False),  # the lower bound must be strictly above
        (0.19, 0.10, 0.20, 0.0, False),  # the champion's estimate is above the lower bound
        (0.25, 0.20, 0.22, 0.0, True),
        (0.25, 0.20, 0.22, -0.2, False),  # a segment regresses beyond the tolerance
        (0.25, 0.20, 0.22, -0.04, True),  # within the tolerance
    ],
)
def test_gate_needs_the_ci_lower_bound_above_rules_and_champion_and_no_segment_regression(
    low, rules, champ, seg, promote
):
    cand = {"mean_reward": low + 0.05, "ci_low": low}
    ok, reason = decide(
        cand, {"mean_reward": rules}, None if champ is None else {"mean_reward": champ}, _seg(seg), 0.05
    )
    assert ok is promote
    assert f"CI low {low:.4f}" in reason and f"rules {rules:.4f}" in reason
    assert ("champion" in reason) and (("no champion" in reason) is (champ is None))
    if seg < -0.05:
        assert "archetype=saver" in reason


def test_gate_ignores_small_segments():
    ok, _ = decide({"mean_reward": 1.0, "ci_low": 0.9}, {"mean_reward": 0.0}, None, _seg(-5.0, 5, True), 0.05)
    assert ok


def test_simulated_users_are_reproducible(users):
    a, sa = simulated_users(users, 50, 1)
    b, sb = simulated_users(users, 50, 1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)


def test_held_out_archetypes_are_never_trained_on(monkeypatch):
    from fincoach.settings import reload_settings
    from training.workflow import split_users

    frame = sample_snapshot(600, 8)
    monkeypatch.setenv("FINCOACH_HOLDOUT_ARCHETYPES", "spender,saver")
    reload_settings()
    try:
        train, test = split_users(frame)
        assert not np.isin(archetype(raw_matrix(train)), ["spender", "saver"]).any()
        assert (archetype(raw_matrix(test)) == "spender").any()  # evaluated on, as a held-out type
        assert not set(train["user_id"]) & set(test["user_id"])
    finally:
        monkeypatch.undo()
        reload_settings()


def test_report_tables_and_figures_cover_every_policy(users):
    from training.report import eval_metrics, figures, ope_table, policy_table, segment_table

    policies = {"rules": RulePolicy(), "random": RandomPolicy(0)}
    report, _ = evaluate_all(policies, users, 100, seed=1, oracle_draws=0)
    log = ope.simulate_log(RulePolicy(), users, 100, seed=2, epsilon=0.3)
    checks = {"random": ope.check_against_simulator(RandomPolicy(3), log)}
    assert list(policy_table(report)["policy"]) == ["rules", "random"]
    assert set(segment_table(report)["kind"]) == {"income_band", "age_band", "archetype"}
    assert len(ope_table(checks)) == 4
    metrics = eval_metrics(report, checks)
    assert "eval/random_vs_rules_diff" in metrics and "ope/random_dr_abs_error" in metrics
    assert any(k.startswith("eval/rules_segment/archetype/") for k in metrics)
    figs = figures(report, checks, [{"iteration": 1, "env_steps": 10, "episode_return_mean": 0.1}])
    assert set(figs) == {"plots/policies_ci.png", "plots/segments.png", "plots/curves.png", "plots/ope.png"}


def test_evaluation_ope_and_bandits_simulate_with_the_given_calibration(users):
    from dataclasses import replace

    from training.sim_params import DEFAULT_PARAMS

    spender = replace(
        DEFAULT_PARAMS,
        source="calibrated",
        churn_weekly=0.03,
        archetypes=[replace(a, impulse_scale=3.0) for a in DEFAULT_PARAMS.archetypes],
    )
    policies = {"rules": RulePolicy()}
    default, _ = evaluate_all(policies, users, 100, 3, oracle_draws=0)
    calibrated, _ = evaluate_all(policies, users, 100, 3, oracle_draws=0, params=spender)
    assert (default["simulator_params"], calibrated["simulator_params"]) == ("default", "calibrated")
    assert calibrated["policies"]["rules"]["mean_reward"] != default["policies"]["rules"]["mean_reward"]
    logs = [ope.simulate_log(RulePolicy(), users, 50, 3, 0.3, horizon=2, params=p) for p in (None, spender)]
    assert not np.array_equal(logs[0].rewards, logs[1].rewards)
    assert logs[1].snapshots[0].params == spender  # the ground truth replays the calibrated simulator
    curves = [fit_bandit(LinUCBPolicy(), raw_matrix(users), 1, 50, 3, 2, p) for p in (None, spender)]
    assert curves[0]["episode_return_mean"] != curves[1]["episode_return_mean"]
