"""API keys: the one check that the ingestion API and the scorer both use (header `X-API-Key`)."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Security, status
from fastapi.security import APIKeyHeader

from fincoach.settings import get_settings

API_KEY_HEADER = "X-API-Key"
_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="A key from FINCOACH_API_KEYS")


def configured_keys() -> tuple[str, ...]:
    """The keys from settings (`FINCOACH_API_KEYS`, comma-separated); empty when auth is off."""
    raw = get_settings().api_keys or ""
    return tuple(key.strip() for key in raw.split(",") if key.strip())


def auth_enabled() -> bool:
    """True when at least one key is configured."""
    return bool(configured_keys())


def is_valid_key(presented: str | None) -> bool:
    """Whether `presented` is one of the configured keys (constant-time compare); always True when auth is off."""
    keys = configured_keys()
    if not keys:
        return True
    if not presented:
        return False
    return any(hmac.compare_digest(presented.encode(), key.encode()) for key in keys)


def require_api_key(presented: str | None = Security(_header)) -> None:
    """FastAPI dependency: 401 unless the request carries a valid key (or auth is off)."""
    if not is_valid_key(presented):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=f"missing or invalid API key: send one of FINCOACH_API_KEYS in the {API_KEY_HEADER} header",
        )
