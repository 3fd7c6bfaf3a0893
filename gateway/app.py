"""The gateway's FastAPI application, built from settings; `geosaga gateway` serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from foundation.security import gateway_key
from foundation.settings import Settings
from gateway import errors
from gateway.auth import UNAUTHORISED, require_key
from gateway.faults import Faults
from gateway.routes import authorisations, cancels, console, faults, health, ledger
from gateway.state import GatewayState
from gateway.store import GatewayStore


def create_app(settings: Settings) -> FastAPI:
    """Raises foundation.security.ConfigurationError when the settings may not serve (production
    without a gateway key of its own)."""
    state = GatewayState(key=gateway_key(settings), faults=Faults(settings.gateway_faults))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store = GatewayStore(settings.gateway_database())
        # Before the server listens: a caller that can connect finds the tables there.
        await run_in_threadpool(store.create_tables)
        state.store = store
        try:
            yield
        finally:
            state.store = None
            store.dispose()

    app = FastAPI(
        title="geosaga payment gateway",
        summary="A card-processor-style sandbox with its own ledger (docs/gateway.md).",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.gateway = state
    app.include_router(health.router)
    for module in (authorisations, cancels, ledger, faults, console):
        app.include_router(
            module.router, dependencies=[Depends(require_key)], responses=UNAUTHORISED
        )
    errors.install(app)
    return app
