"""The pure arithmetic of the python: features (ratios, caps, priors, streaks, paces) and the window bounds.

No database here: every function takes Series or arrays, so the caps and fallbacks are unit-tested alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

WINDOW_DAYS = 30
NUDGE_WINDOW_DAYS = 90
RECENT_NUDGE_DAYS = 7
SESSION_CAP_DAYS = 90.0
NUDGE_CAP_DAYS = 90.0
EMERGENCY_FUND_CAP_MONTHS = 24.0
DEBT_TO_INCOME_CAP = 5.0
BALANCE_TREND_CLIP = 5.0
BALANCE_TREND_MIN_INCOME = 100.0
PAYDAY_CAP_DAYS = 31.0
PAYDAY_DEFAULT_DAYS = 15.0
PAY_CYCLE_DAYS = {"monthly": 30.0, "biweekly": 14.0}
# Income older than two monthly cycles says nothing about the next payday: the default applies.
PAYDAY_LOOKBACK_DAYS = 62
STREAK_CAP_WEEKS = 52
GOAL_PACE_CAP = 3.0
EVENING_START_HOUR = 18
MOBILE_DEVICES = ("ios", "android")
RISK_TOLERANCE = {"low": 0.0, "medium": 0.5, "high": 1.0}
MARKET_RETURN_DAYS = 90


class FeatureBuildError(ValueError):
    """Features cannot be built or published with the given input (the message says what to do)."""


def as_utc(moment: datetime) -> datetime:
    """A plain UTC datetime (Airflow passes pendulum DateTimes, which pandas does not compare with)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise FeatureBuildError(f"as_of must be timezone-aware (got {moment.isoformat()}); pass e.g. UTC")
    d = moment.astimezone(UTC)
    return datetime(d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond, tzinfo=UTC)


def window_bounds(as_of: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the 30-day window: the 30 complete UTC days before as_of, as UTC midnights."""
    end = as_utc(as_of).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=WINDOW_DAYS), end


def ratio(numerator: pd.Series, denominator: pd.Series, when_zero: float | pd.Series = 0.0) -> pd.Series:
    """numerator / denominator where the denominator is positive, else `when_zero`."""
    safe = denominator.where(denominator > 0, np.nan)
    out = numerator / safe
    return out.where(denominator > 0, when_zero)


def emergency_fund_months(savings: pd.Series, monthly_spend: pd.Series) -> pd.Series:
    """Months of spend the savings cover, in [0, 24] (24 with savings and no spend)."""
    no_spend = np.where(savings > 0, EMERGENCY_FUND_CAP_MONTHS, 0.0)
    return ratio(savings, monthly_spend, pd.Series(no_spend, index=savings.index)).clip(0, EMERGENCY_FUND_CAP_MONTHS)


def debt_to_income(debt: pd.Series, monthly_income: pd.Series, declared_income: pd.Series) -> pd.Series:
    """Debt / annual income (observed 30-day income, else the declared one) in [0, 5]; 5 with debt and no income."""
    income = monthly_income.where(monthly_income > 0, declared_income)
    no_income = np.where(debt > 0, DEBT_TO_INCOME_CAP, 0.0)
    return ratio(debt, 12.0 * income, pd.Series(no_income, index=debt.index)).clip(0, DEBT_TO_INCOME_CAP)


def nudge_acceptance_rate(accepted: pd.Series, served: pd.Series) -> pd.Series:
    """Accepted share of nudges with a Beta(1, 1) prior: 0.5 without nudges, never exactly 0 or 1."""
    return (accepted + 1.0) / (served + 2.0)


def balance_trend(change: pd.Series, monthly_income: pd.Series) -> pd.Series:
    """30-day change of checking + savings over max(30-day income, 100), in [-5, 5]."""
    return (change / monthly_income.clip(lower=BALANCE_TREND_MIN_INCOME)).clip(-BALANCE_TREND_CLIP, BALANCE_TREND_CLIP)


def days_to_payday(days_since_income: pd.Series, pay_cycle_days: pd.Series) -> pd.Series:
    """Days until the last income + one pay cycle, in [0, 31]; the default (15) without a recent income."""
    out = (pay_cycle_days - days_since_income).clip(0, PAYDAY_CAP_DAYS)
    return out.fillna(PAYDAY_DEFAULT_DAYS)


def saving_streak_weeks(saved: np.ndarray) -> np.ndarray:
    """Leading run of True per row of `saved` (n_users, n_weeks; week 0 = the one ending at as_of), capped at 52."""
    if saved.shape[1] == 0:
        return np.zeros(saved.shape[0])
    return np.minimum(np.cumprod(saved.astype(np.int64), axis=1).sum(axis=1), STREAK_CAP_WEEKS).astype(float)


def goal_pace_ratio(progress: pd.Series, elapsed_days: pd.Series, planned_days: pd.Series) -> pd.Series:
    """(progress / elapsed) / (1 / planned) per goal: the pace so far over the pace needed, in [0, 3]."""
    return (progress * planned_days.clip(lower=1.0) / elapsed_days.clip(lower=1.0)).clip(0, GOAL_PACE_CAP)


def share(part: pd.Series, whole: pd.Series) -> pd.Series:
    """part / whole in [0, 1]; 0 where whole is 0."""
    return ratio(part, whole).clip(0, 1)
