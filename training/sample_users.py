"""Plausible feature snapshots drawn at random: for tests and smoke runs of training without the pipelines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fincoach.feature_spec import FEATURE_NAMES


def sample_snapshot(n: int, seed: int = 0) -> pd.DataFrame:
    """`n` users with `user_id` and every raw feature of the spec, internally consistent, seeded."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 76, n).astype(float)
    income = rng.lognormal(np.log(3500), 0.5, n) * np.where(rng.random(n) < 0.05, 0.0, 1.0)
    spend = np.where(
        income > 0, income * np.clip(rng.normal(0.9, 0.15, n), 0.4, 1.5), rng.lognormal(np.log(1500), 0.4, n)
    )
    essential = rng.beta(6, 4, n)
    discretionary = (1 - essential) * rng.beta(5, 2, n)
    impulse = discretionary * rng.beta(2, 5, n)
    checking = rng.lognormal(np.log(0.5 * np.maximum(income, 500)), 0.8, n)
    checking = np.where(rng.random(n) < 0.05, -rng.uniform(0, 300, n), checking)
    savings = np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(np.log(1.5 * spend), 1.0, n))
    has_debt = rng.random(n) < 0.55
    card = rng.random(n) < 0.6
    debt = np.where(has_debt, rng.lognormal(np.log(6000), 1.0, n), 0.0)
    apr = np.where(
        has_debt,
        np.clip(np.where(card, rng.normal(0.22, 0.04, n), rng.normal(0.08, 0.03, n)), 0.01, 0.35),
        0.0,
    )
    has_goal = (rng.random(n) < 0.4).astype(float)
    sessions = rng.negative_binomial(2, 0.2, n).astype(float)
    days_since = np.where(sessions > 0, np.minimum(rng.exponential(3, n), 30), rng.uniform(30, 90, n)).round()
    safe_income = np.where(income > 0, income, 1.0)
    frame = pd.DataFrame(
        {
            "user_id": np.arange(1, n + 1),
            "monthly_income": income.round(2),
            "monthly_spend": spend.round(2),
            "savings_rate": np.where(income > 0, np.clip((income - spend) / safe_income, -1, 1), -1.0),
            "essential_share": essential,
            "discretionary_share": discretionary,
            "spending_volatility": rng.lognormal(np.log(0.5), 0.5, n),
            "impulse_share": impulse,
            "checking_balance": checking.round(2),
            "savings_balance": savings.round(2),
            "emergency_fund_months": np.minimum(savings / spend, 24),
            "debt_total": debt.round(2),
            "debt_to_income": np.where(
                income > 0, np.minimum(debt / (12 * safe_income), 5), np.where(debt > 0, 5.0, 0.0)
            ),
            "max_debt_apr": apr,
            "goal_progress": has_goal * rng.uniform(0, 1, n),
            "has_active_goal": has_goal,
            "sessions_30d": sessions,
            "days_since_last_session": days_since,
            "nudge_acceptance_rate": rng.beta(3, 4, n),
            "age": age,
        }
    )
    return frame[["user_id", *FEATURE_NAMES]]
