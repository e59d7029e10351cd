"""Synthetic market conditions (app.market_conditions): one regime-switching path, the same for every user.

A hidden Markov chain moves between three regimes, day by day:

| regime | policy rate (mean) | inflation (mean) | equity drift / vol (annual) |
| ------ | ------------------ | ---------------- | --------------------------- |
| calm   | 2.5 %              | 2.0 %            | +8 % / 12 %                 |
| tight  | 5.5 %              | 4.5 %            | +2 % / 18 %                 |
| crisis | 1.0 %              | 1.0 %            | -25 % / 40 %                |

Rates and inflation revert to their regime's mean (Ornstein-Uhlenbeck, daily steps); the index is a
geometric random walk with the regime's drift and volatility. All randomness comes from one
numpy Generator(seed); the same arguments always give the same path.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

REGIMES = ("calm", "tight", "crisis")
# daily transition matrix: rows = from, columns = to (regimes last months; crises are short)
_TRANSITIONS = np.array([
    [0.995, 0.004, 0.001],
    [0.006, 0.992, 0.002],
    [0.020, 0.010, 0.970],
])
_RATE_MEAN = np.array([0.025, 0.055, 0.010])
_INFLATION_MEAN = np.array([0.020, 0.045, 0.010])
_DRIFT = np.array([0.08, 0.02, -0.25]) / 365.0
_VOL = np.array([0.12, 0.18, 0.40]) / np.sqrt(365.0)
_REVERSION = 0.02  # share of the gap to the regime mean closed per day
_RATE_NOISE, _INFLATION_NOISE = 0.0005, 0.0008
# Days of market history before the first simulated day, so a 90-day return exists from day one.
LEAD_DAYS = 90


def generate_market(days: int, seed: int, end: dt.date) -> pd.DataFrame:
    """Market conditions for the `days` + LEAD_DAYS days before `end`: day, regime, rates, index_level."""
    if days < 1:
        raise ValueError(f"need days >= 1, got {days}")
    rng = np.random.Generator(np.random.PCG64([seed, 0x6D61726B]))  # its own stream: users are unaffected
    n = days + LEAD_DAYS
    uniforms = rng.random(n)
    cumulative = _TRANSITIONS.cumsum(axis=1)
    regime = np.empty(n, dtype=np.int64)
    state = 0
    for i in range(n):
        state = int(np.searchsorted(cumulative[state], uniforms[i], side="right"))
        state = min(state, len(REGIMES) - 1)
        regime[i] = state
    rate = np.empty(n)
    inflation = np.empty(n)
    r, p = _RATE_MEAN[0], _INFLATION_MEAN[0]
    rate_noise = rng.normal(0, _RATE_NOISE, n)
    inflation_noise = rng.normal(0, _INFLATION_NOISE, n)
    for i in range(n):
        k = regime[i]
        r += _REVERSION * (_RATE_MEAN[k] - r) + rate_noise[i]
        p += _REVERSION * (_INFLATION_MEAN[k] - p) + inflation_noise[i]
        rate[i], inflation[i] = max(r, 0.0), p
    log_returns = _DRIFT[regime] + _VOL[regime] * rng.standard_normal(n)
    index_level = 1000.0 * np.exp(np.cumsum(log_returns))
    first = end - dt.timedelta(days=n)
    return pd.DataFrame({
        "day": [first + dt.timedelta(days=i) for i in range(n)],
        "regime": np.array(REGIMES, dtype=object)[regime],
        "interest_rate": rate.round(6),
        "inflation_rate": inflation.round(6),
        "index_level": index_level.round(4),
    })
