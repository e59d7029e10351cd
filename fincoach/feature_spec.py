"""The feature spec: one ordered, versioned list of features, used for training, batch and online scoring."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Feature:
    """One model input. Normalised value = clip(transform(x) / scale, -clip, clip)."""

    name: str
    description: str
    source: str  # where it is computed: "dbt:<model>" or "python:<module>"
    transform: str = "identity"  # identity | log1p (sign-preserving)
    scale: float = 1.0
    clip: float = 5.0
    dtype: str = "float64"
    default: float = 0.0  # value for a user with no data for it
    group: str = "financial"  # temporal | behavioural | financial | contextual | goal | preference | recent_actions | market


_FCT = "dbt:fct_daily_user_financials"
_PY = "python:pipelines.features"
_MARKET = "python:app.market_conditions"
GROUPS = ("temporal", "behavioural", "financial", "contextual", "goal", "preference", "recent_actions", "market")

FEATURES: tuple[Feature, ...] = (
    Feature("monthly_income", "Income received in the last 30 days", _FCT, "log1p", 10.0),
    Feature("monthly_spend", "Spending (all outflows but savings and debt payments) in the last 30 days", _FCT, "log1p", 10.0),
    Feature("savings_rate", "(income - spend) / income over the last 30 days, clipped to [-1, 1]", _FCT),
    Feature("essential_share", "Share of spend on rent, utilities, groceries, transport, health (30 days)", _FCT),
    Feature("discretionary_share", "Share of spend on dining, shopping, entertainment, travel (30 days)", _FCT),
    Feature("spending_volatility", "Coefficient of variation of daily spend over the last 30 days", _FCT, scale=2.0),
    Feature("impulse_share", "Share of spend flagged as impulse purchases (30 days)", _PY, group="behavioural"),
    Feature("checking_balance", "Current checking balance", _PY, "log1p", 10.0),
    Feature("savings_balance", "Current savings balance", _PY, "log1p", 10.0),
    Feature("emergency_fund_months", "Savings balance / monthly spend, capped at 24", _PY, scale=6.0),
    Feature("debt_total", "Outstanding debt balance", _PY, "log1p", 10.0),
    Feature("debt_to_income", "Debt balance / annual income, capped at 5", _PY),
    Feature("max_debt_apr", "Highest APR among outstanding debts (0 without debt)", _PY, scale=0.3),
    Feature("goal_progress", "Mean progress (current / target) of active goals, 0 without", _PY, group="goal"),
    Feature("has_active_goal", "1 if the user has an active goal", _PY, group="goal"),
    Feature("sessions_30d", "App sessions in the last 30 days", _PY, "log1p", 4.0, group="behavioural"),
    Feature("days_since_last_session", "Days since the last app session, capped at 90", _PY, scale=30.0, default=90.0, group="behavioural"),
    Feature("nudge_acceptance_rate", "Share of coaching nudges accepted in the last 90 days (0.5 prior)", _PY, default=0.5, group="recent_actions"),
    Feature("age", "Age in years", _PY, scale=50.0, default=40.0, group="preference"),
    # --- v2 (FEATURES_V2.md: names, order and raw meaning are a contract with the simulator) ---
    Feature("weekend_spend_share", "Share of the last-30-day spend made on Saturday or Sunday (0 without spend)", _FCT, group="temporal"),
    Feature("month_end_spend_share", "Share of the last-30-day spend made in the last 7 days of a calendar month", _FCT, group="temporal"),
    Feature("spend_trend", "Last-30-day spend / mean 30-day spend of the 60 days before (1 = flat or no history), capped at 5", _FCT, default=1.0, group="temporal"),
    Feature("days_to_payday", "Days until the next expected income (last income + pay cycle), 0..31", _PY, scale=15.0, default=15.0, group="temporal"),
    Feature("spending_velocity", "Last-7-day spend x 30/7 / last-30-day spend (1 = on pace or no spend), capped at 5", _FCT, default=1.0),
    Feature("balance_trend", "(checking + savings now - 30 days ago) / max(30-day income, 100), in [-5, 5]", _PY),
    Feature("dining_share", "Share of the last-30-day spend on dining", _FCT),
    Feature("shopping_share", "Share of the last-30-day spend on shopping", _FCT),
    Feature("avg_session_minutes", "Mean duration in minutes of the sessions of the last 30 days, 0 without", _PY, "log1p", 3.0, group="behavioural"),
    Feature("features_used_30d", "Distinct app features (event types and pages) used in the last 30 days", _PY, scale=10.0, group="behavioural"),
    Feature("clicks_per_session", "Interaction events per session in the last 30 days, 0 without sessions", _PY, "log1p", 3.0, group="behavioural"),
    Feature("saving_streak_weeks", "Consecutive complete weeks ending at as_of with a net transfer into savings, capped at 52", _PY, "log1p", 4.0, group="behavioural"),
    Feature("mobile_device", "1 if the user's device is ios or android, else 0", _PY, group="contextual"),
    Feature("evening_session_share", "Share of the last-30-day sessions started 18:00-24:00 UTC, 0 without", _PY, group="contextual"),
    Feature("goal_pace_ratio", "Saving pace of active goals / pace needed to reach them by their date, capped at 3; 1 without", _PY, default=1.0, group="goal"),
    Feature("goals_achieved", "Goals with status achieved (created by as_of)", _PY, "log1p", 2.0, group="goal"),
    Feature("risk_tolerance", "Declared risk tolerance: 0 low, 0.5 medium, 1 high", _PY, default=0.5, group="preference"),
    Feature("nudges_7d", "Coaching nudges (action_id != 0) served in the last 7 days", _PY, "log1p", 2.0, group="recent_actions"),
    Feature("days_since_last_nudge", "Days since the last nudge served, capped at 90", _PY, scale=30.0, default=90.0, group="recent_actions"),
    Feature("market_interest_rate", "Policy interest rate (annual) on the as_of day", _MARKET, scale=0.05, default=0.03, group="market"),
    Feature("market_inflation_rate", "Annual inflation rate on the as_of day", _MARKET, scale=0.05, default=0.025, group="market"),
    Feature("market_return_3m", "Equity index return over the 90 days to as_of", _MARKET, scale=0.1, group="market"),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
N_FEATURES = len(FEATURES)


def _version() -> str:
    digest = hashlib.sha256(json.dumps([asdict(f) for f in FEATURES], sort_keys=True).encode()).hexdigest()
    return f"v2-{digest[:8]}"


# Changes whenever any feature is added, removed, reordered or renormalised.
FEATURE_SPEC_VERSION = _version()


class FeatureSpecError(ValueError):
    """Input does not match the feature spec."""


def feature_index(name: str) -> int:
    """Column of `name` in spec order."""
    try:
        return FEATURE_NAMES.index(name)
    except ValueError as exc:
        raise FeatureSpecError(f"unknown feature {name!r}; the spec has {', '.join(FEATURE_NAMES)}") from exc


def raw_matrix(rows: object) -> np.ndarray:
    """Raw feature matrix (n, N_FEATURES) float64 in spec order from a DataFrame or a list of mappings."""
    if hasattr(rows, "columns"):  # pandas DataFrame
        missing = [n for n in FEATURE_NAMES if n not in rows.columns]  # type: ignore[attr-defined]
        if missing:
            raise FeatureSpecError(f"missing features: {', '.join(missing)}")
        out = rows[list(FEATURE_NAMES)].to_numpy(dtype=np.float64, na_value=np.nan)  # type: ignore[index]
    else:
        records = list(rows)  # type: ignore[call-overload]
        out = np.empty((len(records), N_FEATURES), dtype=np.float64)
        for i, rec in enumerate(records):
            out[i] = vector_from_mapping(rec)
    defaults = np.array([f.default for f in FEATURES])
    bad = ~np.isfinite(out)
    if bad.any():
        out = np.where(bad, defaults, out)
    return out


def vector_from_mapping(values: Mapping[str, float]) -> np.ndarray:
    """One raw feature vector from a name → value mapping; every spec feature must be present."""
    missing = [n for n in FEATURE_NAMES if n not in values]
    if missing:
        raise FeatureSpecError(f"missing features: {', '.join(missing)}")
    unknown = sorted(set(values) - set(FEATURE_NAMES))
    if unknown:
        raise FeatureSpecError(f"unknown features: {', '.join(unknown)}")
    return np.array([float(values[n]) for n in FEATURE_NAMES], dtype=np.float64)


def normalise(raw: np.ndarray) -> np.ndarray:
    """Model input (float32) from a raw matrix in spec order: the same transform everywhere."""
    raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
    if raw.shape[1] != N_FEATURES:
        raise FeatureSpecError(f"expected {N_FEATURES} features, got {raw.shape[1]}")
    out = np.empty_like(raw)
    for j, f in enumerate(FEATURES):
        col = raw[:, j]
        if f.transform == "log1p":
            col = np.sign(col) * np.log1p(np.abs(col))
        out[:, j] = np.clip(col / f.scale, -f.clip, f.clip)
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def spec_document() -> dict:
    """The spec as a JSON-able document (logged with every model)."""
    return {"version": FEATURE_SPEC_VERSION, "features": [asdict(f) for f in FEATURES]}
