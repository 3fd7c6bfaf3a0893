"""The FastAPI application, built from settings; `geosaga api` serves it with uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.telemetry import TelemetryConfig
from opentelemetry.trace import TracerProvider
from starlette.types import ASGIApp

from api import errors
from api.auth import READ_METHODS, UNAUTHORISED, ApiAuth, require_key
from api.metrics import registry_for
from api.request_metrics import RequestMetrics, RequestMetricsMiddleware
from api.routes import carts, catalog, codec, health, metrics, orders, regions, replication
from api.services import Services
from foundation.codec import EncryptionCodec
from foundation.security import payload_keyring
from foundation.settings import Settings
from foundation.temporal import connect
from regions.store import close_stores, open_stores


def create_app(
    settings: Settings | None = None, *, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    """Raises foundation.security.ConfigurationError when the settings may not serve: production
    without API keys or without a payload key. `tracer_provider` defaults to the process's."""
    settings = settings or Settings()
    request_metrics = RequestMetrics()
    auth = ApiAuth.from_settings(settings)
    payload_codec = EncryptionCodec(payload_keyring(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Lazy: the API starts (and answers 503) while Temporal is still down.
        client = await connect(settings, lazy=True, tracer_provider=tracer_provider)
        stores = open_stores(settings)
        app.state.services = Services(settings=settings, client=client, stores=stores)
        app.state.metrics = registry_for(stores)
        request_metrics.register(app.state.metrics)
        try:
            yield
        finally:
            close_stores(stores)

    def body_limit(path: str) -> int:
        return settings.codec_max_body_bytes if codec.serves(path) else settings.max_body_bytes

    app = GeosagaAPI(
        body_limit=body_limit,
        optional_read_key=not settings.auth_reads,
        title="geosaga",
        summary="A multi-region order service: every order is a Temporal saga.",
        version="0.1.0",
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
        telemetry=_telemetry(settings, tracer_provider),
    )
    app.state.auth = auth
    app.state.codec = payload_codec
    # Liveness and metrics stay open; everything else writes only with a key (reads too when
    # GEOSAGA_AUTH_READS is on), so a new route is protected without anyone remembering to.
    for module in (health, metrics):
        app.include_router(module.router)
    for module in (catalog, regions, replication, orders, carts):
        app.include_router(
            module.router, dependencies=[Depends(require_key)], responses=UNAUTHORISED
        )
    app.include_router(codec.router, max_body_size=settings.codec_max_body_bytes)
    app.add_middleware(codec.CodecCORS, origin=auth.ui_origin)
    errors.install(app)
    # Added last, so outside our other middleware and the exception handlers: each request is
    # counted and timed with the status it was answered with, inside FastAPI's request span,
    # whose context the saga it starts carries on (foundation/temporal.py's tracing interceptor).
    app.add_middleware(RequestMetricsMiddleware, metrics=request_metrics)
    return app


_UNTRACED = frozenset({"/healthz", "/metrics"})


def _telemetry(settings: Settings, tracer_provider: TracerProvider | None) -> TelemetryConfig:
    """FastAPI's own request spans, one per request; request metrics are ours (Prometheus)
    and log lines carry the span's ids (foundation/telemetry.py), so FastAPI records neither."""
    return TelemetryConfig(
        tracer_provider=tracer_provider,
        tracing=settings.tracing,
        metrics=False,
        logs=False,
        operation_spans=False,
        exclude=lambda scope: scope.get("path") in _UNTRACED,
    )


class GeosagaAPI(FastAPI):
    """FastAPI with the whole app, its own middleware included, inside errors.DeclaredBodyLimit;
    and, when reads need no key, a GET's key documented as optional
    (`security: [{}, {"ApiKey": []}]`)."""

    def __init__(
        self, *, body_limit: Callable[[str], int], optional_read_key: bool, **options: Any
    ) -> None:
        super().__init__(**options)
        self._body_limit = body_limit
        self._optional_read_key = optional_read_key

    def build_middleware_stack(self) -> ASGIApp:
        return errors.DeclaredBodyLimit(super().build_middleware_stack(), self._body_limit)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None and self._optional_read_key:
            schema = super().openapi()
            for operations in schema.get("paths", {}).values():
                for method, operation in operations.items():
                    if method.upper() in READ_METHODS and operation.get("security"):
                        operation["security"] = [{}, *operation["security"]]
        return super().openapi()
