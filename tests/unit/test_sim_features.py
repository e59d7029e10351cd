"""The simulator rebuilds every feature of spec v1 and v2 from its state, and carries the rest."""

import numpy as np

from fincoach.feature_spec import FEATURE_NAMES, raw_matrix
from training.sample_users import sample_snapshot
from training.sim_features import CARRIED, FORMULAS, carried_names, rebuild
from training.simulator import Simulator

# The contract of FEATURES_V2 (issue 3 appends these to the spec, in this order).
V2_NAMES = (
    "weekend_spend_share", "month_end_spend_share", "spend_trend", "days_to_payday", "spending_velocity",
    "balance_trend", "dining_share", "shopping_share", "avg_session_minutes", "features_used_30d",
    "clicks_per_session", "saving_streak_weeks", "mobile_device", "evening_session_share", "goal_pace_ratio",
    "goals_achieved", "risk_tolerance", "nudges_7d", "days_since_last_nudge", "market_interest_rate",
    "market_inflation_rate", "market_return_3m",
)


def test_every_v1_and_v2_feature_has_a_formula_or_is_knowingly_carried():
    names = list(dict.fromkeys([*FEATURE_NAMES, *V2_NAMES]))  # the spec in force, and the v2 contract
    assert set(FEATURE_NAMES[:19]) <= set(FORMULAS)  # every v1 feature is modelled
    assert set(names) <= set(FORMULAS) | set(CARRIED)
    assert carried_names(names) == list(CARRIED)


def test_a_spec_v2_feature_list_is_rebuilt_from_state_and_unknown_ones_are_carried():
    sim = Simulator(raw_matrix(sample_snapshot(60, 1)), np.arange(60))
    rng = np.random.default_rng(0)
    while not sim.done:
        sim.step(rng.integers(0, 18, 60))
    names = [*dict.fromkeys([*FEATURE_NAMES, *V2_NAMES]), "shoe_size"]
    start = np.full((sim._rows, len(names)), 7.0)
    out = rebuild(sim, names, start)
    assert out.shape == (120, len(names)) and np.isfinite(out).all()
    col = {n: out[:, j] for j, n in enumerate(names)}
    for carried in (*CARRIED, "shoe_size"):
        np.testing.assert_array_equal(col[carried], 7.0)
    for share in ("weekend_spend_share", "month_end_spend_share", "dining_share", "shopping_share"):
        assert ((col[share] >= 0) & (col[share] <= 1)).all(), share
    assert (col["nudges_7d"] > 0).any() and (col["days_since_last_nudge"] < 90).any()
    assert (col["saving_streak_weeks"] >= 0).all() and (col["goal_pace_ratio"] <= 3).all()
    assert np.ptp(col["market_interest_rate"]) == 0  # one market for every user of a run
    assert ((col["spending_velocity"] >= 0) & (col["spending_velocity"] <= 5)).all()
    assert ((col["balance_trend"] >= -5) & (col["balance_trend"] <= 5)).all()
