"""The promotion gate: a candidate replaces the champion only if it is at least as good as both the rule
baseline and the current champion, measured on the same simulated users (see training.evaluate)."""

from __future__ import annotations


def decide(
    candidate: dict, baseline: dict, champion: dict | None, tolerance: float = 0.0
) -> tuple[bool, str]:
    """(promote?, reason naming the numbers) from evaluation summaries holding `mean_reward`."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    cand = float(candidate["mean_reward"])
    checks = [("rules", float(baseline["mean_reward"]))]
    if champion is not None:
        checks.append(("champion", float(champion["mean_reward"])))
    parts, promote = [], True
    for name, value in checks:
        ok = cand >= value - tolerance
        promote &= ok
        parts.append(f"{'>=' if ok else '<'} {name} {value:.4f}")
    if champion is None:
        parts.append("no champion yet")
    verdict = "promote" if promote else "keep the current champion"
    return promote, f"candidate {cand:.4f} {', '.join(parts)} (tolerance {tolerance:.4f}): {verdict}"
