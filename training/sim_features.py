"""Raw features rebuilt from the simulator's state: a registry of feature name -> formula.

`rebuild` returns every feature of the spec in force, in spec order. A feature with a formula here is
computed from the state; a spec feature without one keeps the user's starting value for the whole episode
(carried forward: e.g. device, risk tolerance, session length, which the simulator does not model). The
registry covers spec v1 and the features of spec v2 (FEATURES_V2), so the same simulator serves either
spec: only the names the spec has are ever computed. 30-day figures come from the last four weeks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

WEEKS_PER_MONTH = 52 / 12
MONTH_WEEKS = 4  # the 30-day window, in weeks
TINY = 1e-6  # money below this (a millionth of a unit) counts as none when dividing by it
CARRIED = (  # spec-v2 features the simulator does not model: carried forward from the starting row
    "days_to_payday",
    "avg_session_minutes",
    "features_used_30d",
    "clicks_per_session",
    "mobile_device",
    "evening_session_share",
    "risk_tolerance",
)


def _sum4(s: Any, name: str) -> np.ndarray:
    return s.hist[name][:, -MONTH_WEEKS:].sum(axis=1)


def _spend4(s: Any) -> np.ndarray:
    return _sum4(s, "spend")


def _share(s: Any, name: str) -> np.ndarray:
    spend = _spend4(s)
    return np.where(spend > TINY, _sum4(s, name) / np.where(spend > TINY, spend, 1.0), 0.0)


def _income_m(s: Any) -> np.ndarray:
    return _sum4(s, "income") / MONTH_WEEKS * WEEKS_PER_MONTH


def _spend_m(s: Any) -> np.ndarray:
    return _spend4(s) / MONTH_WEEKS * WEEKS_PER_MONTH


def _savings_rate(s: Any) -> np.ndarray:
    income, spend = _income_m(s), _spend_m(s)
    rate = np.clip((income - spend) / np.where(income > TINY, income, 1.0), -1.0, 1.0)
    return np.where(income > TINY, rate, np.where(spend > TINY, -1.0, 0.0))


def _efund(s: Any) -> np.ndarray:
    spend = _spend_m(s)
    months = np.minimum(s.savings / np.where(spend > TINY, spend, 1.0), 24.0)
    return np.where(spend > TINY, months, np.where(s.savings > 0, 24.0, 0.0))


def _has_debt(s: Any) -> np.ndarray:
    return s.debt > 0.005


def _debt_to_income(s: Any) -> np.ndarray:
    income = _income_m(s)
    ratio = np.minimum(s.debt / (12.0 * np.where(income > TINY, income, 1.0)), 5.0)
    return np.where(income > TINY, ratio, np.where(_has_debt(s), 5.0, 0.0))


def _spend_trend(s: Any) -> np.ndarray:
    before = s.hist["spend"][:, :-MONTH_WEEKS].sum(axis=1) / 2.0  # mean 4-week spend of the 8 weeks before
    trend = _spend4(s) / np.where(before > TINY, before, 1.0)
    return np.where(before > TINY, np.minimum(trend, 5.0), 1.0)


def _velocity(s: Any) -> np.ndarray:
    spend = _spend4(s)
    pace = MONTH_WEEKS * s.hist["spend"][:, -1] / np.where(spend > TINY, spend, 1.0)
    return np.where(spend > TINY, np.minimum(pace, 5.0), 1.0)


def _balance_trend(s: Any) -> np.ndarray:
    change = s.hist["balance"][:, -1] - s.hist["balance"][:, -1 - MONTH_WEEKS]
    return np.clip(change / np.maximum(_sum4(s, "income") * 30.0 / 28.0, 100.0), -5.0, 5.0)


def _goal_pace(s: Any) -> np.ndarray:
    progress = s.goal_saved / s.goal_target
    elapsed = s.goal_age / s.goal_weeks
    pace = np.minimum(progress / np.where(elapsed > TINY, elapsed, 1.0), 3.0)
    return np.where(s.goal_active & (s.goal_age > 0), pace, 1.0)


FORMULAS: dict[str, Callable[[Any], np.ndarray]] = {
    # spec v1
    "monthly_income": _income_m,
    "monthly_spend": _spend_m,
    "savings_rate": _savings_rate,
    "essential_share": lambda s: _share(s, "essential"),
    "discretionary_share": lambda s: _share(s, "discretionary"),
    "spending_volatility": lambda s: s.volatility,
    "impulse_share": lambda s: _share(s, "impulse"),
    "checking_balance": lambda s: s.checking,
    "savings_balance": lambda s: s.savings,
    "emergency_fund_months": _efund,
    "debt_total": lambda s: np.where(_has_debt(s), s.debt, 0.0),
    "debt_to_income": _debt_to_income,
    "max_debt_apr": lambda s: np.where(_has_debt(s), s.apr, 0.0),
    "goal_progress": lambda s: np.where(s.goal_active, np.minimum(s.goal_saved / s.goal_target, 1.0), 0.0),
    "has_active_goal": lambda s: s.goal_active.astype(float),
    "sessions_30d": lambda s: _sum4(s, "sessions") * 30.0 / 28.0,
    "days_since_last_session": lambda s: s.days_since_session,
    "nudge_acceptance_rate": lambda s: (
        (s.prior_accepted + s.nudges_accepted) / (s.prior_shown + s.nudges_shown)
    ),
    "age": lambda s: s.age,
    # spec v2 (FEATURES_V2)
    "weekend_spend_share": lambda s: _share(s, "weekend"),
    "month_end_spend_share": lambda s: _share(s, "month_end"),
    "spend_trend": _spend_trend,
    "spending_velocity": _velocity,
    "balance_trend": _balance_trend,
    "dining_share": lambda s: _share(s, "dining"),
    "shopping_share": lambda s: _share(s, "shopping"),
    "saving_streak_weeks": lambda s: np.minimum(s.saving_streak, 52.0),
    "goal_pace_ratio": _goal_pace,
    "goals_achieved": lambda s: s.goals_achieved,
    "nudges_7d": lambda s: s.nudges_7d,
    "days_since_last_nudge": lambda s: np.minimum(s.days_since_nudge, 90.0),
    "market_interest_rate": lambda s: s.market["interest_rate"],
    "market_inflation_rate": lambda s: s.market["inflation_rate"],
    "market_return_3m": lambda s: s.market["return_3m"],
}


def rebuild(state: Any, names: Sequence[str], start: np.ndarray) -> np.ndarray:
    """(rows, len(names)) raw features: the formula of each name, or its column of `start` (carried)."""
    out = np.empty((len(start), len(names)))
    for j, name in enumerate(names):
        formula = FORMULAS.get(name)
        out[:, j] = formula(state) if formula is not None else start[:, j]
    return out


def carried_names(names: Sequence[str]) -> list[str]:
    """The names of `names` the simulator carries forward unchanged (no formula)."""
    return [n for n in names if n not in FORMULAS]
