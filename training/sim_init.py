"""Initial state of simulated users from their snapshot rows (and their twins'), for new and reset users."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.sim_features import WEEKS_PER_MONTH
from training.user_model import COL, Traits, draw_traits, start_value

HISTORY_WEEKS = 12  # spend_trend needs the 8 weeks before the 30-day window
SPLIT = ("dining", "shopping", "entertainment", "travel")  # discretionary spending categories
MIN_REF_INCOME_WEEK = 100.0  # floors of the per-user scales that turn money into reward
MIN_REF_SPEND_MONTH = 400.0
# Every per-row state array of the simulator (rows = users then twins), set here for new and reset users.
# fmt: off
STATE = (
    "base_income", "base_essential",
    "base_other", "base_planned", "base_impulse", "volatility", "checking", "savings", "investments", "debt",
    "apr", "goal_active", "goal_target", "goal_saved", "goal_age", "goal_weeks", "goals_achieved",
    "achieved_in_sim", "age", "days_since_session", "prior_shown", "prior_accepted", "nudges_shown",
    "nudges_accepted", "fatigue", "spend_cut", "save_habit", "debt_habit", "price", "saving_streak",
    "nudges_7d", "days_since_nudge", "churned", "ref_income_week", "ref_spend_month", "week",
    "receptiveness", "seeds", "start", "income_sd", "income_drop_p", "essential_sd", "discretionary_sd",
    "impulse_sd", "impulse_scale", "save_share",
)
# fmt: on


def init_rows(sim: Any, users: np.ndarray, raw: np.ndarray, seeds: np.ndarray) -> None:
    """Set users `users` of `sim` (and their twins) to the start of an episode from raw rows and seeds."""
    users = np.asarray(users, dtype=np.int64)
    raw = np.where(np.isfinite(raw), np.atleast_2d(np.asarray(raw, dtype=np.float64)), 0.0)
    seeds = np.asarray(seeds, dtype=np.int64)
    idx = np.concatenate([users, users + sim.n])
    raw2, seeds2 = np.concatenate([raw, raw]), np.concatenate([seeds, seeds])

    def col(name: str) -> np.ndarray:
        return raw2[:, COL[name]].copy()

    def put(name: str, value: np.ndarray) -> None:
        getattr(sim, name)[idx] = value

    income_m, spend_m = np.maximum(col("monthly_income"), 0.0), np.maximum(col("monthly_spend"), 0.0)
    ess = np.clip(col("essential_share"), 0.0, 1.0)
    disc = np.clip(col("discretionary_share"), 0.0, 1.0 - ess)
    imp = np.clip(col("impulse_share"), 0.0, disc)
    for name, arr in sim.params.per_user(raw2).items():
        if name != "share":
            put(name, arr)
    put("base_income", income_m / WEEKS_PER_MONTH)
    put("base_essential", ess * spend_m / WEEKS_PER_MONTH)
    put("base_other", (1.0 - ess - disc) * spend_m / WEEKS_PER_MONTH)
    put("base_planned", (disc - imp) * spend_m / WEEKS_PER_MONTH)
    put("base_impulse", imp * spend_m / WEEKS_PER_MONTH)
    put("volatility", np.clip(col("spending_volatility"), 0.0, 3.0))
    debt = np.maximum(col("debt_total"), 0.0)
    for name, value in {
        "checking": col("checking_balance"),
        "savings": np.maximum(col("savings_balance"), 0.0),
        "investments": 0.0,
        "debt": debt,
        "apr": np.where(debt > 0, np.clip(col("max_debt_apr"), 0.0, 1.0), 0.0),
        "goal_active": col("has_active_goal") >= 0.5,
        "goal_target": np.maximum(2.0 * income_m, 500.0),
        "age": col("age"),
        "days_since_session": np.clip(col("days_since_last_session"), 0.0, 90.0),
        "prior_shown": 4.0,  # the snapshot's rate counts as four earlier nudges
        "nudges_shown": 0.0,
        "nudges_accepted": 0.0,
        "fatigue": 0.0,
        "save_habit": 0.0,
        "debt_habit": 0.0,
        "price": 1.0,
        "churned": False,
        "week": 0,
        "seeds": seeds2,
        "start": raw2,
        "goals_achieved": np.maximum(start_value(raw2, "goals_achieved", 0.0), 0.0),
        "achieved_in_sim": 0.0,
        "saving_streak": np.clip(start_value(raw2, "saving_streak_weeks", 0.0), 0.0, 52.0),
        "nudges_7d": np.maximum(start_value(raw2, "nudges_7d", 0.0), 0.0),
        "days_since_nudge": np.clip(start_value(raw2, "days_since_last_nudge", 90.0), 0.0, 90.0),
        "ref_income_week": np.maximum(income_m / WEEKS_PER_MONTH, MIN_REF_INCOME_WEEK),
        "ref_spend_month": np.maximum(spend_m, MIN_REF_SPEND_MONTH),
    }.items():
        put(name, value)
    sim.prior_accepted[idx] = np.clip(col("nudge_acceptance_rate"), 0.0, 1.0) * 4.0
    progress = np.clip(col("goal_progress"), 0.0, 1.0)
    sim.goal_saved[idx] = np.where(sim.goal_active[idx], progress * sim.goal_target[idx], 0.0)
    # An existing goal runs a year; its age is set so that the starting pace ratio holds.
    pace = np.clip(start_value(raw2, "goal_pace_ratio", 1.0), 0.05, 3.0)
    sim.goal_weeks[idx] = 52.0
    sim.goal_age[idx] = np.where(sim.goal_active[idx], np.clip(52.0 * progress / pace, 1.0, 51.0), 0.0)
    sim.spend_cut[idx] = 0.0
    traits = draw_traits(raw, seeds, sim.params)
    if sim.traits is None:
        sim.traits = Traits(**{k: np.concatenate([v, v]) for k, v in vars(traits).items()})
    else:
        sim.traits.put(idx, Traits(**{k: np.concatenate([v, v]) for k, v in vars(traits).items()}))
    sim.receptiveness[idx] = sim.traits.receptiveness[idx]
    # The history windows start flat at the snapshot's figures (trends as the snapshot says).
    tr = sim.traits.rows(idx)
    week_spend = spend_m / WEEKS_PER_MONTH
    planned_imp = sim.base_planned[idx] + imp * spend_m / WEEKS_PER_MONTH
    weekly = {
        "income": sim.base_income[idx],
        "essential": sim.base_essential[idx],
        "other": sim.base_other[idx],
        "discretionary": planned_imp,
        "impulse": imp * spend_m / WEEKS_PER_MONTH,
        "sessions": np.maximum(col("sessions_30d"), 0.0) * 7.0 / 30.0,
        "spend": week_spend,
        "weekend": (2 / 7) * (week_spend - planned_imp) + tr.weekend_discretionary * planned_imp,
        "month_end": week_spend * start_value(raw2, "month_end_spend_share", 7.0 / 30.0),
        **{c: planned_imp * tr.split[:, j] for j, c in enumerate(SPLIT)},
    }
    for name, value in weekly.items():
        sim.hist[name][idx] = value[:, None]
    trend = np.clip(start_value(raw2, "spend_trend", 1.0), 0.05, 5.0)
    sim.hist["spend"][idx, : HISTORY_WEEKS - 4] = (week_spend / trend)[:, None]
    balance = sim.checking[idx] + sim.savings[idx]
    ref = np.maximum(income_m, 100.0)
    sim.hist["balance"][idx] = balance[:, None]
    sim.hist["balance"][idx, :-4] = (balance - start_value(raw2, "balance_trend", 0.0) * ref)[:, None]
