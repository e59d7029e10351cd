"""The action catalog: every coaching action with a stable id, and which actions make sense for a user."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from fincoach.feature_spec import feature_index


@dataclass(frozen=True)
class Action:
    """One coaching intervention. `id` is stable: it is stored in logs and models."""

    id: int
    type: str
    category: str
    amount: float  # the amount the nudge names, in the user's currency (0 when none)
    urgency: str  # low | medium | high
    template: str  # user-facing text; {amount} is filled in


ACTIONS: tuple[Action, ...] = (
    Action(0, "NO_ACTION", "none", 0, "low", "No coaching this time."),
    Action(1, "SAVE_MORE", "savings", 25, "low", "Move {amount} to savings this week."),
    Action(2, "SAVE_MORE", "savings", 100, "medium", "Move {amount} to savings this week."),
    Action(3, "REDUCE_SPENDING", "dining", 50, "medium", "Dining is over budget: try spending {amount} less this week."),
    Action(4, "REDUCE_SPENDING", "shopping", 50, "medium", "Shopping is over budget: try spending {amount} less this week."),
    Action(5, "PAY_DEBT_EXTRA", "highest_apr", 100, "high", "Pay {amount} extra on the card with the highest APR first."),
    Action(6, "BUILD_EMERGENCY_FUND", "savings", 50, "high", "Put {amount} into an emergency fund: aim for three months of spending."),
    Action(7, "SET_GOAL", "none", 0, "low", "Set a savings goal: people with a goal save more."),
    Action(8, "REVIEW_BUDGET", "all", 0, "low", "Take two minutes to review this month's budget."),
    Action(9, "INVEST", "investments", 100, "low", "Your emergency fund is solid: consider investing {amount} a month."),
)

N_ACTIONS = len(ACTIONS)
NO_ACTION = 0


def _version() -> str:
    digest = hashlib.sha256(json.dumps([asdict(a) for a in ACTIONS], sort_keys=True).encode()).hexdigest()
    return f"v1-{digest[:8]}"


ACTION_CATALOG_VERSION = _version()


def action_text(action_id: int) -> str:
    """User-facing text of an action."""
    a = ACTIONS[action_id]
    return a.template.format(amount=f"{a.amount:.0f}")


def action_mask(raw: np.ndarray) -> np.ndarray:
    """(n, N_ACTIONS) bool: True where the action makes sense for the user (raw features in spec order)."""
    raw = np.atleast_2d(raw)
    n = raw.shape[0]
    mask = np.ones((n, N_ACTIONS), dtype=bool)
    debt = raw[:, feature_index("debt_total")]
    apr = raw[:, feature_index("max_debt_apr")]
    efund = raw[:, feature_index("emergency_fund_months")]
    has_goal = raw[:, feature_index("has_active_goal")]
    mask[:, 5] = debt > 0  # no extra payment on debt one does not have
    mask[:, 7] = has_goal < 0.5  # set a goal only when there is none
    mask[:, 9] = (efund >= 3) & ((debt <= 0) | (apr < 0.10))  # never invest with costly debt or no buffer
    return mask


def catalog_document() -> dict:
    """The catalog as a JSON-able document (logged with every model)."""
    return {"version": ACTION_CATALOG_VERSION, "actions": [asdict(a) for a in ACTIONS]}
