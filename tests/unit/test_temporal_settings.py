"""Security settings parsed from GEOSAGA_* variables, and the Temporal client that
`foundation.temporal.connect` builds from them: TLS, mTLS, server name, API key, payload codec.

No TLS server runs here: the client is built lazily (it connects on first use), which is
enough to see every option reach it.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes
from temporalio.service import TLSConfig

from foundation.codec import EncryptionCodec
from foundation.security import DEV_API_KEY, ConfigurationError, api_keys
from foundation.settings import Settings
from foundation.temporal import connect, connect_options, tls_config


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.upper().startswith("GEOSAGA_"):
            monkeypatch.delenv(name)


def pem_pair(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate and its private key, as PEM files."""
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# API keys ---------------------------------------------------------------------------------------


def test_api_keys_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_API_KEYS", " new-key-0123456789abcdef , old-key-0123456789abcdef,")

    assert api_keys(Settings()) == ("new-key-0123456789abcdef", "old-key-0123456789abcdef")


@pytest.mark.parametrize(
    ("keys", "message"),
    [("short", "shorter than 16 characters"), ("has-a-tab\tin-it-0123", "printable ASCII")],
)
def test_weak_or_unprintable_api_keys_are_refused(
    monkeypatch: pytest.MonkeyPatch, keys: str, message: str
) -> None:
    monkeypatch.setenv("GEOSAGA_API_KEYS", keys)

    with pytest.raises(ValidationError, match=message):
        Settings()


def test_development_without_api_keys_accepts_the_development_key() -> None:
    assert Settings().environment == "development"
    assert api_keys(Settings()) == (DEV_API_KEY,)


def test_configured_keys_replace_the_development_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_API_KEYS", "configured-key-0123456789")

    assert DEV_API_KEY not in api_keys(Settings())


def test_production_without_api_keys_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_ENVIRONMENT", "production")

    with pytest.raises(ConfigurationError, match="GEOSAGA_API_KEYS"):
        api_keys(Settings())


def test_production_refuses_the_development_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_ENVIRONMENT", "production")
    monkeypatch.setenv("GEOSAGA_API_KEYS", f"real-key-0123456789abcdef,{DEV_API_KEY}")

    with pytest.raises(ConfigurationError, match="published development key"):
        api_keys(Settings())


def test_an_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_ENVIRONMENT", "staging")

    with pytest.raises(ValidationError, match="environment"):
        Settings()


def test_secrets_do_not_show_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_API_KEYS", "api-secret-0123456789abcdef")
    monkeypatch.setenv("GEOSAGA_TEMPORAL_API_KEY", "cloud-secret-0123456789")

    shown = repr(Settings())

    assert "api-secret" not in shown
    assert "cloud-secret" not in shown


# Temporal connection ----------------------------------------------------------------------------


def test_a_plain_connection_by_default() -> None:
    options = connect_options(Settings())

    assert options["tls"] is False
    assert options["api_key"] is None
    assert options["namespace"] == "default"


def test_tls_with_the_system_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_TEMPORAL_TLS", "true")

    assert tls_config(Settings()) is True


def test_a_cloud_api_key_turns_tls_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_TEMPORAL_ADDRESS", "geosaga.a1b2c.tmprl.cloud:7233")
    monkeypatch.setenv("GEOSAGA_TEMPORAL_NAMESPACE", "geosaga.a1b2c")
    monkeypatch.setenv("GEOSAGA_TEMPORAL_API_KEY", "cloud-key-0123456789")

    options = connect_options(Settings())

    assert options["api_key"] == "cloud-key-0123456789"
    assert options["tls"] is True
    assert options["namespace"] == "geosaga.a1b2c"


def test_server_ca_mtls_and_server_name_make_a_tls_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca, _ = pem_pair(tmp_path, "ca")
    cert, key = pem_pair(tmp_path, "worker")
    monkeypatch.setenv("GEOSAGA_TEMPORAL_TLS_CA_CERT", str(ca))
    monkeypatch.setenv("GEOSAGA_TEMPORAL_TLS_CLIENT_CERT", str(cert))
    monkeypatch.setenv("GEOSAGA_TEMPORAL_TLS_CLIENT_KEY", str(key))
    monkeypatch.setenv("GEOSAGA_TEMPORAL_TLS_SERVER_NAME", "temporal.internal")

    assert tls_config(Settings()) == TLSConfig(
        server_root_ca_cert=ca.read_bytes(),
        domain="temporal.internal",
        client_cert=cert.read_bytes(),
        client_private_key=key.read_bytes(),
    )


def test_a_server_ca_alone_verifies_the_server_without_a_client_certificate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca, _ = pem_pair(tmp_path, "ca")
    monkeypatch.setenv("GEOSAGA_TEMPORAL_TLS_CA_CERT", str(ca))

    assert tls_config(Settings()) == TLSConfig(server_root_ca_cert=ca.read_bytes())


def test_a_client_certificate_without_its_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cert, _ = pem_pair(tmp_path, "worker")
    monkeypatch.setenv("GEOSAGA_TEMPORAL_TLS_CLIENT_CERT", str(cert))

    with pytest.raises(ValidationError, match="go together"):
        Settings()


def test_a_missing_certificate_file_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GEOSAGA_TEMPORAL_TLS_CA_CERT", str(tmp_path / "nowhere.pem"))

    with pytest.raises(ConfigurationError, match=r"GEOSAGA_TEMPORAL_TLS_CA_CERT=.*nowhere\.pem"):
        tls_config(Settings())


def test_a_file_that_is_not_pem_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "ca.der").write_bytes(b"\x30\x82\x01\x0a")
    monkeypatch.setenv("GEOSAGA_TEMPORAL_TLS_CA_CERT", str(tmp_path / "ca.der"))

    with pytest.raises(ConfigurationError, match="is not a PEM file"):
        tls_config(Settings())


async def test_connect_builds_the_client_with_tls_the_api_key_and_the_codec(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca, _ = pem_pair(tmp_path, "ca")
    cert, key = pem_pair(tmp_path, "worker")
    monkeypatch.setenv("GEOSAGA_TEMPORAL_ADDRESS", "temporal.example.internal:7233")
    monkeypatch.setenv("GEOSAGA_TEMPORAL_NAMESPACE", "orders-prod")
    monkeypatch.setenv("GEOSAGA_TEMPORAL_TLS_CA_CERT", str(ca))
    monkeypatch.setenv("GEOSAGA_TEMPORAL_TLS_CLIENT_CERT", str(cert))
    monkeypatch.setenv("GEOSAGA_TEMPORAL_TLS_CLIENT_KEY", str(key))
    monkeypatch.setenv("GEOSAGA_TEMPORAL_API_KEY", "cloud-key-0123456789")

    client = await connect(Settings(), lazy=True)

    config = client.service_client.config
    assert config.target_host == "temporal.example.internal:7233"
    assert config.api_key == "cloud-key-0123456789"
    assert config.tls == TLSConfig(
        server_root_ca_cert=ca.read_bytes(),
        client_cert=cert.read_bytes(),
        client_private_key=key.read_bytes(),
    )
    assert client.namespace == "orders-prod"
    assert isinstance(client.data_converter.payload_codec, EncryptionCodec)
    assert isinstance(
        client.data_converter.failure_converter, DefaultFailureConverterWithEncodedAttributes
    )


async def test_connect_refuses_production_without_a_payload_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEOSAGA_ENVIRONMENT", "production")

    with pytest.raises(ConfigurationError, match="GEOSAGA_PAYLOAD_KEYS"):
        await connect(Settings(), lazy=True)
