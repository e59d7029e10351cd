"""User segments for reporting and for holding user types out of training: income band, age band, archetype.

Segments are a function of a user's raw features (spec order) at the start of an evaluation episode.

Archetypes (first match wins; a documented stand-in until clustering on real users replaces it):

| archetype | rule on raw features |
|-----------|----------------------|
| indebted  | debt_total > 0 and max_debt_apr >= 0.15 (costly debt) |
| fragile   | emergency_fund_months < 1 (no buffer) |
| spender   | discretionary_share > 0.35 or impulse_share > 0.15 |
| saver     | savings_rate >= 0.15 and emergency_fund_months >= 3 |
| steady    | everyone else |
"""

from __future__ import annotations

import numpy as np

from fincoach.feature_spec import feature_index

INCOME_BANDS = ((0.0, "income_lt_2k"), (2000.0, "income_2k_5k"), (5000.0, "income_ge_5k"))  # monthly
AGE_BANDS = ((0.0, "age_lt_35"), (35.0, "age_35_49"), (50.0, "age_50_64"), (65.0, "age_ge_65"))
ARCHETYPES = ("indebted", "fragile", "spender", "saver", "steady")
SEGMENT_KINDS = ("income_band", "age_band", "archetype")


def _band(values: np.ndarray, bands: tuple[tuple[float, str], ...]) -> np.ndarray:
    edges = np.array([lo for lo, _ in bands[1:]])
    names = np.array([name for _, name in bands])
    return names[np.searchsorted(edges, values, side="right")]


def archetype(raw: np.ndarray) -> np.ndarray:
    """(n,) archetype name of each user (see the module docstring)."""
    raw = np.atleast_2d(raw)

    def f(name: str) -> np.ndarray:
        return raw[:, feature_index(name)]

    conditions = [
        (f("debt_total") > 0) & (f("max_debt_apr") >= 0.15),
        f("emergency_fund_months") < 1,
        (f("discretionary_share") > 0.35) | (f("impulse_share") > 0.15),
        (f("savings_rate") >= 0.15) & (f("emergency_fund_months") >= 3),
    ]
    return np.select(conditions, list(ARCHETYPES[:-1]), default=ARCHETYPES[-1])


def segments(raw: np.ndarray) -> dict[str, np.ndarray]:
    """{kind: (n,) segment name} for every kind in SEGMENT_KINDS."""
    raw = np.atleast_2d(raw)
    return {
        "income_band": _band(raw[:, feature_index("monthly_income")], INCOME_BANDS),
        "age_band": _band(raw[:, feature_index("age")], AGE_BANDS),
        "archetype": archetype(raw),
    }
