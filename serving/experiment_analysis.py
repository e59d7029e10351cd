"""A/B analysis: each arm's acceptance rate with a confidence interval, and an always-valid test vs control.

Outcome: the share of an arm's exposures (served online recommendations in the experiment) that the user
accepted (POST /feedback). Intervals are 95% Wilson intervals. The test is a mixture sequential
probability ratio test (mSPRT, Johari et al. 2017) on the difference of rates against the control arm,
normal approximation, mixing N(0, `experiment_effect_sd`²) over the effect:

    Λ = sqrt(V / (V + τ²)) · exp(θ̂² τ² / (2 V (V + τ²))),   θ̂ = p_arm − p_control,  V = Var(θ̂)

and the always-valid p-value is min(1, 1/Λ, every earlier p-value of that arm): it can be looked at after
every analysis run and stopped on as soon as it falls below `experiment_alpha`, with the error rate held.
Results go to serving.experiment_results (a rerun for the same time replaces its rows) and a PNG plot.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fincoach.db import get_engine
from fincoach.settings import get_settings
from serving.experiments import ExperimentError, load_experiment

_Z = 1.959963984540054  # 97.5% normal quantile

_COUNTS = sa.text(
    "select e.arm, count(*) as exposures, count(*) filter (where c.responded_at < :at) as responses, "
    "count(*) filter (where c.response = 'accepted' and c.responded_at < :at) as accepted "
    "from serving.experiment_exposures e left join app.coaching_interactions c on c.request_id = e.request_id "
    "where e.experiment_id = :e and e.exposed_at < :at group by e.arm"
)
_EARLIER_P = sa.text(
    "select arm, min(msprt_p_value) from serving.experiment_results "
    "where experiment_id = :e and analysed_at < :at group by arm"
)
_INSERT = sa.text(
    "insert into serving.experiment_results (experiment_id, analysed_at, arm, exposures, responses, accepted, "
    "acceptance_rate, ci_low, ci_high, diff_vs_control, msprt_p_value, significant) values (:experiment_id, "
    ":analysed_at, :arm, :exposures, :responses, :accepted, :acceptance_rate, :ci_low, :ci_high, "
    ":diff_vs_control, :msprt_p_value, :significant)"
)


@dataclass
class ArmResult:
    """What one arm shows at one analysis."""

    arm: str
    is_control: bool
    exposures: int
    responses: int
    accepted: int
    acceptance_rate: float | None
    ci_low: float | None
    ci_high: float | None
    diff_vs_control: float | None = None
    msprt_p_value: float | None = None
    significant: bool | None = None


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of a proportion."""
    p = successes / n
    centre = (p + _Z**2 / (2 * n)) / (1 + _Z**2 / n)
    half = _Z * math.sqrt(p * (1 - p) / n + _Z**2 / (4 * n**2)) / (1 + _Z**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def msprt_p_value(x_arm: int, n_arm: int, x_control: int, n_control: int, tau: float) -> float:
    """1/Λ of the normal mSPRT on the difference of two proportions (rates smoothed so Var > 0)."""
    p_a, p_c = (x_arm + 0.5) / (n_arm + 1), (x_control + 0.5) / (n_control + 1)
    variance = p_a * (1 - p_a) / n_arm + p_c * (1 - p_c) / n_control
    theta = x_arm / n_arm - x_control / n_control
    log_lambda = 0.5 * math.log(variance / (variance + tau**2)) + theta**2 * tau**2 / (
        2 * variance * (variance + tau**2)
    )
    return min(1.0, math.exp(-log_lambda))


def analyse_experiment(experiment_id: str, analysed_at: datetime, engine: sa.Engine | None = None) -> dict[str, Any]:
    """Analyse exposures before `analysed_at`; write the per-arm rows and the plot; return the summary."""
    if analysed_at.tzinfo is None:
        raise ValueError("analysed_at must be timezone-aware")
    s = get_settings()
    engine = engine or get_engine()
    with engine.begin() as conn:
        experiment = load_experiment(conn, experiment_id)
        counts = {r.arm: r for r in conn.execute(_COUNTS, {"e": experiment_id, "at": analysed_at})}
        earlier = dict(conn.execute(_EARLIER_P, {"e": experiment_id, "at": analysed_at}).all())
        results = []
        for arm in experiment.arms:
            row = counts.get(arm.name)
            n, responses, accepted = (row.exposures, row.responses, row.accepted) if row else (0, 0, 0)
            low, high = wilson(accepted, n) if n else (None, None)
            results.append(ArmResult(arm.name, arm.is_control, n, responses, accepted,
                                     accepted / n if n else None, low, high))
        control = next(r for r in results if r.is_control)
        for result in results:
            if result.is_control or not (result.exposures and control.exposures):
                continue
            result.diff_vs_control = result.acceptance_rate - control.acceptance_rate
            p = msprt_p_value(result.accepted, result.exposures, control.accepted, control.exposures,
                              s.experiment_effect_sd)
            previous = earlier.get(result.arm)
            result.msprt_p_value = min(p, previous) if previous is not None else p
            result.significant = result.msprt_p_value < s.experiment_alpha
        conn.execute(sa.text("delete from serving.experiment_results where experiment_id = :e and analysed_at = :at"),
                     {"e": experiment_id, "at": analysed_at})
        conn.execute(_INSERT, [{"experiment_id": experiment_id, "analysed_at": analysed_at, **_row(r)}
                               for r in results])
        history = conn.execute(sa.text(
            "select analysed_at, arm, msprt_p_value from serving.experiment_results "
            "where experiment_id = :e and msprt_p_value is not null order by analysed_at"), {"e": experiment_id}).all()
    plot = _plot(experiment_id, analysed_at, results, history, s.experiment_alpha)
    return {"experiment_id": experiment_id, "analysed_at": analysed_at.isoformat(),
            "arms": [asdict(r) for r in results], "plot": str(plot)}


def analyse_running(analysed_at: datetime) -> list[dict[str, Any]]:
    """Analyse every running experiment (the DAG task)."""
    engine = get_engine()
    with engine.connect() as conn:
        running = conn.execute(sa.text("select experiment_id from serving.experiments where status = 'running' "
                                       "order by experiment_id")).scalars().all()
    return [analyse_experiment(e, analysed_at, engine) for e in running]


def _row(result: ArmResult) -> dict[str, Any]:
    row = asdict(result)
    row.pop("is_control")
    return row


def plot_path(experiment_id: str, analysed_at: datetime) -> Path:
    """Where the plot of one analysis is written (under FINCOACH_HOME/reports/experiments)."""
    if not experiment_id.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ExperimentError(f"experiment id {experiment_id!r} cannot name a file")
    folder = get_settings().home_dir / "reports" / "experiments" / experiment_id
    return folder / f"{analysed_at:%Y%m%dT%H%M%SZ}.png"


def _plot(experiment_id: str, analysed_at: datetime, results: list[ArmResult], history: list, alpha: float) -> Path:
    """Acceptance rate with its interval per arm, and the always-valid p-values over the analyses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = plot_path(experiment_id, analysed_at)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (rates, pvalues) = plt.subplots(1, 2, figsize=(10, 4))
    shown = [r for r in results if r.acceptance_rate is not None]
    rates.errorbar([r.arm for r in shown], [r.acceptance_rate for r in shown],
                   yerr=[[max(r.acceptance_rate - r.ci_low, 0) for r in shown],
                         [max(r.ci_high - r.acceptance_rate, 0) for r in shown]],  # rounding at 0 and 1
                   fmt="o", capsize=6)
    rates.set(title=f"{experiment_id}: acceptance (95% CI)", ylabel="accepted / exposures", ylim=(0, 1))
    for arm in sorted({h.arm for h in history}):
        points = [(h.analysed_at, max(h.msprt_p_value, 1e-300)) for h in history if h.arm == arm]
        pvalues.step(*zip(*points, strict=True), where="post", label=arm, marker="o")
    pvalues.axhline(alpha, color="grey", linestyle="--", label=f"alpha {alpha}")
    pvalues.set(title="always-valid p-value vs control (mSPRT)", yscale="log")
    pvalues.set_ylim(top=1.5)
    pvalues.legend()
    pvalues.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".png", delete=False) as tmp:
        fig.savefig(tmp.name, dpi=90)
    plt.close(fig)
    os.replace(tmp.name, path)
    return path
