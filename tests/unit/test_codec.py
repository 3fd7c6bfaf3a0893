"""The AES-GCM payload codec: what it seals, what it opens, key rotation, and the keys it takes
from settings (development fallback, production refusals)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory

from foundation.codec import ENCODING, DecryptionError, EncryptionCodec, is_encrypted
from foundation.security import (
    DEV_PAYLOAD_KEY,
    DEV_PAYLOAD_KEY_ID,
    ConfigurationError,
    Keyring,
    payload_keyring,
)
from foundation.settings import Settings
from foundation.temporal import data_converter
from regions.values import Allocation

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.upper().startswith("GEOSAGA_"):
            monkeypatch.delenv(name)


def key() -> bytes:
    return os.urandom(32)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def payload(data: bytes = b'{"payment_token":"tok_ok"}') -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


def codec(keys: dict[str, bytes], current: str) -> EncryptionCodec:
    return EncryptionCodec(Keyring(keys, current))


async def test_a_payload_survives_a_round_trip_and_is_sealed_in_between() -> None:
    sealing = codec({"k1": key()}, "k1")
    original = payload()

    [sealed] = await sealing.encode([original])
    [opened] = await sealing.decode([sealed])

    assert opened == original
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata["encryption-key-id"] == b"k1"
    assert sealed.metadata["encryption-cipher"] == b"AES-256-GCM"
    assert b"tok_ok" not in sealed.SerializeToString()
    # The original's own metadata is sealed too: nothing says it was JSON.
    assert b"json/plain" not in sealed.SerializeToString()


async def test_every_encryption_uses_a_fresh_nonce() -> None:
    sealing = codec({"k1": key()}, "k1")

    first, second = await sealing.encode([payload(), payload()])

    assert first.data[:12] != second.data[:12]
    assert first.data != second.data


async def test_payloads_that_are_not_encrypted_pass_through_decode() -> None:
    plain = [payload(), Payload(metadata={"encoding": b"binary/null"})]

    assert await codec({"k1": key()}, "k1").decode(plain) == plain


async def test_recorded_unencrypted_histories_decode_to_themselves() -> None:
    recorded = HISTORIES / "v1" / "completed.json"
    history = WorkflowHistory.from_json("completed", json.loads(recorded.read_text()))
    started = history.events[0].workflow_execution_started_event_attributes
    payloads = list(started.input.payloads)

    decoded = await codec({"k1": key()}, "k1").decode(payloads)

    assert decoded == payloads
    assert not any(is_encrypted(p) for p in payloads)


async def test_after_rotation_the_new_key_seals_and_the_old_key_still_opens() -> None:
    old, new = key(), key()
    before = codec({"2024": old}, "2024")
    [sealed_before] = await before.encode([payload(b'"before"')])

    after = codec({"2025": new, "2024": old}, "2025")
    [sealed_after] = await after.encode([payload(b'"after"')])

    assert sealed_after.metadata["encryption-key-id"] == b"2025"
    assert [p.data for p in await after.decode([sealed_before, sealed_after])] == [
        b'"before"',
        b'"after"',
    ]
    with pytest.raises(DecryptionError, match="'2025', which is not among the payload keys"):
        await before.decode([sealed_after])


async def test_a_tampered_payload_does_not_open() -> None:
    sealing = codec({"k1": key()}, "k1")
    [sealed] = await sealing.encode([payload()])
    flipped = bytearray(sealed.data)
    flipped[-1] ^= 1
    tampered = Payload(metadata=sealed.metadata, data=bytes(flipped))

    with pytest.raises(DecryptionError, match="does not authenticate"):
        await sealing.decode([tampered])


async def test_a_payload_relabelled_with_another_key_id_does_not_open() -> None:
    """The key id is bound to the ciphertext: moving a payload to another id is detected even
    when that id names the same key material."""
    same = key()
    sealing = codec({"a": same, "b": same}, "a")
    [sealed] = await sealing.encode([payload()])
    relabelled = Payload(metadata={**sealed.metadata, "encryption-key-id": b"b"}, data=sealed.data)

    with pytest.raises(DecryptionError, match="does not authenticate"):
        await sealing.decode([relabelled])


async def test_the_wrong_key_does_not_open() -> None:
    [sealed] = await codec({"k1": key()}, "k1").encode([payload()])

    with pytest.raises(DecryptionError, match="does not authenticate"):
        await codec({"k1": key()}, "k1").decode([sealed])


async def test_a_truncated_payload_is_refused() -> None:
    sealing = codec({"k1": key()}, "k1")
    [sealed] = await sealing.encode([payload()])

    with pytest.raises(DecryptionError, match="truncated"):
        await sealing.decode([Payload(metadata=sealed.metadata, data=sealed.data[:20])])


async def test_the_data_converter_seals_values_and_opens_them_again() -> None:
    converter = data_converter(Settings())
    value = Allocation(region="us-east", sku="SKU-1", quantity=2)

    [sealed] = await converter.encode([value])
    [opened] = await converter.decode([sealed], [Allocation])

    assert is_encrypted(sealed)
    assert b"SKU-1" not in sealed.data
    assert opened == value


# Keys from settings ------------------------------------------------------------------------------


def test_development_without_keys_uses_the_published_development_key() -> None:
    keyring = payload_keyring(Settings())

    assert keyring.development
    assert keyring.current == DEV_PAYLOAD_KEY_ID
    assert keyring.keys == {DEV_PAYLOAD_KEY_ID: base64.b64decode(DEV_PAYLOAD_KEY)}


def test_production_without_a_payload_key_refuses_to_start() -> None:
    with pytest.raises(ConfigurationError, match="GEOSAGA_PAYLOAD_KEYS"):
        payload_keyring(Settings(environment="production"))


def test_production_refuses_the_development_payload_key() -> None:
    settings = Settings(environment="production", payload_keys={"mine": SecretStr(DEV_PAYLOAD_KEY)})

    with pytest.raises(ConfigurationError, match="published development key"):
        payload_keyring(settings)


def test_keys_are_read_from_the_environment_and_the_first_encrypts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new, old = key(), key()
    monkeypatch.setenv("GEOSAGA_ENVIRONMENT", "production")
    monkeypatch.setenv("GEOSAGA_PAYLOAD_KEYS", json.dumps({"2025": b64(new), "2024": b64(old)}))

    keyring = payload_keyring(Settings())

    assert keyring.keys == {"2025": new, "2024": old}
    assert keyring.current == "2025"
    assert not keyring.development


def test_payload_key_id_names_the_key_that_encrypts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_PAYLOAD_KEYS", json.dumps({"a": b64(key()), "b": b64(key())}))
    monkeypatch.setenv("GEOSAGA_PAYLOAD_KEY_ID", "b")

    assert payload_keyring(Settings()).current == "b"


@pytest.mark.parametrize(
    ("keys", "key_id", "message"),
    [
        ({"k": "not base64!"}, None, "not valid base64"),
        ({"k": b64(b"x" * 16)}, None, "16 bytes; AES-256 needs 32"),
        ({"bad id": b64(b"x" * 32)}, None, "payload key id 'bad id' must match"),
        ({"k": b64(b"x" * 32)}, "other", "payload_key_id 'other' is not in payload_keys"),
    ],
)
def test_bad_payload_keys_are_refused(
    monkeypatch: pytest.MonkeyPatch, keys: dict[str, str], key_id: str | None, message: str
) -> None:
    monkeypatch.setenv("GEOSAGA_PAYLOAD_KEYS", json.dumps(keys))
    if key_id is not None:
        monkeypatch.setenv("GEOSAGA_PAYLOAD_KEY_ID", key_id)

    with pytest.raises(ValidationError, match=message):
        Settings()


def test_payload_keys_do_not_show_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = b64(key())
    monkeypatch.setenv("GEOSAGA_PAYLOAD_KEYS", json.dumps({"k": secret}))

    assert secret not in repr(Settings())
