"""What the routes share: settings, one Temporal client and the region stores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from temporalio.client import Client

from foundation.settings import Settings
from regions.store import Store


@dataclass(frozen=True)
class Services:
    settings: Settings
    client: Client
    stores: dict[str, Store]


# The dependencies here and in api/auth.py and api/errors.py are `async` though they never
# wait: FastAPI runs a plain `def` dependency on a thread, a hop per request (BENCHMARKS.md).
async def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]


async def _region_store(region: str, services: ServicesDep) -> Store:
    store = services.stores.get(region)
    if store is None:
        known = ", ".join(services.settings.regions)
        raise HTTPException(404, f"unknown region {region!r}; known regions: {known}")
    return store


StoreDep = Annotated[Store, Depends(_region_store)]
