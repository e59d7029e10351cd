"""The reward: a vector of objectives, each clipped, scalarised by non-negative weights.

Components (all per user and week; the financial ones are lifts over the user's untreated twin):

| name | range | meaning |
|------|-------|---------|
| health | [-1, 1] | change in effective net worth over weekly income |
| goal | [-0.5, 0.5] | 2 x change in emergency-buffer score + goal progress |
| engagement | [-0.2, 0.2] | 0.05 per accepted nudge + 0.02 per app session gained (lost) |
| fatigue | [-0.5, 0] | -0.005 x accumulated nudge fatigue whenever a nudge is shown |
| churn | [-1, 0] | -1 the week the user leaves the app (and the twin stays) |
| overdraft | [-0.2, 0.2] | -0.2 x (user overdrawn this week - twin overdrawn) |
| invalid | [-0.05, 0] | an action the catalog does not allow for this user |

Weights come from `FINCOACH_REWARD_WEIGHTS` (JSON `{"churn": 2}` or `churn=2,fatigue=0.5`), overridden by
the `reward_weights` of an env config; unnamed components keep weight 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np

from fincoach.settings import get_settings

REWARD_CLIPS: dict[str, tuple[float, float]] = {
    "health": (-1.0, 1.0),
    "goal": (-0.5, 0.5),
    "engagement": (-0.2, 0.2),
    "fatigue": (-0.5, 0.0),
    "churn": (-1.0, 0.0),
    "overdraft": (-0.2, 0.2),
    "invalid": (-0.05, 0.0),
}
REWARD_COMPONENTS = tuple(REWARD_CLIPS)


class RewardWeightsError(ValueError):
    """Reward weights that cannot be used (unknown component, negative or not a number)."""


def parse_weights(text: str | Mapping[str, float] | None) -> dict[str, float]:
    """Weights of every component from JSON, `k=v,...`, a mapping or None (all 1)."""
    if text is None or text == "":
        given: Mapping[str, object] = {}
    elif isinstance(text, Mapping):
        given = text
    elif text.lstrip().startswith("{"):
        try:
            given = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RewardWeightsError(f"reward weights are not valid JSON ({exc}): {text!r}") from exc
    else:
        pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise RewardWeightsError(f"reward weights must be JSON or name=value,... : got {text!r}")
        given = {k.strip(): v.strip() for k, v in pairs}
    unknown = sorted(set(given) - set(REWARD_COMPONENTS))
    if unknown:
        raise RewardWeightsError(
            f"unknown reward components {', '.join(unknown)}; known: {', '.join(REWARD_COMPONENTS)}"
        )
    weights = dict.fromkeys(REWARD_COMPONENTS, 1.0)
    for k, v in given.items():
        try:
            w = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise RewardWeightsError(f"reward weight {k}={v!r} is not a number") from exc
        if not math.isfinite(w) or w < 0:
            raise RewardWeightsError(
                f"reward weight {k}={w} must be finite and >= 0 (components carry the sign)"
            )
        weights[k] = w
    return weights


def resolve_weights(override: str | Mapping[str, float] | None = None) -> dict[str, float]:
    """The weights in force: `override` (an env config) if given, else the FINCOACH_REWARD_WEIGHTS setting."""
    return parse_weights(override if override is not None else get_settings().reward_weights)


def bounds(weights: Mapping[str, float]) -> tuple[float, float]:
    """(min, max) of the scalar reward under `weights`."""
    return (
        sum(weights[k] * lo for k, (lo, _) in REWARD_CLIPS.items()),
        sum(weights[k] * hi for k, (_, hi) in REWARD_CLIPS.items()),
    )


def clip_components(raw: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each component clipped to its range, float64."""
    return {k: np.clip(raw[k], *REWARD_CLIPS[k]).astype(np.float64) for k in REWARD_COMPONENTS}


def scalarise(components: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """The weighted sum of the components."""
    return sum(weights[k] * components[k] for k in REWARD_COMPONENTS)
