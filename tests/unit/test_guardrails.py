"""No served recommendation breaks a guardrail, whatever the policy scores, on the batch and the online path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fincoach.actions import ACTIONS, N_ACTIONS
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION
from fincoach.policy import Policy
from serving import families
from serving.batch import _score_chunk
from serving.fallback import Tier
from serving.guardrails import Limits, UserContext, violations
from serving.model_loader import LoadedPolicy
from serving.online import Scorer

LIMITS = Limits.from_settings()
INCOME = FEATURE_NAMES.index("monthly_income")
AT = datetime(2026, 3, 1, tzinfo=UTC)

money = st.floats(0, 20_000, allow_nan=False)
user_state = st.fixed_dictionaries(
    {
        "monthly_income": money,
        "monthly_spend": money,
        "savings_rate": st.floats(-1, 1),
        "emergency_fund_months": st.one_of(st.just(0.0), st.just(LIMITS.min_emergency_fund_months),
                                           st.floats(0, 24)),
        "debt_total": st.one_of(st.just(0.0), st.floats(0, 100_000)),
        "max_debt_apr": st.one_of(st.just(LIMITS.high_interest_apr), st.floats(0, 0.5)),
        "has_active_goal": st.sampled_from([0.0, 1.0]),
        "goal_progress": st.floats(0, 1),
        "opted_out": st.booleans(),
        "recent_nudges": st.integers(0, LIMITS.nudge_cap + 2),
        # whatever the policy thinks: huge, tied or negative scores for every action
        "scores": st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(1e6)), min_size=N_ACTIONS, max_size=N_ACTIONS),
    }
)
planner = st.sampled_from([None, 0.5, 3.0])  # catalog amounts, or amounts scaled by the user's income


class Adversary(Policy):
    """Scores taken from the generated states, in order (the property chooses them)."""

    version = "adversary/1"

    def __init__(self, scores: np.ndarray):
        self.scores = scores

    def action_scores(self, raw: np.ndarray) -> np.ndarray:
        return self.scores[: len(raw)]


def _frame(states: list[dict]) -> pd.DataFrame:
    rows = []
    for i, state in enumerate(states):
        features = {name: 0.5 for name in FEATURE_NAMES} | {k: v for k, v in state.items() if k in FEATURE_NAMES}
        rows.append({"user_id": i + 1, "feature_spec_version": FEATURE_SPEC_VERSION, "known_user": True,
                     "opted_out": state["opted_out"], "recent_nudges": state["recent_nudges"], **features})
    return pd.DataFrame(rows)


def _with_planner(scale: float | None) -> None:
    families.reset_planners()
    if scale is not None:
        for family in families.FAMILIES:
            families.register_planner(family, lambda raw, action, s=scale: raw[:, INCOME] * s / 10)


def _assert_allowed(features: dict, action_id: int, amount: float, state: dict) -> None:
    broken = violations(features, action_id, amount, state["opted_out"], state["recent_nudges"], LIMITS)
    assert broken == [], f"{ACTIONS[action_id].type} for {amount} broke {broken} for {state}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states=st.lists(user_state, min_size=1, max_size=25), scale=planner, seed=st.integers(0, 2**32 - 1))
def test_no_batch_recommendation_breaks_a_guardrail(states, scale, seed):
    frame = _frame(states)
    loaded = LoadedPolicy(Adversary(np.array([s["scores"] for s in states])), "champion", "adversary/1")
    _with_planner(scale)
    try:
        chunk = _score_chunk(frame, loaded, 3, 0.3, np.random.default_rng(seed), "prop", AT, AT + timedelta(1))
    finally:
        families.reset_planners()

    assert chunk.users == len(states)  # every user gets at least NO_ACTION
    by_user = frame.set_index("user_id")
    for row in chunk.rows.to_pylist():
        features = by_user.loc[row["user_id"], list(FEATURE_NAMES)].to_dict()
        _assert_allowed(features, row["action_id"], row["parameters"]["amount"], states[row["user_id"] - 1])


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    """A scorer that is never started: no database, no registry, no background threads."""
    return Scorer(engine=None)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=user_state, scale=planner)
def test_no_online_recommendation_breaks_a_guardrail(scorer, state, scale):
    features = {name: 0.5 for name in FEATURE_NAMES} | {k: v for k, v in state.items() if k in FEATURE_NAMES}
    raw = np.array([[features[n] for n in FEATURE_NAMES]])
    scorer.chain.swap_champion(Tier("champion", Adversary(np.array([state["scores"]])), "adversary/1"))
    context = UserContext(np.array([state["opted_out"]]), np.array([state["recent_nudges"]]))
    _with_planner(scale)
    try:
        answers = [scorer._decide(raw, context, user_id=1)[0] for _ in range(5)]  # exploration included
    finally:
        families.reset_planners()

    for answer in answers:
        _assert_allowed(features, answer.action_id, answer.amount, state)


def test_the_checker_itself_catches_each_guardrail():
    rich = {"monthly_income": 5000.0, "monthly_spend": 1000.0, "emergency_fund_months": 6.0, "debt_total": 0.0,
            "max_debt_apr": 0.0}
    invest = next(a.id for a in ACTIONS if a.type == "INVEST")
    assert violations(rich, invest, 100, False, 0, LIMITS) == []
    assert violations(rich | {"debt_total": 10.0, "max_debt_apr": 0.2}, invest, 100, False, 0, LIMITS)
    assert violations(rich | {"emergency_fund_months": 0.0}, invest, 100, False, 0, LIMITS)
    assert violations(rich, invest, 5000, False, 0, LIMITS)
    assert violations(rich, invest, 100, True, 0, LIMITS)
    assert violations(rich, invest, 100, False, LIMITS.nudge_cap, LIMITS)
    assert violations(rich, 0, 0, True, 99, LIMITS) == []  # NO_ACTION is always allowed
