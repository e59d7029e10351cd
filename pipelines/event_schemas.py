"""The declared schema of every event `POST /events` accepts (pydantic), one model per kind.

An event is an object with a `kind`: `interaction` (page views, clicks, API calls... stored in
app.user_events with its `event_type`), `decision` (a financial decision, app.financial_decisions),
`session_start` and `session_end` (app.user_events, used to build app.user_sessions). Every kind carries a
client `event_id` (a retry of the same id is stored once), the `user_id`, an aware `timestamp` and an
optional `session_id`. Unknown fields are errors, so a typo is reported instead of silently dropped.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from fincoach.settings import get_settings

INTERACTION_TYPES: tuple[str, ...] = (
    "page_view", "click", "budget_view", "goal_update", "nudge_view", "api_call", "feature_use",
)
SESSION_TYPES: tuple[str, ...] = ("session_start", "session_end")
KNOWN_EVENT_TYPES: frozenset[str] = frozenset(INTERACTION_TYPES + SESSION_TYPES)
DECISION_TYPES: tuple[str, ...] = (
    "transfer_to_savings", "set_budget", "skip_purchase", "pay_extra_debt", "create_goal", "invest",
)
DECISION_OUTCOMES: tuple[str, ...] = ("completed", "abandoned")

def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL (\\u0000) characters")
    return value


EventId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
SessionId = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_no_nul)]
UserId = Annotated[int, Field(gt=0, lt=2**63)]


def _within_size(value: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(value, separators=(",", ":"))
    if "\\u0000" in text:  # Postgres text and jsonb cannot hold NUL
        raise ValueError("JSON must not contain NUL (\\u0000) characters")
    size = len(text.encode())
    limit = get_settings().max_payload_bytes
    if size > limit:
        raise ValueError(f"{size} bytes of JSON, more than the limit of {limit} (FINCOACH_MAX_PAYLOAD_BYTES)")
    return value


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: EventId
    user_id: UserId
    timestamp: AwareDatetime
    session_id: SessionId | None = None
    context: dict[str, Any] = Field(default_factory=dict)

    _size = field_validator("context")(_within_size)


class InteractionEvent(_Event):
    """Something the user did in the app (a page view, a click, an API call)."""

    kind: Literal["interaction"]
    event_type: Literal[INTERACTION_TYPES]  # type: ignore[valid-type]
    event_data: dict[str, Any] = Field(default_factory=dict)

    _data_size = field_validator("event_data")(_within_size)


class DecisionEvent(_Event):
    """A financial decision the user took, with its amount, category and (when known) outcome."""

    kind: Literal["decision"]
    decision_type: Literal[DECISION_TYPES]  # type: ignore[valid-type]
    amount: Annotated[float, Field(ge=0, lt=1e10, allow_inf_nan=False)] | None = None
    category: Annotated[str, Field(min_length=1, max_length=40), AfterValidator(_no_nul)] | None = None
    outcome: Literal[DECISION_OUTCOMES] | None = None  # type: ignore[valid-type]


class SessionStartEvent(_Event):
    """The app opened a session."""

    kind: Literal["session_start"]
    session_id: SessionId


class SessionEndEvent(_Event):
    """The app closed a session."""

    kind: Literal["session_end"]
    session_id: SessionId


Event = Annotated[
    InteractionEvent | DecisionEvent | SessionStartEvent | SessionEndEvent, Field(discriminator="kind")
]
EVENT_LIST = TypeAdapter(list[Event])
