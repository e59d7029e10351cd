"""Hot reload: a background thread that follows the registry and keeps the scorer's policies current.

Every `scorer_reload_seconds` it asks the registry which version has the `champion` alias; when that moved,
it loads the new version in this thread (requests keep being answered by the old one) and swaps it in
(`FallbackChain.swap_champion`: one reference assignment, so no request sees a half-loaded model). The
replaced champion stays as the previous-champion tier. It also loads the models that experiment arms name.
A registry that is down is retried on the next tick: the scorer keeps serving what it has.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from fincoach.policy import IncompatibleModelError
from fincoach.policy_model import load_registered_policy
from fincoach.settings import get_settings
from fincoach.tracking import configure_mlflow
from serving.fallback import FallbackChain, Tier
from serving.model_loader import LOAD_ERRORS, first_line

log = logging.getLogger(__name__)


def _client():  # noqa: ANN202 - mlflow is imported lazily
    import mlflow

    configure_mlflow()
    return mlflow.MlflowClient()


def alias_version(name: str, alias: str) -> str | None:
    """Version holding `alias` of model `name`; None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def previous_champion_version(name: str, current: str) -> str | None:
    """Highest version below `current` that the promotion gate promoted (tag gate.decision = promoted)."""
    versions = _client().search_model_versions(f"name = '{name}'")
    promoted = [int(v.version) for v in versions
                if v.tags.get("gate.decision") == "promoted" and int(v.version) < int(current)]
    return str(max(promoted)) if promoted else None


def load_tier(tier_name: str, name: str, version: str) -> Tier:
    """Load `name` version `version` from the registry as a tier of the chain."""
    policy = load_registered_policy(f"models:/{name}/{version}")
    return Tier(tier_name, policy, f"{name}/{version}")


class Reloader:
    """Follows the champion alias (and the models of experiment arms) in a daemon thread."""

    def __init__(self, chain: FallbackChain, on_tick: Callable[[], None] = lambda: None):
        self.chain = chain
        self.on_tick = on_tick  # also refreshes experiments on the same schedule
        self._last_ok: float | None = None  # monotonic time of the last answered registry check
        self._last_failed = False
        self.last_error: str | None = None
        self.arm_tiers: dict[str, Tier] = {}  # "alias:<a>" | "version:<v>" → loaded tier
        self.wanted_arms: set[str] = set()
        self._refused: set[str] = set()  # versions of another feature spec or catalog
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="champion-reloader", daemon=True)

    @property
    def registry_ok(self) -> bool | None:
        """Whether the registry answered lately (a check that hangs counts as down); None before any check."""
        if self._last_ok is None:
            return False if self._last_failed else None
        stale = time.monotonic() - self._last_ok > 3 * get_settings().scorer_reload_seconds + 5
        return not (self._last_failed or stale)

    def start(self) -> None:
        """Start following (the first check runs at once)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop following."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception:  # noqa: BLE001 - an unexpected error must not end the reloading for good
                self._last_failed = True
                log.exception("registry check failed unexpectedly; retrying at the next tick")
            self._stop.wait(get_settings().scorer_reload_seconds)

    def check_once(self) -> None:
        """One poll: swap in a moved champion, load wanted experiment arms; never raises for registry errors."""
        name = get_settings().model_name
        try:
            self.on_tick()
            version = alias_version(name, "champion")
            self._last_ok, self._last_failed, self.last_error = time.monotonic(), False, None
        except LOAD_ERRORS as exc:
            self._last_failed, self.last_error = True, f"{type(exc).__name__}: {first_line(exc)}"
            self.chain.mark_unavailable(f"registry unavailable ({self.last_error})")
            log.warning("registry check failed, serving what is loaded: %s", self.last_error)
            return
        current = self.chain.champion
        if version is None:
            self.chain.mark_unavailable(f"models:/{name}@champion does not exist")
        elif (current is None or current.model_version != f"{name}/{version}") and version not in self._refused:
            tier = self._try_load("champion", name, version)
            if tier is not None:
                self.chain.swap_champion(tier)
                log.info("champion is now %s/%s", name, version)
                if self.chain.previous is None:
                    self._load_previous(name, version)
        for key in sorted(self.wanted_arms - set(self.arm_tiers)):
            kind, ref = key.split(":", 1)
            ref_version = self._quietly(alias_version, name, ref) if kind == "alias" else ref
            tier = self._try_load("experiment_arm", name, ref_version) if ref_version else None
            if tier is not None:
                self.arm_tiers[key] = tier

    def _try_load(self, tier_name: str, name: str, version: str) -> Tier | None:
        """Load a version, or None with the reason recorded (a version that cannot be served is not retried)."""
        try:
            return load_tier(tier_name, name, version)
        except LOAD_ERRORS as exc:
            reason = f"models:/{name}/{version} could not be loaded ({type(exc).__name__}: {first_line(exc)})"
            if isinstance(exc, IncompatibleModelError):
                self._refused.add(version)
            if tier_name == "champion":
                self.chain.mark_unavailable(reason)
            log.warning("%s", reason)
            return None

    @staticmethod
    def _quietly(fn: Callable[..., str | None], *args: str) -> str | None:
        try:
            return fn(*args)
        except LOAD_ERRORS:
            return None

    def _load_previous(self, name: str, current: str) -> None:
        previous = self._quietly(previous_champion_version, name, current)
        tier = self._try_load("previous_champion", name, previous) if previous else None
        if tier is not None:
            self.chain.set_previous(tier)

