import numpy as np
import pytest

from fincoach.actions import N_ACTIONS, NO_ACTION, action_mask
from fincoach.feature_spec import FEATURE_NAMES, feature_index, normalise, raw_matrix
from training.sample_users import sample_snapshot
from training.simulator import REWARD_COMPONENTS, REWARD_MAX, REWARD_MIN, Simulator


def _users(n=300, seed=0):
    return raw_matrix(sample_snapshot(n, seed))


def _extreme_users():
    """Rows at the edges: no income, overdrawn, huge debt at a high APR, nothing at all, a rich saver."""
    base = _users(5, 1)
    rows = base.copy()
    col = {name: feature_index(name) for name in FEATURE_NAMES}
    rows[0, col["monthly_income"]] = 0.0
    rows[1, col["checking_balance"]] = -5_000.0
    rows[2, [col["debt_total"], col["max_debt_apr"]]] = [250_000.0, 0.35]
    rows[3] = 0.0
    rows[4, [col["monthly_income"], col["savings_balance"], col["debt_total"]]] = [50_000.0, 1e6, 0.0]
    return rows


def _random_actions(rng, n):
    return rng.integers(0, N_ACTIONS, size=n)


def test_same_seeds_and_actions_give_identical_trajectories():
    raw, seeds = _users(50), np.arange(50)
    runs = []
    for _ in range(2):
        sim, rng, trace = Simulator(raw, seeds), np.random.default_rng(3), []
        while not sim.done:
            result = sim.step(_random_actions(rng, 50))
            trace.append((sim.raw_features(), result.reward, result.accepted))
        runs.append(trace)
    for (raw_a, rew_a, acc_a), (raw_b, rew_b, acc_b) in zip(*runs, strict=True):
        np.testing.assert_array_equal(raw_a, raw_b)
        np.testing.assert_array_equal(rew_a, rew_b)
        np.testing.assert_array_equal(acc_a, acc_b)


def test_different_seeds_give_different_luck():
    raw = np.repeat(_users(1), 20, axis=0)
    sim = Simulator(raw, np.arange(20))
    result = sim.step(np.full(20, 2))
    assert len(np.unique(result.flows["spending"])) == 20


def test_money_is_conserved_and_finite_over_many_random_weeks():
    raw = np.concatenate([_users(400, 2), _extreme_users()])
    rng = np.random.default_rng(11)
    for _ in range(3):
        sim = Simulator(raw, rng.integers(0, 2**62, len(raw)))
        while not sim.done:
            before = sim.net_worth()
            result = sim.step(_random_actions(rng, len(raw)))
            f = result.flows
            expected = (
                f["income"]
                - f["spending"]
                - f["debt_interest"]
                - f["overdraft_fee"]
                + f["savings_interest"]
                + f["investment_return"]
            )
            np.testing.assert_allclose(sim.net_worth() - before, expected, rtol=1e-9, atol=1e-6)
            assert np.isfinite(sim.raw_features()).all()
            assert np.isfinite(normalise(sim.raw_features())).all()
            assert np.isfinite(result.reward).all()
            for name in ("income", "spending", "debt_interest", "overdraft_fee", "savings_interest"):
                assert (f[name] >= 0).all(), name


def test_rewards_stay_within_bounds_and_components_add_up():
    raw = np.concatenate([_users(400, 3), _extreme_users()])
    rng = np.random.default_rng(5)
    for _ in range(3):
        sim = Simulator(raw, rng.integers(0, 2**62, len(raw)))
        while not sim.done:
            result = sim.step(_random_actions(rng, len(raw)))
            assert (result.reward >= REWARD_MIN).all() and (result.reward <= REWARD_MAX).all()
            assert set(result.components) == set(REWARD_COMPONENTS)
            np.testing.assert_allclose(sum(result.components.values()), result.reward)


def test_masked_action_changes_state_exactly_like_no_action():
    raw = _users(300, 4)
    mask = action_mask(raw)
    invalid = np.array([np.flatnonzero(~row)[0] if (~row).any() else -1 for row in mask])
    keep = invalid >= 0
    assert keep.sum() > 50, "the sample should hold users for whom some action is not allowed"
    raw, invalid, seeds = raw[keep], invalid[keep], np.arange(keep.sum())
    masked, idle = Simulator(raw, seeds), Simulator(raw, seeds)
    masked_result = masked.step(invalid)
    idle_result = idle.step(np.full(len(raw), NO_ACTION))
    np.testing.assert_array_equal(masked.raw_features(), idle.raw_features())
    np.testing.assert_array_equal(masked.net_worth(), idle.net_worth())
    assert masked_result.invalid.all() and not idle_result.invalid.any()
    assert (masked_result.executed == NO_ACTION).all()
    assert not masked_result.shown.any()
    np.testing.assert_allclose(masked_result.reward - idle_result.reward, masked_result.components["invalid"])
    assert (masked_result.components["invalid"] < 0).all()


