"""Request and response bodies of the scorer (its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, field_validator, model_validator

Source = Literal["experiment_arm", "champion", "previous_champion", "rules"]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model_version: str = Field(description="version of the first tier that would answer now")
    source: Source
    fallback_reason: str | None = None
    auth: Literal["on", "off"]


class Ready(BaseModel):
    ready: bool
    database: bool
    redis: bool | None = Field(description="None when no Redis is configured")
    registry: bool | None = Field(description="None before the first registry check")
    champion: str | None
    previous_champion: str | None
    log_pending: int


class Parameters(BaseModel):
    amount: float
    category: str
    urgency: str


class Recommendation(BaseModel):
    rank: int
    action_id: int
    action_type: str
    action_text: str
    family: str
    explanation: str
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
    from_cache: bool = False


class ScoreRequest(BaseModel):
    """Either a user whose stored features are scored, or the features themselves (all of the spec)."""

    model_config = ConfigDict(extra="forbid")

    user_id: int | None = Field(None, ge=1, le=2**63 - 1,
                                description="score the features stored for this user, and log the choice")
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
    family: str
    explanation: str
    amount: float
    score: float
    propensity: float
    model_version: str
    source: Source = Field(description="which tier of the fallback chain answered")
    fallback_reason: str | None = Field(description="why the tiers before it did not answer")
    experiment_id: str | None = None
    arm: str | None = None
    request_id: str | None = Field(None, description="id of the logged interaction (user_id requests only)")


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=200, description="request_id of a served recommendation")
    response: Literal["accepted", "dismissed", "ignored"]

    @field_validator("request_id")
    @classmethod
    def _storable(cls, value: str) -> str:
        """Text Postgres can store (no NUL; pydantic refuses lone surrogates): no request id we issued, a 422."""
        if "\x00" in value:
            raise ValueError("request_id must not contain NUL characters")
        return value


class FeedbackStored(BaseModel):
    request_id: str
    response: str
    responded_at: datetime
