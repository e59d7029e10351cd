"""The policy serving uses: the registered champion, or the rule-based fallback when it cannot be loaded."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from mlflow.exceptions import MlflowException

from fincoach.policy import IncompatibleModelError, Policy
from fincoach.policy_model import load_registered_policy
from fincoach.rules import RULES_VERSION, RulePolicy
from fincoach.settings import get_settings
from fincoach.tracking import configure_mlflow

log = logging.getLogger(__name__)

# What can go wrong between us and a usable champion: no such model or alias, registry down (REST store:
# MlflowException; database store: OperationalError), artifacts missing (OSError), a model trained on
# another feature spec or catalog (IncompatibleModelError), a TorchScript file torch cannot load
# (RuntimeError). Anything else is a bug and propagates.
LOAD_ERRORS = (MlflowException, sa.exc.OperationalError, OSError, IncompatibleModelError, RuntimeError)


@dataclass(frozen=True)
class LoadedPolicy:
    """The policy in service, where it came from, and why it is the fallback if it is."""

    policy: Policy
    source: Literal["champion", "rules"]
    model_version: str  # "<model name>/<version>" for the champion, "rules-v1" for the fallback
    fallback_reason: str | None = None


def load_policy() -> LoadedPolicy:
    """The `champion` of the registered model, or RulePolicy with the reason when it cannot be served."""
    uri = f"models:/{get_settings().model_name}@champion"
    try:
        configure_mlflow()
        policy = load_registered_policy(uri)
    except LOAD_ERRORS as exc:
        reason = f"{uri} could not be loaded ({type(exc).__name__}: {first_line(exc)})"
        log.warning("serving the rule-based fallback %s: %s", RULES_VERSION, reason)
        return LoadedPolicy(RulePolicy(), "rules", RULES_VERSION, reason)
    log.info("serving champion %s", policy.version)
    return LoadedPolicy(policy, "champion", policy.version)


def first_line(exc: BaseException) -> str:
    """The headline of an error (driver errors append pages of hints)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)
