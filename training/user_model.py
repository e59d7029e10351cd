"""Who a simulated user is and how they respond to a nudge: latent traits and acceptance.

Traits come from the user's seed (training.crn) and their starting features, never from the actions
taken, so two policies run on the same seeds face the same people with the same luck.

A nudge is accepted with probability sigmoid(receptiveness to the action + relevance of the action to the
user's situation - fatigue sensitivity x fatigue), and only if the user sees it. Receptiveness starts from
the user's observed acceptance rate, shifts with age and impulsivity in ways a learned policy can pick up
from the features (the rules ignore them), with the calibrated shift of the action type, and is lower for
larger amounts. Fatigue builds with every nudge shown; fatigue also keeps users out of the app and raises
their weekly chance of leaving it for good (churn).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from fincoach.actions import ACTION_TYPES, ACTIONS, NO_ACTION
from fincoach.feature_spec import FEATURE_NAMES, feature_index
from training.crn import TRAIT_WEEK, normals, uniforms
from training.sim_params import SimParams

FATIGUE_DECAY = 0.5  # share of last week's fatigue still felt this week
URGENCY_FATIGUE = {"low": 0.6, "medium": 0.8, "high": 1.0}  # fatigue added by showing a nudge
FATIGUE_SENSITIVITY = 0.3  # median acceptance-logit drop per unit of fatigue
SESSIONS_FATIGUE = 0.3  # fatigue also keeps users out of the app: session rate x exp(-this x sens. x fatigue)
CHURN_FATIGUE = 0.6  # churn-logit rise per unit of (sensitivity-weighted) fatigue
PUSH_SEEN = 0.3  # chance a user with no session that week still reads the push notification
BUCKET_LOGIT = {"none": 0.0, "small": 0.2, "medium": 0.0, "large": -0.6}  # big asks are accepted less
DISCRETIONARY_SPLIT = ("dining", "shopping", "entertainment", "travel")

TYPE_OF = np.array([ACTION_TYPES.index(a.type) for a in ACTIONS])
FATIGUE_OF = np.array([0.0 if a.id == NO_ACTION else URGENCY_FATIGUE[a.urgency] for a in ACTIONS])
AMOUNT_OF = np.array([float(a.amount) for a in ACTIONS])
COL = {name: feature_index(name) for name in FEATURE_NAMES}
# Streams of training.crn: traits, then the weekly draws.
S_TRAIT_N, S_TRAIT_U, S_WEEK_N, S_WEEK_U = 1, 2, 3, 4
N_NORMALS = 5  # weekly shocks: income, essential+other spending, planned discretionary, impulse, returns
N_UNIFORMS = 6  # weekly draws: sessions, push read, acceptance, day of the last session, churn, income drop
_N_TRAIT_NORMALS = 5 + len(ACTION_TYPES)


def start_value(raw: np.ndarray, name: str, default: float | np.ndarray) -> np.ndarray:
    """Column `name` of raw starting rows if the spec has it, else `default` (a v2 feature on spec v1)."""
    if name in COL:
        return raw[:, COL[name]].astype(np.float64)
    return np.broadcast_to(np.asarray(default, dtype=np.float64), (len(raw),)).copy()


@dataclass
class Traits:
    """Latent traits of n users (arrays with n rows)."""

    impulsivity: np.ndarray  # 0..1: more impulse spending, spending cuts fade faster
    fatigue_sensitivity: np.ndarray  # acceptance-logit drop per unit of fatigue
    session_rate: np.ndarray  # expected app sessions a week when not fatigued
    sweeps: np.ndarray  # bool: the bank covers an overdraft from savings
    split: np.ndarray  # (n, 4) shares of discretionary spending: dining, shopping, entertainment, travel
    weekend_discretionary: np.ndarray  # share of discretionary spending made on Saturday/Sunday
    month_end_intensity: np.ndarray  # spending per day in a month's last 7 days / on other days
    churn_logit: np.ndarray  # weekly churn logit of an untouched user
    receptiveness: np.ndarray  # (n, N_ACTIONS) acceptance logits before relevance and fatigue

    def rows(self, index: np.ndarray) -> Traits:
        """The traits of users `index`."""
        return Traits(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def put(self, index: np.ndarray, other: Traits) -> None:
        """Overwrite users `index` with `other`'s rows."""
        for f in fields(self):
            getattr(self, f.name)[index] = getattr(other, f.name)


