"""The fallback chain of the online scorer: champion → previous champion → rules, with circuit breakers.

Each model tier has a circuit breaker: after `scorer_breaker_failures` consecutive model errors (an
exception, a wrong shape, a non-finite score for an allowed action) it opens and the tier is skipped for
`scorer_breaker_reset_seconds`; then one request tries it again (half-open) and a success closes it. The
rule-based policy is the last tier and has no breaker. The answer names the tier that answered and, when it
is not the first one asked, why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fincoach.actions import N_ACTIONS
from fincoach.policy import Policy
from fincoach.rules import RULES_VERSION, RulePolicy
from fincoach.settings import get_settings

log = logging.getLogger(__name__)

TIERS = ("experiment_arm", "champion", "previous_champion", "rules")


class ModelOutputError(RuntimeError):
    """A policy returned scores the scorer cannot rank (wrong shape, or non-finite for an allowed action)."""


class CircuitBreaker:
    """Closed → open after N consecutive failures → half-open after a pause → closed on a success."""

    def __init__(self, failures: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.failures, self.reset_seconds, self._clock = failures, reset_seconds, clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """closed | open | half_open."""
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.reset_seconds else "open"

    def allow(self) -> bool:
        """Whether a request may try the protected tier now (half-open lets one trial through)."""
        with self._lock:
            state = self.state
            if state == "closed":
                return True
            if state == "half_open" and not self._trial:
                self._trial = True
                return True
            return False

    def success(self) -> None:
        """A call succeeded: close."""
        with self._lock:
            self._consecutive, self._opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        """A call failed: count it, open (again) at the threshold or after a failed trial."""
        with self._lock:
            self._consecutive += 1
            if self._trial or self._consecutive >= self.failures:
                self._opened_at, self._trial = self._clock(), False


@dataclass(frozen=True)
class Tier:
    """One policy of the chain and the version it serves."""

    name: str  # one of TIERS
    policy: Policy
    model_version: str


@dataclass(frozen=True)
class Answer:
    """Scores of the tier that answered, and why earlier tiers did not."""

    tier: Tier
    scores: np.ndarray  # (n, N_ACTIONS)
    fallback_reason: str | None


def checked_scores(policy: Policy, raw: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The policy's scores, or ModelOutputError when they cannot be ranked."""
    scores = np.asarray(policy.action_scores(raw), dtype=np.float64)
    if scores.shape != (len(raw), N_ACTIONS):
        raise ModelOutputError(f"scores of shape {scores.shape}, expected {(len(raw), N_ACTIONS)}")
    if (allowed & ~np.isfinite(scores)).any():
        raise ModelOutputError("non-finite score for an allowed action")
    return scores


class FallbackChain:
    """The tiers in service; swapping the champion is atomic (one reference assignment under a lock)."""

    def __init__(self, champion: Tier | None, previous: Tier | None = None, champion_reason: str | None = None):
        s = get_settings()
        self._breaker_args = (s.scorer_breaker_failures, s.scorer_breaker_reset_seconds)
        self.rules = Tier("rules", RulePolicy(), RULES_VERSION)
        self._lock = threading.Lock()
        self._tiers = (champion, previous)
        self.champion_reason = champion_reason if champion is None else None
        self.breakers: dict[str, CircuitBreaker] = {}
        self.on_fallback: Callable[[str, str], None] = lambda tier, reason: None

    @property
    def champion(self) -> Tier | None:
        """The champion in service (None when none could be loaded)."""
        return self._tiers[0]

    @property
    def previous(self) -> Tier | None:
        """The champion before it, kept as the second tier."""
        return self._tiers[1]

    def swap_champion(self, champion: Tier) -> None:
        """Serve `champion` from now on; the one it replaces becomes the previous champion."""
        with self._lock:
            old = self._tiers[0]
            previous = Tier("previous_champion", old.policy, old.model_version) if old else self._tiers[1]
            self._tiers = (champion, previous)
            self.champion_reason = None
            self.breakers.pop(f"champion:{champion.model_version}", None)

    def set_previous(self, previous: Tier) -> None:
        """Set the second tier (found in the registry at start-up)."""
        with self._lock:
            self._tiers = (self._tiers[0], previous)

    def mark_unavailable(self, reason: str) -> None:
        """Record why no champion is served (while none is)."""
        if self.champion is None:
            self.champion_reason = reason

    def breaker(self, tier: Tier) -> CircuitBreaker:
        """The breaker of a tier (one per tier and model version)."""
        key = f"{tier.name}:{tier.model_version}"
        if key not in self.breakers:
            self.breakers[key] = CircuitBreaker(*self._breaker_args)
        return self.breakers[key]

    def answer(self, raw: np.ndarray, allowed: np.ndarray, first: Tier | None = None) -> Answer:
        """Scores from the first tier that can answer: `first` (an experiment arm), champion, previous, rules."""
        champion, previous = self._tiers
        reasons: list[str] = []
        for slot, tier in (("first", first), ("champion", champion), ("previous", previous)):
            if slot == "champion" and tier is None:
                reasons.append(f"no champion ({self.champion_reason or 'not loaded'})")
            if tier is None:
                continue
            if tier.name == "rules":  # an experiment arm on the rule baseline
                return self._answered(tier, checked_scores(tier.policy, raw, allowed), reasons)
            breaker = self.breaker(tier)
            if not breaker.allow():
                reasons.append(f"{tier.name} {tier.model_version}: circuit open")
                continue
            try:
                scores = checked_scores(tier.policy, raw, allowed)
            except Exception as exc:  # noqa: BLE001 - any model failure must fall through to the next tier
                breaker.failure()
                reasons.append(f"{tier.name} {tier.model_version}: {type(exc).__name__}: {exc}")
                log.warning("model error in %s %s: %s", tier.name, tier.model_version, exc)
                continue
            breaker.success()
            return self._answered(tier, scores, reasons)
        return self._answered(self.rules, checked_scores(self.rules.policy, raw, allowed), reasons)

    def _answered(self, tier: Tier, scores: np.ndarray, reasons: list[str]) -> Answer:
        reason = "; ".join(reasons) or None
        if reason:
            self.on_fallback(tier.name, reason)
        return Answer(tier, scores, reason)
