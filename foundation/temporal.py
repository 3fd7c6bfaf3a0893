"""One Temporal client factory (data converter included) for the API, workers, tools and tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

from opentelemetry.trace import TracerProvider
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, Interceptor
from temporalio.common import SearchAttributeKey
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    DefaultFailureConverterWithEncodedAttributes,
)
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from foundation.codec import EncryptionCodec
from foundation.security import ConfigurationError, payload_keyring
from foundation.settings import Settings


class ConnectOptions(TypedDict):
    """What `Client.connect` takes besides the address and `lazy`."""

    namespace: str
    data_converter: DataConverter
    tls: bool | TLSConfig
    api_key: str | None
    interceptors: list[Interceptor]


async def connect(
    settings: Settings,
    *,
    lazy: bool = False,
    runtime: Runtime | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Client:
    """`lazy` defers connecting to the first call: the API starts while Temporal is down.

    `runtime` (default: the process's, which `geosaga worker` sets up to serve metrics) and
    `tracer_provider` (default: the process's) are for tests that collect their own."""
    return await Client.connect(
        settings.temporal_address,
        lazy=lazy,
        runtime=runtime,
        **connect_options(settings, tracer_provider=tracer_provider),
    )


def connect_options(
    settings: Settings, *, tracer_provider: TracerProvider | None = None
) -> ConnectOptions:
    """The namespace, the data converter with the payload codec, TLS, the API key, and the
    tracing interceptor: spans from the caller's context (an HTTP request) through the
    workflow to every activity, in workers made from this client too."""
    api_key = settings.temporal_api_key
    tracer = tracer_provider.get_tracer(__name__) if tracer_provider is not None else None
    return ConnectOptions(
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        tls=tls_config(settings),
        api_key=api_key.get_secret_value() if api_key is not None else None,
        interceptors=[TracingInterceptor(tracer)] if settings.tracing else [],
    )


def data_converter(settings: Settings, *, encode_failures: bool = True) -> DataConverter:
    """Pydantic payloads, encrypted by the codec; failure messages and stack traces travel as
    encoded attributes, so they are encrypted too (a gateway's message may name a token).

    Failures are read either way; `encode_failures=False` is for the replayer, which writes
    nothing to Temporal and reports the failures it meets by their messages.
    """
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(payload_keyring(settings)),
        failure_converter_class=(
            DefaultFailureConverterWithEncodedAttributes
            if encode_failures
            else DefaultFailureConverter
        ),
    )


def tls_config(settings: Settings) -> bool | TLSConfig:
    """False for plain connections; True for TLS with the system's roots; a TLSConfig when a
    CA, an mTLS client certificate or a server name is configured. An API key alone turns TLS
    on (Temporal Cloud)."""
    custom = (
        settings.temporal_tls_ca_cert,
        settings.temporal_tls_client_cert,
        settings.temporal_tls_server_name,
    )
    if all(option is None for option in custom):
        return settings.temporal_tls or settings.temporal_api_key is not None
    return TLSConfig(
        server_root_ca_cert=_read_pem(settings.temporal_tls_ca_cert, "CA_CERT"),
        domain=settings.temporal_tls_server_name,
        client_cert=_read_pem(settings.temporal_tls_client_cert, "CLIENT_CERT"),
        client_private_key=_read_pem(settings.temporal_tls_client_key, "CLIENT_KEY"),
    )


def _read_pem(path: Path | None, setting: str) -> bytes | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(
            f"GEOSAGA_TEMPORAL_TLS_{setting}={path} cannot be read: {error.strerror}"
        ) from None
    if b"-----BEGIN " not in data:
        raise ConfigurationError(f"GEOSAGA_TEMPORAL_TLS_{setting}={path} is not a PEM file")
    return data


def search_attribute_flags(keys: Sequence[SearchAttributeKey[Any]]) -> list[str]:
    """`--search-attribute Name=Type` arguments for `temporal server start-dev`."""
    flags: list[str] = []
    for key in keys:
        kind = "".join(part.title() for part in key.indexed_value_type.name.split("_"))
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags


async def ensure_search_attributes(
    client: Client, keys: Sequence[SearchAttributeKey[Any]]
) -> list[str]:
    """Registers the keys the namespace lacks; returns those added."""
    namespace = client.namespace
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    # The SDK's enum and the API's share their numbers.
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type.value)
        for key in keys
        if key.name not in listed.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


_UNREACHABLE = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)


def temporal_unreachable(error: BaseException) -> bool:
    """Temporal did not answer (down, cut off, restarting), as opposed to answering no."""
    if isinstance(error, RPCError):
        # A call in flight when the server went away fails with the transport's own error.
        return error.status in _UNREACHABLE or "transport error" in error.message
    # A lazy client that cannot connect raises a RuntimeError from the SDK's core.
    return isinstance(error, RuntimeError) and str(error).startswith("Failed client connect")
