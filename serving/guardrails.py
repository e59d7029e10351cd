"""Guardrails: vetoes applied to every recommendation before it is written or served (batch and online).

A vetoed action is never chosen, ranked or explored, whatever the policy scores it. The rules:

1. No investment suggestion to a user with high-interest debt (APR >= `guardrail_high_interest_apr`) or
   without an emergency fund (< `guardrail_min_emergency_fund_months` of spending saved). This is stricter
   than "high-interest debt and no emergency fund": either one alone vetoes.
2. No action that moves money (saving, investing, extra debt payment, goal contributions) for more than
   the user's disposable income (30-day income - 30-day spend, at least 0); a planned amount that is not a
   finite number is vetoed too.
3. Nudge frequency cap: a user who was served `nudge_cap` nudges (anything but NO_ACTION) within
   `nudge_cap_window_hours` gets NO_ACTION only.
4. Opt-out: a user in app.coaching_opt_outs gets NO_ACTION only.

NO_ACTION is never vetoed, so every user always has an allowed action. `violations` states the same rules
one recommendation at a time (readable, and what the property tests check against).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fincoach.actions import ACTIONS, N_ACTIONS
from fincoach.feature_spec import feature_index
from fincoach.settings import get_settings
from serving.families import ACTION_FAMILIES

# Types that move the user's money somewhere (families of goal contributions and investments do too).
MONEY_TYPES = frozenset({"SAVE_MORE", "BUILD_EMERGENCY_FUND", "INVEST", "PAY_DEBT_EXTRA", "ADJUST_GOAL"})
MONEY_FAMILIES = frozenset({"investment_suggestion"})

_TYPES = np.array([a.type for a in ACTIONS], dtype=object)
_COL = {name: feature_index(name) for name in (
    "monthly_income", "monthly_spend", "debt_total", "max_debt_apr", "emergency_fund_months")}
IS_NO_ACTION = _TYPES == "NO_ACTION"
IS_INVESTMENT = (_TYPES == "INVEST") | (ACTION_FAMILIES == "investment_suggestion")
MOVES_MONEY = np.array([a.type in MONEY_TYPES or f in MONEY_FAMILIES
                        for a, f in zip(ACTIONS, ACTION_FAMILIES, strict=True)])


@dataclass(frozen=True)
class UserContext:
    """What the guardrails need besides features, per user: opt-out and nudges served in the cap window."""

    opted_out: np.ndarray  # (n,) bool
    recent_nudges: np.ndarray  # (n,) int

    @classmethod
    def none(cls, n: int) -> UserContext:
        """No opt-out, no recent nudges (a request scored by features alone)."""
        return cls(np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64))


@dataclass(frozen=True)
class Limits:
    """The thresholds of the guardrails (from settings)."""

    high_interest_apr: float
    min_emergency_fund_months: float
    nudge_cap: int

    @classmethod
    def from_settings(cls) -> Limits:
        """Limits in effect."""
        s = get_settings()
        return cls(s.guardrail_high_interest_apr, s.guardrail_min_emergency_fund_months, s.nudge_cap)


def disposable_income(raw: np.ndarray) -> np.ndarray:
    """(n,) 30-day income minus 30-day spend, never below 0."""
    raw = np.atleast_2d(raw)
    return np.maximum(raw[:, _COL["monthly_income"]] - raw[:, _COL["monthly_spend"]], 0.0)


def allowed(raw: np.ndarray, amounts: np.ndarray, context: UserContext, limits: Limits | None = None) -> np.ndarray:
    """(n, N_ACTIONS) bool: True where no guardrail vetoes the action for the user."""
    limits = limits or Limits.from_settings()
    raw = np.atleast_2d(raw)
    n = len(raw)
    ok = np.ones((n, N_ACTIONS), dtype=bool)
    costly_debt = (raw[:, _COL["debt_total"]] > 0) & (raw[:, _COL["max_debt_apr"]] >= limits.high_interest_apr)
    no_fund = ~(raw[:, _COL["emergency_fund_months"]] >= limits.min_emergency_fund_months)  # NaN: no fund
    ok[:, IS_INVESTMENT] &= ~(costly_debt | no_fund)[:, None]
    affordable = np.isfinite(amounts) & (amounts <= disposable_income(raw)[:, None])
    ok &= ~MOVES_MONEY | affordable
    ok &= IS_NO_ACTION | np.isfinite(amounts)
    silenced = context.opted_out.astype(bool) | (context.recent_nudges >= limits.nudge_cap)
    ok[silenced] = IS_NO_ACTION
    return ok


def violations(features: Mapping[str, float], action_id: int, amount: float, opted_out: bool,
               recent_nudges: int, limits: Limits | None = None) -> list[str]:
    """The guardrails one recommendation breaks (empty when it may be served)."""
    limits = limits or Limits.from_settings()
    action = ACTIONS[action_id]
    broken = []
    if action.type == "NO_ACTION":
        return broken
    if opted_out:
        broken.append("user opted out of coaching")
    if recent_nudges >= limits.nudge_cap:
        broken.append(f"{recent_nudges} nudges in the cap window (cap {limits.nudge_cap})")
    if IS_INVESTMENT[action_id]:
        if features["debt_total"] > 0 and features["max_debt_apr"] >= limits.high_interest_apr:
            broken.append("investment suggested with high-interest debt")
        if not features["emergency_fund_months"] >= limits.min_emergency_fund_months:
            broken.append("investment suggested without an emergency fund")
    if not np.isfinite(amount):
        broken.append("amount is not a finite number")
    elif MOVES_MONEY[action_id]:
        disposable = max(features["monthly_income"] - features["monthly_spend"], 0.0)
        if amount > disposable:
            broken.append(f"moves {amount:.2f}, more than the disposable income {disposable:.2f}")
    return broken
