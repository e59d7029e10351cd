"""The scorer's log of served recommendations, written off the request path in small batches.

Every recommendation the scorer serves for a user is queued here and written to app.coaching_interactions
(with its propensity and model version) and, when it was part of an experiment, to
serving.experiment_exposures, by a background thread every `scorer_log_flush_seconds`. While Postgres is
unreachable the rows wait in memory (up to MAX_PENDING; beyond that the oldest are dropped, counted and
logged) and are written when it returns. Rows of users deleted meanwhile are skipped and counted.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from fincoach.settings import get_settings

log = logging.getLogger(__name__)

MAX_PENDING = 200_000

_INSERT = sa.text(
    "insert into app.coaching_interactions "
    "(request_id, user_id, action_id, action_type, propensity, model_version, source, served_at) "
    "select r.request_id, r.user_id, r.action_id, r.action_type, r.propensity, r.model_version, 'online', "
    "r.served_at from unnest(cast(:request_id as text[]), cast(:user_id as bigint[]), cast(:action_id as int[]), "
    "cast(:action_type as text[]), cast(:propensity as float8[]), cast(:model_version as text[]), "
    "cast(:served_at as timestamptz[])) "
    "as r(request_id, user_id, action_id, action_type, propensity, model_version, served_at) "
    "join app.users u on u.user_id = r.user_id on conflict (request_id) do nothing"
)
_EXPOSE = sa.text(
    "insert into serving.experiment_exposures (request_id, experiment_id, arm, user_id, exposed_at) "
    "select * from unnest(cast(:request_id as text[]), cast(:experiment_id as text[]), cast(:arm as text[]), "
    "cast(:user_id as bigint[]), cast(:served_at as timestamptz[])) on conflict (request_id) do nothing"
)


@dataclass(frozen=True)
class Served:
    """One served recommendation."""

    request_id: str
    user_id: int
    action_id: int
    action_type: str
    propensity: float
    model_version: str
    served_at: datetime
    experiment_id: str | None = None
    arm: str | None = None


class InteractionLog:
    """Queue of served recommendations and the thread that writes them."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._pending: deque[Served] = deque()
        self._pending_nudges: Counter[int] = Counter()  # per user, not yet written (the nudge cap counts them)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self.written = self.dropped = self.skipped_unknown_users = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="interaction-log", daemon=True)

    def start(self) -> None:
        """Start writing in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Write what is pending (if Postgres answers) and stop."""
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush()

    def record(self, served: Served) -> None:
        """Queue one served recommendation."""
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                oldest = self._pending.popleft()
                if oldest.action_type != "NO_ACTION":
                    self._pending_nudges[oldest.user_id] -= 1
                self.dropped += 1
                if self.dropped % 1000 == 1:
                    log.error("interaction log full (%d pending): %d oldest rows dropped", MAX_PENDING, self.dropped)
            self._pending.append(served)
            if served.action_type != "NO_ACTION":
                self._pending_nudges[served.user_id] += 1

    @property
    def pending(self) -> int:
        """Rows not written yet."""
        return len(self._pending)

    def pending_nudges(self, user_id: int) -> int:
        """Nudges served to a user that are not written yet."""
        return self._pending_nudges.get(user_id, 0)

    def is_pending(self, request_id: str) -> bool:
        """Whether a request's row is still waiting to be written."""
        with self._lock:
            return any(s.request_id == request_id for s in self._pending)

    def flush(self) -> bool:
        """Write everything pending now; False (rows kept) when Postgres cannot be reached."""
        with self._write_lock:
            with self._lock:
                batch = list(self._pending)
            if not batch:
                return True
            try:
                with self.engine.begin() as conn:
                    inserted = conn.execute(_INSERT, _columns(batch)).rowcount
                    exposed = [s for s in batch if s.experiment_id is not None]
                    if exposed:
                        conn.execute(_EXPOSE, _columns(exposed))
            except sa.exc.OperationalError as exc:
                self.last_error = str(exc).splitlines()[0]
                log.warning("interaction log: Postgres unavailable, %d rows wait: %s", len(batch), self.last_error)
                return False
            with self._lock:
                for served in batch:  # those of the batch still queued (a full queue may have dropped some)
                    if self._pending and self._pending[0] is served:
                        self._pending.popleft()
                        if served.action_type != "NO_ACTION":
                            self._pending_nudges[served.user_id] -= 1
                self._pending_nudges = +self._pending_nudges
            self.written += inserted
            self.last_error = None
            # Either already written (a retry after a lost commit) or a user deleted since: both are not new.
            self.skipped_unknown_users += len(batch) - inserted
            return True

    def _run(self) -> None:
        while not self._stop.wait(get_settings().scorer_log_flush_seconds):
            self.flush()


def _columns(rows: list[Served]) -> dict[str, list]:
    return {
        "request_id": [r.request_id for r in rows],
        "user_id": [r.user_id for r in rows],
        "action_id": [r.action_id for r in rows],
        "action_type": [r.action_type for r in rows],
        "propensity": [r.propensity for r in rows],
        "model_version": [r.model_version for r in rows],
        "served_at": [r.served_at for r in rows],
        "experiment_id": [r.experiment_id for r in rows],
        "arm": [r.arm for r in rows],
    }
