"""Property tests (hypothesis) of the simulator: money is conserved, nothing is NaN or infinite, rewards
stay within the bounds of their weights, masked actions are never executed, a seed replays exactly."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fincoach.actions import N_ACTIONS, NO_ACTION, action_mask
from fincoach.feature_spec import feature_index, normalise, raw_matrix
from training import reward as rw
from training.sample_users import sample_snapshot
from training.simulator import Simulator

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
money = st.floats(-5_000, 1e6, allow_nan=False)
EDGES = {  # features pushed to wide and degenerate values
    "monthly_income": st.floats(0, 1e5),
    "monthly_spend": st.floats(0, 1e5),
    "checking_balance": money,
    "savings_balance": st.floats(0, 1e6),
    "debt_total": st.floats(0, 5e5),
    "max_debt_apr": st.floats(0, 1),
    "discretionary_share": st.floats(0, 1),
    "impulse_share": st.floats(0, 1),
    "spending_volatility": st.floats(0, 10),
    "sessions_30d": st.floats(0, 200),
    "nudge_acceptance_rate": st.floats(0, 1),
    "has_active_goal": st.sampled_from([0.0, 1.0]),
    "goal_progress": st.floats(0, 1),
}


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 12))
    raw = raw_matrix(sample_snapshot(n, draw(st.integers(0, 10_000)))).copy()
    for i in range(n):
        for name, values in EDGES.items():
            if draw(st.booleans()):
                raw[i, feature_index(name)] = draw(values)
    horizon = draw(st.integers(1, 8))
    actions = np.array(draw(st.lists(st.lists(st.integers(0, N_ACTIONS - 1), min_size=n, max_size=n),
                                     min_size=horizon, max_size=horizon)))
    weights = draw(st.dictionaries(st.sampled_from(rw.REWARD_COMPONENTS), st.floats(0, 5), max_size=4))
    seeds = np.array(draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n)))
    return raw, seeds, horizon, actions, weights, draw(st.integers(0, 2**31)), draw(st.integers(0, 364))


def _run(raw, seeds, horizon, actions, weights, market_seed, day):
    sim = Simulator(raw, seeds, horizon, market_seed=market_seed, start_day=day, reward_weights=weights)
    trace = []
    for week_actions in actions:
        mask = action_mask(sim.raw_features())
        before = sim.net_worth()
        result = sim.step(week_actions)
        trace.append((mask, before, sim.net_worth(), sim.raw_features(), result))
    return trace


@PROPERTY
@given(scenarios())
def test_money_is_conserved_every_week(case):
    for _, before, after, _, result in _run(*case):
        f = result.flows
        expected = (f["income"] - f["spending"] - f["debt_interest"] - f["overdraft_fee"]
                    + f["savings_interest"] + f["investment_return"])
        np.testing.assert_allclose(after - before, expected, rtol=1e-9, atol=1e-6)
        for name in ("income", "spending", "debt_interest", "overdraft_fee", "savings_interest"):
            assert (f[name] >= 0).all(), name


@PROPERTY
@given(scenarios())
def test_features_and_rewards_are_finite_and_rewards_bounded(case):
    weights = rw.parse_weights(case[4])
    lo, hi = rw.bounds(weights)
    for _, _, _, raw, result in _run(*case):
        assert np.isfinite(raw).all() and np.isfinite(normalise(raw)).all()
        assert np.isfinite(result.reward).all()
        assert ((result.reward >= lo - 1e-12) & (result.reward <= hi + 1e-12)).all()
        for k, v in result.components.items():
            c_lo, c_hi = rw.REWARD_CLIPS[k]
            assert ((v >= c_lo) & (v <= c_hi)).all(), k
        np.testing.assert_allclose(rw.scalarise(result.components, weights), result.reward)


@PROPERTY
@given(scenarios())
def test_masked_actions_are_never_executed(case):
    actions = case[3]
    for week, (mask, _, _, _, result) in enumerate(_run(*case)):
        chosen = actions[week]
        allowed = mask[np.arange(len(chosen)), chosen]
        assert (result.executed[~allowed] == NO_ACTION).all()
        assert (result.invalid == ~allowed).all()
        executed_ok = mask[np.arange(len(chosen)), result.executed] | (result.executed == NO_ACTION)
        assert executed_ok.all()
        assert not result.accepted[~allowed].any()


@settings(max_examples=15, deadline=None)
@given(scenarios())
def test_a_seed_replays_exactly(case):
    for (_, _, a_nw, a_raw, a), (_, _, b_nw, b_raw, b) in zip(_run(*case), _run(*case), strict=True):
        np.testing.assert_array_equal(a_raw, b_raw)
        np.testing.assert_array_equal(a_nw, b_nw)
        np.testing.assert_array_equal(a.reward, b.reward)
        np.testing.assert_array_equal(a.accepted, b.accepted)
