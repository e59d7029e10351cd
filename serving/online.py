"""What the online scorer does per request, without HTTP: features, guardrails, the chain, the log.

HTTP concerns (status codes, auth, schemas) live in serving.app; this module raises named errors.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from fincoach.actions import ACTIONS
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, raw_matrix, vector_from_mapping
from fincoach.settings import get_settings
from serving import experiments
from serving.cache import Cache
from serving.decide import allowed_actions, rank
from serving.explain import explain_one
from serving.fallback import Answer, FallbackChain, Tier
from serving.families import ACTION_FAMILIES
from serving.guardrails import UserContext
from serving.interaction_log import InteractionLog, Served
from serving.metrics import ScorerMetrics
from serving.reloader import Reloader
from serving.schemas import FeedbackStored, Recommendation, Recommendations, ScoreResponse

log = logging.getLogger(__name__)

_USER_FEATURES = sa.text(
    "select f.feature_spec_version, "
    + ", ".join(f"f.{name}" for name in FEATURE_NAMES)
    + ", exists(select 1 from app.coaching_opt_outs o where o.user_id = f.user_id) as opted_out"
    ", (select count(*) from app.coaching_interactions c where c.user_id = f.user_id"
    "   and c.served_at >= :since and c.action_type <> 'NO_ACTION') as recent_nudges"
    " from features.user_features_latest f join app.users u on u.user_id = f.user_id where f.user_id = :user_id"
)
# A user who opted out after the batch run gets nothing but NO_ACTION from then on.
_RECOMMENDATIONS = sa.text(
    "select rank, action_id, action_type, action_text, family, explanation, parameters, score, propensity, "
    "model_version, run_id, generated_at, expires_at from serving.recommendations r "
    "where user_id = :user_id and expires_at > now() and (action_type = 'NO_ACTION' or not exists "
    "(select 1 from app.coaching_opt_outs o where o.user_id = r.user_id)) order by rank"
)
_FEEDBACK = sa.text(
    "update app.coaching_interactions set response = :response, responded_at = now() "
    "where request_id = :request_id and (response is null or response = :response) "
    "returning request_id, response, responded_at"
)
_INTERACTION = sa.text("select response from app.coaching_interactions where request_id = :request_id")


class NotFoundError(LookupError):
    """The user, recommendation or interaction asked for does not exist."""


class SpecMismatchError(ValueError):
    """Stored features were computed with another feature spec."""


class ConflictError(ValueError):
    """Feedback that contradicts the feedback already stored."""


class DependencyDownError(RuntimeError):
    """Postgres is unreachable and nothing cached can answer instead."""


class Scorer:
    """The online scorer's state: the fallback chain, its reloader, cache, interaction log and experiment."""

    def __init__(self, engine: sa.Engine, cache: Cache | None = None, metrics: ScorerMetrics | None = None):
        self.engine = engine
        self.cache = cache or Cache()
        self.metrics = metrics or ScorerMetrics()
        self.chain = FallbackChain(None)
        self.chain.on_fallback = lambda tier, reason: self.metrics.fallbacks.labels(tier).inc()
        self.reloader = Reloader(self.chain, on_tick=self.refresh_experiment)
        self.log = InteractionLog(engine)
        self.experiment: experiments.Experiment | None = None
        self._rng = threading.local()

    def start(self) -> None:
        """Load what the registry has now (rules if nothing), then follow it and write the log in the background."""
        self.reloader.check_once()
        self._publish_models()
        self.reloader.on_tick = self._tick
        self.reloader.start()
        self.log.start()

    def stop(self) -> None:
        """Stop the background threads, writing what is pending."""
        self.reloader.stop()
        self.log.stop()

    def _tick(self) -> None:
        self.refresh_experiment()
        self._publish_models()
        self.metrics.log_pending.set(self.log.pending)

    def _publish_models(self) -> None:
        chain = self.chain
        self.metrics.set_models({
            "champion": chain.champion.model_version if chain.champion else None,
            "previous_champion": chain.previous.model_version if chain.previous else None,
            "rules": chain.rules.model_version,
        })

    def refresh_experiment(self) -> None:
        """Re-read the running experiment; keep the one known while Postgres is down."""
        try:
            self.experiment = experiments.active_experiment(self.engine)
        except sa.exc.OperationalError as exc:
            log.warning("experiments not refreshed (Postgres unavailable): %s", str(exc).splitlines()[0])
            return
        arms = self.experiment.arms if self.experiment else ()
        self.reloader.wanted_arms = {a.model_key for a in arms if a.model_key}

    def front_tier(self) -> Tier:
        """The tier that answers when nothing fails."""
        return self.chain.champion or self.chain.previous or self.chain.rules

    # --- scoring ---------------------------------------------------------------------------------------------

    def score_features(self, features: dict[str, float]) -> ScoreResponse:
        """One choice for a feature vector (not logged: there is no user)."""
        raw = vector_from_mapping(features)[None, :]
        return self._decide(raw, UserContext.none(1), None)[0]

    def score_user(self, user_id: int) -> ScoreResponse:
        """One choice for a user's stored features (cached ones if any), logged as served."""
        experiment_id, arm, first = self._arm(user_id)
        expected = first or self.front_tier()
        features_key = self.cache.key("features", user_id)
        scores_key = self.cache.key("scores", expected.model_version, user_id)
        state, cached_scores = self.cache.get_many([features_key, scores_key])  # one round trip
        self.metrics.cache.labels("features", "hit" if state else "miss").inc()
        self.metrics.cache.labels("scores", "hit" if cached_scores else "miss").inc()
        if state is None:
            # Pending nudges first: one written meanwhile is then counted twice (safe), never missed.
            pending = self.log.pending_nudges(user_id)
            state = self._load_user_state(user_id)
            state["recent_nudges"] += pending
        raw = np.array([state["features"]], dtype=np.float64)
        context = UserContext(np.array([state["opted_out"]]), np.array([state["recent_nudges"]]))
        cached = None if cached_scores is None else Answer(expected, np.array([cached_scores]), None)
        response, answer = self._decide(raw, context, user_id, experiment_id, arm, first, cached)
        if cached is None and answer.tier is expected:
            self.cache.set(scores_key, answer.scores[0].tolist())
        if response.action_type != "NO_ACTION" or cached_scores is None:  # the cached count follows what we serve
            bump = int(response.action_type != "NO_ACTION")
            self.cache.set(features_key, state | {"recent_nudges": state["recent_nudges"] + bump})
        return response

    def _arm(self, user_id: int) -> tuple[str | None, experiments.Arm | None, Tier | None]:
        """(experiment id, the user's arm, the tier the arm asks first; None: the chain as is)."""
        experiment = self.experiment
        if experiment is None:
            return None, None, None
        arm = experiment.assign(user_id)
        if arm.kind == "rules":
            return experiment.experiment_id, arm, self.chain.rules
        return experiment.experiment_id, arm, self.reloader.arm_tiers.get(arm.model_key) if arm.model_key else None

    def _load_user_state(self, user_id: int) -> dict:
        since = datetime.now(UTC) - timedelta(hours=get_settings().nudge_cap_window_hours)
        try:
            with self.engine.connect() as conn:
                row = conn.execute(_USER_FEATURES, {"user_id": user_id, "since": since}).mappings().first()
        except sa.exc.OperationalError as exc:
            raise DependencyDownError(f"features of user {user_id} are not cached and Postgres is unreachable "
                                      f"({str(exc).splitlines()[0]}); retry shortly") from exc
        if row is None:
            raise NotFoundError(f"user {user_id} has no features in features.user_features_latest")
        if row["feature_spec_version"] != FEATURE_SPEC_VERSION:
            raise SpecMismatchError(f"features of user {user_id} were computed with spec "
                                    f"{row['feature_spec_version']}; this scorer serves {FEATURE_SPEC_VERSION}")
        raw = raw_matrix(pd.DataFrame([dict(row)]))  # as in batch scoring: non-finite values get the spec default
        return {"features": raw[0].tolist(), "opted_out": bool(row["opted_out"]),
                "recent_nudges": int(row["recent_nudges"])}

    def _decide(self, raw: np.ndarray, context: UserContext, user_id: int | None, experiment_id: str | None = None,
                arm: experiments.Arm | None = None, first: Tier | None = None,
                cached: Answer | None = None) -> tuple[ScoreResponse, Answer]:
        """The guardrailed choice for one user (logged when there is a user), and the answer it came from."""
        allowed, amounts = allowed_actions(raw, context)
        answer = cached or self.chain.answer(raw, allowed, first=first)
        settings = get_settings()
        ranked = rank(answer.scores, allowed, amounts, 1, settings.serving_epsilon, self._generator())
        action_id = int(ranked.actions[0, 0])
        action = ACTIONS[action_id]
        amount = float(ranked.amounts[0, 0])
        response = ScoreResponse(
            action_id=action_id,
            action_type=action.type,
            action_text=action.template.format(amount=f"{amount:.0f}"),
            family=str(ACTION_FAMILIES[action_id]),
            explanation=explain_one(raw[0], action_id),
            amount=amount,
            score=float(ranked.scores[0, 0]),
            propensity=float(ranked.propensities[0, 0]),
            model_version=answer.tier.model_version,
            source=answer.tier.name,
            fallback_reason=answer.fallback_reason,
            experiment_id=experiment_id,
            arm=arm.name if arm else None,
        )
        self.metrics.served.labels(answer.tier.name).inc()
        if user_id is not None:
            response.request_id = str(uuid.uuid4())
            self.log.record(Served(response.request_id, user_id, action_id, action.type, response.propensity,
                                   response.model_version, datetime.now(UTC), response.experiment_id, response.arm))
        return response, answer

    def _generator(self) -> np.random.Generator:
        rng = getattr(self._rng, "rng", None)
        if rng is None:
            rng = self._rng.rng = np.random.default_rng()
        return rng

    # --- precomputed recommendations and feedback -------------------------------------------------------------

    def recommendations(self, user_id: int) -> dict:
        """The user's unexpired batch recommendations as a Recommendations document: cache, else Postgres."""
        key = self.cache.key("recommendations", user_id)
        cached = self.cache.get(key)
        if cached is not None and all(datetime.fromisoformat(r["expires_at"]) > datetime.now(UTC)
                                      for r in cached["recommendations"]):
            self.metrics.cache.labels("recommendations", "hit").inc()
            return cached | {"from_cache": True}
        self.metrics.cache.labels("recommendations", "miss").inc()
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(_RECOMMENDATIONS, {"user_id": user_id}).mappings().all()
        except sa.exc.OperationalError as exc:
            raise DependencyDownError(f"recommendations of user {user_id} are not cached and Postgres is "
                                      f"unreachable ({str(exc).splitlines()[0]}); retry shortly") from exc
        if not rows:
            raise NotFoundError(f"no unexpired recommendations for user {user_id}; the next batch scoring run "
                                "will write them if the user has features")
        body = Recommendations(user_id=user_id, recommendations=[Recommendation(**r) for r in rows])
        document = body.model_dump(mode="json")
        until_expiry = (min(r.expires_at for r in body.recommendations) - datetime.now(UTC)).total_seconds()
        self.cache.set(key, document, ttl=min(self.cache.ttl, until_expiry))
        return document

    def feedback(self, request_id: str, response: str) -> FeedbackStored:
        """Store the user's response to a served recommendation (once; the same response again is a no-op)."""
        if self.log.is_pending(request_id) and not self.log.flush():
            raise DependencyDownError("Postgres is unreachable; the feedback was not stored, retry shortly")
        try:
            with self.engine.begin() as conn:
                row = conn.execute(_FEEDBACK, {"request_id": request_id, "response": response}).mappings().first()
                stored = None if row else conn.execute(_INTERACTION, {"request_id": request_id}).first()
        except sa.exc.OperationalError as exc:
            raise DependencyDownError("Postgres is unreachable; the feedback was not stored, retry shortly") from exc
        if row is not None:
            return FeedbackStored(**row)
        if stored is None:
            raise NotFoundError(f"no served recommendation with request_id {request_id!r}")
        raise ConflictError(f"request {request_id} already has the response {stored[0]!r}")
