"""Champion and challenger in the MLflow registry, with the champion's history so a rollback is one step.

The registered model (settings.model_name) carries the alias `champion` (serving reads it) and `challenger`
(the latest candidate). Every change of champion is appended to the registered model's tag
`fincoach.champion_history` (comma-separated versions, oldest first), and the version gets a tag saying
who made it champion and why. `rollback` moves `champion` back to the previous entry of the history.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fincoach.settings import get_settings

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "fincoach.champion_history"
log = logging.getLogger(__name__)


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked (no such version, nothing to roll back to)."""


def _client() -> Any:
    from mlflow import MlflowClient

    from fincoach.tracking import configure_mlflow

    configure_mlflow()
    return MlflowClient()


def _exists(client: Any, name: str) -> bool:
    return bool(client.search_registered_models(filter_string=f"name = '{name}'"))


def history(client: Any, name: str) -> list[str]:
    """Versions that were champion, oldest first (the last one is the champion now)."""
    if not _exists(client, name):
        return []
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG, "")
    return [v for v in raw.split(",") if v]


def champion_version(client: Any, name: str) -> str | None:
    """The version holding alias `champion`, or None."""
    if not _exists(client, name):
        return None
    found = client.get_registered_model(name).aliases.get(CHAMPION)
    return None if found is None else str(found)


def load_champion() -> tuple[Any, str | None, str | None]:
    """(policy, version, why it could not be loaded) of the current champion; (None, None, None) if none."""
    from mlflow import MlflowClient

    from fincoach.policy import IncompatibleModelError
    from fincoach.policy_model import load_registered_policy
    from fincoach.tracking import configure_mlflow

    configure_mlflow()
    name = get_settings().model_name
    version = champion_version(MlflowClient(), name)
    if version is None:
        return None, None, None
    try:
        return load_registered_policy(f"models:/{name}/{version}"), version, None
    except IncompatibleModelError as exc:  # trained on another spec: it cannot be served by this code either
        log.warning("champion %s/%s not evaluated: %s", name, version, exc)
        return None, version, str(exc)


def make_champion(version: str, by: str, reason: str, name: str | None = None) -> dict:
    """Point `champion` at `version` and record it in the history (idempotent for the current champion)."""
    client = _client()
    name = name or get_settings().model_name
    version = str(version)
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, version)
    except MlflowException as exc:  # RESOURCE_DOES_NOT_EXIST
        raise RegistryError(f"{name} has no version {version}: see `fincoach model status`") from exc
    previous = champion_version(client, name)
    past = history(client, name)
    if previous == version and past and past[-1] == version:
        return {"champion": version, "previous": past[-2] if len(past) > 1 else None, "changed": False}
    if previous is not None and (not past or past[-1] != previous):
        past.append(previous)  # a champion set before the history existed
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join([*past, version]))
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    for key, value in (("champion.by", by), ("champion.reason", reason), ("champion.since", stamp)):
        client.set_model_version_tag(name, version, key, value)
    return {"champion": version, "previous": previous, "changed": True}


def rollback(by: str = "human", name: str | None = None) -> dict:
    """Restore the previous champion; the rolled-back version keeps its tags and is marked."""
    client = _client()
    name = name or get_settings().model_name
    past = history(client, name)
    current = champion_version(client, name)
    if current is None:
        raise RegistryError(f"{name} has no champion: nothing to roll back")
    if past and past[-1] == current:
        past = past[:-1]
    if not past:
        raise RegistryError(f"{name} version {current} is the first champion: there is no previous one")
    previous = past[-1]
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(past))
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, current, "champion.rolled_back", f"{stamp} by {by}")
    return {"champion": previous, "rolled_back": current}


def status(name: str | None = None) -> dict:
    """Champion, challenger, champion history and every version's gate decision."""
    client = _client()
    name = name or get_settings().model_name
    if not _exists(client, name):
        return {"model": name, "champion": None, "challenger": None, "history": [], "versions": []}
    model = client.get_registered_model(name)
    versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))
    return {
        "model": name,
        "champion": None if model.aliases.get(CHAMPION) is None else str(model.aliases[CHAMPION]),
        "challenger": None if model.aliases.get(CHALLENGER) is None else str(model.aliases[CHALLENGER]),
        "history": history(client, name),
        "versions": [
            {
                "version": str(v.version),
                "decision": v.tags.get("gate.decision", ""),
                "reason": v.tags.get("gate.reason", ""),
                "mean_reward": v.tags.get("eval.candidate_mean_reward", ""),
                "ci_low": v.tags.get("eval.candidate_ci_low", ""),
            }
            for v in versions
        ],
    }
