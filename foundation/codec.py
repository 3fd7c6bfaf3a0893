"""The payload codec: AES-256-GCM over every payload the SDK encodes.

Workflow and activity inputs and results, query and update results, signals, memo, the
Web UI's summaries and details and (with the failure converter in foundation/temporal.py) failure
messages reach Temporal only encrypted, so payment tokens and customer data never sit in plain
text in its database or histories. Search attributes are not payloads the codec sees: Temporal
indexes them as they are (README says which ones the saga keeps).

An encrypted payload is the whole original payload (its metadata and data), serialised and
sealed with a random 96-bit nonce:

    metadata: encoding=binary/encrypted, encryption-cipher=AES-256-GCM, encryption-key-id=<id>
    data:     nonce (12 bytes) || ciphertext || tag (16 bytes)

The key id is bound to the ciphertext as associated data, so a payload cannot be passed off as
sealed with another key. Every key of the keyring decrypts, the current one encrypts: rotating
means adding a new key as current and keeping the old ones for as long as histories that use
them are kept. A payload without the encrypted encoding passes through decode untouched, so
histories recorded before encryption (tests/histories) still replay.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from foundation.security import Keyring

ENCODING = b"binary/encrypted"
CIPHER = b"AES-256-GCM"
ENCODING_KEY = "encoding"
CIPHER_KEY = "encryption-cipher"
KEY_ID_KEY = "encryption-key-id"
NONCE_BYTES = 12
_AAD_PREFIX = b"geosaga/payload/v1:"


class DecryptionError(ValueError):
    """A payload that is encrypted but cannot be opened: unknown key, wrong key or tampered."""


class EncryptionCodec(PayloadCodec):
    def __init__(self, keyring: Keyring) -> None:
        super().__init__()
        if keyring.current not in keyring.keys:
            raise ValueError(f"the current key {keyring.current!r} is not in the keyring")
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self.keyring.current
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(
            nonce, payload.SerializeToString(deterministic=True), _aad(key_id)
        )
        return Payload(
            metadata={ENCODING_KEY: ENCODING, CIPHER_KEY: CIPHER, KEY_ID_KEY: key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        """The original payload; one that is not encrypted comes back as it is."""
        if not is_encrypted(payload):
            return payload
        cipher_name = payload.metadata.get(CIPHER_KEY, CIPHER)
        if cipher_name != CIPHER:
            raise DecryptionError(f"payload sealed with unknown cipher {cipher_name.decode()!r}")
        key_id = payload.metadata.get(KEY_ID_KEY, b"").decode()
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(sorted(self._ciphers))
            raise DecryptionError(
                f"payload encrypted with key {key_id!r}, which is not among the payload keys "
                f"({known}); add it to GEOSAGA_PAYLOAD_KEYS"
            )
        if len(payload.data) < NONCE_BYTES + 16:
            raise DecryptionError(f"payload encrypted with key {key_id!r} is truncated")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, _aad(key_id))
        except InvalidTag:
            raise DecryptionError(
                f"payload encrypted with key {key_id!r} does not authenticate: the key "
                "differs from the one that sealed it, or the payload was altered"
            ) from None
        return Payload.FromString(plain)


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get(ENCODING_KEY) == ENCODING


def _aad(key_id: str) -> bytes:
    return _AAD_PREFIX + key_id.encode()
