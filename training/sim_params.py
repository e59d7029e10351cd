"""The simulator's fitted parameters: archetypes with their income and spending processes, response rates.

`DEFAULT_PARAMS` is one archetype with hand-set values (the simulator before calibration). A calibration
(training.calibrate) fits several archetypes to data; each simulated user follows the archetype whose
centroid is nearest to their starting features (standardised).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from fincoach.actions import ACTION_TYPES
from fincoach.feature_spec import FEATURE_NAMES, feature_index

# Features the archetypes are clustered on (all in spec v1).
CLUSTER_FEATURES = (
    "monthly_income",
    "monthly_spend",
    "savings_rate",
    "discretionary_share",
    "impulse_share",
    "spending_volatility",
    "emergency_fund_months",
    "debt_to_income",
    "sessions_30d",
    "age",
)
_LOG_FEATURES = ("monthly_income", "monthly_spend", "sessions_30d")


@dataclass
class ArchetypeParams:
    """Weekly income and spending processes of one archetype."""

    income_sd: float = 0.05  # log-sd of weekly income
    income_drop_p: float = 0.02  # chance a week brings only half the income (lost shifts, late pay)
    essential_sd: float = 0.05  # log-sd of weekly essential spending, plus 0.1 x volatility
    discretionary_sd: float = 0.10  # log-sd of planned discretionary spending, plus 0.3 x volatility
    impulse_sd: float = 0.6  # log-sd of weekly impulse purchases
    impulse_scale: float = 1.0  # multiplies the impulse spending of the snapshot
    save_share: float = 0.0  # standing weekly transfer to savings, as a share of income (regular saving)
    share: float = 1.0  # share of the calibration users in this archetype


@dataclass
class SimParams:
    """Everything calibration fits; JSON round-trips through `to_dict` / `from_dict`."""

    source: str = "default"
    centroids: list[list[float]] = field(default_factory=lambda: [[0.0] * len(CLUSTER_FEATURES)])
    mean: list[float] = field(default_factory=lambda: [0.0] * len(CLUSTER_FEATURES))
    scale: list[float] = field(default_factory=lambda: [1.0] * len(CLUSTER_FEATURES))
    archetypes: list[ArchetypeParams] = field(default_factory=lambda: [ArchetypeParams()])
    # Acceptance-logit shift per action type fitted to coaching_interactions (0: the prior).
    response_logit: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ACTION_TYPES, 0.0))
    churn_weekly: float = 0.003  # baseline chance a week that an untouched user leaves the app

    def to_dict(self) -> dict:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> SimParams:
        """Inverse of `to_dict`; response shifts of unknown types are dropped, missing ones are 0."""
        doc = dict(doc)
        doc["archetypes"] = [ArchetypeParams(**a) for a in doc["archetypes"]]
        known = doc.get("response_logit", {})
        doc["response_logit"] = {t: float(known.get(t, 0.0)) for t in ACTION_TYPES}
        return cls(**doc)

    def dumps(self) -> str:
        """JSON text."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def assign(self, raw: np.ndarray) -> np.ndarray:
        """Archetype index of each user (raw features in spec order): the nearest centroid."""
        x = cluster_matrix(raw)
        z = (x - np.array(self.mean)) / np.array(self.scale)
        d = ((z[:, None, :] - np.array(self.centroids)[None, :, :]) ** 2).sum(axis=2)
        return d.argmin(axis=1)

    def per_user(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """Each ArchetypeParams field as an (n,) array for the users of `raw`."""
        k = self.assign(raw)
        return {f: np.array([getattr(a, f) for a in self.archetypes])[k] for f in asdict(ArchetypeParams())}


def cluster_matrix(raw: np.ndarray) -> np.ndarray:
    """The clustering features of raw rows (spec order), log1p where money or counts."""
    raw = np.atleast_2d(raw)
    cols = []
    for name in CLUSTER_FEATURES:
        col = raw[:, feature_index(name)] if name in FEATURE_NAMES else np.zeros(len(raw))
        cols.append(np.sign(col) * np.log1p(np.abs(col)) if name in _LOG_FEATURES else col)
    return np.nan_to_num(np.stack(cols, axis=1))


DEFAULT_PARAMS = SimParams()
