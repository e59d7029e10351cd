"""Where a new candidate starts: the champion's weights, else behaviour cloning on the logs, else scratch.

Online learning: each training run continues from the champion (`settings.train_from_champion`) when its
exported Q-network has the architecture of `DQNArgs`; without a usable champion, BC on the logged
`app.coaching_interactions` (training.offline, `settings.offline_pretrain`) seeds the Q-network when at
least `settings.offline_min_interactions` are logged. `init_from` (an MLflow param) says which happened.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from fincoach.settings import get_settings
from training.registry import load_champion

log = logging.getLogger(__name__)


def initial_weights(train_users: pd.DataFrame, args: Any) -> tuple[dict | None, str, dict[str, int]]:
    """(Q-network state_dict or None for a random start, `init_from` text, offline data counts)."""
    s = get_settings()
    state, init_from = _champion_weights(args) if s.train_from_champion else (None, "scratch")
    if state is None and s.offline_pretrain:
        return _offline_weights(train_users, args, init_from)
    return state, init_from, {}


def _champion_weights(args: Any) -> tuple[dict | None, str]:
    """(state_dict of the champion's Q-network, 'champion <version>') if it fits `args`, else (None, why)."""
    policy, version, error = load_champion()
    if policy is None:
        return None, f"scratch ({error or 'no champion yet'})"
    hidden = list(policy.meta.get("hidden", []))
    if (
        policy.meta.get("algorithm") != "DQN"
        or hidden != list(args.fcnet_hiddens)
        or (bool(policy.meta.get("dueling")) != args.dueling)
    ):
        return None, f"scratch (champion {version} has another architecture: {hidden})"
    return {k: v.clone() for k, v in policy.module.state_dict().items()}, f"champion {version}"


def _offline_weights(
    train_users: pd.DataFrame, args: Any, why_not_champion: str
) -> tuple[dict | None, str, dict]:
    """(Q-network weights from BC on the logged interactions, 'offline BC ...', counts), or (None, why, counts)."""
    from fincoach.db import get_engine
    from training.offline import (
        OfflineArgs,
        OfflineDataError,
        bc_to_q_state,
        offline_rows,
        pretrain_bc,
        read_interactions,
    )

    s = get_settings()
    interactions = read_interactions(get_engine())
    if len(interactions) < s.offline_min_interactions:
        return None, f"{why_not_champion}; {len(interactions)} logged interactions, too few for BC", {}
    offline = OfflineArgs(fcnet_hiddens=tuple(args.fcnet_hiddens), seed=args.seed)
    try:
        rows, counts = offline_rows(interactions, train_users, offline.accepted_only)
    except OfflineDataError as exc:
        return None, f"{why_not_champion}; {exc}", {}
    module, metrics = pretrain_bc(rows, offline)
    log.info("BC pretraining on %d logged interactions: loss %s", len(rows), metrics["policy_loss"])
    return bc_to_q_state(module), f"offline BC on {counts['used']} logged interactions", counts