def test_never_coaching_scores_exactly_zero():
    raw = _users(200, 6)
    sim = Simulator(raw, np.arange(200))
    total = np.zeros(200)
    while not sim.done:
        total += sim.step(np.full(200, NO_ACTION)).reward
    np.testing.assert_array_equal(total, 0.0)
    np.testing.assert_array_equal(sim.raw_features(), sim.twin_raw_features())


def test_shocks_do_not_depend_on_the_actions_taken():
    raw, seeds = _users(100, 7), np.arange(100)
    a, b = Simulator(raw, seeds), Simulator(raw, seeds)
    ra = a.step(np.full(100, 3))
    rb = b.step(np.full(100, 8))
    np.testing.assert_array_equal(ra.flows["income"], rb.flows["income"])


def test_first_observation_keeps_the_snapshot_figures():
    frame = sample_snapshot(50, 8)
    sim = Simulator(raw_matrix(frame), np.arange(50))
    raw = sim.raw_features()
    for name in (
        "monthly_income",
        "monthly_spend",
        "checking_balance",
        "savings_balance",
        "age",
        "has_active_goal",
    ):
        np.testing.assert_allclose(raw[:, feature_index(name)], frame[name].to_numpy(), rtol=1e-9, atol=1e-9)


def test_bad_input_is_refused_with_a_message():
    with pytest.raises(ValueError, match="one seed per user"):
        Simulator(_users(3), [1, 2])
    sim = Simulator(_users(2), [1, 2], horizon=1)
    with pytest.raises(ValueError, match="action ids"):
        sim.step([0, N_ACTIONS])
    sim.step([0, 0])
    with pytest.raises(RuntimeError, match="over"):
        sim.step([0, 0])


def test_too_many_nudges_make_users_leave_the_app_and_twins_never_churn_more():
    raw = _users(400, 9)
    nagged, spared = Simulator(raw, np.arange(400), horizon=12), Simulator(raw, np.arange(400), horizon=12)
    while not nagged.done:
        nagged.step(np.full(400, 6))  # BUILD_EMERGENCY_FUND, high urgency, every week
        spared.step(np.full(400, NO_ACTION))
    left_nagged, left_spared = nagged.churned[:400].mean(), spared.churned[:400].mean()
    assert left_nagged > 2 * left_spared
    assert not (nagged.churned[400:] & ~nagged.churned[:400]).any()  # a twin leaves only if its user did
    np.testing.assert_array_equal(nagged.churned[400:], spared.churned[:400])  # twins are the uncoached run


def test_market_conditions_are_shared_seeded_and_independent_of_actions():
    raw = _users(30, 10)
    a = Simulator(raw, np.arange(30), market_seed=3)
    b = Simulator(raw, np.arange(30), market_seed=3)
    c = Simulator(raw, np.arange(30), market_seed=4)
    for _ in range(6):
        a.step(np.full(30, 2))
        b.step(np.full(30, NO_ACTION))
        c.step(np.full(30, NO_ACTION))
    for key in ("interest_rate", "inflation_rate", "return_3m"):
        assert np.ptp(a.market[key]) == 0
        np.testing.assert_array_equal(a.market[key], b.market[key])
    assert a.market["interest_rate"][0] != c.market["interest_rate"][0]


def test_spending_has_seasons_weekends_and_month_ends():
    raw = _users(300, 12)
    sep = Simulator(raw, np.arange(300), horizon=4, start_day=243)  # September
    dec = Simulator(raw, np.arange(300), horizon=4, start_day=334)  # December
    for _ in range(4):
        sep.step(np.zeros(300, dtype=int))
        dec.step(np.zeros(300, dtype=int))
    shopping = {s: s.hist["shopping"][:300, -4:].sum() for s in (sep, dec)}
    travel = {s: s.hist["travel"][:300, -4:].sum() for s in (sep, dec)}
    assert shopping[dec] > 1.5 * shopping[sep] and travel[dec] > 1.3 * travel[sep]
    weekend = sep.hist["weekend"][:300, -1] / sep.hist["spend"][:300, -1]
    assert 2 / 7 - 0.01 < np.median(weekend) < 0.6  # discretionary spending leans to the weekend
    month_end = sep.hist["month_end"][:300, -4:].sum(axis=1) / sep.hist["spend"][:300, -4:].sum(axis=1)
    assert 0.1 < np.median(month_end) < 0.4  # about the last 7 of 30 days


def test_accepted_spending_cuts_lower_the_named_category_only():
    raw = _users(400, 13)
    cut, idle = Simulator(raw, np.arange(400)), Simulator(raw, np.arange(400))
    r = cut.step(np.full(400, 17))  # REDUCE_SPENDING on entertainment
    idle.step(np.zeros(400, dtype=int))
    took = r.accepted
    assert took.sum() > 20
    ent = cut.hist["entertainment"][:400, -1], idle.hist["entertainment"][:400, -1]
    dining = cut.hist["dining"][:400, -1], idle.hist["dining"][:400, -1]
    assert (ent[0][took] <= ent[1][took] + 1e-9).all() and (ent[0][took] < ent[1][took]).mean() > 0.9
    np.testing.assert_allclose(dining[0], dining[1])
