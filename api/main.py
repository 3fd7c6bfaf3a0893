"""The FastAPI application, built from settings; `geosaga api` serves it with uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.metrics import registry_for
from api.routes import carts, catalog, health, metrics, orders, regions, replication
from api.services import Services
from geosaga.settings import Settings
from geosaga.temporal import connect
from regions.store import close_stores, open_stores


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Lazy: the API starts (and answers 503) while Temporal is still down.
        client = await connect(settings, lazy=True)
        stores = open_stores(settings)
        app.state.services = Services(settings=settings, client=client, stores=stores)
        app.state.metrics = registry_for(stores)
        try:
            yield
        finally:
            close_stores(stores)

    app = FastAPI(
        title="geosaga",
        summary="A multi-region order service: every order is a Temporal saga.",
        version="0.1.0",
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
    )
    for module in (health, catalog, regions, replication, orders, carts, metrics):
        app.include_router(module.router)
    errors.install(app)
    return app
