"""Pseudonymous user ids: what the lake and MLflow hold instead of `app.users.user_id`.

A keyed hash (HMAC-SHA256 with `settings.pseudonym_key`) gives every user one stable pseudonym, the same
in every run and every store, so lake tables can still be joined with one another. Without the key a
pseudonym cannot be turned back into a user id; the mapping exists only in Postgres.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import pandas as pd
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



def app_user_ids(conn: Connection, pseudonyms: pd.Series) -> pd.Series:
    """The `app.users` id of each pseudonym (NA for one of no current user, e.g. erased since it was written).

    Lake tables hold pseudonyms; joins with Postgres need the ids. This is the one way back, and it works only
    where the database, and so the mapping, is.
    """
    ids = conn.execute(sa.text("select user_id from app.users")).scalars().all()
    lookup = dict(zip(pseudonymise_many(ids), ids, strict=True))
    return pseudonyms.map(lookup).astype("Int64")
