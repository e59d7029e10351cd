"""The scorer's feature and prediction cache in Redis, optional: without Redis every lookup is a miss.

Keys carry the feature spec version (and, for predictions, the model version), so a new spec or model
never reads old entries. Values expire after `cache_ttl_seconds`. Redis errors never fail a request: the
cache turns itself off for a second and counts the error.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fincoach.feature_spec import FEATURE_SPEC_VERSION
from fincoach.settings import get_settings

log = logging.getLogger(__name__)

_BACKOFF_SECONDS = 1.0


class Cache:
    """JSON values in Redis under `<prefix>:<kind>:<spec version>:...` keys."""

    def __init__(self, url: str | None = None, prefix: str | None = None, ttl: int | None = None):
        s = get_settings()
        url = url if url is not None else s.redis_url
        self.prefix = f"{prefix or s.cache_prefix}"
        self.ttl = ttl or s.cache_ttl_seconds
        self.errors = 0
        self._down_until = 0.0
        self._client = None
        if url:
            import redis

            self._client = redis.Redis.from_url(url, socket_timeout=0.05, socket_connect_timeout=0.05)

    @property
    def enabled(self) -> bool:
        """Whether a Redis is configured."""
        return self._client is not None

    def key(self, kind: str, *parts: object) -> str:
        """The key of an entry: kind (features, scores, recommendations) and its identifying parts."""
        return ":".join([self.prefix, kind, FEATURE_SPEC_VERSION, *map(str, parts)])

    def get(self, key: str) -> Any | None:
        """The cached value, or None (miss, no Redis, Redis down)."""
        if not self._usable():
            return None
        try:
            raw = self._client.get(key)
        except self._errors() as exc:
            self._failed(exc)
            return None
        return None if raw is None else json.loads(raw)

    def get_many(self, keys: list[str]) -> list[Any | None]:
        """Cached values of several keys in one round trip (None for each miss)."""
        if not self._usable():
            return [None] * len(keys)
        try:
            values = self._client.mget(keys)
        except self._errors() as exc:
            self._failed(exc)
            return [None] * len(keys)
        return [None if raw is None else json.loads(raw) for raw in values]

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Cache a value for `ttl` seconds (default the configured TTL); silently skipped without Redis."""
        if not self._usable():
            return
        seconds = max(1, int(ttl if ttl is not None else self.ttl))
        try:
            self._client.set(key, json.dumps(value), ex=seconds)
        except self._errors() as exc:
            self._failed(exc)

    def ping(self) -> bool | None:
        """True/False whether Redis answers; None without Redis."""
        if self._client is None:
            return None
        try:
            return bool(self._client.ping())
        except self._errors():
            return False

    def _usable(self) -> bool:
        return self._client is not None and time.monotonic() >= self._down_until

    @staticmethod
    def _errors() -> tuple[type[Exception], ...]:
        import redis

        return (redis.RedisError, OSError)

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self._down_until = time.monotonic() + _BACKOFF_SECONDS
        log.warning("redis unavailable, cache off for %.0fs: %s", _BACKOFF_SECONDS, exc)
