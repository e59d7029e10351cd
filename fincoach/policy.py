"""The one policy interface, shared by rules, bandits and learned agents, and the exported-policy format.

A policy scores every action for a batch of users (raw features in spec order); `act` turns scores into
an epsilon-greedy choice over the actions allowed for each user and reports the propensity of that choice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fincoach.actions import ACTION_CATALOG_VERSION, N_ACTIONS, action_mask
from fincoach.feature_spec import FEATURE_SPEC_VERSION, normalise

POLICY_FILE = "policy.pt"
META_FILE = "meta.json"


class IncompatibleModelError(RuntimeError):
    """The model was trained on a feature spec or action catalog this code cannot serve."""


@dataclass
class Decision:
    """Chosen actions for a batch, their propensities, and every action's score (masked ones are -inf)."""

    actions: np.ndarray  # (n,) int
    propensities: np.ndarray  # (n,) float
    scores: np.ndarray  # (n, N_ACTIONS) float


class Policy:
    """Base of every policy: subclasses implement `action_scores`."""

    version: str = "unknown"

    def action_scores(self, raw: np.ndarray) -> np.ndarray:
        """(n, N_ACTIONS) scores, higher is better, for raw features in spec order."""
        raise NotImplementedError

    def act(self, raw: np.ndarray, epsilon: float = 0.0, rng: np.random.Generator | None = None) -> Decision:
        """Epsilon-greedy choice among allowed actions, with the probability of each choice."""
        raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
        mask = action_mask(raw)
        scores = np.where(mask, self.action_scores(raw), -np.inf)
        greedy = scores.argmax(axis=1)
        n_valid = mask.sum(axis=1)
        actions = greedy.copy()
        if epsilon > 0:
            rng = rng or np.random.default_rng()
            explore = rng.random(len(raw)) < epsilon
            for i in np.flatnonzero(explore):
                actions[i] = rng.choice(np.flatnonzero(mask[i]))
        p_greedy = 1.0 - epsilon + epsilon / n_valid
        p_other = epsilon / n_valid
        propensities = np.where(actions == greedy, p_greedy, p_other)
        return Decision(actions=actions, propensities=propensities, scores=scores)


class ExportedPolicy(Policy):
    """A trained Q-network exported as TorchScript, served without the training stack (no Ray)."""

    def __init__(self, module: Any, meta: dict[str, Any]):
        self.module = module
        self.meta = meta
        self.version = str(meta.get("model_version", meta.get("run_id", "unregistered")))

    @classmethod
    def load(cls, path: str | Path) -> ExportedPolicy:
        """Load from a folder holding policy.pt and meta.json (searched recursively, as MLflow nests them)."""
        import torch

        root = Path(path)
        found = sorted(root.rglob(META_FILE))
        if not found:
            raise IncompatibleModelError(f"no {META_FILE} under {root}: not a FinCoach policy artifact")
        folder = found[0].parent
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("feature_spec_version") != FEATURE_SPEC_VERSION:
            raise IncompatibleModelError(
                f"model was trained on feature spec {meta.get('feature_spec_version')}, "
                f"this code serves {FEATURE_SPEC_VERSION}: retrain, or deploy the matching code"
            )
        if meta.get("action_catalog_version") != ACTION_CATALOG_VERSION:
            raise IncompatibleModelError(
                f"model uses action catalog {meta.get('action_catalog_version')}, "
                f"this code serves {ACTION_CATALOG_VERSION}"
            )
        module = torch.jit.load(str(folder / POLICY_FILE), map_location="cpu")
        module.eval()
        return cls(module, meta)

    def action_scores(self, raw: np.ndarray) -> np.ndarray:
        """Q-values of the network on the normalised features."""
        import torch

        with torch.inference_mode():
            q = self.module(torch.from_numpy(normalise(raw)))
        q = q.numpy().astype(np.float64)
        if q.shape[1] != N_ACTIONS:
            raise IncompatibleModelError(f"policy outputs {q.shape[1]} actions, catalog has {N_ACTIONS}")
        return q


def write_policy_artifact(folder: str | Path, scripted_module: Any, meta: dict[str, Any]) -> Path:
    """Write policy.pt + meta.json (with spec and catalog versions) into `folder`; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scripted_module.save(str(folder / POLICY_FILE))
    full = {
        **meta,
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "action_catalog_version": ACTION_CATALOG_VERSION,
    }
    (folder / META_FILE).write_text(json.dumps(full, indent=2, sort_keys=True))
    return folder
