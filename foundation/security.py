"""Keys from settings: API keys for the HTTP API, payload keys for the encryption codec.

`development` (the default) falls back to the published development keys below, so that
`geosaga dev`, the README and the tests work with nothing configured. `production` refuses to
start without keys of its own and refuses the development keys.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from foundation.settings import Settings

# Published in the README: anyone may read these. Development only.
DEV_API_KEY = "geosaga-local-dev-key"
DEV_PAYLOAD_KEY_ID = "dev"
# base64 of "geosaga development payload key!"
DEV_PAYLOAD_KEY = "Z2Vvc2FnYSBkZXZlbG9wbWVudCBwYXlsb2FkIGtleSE="
# The payment gateway's key in development (docs/gateway.md); published like the others.
DEV_GATEWAY_KEY = "geosaga-local-gateway-key"


class ConfigurationError(Exception):
    """Settings that must not run: the message says which variable to set and how."""


def api_keys(settings: Settings) -> tuple[str, ...]:
    """The keys the API accepts. Development without keys accepts the development key."""
    keys = tuple(key.get_secret_value() for key in settings.api_keys)
    if settings.environment != "production":
        return keys or (DEV_API_KEY,)
    if not keys:
        raise ConfigurationError(
            "GEOSAGA_ENVIRONMENT=production needs API keys: set GEOSAGA_API_KEYS to one or "
            "more comma-separated keys (for example `openssl rand -hex 32`)"
        )
    if DEV_API_KEY in keys:
        raise ConfigurationError(
            "GEOSAGA_API_KEYS holds the published development key; production needs its own"
        )
    return keys


def gateway_key(settings: Settings) -> str:
    """The key the payment gateway accepts and workers send. Development without one uses
    the development key; production refuses to run without a key of its own."""
    if settings.gateway_api_key is None:
        if settings.environment == "production":
            raise ConfigurationError(
                "GEOSAGA_ENVIRONMENT=production needs a payment gateway key: set "
                "GEOSAGA_GATEWAY_API_KEY (for example `openssl rand -hex 32`)"
            )
        return DEV_GATEWAY_KEY
    key = settings.gateway_api_key.get_secret_value()
    if settings.environment == "production" and key == DEV_GATEWAY_KEY:
        raise ConfigurationError(
            "GEOSAGA_GATEWAY_API_KEY is the published development key; production needs its own"
        )
    return key


def key_matches(candidate: str, keys: Iterable[str]) -> bool:
    """Whether `candidate` is one of `keys`, compared in constant time against every key."""
    given = candidate.encode()
    # A list, not a generator: every key is compared, whichever one matches.
    results = [hmac.compare_digest(given, key.encode()) for key in keys]
    return any(results)


@dataclass(frozen=True)
class Keyring:
    """Payload keys by id; `current` is the one that encrypts."""

    keys: dict[str, bytes]
    current: str
    development: bool = False


def payload_keyring(settings: Settings) -> Keyring:
    """The codec's keys. Development without keys uses the development key."""
    configured = {
        key_id: base64.b64decode(key.get_secret_value())
        for key_id, key in settings.payload_keys.items()
    }
    if not configured:
        if settings.environment == "production":
            raise ConfigurationError(
                "GEOSAGA_ENVIRONMENT=production needs a payload encryption key: set "
                'GEOSAGA_PAYLOAD_KEYS=\'{"<key id>": "<base64 of 32 bytes>"}\' '
                "(for example `openssl rand -base64 32`)"
            )
        dev = {DEV_PAYLOAD_KEY_ID: base64.b64decode(DEV_PAYLOAD_KEY)}
        return Keyring(dev, DEV_PAYLOAD_KEY_ID, development=True)
    if settings.environment == "production" and base64.b64decode(DEV_PAYLOAD_KEY) in (
        configured.values()
    ):
        raise ConfigurationError(
            "GEOSAGA_PAYLOAD_KEYS holds the published development key; production needs its own"
        )
    current = settings.payload_key_id or next(iter(configured))
    return Keyring(configured, current)


def ui_origin(settings: Settings) -> str:
    """`scheme://host[:port]` of the Temporal Web UI: the origin its pages call the codec from."""
    parts = urlsplit(settings.temporal_ui_url)
    return f"{parts.scheme}://{parts.netloc}"


def codec_trusts_ui_origin(settings: Settings) -> bool:
    """Whether a codec request sent from the Web UI's origin needs no key (see README)."""
    if settings.codec_trust_ui_origin is None:
        return settings.environment == "development"
    return settings.codec_trust_ui_origin
