"""Validate simulator parameters against what held-out users actually did.

The validation window is the last full calendar month before the snapshot (calendar months, so that every
monthly bill and pay cheque falls into it exactly once). Each held-out user is restarted at its first day:
their income, spending and shares over the month before, and their balances then, are rebuilt from
`analytics.fct_daily_user_financials` (everything else comes from the snapshot row), and they are
simulated for four weeks with the nudges they were actually served (the first of each week, from
`coaching_interactions`). The distributions over users of four metrics, the actual month scaled to 28
days, are compared with the two-sample Kolmogorov-Smirnov statistic:

- `spending`: spending over the window; `spend_ratio`: the same over the user's starting monthly spend;
- `savings_change`: change of the savings balance; `balance`: checking + savings at the end.

The parameters pass when every KS statistic is at most `settings.sim_validation_max_ks`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from fincoach import db
from fincoach.actions import N_ACTIONS, NO_ACTION
from fincoach.feature_spec import feature_index, raw_matrix
from fincoach.settings import get_settings
from training import history
from training.sim_params import SimParams
from training.simulator import Simulator

WEEKS = 4
MIN_USERS = 20
METRICS = ("spending", "spend_ratio", "savings_change", "balance")


def starting_state(holdout: pd.DataFrame, before: pd.DataFrame, balances: pd.DataFrame) -> np.ndarray:
    """Raw features of the held-out users at the window's start, from the month before and the balances."""
    raw = raw_matrix(holdout).copy()
    before = before.reindex(holdout["user_id"]).fillna(0.0)
    scale = 30.0 / np.maximum(before["days"].to_numpy(), 1.0)
    income, spend = before["income"].to_numpy() * scale, before["spend"].to_numpy() * scale
    safe_spend = np.where(spend > 0, spend, 1.0)
    bal = balances.reindex(holdout["user_id"]).fillna(0.0)

    def put(name: str, value: np.ndarray) -> None:
        raw[:, feature_index(name)] = value

    def share(kind: str) -> np.ndarray:
        return np.where(spend > 0, before[kind].to_numpy() * scale / safe_spend, 0.0)

    safe_income = np.where(income > 0, income, 1.0)
    put("monthly_income", income)
    put("monthly_spend", spend)
    put("savings_rate", np.where(income > 0, np.clip((income - spend) / safe_income, -1, 1), -1.0))
    put("essential_share", share("essential"))
    put("discretionary_share", share("discretionary"))
    put("impulse_share", share("impulse"))
    put("checking_balance", bal["checking"].to_numpy())
    put("savings_balance", bal["savings"].to_numpy())
    put("emergency_fund_months", np.minimum(bal["savings"].to_numpy() / safe_spend, 24.0))
    return raw


def month_windows(as_of: datetime) -> tuple[date, date, date]:
    """(start of the month before the window, window start, window end): the last full month before as_of."""
    end = date(as_of.year, as_of.month, 1)
    start = (end - timedelta(days=1)).replace(day=1)
    return (start - timedelta(days=1)).replace(day=1), start, end


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def validate(params: SimParams, holdout: pd.DataFrame, as_of: datetime, seed: int) -> dict:
    """KS statistics per metric of `params` on the held-out users, and whether they pass the threshold."""
    threshold = get_settings().sim_validation_max_ks
    prior, start, end = month_windows(as_of)
    with db.get_engine().connect() as conn:
        holdout = history.with_app_user_ids(conn, holdout)
        users = [int(u) for u in holdout["user_id"]]
        before = history.window_totals(conn, users, prior, start)
        during = history.window_totals(conn, users, start, end)
        at_start = history.balances_before(conn, users, start)
        at_end = history.balances_before(conn, users, end)
        served = history.logged_actions(conn, users, _utc(start), _utc(end))
    full = during.index[during["days"] == (end - start).days]
    full_before = before.index[before["days"] == (start - prior).days]
    known = holdout["user_id"].isin(full) & holdout["user_id"].isin(full_before)
    if known.sum() < MIN_USERS:
        return {
            "passed": False,
            "n_users": int(known.sum()),
            "ks": {},
            "reason": f"only {int(known.sum())} held-out users have every day of {prior}..{end} in their history (need {MIN_USERS})",
        }
    holdout = holdout[known.to_numpy()]
    ids = holdout["user_id"].to_numpy()
    raw = starting_state(holdout, before, at_start)
    actions = np.full((WEEKS, len(ids)), NO_ACTION)
    row = {int(u): i for i, u in enumerate(ids)}
    for r in served.itertuples():
        if 0 <= r.week < WEEKS and int(r.user_id) in row and 0 <= r.action_id < N_ACTIONS:
            actions[r.week, row[int(r.user_id)]] = r.action_id
    sim = Simulator(
        raw,
        np.random.default_rng(seed).integers(0, 2**62, len(ids)),
        WEEKS,
        params=params,
        market_seed=seed,
        start_day=(start - date(2026, 1, 1)).days % 365,
    )
    savings0 = sim.savings[: len(ids)].copy()
    spending = np.zeros(len(ids))
    for week in range(WEEKS):
        spending += sim.step(actions[week]).flows["spending"]
    start_spend = np.maximum(raw[:, feature_index("monthly_spend")], 1.0)
    month = during.reindex(ids)
    to_28 = 28.0 / (end - start).days
    final = at_end.reindex(ids).fillna(0.0)
    actual = {
        "spending": month["spend"].to_numpy() * to_28,
        "savings_change": (final["savings"] - at_start.reindex(ids).fillna(0.0)["savings"]).to_numpy()
        * to_28,
        "balance": (final["checking"] + final["savings"]).to_numpy(),
    }
    actual["spend_ratio"] = actual["spending"] / start_spend
    simulated = {
        "spending": spending,
        "spend_ratio": spending / start_spend,
        "savings_change": sim.savings[: len(ids)] - savings0,
        "balance": (sim.checking + sim.savings)[: len(ids)],
    }
    ks = {m: float(ks_2samp(simulated[m], actual[m]).statistic) for m in METRICS}
    failing = {m: v for m, v in ks.items() if v > threshold}
    reason = (
        f"KS above {threshold}: " + ", ".join(f"{m} {v:.3f}" for m, v in failing.items())
        if failing
        else f"every KS statistic at most {threshold} ({len(ids)} held-out users)"
    )
    return {
        "passed": not failing,
        "reason": reason,
        "n_users": len(ids),
        "ks": ks,
        "mean_actual": {m: float(np.mean(v)) for m, v in actual.items()},
        "mean_simulated": {m: float(np.mean(v)) for m, v in simulated.items()},
    }
