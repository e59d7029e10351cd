"""The scorer's parts on their own: circuit breaker, sticky assignment, action families, explanations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fincoach.actions import ACTIONS
from fincoach.feature_spec import FEATURE_NAMES
from serving import families
from serving.experiments import Arm, Experiment, ExperimentError, validate
from serving.explain import explain_one
from serving.fallback import CircuitBreaker


def test_the_breaker_opens_after_n_failures_and_lets_one_trial_through_after_the_pause():
    now = [0.0]
    breaker = CircuitBreaker(failures=3, reset_seconds=10, clock=lambda: now[0])
    for _ in range(2):
        breaker.failure()
    assert breaker.allow() and breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and not breaker.allow()  # half-open: one trial only
    breaker.failure()  # the trial failed: open again
    assert breaker.state == "open"
    now[0] = 20.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


ARMS = (Arm("control", "alias", "champion", 0.5, True), Arm("challenger", "alias", "challenger", 0.3),
        Arm("rules", "rules", "", 0.2))


def test_assignment_is_sticky_deterministic_and_follows_the_shares():
    experiment = Experiment("exp-1", ARMS)
    users = range(1, 20_001)
    arms = [experiment.assign(u).name for u in users]

    assert arms == [Experiment("exp-1", ARMS).assign(u).name for u in users]
    shares = {a.name: arms.count(a.name) / len(arms) for a in ARMS}
    assert shares == pytest.approx({"control": 0.5, "challenger": 0.3, "rules": 0.2}, abs=0.015)
    other = [Experiment("exp-2", ARMS).assign(u).name for u in users]
    assert 0.3 < np.mean([a == b for a, b in zip(arms, other, strict=True)]) < 0.5  # independent per experiment


@pytest.mark.parametrize(("arms", "message"), [
    (ARMS[:1], "at least two arms"),
    ((ARMS[0], dataclasses.replace(ARMS[1], share=0.6)), "sum to"),
    ((ARMS[0], dataclasses.replace(ARMS[1], is_control=True, share=0.5)), "exactly one arm"),
    ((ARMS[0], Arm("v", "version", "abc", 0.5)), "not a number"),
    ((ARMS[0], Arm("x", "bandit", "", 0.5)), "kind"),
])
def test_arms_that_cannot_run_are_refused(arms, message):
    with pytest.raises(ExperimentError, match=message):
        validate(arms)


def test_every_action_has_a_known_family_and_an_unknown_one_is_refused():
    assert set(families.ACTION_FAMILIES) <= set(families.FAMILIES)
    assert families.action_family(ACTIONS[0]) == "none"
    odd = dataclasses.replace(ACTIONS[1], id=99, family="horoscope")
    with pytest.raises(families.UnknownActionFamilyError, match="horoscope"):
        families.action_family(odd)


def test_planned_amounts_default_to_the_catalog_and_follow_a_registered_planner():
    raw = np.zeros((2, len(FEATURE_NAMES)))
    assert np.array_equal(families.planned_amounts(raw)[0], [a.amount for a in ACTIONS])
    families.register_planner("investment_suggestion", lambda raw, action: np.full(len(raw), 7.0))
    try:
        planned = families.planned_amounts(raw)
    finally:
        families.reset_planners()
    for action in ACTIONS:
        expected = 7.0 if families.ACTION_FAMILIES[action.id] == "investment_suggestion" else action.amount
        assert planned[1, action.id] == expected


def test_an_explanation_quotes_the_users_numbers():
    raw = np.zeros(len(FEATURE_NAMES))
    raw[FEATURE_NAMES.index("savings_rate")] = 0.034
    save_more = next(a.id for a in ACTIONS if a.type == "SAVE_MORE")

    assert explain_one(raw, save_more).startswith("You saved 3% of your income in the last 30 days")


def test_the_online_and_the_batch_explanation_are_the_same_text():
    from serving.explain import explanations

    rng = np.random.default_rng(5)
    raw = rng.uniform(-3, 30, (200, len(FEATURE_NAMES)))
    raw[:5] = np.array([0.04, -0.04, 0.96, 2.0, -0.0])[:, None]  # rounding edges
    ids = rng.integers(0, len(ACTIONS), 200)

    assert explanations(raw, ids).to_pylist() == [explain_one(r, a) for r, a in zip(raw, ids, strict=True)]


def test_prefetch_keeps_order_and_hands_errors_to_the_consumer():
    from serving.prefetch import prefetch

    def numbers():
        yield from range(5)
        raise RuntimeError("producer broke")

    seen = []
    with pytest.raises(RuntimeError, match="producer broke"):
        for n in prefetch(numbers()):
            seen.append(n)
    assert seen == [0, 1, 2, 3, 4]
    closed = []

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append(True)

    for n in prefetch(endless()):
        if n == 3:
            break
    assert closed == [True]  # the consumer stopped early: the producer was closed
