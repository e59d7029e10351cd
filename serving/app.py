"""The online scorer: precomputed recommendations for the backend, and scoring on demand for a few calls.

Every answer says which tier of the fallback chain gave it (champion → previous champion → rules) and why
earlier tiers did not. A user's choice is logged in app.coaching_interactions with its propensity, model
version and experiment arm. Everything but /healthz and /readyz needs an API key when keys are configured.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Path, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from fincoach.api_keys import auth_enabled, require_api_key
from fincoach.db import get_engine
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION
from fincoach.settings import get_settings
from serving.metrics import MetricsMiddleware, ScorerMetrics
from serving.online import ConflictError, DependencyDownError, NotFoundError, Scorer, SpecMismatchError
from serving.schemas import (
    Feedback,
    FeedbackStored,
    Health,
    Ready,
    Recommendations,
    ScoreRequest,
    ScoreResponse,
)

log = logging.getLogger(__name__)

_ERRORS = {NotFoundError: 404, ConflictError: 409, SpecMismatchError: 409, DependencyDownError: 503}
_SECURED = [Depends(require_api_key)]
_AUTH = {401: {"description": "missing or invalid API key"}}
UserId = Path(ge=1, le=2**63 - 1, description="app.users.user_id")


class _AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped (lone surrogates included)."""

    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def create_app() -> FastAPI:
    """The scorer application; policies are loaded when it starts and followed in the background."""
    metrics = ScorerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not auth_enabled():
            log.warning("FINCOACH_API_KEYS is not set: the scorer accepts requests without an API key")
        scorer = Scorer(get_engine(), metrics=metrics)
        scorer.start()
        app.state.scorer = scorer
        yield
        scorer.stop()

    app = FastAPI(title="FinCoach scorer", version=FEATURE_SPEC_VERSION, lifespan=lifespan)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, rendered as ASCII JSON: the errors quote the input, which may hold lone surrogates
        (invalid JSON strings) that the default UTF-8 rendering cannot encode (a 500 instead of the 422)."""
        return _AsciiJSONResponse(status_code=422, content={"detail": jsonable_encoder(exc.errors())})

    def scorer_of(request: Request) -> Scorer:
        return request.app.state.scorer

    def call(fn, *args):  # noqa: ANN001, ANN202 - maps the scorer's named errors to HTTP statuses
        try:
            return fn(*args)
        except tuple(_ERRORS) as exc:
            raise HTTPException(_ERRORS[type(exc)], str(exc)) from exc

    @app.get("/healthz")
    def healthz(request: Request) -> Health:
        """Liveness, and which tier answers now."""
        scorer = scorer_of(request)
        tier = scorer.front_tier()
        return Health(model_version=tier.model_version, source=tier.name,
                      fallback_reason=None if tier is scorer.chain.champion else scorer.chain.champion_reason,
                      auth="on" if auth_enabled() else "off")

    @app.get("/readyz", responses={503: {"description": "not started yet"}})
    def readyz(request: Request, response: Response) -> Ready:
        """Readiness and the state of each dependency (the scorer answers even when they are down)."""
        scorer: Scorer | None = getattr(request.app.state, "scorer", None)
        if scorer is None:
            response.status_code = 503
            return Ready(ready=False, database=False, redis=None, registry=None, champion=None,
                         previous_champion=None, log_pending=0)
        try:
            with scorer.engine.connect() as conn:
                database = conn.execute(sa.text("select 1")).scalar() == 1
        except sa.exc.OperationalError:
            database = False
        chain = scorer.chain
        return Ready(ready=True, database=database, redis=scorer.cache.ping(), registry=scorer.reloader.registry_ok,
                     champion=chain.champion.model_version if chain.champion else None,
                     previous_champion=chain.previous.model_version if chain.previous else None,
                     log_pending=scorer.log.pending)

    @app.get("/metrics", dependencies=_SECURED, responses=_AUTH, response_class=Response)
    def prometheus_metrics() -> Response:
        """Prometheus exposition: latency histograms, requests by outcome, fallbacks, models in service."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/recommendations/{user_id}", dependencies=_SECURED,
             responses={**_AUTH, 404: {"description": "no unexpired recommendations"},
                        503: {"description": "Postgres unreachable and nothing cached"}})
    def recommendations(request: Request, user_id: int = UserId) -> Recommendations:
        """The user's current precomputed recommendations, best first."""
        return JSONResponse(call(scorer_of(request).recommendations, user_id))  # validated when built

    @app.post("/score", dependencies=_SECURED,
              responses={**_AUTH, 404: {"description": "user has no features"},
                         409: {"description": "stored features are of another spec"},
                         422: {"description": "features do not match the spec"},
                         503: {"description": "Postgres unreachable and the user's features not cached"}})
    def score(body: ScoreRequest, request: Request) -> ScoreResponse:
        """One epsilon-greedy choice among the actions the guardrails allow, for a user or a feature vector."""
        scorer = scorer_of(request)
        if body.user_id is not None:
            return JSONResponse(call(scorer.score_user, body.user_id).model_dump(mode="json"))
        unknown = sorted(set(body.features) - set(FEATURE_NAMES))
        missing = [name for name in FEATURE_NAMES if name not in body.features]
        if unknown or missing:
            raise HTTPException(422, {"message": f"features do not match the feature spec {FEATURE_SPEC_VERSION}",
                                      "unknown": unknown, "missing": missing})
        return JSONResponse(scorer.score_features(body.features).model_dump(mode="json"))

    @app.post("/feedback", dependencies=_SECURED,
              responses={**_AUTH, 404: {"description": "no such served recommendation"},
                         409: {"description": "another response is stored already"},
                         503: {"description": "Postgres unreachable"}})
    def feedback(body: Feedback, request: Request) -> FeedbackStored:
        """Store the user's response to a served recommendation in app.coaching_interactions."""
        return call(scorer_of(request).feedback, body.request_id, body.response)

    return app


def run() -> None:
    """Serve the scorer on FINCOACH_SCORER_HOST:FINCOACH_SCORER_PORT until interrupted."""
    s = get_settings()
    uvicorn.run("serving.app:create_app", factory=True, host=s.scorer_host, port=s.scorer_port,
                workers=s.scorer_workers, log_level="warning")
