"""A seeded, vectorised simulator of how users' finances respond to weekly coaching.

Each simulated user starts from one row of a feature snapshot (raw features in spec order), follows the
income and spending processes of their archetype (training.sim_params, fitted by training.calibrate) and
has latent traits from their own seed (training.user_model). One step is one week:

1. income arrives (log-normal noise, now and then a week with half the pay) and standing habits move
   money to savings and to debt;
2. the user opens the app (Poisson sessions, fewer when fatigued) and the coaching action is shown; a
   user who has left the app (churned) sees nothing;
3. they accept with probability sigmoid(receptiveness + relevance - fatigue); unseen nudges cannot be;
4. an accepted nudge changes behaviour: a transfer (save, pay debt, invest: the amount the action names),
   a spending cut in the named category that fades, a goal with a standing auto-saving, a re-planned goal;
5. spending happens: essential (rising with inflation), discretionary per category (dining, shopping,
   entertainment, travel, with seasonal peaks), impulse purchases; a weekend and month-end split;
   debt accrues interest and takes its minimum payment, savings earn the market's interest rate minus a
   spread, investments the market's return; an overdrawn account is swept from savings or charged a fee;
6. fatigue raises the chance of leaving the app for good (churn, absorbing).

Common random numbers: every draw is a function of (user seed, week, stream) (training.crn) and the market
path (training.market) of the run's seed, never of the actions, so two policies on the same seeds see the
same incomes, shocks, sessions and coin flips.

Reward is the lift over not coaching: each user has an untreated twin (same row and seed, always
NO_ACTION) simulated alongside; the financial components are the user's change minus the twin's, so a
policy that never nudges scores exactly 0. Components and weights: training.reward.

Balance identity (money is conserved), per user and step, with net worth = checking + savings +
investments - debt:

    Δ net worth = income - spending - debt_interest - overdraft_fee + savings_interest + investment_return

Every other movement is a transfer between the user's own accounts. `StepResult.flows` carries the terms.

Users are stepped in lockstep by `step`, and `reset_rows` restarts some of them (the vector env's
autoreset): each row has its own week. `raw_features()` rebuilds every spec feature (training.sim_features).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fincoach.actions import N_ACTIONS, NO_ACTION, action_mask
from fincoach.feature_spec import FEATURE_NAMES, N_FEATURES, FeatureSpecError
from training import reward as rw
from training.crn import normals, uniforms
from training.market import MarketProcess
from training.responses import apply_accepted, move_from_checking
from training.sim_features import rebuild
from training.sim_init import HISTORY_WEEKS, SPLIT, STATE, init_rows
from training.sim_params import DEFAULT_PARAMS, SimParams
from training.user_model import (
    CHURN_FATIGUE,
    FATIGUE_DECAY,
    FATIGUE_OF,
    N_NORMALS,
    N_UNIFORMS,
    PUSH_SEEN,
    S_WEEK_N,
    S_WEEK_U,
    SESSIONS_FATIGUE,
    Traits,
    poisson_from_uniform,
    relevance,
    sigmoid,
)

SIMULATOR_VERSION = "sim-v2"
HORIZON = 12  # weeks in one episode

# Money.
OVERDRAFT_FEE = 25.0
SAVINGS_SPREAD = 0.005  # savings earn the policy rate minus this
SAVINGS_APR = 0.02  # for valuing holdings in the reward (fixed, so the market cannot move the reward)
INVEST_MEAN_RETURN = 0.06
MIN_PAYMENT_PRINCIPAL = 0.01  # a month, on top of the interest
SEASON = {  # month (1..12) -> factor on a discretionary category
    "shopping": {11: 1.5, 12: 2.0},
    "travel": {6: 1.6, 7: 1.8, 8: 1.6, 12: 1.5},
}
# What an accepted nudge does (who accepts is training.user_model).
HABIT_DECAY = 0.9  # standing transfers started by a nudge fade by this factor a week
SPEND_CUT_PERSISTENCE = 0.5  # share of a spending cut kept the next week (less for impulsive users)
# Reward scales.
VALUE_YEARS = 2.0  # holdings count with this many years of the interest they earn (or cost, for debt)
GOAL_WEIGHT = 2.0
BUFFER_MONTHS = 1.5  # scale of the emergency-buffer score 1 - exp(-months / BUFFER_MONTHS)
FATIGUE_PENALTY = 0.005
OVERDRAFT_PENALTY = 0.2
INVALID_PENALTY = 0.05
CHURN_PENALTY = 1.0
REWARD_COMPONENTS = rw.REWARD_COMPONENTS
REWARD_MIN, REWARD_MAX = rw.bounds(rw.parse_weights(None))  # with unit weights
_EPOCH = np.datetime64("2026-01-01")


@dataclass
class StepResult:
    """What one week did to each of the n users."""

    reward: np.ndarray  # (n,) weighted reward
    components: dict[str, np.ndarray]  # name -> (n,) clipped reward component (unweighted)
    executed: np.ndarray  # (n,) action actually applied (NO_ACTION where invalid, or the user has left)
    invalid: np.ndarray  # (n,) bool: the chosen action was not allowed for the user
    shown: np.ndarray  # (n,) bool: a nudge (not NO_ACTION) was shown
    seen: np.ndarray  # (n,) bool: the user saw it (a session that week, or read the push)
    accepted: np.ndarray  # (n,) bool: the user acted on it
    churned: np.ndarray  # (n,) bool: the user left the app this week (terminal)
    flows: dict[str, np.ndarray]  # the terms of the balance identity, see the module docstring


def _month_end_days(day0: int) -> tuple[int, float]:
    """(month of the week starting `day0` days after the epoch, share of its days in a month's last 7)."""
    days = _EPOCH + np.arange(day0, day0 + 7)
    months = days.astype("datetime64[M]")
    to_end = ((months + 1).astype("datetime64[D]") - days).astype(int)
    return int(months[3].astype(int) % 12 + 1), float((to_end <= 7).mean())


class Simulator:
    """n simulated users stepping through weeks; rows 0..n-1 are the users, n..2n-1 their untreated twins."""

    def __init__(
        self,
        raw: np.ndarray,
        seeds: Sequence[int] | np.ndarray,
        horizon: int = HORIZON,
        params: SimParams | None = None,
        market_seed: int = 0,
        start_day: int = 0,
        reward_weights: Mapping[str, float] | None = None,
    ):
        raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
        if raw.shape[1] != N_FEATURES:
            raise FeatureSpecError(f"expected {N_FEATURES} raw features, got {raw.shape[1]}")
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        if len(seeds) != len(raw):
            raise ValueError(f"one seed per user: got {len(seeds)} seeds for {len(raw)} users")
        if horizon < 1:
            raise ValueError(f"horizon must be at least one week, got {horizon}")
        self.n, self.horizon, self._rows = len(raw), horizon, 2 * len(raw)
        self.params = params or DEFAULT_PARAMS
        self.weights = rw.parse_weights(reward_weights)
        self.market_process = MarketProcess(market_seed)
        self.start_day, self.clock = int(start_day), 0
        rows = self._rows
        for name in STATE:
            setattr(self, name, np.zeros(rows))
        for name in ("goal_active", "churned"):
            setattr(self, name, np.zeros(rows, dtype=bool))
        self.week = np.zeros(rows, dtype=np.int64)
        self.seeds = np.zeros(rows, dtype=np.int64)
        self.receptiveness = np.zeros((rows, N_ACTIONS))
        self.start = np.zeros((rows, N_FEATURES))
        self.spend_cut = np.zeros((rows, len(SPLIT)))
        self.hist = {
            name: np.zeros((rows, HISTORY_WEEKS))
            for name in (
                "income",
                "essential",
                "other",
                "discretionary",
                "impulse",
                "sessions",
                "spend",
                "weekend",
                "month_end",
                "balance",
                *SPLIT,
            )
        }
        self.traits: Traits | None = None
        self._raw_cache: np.ndarray | None = None
        self.market = self.market_process.conditions(np.zeros(rows))
        self.reset_rows(np.arange(self.n), raw, seeds)

    @property
    def t(self) -> int:
        """Weeks simulated by the least advanced user."""
        return int(self.week[: self.n].min())

    @property
    def done(self) -> bool:
        """True once every user has had `horizon` weeks."""
        return self.t >= self.horizon

    def reset_rows(self, users: np.ndarray, raw: np.ndarray, seeds: np.ndarray) -> None:
        """Start users `users` (indexes < n) afresh from raw rows with new seeds (and their twins with them)."""
        init_rows(self, users, raw, seeds)
        self._raw_cache = None
        self.market = self.market_process.conditions(np.full(self._rows, self.clock))

    def net_worth(self) -> np.ndarray:
        """checking + savings + investments - debt, per user."""
        return (self.checking + self.savings + self.investments - self.debt)[: self.n]

    def raw_features(self) -> np.ndarray:
        """(n, N_FEATURES) raw features in spec order, rebuilt from the current state."""
        return self._raw()[: self.n].copy()

    def twin_raw_features(self) -> np.ndarray:
        """(n, N_FEATURES) raw features of the untreated twins (what would have happened without coaching)."""
        return self._raw()[self.n :].copy()

    def _raw(self) -> np.ndarray:
        # Cached between a step and the next (the env observes, then the next step reads the same state).
        if self._raw_cache is None:
            self._raw_cache = rebuild(self, FEATURE_NAMES, self.start)
        return self._raw_cache

    def step(self, actions: np.ndarray | Sequence[int], active: np.ndarray | None = None) -> StepResult:
        """Simulate one week with `actions[i]` shown to user i; invalid actions act as NO_ACTION.

        `active` (bool, n): users to step; the others (e.g. just reset by a vector env) keep their state
        and get zeros in the result.
        """
        n = self.n
        act_rows = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool).reshape(-1)
        if (self.week[:n][act_rows] >= self.horizon).any():
            raise RuntimeError(
                f"the simulation is over ({self.horizon} weeks) for some users: reset them first"
            )
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        if len(actions) != n or (actions < 0).any() or (actions >= N_ACTIONS).any():
            raise ValueError(f"expected {n} action ids in [0, {N_ACTIONS}), got {actions!r}")
        rows_active = np.concatenate([act_rows, act_rows])
        frozen = None
        if not rows_active.all():
            frozen = {k: getattr(self, k)[~rows_active].copy() for k in STATE}
            frozen_hist = {k: v[~rows_active].copy() for k, v in self.hist.items()}
            frozen_traits = self.traits.rows(~rows_active)
        actions = np.concatenate([actions, np.full(n, NO_ACTION)])  # the twins are never coached
        rows = self._rows
        idx = np.arange(rows)
        tr = self.traits
        week = np.minimum(self.week, self.horizon - 1)
        zn = np.tile(normals(self.seeds[:n], week[:n], S_WEEK_N, N_NORMALS), (2, 1))
        zu = np.tile(uniforms(self.seeds[:n], week[:n], S_WEEK_U, N_UNIFORMS), (2, 1))
        month, month_end_days = _month_end_days(self.start_day + 7 * self.clock)
        market = self.market  # this week's conditions (set when the week before ended)
        raw = self._raw()
        self._raw_cache = None  # the state changes from here on
        invalid = ~action_mask(raw)[idx, actions]
        executed = np.where(invalid | self.churned, NO_ACTION, actions)
        eff_before = self._effective_net_worth()
        buffer_before, goal_before = self._buffer(), self._goal_progress()
        savings_before = self.savings.copy()

        # 1. Income, and the standing transfers to savings and debt.
        drop = np.where(zu[:, 5] < self.income_drop_p, 0.5, 1.0)
        income = self.base_income * np.exp(self.income_sd * zn[:, 0] - self.income_sd**2 / 2) * drop
        self.checking += income
        everyone = np.ones(rows, dtype=bool)
        auto = move_from_checking(self, everyone, self.save_habit + self.save_share * self.base_income)
        self.checking -= auto
        self.savings += auto
        self.goal_saved += np.where(self.goal_active, auto, 0.0)
        extra = np.minimum(move_from_checking(self, everyone, self.debt_habit), self.debt)
        self.checking -= extra
        self.debt -= extra

        # 2-3. Sessions, the nudge, and whether it is accepted (fatigue lowers both; churned users are gone).
        self.fatigue *= FATIGUE_DECAY
        rate = tr.session_rate * np.exp(-SESSIONS_FATIGUE * tr.fatigue_sensitivity * self.fatigue)
        sessions = np.where(self.churned, 0.0, poisson_from_uniform(zu[:, 0], rate))
        shown = executed != NO_ACTION
        seen = shown & ((sessions > 0) | (zu[:, 1] < PUSH_SEEN))
        logit = (
            self.receptiveness[idx, executed]
            + relevance(executed, raw)
            - tr.fatigue_sensitivity * self.fatigue
        )
        accepted = seen & (zu[:, 2] < sigmoid(logit))
        self.fatigue += FATIGUE_OF[executed]
        apply_accepted(self, accepted, executed)

        # 4. Spending: essential with inflation, discretionary per category with seasons, impulse.
        self.price *= 1.0 + market["inflation_rate"] / 52.0
        sd_e = self.essential_sd + 0.1 * self.volatility
        sd_d = self.discretionary_sd + 0.3 * self.volatility
        shock = np.exp(sd_e * zn[:, 1] - sd_e**2 / 2)
        essential = self.base_essential * shock * self.price
        other = self.base_other * shock * self.price
        planned = self.base_planned * np.exp(sd_d * zn[:, 2] - sd_d**2 / 2)
        impulse = (
            self.impulse_scale
            * self.base_impulse
            * (0.5 + tr.impulsivity)
            * np.exp(self.impulse_sd * zn[:, 3] - self.impulse_sd**2 / 2)
        )
        season = np.array([SEASON.get(c, {}).get(month, 1.0) for c in SPLIT])
        by_cat = (planned + impulse)[:, None] * tr.split * season[None, :]
        cut = np.minimum(self.spend_cut, 0.8 * by_cat)
        keep = np.where(by_cat > 0, 1.0 - cut / np.where(by_cat > 0, by_cat, 1.0), 1.0)
        by_cat = by_cat * keep
        discretionary = by_cat.sum(axis=1)
        impulse_total = impulse * np.where(
            planned + impulse > 0, discretionary / np.maximum(planned + impulse, 1e-9), 0.0
        )
        spending = essential + other + discretionary
        self.checking -= spending

        # 5. Debt interest and minimum payment (autopay, even into overdraft); market returns.
        interest = self.debt * self.apr / 52.0
        self.debt += interest
        minimum = np.minimum(self.debt, interest + self.debt * MIN_PAYMENT_PRINCIPAL * 12.0 / 52.0)
        self.checking -= minimum
        self.debt -= minimum
        dust = np.where(self.debt < 0.005, self.debt, 0.0)  # paid off: the rounding dust is paid too
        self.checking -= dust
        self.debt -= dust
        savings_interest = self.savings * np.maximum(market["interest_rate"] - SAVINGS_SPREAD, 0.0) / 52.0
        self.savings += savings_interest
        investment_return = self.investments * (market["weekly_return"] + 0.01 * zn[:, 4])
        self.investments += investment_return

        # 6. Overdraft: sweep from savings if the bank does that, else a fee.
        sweep = np.where(tr.sweeps, np.minimum(np.maximum(-self.checking, 0.0), self.savings), 0.0)
        self.savings -= sweep
        self.checking += sweep
        self.goal_saved = np.minimum(self.goal_saved, self.savings)
        overdrawn = self.checking < 0
        fee = np.where(overdrawn, OVERDRAFT_FEE, 0.0)
        self.checking -= fee

        # 7. Goals reached, churn, habits fade, the windows move on a week.
        self.goal_age = np.where(self.goal_active, self.goal_age + 1.0, self.goal_age)
        reached = self.goal_active & (self.goal_saved >= self.goal_target)
        self.goal_active &= ~reached
        self.goals_achieved += reached
        self.achieved_in_sim += reached
        churn_logit = tr.churn_logit + CHURN_FATIGUE * tr.fatigue_sensitivity / 0.3 * self.fatigue
        left = ~self.churned & (zu[:, 4] < sigmoid(churn_logit))
        self.churned |= left
        self.spend_cut *= (SPEND_CUT_PERSISTENCE - 0.3 * tr.impulsivity)[:, None]
        self.save_habit *= HABIT_DECAY
        self.debt_habit *= HABIT_DECAY
        net_in = self.savings - savings_before - savings_interest  # transfers in minus sweeps out
        self.saving_streak = np.where(net_in > 0.005, self.saving_streak + 1.0, 0.0)
        weekend = (2 / 7) * (essential + other) + tr.weekend_discretionary * discretionary
        month_end = (
            spending
            * (month_end_days * tr.month_end_intensity)
            / (month_end_days * tr.month_end_intensity + (1.0 - month_end_days))
        )
        for name, value in {
            "income": income,
            "essential": essential,
            "other": other,
            "discretionary": discretionary,
            "impulse": impulse_total,
            "sessions": sessions,
            "spend": spending,
            "weekend": weekend,
            "month_end": month_end,
            "balance": self.checking + self.savings,
            **{c: by_cat[:, j] for j, c in enumerate(SPLIT)},
        }.items():
            self.hist[name] = np.concatenate([self.hist[name][:, 1:], value[:, None]], axis=1)
        self.days_since_session = np.where(
            sessions > 0, np.floor(zu[:, 3] * 7.0), np.minimum(self.days_since_session + 7.0, 90.0)
        )
        self.nudges_7d = shown.astype(float)
        self.days_since_nudge = np.where(shown, 6.0, np.minimum(self.days_since_nudge + 7.0, 90.0))
        self.nudges_shown += shown
        self.nudges_accepted += accepted
        self.week += 1
        self.clock += 1
        self.market = self.market_process.conditions(np.full(rows, self.clock))

        def lift(x: np.ndarray) -> np.ndarray:  # the user's value minus their twin's
            return x[:n] - x[n:]

        components = rw.clip_components(
            {
                "health": lift((self._effective_net_worth() - eff_before) / self.ref_income_week),
                "goal": GOAL_WEIGHT
                * lift(self._buffer() - buffer_before + self._goal_progress() - goal_before),
                "engagement": 0.05 * accepted[:n] + 0.02 * lift(sessions),
                "fatigue": -FATIGUE_PENALTY * (self.fatigue * shown)[:n],
                "churn": -CHURN_PENALTY * (left[:n] & ~self.churned[n:]),
                "overdraft": -OVERDRAFT_PENALTY * lift(overdrawn.astype(float)),
                "invalid": -INVALID_PENALTY * invalid[:n],
            }
        )
        flows = {
            "income": income[:n],
            "spending": spending[:n],
            "debt_interest": interest[:n],
            "overdraft_fee": fee[:n],
            "savings_interest": savings_interest[:n],
            "investment_return": investment_return[:n],
        }
        if not act_rows.all():
            components = {k: np.where(act_rows, v, 0.0) for k, v in components.items()}
            flows = {k: np.where(act_rows, v, 0.0) for k, v in flows.items()}
        result = StepResult(
            reward=rw.scalarise(components, self.weights),
            components=components,
            executed=np.where(act_rows, executed[:n], NO_ACTION),
            invalid=invalid[:n] & act_rows,
            shown=shown[:n] & act_rows,
            seen=seen[:n] & act_rows,
            accepted=accepted[:n] & act_rows,
            churned=left[:n] & act_rows,
            flows=flows,
        )
        if frozen is not None:
            for k, v in frozen.items():
                getattr(self, k)[~rows_active] = v
            for k, v in frozen_hist.items():
                self.hist[k][~rows_active] = v
            self.traits.put(~rows_active, frozen_traits)
        return result

    def _effective_net_worth(self) -> np.ndarray:
        # Each holding counts with the interest it earns or costs over VALUE_YEARS: paying off a 25% card
        # is worth more than the cash it took, investing a little more than saving.
        return (
            self.checking
            + self.savings * (1.0 + VALUE_YEARS * SAVINGS_APR)
            + self.investments * (1.0 + VALUE_YEARS * INVEST_MEAN_RETURN)
            - self.debt * (1.0 + VALUE_YEARS * self.apr)
        )

    def _buffer(self) -> np.ndarray:
        # Concave: the first month of spending put aside matters most.
        return 1.0 - np.exp(-self.savings / self.ref_spend_month / BUFFER_MONTHS)

    def _goal_progress(self) -> np.ndarray:
        # A goal reached counts 1 for good, so finishing one is never a loss.
        active = np.where(self.goal_active, np.minimum(self.goal_saved / self.goal_target, 1.0), 0.0)
        return active + self.achieved_in_sim
