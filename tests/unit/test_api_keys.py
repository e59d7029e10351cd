"""The shared API-key check of the HTTP services, served by a real FastAPI app."""

from collections.abc import Iterator

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from fincoach.api_keys import API_KEY_HEADER, auth_enabled, require_api_key
from fincoach.settings import reload_settings


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("FINCOACH_API_KEYS", "key-one, key-two")
    reload_settings()
    app = FastAPI()

    @app.get("/private", dependencies=[Depends(require_api_key)])
    def private() -> dict:
        return {"ok": True}

    yield TestClient(app)
    monkeypatch.delenv("FINCOACH_API_KEYS")
    reload_settings()


def test_request_without_a_key_is_refused_with_401(client: TestClient) -> None:
    response = client.get("/private")
    assert response.status_code == 401
    assert API_KEY_HEADER in response.json()["detail"]


def test_wrong_key_is_refused_and_each_configured_key_is_accepted(client: TestClient) -> None:
    assert client.get("/private", headers={API_KEY_HEADER: "key-three"}).status_code == 401
    assert client.get("/private", headers={API_KEY_HEADER: "key-one"}).status_code == 200
    assert client.get("/private", headers={API_KEY_HEADER: "key-two"}).status_code == 200


def test_no_configured_keys_means_auth_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FINCOACH_API_KEYS", raising=False)
    reload_settings()
    assert not auth_enabled()
