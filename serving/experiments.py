"""A/B experiments: arms in a table, sticky assignment by hashing, and which policy each arm serves.

An experiment has arms, each a model alias (`champion`, `challenger`), a model version or the rule
baseline, with traffic shares that sum to 1 and exactly one control arm. A user's arm is a pure function
of (experiment id, user id): SHA-256 of "<experiment>:<user>" read as a number in [0, 1), placed on the
cumulative shares. So it is the same on every scorer process and every request, with no stored state.
When several experiments run, the scorer uses the one started first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

KINDS = ("alias", "version", "rules")


class ExperimentError(ValueError):
    """An experiment definition that cannot be run."""


@dataclass(frozen=True)
class Arm:
    """One arm: what it serves and its share of traffic."""

    name: str
    kind: str  # alias | version | rules
    ref: str  # the alias or version; empty for rules
    share: float
    is_control: bool = False

    @property
    def model_key(self) -> str | None:
        """Key of the model this arm needs loaded ("alias:<a>", "version:<v>"), None for rules/champion."""
        if self.kind == "rules" or (self.kind == "alias" and self.ref == "champion"):
            return None
        return f"{self.kind}:{self.ref}"


@dataclass(frozen=True)
class Experiment:
    """A running experiment."""

    experiment_id: str
    arms: tuple[Arm, ...]

    def assign(self, user_id: int) -> Arm:
        """The arm of a user (deterministic and sticky)."""
        digest = hashlib.sha256(f"{self.experiment_id}:{int(user_id)}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        cumulative = 0.0
        for arm in self.arms:
            cumulative += arm.share
            if u < cumulative:
                return arm
        return self.arms[-1]  # u within rounding of 1


def validate(arms: Sequence[Arm]) -> None:
    """Raise ExperimentError unless the arms can be run."""
    if len(arms) < 2:
        raise ExperimentError("an experiment needs at least two arms")
    if len({a.name for a in arms}) != len(arms):
        raise ExperimentError("arm names must be unique")
    for arm in arms:
        if arm.kind not in KINDS:
            raise ExperimentError(f"arm {arm.name}: kind {arm.kind!r} is not one of {', '.join(KINDS)}")
        if arm.kind != "rules" and not arm.ref:
            raise ExperimentError(f"arm {arm.name}: a {arm.kind} arm needs the {arm.kind} it serves")
        if arm.kind == "version" and not arm.ref.isdigit():
            raise ExperimentError(f"arm {arm.name}: version {arm.ref!r} is not a number")
        if not 0 < arm.share <= 1:
            raise ExperimentError(f"arm {arm.name}: traffic share {arm.share} is not in (0, 1]")
    if abs(sum(a.share for a in arms) - 1) > 1e-9:
        raise ExperimentError(f"traffic shares sum to {sum(a.share for a in arms)}, not 1")
    if sum(a.is_control for a in arms) != 1:
        raise ExperimentError("exactly one arm must be the control")


def create_experiment(engine: sa.Engine, experiment_id: str, arms: Sequence[Arm], description: str = "",
                      started_at: datetime | None = None) -> None:
    """Store a new running experiment."""
    validate(arms)
    with engine.begin() as conn:
        exists = conn.execute(sa.text("select 1 from serving.experiments where experiment_id = :e"),
                              {"e": experiment_id}).first()
        if exists:
            raise ExperimentError(f"experiment {experiment_id} exists; pick another id (ids are never reused)")
        conn.execute(sa.text("insert into serving.experiments (experiment_id, description, started_at) "
                             "values (:e, :d, coalesce(:t, now()))"),
                     {"e": experiment_id, "d": description, "t": started_at})
        conn.execute(sa.text("insert into serving.experiment_arms (experiment_id, arm, kind, ref, traffic_share, "
                             "is_control) values (:e, :arm, :kind, :ref, :share, :control)"),
                     [{"e": experiment_id, "arm": a.name, "kind": a.kind, "ref": a.ref, "share": a.share,
                       "control": a.is_control} for a in arms])


def stop_experiment(engine: sa.Engine, experiment_id: str) -> None:
    """Stop an experiment: the scorer stops assigning users to it."""
    with engine.begin() as conn:
        done = conn.execute(sa.text("update serving.experiments set status = 'stopped', stopped_at = now() "
                                    "where experiment_id = :e and status = 'running'"), {"e": experiment_id})
    if done.rowcount == 0:
        raise ExperimentError(f"no running experiment {experiment_id}")


def load_experiment(conn: sa.Connection, experiment_id: str) -> Experiment:
    """An experiment and its arms (control first)."""
    rows = conn.execute(sa.text(
        "select arm, kind, ref, traffic_share, is_control from serving.experiment_arms "
        "where experiment_id = :e order by arm"), {"e": experiment_id}).all()
    if not rows:
        raise ExperimentError(f"no experiment {experiment_id}")
    return Experiment(experiment_id, tuple(Arm(*r) for r in rows))


def active_experiment(engine: sa.Engine) -> Experiment | None:
    """The running experiment the scorer applies (the earliest started), or None."""
    with engine.connect() as conn:
        first = conn.execute(sa.text("select experiment_id from serving.experiments where status = 'running' "
                                     "order by started_at, experiment_id limit 1")).scalar()
        return load_experiment(conn, first) if first else None


def parse_arm(text: str) -> Arm:
    """An arm from the command line: `name=kind:ref:share[:control]` (e.g. `base=rules::0.5:control`)."""
    name, _, spec = text.partition("=")
    parts = spec.split(":")
    if not name or len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "control"):
        raise ExperimentError(f"arm {text!r}: write name=kind:ref:share[:control], e.g. new=alias:challenger:0.5")
    try:
        share = float(parts[2])
    except ValueError as exc:
        raise ExperimentError(f"arm {text!r}: share {parts[2]!r} is not a number") from exc
    return Arm(name, parts[0], parts[1], share, len(parts) == 4)
