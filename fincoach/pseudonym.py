"""Pseudonymous user ids: what the lake and MLflow hold instead of `app.users.user_id`.

A keyed hash (HMAC-SHA256 with `settings.pseudonym_key`) gives every user one stable pseudonym, the same
in every run and every store, so lake tables can still be joined with one another. Without the key a
pseudonym cannot be turned back into a user id; the mapping exists only in Postgres.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fincoach.settings import get_settings

PREFIX = "u_"
DIGEST_CHARS = 20  # 80 bits: collisions are negligible far beyond any user base


def pseudonymise(user_id: int | str, key: str | None = None) -> str:
    """The pseudonym of one user id (`u_` + 20 hex characters)."""
    secret = (key if key is not None else get_settings().pseudonym_key).encode()
    digest = hmac.new(secret, str(int(user_id)).encode(), hashlib.sha256).hexdigest()
    return PREFIX + digest[:DIGEST_CHARS]


def pseudonymise_many(user_ids: Iterable[int | str], key: str | None = None) -> list[str]:
    """Pseudonyms of many user ids, in order (the key is read once)."""
    secret = key if key is not None else get_settings().pseudonym_key
    return [pseudonymise(u, secret) for u in user_ids]


def is_pseudonym(value: object) -> bool:
    """True for a string shaped like a pseudonym."""
    return isinstance(value, str) and value.startswith(PREFIX) and len(value) == len(PREFIX) + DIGEST_CHARS


def app_user_ids(conn: Connection, ids: Iterable[int | str]) -> np.ndarray:
    """`app.users` ids of lake user ids (pseudonyms or plain ids), -1 where no such user exists (erased).

    Training reads pseudonymised snapshots but joins history in Postgres: this is the one way back, and it
    works only where the database (and so the mapping) is.
    """
    values = list(ids)
    known = [int(u) for u in conn.execute(sa.text("select user_id from app.users")).scalars()]
    by_pseudonym = dict(zip(pseudonymise_many(known), known, strict=True))
    present = set(known)
    out = np.full(len(values), -1, dtype=np.int64)
    for i, value in enumerate(values):
        if is_pseudonym(value):
            out[i] = by_pseudonym.get(value, -1)
        elif int(value) in present:
            out[i] = int(value)
    return out
