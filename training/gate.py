"""The promotion gate: a challenger becomes champion only if it is better beyond reasonable doubt.

Measured on the same simulated users with the same luck (training.evaluate), the candidate passes iff

1. the lower bound of its 95% bootstrap CI on the primary outcome (mean episode return) is above the
   rule baseline's estimate and above the current champion's estimate, and
2. no segment (income band, age band, archetype; segments with too few users are not gated) regresses:
   the paired mean difference against the policy now serving (the champion, or the rules when there is
   none) is not below `-segment_tolerance` (settings.gate_segment_tolerance).

Otherwise it stays challenger; the reason names every number it was decided on.
"""

from __future__ import annotations


def segment_regressions(segments_vs_current: dict | None, tolerance: float) -> list[str]:
    """'kind=name diff' of every gated segment whose paired mean difference is below -tolerance."""
    out = []
    for kind, by_name in (segments_vs_current or {}).items():
        for name, row in by_name.items():
            if not row.get("small") and float(row["diff_mean"]) < -tolerance:
                out.append(f"{kind}={name} {float(row['diff_mean']):+.4f} (n={row['n']})")
    return out


def decide(
    candidate: dict,
    baseline: dict,
    champion: dict | None,
    segments_vs_current: dict | None = None,
    segment_tolerance: float = 0.0,
) -> tuple[bool, str]:
    """(promote?, reason naming the numbers) from evaluation summaries (`mean_reward`, `ci_low`)."""
    if segment_tolerance < 0:
        raise ValueError(f"segment tolerance must be >= 0, got {segment_tolerance}")
    low = float(candidate["ci_low"])
    checks = [("rules", float(baseline["mean_reward"]))]
    if champion is not None:
        checks.append(("champion", float(champion["mean_reward"])))
    parts, promote = [], True
    for name, value in checks:
        ok = low > value
        promote &= ok
        parts.append(f"{'>' if ok else '<='} {name} {value:.4f}")
    if champion is None:
        parts.append("no champion yet")
    regressions = segment_regressions(segments_vs_current, segment_tolerance)
    against = "champion" if champion is not None else "rules"
    if regressions:
        promote = False
        parts.append(
            f"segments regressing vs {against} beyond {segment_tolerance:.4f}: {'; '.join(regressions)}"
        )
    else:
        parts.append(f"no segment regresses vs {against} beyond {segment_tolerance:.4f}")
    verdict = "promote" if promote else "keep the current champion"
    return promote, (
        f"candidate {float(candidate['mean_reward']):.4f} (95% CI low {low:.4f}) {', '.join(parts)}: {verdict}"
    )
