"""Export a trained RLlib DQN RLModule as a plain TorchScript Q-network, served without Ray.

The exported module maps normalised observations (float32, (n, N_FEATURES)) to Q-values (n, N_ACTIONS):
the RLModule's encoder MLP, its advantage head and, with a dueling architecture, its value head, combined
as RLlib does (Q = V + A - mean(A)). `export_policy` checks the copy against the RLModule before writing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fincoach.actions import N_ACTIONS
from fincoach.feature_spec import FEATURES, N_FEATURES
from fincoach.policy import write_policy_artifact


class ExportError(RuntimeError):
    """The RLModule cannot be exported as a plain Q-network, or the copy does not match it."""


class QNetwork(nn.Module):
    """Q-values from normalised features: encoder → advantage head (+ value head when dueling)."""

    def __init__(self, encoder: nn.Module, advantage: nn.Module, value: nn.Module | None):
        super().__init__()
        self.encoder = encoder
        self.advantage = advantage
        self.dueling = value is not None
        self.value = value if value is not None else nn.Identity()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.encoder(obs)
        a = self.advantage(h)
        if self.dueling:
            return self.value(h) + a - a.mean(dim=-1, keepdim=True)
        return a


def extract_q_network(module: Any) -> QNetwork:
    """A standalone copy of the Q-network inside an RLlib DefaultDQNTorchRLModule."""
    if getattr(module, "num_atoms", 1) != 1:
        raise ExportError(
            "distributional DQN (num_atoms > 1) is not exportable as a Q-network; use num_atoms=1"
        )
    try:
        encoder = module.encoder.net.mlp
        advantage = module.af.net.mlp
        value = module.vf.net.mlp if module.uses_dueling else None
    except AttributeError as exc:
        raise ExportError(f"not an MLP DQN RLModule ({type(module).__name__}): {exc}") from exc
    net = QNetwork(
        copy.deepcopy(encoder), copy.deepcopy(advantage), copy.deepcopy(value) if value is not None else None
    )
    return net.eval().float()


def load_q_weights(module: Any, state: dict[str, torch.Tensor]) -> None:
    """Copy an exported QNetwork's weights (its state_dict) into an RLModule, target networks included.

    The inverse of `extract_q_network`: a new candidate starts from the champion instead of from scratch.
    """
    parts = {"encoder": ["encoder", "_target_encoder"], "advantage": ["af", "_target_af"]}
    if module.uses_dueling:
        parts["value"] = ["vf", "_target_vf"]
    for prefix, names in parts.items():
        sub = {k.removeprefix(f"{prefix}."): v for k, v in state.items() if k.startswith(f"{prefix}.")}
        for name in names:
            net = getattr(module, name, None)
            if net is None:  # an inference-only module has no target networks
                continue
            try:
                net.net.mlp.load_state_dict(sub)
            except RuntimeError as exc:
                raise ExportError(
                    f"the exported weights do not fit this RLModule's {name} (architecture changed?): {exc}"
                ) from exc


def rlmodule_q_values(module: Any, obs: np.ndarray) -> np.ndarray:
    """Q-values as the RLModule itself computes them (the reference the export is checked against)."""
    from ray.rllib.algorithms.dqn.default_dqn_rl_module import QF_PREDS

    with torch.no_grad():
        out = module.compute_q_values({"obs": torch.as_tensor(obs, dtype=torch.float32)})
    return out[QF_PREDS].cpu().numpy()


def check_batch(n: int = 256, seed: int = 0) -> np.ndarray:
    """Normalised observations covering the whole observation box (for checking an export)."""
    rng = np.random.default_rng(seed)
    clip = np.array([f.clip for f in FEATURES], dtype=np.float32)
    wide = rng.uniform(-clip, clip, size=(n // 2, N_FEATURES))
    typical = rng.normal(0.0, 0.6, size=(n - n // 2, N_FEATURES))
    return np.clip(np.concatenate([wide, typical]), -clip, clip).astype(np.float32)


def export_policy(
    module: Any, folder: str | Path, meta: dict[str, Any], obs: np.ndarray | None = None
) -> Path:
    """Extract, check against the RLModule on `obs` (default `check_batch()`), script and write the policy."""
    obs = check_batch() if obs is None else np.asarray(obs, dtype=np.float32)
    net = extract_q_network(module)
    expected = rlmodule_q_values(module, obs)
    scripted = torch.jit.script(net)
    with torch.no_grad():
        plain = net(torch.from_numpy(obs)).numpy()
        script_out = scripted(torch.from_numpy(obs)).numpy()
    if plain.shape != (len(obs), N_ACTIONS):
        raise ExportError(f"exported network outputs {plain.shape}, expected ({len(obs)}, {N_ACTIONS})")
    for name, got in (("plain copy", plain), ("TorchScript", script_out)):
        err = float(np.max(np.abs(got - expected)))
        if err > 1e-5:
            raise ExportError(f"{name} differs from the RLModule by up to {err:.2e} in Q-values")
    hidden = [m.out_features for m in net.encoder if isinstance(m, nn.Linear)]
    full_meta = {
        "algorithm": "DQN",
        "framework": f"torch {torch.__version__}",
        "dueling": net.dueling,
        "hidden": hidden,
        "input": f"fincoach.feature_spec.normalise(raw) float32 (n, {N_FEATURES})",
        "output": f"Q-values (n, {N_ACTIONS})",
        **meta,
    }
    return write_policy_artifact(folder, scripted, full_meta)
