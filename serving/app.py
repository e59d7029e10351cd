"""The online scorer: precomputed recommendations for the backend, and scoring on demand for a few calls.

The policy is loaded once at startup (the champion, or the rule-based fallback with the reason) and every
answer says which one answered. Online choices made for a user are logged in app.coaching_interactions.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from fincoach.actions import ACTIONS, action_text
from fincoach.db import get_engine
from fincoach.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION, raw_matrix, vector_from_mapping
from fincoach.settings import get_settings
from serving.model_loader import LoadedPolicy, load_policy

log = logging.getLogger(__name__)

_RECOMMENDATIONS = sa.text(
    "select rank, action_id, action_type, action_text, parameters, score, propensity, model_version, run_id, "
    "generated_at, expires_at from serving.recommendations "
    "where user_id = :user_id and expires_at > now() order by rank"
)
_USER_FEATURES = sa.text(
    "select f.feature_spec_version, "
    + ", ".join(f"f.{name}" for name in FEATURE_NAMES)
    + " from features.user_features_latest f join app.users u on u.user_id = f.user_id"
    " where f.user_id = :user_id"
)
_LOG_SERVED = sa.text(
    "insert into app.coaching_interactions "
    "(request_id, user_id, action_id, action_type, propensity, model_version, source, served_at) "
    "values (:request_id, :user_id, :action_id, :action_type, :propensity, :model_version, 'online', now())"
)


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model_version: str
    source: Literal["champion", "rules"]
    fallback_reason: str | None = None


class Parameters(BaseModel):
    amount: float
    category: str
    urgency: str


class Recommendation(BaseModel):
    rank: int
    action_id: int
    action_type: str
    action_text: str
    parameters: Parameters
    score: float
    propensity: float
    model_version: str
    run_id: str
    generated_at: datetime
    expires_at: datetime


class Recommendations(BaseModel):
    user_id: int
    recommendations: list[Recommendation]


class ScoreRequest(BaseModel):
    """Either a user whose stored features are scored, or the features themselves (all of the spec)."""

    model_config = ConfigDict(extra="forbid")

    user_id: int | None = Field(None, description="score the features stored for this user, and log the choice")
    features: dict[str, FiniteFloat] | None = Field(None, description="raw feature values by spec name")

    @model_validator(mode="after")
    def _one_of(self) -> ScoreRequest:
        if (self.user_id is None) == (self.features is None):
            raise ValueError("give exactly one of user_id or features")
        return self


class ScoreResponse(BaseModel):
    action_id: int
    action_type: str
    action_text: str
    score: float
    propensity: float
    model_version: str
    source: Literal["champion", "rules"]
    fallback_reason: str | None
    request_id: str | None = Field(None, description="id of the logged interaction (user_id requests only)")


def create_app() -> FastAPI:
    """The scorer application; the policy is loaded when it starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.loaded = load_policy()
        app.state.engine = get_engine()
        yield

    app = FastAPI(title="FinCoach scorer", lifespan=lifespan)

    @app.get("/healthz")
    def healthz(request: Request) -> Health:
        """Liveness, and which policy is answering."""
        loaded: LoadedPolicy = request.app.state.loaded
        return Health(model_version=loaded.model_version, source=loaded.source,
                      fallback_reason=loaded.fallback_reason)

    @app.get("/recommendations/{user_id}", responses={404: {"description": "no unexpired recommendations"}})
    def recommendations(user_id: int, request: Request) -> Recommendations:
        """The user's current precomputed recommendations, best first."""
        with request.app.state.engine.connect() as conn:
            rows = conn.execute(_RECOMMENDATIONS, {"user_id": user_id}).mappings().all()
        if not rows:
            raise HTTPException(404, f"no unexpired recommendations for user {user_id}; "
                                     "the next batch scoring run will write them if the user has features")
        return Recommendations(user_id=user_id, recommendations=[Recommendation(**r) for r in rows])

    @app.post("/score", responses={404: {"description": "user has no features"},
                                   409: {"description": "stored features are of another spec"},
                                   422: {"description": "features do not match the spec"}})
    def score(body: ScoreRequest, request: Request) -> ScoreResponse:
        """One epsilon-greedy choice of the serving policy for a user or a feature vector."""
        loaded: LoadedPolicy = request.app.state.loaded
        engine: sa.Engine = request.app.state.engine
        raw = _user_features(engine, body.user_id) if body.user_id is not None else _features(body.features)
        decision = loaded.policy.act(raw, epsilon=get_settings().serving_epsilon, rng=np.random.default_rng())
        action_id = int(decision.actions[0])
        score_value = float(decision.scores[0, action_id])
        if not np.isfinite(score_value):
            # A broken model, not a bad request: fail loudly rather than serve an unranked action.
            raise RuntimeError(f"policy {loaded.model_version} returned a non-finite score {score_value}")
        response = ScoreResponse(
            action_id=action_id,
            action_type=ACTIONS[action_id].type,
            action_text=action_text(action_id),
            score=score_value,
            propensity=float(decision.propensities[0]),
            model_version=loaded.model_version,
            source=loaded.source,
            fallback_reason=loaded.fallback_reason,
        )
        if body.user_id is not None:
            response.request_id = str(uuid.uuid4())
            with engine.begin() as conn:
                conn.execute(_LOG_SERVED, {
                    "request_id": response.request_id, "user_id": body.user_id, "action_id": action_id,
                    "action_type": response.action_type, "propensity": response.propensity,
                    "model_version": response.model_version,
                })
        return response

    return app


def _user_features(engine: sa.Engine, user_id: int) -> np.ndarray:
    """Stored raw features of a user (1, N_FEATURES), or the HTTP error that says why there are none."""
    with engine.connect() as conn:
        row = conn.execute(_USER_FEATURES, {"user_id": user_id}).mappings().first()
    if row is None:
        raise HTTPException(404, f"user {user_id} has no features in features.user_features_latest")
    if row["feature_spec_version"] != FEATURE_SPEC_VERSION:
        raise HTTPException(409, f"features of user {user_id} were computed with spec "
                                 f"{row['feature_spec_version']}; this scorer serves {FEATURE_SPEC_VERSION}")
    return raw_matrix(pd.DataFrame([dict(row)]))  # as in batch scoring: non-finite values get the spec default


def _features(features: dict[str, float] | None) -> np.ndarray:
    """Raw feature matrix (1, N_FEATURES) from a request, or 422 naming what is unknown and what is missing."""
    features = features or {}
    unknown = sorted(set(features) - set(FEATURE_NAMES))
    missing = [name for name in FEATURE_NAMES if name not in features]
    if unknown or missing:
        raise HTTPException(422, {"message": "features do not match the feature spec "
                                             f"{FEATURE_SPEC_VERSION}", "unknown": unknown, "missing": missing})
    return vector_from_mapping(features)[None, :]


def run() -> None:
    """Serve the scorer on FINCOACH_SCORER_HOST:FINCOACH_SCORER_PORT until interrupted."""
    s = get_settings()
    uvicorn.run(create_app(), host=s.scorer_host, port=s.scorer_port)
