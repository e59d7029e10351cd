"""Short explanations of recommendations, built from the features that drove them.

Each action type (or, for a type without its own, its family) has a template of literal text and feature
values; a template may name a v2 feature and fall back to a v1 one when the spec does not have it yet.
Explanations are built column-wise with Arrow (one pass per action present), so a million rows cost
about as much as a few string copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fincoach.actions import ACTIONS
from fincoach.feature_spec import FEATURE_NAMES, feature_index
from serving.families import ACTION_FAMILIES


@dataclass(frozen=True)
class Value:
    """A feature value in an explanation: `pct` (0.03 → 3%), `months` (one decimal) or `money` (whole)."""

    feature: str
    kind: str = "pct"


Template = tuple[str | Value, ...]

_SAVINGS = ("Your savings of ", Value("savings_balance", "money"), " cover ",
            Value("emergency_fund_months", "months"), " months of spending")
_BY_TYPE: dict[str, Template] = {
    "NO_ACTION": ("Nothing needs your attention right now.",),
    "SAVE_MORE": ("You saved ", Value("savings_rate"), " of your income in the last 30 days; 15% is a healthy "
                  "target."),
    "PAY_DEBT_EXTRA": ("Your costliest debt charges ", Value("max_debt_apr"), " a year on ",
                       Value("debt_total", "money"), " outstanding."),
    "BUILD_EMERGENCY_FUND": (*_SAVINGS, "; three months is a safe buffer."),
    "SET_GOAL": ("You have no active savings goal; your savings rate is ", Value("savings_rate"), "."),
    "ADJUST_GOAL": ("Your goals are ", Value("goal_progress"), " of the way to their targets."),
    "REVIEW_BUDGET": ("Your daily spending varied by ", Value("spending_volatility"), " over the last 30 days."),
    "INVEST": (*_SAVINGS, " and you have no costly debt."),
}
# REDUCE_SPENDING names its category's share when the spec has it (v2), else the discretionary share.
_CATEGORY_SHARE = {"dining": "dining_share", "shopping": "shopping_share"}
_BY_FAMILY: dict[str, Template] = {
    "spending_alert": ("Your spending in the last 30 days was ", Value("monthly_spend", "money"), "."),
    "budget_suggestion": ("Discretionary spending was ", Value("discretionary_share"), " of your spending."),
    "goal_suggestion": ("Your goals are ", Value("goal_progress"), " of the way to their targets."),
    "coaching_nudge": ("You saved ", Value("savings_rate"), " of your income in the last 30 days."),
    "investment_suggestion": _BY_TYPE["INVEST"],
}


def _template(action_id: int) -> Template:
    action = ACTIONS[action_id]
    if action.type == "REDUCE_SPENDING":
        share = _CATEGORY_SHARE.get(action.category)
        if share in FEATURE_NAMES:
            return (f"{action.category.capitalize()} was ", Value(share), " of your spending in the last 30 days.")
        return ("Dining, shopping, entertainment and travel were ", Value("discretionary_share"),
                " of your spending in the last 30 days.")
    if ACTION_FAMILIES[action_id] == "spending_alert" and "spending_velocity" in FEATURE_NAMES:
        return ("You are spending at ", Value("spending_velocity"), " of your usual pace this month.")
    return _BY_TYPE.get(action.type) or _BY_FAMILY[ACTION_FAMILIES[action_id]]


TEMPLATES: tuple[Template, ...] = tuple(_template(a.id) for a in ACTIONS)
_INDEX = {piece.feature: feature_index(piece.feature) for t in TEMPLATES for piece in t if isinstance(piece, Value)}


def _format(values: np.ndarray, kind: str) -> pa.Array:
    """Vectorised, and exactly what `_format_one` gives for each value."""
    if kind == "money":
        return pa.array(np.rint(values).astype(np.int64)).cast(pa.string())
    if kind == "pct":
        return pc.binary_join_element_wise(pa.array(np.rint(values * 100).astype(np.int64)).cast(pa.string()),
                                           "%", "")
    tenths = np.rint(np.abs(values) * 10).astype(np.int64)  # months: one decimal
    sign = np.where((values < 0) & (tenths > 0), "-", "")
    return pc.binary_join_element_wise(pa.array(sign, pa.string()), pa.array(tenths // 10).cast(pa.string()), ".",
                                       pa.array(tenths % 10).cast(pa.string()), "")


def _format_one(value: float, kind: str) -> str:
    if kind == "money":
        return str(int(np.rint(value)))
    if kind == "pct":
        return f"{int(np.rint(value * 100))}%"
    tenths = int(np.rint(abs(value) * 10))
    return f"{'-' if value < 0 and tenths else ''}{tenths // 10}.{tenths % 10}"


def explanations(raw: np.ndarray, action_ids: np.ndarray) -> pa.Array:
    """One explanation per (user row of `raw`, action id) pair, as an Arrow string array."""
    raw = np.atleast_2d(raw)
    action_ids = np.asarray(action_ids)
    out = np.empty(len(action_ids), dtype=object)
    for action_id in np.unique(action_ids):
        rows = np.flatnonzero(action_ids == action_id)
        parts = [
            piece if isinstance(piece, str) else _format(raw[rows, feature_index(piece.feature)], piece.kind)
            for piece in TEMPLATES[action_id]
        ]
        if all(isinstance(p, str) for p in parts):
            text = pa.array(["".join(parts)] * len(rows), pa.string())
        else:
            text = pc.binary_join_element_wise(*parts, "")
        out[rows] = text.to_numpy(zero_copy_only=False)
    return pa.array(out, pa.string())


def explain_one(raw_row: np.ndarray, action_id: int) -> str:
    """The explanation of one action for one user (the online path: plain Python, same text)."""
    raw_row = np.ravel(raw_row)
    return "".join(piece if isinstance(piece, str) else _format_one(raw_row[_INDEX[piece.feature]], piece.kind)
                   for piece in TEMPLATES[action_id])
