"""The action catalog: every coaching action with a stable id, and which actions make sense for a user.

Catalog v2 keeps the ids 0..9 of v1 and appends 10..17. Every action has a `family` (how the app presents
it) and an `amount_bucket` (none / small / medium / large, from the amount it names). `action_mask` reads
raw features (feature spec v2) by name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from fincoach.feature_spec import feature_index

FAMILIES = (
    "none", "coaching_nudge", "goal_suggestion", "spending_alert", "budget_suggestion", "investment_suggestion",
)
AMOUNT_BUCKETS = ("none", "small", "medium", "large")


@dataclass(frozen=True)
class Action:
    """One coaching intervention. `id` is stable: it is stored in logs and models."""

    id: int
    type: str
    category: str
    amount: float  # the amount the nudge names, in the user's currency (0 when none)
    urgency: str  # low | medium | high
    template: str  # user-facing text; {amount} is filled in
    family: str  # one of FAMILIES
    amount_bucket: str  # one of AMOUNT_BUCKETS: none (0), small (< 75), medium (< 200), large


ACTIONS: tuple[Action, ...] = (
    Action(0, "NO_ACTION", "none", 0, "low", "No coaching this time.", "none", "none"),
    Action(1, "SAVE_MORE", "savings", 25, "low", "Move {amount} to savings this week.", "coaching_nudge", "small"),
    Action(2, "SAVE_MORE", "savings", 100, "medium", "Move {amount} to savings this week.", "coaching_nudge", "medium"),
    Action(3, "REDUCE_SPENDING", "dining", 50, "medium", "Dining is over budget: try spending {amount} less this week.", "spending_alert", "small"),
    Action(4, "REDUCE_SPENDING", "shopping", 50, "medium", "Shopping is over budget: try spending {amount} less this week.", "spending_alert", "small"),
    Action(5, "PAY_DEBT_EXTRA", "highest_apr", 100, "high", "Pay {amount} extra on the card with the highest APR first.", "coaching_nudge", "medium"),
    Action(6, "BUILD_EMERGENCY_FUND", "savings", 50, "high", "Put {amount} into an emergency fund: aim for three months of spending.", "coaching_nudge", "small"),
    Action(7, "SET_GOAL", "none", 0, "low", "Set a savings goal: people with a goal save more.", "goal_suggestion", "none"),
    Action(8, "REVIEW_BUDGET", "all", 0, "low", "Take two minutes to review this month's budget.", "budget_suggestion", "none"),
    Action(9, "INVEST", "investments", 100, "low", "Your emergency fund is solid: consider investing {amount} a month.", "investment_suggestion", "medium"),
    # v2
    Action(10, "ADJUST_GOAL", "goal", 0, "medium", "Your goal is off pace: move the date or lower the target so it stays reachable.", "goal_suggestion", "none"),
    Action(11, "SPENDING_ALERT", "all", 0, "high", "At this pace you will spend more than usual this month: slow down now.", "spending_alert", "none"),
    Action(12, "SAVE_MORE", "savings", 250, "medium", "Move {amount} to savings this week.", "coaching_nudge", "large"),
    Action(13, "PAY_DEBT_EXTRA", "highest_apr", 25, "medium", "Pay {amount} extra on the card with the highest APR first.", "coaching_nudge", "small"),
    Action(14, "PAY_DEBT_EXTRA", "highest_apr", 250, "high", "Pay {amount} extra on the card with the highest APR first.", "coaching_nudge", "large"),
    Action(15, "INVEST", "investments", 25, "low", "Start small: invest {amount} a month.", "investment_suggestion", "small"),
    Action(16, "INVEST", "investments", 500, "low", "Your finances are strong: consider investing {amount} a month.", "investment_suggestion", "large"),
    Action(17, "REDUCE_SPENDING", "entertainment", 50, "medium", "Entertainment is over budget: try spending {amount} less this week.", "spending_alert", "small"),
)

N_ACTIONS = len(ACTIONS)
NO_ACTION = 0
ACTION_TYPES: tuple[str, ...] = tuple(dict.fromkeys(a.type for a in ACTIONS))
GOAL_OFF_PACE = 0.8  # goal_pace_ratio below this: the goal will not be reached by its date
SPEND_AHEAD = 1.15  # spending_velocity above this: on pace to overspend this month


def amount_bucket(amount: float) -> str:
    """The bucket of a named amount: none (0), small (< 75), medium (< 200), large."""
    if amount <= 0:
        return "none"
    return "small" if amount < 75 else "medium" if amount < 200 else "large"


def ids_of(action_type: str) -> list[int]:
    """Ids of every action of `action_type`."""
    return [a.id for a in ACTIONS if a.type == action_type]


def _version() -> str:
    digest = hashlib.sha256(json.dumps([asdict(a) for a in ACTIONS], sort_keys=True).encode()).hexdigest()
    return f"v2-{digest[:8]}"


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
    has_goal = raw[:, feature_index("has_active_goal")] >= 0.5
    checking = raw[:, feature_index("checking_balance")]
    for aid in ids_of("PAY_DEBT_EXTRA"):
        mask[:, aid] = debt > 0  # no extra payment on debt one does not have
    mask[:, 7] = ~has_goal  # set a goal only when there is none
    safe_to_invest = (efund >= 3) & ((debt <= 0) | (apr < 0.10))  # never with costly debt or no buffer
    for aid in ids_of("INVEST"):
        mask[:, aid] = safe_to_invest
    mask[:, 16] &= checking >= ACTIONS[16].amount  # the large amounts only with the cash for them
    # ADJUST_GOAL only for an active goal that is off pace; the predictive alert only when spending runs
    # ahead of the month.
    mask[:, 10] = has_goal & (raw[:, feature_index("goal_pace_ratio")] < GOAL_OFF_PACE)
    mask[:, 11] = raw[:, feature_index("spending_velocity")] > SPEND_AHEAD
    mask[:, 12] = checking >= ACTIONS[12].amount
    mask[:, 14] &= checking >= ACTIONS[14].amount
    return mask


def catalog_document() -> dict:
    """The catalog as a JSON-able document (logged with every model)."""
    return {"version": ACTION_CATALOG_VERSION, "actions": [asdict(a) for a in ACTIONS]}