def draw_traits(raw: np.ndarray, seeds: np.ndarray, params: SimParams) -> Traits:
    """Traits of the users of `raw` (spec order), each from their own seed."""
    z = normals(seeds, TRAIT_WEEK, S_TRAIT_N, _N_TRAIT_NORMALS)
    u = uniforms(seeds, TRAIT_WEEK, S_TRAIT_U, 3)

    def col(name: str) -> np.ndarray:
        return raw[:, COL[name]]

    disc = np.clip(col("discretionary_share"), 0.0, 1.0)
    impulsivity = np.clip(0.15 + 1.5 * np.clip(col("impulse_share"), 0.0, disc) + 0.15 * z[:, 0], 0.0, 1.0)
    days_away = np.clip(col("days_since_last_session"), 0.0, 90.0)
    acceptance = np.clip(col("nudge_acceptance_rate"), 0.05, 0.95)
    age = col("age")
    young, older = (age < 35).astype(float), (age >= 50).astype(float)
    by_type = 0.7 * z[:, 5:]
    structure = {  # who tends to like what: learnable from age and impulse share, ignored by the rules
        "INVEST": 0.6 * young - 0.3 * older,
        "SET_GOAL": 0.5 * young,
        "ADJUST_GOAL": 0.3 * young,
        "REVIEW_BUDGET": 0.3 * young - 0.3 * older,
        "PAY_DEBT_EXTRA": 0.4 * older,
        "REDUCE_SPENDING": -1.0 * impulsivity,
        "SPENDING_ALERT": -0.5 * impulsivity,
    }
    for name, shift in structure.items():
        by_type[:, ACTION_TYPES.index(name)] += shift
    for name, shift in params.response_logit.items():
        by_type[:, ACTION_TYPES.index(name)] += shift
    base = np.log(acceptance / (1 - acceptance)) - 0.3 + 0.4 * z[:, 3]
    bucket = np.array([BUCKET_LOGIT[a.amount_bucket] for a in ACTIONS])

    # Discretionary split: from the snapshot's dining and shopping shares when the spec has them.
    safe_disc = np.where(disc > 0, disc, 1.0)
    dirichlet = -np.log(uniforms(seeds, TRAIT_WEEK, S_TRAIT_U + 100, 4)) * np.array([3.0, 3.0, 2.0, 1.0])
    split = dirichlet / dirichlet.sum(axis=1, keepdims=True)
    if "dining_share" in COL and "shopping_share" in COL:
        dining = np.clip(col("dining_share") / safe_disc, 0.0, 1.0)
        shopping = np.clip(col("shopping_share") / safe_disc, 0.0, 1.0 - dining)
        rest = split[:, 2:] / split[:, 2:].sum(axis=1, keepdims=True) * (1.0 - dining - shopping)[:, None]
        split = np.where((disc > 0)[:, None], np.column_stack([dining, shopping, rest]), split)
    # Weekend share of discretionary spending (the rest of spending is spread evenly over the week).
    weekend_disc = np.clip(0.45 + 0.1 * z[:, 4], 0.2, 0.8)
    if "weekend_spend_share" in COL:
        solved = (col("weekend_spend_share") - (2 / 7) * (1 - disc)) / safe_disc
        weekend_disc = np.where(disc > 0, np.clip(solved, 0.0, 1.0), weekend_disc)
    month_end = np.exp(0.2 * (u[:, 2] - 0.5))
    if "month_end_spend_share" in COL:
        s, f = np.clip(col("month_end_spend_share"), 0.01, 0.99), 7.0 / 30.0
        month_end = np.clip(s * (1 - f) / (f * (1 - s)), 0.2, 5.0)
    churn_p = np.clip(params.churn_weekly, 1e-5, 0.5)
    return Traits(
        impulsivity=impulsivity,
        fatigue_sensitivity=FATIGUE_SENSITIVITY * np.exp(0.5 * z[:, 1]) * (1.0 + days_away / 60.0),
        session_rate=np.maximum(col("sessions_30d"), 0.0) * 7.0 / 30.0 * np.exp(0.3 * z[:, 2] - 0.045),
        sweeps=u[:, 0] < 0.5,
        split=split,
        weekend_discretionary=weekend_disc,
        month_end_intensity=month_end,
        churn_logit=np.log(churn_p / (1 - churn_p)) + 0.5 * (u[:, 1] - 0.5) + days_away / 90.0,
        receptiveness=base[:, None] + by_type[:, TYPE_OF] + bucket[None, :],
    )


def relevance(actions: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """How much each user's situation makes their action worth doing, as an acceptance-logit shift."""

    def f(name: str) -> np.ndarray:
        return raw[:, COL[name]]

    checking, efund, goal = f("checking_balance"), f("emergency_fund_months"), f("has_active_goal")
    reduce = 3.0 * (f("discretionary_share") - 0.3) + 0.5 * (f("savings_rate") < 0.05)
    amount = AMOUNT_OF[actions]
    short_of_cash = -1.0 * (checking < 3.0 * amount)  # asked to move money one barely has
    velocity = start_value(raw, "spending_velocity", 1.0)
    by_type = {
        "SAVE_MORE": 0.3 + 0.4 * goal + 0.5 * (f("savings_rate") > 0.15) + short_of_cash,
        "REDUCE_SPENDING": reduce,
        "PAY_DEBT_EXTRA": 4.0 * (f("max_debt_apr") - 0.15) + short_of_cash,
        "BUILD_EMERGENCY_FUND": 0.8 * (efund < 1)
        + 0.3 * (efund < 3)
        - 0.8 * (efund >= 3)
        - 0.5 * (checking < 100),
        "SET_GOAL": np.full(len(actions), 0.2),
        "ADJUST_GOAL": 0.5 * (1.0 - np.clip(start_value(raw, "goal_pace_ratio", 1.0), 0.0, 1.0)),
        "SPENDING_ALERT": 1.0 * np.clip(velocity - 1.0, 0.0, 2.0) + 0.5 * (f("savings_rate") < 0),
        "REVIEW_BUDGET": 0.4 * np.minimum(f("spending_volatility"), 2.0) - 0.2,
        "INVEST": 0.5 * (efund >= 6) - 0.5 * (f("age") >= 60) + short_of_cash,
    }
    types = TYPE_OF[actions]
    out = np.zeros(len(actions))
    for name, value in by_type.items():
        out = np.where(types == ACTION_TYPES.index(name), value, out)
    return out


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
