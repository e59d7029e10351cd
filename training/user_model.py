"""Who a simulated user is and how they respond to a nudge: latent traits, weekly luck, acceptance.

Traits and every weekly shock come from the user's own seed and never from the actions taken, so two
policies run on the same seeds face the same people with the same luck (common random numbers).

A nudge is accepted with probability sigmoid(receptiveness to the action type + relevance of the action
to the user's situation - fatigue sensitivity x fatigue), and only if the user sees it. Receptiveness
starts from the user's observed acceptance rate and shifts with age and impulsivity in ways a learned
policy can pick up from the features (the rules ignore them); fatigue builds with every nudge shown.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from fincoach.actions import ACTIONS, N_ACTIONS, NO_ACTION
from fincoach.feature_spec import FEATURE_NAMES, feature_index

FATIGUE_DECAY = 0.5  # share of last week's fatigue still felt this week
URGENCY_FATIGUE = {"low": 0.6, "medium": 0.8, "high": 1.0}  # fatigue added by showing a nudge
FATIGUE_SENSITIVITY = 0.3  # median acceptance-logit drop per unit of fatigue
SESSIONS_FATIGUE = 0.3  # fatigue also keeps users out of the app: session rate x exp(-this x sens. x fatigue)
PUSH_SEEN = 0.3  # chance a user with no session that week still reads the push notification

ACTION_TYPES = tuple(dict.fromkeys(a.type for a in ACTIONS))
TYPE_OF = np.array([ACTION_TYPES.index(a.type) for a in ACTIONS])
FATIGUE_OF = np.array([0.0 if a.id == NO_ACTION else URGENCY_FATIGUE[a.urgency] for a in ACTIONS])
COL = {name: feature_index(name) for name in FEATURE_NAMES}
N_NORMALS = 5  # weekly shocks: income, essential+other spending, planned discretionary, impulse, returns
N_UNIFORMS = 4  # weekly draws: sessions, push read, acceptance, day of the last session
_N_TRAIT_NORMALS = 4 + len(ACTION_TYPES)


@dataclass
class Traits:
    """Latent traits and pre-drawn weekly luck of n users (arrays with n rows)."""

    impulsivity: np.ndarray  # 0..1: more impulse spending, spending cuts fade faster
    fatigue_sensitivity: np.ndarray  # acceptance-logit drop per unit of fatigue
    session_rate: np.ndarray  # expected app sessions a week when not fatigued
    sweeps: np.ndarray  # bool: the bank covers an overdraft from savings
    dining_share: np.ndarray  # of discretionary spending (the rest is shopping)
    receptiveness: np.ndarray  # (n, N_ACTIONS) acceptance logits before relevance and fatigue
    normals: np.ndarray  # (n, horizon, N_NORMALS) standard normal shocks
    uniforms: np.ndarray  # (n, horizon, N_UNIFORMS) uniform draws

    def doubled(self) -> Traits:
        """The same users twice (for the untreated twins)."""
        return Traits(**{f.name: np.concatenate([getattr(self, f.name)] * 2) for f in fields(self)})


def draw_traits(raw: np.ndarray, seeds: np.ndarray, horizon: int) -> Traits:
    """Traits and luck of the users of `raw` (spec order), each from their own seed."""
    n = len(raw)
    normals = np.empty((n, _N_TRAIT_NORMALS))
    trait_u = np.empty((n, 2))
    weekly_normals = np.empty((n, horizon, N_NORMALS))
    weekly_uniforms = np.empty((n, horizon, N_UNIFORMS))
    for i, seed in enumerate(seeds):
        rng = np.random.default_rng(int(seed))
        normals[i] = rng.standard_normal(_N_TRAIT_NORMALS)
        trait_u[i] = rng.random(2)
        weekly_normals[i] = rng.standard_normal((horizon, N_NORMALS))
        weekly_uniforms[i] = rng.random((horizon, N_UNIFORMS))

    def col(name: str) -> np.ndarray:
        return raw[:, COL[name]]

    disc = np.clip(col("discretionary_share"), 0.0, 1.0)
    impulsivity = np.clip(
        0.15 + 1.5 * np.clip(col("impulse_share"), 0.0, disc) + 0.15 * normals[:, 0], 0.0, 1.0
    )
    days_away = np.clip(col("days_since_last_session"), 0.0, 90.0)
    acceptance = np.clip(col("nudge_acceptance_rate"), 0.05, 0.95)
    age = col("age")
    young, older = (age < 35).astype(float), (age >= 50).astype(float)
    by_type = 0.7 * normals[:, 4:]
    structure = {  # who tends to like what: learnable from age and impulse share, ignored by the rules
        "INVEST": 0.6 * young - 0.3 * older,
        "SET_GOAL": 0.5 * young,
        "REVIEW_BUDGET": 0.3 * young - 0.3 * older,
        "PAY_DEBT_EXTRA": 0.4 * older,
        "REDUCE_SPENDING": -1.0 * impulsivity,
    }
    for name, shift in structure.items():
        by_type[:, ACTION_TYPES.index(name)] += shift
    base = np.log(acceptance / (1 - acceptance)) - 0.3 + 0.4 * normals[:, 3]
    return Traits(
        impulsivity=impulsivity,
        fatigue_sensitivity=FATIGUE_SENSITIVITY * np.exp(0.5 * normals[:, 1]) * (1.0 + days_away / 60.0),
        session_rate=np.maximum(col("sessions_30d"), 0.0) * 7.0 / 30.0 * np.exp(0.3 * normals[:, 2] - 0.045),
        sweeps=trait_u[:, 0] < 0.5,
        dining_share=0.3 + 0.4 * trait_u[:, 1],
        receptiveness=base[:, None] + by_type[:, TYPE_OF],
        normals=weekly_normals,
        uniforms=weekly_uniforms,
    )


def relevance(actions: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """How much each user's situation makes their action worth doing, as an acceptance-logit shift."""

    def f(name: str) -> np.ndarray:
        return raw[:, COL[name]]

    checking, efund, goal = f("checking_balance"), f("emergency_fund_months"), f("has_active_goal")
    reduce = 3.0 * (f("discretionary_share") - 0.3) + 0.5 * (f("savings_rate") < 0.05)
    by_action = [
        0.3 + 0.4 * goal - 1.0 * (checking < 100),  # 1 SAVE_MORE 25
        -0.3 + 0.4 * goal - 1.5 * (checking < 300) + 0.5 * (f("savings_rate") > 0.15),  # 2 SAVE_MORE 100
        reduce,  # 3 REDUCE_SPENDING dining
        reduce,  # 4 REDUCE_SPENDING shopping
        4.0 * (f("max_debt_apr") - 0.15) - 1.0 * (checking < 300),  # 5 PAY_DEBT_EXTRA
        0.8 * (efund < 1) + 0.3 * (efund < 3) - 0.8 * (efund >= 3) - 0.5 * (checking < 100),  # 6 EMERGENCY
        np.full(len(actions), 0.2),  # 7 SET_GOAL
        0.4 * np.minimum(f("spending_volatility"), 2.0) - 0.2,  # 8 REVIEW_BUDGET
        0.5 * (efund >= 6) - 0.5 * (f("age") >= 60) - 1.0 * (checking < 300),  # 9 INVEST
    ]
    return np.select([actions == a for a in range(1, N_ACTIONS)], by_action, default=0.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def poisson_from_uniform(u: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Poisson(lam) draws by inverting the CDF at pre-drawn uniforms (keeps common random numbers)."""
    lam = np.minimum(lam, 50.0)
    k = np.zeros_like(lam)
    p = np.exp(-lam)
    cdf = p.copy()
    for i in range(1, 200):
        more = u > cdf
        if not more.any():
            break
        k += more
        p = p * lam / i
        cdf = cdf + p
    return k
