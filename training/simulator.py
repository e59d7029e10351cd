"""A small, seeded simulator of how a user's finances respond to weekly coaching.

Each simulated user starts from one row of a feature snapshot (raw features in spec order) and gets latent
traits drawn from their own seed (training.user_model): receptiveness to each action type, sensitivity to
nudge fatigue, impulsivity, how often they open the app, whether their bank sweeps savings into an
overdrawn checking account, how their discretionary spending splits between dining and shopping. One
step is one week:

1. income arrives (small noise) and standing savings habits move money to savings;
2. the user opens the app (Poisson sessions, fewer when fatigued) and the coaching action is shown;
3. they accept with probability sigmoid(receptiveness + relevance of the action to their state - fatigue);
   a nudge they never see (no session, no push read) cannot be accepted;
4. an accepted nudge changes behaviour: a transfer to savings, an extra debt payment, a spending cut
   that fades over the following weeks, a goal with a standing auto-saving, an investment;
5. spending happens (essential, other, planned discretionary, impulse; noise scales with volatility),
   debt accrues interest and takes its minimum payment, savings and investments earn returns,
   an overdrawn account is swept from savings (if the user has that) and otherwise charged a fee.

Everything random is drawn up front from each user's own generator, independently of the actions
taken, so two policies run on the same seeds see the same incomes, spending shocks, sessions and
coin flips (common random numbers): differences in outcome are caused by the policies alone.

Reward is the lift over not coaching. Each user has an untreated twin (same row, same seed, always
NO_ACTION) simulated alongside; the financial components of the reward (health, goal, overdraft) are the
user's change minus the twin's. The twin never depends on the policy, so this subtracts the same
number from every policy's return (rankings and differences between policies are unchanged) while
removing most of the variance that comes from who the user is and their luck: a policy that never
nudges scores exactly 0, and a positive mean reward means coaching helped.

Balance identity (money is conserved), per user and step, with net worth = checking + savings +
investments - debt:

    Δ net worth = income - spending - debt_interest - overdraft_fee + savings_interest + investment_return

Every other movement (saving, paying debt, investing, minimum payments, sweeps) is a transfer between
the user's own accounts and nets to zero. `StepResult.flows` carries the six terms so tests can check it.

The state is kept in raw-feature terms: `raw_features()` rebuilds every feature of the spec from the
state (30-day figures from the last four weeks), and the agent observes `fincoach.feature_spec.normalise`
of it, the same transform serving applies to real users.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fincoach.actions import ACTIONS, N_ACTIONS, NO_ACTION, action_mask
from fincoach.feature_spec import N_FEATURES, FeatureSpecError
from training.user_model import (
    COL,
    FATIGUE_DECAY,
    FATIGUE_OF,
    PUSH_SEEN,
    SESSIONS_FATIGUE,
    draw_traits,
    poisson_from_uniform,
    relevance,
    sigmoid,
)

SIMULATOR_VERSION = "sim-v1"
HORIZON = 12  # weeks in one episode
WEEKS_PER_MONTH = 52 / 12
HISTORY_WEEKS = 4  # 30-day features are rebuilt from the last four weeks

# Money.
OVERDRAFT_FEE = 25.0
SAVINGS_APR = 0.02
INVEST_MEAN_RETURN = 0.06  # a year
INVEST_VOLATILITY = 0.15  # a year
MIN_PAYMENT_PRINCIPAL = 0.01  # a month, on top of the interest
# What an accepted nudge does (who accepts is training.user_model).
HABIT_DECAY = 0.9  # standing transfers started by a nudge fade by this factor a week
SPEND_CUT_PERSISTENCE = 0.5  # share of a spending cut kept the next week (less for impulsive users)
# Reward (every component is clipped, so the total is bounded).
VALUE_YEARS = 2.0  # holdings count with this many years of the interest they earn (or cost, for debt)
GOAL_WEIGHT = 2.0
BUFFER_MONTHS = 1.5  # scale of the emergency-buffer score 1 - exp(-months / BUFFER_MONTHS)
FATIGUE_PENALTY = 0.005  # per unit of fatigue, whenever a nudge is shown
OVERDRAFT_PENALTY = 0.2  # per week ending overdrawn, on top of the fee
INVALID_PENALTY = 0.05  # an action the catalog does not allow for this user
REWARD_CLIPS = {  # health, goal and overdraft are lifts over the untreated twin, so they can be positive
    "health": (-1.0, 1.0),
    "goal": (-0.5, 0.5),
    "fatigue": (-0.5, 0.0),
    "overdraft": (-OVERDRAFT_PENALTY, OVERDRAFT_PENALTY),
    "invalid": (-INVALID_PENALTY, 0.0),
}
REWARD_COMPONENTS = tuple(REWARD_CLIPS)
REWARD_MIN = sum(lo for lo, _ in REWARD_CLIPS.values())
REWARD_MAX = sum(hi for _, hi in REWARD_CLIPS.values())
# Floors of the per-user scales that turn money into reward, so a user with no income does not explode it.
MIN_REF_INCOME_WEEK = 100.0
MIN_REF_SPEND_MONTH = 400.0
_SAVING_IDS = [a.id for a in ACTIONS if a.type in ("SAVE_MORE", "BUILD_EMERGENCY_FUND")]


@dataclass
class StepResult:
    """What one week did to each of the n users."""

    reward: np.ndarray  # (n,) total reward, in [REWARD_MIN, REWARD_MAX]
    components: dict[str, np.ndarray]  # name -> (n,) reward component (they sum to `reward`)
    executed: np.ndarray  # (n,) action actually applied (NO_ACTION where the chosen one was invalid)
    invalid: np.ndarray  # (n,) bool: the chosen action was not allowed for the user
    shown: np.ndarray  # (n,) bool: a nudge (not NO_ACTION) was shown
    seen: np.ndarray  # (n,) bool: the user saw it (a session that week, or read the push)
    accepted: np.ndarray  # (n,) bool: the user acted on it
    flows: dict[str, np.ndarray]  # the terms of the balance identity, see the module docstring


class Simulator:
    """n simulated users stepping through weeks together; each user's randomness comes from their seed.

    Internally the state holds 2n rows: the users (rows 0..n-1) and their untreated twins (rows n..2n-1).
    Public methods and results are about the n users only.
    """

    def __init__(self, raw: np.ndarray, seeds: Sequence[int] | np.ndarray, horizon: int = HORIZON):
        raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
        if raw.shape[1] != N_FEATURES:
            raise FeatureSpecError(f"expected {N_FEATURES} raw features, got {raw.shape[1]}")
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        if len(seeds) != len(raw):
            raise ValueError(f"one seed per user: got {len(seeds)} seeds for {len(raw)} users")
        if horizon < 1:
            raise ValueError(f"horizon must be at least one week, got {horizon}")
        self.n, self.horizon, self.t = len(raw), horizon, 0
        raw = np.where(np.isfinite(raw), raw, 0.0)
        raw = np.concatenate([raw, raw])  # the users, then their twins
        n = self._rows = len(raw)

        def col(name: str) -> np.ndarray:
            return raw[:, COL[name]].copy()

        # Money and spending baselines from the snapshot (weekly amounts).
        income_m = np.maximum(col("monthly_income"), 0.0)
        spend_m = np.maximum(col("monthly_spend"), 0.0)
        ess = np.clip(col("essential_share"), 0.0, 1.0)
        disc = np.clip(col("discretionary_share"), 0.0, 1.0 - ess)
        imp = np.clip(col("impulse_share"), 0.0, disc)
        self.base_income = income_m / WEEKS_PER_MONTH
        self.base_essential = ess * spend_m / WEEKS_PER_MONTH
        self.base_other = (1.0 - ess - disc) * spend_m / WEEKS_PER_MONTH
        self.base_planned = (disc - imp) * spend_m / WEEKS_PER_MONTH
        self.base_impulse = imp * spend_m / WEEKS_PER_MONTH
        self.volatility = np.clip(col("spending_volatility"), 0.0, 3.0)
        self.checking = col("checking_balance")
        self.savings = np.maximum(col("savings_balance"), 0.0)
        self.investments = np.zeros(n)
        self.debt = np.maximum(col("debt_total"), 0.0)
        self.apr = np.where(self.debt > 0, np.clip(col("max_debt_apr"), 0.0, 1.0), 0.0)
        self.goal_active = col("has_active_goal") >= 0.5
        self.goal_target = np.maximum(2.0 * income_m, 500.0)
        self.goal_saved = np.where(
            self.goal_active, np.clip(col("goal_progress"), 0.0, 1.0) * self.goal_target, 0.0
        )
        self.age = col("age")
        self.days_since_session = np.clip(col("days_since_last_session"), 0.0, 90.0)
        acceptance = np.clip(col("nudge_acceptance_rate"), 0.0, 1.0)
        self.prior_shown = np.full(n, 4.0)  # the snapshot's rate counts as four earlier nudges
        self.prior_accepted = acceptance * self.prior_shown
        self.nudges_shown = np.zeros(n)
        self.nudges_accepted = np.zeros(n)
        self.fatigue = np.zeros(n)
        self.spend_cut = np.zeros(n)  # weekly discretionary spending the user has cut (fades)
        self.save_habit = np.zeros(n)  # weekly standing transfer to savings (fades)
        self.debt_habit = np.zeros(n)  # weekly standing extra debt payment (fades)
        # Last four weeks, newest last: the 30-day features are rebuilt from these.
        sessions_week = np.maximum(col("sessions_30d"), 0.0) * 7.0 / 30.0
        self.hist = {
            name: np.repeat(v[:, None], HISTORY_WEEKS, axis=1)
            for name, v in {
                "income": self.base_income,
                "essential": self.base_essential,
                "other": self.base_other,
                "discretionary": self.base_planned + self.base_impulse,
                "impulse": self.base_impulse,
                "sessions": sessions_week,
            }.items()
        }
        # Scales turning money into reward, fixed at the start so no policy can move them.
        self.ref_income_week = np.maximum(self.base_income, MIN_REF_INCOME_WEEK)
        self.ref_spend_month = np.maximum(spend_m, MIN_REF_SPEND_MONTH)

        # Latent traits and every weekly shock, from each user's seed; a twin shares its user's.
        self.traits = draw_traits(raw[: self.n], seeds, horizon).doubled()
        self.receptiveness = self.traits.receptiveness.copy()  # grows when a user sets a goal

    @property
    def done(self) -> bool:
        """True once `horizon` weeks have been simulated."""
        return self.t >= self.horizon

    def net_worth(self) -> np.ndarray:
        """checking + savings + investments - debt, per user."""
        return (self.checking + self.savings + self.investments - self.debt)[: self.n]

    def raw_features(self) -> np.ndarray:
        """(n, N_FEATURES) raw features in spec order, rebuilt from the current state."""
        return self._raw()[: self.n]

    def twin_raw_features(self) -> np.ndarray:
        """(n, N_FEATURES) raw features of the untreated twins (what would have happened without coaching)."""
        return self._raw()[self.n :]

    def _raw(self) -> np.ndarray:
        h = self.hist
        income_m = h["income"].mean(axis=1) * WEEKS_PER_MONTH
        spend_4w = h["essential"].sum(axis=1) + h["other"].sum(axis=1) + h["discretionary"].sum(axis=1)
        spend_m = spend_4w / HISTORY_WEEKS * WEEKS_PER_MONTH
        safe_income = np.where(income_m > 0, income_m, 1.0)
        safe_spend_4w = np.where(spend_4w > 0, spend_4w, 1.0)
        has_debt = self.debt > 0.005
        out = np.empty((self._rows, N_FEATURES))
        out[:, COL["monthly_income"]] = income_m
        out[:, COL["monthly_spend"]] = spend_m
        out[:, COL["savings_rate"]] = np.where(
            income_m > 0,
            np.clip((income_m - spend_m) / safe_income, -1.0, 1.0),
            np.where(spend_m > 0, -1.0, 0.0),
        )
        out[:, COL["essential_share"]] = np.where(
            spend_4w > 0, h["essential"].sum(axis=1) / safe_spend_4w, 0.0
        )
        out[:, COL["discretionary_share"]] = np.where(
            spend_4w > 0, h["discretionary"].sum(axis=1) / safe_spend_4w, 0.0
        )
        out[:, COL["spending_volatility"]] = self.volatility
        out[:, COL["impulse_share"]] = np.where(spend_4w > 0, h["impulse"].sum(axis=1) / safe_spend_4w, 0.0)
        out[:, COL["checking_balance"]] = self.checking
        out[:, COL["savings_balance"]] = self.savings
        out[:, COL["emergency_fund_months"]] = np.where(
            spend_m > 0,
            np.minimum(self.savings / np.where(spend_m > 0, spend_m, 1.0), 24.0),
            np.where(self.savings > 0, 24.0, 0.0),
        )
        out[:, COL["debt_total"]] = np.where(has_debt, self.debt, 0.0)
        out[:, COL["debt_to_income"]] = np.where(
            income_m > 0, np.minimum(self.debt / (12.0 * safe_income), 5.0), np.where(has_debt, 5.0, 0.0)
        )
        out[:, COL["max_debt_apr"]] = np.where(has_debt, self.apr, 0.0)
        out[:, COL["goal_progress"]] = np.where(
            self.goal_active, np.minimum(self.goal_saved / self.goal_target, 1.0), 0.0
        )
        out[:, COL["has_active_goal"]] = self.goal_active.astype(float)
        out[:, COL["sessions_30d"]] = h["sessions"].sum(axis=1) * 30.0 / 28.0
        out[:, COL["days_since_last_session"]] = self.days_since_session
        out[:, COL["nudge_acceptance_rate"]] = (self.prior_accepted + self.nudges_accepted) / (
            self.prior_shown + self.nudges_shown
        )
        out[:, COL["age"]] = self.age
        return out

    def _move(self, who: np.ndarray, amount: np.ndarray | float) -> np.ndarray:
        """Amount each user in `who` can move out of checking now (never more than is there)."""
        return np.where(who, np.minimum(amount, np.maximum(self.checking, 0.0)), 0.0)

    def _apply(self, accepted: np.ndarray, actions: np.ndarray) -> None:
        """Behaviour change of the users who accepted their nudge (transfers only: net worth unchanged)."""
        if not accepted.any():
            return
        chosen = accepted[:, None] & (actions[:, None] == np.arange(N_ACTIONS))

        def took(*ids: int) -> np.ndarray:
            return chosen[:, list(ids)].any(axis=1)

        for aid in (1, 2, 6):  # SAVE_MORE 25 / 100, BUILD_EMERGENCY_FUND 50
            who = took(aid)
            move = self._move(who, ACTIONS[aid].amount)
            self.checking -= move
            self.savings += move
            self.goal_saved += np.where(self.goal_active, move, 0.0)
        self.save_habit += np.where(took(1, 2), 0.2 * np.array([a.amount for a in ACTIONS])[actions], 0.0)
        self.save_habit += np.where(took(6) & (self.savings < 3.0 * self.ref_spend_month), 10.0, 0.0)
        discretionary = self.base_planned + self.base_impulse
        category = (
            np.where(actions == 3, self.traits.dining_share, 1.0 - self.traits.dining_share) * discretionary
        )
        self.spend_cut += np.where(took(3, 4), np.minimum(ACTIONS[3].amount, 0.5 * category), 0.0)
        pay = np.minimum(self._move(took(5), ACTIONS[5].amount), self.debt)
        self.checking -= pay
        self.debt -= pay
        self.debt_habit += np.where(took(5), 0.2 * ACTIONS[5].amount, 0.0)
        new_goal = took(7) & ~self.goal_active
        self.goal_target = np.where(
            new_goal, np.maximum(2.0 * self.base_income * WEEKS_PER_MONTH, 500.0), self.goal_target
        )
        self.goal_saved = np.where(new_goal, 0.0, self.goal_saved)
        self.goal_active = self.goal_active | new_goal
        self.save_habit += np.where(new_goal, 0.03 * self.base_income, 0.0)
        self.receptiveness[:, _SAVING_IDS] += np.where(new_goal, 0.3, 0.0)[:, None]  # a goal motivates saving
        review = took(8)
        self.spend_cut += np.where(review, 0.05 * discretionary, 0.0)
        self.volatility = np.where(review, 0.9 * self.volatility, self.volatility)
        invest = self._move(took(9), ACTIONS[9].amount)
        self.checking -= invest
        self.investments += invest

    def step(self, actions: np.ndarray | Sequence[int]) -> StepResult:
        """Simulate one week with `actions[i]` shown to user i; invalid actions act as NO_ACTION."""
        if self.done:
            raise RuntimeError(f"the simulation is over ({self.horizon} weeks): start a new one")
        actions = np.asarray(actions, dtype=np.int64).reshape(-1)
        if len(actions) != self.n or (actions < 0).any() or (actions >= N_ACTIONS).any():
            raise ValueError(f"expected {self.n} action ids in [0, {N_ACTIONS}), got {actions!r}")
        n = self.n
        actions = np.concatenate([actions, np.full(n, NO_ACTION)])  # the twins are never coached
        idx = np.arange(self._rows)
        tr = self.traits
        zn, zu = tr.normals[:, self.t], tr.uniforms[:, self.t]
        raw = self._raw()
        invalid = ~action_mask(raw)[idx, actions]
        executed = np.where(invalid, NO_ACTION, actions)
        eff_before = self._effective_net_worth()
        buffer_before, goal_before = self._buffer(), self._goal_progress()

        # 1. Income, and the standing transfers to savings.
        income = self.base_income * np.exp(0.05 * zn[:, 0] - 0.05**2 / 2)
        self.checking += income
        everyone = np.ones(self._rows, dtype=bool)
        auto = self._move(everyone, self.save_habit)
        self.checking -= auto
        self.savings += auto
        self.goal_saved += np.where(self.goal_active, auto, 0.0)
        extra = np.minimum(self._move(everyone, self.debt_habit), self.debt)
        self.checking -= extra
        self.debt -= extra

        # 2-3. Sessions, the nudge, and whether it is accepted (fatigue from earlier weeks lowers both).
        self.fatigue *= FATIGUE_DECAY
        sessions = poisson_from_uniform(
            zu[:, 0], tr.session_rate * np.exp(-SESSIONS_FATIGUE * tr.fatigue_sensitivity * self.fatigue)
        )
        shown = executed != NO_ACTION
        seen = shown & ((sessions > 0) | (zu[:, 1] < PUSH_SEEN))
        logit = (
            self.receptiveness[idx, executed]
            + relevance(executed, raw)
            - tr.fatigue_sensitivity * self.fatigue
        )
        accepted = seen & (zu[:, 2] < sigmoid(logit))
        self.fatigue += FATIGUE_OF[executed]

        # 4. What accepting changes.
        self._apply(accepted, executed)

        # 5. Spending; spending cuts eat into discretionary spending first.
        sd_e, sd_d = 0.05 + 0.1 * self.volatility, 0.1 + 0.3 * self.volatility
        essential_shock = np.exp(sd_e * zn[:, 1] - sd_e**2 / 2)
        essential = self.base_essential * essential_shock
        other = self.base_other * essential_shock
        planned = self.base_planned * np.exp(sd_d * zn[:, 2] - sd_d**2 / 2)
        impulse = self.base_impulse * (0.5 + tr.impulsivity) * np.exp(0.6 * zn[:, 3] - 0.18)
        discretionary = planned + impulse
        cut = np.minimum(self.spend_cut, 0.8 * discretionary)
        keep = np.where(discretionary > 0, 1.0 - cut / np.where(discretionary > 0, discretionary, 1.0), 1.0)
        planned, impulse = planned * keep, impulse * keep
        spending = essential + other + planned + impulse
        self.checking -= spending

        # 6. Debt: interest, then the minimum payment (autopay, even into overdraft).
        interest = self.debt * self.apr / 52.0
        self.debt += interest
        minimum = np.minimum(self.debt, interest + self.debt * MIN_PAYMENT_PRINCIPAL * 12.0 / 52.0)
        self.checking -= minimum
        self.debt -= minimum
        self.debt = np.where(self.debt < 0.005, 0.0, self.debt)  # paid off: rounding dust is not debt

        # 7. Returns.
        savings_interest = self.savings * SAVINGS_APR / 52.0
        self.savings += savings_interest
        weekly_return = INVEST_MEAN_RETURN / 52.0 + INVEST_VOLATILITY / np.sqrt(52.0) * zn[:, 4]
        investment_return = self.investments * weekly_return
        self.investments += investment_return

        # 8. Overdraft: sweep from savings if the bank does that, else a fee.
        sweep = np.where(tr.sweeps, np.minimum(np.maximum(-self.checking, 0.0), self.savings), 0.0)
        self.savings -= sweep
        self.checking += sweep
        self.goal_saved = np.minimum(self.goal_saved, self.savings)
        overdrawn = self.checking < 0
        fee = np.where(overdrawn, OVERDRAFT_FEE, 0.0)
        self.checking -= fee

        # 9. Habits fade; the 30-day windows move on a week.
        self.spend_cut *= SPEND_CUT_PERSISTENCE - 0.3 * tr.impulsivity
        self.save_habit *= HABIT_DECAY
        self.debt_habit *= HABIT_DECAY
        for name, value in (
            ("income", income),
            ("essential", essential),
            ("other", other),
            ("discretionary", planned + impulse),
            ("impulse", impulse),
            ("sessions", sessions),
        ):
            self.hist[name] = np.concatenate([self.hist[name][:, 1:], value[:, None]], axis=1)
        self.days_since_session = np.where(
            sessions > 0, np.floor(zu[:, 3] * 7.0), np.minimum(self.days_since_session + 7.0, 90.0)
        )
        self.nudges_shown += shown
        self.nudges_accepted += accepted
        self.t += 1

        def lift(x: np.ndarray) -> np.ndarray:  # the user's value minus their twin's
            return x[:n] - x[n:]

        components = {
            "health": lift((self._effective_net_worth() - eff_before) / self.ref_income_week),
            "goal": GOAL_WEIGHT * lift(self._buffer() - buffer_before + self._goal_progress() - goal_before),
            "fatigue": -FATIGUE_PENALTY * (self.fatigue * shown)[:n],
            "overdraft": -OVERDRAFT_PENALTY * lift(overdrawn.astype(float)),
            "invalid": -INVALID_PENALTY * invalid[:n],
        }
        components = {k: np.clip(v, *REWARD_CLIPS[k]).astype(np.float64) for k, v in components.items()}
        flows = {
            "income": income[:n],
            "spending": spending[:n],
            "debt_interest": interest[:n],
            "overdraft_fee": fee[:n],
            "savings_interest": savings_interest[:n],
            "investment_return": investment_return[:n],
        }
        return StepResult(
            reward=sum(components.values()),
            components=components,
            executed=executed[:n],
            invalid=invalid[:n],
            shown=shown[:n],
            seen=seen[:n],
            accepted=accepted[:n],
            flows=flows,
        )

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
        return np.where(self.goal_active, np.minimum(self.goal_saved / self.goal_target, 1.0), 0.0)
