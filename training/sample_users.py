"""Plausible feature snapshots drawn at random: for tests and smoke runs of training without the pipelines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fincoach.feature_spec import FEATURE_NAMES, FEATURES


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
    v2 = {  # spec-v2 features (FEATURES_V2), used only if the spec in force has them
        "weekend_spend_share": np.clip(rng.normal(0.33, 0.08, n), 0, 1),
        "month_end_spend_share": np.clip(rng.normal(0.25, 0.06, n), 0, 1),
        "spend_trend": np.clip(rng.lognormal(0, 0.2, n), 0, 5),
        "days_to_payday": rng.integers(0, 31, n).astype(float),
        "spending_velocity": np.clip(rng.lognormal(0, 0.3, n), 0, 5),
        "balance_trend": np.clip(rng.normal(0.05, 0.3, n), -5, 5),
        "dining_share": discretionary * rng.beta(3, 4, n),
        "avg_session_minutes": np.where(sessions > 0, rng.lognormal(np.log(4), 0.5, n), 0.0),
        "features_used_30d": np.minimum(sessions, rng.integers(0, 9, n)).astype(float),
        "clicks_per_session": np.where(sessions > 0, rng.lognormal(np.log(6), 0.4, n), 0.0),
        "saving_streak_weeks": rng.geometric(0.4, n).astype(float) - 1,
        "mobile_device": (rng.random(n) < 0.8).astype(float),
        "evening_session_share": np.where(sessions > 0, rng.beta(2, 4, n), 0.0),
        "goal_pace_ratio": np.where(has_goal > 0, np.clip(rng.lognormal(0, 0.5, n), 0, 3), 1.0),
        "goals_achieved": rng.poisson(0.3, n).astype(float),
        "risk_tolerance": rng.choice([0.0, 0.5, 1.0], n),
        "nudges_7d": rng.poisson(1.0, n).astype(float),
        "days_since_last_nudge": np.minimum(rng.exponential(7, n).round(), 90),
        "market_interest_rate": np.full(n, 0.025),
        "market_inflation_rate": np.full(n, 0.02),
        "market_return_3m": np.full(n, 0.02),
    }
    v2["shopping_share"] = (discretionary - v2["dining_share"]) * rng.beta(3, 3, n)
    for f in FEATURES:
        if f.name not in frame.columns:
            frame[f.name] = v2.get(f.name, np.full(n, f.default))
    return frame[["user_id", *FEATURE_NAMES]]
