"""Synthetic FinCoach users and their history: one DataFrame per app table, no database involved.

Each user has latent traits (impulsivity, thrift, engagement, receptiveness to each coaching action type)
that drive what they earn, spend and save and how they answer nudges. Historical nudges come from a
uniform-random logging policy (propensity 1/N_ACTIONS); accepted nudges change behaviour (a savings
transfer, less spending on a category the week after, an extra debt payment, a new goal), so off-policy
evaluation and offline training have a signal to learn from.

The simulated period is the `days` whole UTC days before `end`: [end - days, end) at midnight UTC, so with
`end` = today nothing lies in the future. Money is computed in integer cents (balances add up exactly) and
returned as float64 with two decimals. All randomness comes from one numpy Generator(seed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fincoach.actions import ACTIONS, N_ACTIONS

# Transaction categories: dbt models and features rely on exactly these values.
CATEGORIES: tuple[str, ...] = (
    "income", "rent", "utilities", "groceries", "dining", "transport", "entertainment",
    "shopping", "health", "travel", "savings_transfer", "debt_payment",
)
SPENDING_CATEGORIES = ("groceries", "dining", "transport", "entertainment", "shopping", "health", "travel")
# The split the feature spec uses (essential_share, discretionary_share); rent and utilities are essential too.
ESSENTIAL_CATEGORIES = ("rent", "utilities", "groceries", "transport", "health")
DISCRETIONARY_CATEGORIES = ("dining", "entertainment", "shopping", "travel")
# App tables in foreign-key order (parents first).
TABLES = (
    "users", "accounts", "transactions", "goals", "debts", "user_events",
    "financial_decisions", "user_sessions", "coaching_interactions",
)
LOGGING_MODEL_VERSION = "logging-uniform-v1"
GOAL_TYPES = ("emergency_fund", "vacation", "home", "car", "education")
DEBT_APR: dict[str, tuple[float, float]] = {
    "credit_card": (0.15, 0.30), "student_loan": (0.03, 0.07), "car_loan": (0.04, 0.09), "personal_loan": (0.08, 0.15),
}
EVENT_TYPES = ("page_view", "click", "budget_view", "goal_update", "nudge_view")
PAGES = ("home", "transactions", "budget", "goals", "insights", "accounts", "coach", "settings")
REGIONS = ("northeast", "southeast", "midwest", "southwest", "west")
ACTION_TYPES = tuple(dict.fromkeys(a.type for a in ACTIONS))

_DECISION_OF = {  # the decision a user takes when accepting a nudge of that type
    "SAVE_MORE": "transfer_to_savings", "BUILD_EMERGENCY_FUND": "transfer_to_savings", "PAY_DEBT_EXTRA": "pay_extra_debt",
    "REDUCE_SPENDING": "set_budget", "REVIEW_BUDGET": "set_budget", "SET_GOAL": "create_goal", "INVEST": "invest",
}

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
CHECKING, SAVINGS, CARD = 0, 1, 2
_ACCOUNT_TYPES = ("checking", "savings", "credit_card")

# category: (purchases per week, share of monthly income, first hour, last hour, Mon..Sun factor, merchants)
_SPEND: dict[str, tuple[float, float, int, int, tuple[float, ...], tuple[str, ...]]] = {
    "groceries": (2.0, 0.10, 8, 21, (1, 1, 1, 1, 1.1, 1.4, 1.3), ("FreshMart", "Green Grocer", "SuperSave")),
    "dining": (2.5, 0.05, 11, 23, (0.8, 0.8, 0.9, 1, 1.6, 1.8, 1.1), ("Pizza Place", "Sushi Bar", "Cafe Luna", "Burger Joint")),
    "transport": (4.0, 0.05, 6, 22, (1.2, 1.2, 1.2, 1.2, 1.2, 0.6, 0.5), ("Metro Transit", "RideShare", "Fuel Stop")),
    "entertainment": (1.0, 0.03, 14, 24, (0.6, 0.6, 0.7, 0.9, 1.7, 2.0, 1.0), ("CinemaPlex", "StreamFlix", "Concert Hall")),
    "shopping": (1.2, 0.05, 9, 22, (0.9, 0.9, 0.9, 1, 1.1, 1.5, 1.2), ("MegaStore", "Fashion Hub", "Gadget World", "Online Market")),
    "health": (0.3, 0.02, 8, 19, (1.1, 1.1, 1.1, 1.1, 1.1, 0.8, 0.5), ("City Pharmacy", "Dental Care", "Fitness Club")),
    "travel": (0.1, 0.03, 6, 23, (1, 1, 1, 1, 1.3, 1.2, 1), ("SkyAir", "Hotel Stay", "Rail Europe")),
}
_SEASON = {  # month (1..12) -> factor, where spending is seasonal
    "shopping": {11: 1.5, 12: 2.0},
    "travel": {6: 1.6, 7: 1.8, 8: 1.6, 12: 1.5},
}
_TYPE_BASE = {  # logit of the mean acceptance of each action type (NO_ACTION is never "accepted")
    "SAVE_MORE": -0.4, "REDUCE_SPENDING": -0.9, "PAY_DEBT_EXTRA": -0.6, "BUILD_EMERGENCY_FUND": -0.6,
    "SET_GOAL": -0.7, "REVIEW_BUDGET": -0.2, "INVEST": -1.0,
}


@dataclass
class Simulation:
    """What `simulate` returns: the table frames and the hidden truth behind them (for tests and calibration)."""

    frames: dict[str, pd.DataFrame]
    traits: pd.DataFrame  # one row per user_id: impulsivity, thrift, engagement, receptiveness_<ACTION_TYPE>
    opening_balance: pd.Series  # per account_id: balance at the start of the period


def generate(users: int, days: int, seed: int, end: dt.date) -> dict[str, pd.DataFrame]:
    """One DataFrame per app table (columns of the DDL but updated_at), deterministic for the arguments."""
    return simulate(users, days, seed, end).frames


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _utc(us: np.ndarray, missing: np.ndarray | None = None) -> pd.DatetimeIndex:
    arr = np.asarray(us, dtype=np.int64).astype("datetime64[us]")
    if missing is not None:
        arr[missing] = np.datetime64("NaT")
    return pd.DatetimeIndex(arr).tz_localize("UTC")


def _money(cents: np.ndarray) -> np.ndarray:
    return np.asarray(cents, dtype=np.int64) / 100.0


class _Ledger:
    """Transactions collected as column chunks; one row = one signed amount on one account."""

    def __init__(self) -> None:
        self.chunks: list[tuple[np.ndarray, ...]] = []

    def add(self, user: np.ndarray, kind: int | np.ndarray, cents: np.ndarray, category: str,
            at: np.ndarray, merchant: object = None, impulse: bool | np.ndarray = False) -> None:
        n = len(user)
        merchants = merchant if isinstance(merchant, np.ndarray) else np.full(n, merchant, dtype=object)
        self.chunks.append((
            np.asarray(user, np.int64), np.broadcast_to(np.asarray(kind, np.int64), (n,)),
            np.asarray(cents, np.int64), np.full(n, CATEGORIES.index(category), np.int64),
            np.asarray(at, np.int64), merchants, np.broadcast_to(np.asarray(impulse, bool), (n,)),
        ))

    def transfer(self, user: np.ndarray, cents: np.ndarray, at: np.ndarray, category: str,
                 to_kind: int, merchant: object = None) -> None:
        """Money leaves checking and arrives on another account of the same user at the same moment."""
        self.add(user, CHECKING, -cents, category, at, merchant)
        self.add(user, to_kind, cents, category, at, merchant)

    def columns(self) -> tuple[np.ndarray, ...]:
        return tuple(np.concatenate([c[i] for c in self.chunks]) for i in range(7))


def simulate(users: int, days: int, seed: int, end: dt.date) -> Simulation:
    """Simulate `users` users over the `days` days before `end`; see the module docstring."""
    if users < 1 or days < 1:
        raise ValueError(f"need users >= 1 and days >= 1, got users={users}, days={days}")
    rng = np.random.Generator(np.random.PCG64(seed))
    n, D = users, days
    end_us = int((np.datetime64(end, "D") - np.datetime64(0, "D")) / np.timedelta64(1, "us"))
    start_us = end_us - D * DAY_US
    period = D * DAY_US  # offsets below are microseconds since the period start, in [0, period)
    # Calendar of the period, plus 31 days before it (to know the last payday before the period).
    ext = np.arange(-31, D)
    epoch_day = start_us // DAY_US + ext
    dates = epoch_day.astype("datetime64[D]")
    weekday = (epoch_day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    month = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    dom = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    wd, mo, dm = weekday[31:], month[31:], dom[31:]

    def clock(lo_h: int, hi_h: int, size: int) -> np.ndarray:
        return rng.integers(lo_h * HOUR_US, hi_h * HOUR_US, size)

    # ---- users and their latent traits
    uid = np.arange(1, n + 1)
    band = rng.choice(3, n, p=[0.35, 0.45, 0.20])
    mu, sd = np.log([2300, 4800, 11000])[band], np.array([0.18, 0.2, 0.3])[band]
    lo, hi = np.array([1200, 3200, 7500])[band], np.array([3200, 7500, 40000])[band]
    income = np.round(np.clip(rng.lognormal(mu, sd), lo, hi)).astype(np.int64) * 100  # cents a month
    biweekly = rng.random(n) < 0.4
    age = np.clip(rng.normal(38, 12, n), 18, 80).astype(np.int64)
    region = rng.integers(0, len(REGIONS), n)
    device = rng.choice(3, n, p=[0.45, 0.40, 0.15])
    risk_score = rng.normal(0, 1, n) - (age - 38) / 20 + 0.3 * band
    risk = np.where(risk_score < -0.6, 0, np.where(risk_score > 0.6, 2, 1))
    opt_out = rng.random(n) < 0.03
    created = -rng.integers(30, 1500, n) * DAY_US + clock(0, 24, n)
    impulsivity = rng.beta(2, 5, n)
    thrift = np.clip(rng.beta(3, 3, n) - 0.5 * (impulsivity - 2 / 7), 0, 1)
    engagement = rng.beta(2, 3, n)
    t_user = rng.normal(0, 0.8, n) + 0.8 * (engagement - 0.4)
    tilt = {"SAVE_MORE": thrift - 0.5, "BUILD_EMERGENCY_FUND": thrift - 0.5, "REDUCE_SPENDING": 0.3 - impulsivity,
            "INVEST": (risk - 1) * 0.5}
    recept = np.zeros((n, len(ACTION_TYPES)))
    for j, t in enumerate(ACTION_TYPES):
        if t in _TYPE_BASE:
            logit = _TYPE_BASE[t] + t_user + rng.normal(0, 0.7, n) + 1.5 * tilt.get(t, 0.0)
            recept[:, j] = _sigmoid(logit)
    app_version = np.array(["5.2.0", "5.3.1", "5.4.0"], dtype=object)[rng.integers(0, 3, n)]
    device_name = np.array(["ios", "android", "web"], dtype=object)[device]

    # ---- debts (about 45% of users), their accounts, opening balances
    has_debt = rng.random(n) < np.clip(0.31 + 0.6 * impulsivity + 0.1 * (band == 0) - 0.1 * thrift, 0, 0.95)
    kinds = list(DEBT_APR)
    pick = rng.random((n, 4)) < np.stack(
        [0.55 + 0.3 * impulsivity, np.where(age < 35, 0.45, 0.15), np.full(n, 0.3), np.full(n, 0.15)], axis=1)
    pick[has_debt & ~pick.any(axis=1), 0] = True
    pick &= has_debt[:, None]
    d_user, d_kind = np.nonzero(pick)
    m = len(d_user)
    d_inc = income[d_user]
    d_bal = np.select(
        [d_kind == 0, d_kind == 1, d_kind == 2],
        [d_inc * rng.uniform(0.3, 2.5, m), rng.uniform(8e5, 6e6, m), rng.uniform(5e5, 3e6, m)],
        rng.uniform(2e5, 1.5e6, m),
    ).round().astype(np.int64)
    apr_lo = np.array([DEBT_APR[k][0] for k in kinds])[d_kind]
    apr_hi = np.array([DEBT_APR[k][1] for k in kinds])[d_kind]
    d_apr = np.round(rng.uniform(apr_lo, apr_hi), 4)
    term = np.array([1, 120, 60, 36])[d_kind]
    r = d_apr / 12
    d_min = np.where(d_kind == 0, np.maximum(2500, 0.03 * d_bal), d_bal * r / (1 - (1 + r) ** -term)).round()
    d_min = d_min.astype(np.int64)
    d_created = -rng.integers(60, 2000, m) * DAY_US + clock(0, 24, m)
    d_pay = d_min * np.where(d_kind == 0, 1 + 2 * thrift[d_user], 1 + 0.3 * thrift[d_user])
    d_pay = np.minimum(d_pay.round().astype(np.int64), d_bal)
    d_dom = rng.integers(1, 29, m)
    card_debt = np.full(n, -1)
    card_debt[d_user[d_kind == 0]] = np.nonzero(d_kind == 0)[0]
    has_card = card_debt >= 0

    n_acc = 2 + has_card.astype(np.int64)
    first_acc = np.concatenate([[1], 1 + np.cumsum(n_acc)[:-1]])
    acc_id = np.stack([first_acc, first_acc + 1, np.where(has_card, first_acc + 2, -1)], axis=1)
    a_user = np.repeat(np.arange(n), n_acc)
    a_kind = np.arange(len(a_user)) + 1 - first_acc[a_user]
    card_of = card_debt[a_user]  # the card debt behind each account (-1: not a card; index into the padded arrays)
    a_opened = np.where(a_kind == CHECKING, created[a_user] + clock(0, 72, len(a_user)),
                        created[a_user] + rng.integers(0, 25, len(a_user)) * DAY_US)
    a_opened = np.where(a_kind == CARD, np.append(d_created, 0)[card_of], a_opened)
    save_months = np.exp(rng.normal(np.log(0.3 + 4 * thrift), 0.7))
    opening = np.select(
        [a_kind == CHECKING, a_kind == SAVINGS],
        [income[a_user] * rng.uniform(0.2, 1.5, len(a_user)), income[a_user] * 0.6 * save_months[a_user]],
        -np.append(d_bal, 0)[card_of].astype(float),
    ).round().astype(np.int64)

    # ---- goals that exist before the nudges
    p0 = 0.55 - 0.4 * thrift
    u = rng.random(n)
    n_goals = (u > p0).astype(np.int64) + (u > p0 + (1 - p0) * 0.6)
    g_user = np.repeat(np.arange(n), n_goals)
    g = len(g_user)
    g_type = rng.choice(len(GOAL_TYPES), g, p=[0.35, 0.2, 0.15, 0.15, 0.15])
    g_created = np.where(rng.random(g) < 0.15, rng.integers(0, period, g),
                         -rng.integers(10, 500, g) * DAY_US + clock(0, 24, g))
    draw = rng.random(g)
    g_status = np.where((draw < 0.75) | (g_created >= 0), 0, np.where(draw < 0.87, 1, 2))  # active/achieved/abandoned
    has_goal = np.bincount(g_user[g_status == 0], minlength=n) > 0

    # ---- historical nudges: uniform logging policy, about one per user per week
    k = rng.poisson(D / 7, n)
    c_user = np.repeat(np.arange(n), k)
    c = len(c_user)
    served = rng.integers(0, D, c) * DAY_US + clock(8, 21, c)
    order = np.argsort(served, kind="stable")  # ids follow serving time
    c_user, served = c_user[order], served[order]
    action = rng.integers(0, N_ACTIONS, c)
    a_type = np.array([ACTIONS[a].type for a in range(N_ACTIONS)], dtype=object)[action]
    type_idx = np.array([ACTION_TYPES.index(ACTIONS[a].type) for a in range(N_ACTIONS)])[action]
    by_user = np.lexsort((served, c_user))
    fatigue = np.zeros(c, np.int64)  # nudges the same user got in the 7 days before this one
    su, st = c_user[by_user], served[by_user]
    for lag in range(1, c):
        recent = (su[lag:] == su[:-lag]) & (st[lag:] - st[:-lag] < 7 * DAY_US)
        if not recent.any():
            break
        fatigue[by_user[lag:][recent]] += 1
    debt_apr_max = np.zeros(n)
    np.maximum.at(debt_apr_max, d_user, d_apr)
    inv_ok = (save_months >= 3) & (debt_apr_max < 0.10)
    applicable = np.select(
        [a_type == "NO_ACTION", a_type == "PAY_DEBT_EXTRA", a_type == "SET_GOAL", a_type == "INVEST"],
        [np.zeros(c, bool), has_debt[c_user], ~has_goal[c_user], inv_ok[c_user]], np.ones(c, bool),
    )
    p_accept = recept[c_user, type_idx] * np.exp(-0.35 * fatigue) * applicable
    accepted = rng.random(c) < p_accept
    dismissed = ~accepted & (rng.random(c) < 0.25 + 0.5 * engagement[c_user]) & (action != 0)
    delay = np.where(accepted | dismissed, (rng.exponential(5.0, c) * HOUR_US).astype(np.int64) + 60_000_000,
                     72 * HOUR_US)
    responded = served + delay
    known = responded < period
    response = np.where(accepted, "accepted", np.where(dismissed, "dismissed", "ignored")).astype(object)
    response[~known] = None
    acted = accepted & known

    # ---- what accepted nudges change: savings transfers, extra debt payments, spending the week after
    ledger = _Ledger()
    dec: list[dict[str, np.ndarray]] = []
    top_debt = np.full(n, -1)  # per user, the debt with the highest APR
    order = np.lexsort((-d_apr, d_user))
    lead = np.r_[True, d_user[order][1:] != d_user[order][:-1]] if m else np.zeros(0, bool)
    top_debt[d_user[order][lead]] = order[lead]
    d_extra = np.zeros(m, np.int64)

    when = responded + rng.integers(0, 3 * DAY_US, c)  # the money moves within three days of the answer
    named = (np.array([a.amount for a in ACTIONS])[action] * 100).astype(np.int64)  # the amount the nudge names
    cents = (named * rng.choice([1.0, 1.0, 1.5, 2.0], c)).astype(np.int64)  # what the user actually moves
    moves = np.isin(a_type, ("SAVE_MORE", "BUILD_EMERGENCY_FUND", "PAY_DEBT_EXTRA"))
    done = acted & moves & (rng.random(c) < 0.9) & (when < period)
    sv = np.nonzero(done & (a_type != "PAY_DEBT_EXTRA"))[0]
    ledger.transfer(c_user[sv], cents[sv], when[sv], "savings_transfer", SAVINGS)
    dp = np.nonzero(done & (a_type == "PAY_DEBT_EXTRA"))[0]
    top = top_debt[c_user[dp]]
    on_card = d_kind[top] == 0
    ledger.transfer(c_user[dp[on_card]], cents[dp[on_card]], when[dp[on_card]], "debt_payment", CARD, "Card payment")
    ledger.add(c_user[dp[~on_card]], CHECKING, -cents[dp[~on_card]], "debt_payment", when[dp[~on_card]], "Loan servicer")
    np.add.at(d_extra, top[~on_card], cents[dp[~on_card]])

    # new goals from accepted SET_GOAL nudges
    goal_at = responded + rng.integers(0, DAY_US, c)
    ng = np.nonzero(acted & (a_type == "SET_GOAL") & (goal_at < period))[0]
    g_user = np.concatenate([g_user, c_user[ng]])
    g_type = np.concatenate([g_type, rng.choice(len(GOAL_TYPES), len(ng), p=[0.35, 0.2, 0.15, 0.15, 0.15])])
    g_created = np.concatenate([g_created, goal_at[ng]])
    g_status = np.concatenate([g_status, np.zeros(len(ng), np.int64)])
    g = len(g_user)

    # one decision per accepted nudge; outcome None while its effect lies beyond the period
    ai = np.nonzero(acted & (action != 0))[0]
    pending = np.where(moves[ai], when[ai] >= period, (a_type[ai] == "SET_GOAL") & (goal_at[ai] >= period))
    dec.append({
        "user": c_user[ai],
        "type": np.array([_DECISION_OF[t] for t in a_type[ai]], dtype=object),
        "cents": np.where(moves[ai], cents[ai], np.where(named[ai] > 0, named[ai], -1)),
        "category": np.array([ACTIONS[a].category if ACTIONS[a].type == "REDUCE_SPENDING" else None
                              for a in action[ai]], dtype=object),
        "at": responded[ai],
        "outcome": np.where(pending, None, np.where(done[ai] | ~moves[ai], "completed", "abandoned")).astype(object),
        "context": np.array([{"source": "nudge", "interaction_id": int(i) + 1, "action_id": int(action[i])}
                             for i in ai], dtype=object),
    })

    # spending multipliers (log) per user and day: REDUCE_SPENDING halves that category for the next 7 days,
    # REVIEW_BUDGET trims discretionary spending by 15% for 7 days.
    log_eff = {cat: np.zeros((n, D + 9)) for cat in ("dining", "shopping", "entertainment")}
    r_day = responded // DAY_US + 1
    for i in np.nonzero(acted & np.isin(a_type, ("REDUCE_SPENDING", "REVIEW_BUDGET")))[0]:
        reduce = a_type[i] == "REDUCE_SPENDING"
        factor = np.log(0.5) if reduce else np.log(0.85)
        for cat in (ACTIONS[action[i]].category,) if reduce else tuple(log_eff):
            log_eff[cat][c_user[i], r_day[i]] += factor
            log_eff[cat][c_user[i], r_day[i] + 7] -= factor
    eff = {cat: np.exp(np.cumsum(v, axis=1)[:, :D]) for cat, v in log_eff.items()}

    # ---- income, bills, regular savings and debt payments
    pay_dom = rng.integers(1, 29, n)
    anchor = ((rng.choice([0, 4, 4, 4], n) - 3) % 7) + 7 * rng.integers(0, 2, n)  # mostly Fridays
    paid = np.where(biweekly[:, None], (epoch_day[None, :] - anchor[:, None]) % 14 == 0,
                    dom[None, :] == pay_dom[:, None])
    last = np.maximum.accumulate(np.where(paid, ext[None, :], -10_000), axis=1)
    since_pay = (ext[None, :] - last)[:, 31:]
    paid = paid[:, 31:]
    pay = np.where(biweekly, (income * 12 / 26).round(), income).astype(np.int64)
    pu, pd_ = np.nonzero(paid)
    pay_at = pd_ * DAY_US + clock(6, 9, len(pu))
    ledger.add(pu, CHECKING, pay[pu], "income", pay_at, "Payroll")
    saver = rng.random(n) < 0.15 + 0.75 * thrift
    rate = 0.03 + 0.17 * thrift
    sv = saver[pu]
    ledger.transfer(pu[sv], (pay[pu[sv]] * rate[pu[sv]]).round(-2).astype(np.int64),
                    pay_at[sv] + clock(1, 3, int(sv.sum())), "savings_transfer", SAVINGS)

    rent_share = rng.uniform(0.22, 0.36, n) + 0.05 * (band == 0)
    rent = (income * rent_share).round(-2).astype(np.int64)
    rent_dom = rng.choice([1, 1, 1, 2, 3, 5], n)
    ru, rd = np.nonzero(dm[None, :] == rent_dom[:, None])
    ledger.add(ru, CHECKING, -rent[ru], "rent", rd * DAY_US + clock(7, 12, len(ru)), "Landlord")
    util_dom, phone_dom = rng.integers(5, 26, n), rng.integers(1, 29, n)
    util_base, phone = income * rng.uniform(0.025, 0.045, n), rng.integers(30, 90, n) * 100
    uu, ud = np.nonzero(dm[None, :] == util_dom[:, None])
    winter = np.isin(mo[ud], (12, 1, 2)) * 0.3
    util = (util_base[uu] * (1 + winter) * rng.uniform(0.9, 1.1, len(uu))).round().astype(np.int64)
    ledger.add(uu, CHECKING, -util, "utilities", ud * DAY_US + clock(8, 18, len(uu)), "City Power & Water")
    fu, fd = np.nonzero(dm[None, :] == phone_dom[:, None])
    ledger.add(fu, CHECKING, -phone[fu], "utilities", fd * DAY_US + clock(8, 18, len(fu)), "Phone carrier")

    di, dd = np.nonzero(dm[None, :] == d_dom[:, None])
    dpu, dat = d_user[di], dd * DAY_US + clock(8, 18, len(di))
    on_card = d_kind[di] == 0
    ledger.transfer(dpu[on_card], d_pay[di][on_card], dat[on_card], "debt_payment", CARD, "Card payment")
    ledger.add(dpu[~on_card], CHECKING, -d_pay[di][~on_card], "debt_payment", dat[~on_card], "Loan servicer")
    paid_loans = np.bincount(di[~on_card], weights=d_pay[di][~on_card], minlength=m).astype(np.int64)

    # ---- everyday spending: weekday pattern, season, nudge effects; impulse purchases after payday
    disc = 0.6 + 1.2 * impulsivity + 0.6 * (1 - thrift)
    merchant_pool = {cat: np.array(v[5], dtype=object) for cat, v in _SPEND.items()}
    for cat, (per_week, share, h0, h1, wd_factor, _) in _SPEND.items():
        level = disc if cat in DISCRETIONARY_CATEGORIES else np.ones(n)
        if cat == "groceries":
            level = level * (1 + 0.3 * (band == 0))
        lam = (per_week / 7) * np.asarray(wd_factor)[wd][None, :] * np.sqrt(level)[:, None]
        season = np.array([_SEASON.get(cat, {}).get(int(x), 1.0) for x in mo])
        lam = lam * season[None, :] * eff.get(cat, 1.0)
        counts = rng.poisson(lam)
        su_, sd_ = np.nonzero(counts)
        su_, sd_ = np.repeat(su_, counts[su_, sd_]), np.repeat(sd_, counts[su_, sd_])
        mean = income[su_] * share * np.sqrt(level[su_]) / (per_week * 30 / 7)  # spend ~ level
        cents = np.maximum(100, rng.lognormal(np.log(mean) - 0.125, 0.5)).round().astype(np.int64)
        kind = np.where(has_card[su_] & (rng.random(len(su_)) < 0.35) & (cat in DISCRETIONARY_CATEGORIES), CARD, CHECKING)
        merchant = merchant_pool[cat][rng.integers(0, len(merchant_pool[cat]), len(su_))]
        ledger.add(su_, kind, -cents, cat, sd_ * DAY_US + clock(h0, h1, len(su_)), merchant)

    lam = 0.5 * impulsivity[:, None] ** 1.5 * (1 + 2 * np.exp(-since_pay / 2))
    counts = rng.poisson(lam)
    iu, idd = np.nonzero(counts)
    iu, idd = np.repeat(iu, counts[iu, idd]), np.repeat(idd, counts[iu, idd])
    cat_i = rng.choice(3, len(iu), p=[0.5, 0.2, 0.3])
    mean = (2000 + 12000 * impulsivity[iu]) * np.sqrt(income[iu] / 480000)
    cents = rng.lognormal(np.log(mean) - 0.18, 0.6).round().astype(np.int64)
    kind = np.where(has_card[iu] & (rng.random(len(iu)) < 0.5), CARD, CHECKING)
    at = idd * DAY_US + clock(10, 24, len(iu))
    for j, cat in enumerate(("shopping", "dining", "entertainment")):
        sel = cat_i == j
        pool = merchant_pool[cat]
        ledger.add(iu[sel], kind[sel], -cents[sel], cat, at[sel], pool[rng.integers(0, len(pool), int(sel.sum()))],
                   impulse=True)

    # ---- organic decisions (not prompted by a nudge); completed savings decisions move money
    k = rng.poisson(D * (0.01 + 0.06 * engagement))
    ou = np.repeat(np.arange(n), k)
    o = len(ou)
    o_at = rng.integers(0, D, o) * DAY_US + clock(7, 23, o)
    o_kind = rng.choice(3, o, p=[0.4, 0.3, 0.3])  # transfer_to_savings, set_budget, skip_purchase
    o_cat = np.array(SPENDING_CATEGORIES, dtype=object)[rng.integers(0, len(SPENDING_CATEGORIES), o)]
    o_cat[o_kind == 2] = np.array(DISCRETIONARY_CATEGORIES, dtype=object)[rng.integers(0, 4, int((o_kind == 2).sum()))]
    o_cat[o_kind == 0] = None
    o_cents = np.select([o_kind == 0, o_kind == 1],
                        [(income[ou] * rng.uniform(0.02, 0.1, o)).round(-2), (income[ou] * 0.05).round(-2)],
                        rng.uniform(1500, 15000, o).round(-2)).astype(np.int64)
    p_done = np.select([o_kind == 0, o_kind == 1], [0.3 + 0.6 * thrift[ou], np.full(o, 0.8)], 1 - 0.8 * impulsivity[ou])
    o_done = rng.random(o) < p_done
    screens = np.array(["home", "budget", "goals", "insights"], dtype=object)[rng.integers(0, 4, o)]
    dec.append({
        "user": ou, "type": np.array(["transfer_to_savings", "set_budget", "skip_purchase"], dtype=object)[o_kind],
        "cents": o_cents, "category": o_cat, "at": o_at,
        "outcome": np.where(o_done, "completed", "abandoned").astype(object),
        "context": np.array([{"source": "organic", "screen": sc} for sc in screens], dtype=object),
    })
    t_sel = (o_kind == 0) & o_done
    ledger.transfer(ou[t_sel], o_cents[t_sel], o_at[t_sel] + 60_000_000, "savings_transfer", SAVINGS)

    # ---- transactions frame and balances
    t_user, t_kind, t_cents, t_cat, t_at, t_merchant, t_imp = ledger.columns()
    order = np.lexsort((t_user, t_at))
    t_user, t_kind, t_cents, t_cat, t_at, t_merchant, t_imp = (
        x[order] for x in (t_user, t_kind, t_cents, t_cat, t_at, t_merchant, t_imp))
    t_acc = acc_id[t_user, t_kind]
    n_accounts = len(a_user)
    flows = np.bincount(t_acc - 1, weights=t_cents, minlength=n_accounts).round().astype(np.int64)
    balance = opening + flows
    card_bal = np.where(has_card, balance[np.maximum(acc_id[:, CARD] - 1, 0)], 0)
    interest = (d_bal * d_apr * D / 365).round().astype(np.int64)
    d_end = np.where(d_kind == 0, np.maximum(0, -card_bal[d_user]),
                     np.maximum(0, d_bal + interest - paid_loans - d_extra))
    frames: dict[str, pd.DataFrame] = {}
    frames["users"] = pd.DataFrame({
        "user_id": uid, "created_at": _utc(start_us + created), "birth_year": end.year - age,
        "income_band": np.array(["low", "middle", "high"], dtype=object)[band],
        "pay_frequency": np.where(biweekly, "biweekly", "monthly").astype(object), "monthly_income": _money(income),
        "region": np.array(REGIONS, dtype=object)[region], "device_type": device_name,
        "risk_tolerance": np.array(["low", "medium", "high"], dtype=object)[risk], "tracking_opt_out": opt_out,
    })
    frames["accounts"] = pd.DataFrame({
        "account_id": np.arange(1, n_accounts + 1), "user_id": uid[a_user],
        "account_type": np.array(_ACCOUNT_TYPES, dtype=object)[a_kind], "opened_at": _utc(start_us + a_opened),
        "current_balance": _money(balance),
    })
    frames["transactions"] = pd.DataFrame({
        "transaction_id": np.arange(1, len(t_user) + 1), "user_id": uid[t_user], "account_id": t_acc,
        "amount": _money(t_cents), "category": np.array(CATEGORIES, dtype=object)[t_cat], "merchant": t_merchant,
        "is_impulse": t_imp, "occurred_at": _utc(start_us + t_at),
    })

    # goals: targets by type; active goals hold part of the savings balance
    g_inc = income[g_user]
    g_target = np.select(
        [g_type == 0, g_type == 1, g_type == 2, g_type == 3],
        [g_inc * rng.uniform(3, 6, g), rng.uniform(1e5, 6e5, g), rng.uniform(2e6, 8e6, g), rng.uniform(5e5, 3e6, g)],
        rng.uniform(2e5, 2e6, g),
    ).round(-4).astype(np.int64)
    savings_end = np.maximum(balance[acc_id[:, SAVINGS] - 1], 0)
    n_active = np.bincount(g_user[g_status == 0], minlength=n)
    held = (0.8 * savings_end[g_user] / np.maximum(n_active[g_user], 1)).round().astype(np.int64)
    g_current = np.select(
        [g_status == 0, g_status == 1], [np.minimum(held, (g_target * 0.98).round().astype(np.int64)), g_target],
        (g_target * rng.uniform(0, 0.5, g)).round().astype(np.int64),
    )
    g_due = ((start_us + g_created) // DAY_US + rng.integers(120, 1500, g)).astype("datetime64[D]")
    order = np.lexsort((g_created, g_user))
    frames["goals"] = pd.DataFrame({
        "goal_id": np.arange(1, g + 1), "user_id": uid[g_user[order]],
        "goal_type": np.array(GOAL_TYPES, dtype=object)[g_type[order]], "target_amount": _money(g_target[order]),
        "current_amount": _money(g_current[order]), "target_date": pd.Series(g_due[order]).dt.date.to_numpy(),
        "status": np.array(["active", "achieved", "abandoned"], dtype=object)[g_status[order]],
        "created_at": _utc(start_us + g_created[order]),
    })
    frames["debts"] = pd.DataFrame({
        "debt_id": np.arange(1, m + 1), "user_id": uid[d_user], "debt_type": np.array(kinds, dtype=object)[d_kind],
        "balance": _money(d_end), "apr": d_apr, "min_payment": _money(d_min), "created_at": _utc(start_us + d_created),
    })

    # ---- sessions and events (none for users who opted out of tracking)
    tracked = ~opt_out
    lam = (0.05 + 1.2 * engagement ** 1.2)[:, None] * np.where(wd >= 5, 1.2, 1.0)[None, :] * (1 + 0.5 * paid)
    counts = rng.poisson(lam * tracked[:, None])
    s_user, s_day = np.nonzero(counts)
    s_user, s_day = np.repeat(s_user, counts[s_user, s_day]), np.repeat(s_day, counts[s_user, s_day])
    s_start = s_day * DAY_US + clock(7, 24, len(s_user))
    s_nudge = np.full(len(s_user), -1)
    seen = np.nonzero((accepted | dismissed) & known & tracked[c_user])[0]  # answered in the app
    s_user = np.concatenate([s_user, c_user[seen]])
    s_start = np.concatenate([s_start, responded[seen] - 60_000_000])
    s_nudge = np.concatenate([s_nudge, seen])
    order = np.argsort(s_start, kind="stable")
    s_user, s_start, s_nudge = s_user[order], s_start[order], s_nudge[order]
    ns = len(s_user)
    s_events = 1 + rng.poisson(1 + 6 * engagement[s_user])
    e_sess = np.repeat(np.arange(ns), s_events)
    ne = len(e_sess)
    first = np.concatenate([[0], np.cumsum(s_events)[:-1]]) if ns else np.zeros(0, np.int64)
    pos = np.arange(ne) - first[e_sess]
    duration = (rng.lognormal(np.log(180), 0.6, ns) * 1e6).astype(np.int64)
    e_at = s_start[e_sess] + 10_000_000 + (pos > 0) * (rng.random(ne) * duration[e_sess]).astype(np.int64)
    e_type = rng.choice(4, ne, p=[0.5, 0.3, 0.13, 0.07])
    e_type[(pos == 0) & (s_nudge[e_sess] >= 0)] = 4  # a nudge session opens on the nudge
    e_order = np.lexsort((e_at, e_sess))  # events of a session in time order
    e_sess, e_at, e_type = e_sess[e_order], e_at[e_order], e_type[e_order]
    e_page = rng.integers(0, len(PAGES), ne)
    e_page = np.select([e_type == 2, e_type == 3, e_type == 4], [2, 3, 6], e_page)
    e_cat = rng.integers(0, len(SPENDING_CATEGORIES), ne)
    e_delta = rng.integers(10, 200, ne) * 5
    alive = e_at < period  # a session may run past the end of the period: its later events do not exist yet
    s_end = np.full(ns, -1, np.int64)
    np.maximum.at(s_end, e_sess[alive], e_at[alive])
    s_end_at = s_end + rng.integers(5_000_000, 60_000_000, ns)
    s_open = s_end_at >= period
    s_count = np.bincount(e_sess[alive], minlength=ns)
    keep_s = s_count > 0
    s_id = np.cumsum(keep_s)  # new ids of the sessions kept
    names = np.array([f"sess-{i:08d}" for i in range(1, int(keep_s.sum()) + 1)], dtype=object)
    pages = [[] for _ in range(ns)]
    for si, pg in zip(e_sess[alive].tolist(), e_page[alive].tolist(), strict=True):
        p_name = PAGES[pg]
        if p_name not in pages[si]:
            pages[si].append(p_name)
    frames["user_sessions"] = pd.DataFrame({
        "id": np.arange(1, len(names) + 1), "user_id": uid[s_user[keep_s]], "session_id": names,
        "start_time": _utc(start_us + s_start[keep_s]), "end_time": _utc(start_us + s_end_at[keep_s], s_open[keep_s]),
        "actions_count": s_count[keep_s], "pages_visited": [pages[i] for i in np.nonzero(keep_s)[0]],
    })
    ev = np.nonzero(alive)[0]
    ev = ev[np.argsort(e_at[ev], kind="stable")]
    e_user = s_user[e_sess[ev]]
    data = []
    for et, pg, ct, dl, si in zip(e_type[ev].tolist(), e_page[ev].tolist(), e_cat[ev].tolist(),
                                  e_delta[ev].tolist(), e_sess[ev].tolist(), strict=True):
        if et == 4:
            ci = int(s_nudge[si])
            data.append({"interaction_id": ci + 1, "action_id": int(action[ci]), "action_type": a_type[ci]})
        elif et == 3:
            data.append({"field": "current_amount", "delta": dl})
        elif et == 2:
            data.append({"category": SPENDING_CATEGORIES[ct]})
        elif et == 1:
            data.append({"page": PAGES[pg], "element": "button"})
        else:
            data.append({"page": PAGES[pg]})
    ctx_by_user = [{"device": d, "app_version": v} for d, v in zip(device_name, app_version, strict=True)]
    frames["user_events"] = pd.DataFrame({
        "id": np.arange(1, len(ev) + 1), "user_id": uid[e_user],
        "event_type": np.array(EVENT_TYPES, dtype=object)[e_type[ev]], "event_data": data,
        "timestamp": _utc(start_us + e_at[ev]), "session_id": names[s_id[e_sess[ev]] - 1],
        "context": [dict(ctx_by_user[i]) for i in e_user.tolist()],
    })

    # ---- financial decisions and the coaching log
    cols = {key: np.concatenate([d[key] for d in dec]) for key in dec[0]}
    order = np.argsort(cols["at"], kind="stable")
    cols = {key: v[order] for key, v in cols.items()}
    frames["financial_decisions"] = pd.DataFrame({
        "id": np.arange(1, len(order) + 1), "user_id": uid[cols["user"].astype(np.int64)],
        "decision_type": cols["type"],
        "amount": np.where(cols["cents"] >= 0, cols["cents"] / 100.0, np.nan),
        "category": cols["category"], "context": cols["context"], "outcome": cols["outcome"],
        "timestamp": _utc(start_us + cols["at"]),
    })
    frames["coaching_interactions"] = pd.DataFrame({
        "id": np.arange(1, c + 1), "request_id": np.array([f"hist-{i}" for i in range(1, c + 1)], dtype=object),
        "user_id": uid[c_user], "action_id": action.astype(np.int32), "action_type": a_type,
        "propensity": np.full(c, 1.0 / N_ACTIONS), "model_version": LOGGING_MODEL_VERSION,
        "source": "historical", "served_at": _utc(start_us + served), "response": response,
        "responded_at": _utc(start_us + responded, ~known),
    })

    traits = pd.DataFrame({"user_id": uid, "impulsivity": impulsivity, "thrift": thrift, "engagement": engagement,
                           **{f"receptiveness_{t}": recept[:, j] for j, t in enumerate(ACTION_TYPES)}})
    return Simulation(frames, traits, pd.Series(_money(opening), index=pd.RangeIndex(1, n_accounts + 1),
                                                name="opening_balance"))
