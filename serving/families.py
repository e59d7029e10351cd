"""Action families and the planner seam: which family an action belongs to, and who computes its amount.

Every catalog action belongs to one family (`fincoach.actions.FAMILIES`: coaching nudges, goal suggestions,
predictive spending alerts, budget suggestions, risk-adjusted investment suggestions; NO_ACTION is `none`).
The catalog names it (`Action.family`); this module only plugs planners into families.

A planner computes the amount an action names, per user, from the raw features. The default planner of
every family is the catalog amount. A later issue plugs real planners (budget, debt, goals) in with
`register_planner("goal_suggestion", plan_goal_amounts)`: batch and online scoring both call
`planned_amounts`, and the guardrails check the planned amount, not the catalog's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fincoach.actions import ACTIONS, FAMILIES, N_ACTIONS, Action

# planner(raw features (n, N_FEATURES), action) -> amount per user (n,)
Planner = Callable[[np.ndarray, Action], np.ndarray]


class UnknownActionFamilyError(ValueError):
    """An action names a family that is not in the catalog's FAMILIES."""


def action_family(action: Action) -> str:
    """The family of an action (its catalog field), checked against the families planners know."""
    if action.family not in FAMILIES:
        raise UnknownActionFamilyError(
            f"action {action.id} ({action.type}) has family {action.family!r}: "
            f"give it one of {', '.join(FAMILIES)} in fincoach/actions.py"
        )
    return action.family


def catalog_amount(raw: np.ndarray, action: Action) -> np.ndarray:
    """The default planner: the amount the catalog names, for every user."""
    return np.full(len(raw), float(action.amount))


_PLANNERS: dict[str, Planner] = {family: catalog_amount for family in FAMILIES}

ACTION_FAMILIES = np.array([action_family(a) for a in ACTIONS], dtype=object)  # (N_ACTIONS,) by action id
CATALOG_AMOUNTS = np.array([float(a.amount) for a in ACTIONS])


def register_planner(family: str, planner: Planner) -> None:
    """Make `planner` compute the amounts of every action of `family` (batch and online)."""
    if family not in FAMILIES:
        raise UnknownActionFamilyError(f"unknown family {family!r}; families are {', '.join(FAMILIES)}")
    _PLANNERS[family] = planner


def reset_planners() -> None:
    """Back to the catalog amount for every family."""
    for family in FAMILIES:
        _PLANNERS[family] = catalog_amount


def planned_amounts(raw: np.ndarray) -> np.ndarray:
    """(n, N_ACTIONS) amount each action would name for each user, by its family's planner."""
    raw = np.atleast_2d(raw)
    if all(p is catalog_amount for p in _PLANNERS.values()):
        return np.broadcast_to(CATALOG_AMOUNTS, (len(raw), N_ACTIONS))
    out = np.empty((len(raw), N_ACTIONS))
    for action in ACTIONS:
        amounts = np.asarray(_PLANNERS[ACTION_FAMILIES[action.id]](raw, action), dtype=np.float64)
        out[:, action.id] = np.where(np.isfinite(amounts), np.maximum(amounts, 0.0), np.inf)
    return out
