"""Exogenous market conditions shared by every user of a simulation: a seeded regime-switching process.

Three regimes (calm, tight, crisis) follow a weekly Markov chain. Each regime pulls the policy interest
rate and the inflation rate towards its own level (mean reversion) and sets the mean and volatility of
the weekly equity return. The path is drawn from its own generator, week after week, never from the
actions taken, so it is the same for every policy run with the same seed (common random numbers).
"""

from __future__ import annotations

import numpy as np

REGIMES = ("calm", "tight", "crisis")
# Weekly transition matrix (rows: from, columns: to).
TRANSITIONS = np.array([[0.985, 0.010, 0.005], [0.020, 0.970, 0.010], [0.040, 0.020, 0.940]])
RATE_LEVEL = np.array([0.025, 0.055, 0.010])  # annual policy rate each regime pulls towards
INFLATION_LEVEL = np.array([0.02, 0.045, 0.01])
RETURN_MEAN = np.array([0.08, 0.03, -0.25]) / 52  # weekly equity return
RETURN_VOL = np.array([0.12, 0.16, 0.35]) / np.sqrt(52)
REVERSION = 0.08  # share of the gap to the regime level closed each week
RETURN_WEEKS = 13  # market_return_3m: the last 13 weeks
_CHUNK = 64


class MarketProcess:
    """The market path of one simulation, drawn lazily in weekly chunks from `seed`."""

    def __init__(self, seed: int):
        self._rng = np.random.default_rng([int(seed), 0x6D61726B])
        self.regime = np.zeros(0, dtype=np.int64)
        self.interest = np.zeros(0)
        self.inflation = np.zeros(0)
        self.weekly_return = np.zeros(0)
        self._state = (0, RATE_LEVEL[0], INFLATION_LEVEL[0])
        self._extend(RETURN_WEEKS + _CHUNK)  # a burn-in of RETURN_WEEKS gives week 0 a 3-month return

    def _extend(self, weeks: int) -> None:
        regime, rate, infl = self._state
        out = np.empty((weeks, 4))
        u, z = self._rng.random(weeks), self._rng.standard_normal((weeks, 3))
        for w in range(weeks):
            regime = int(np.searchsorted(np.cumsum(TRANSITIONS[regime]), u[w], side="right"))
            regime = min(regime, len(REGIMES) - 1)
            rate = max(0.0, rate + REVERSION * (RATE_LEVEL[regime] - rate) + 0.001 * z[w, 0])
            infl = infl + REVERSION * (INFLATION_LEVEL[regime] - infl) + 0.002 * z[w, 1]
            out[w] = regime, rate, infl, RETURN_MEAN[regime] + RETURN_VOL[regime] * z[w, 2]
        self._state = (regime, rate, infl)
        self.regime = np.concatenate([self.regime, out[:, 0].astype(np.int64)])
        self.interest = np.concatenate([self.interest, out[:, 1]])
        self.inflation = np.concatenate([self.inflation, out[:, 2]])
        self.weekly_return = np.concatenate([self.weekly_return, out[:, 3]])

    def _at(self, week: np.ndarray) -> np.ndarray:
        index = np.asarray(week, dtype=np.int64) + RETURN_WEEKS
        while index.max(initial=0) >= len(self.regime):
            self._extend(_CHUNK)
        return index

    def conditions(self, week: np.ndarray) -> dict[str, np.ndarray]:
        """Interest rate, inflation rate, this week's and the 13-week equity return, regime, at `week`."""
        i = self._at(week)
        growth = np.cumsum(np.log1p(self.weekly_return))
        three_months = np.expm1(growth[i] - growth[i - RETURN_WEEKS])
        return {
            "interest_rate": self.interest[i],
            "inflation_rate": self.inflation[i],
            "weekly_return": self.weekly_return[i],
            "return_3m": three_months,
            "regime": self.regime[i],
        }
