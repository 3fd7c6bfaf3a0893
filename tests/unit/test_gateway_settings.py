"""The payment gateway's settings and key: published in development, its own in production."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from foundation.security import DEV_GATEWAY_KEY, ConfigurationError, gateway_key
from foundation.settings import Settings


def test_defaults_listen_on_8100_with_a_sqlite_ledger_in_the_data_directory() -> None:
    settings = Settings(data_dir=Path("/srv/geosaga"))

    assert (settings.gateway_host, settings.gateway_port) == ("127.0.0.1", 8100)
    assert settings.gateway_url == "http://127.0.0.1:8100"
    assert settings.gateway_database() == "sqlite:////srv/geosaga/gateway.db"
    assert settings.gateway_timeout_seconds == 10.0
    assert settings.gateway_faults.error_rate == 0


def test_a_database_url_replaces_the_sqlite_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_GATEWAY_DATABASE_URL", "postgresql+psycopg://db/gateway")

    assert Settings().gateway_database() == "postgresql+psycopg://db/gateway"


def test_faults_are_read_as_json_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_GATEWAY_FAULTS", '{"error_rate": 0.25, "seed": 7}')
    faults = Settings().gateway_faults

    monkeypatch.setenv("GEOSAGA_GATEWAY_FAULTS", '{"error_rate": 1.5}')
    with pytest.raises(ValidationError, match="error_rate"):
        Settings()
    monkeypatch.setenv("GEOSAGA_GATEWAY_FAULTS", '{"flood_rate": 0.5}')
    with pytest.raises(ValidationError, match="flood_rate"):
        Settings()
    assert (faults.error_rate, faults.seed, faults.hang_rate) == (0.25, 7, 0)


def test_development_without_a_key_uses_the_published_one() -> None:
    assert gateway_key(Settings()) == DEV_GATEWAY_KEY


def test_a_configured_key_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_GATEWAY_API_KEY", "gateway-secret-0123456789")

    assert gateway_key(Settings()) == "gateway-secret-0123456789"
    assert "gateway-secret" not in repr(Settings())


def test_production_refuses_no_key_and_the_published_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_ENVIRONMENT", "production")
    with pytest.raises(ConfigurationError, match="GEOSAGA_GATEWAY_API_KEY"):
        gateway_key(Settings())

    monkeypatch.setenv("GEOSAGA_GATEWAY_API_KEY", DEV_GATEWAY_KEY)
    with pytest.raises(ConfigurationError, match="published development key"):
        gateway_key(Settings())


@pytest.mark.parametrize(
    ("key", "message"),
    [("short", "shorter than 16 characters"), ("has a space 0123456789", "printable ASCII")],
)
def test_a_weak_key_is_refused(monkeypatch: pytest.MonkeyPatch, key: str, message: str) -> None:
    monkeypatch.setenv("GEOSAGA_GATEWAY_API_KEY", key)

    with pytest.raises(ValidationError, match=message):
        Settings()
