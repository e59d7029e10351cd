"""What accepting a nudge changes: transfers, spending cuts, goals, habits (net worth is unchanged)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fincoach.actions import ACTION_TYPES, ACTIONS
from training.sim_features import WEEKS_PER_MONTH
from training.sim_init import SPLIT
from training.user_model import AMOUNT_OF, TYPE_OF

_SAVING_TYPES = [ACTION_TYPES.index("SAVE_MORE"), ACTION_TYPES.index("BUILD_EMERGENCY_FUND")]
_SAVING_IDS = [a.id for a in ACTIONS if TYPE_OF[a.id] in _SAVING_TYPES]
_CATEGORY = np.array([a.category for a in ACTIONS])


def move_from_checking(sim: Any, who: np.ndarray, amount: np.ndarray | float) -> np.ndarray:
    """Amount each user in `who` can move out of checking now (never more than is there)."""
    return np.where(who, np.minimum(amount, np.maximum(sim.checking, 0.0)), 0.0)


def apply_accepted(sim: Any, accepted: np.ndarray, actions: np.ndarray) -> None:
    """Behaviour change of the users who accepted their nudge."""
    if not accepted.any():
        return
    kind = np.where(accepted, TYPE_OF[actions], -1)
    amount = AMOUNT_OF[actions]

    def took(name: str) -> np.ndarray:
        return kind == ACTION_TYPES.index(name)

    saving = took("SAVE_MORE") | took("BUILD_EMERGENCY_FUND")
    move = move_from_checking(sim, saving, amount)
    sim.checking -= move
    sim.savings += move
    sim.goal_saved += np.where(sim.goal_active, move, 0.0)
    sim.save_habit += np.where(took("SAVE_MORE"), 0.2 * amount, 0.0)
    sim.save_habit += np.where(
        took("BUILD_EMERGENCY_FUND") & (sim.savings < 3.0 * sim.ref_spend_month), 10.0, 0.0
    )
    discretionary = sim.base_planned + sim.base_impulse
    category = _CATEGORY[actions]
    for j, name in enumerate(SPLIT):
        cut = took("REDUCE_SPENDING") & (category == name)
        sim.spend_cut[:, j] += np.where(
            cut, np.minimum(amount, 0.5 * sim.traits.split[:, j] * discretionary), 0.0
        )
    broad = np.where(took("REVIEW_BUDGET"), 0.05, 0.0) + np.where(took("SPENDING_ALERT"), 0.10, 0.0)
    sim.spend_cut += (broad * discretionary)[:, None] * sim.traits.split
    sim.volatility = np.where(took("REVIEW_BUDGET"), 0.9 * sim.volatility, sim.volatility)
    pay = np.minimum(move_from_checking(sim, took("PAY_DEBT_EXTRA"), amount), sim.debt)
    sim.checking -= pay
    sim.debt -= pay
    sim.debt_habit += np.where(took("PAY_DEBT_EXTRA"), 0.2 * amount, 0.0)
    new_goal = took("SET_GOAL") & ~sim.goal_active
    sim.goal_target = np.where(
        new_goal, np.maximum(2.0 * sim.base_income * WEEKS_PER_MONTH, 500.0), sim.goal_target
    )
    sim.goal_saved = np.where(new_goal, 0.0, sim.goal_saved)
    sim.goal_age = np.where(new_goal, 0.0, sim.goal_age)
    sim.goal_weeks = np.where(new_goal, 52.0, sim.goal_weeks)
    sim.goal_active = sim.goal_active | new_goal
    sim.save_habit += np.where(new_goal, 0.03 * sim.base_income, 0.0)
    sim.receptiveness[:, _SAVING_IDS] += np.where(new_goal, 0.3, 0.0)[:, None]  # a goal motivates saving
    replan = took("ADJUST_GOAL") & sim.goal_active  # a later date and a fresh commitment
    sim.goal_weeks = np.where(replan, sim.goal_weeks + 13.0, sim.goal_weeks)
    sim.save_habit += np.where(replan, 0.02 * sim.base_income, 0.0)
    invest = move_from_checking(sim, took("INVEST"), amount)
    sim.checking -= invest
    sim.investments += invest
