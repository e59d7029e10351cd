"""PII scrubbing of event JSON and pseudonymous user ids: what happens to every row before it reaches the lake.

Scrubbing (`scrub_json`): free text survives only under an allow-list of keys (`TEXT_KEYS`); any other
string value becomes "[redacted]", and numbers with 7 or more digits under keys outside the allow-list are
redacted too (a phone or card number sent as a number). Surviving strings, and keys, are masked for
e-mail addresses, IBANs, card numbers (Luhn-checked) and phone numbers. The result is JSON text again.

Pseudonyms: `Pseudonyms.column` replaces an int64 user id column by `fincoach.pseudonym` pseudonyms and
records the mapping in `ops.user_pseudonyms` (Postgres only; the lake never holds it), once per id and run.
"""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import Future
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from fincoach.pseudonym import pseudonymise_many

REDACTED = "[redacted]"
# Keys whose string values are product vocabulary (pages, elements, categories, versions), not free text.
TEXT_KEYS: frozenset[str] = frozenset({
    "page", "element", "category", "field", "action_type", "device", "app_version", "source", "screen",
    "path", "route", "method", "event", "feature", "decision_type", "outcome", "goal_type", "currency",
    "os", "locale", "timezone", "referrer", "status", "variant", "experiment", "tab", "button",
})
_MAX_PLAIN_DIGITS = 6  # numbers with more digits, under keys outside TEXT_KEYS, may be phone or card numbers

_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w.])\+?(?:\d[ ().-]{0,2}){6,18}\d(?![\w])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}(?::\d{2}){0,2})?")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[card]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group()


def _phone(match: re.Match[str]) -> str:
    return match.group() if _DATE.fullmatch(match.group().strip()) else "[phone]"


def mask_text(text: str) -> str:
    """`text` with e-mail addresses, IBANs, card numbers and phone numbers replaced by a placeholder."""
    if not any(ch.isdigit() or ch == "@" for ch in text):
        return text
    text = _IBAN.sub("[iban]", text)
    text = _CARD.sub(_card, text)
    text = _EMAIL.sub("[email]", text)
    return _PHONE.sub(_phone, text)


def _scrub(value: Any, key: str | None) -> Any:
    if isinstance(value, dict):
        return {mask_text(str(k)): _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, key) for v in value]
    if isinstance(value, str):
        return mask_text(value) if key in TEXT_KEYS else REDACTED
    if isinstance(value, int | float) and not isinstance(value, bool) and key not in TEXT_KEYS:
        return REDACTED if len(str(abs(int(value)))) > _MAX_PLAIN_DIGITS else value
    return value


def scrub_value(value: Any) -> Any:
    """A parsed JSON value with its PII removed (see the module docstring)."""
    return _scrub(value, None)


def scrub_json(text: str | None, key: str | None = None) -> str | None:
    """JSON text with its PII removed (`key`: the key the whole value stands under, e.g. "page" for a list
    of pages); text that is not JSON becomes the JSON string "[redacted]"."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return json.dumps(REDACTED)
    return json.dumps(_scrub(value, key), separators=(", ", ": "), ensure_ascii=False)


def scrub_json_column(column: pa.ChunkedArray | pa.Array, key: str | None = None) -> pa.ChunkedArray | pa.Array:
    """A string column of JSON texts, scrubbed; each distinct value is scrubbed once (payloads repeat a lot).

    When scrubbing changes no value, the column itself is returned (no copy of its strings).
    """
    encoded = pc.dictionary_encode(column).combine_chunks() if isinstance(column, pa.ChunkedArray) \
        else pc.dictionary_encode(column)
    texts = encoded.dictionary.to_pylist()
    cleaned = [scrub_json(v, key) for v in texts]
    if cleaned == texts:
        return column
    return pc.take(pa.array(cleaned, pa.string()), encoded.indices)


class Pseudonyms:
    """The pseudonyms of one run: each user id hashed once and its mapping recorded in ops.user_pseudonyms once.

    Shared by the tables a run extracts at once (thread-safe). A run first records every app user's mapping
    (`record_app_users`, while the tables are read); a table then records only the ids that recording did
    not see (users created since, unknown users of quarantined rows), in its own committed transaction,
    before it writes their pseudonyms to the lake.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._names: dict[int, str] = {}
        self._recorded: set[int] = set()
        self._first: Future[None] | None = None
        self._lock = threading.Lock()

    def _insert(self, conn: sa.Connection, ids: list[int]) -> None:
        ids = sorted(ids)  # in id order: concurrent runs never wait on each other in a cycle
        names = pseudonymise_many(ids)
        conn.execute(
            sa.text(
                "insert into ops.user_pseudonyms (user_id, pseudonym) "
                "select * from unnest(cast(:ids as bigint[]), cast(:names as text[])) on conflict do nothing"
            ),
            {"ids": ids, "names": names},
        )
        self._names.update(zip(ids, names, strict=True))

    def record_app_users(self) -> None:
        """Record the mapping of every app.users id that ops.user_pseudonyms lacks (hashing only those)."""
        with self._engine.begin() as conn:
            rows = conn.execute(sa.text(
                "select u.user_id, p.user_id is null from app.users u left join ops.user_pseudonyms p using (user_id)"
            )).all()
            with self._lock:
                missing = [user_id for user_id, new in rows if new]
                if missing:
                    self._insert(conn, missing)
        with self._lock:
            self._recorded.update(user_id for user_id, _ in rows)

    def first(self, recording: Future[None]) -> None:
        """Make `column` wait for `recording` (this run's `record_app_users`) before it records ids itself."""
        self._first = recording

    def column(self, user_ids: pa.ChunkedArray | pa.Array) -> pa.Array:
        """Pseudonyms for an int64 user id column (same order), every mapping recorded first."""
        ids = user_ids.combine_chunks() if isinstance(user_ids, pa.ChunkedArray) else user_ids
        distinct = pc.unique(ids)
        values = distinct.to_pylist()
        if self._first is not None:
            self._first.result()
        with self._lock:
            missing = [v for v in values if v not in self._recorded]
            if missing:
                with self._engine.begin() as conn:
                    self._insert(conn, missing)
                self._recorded.update(missing)
            unnamed = [v for v in values if v not in self._names]
            self._names.update(zip(unnamed, pseudonymise_many(unnamed), strict=True))
            names = [self._names[v] for v in values]
        return pc.take(pa.array(names, pa.string()), pc.index_in(ids, distinct))
