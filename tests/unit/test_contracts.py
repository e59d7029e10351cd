"""The shared contracts: feature spec, action catalog, rule policy, epsilon-greedy propensities."""

import numpy as np
import pytest

from fincoach.actions import ACTIONS, N_ACTIONS, action_mask, action_text
from fincoach.feature_spec import (
    FEATURE_NAMES,
    FEATURE_SPEC_VERSION,
    FEATURES,
    N_FEATURES,
    FeatureSpecError,
    feature_index,
    normalise,
    raw_matrix,
)
from fincoach.rules import RulePolicy


def _user(**overrides: float) -> np.ndarray:
    values = {f.name: f.default for f in FEATURES}
    values.update(
        monthly_income=4000, monthly_spend=3000, savings_rate=0.25, essential_share=0.6, discretionary_share=0.3,
        checking_balance=2000, savings_balance=9000, emergency_fund_months=3.0, has_active_goal=1.0,
    )
    values.update(overrides)
    return np.array([[values[n] for n in FEATURE_NAMES]], dtype=float)


def test_action_ids_are_stable_and_dense():
    assert [a.id for a in ACTIONS] == list(range(N_ACTIONS))
    assert ACTIONS[0].type == "NO_ACTION"
    assert "50" in action_text(3)


def test_spec_version_is_a_content_hash():
    assert FEATURE_SPEC_VERSION.startswith("v2-") and len(FEATURE_SPEC_VERSION) == 11
    assert len(set(FEATURE_NAMES)) == N_FEATURES


def test_normalise_is_bounded_and_finite_for_extreme_input():
    raw = np.array([[1e12] * N_FEATURES, [-1e12] * N_FEATURES, [np.nan] * N_FEATURES])
    out = normalise(raw)
    assert out.dtype == np.float32
    assert np.isfinite(out).all() and np.abs(out).max() <= 5.0


def test_raw_matrix_fills_missing_values_with_spec_defaults():
    row = {n: np.nan for n in FEATURE_NAMES}
    m = raw_matrix([row])
    assert m[0, feature_index("days_since_last_session")] == 90.0


def test_raw_matrix_names_missing_and_unknown_features():
    with pytest.raises(FeatureSpecError, match="missing features: .*age"):
        raw_matrix([{n: 1.0 for n in FEATURE_NAMES if n != "age"}])
    with pytest.raises(FeatureSpecError, match="unknown features: shoe_size"):
        raw_matrix([{**{n: 1.0 for n in FEATURE_NAMES}, "shoe_size": 42}])


def test_mask_forbids_paying_debt_one_does_not_have_and_investing_with_costly_debt():
    no_debt = action_mask(_user(debt_total=0))[0]
    costly = action_mask(_user(debt_total=5000, max_debt_apr=0.24, emergency_fund_months=6))[0]
    assert not no_debt[5] and no_debt[9]
    assert costly[5] and not costly[9]
    assert not action_mask(_user(has_active_goal=1))[0][7]


def test_rules_pay_costly_debt_first_then_build_a_buffer():
    rules = RulePolicy()
    assert rules.act(_user(debt_total=3000, max_debt_apr=0.22)).actions[0] == 5
    assert rules.act(_user(emergency_fund_months=0.5)).actions[0] == 6
    assert rules.act(_user(has_active_goal=0)).actions[0] == 7
    assert rules.act(_user(emergency_fund_months=6)).actions[0] == 9


def test_epsilon_greedy_propensities_are_those_of_the_choice_and_never_pick_masked_actions():
    raw = np.repeat(_user(debt_total=0), 2000, axis=0)
    d = RulePolicy().act(raw, epsilon=0.2, rng=np.random.default_rng(1))
    n_valid = action_mask(raw)[0].sum()
    greedy = d.scores.argmax(axis=1)
    assert not (d.actions == 5).any()  # PAY_DEBT_EXTRA masked without debt
    assert np.allclose(d.propensities[d.actions == greedy], 0.8 + 0.2 / n_valid)
    assert np.allclose(d.propensities[d.actions != greedy], 0.2 / n_valid)
    share = (d.actions == greedy).mean()
    assert abs(share - (0.8 + 0.2 / n_valid)) < 0.04


def test_catalog_v2_keeps_v1_ids_and_covers_every_action_type():
    from fincoach.actions import ACTION_CATALOG_VERSION, AMOUNT_BUCKETS, FAMILIES, amount_bucket

    v1 = ["NO_ACTION", "SAVE_MORE", "SAVE_MORE", "REDUCE_SPENDING", "REDUCE_SPENDING", "PAY_DEBT_EXTRA",
          "BUILD_EMERGENCY_FUND", "SET_GOAL", "REVIEW_BUDGET", "INVEST"]
    assert [a.type for a in ACTIONS[:10]] == v1
    assert ACTION_CATALOG_VERSION.startswith("v2-") and 15 <= N_ACTIONS <= 18
    types = {a.type for a in ACTIONS}
    assert {"ADJUST_GOAL", "SPENDING_ALERT"} <= types
    for a in ACTIONS:
        assert a.family in FAMILIES and a.amount_bucket in AMOUNT_BUCKETS
        assert a.amount_bucket == amount_bucket(a.amount), a
    for kind in ("SAVE_MORE", "PAY_DEBT_EXTRA", "INVEST"):
        assert {a.amount_bucket for a in ACTIONS if a.type == kind} == {"small", "medium", "large"}, kind
    assert len({a.category for a in ACTIONS if a.type == "REDUCE_SPENDING"}) >= 3
    assert {a.family for a in ACTIONS if a.type == "SPENDING_ALERT"} == {"spending_alert"}


def test_adjust_goal_and_the_spending_alert_are_masked_unless_they_apply():
    on_track = action_mask(_user(has_active_goal=1, goal_pace_ratio=1.2, spending_velocity=0.9))[0]
    behind = action_mask(_user(has_active_goal=1, goal_pace_ratio=0.3, spending_velocity=1.6))[0]
    no_goal = action_mask(_user(has_active_goal=0, goal_pace_ratio=0.3))[0]
    assert not on_track[10] and behind[10] and not no_goal[10]
    assert not on_track[11] and behind[11]
    poor = action_mask(_user(checking_balance=50, debt_total=1000, max_debt_apr=0.2))[0]
    assert poor[13] and not poor[14] and not poor[12]  # large transfers only with the cash for them
