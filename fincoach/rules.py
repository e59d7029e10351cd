"""The rule-based coaching policy: the baseline every learned policy must beat, and the serving fallback.

Rules, in priority order (the first that applies is the recommendation; later ones rank below it):
1. debt with APR >= 15%                        → PAY_DEBT_EXTRA (highest APR first)
2. emergency fund under 1 month of spending    → BUILD_EMERGENCY_FUND
3. saving under 5% and discretionary > 30%     → REDUCE_SPENDING on dining
4. no active goal                              → SET_GOAL
5. saving under 15%                            → SAVE_MORE (small amount)
6. emergency fund >= 3 months, no costly debt  → INVEST
7. otherwise                                   → REVIEW_BUDGET
"""

from __future__ import annotations

import numpy as np

from fincoach.actions import N_ACTIONS
from fincoach.feature_spec import feature_index
from fincoach.policy import Policy

RULES_VERSION = "rules-v1"


class RulePolicy(Policy):
    """Deterministic rules over raw features; scores encode the priority of the rules that apply."""

    version = RULES_VERSION

    def action_scores(self, raw: np.ndarray) -> np.ndarray:
        """Score 10 - priority for each action whose rule applies, 0 for REVIEW_BUDGET, -1 otherwise."""
        raw = np.atleast_2d(raw)
        col = {name: raw[:, feature_index(name)] for name in (
            "debt_total", "max_debt_apr", "emergency_fund_months", "savings_rate",
            "discretionary_share", "has_active_goal",
        )}
        scores = np.full((raw.shape[0], N_ACTIONS), -1.0)
        scores[:, 8] = 0.0  # REVIEW_BUDGET: always applicable, lowest priority
        rules = [
            (5, (col["debt_total"] > 0) & (col["max_debt_apr"] >= 0.15)),
            (6, col["emergency_fund_months"] < 1),
            (3, (col["savings_rate"] < 0.05) & (col["discretionary_share"] > 0.30)),
            (7, col["has_active_goal"] < 0.5),
            (1, col["savings_rate"] < 0.15),
            (9, (col["emergency_fund_months"] >= 3) & ((col["debt_total"] <= 0) | (col["max_debt_apr"] < 0.10))),
        ]
        for priority, (action, applies) in enumerate(rules):
            scores[:, action] = np.where(applies, 10.0 - priority, scores[:, action])
        return scores
