"""What the routes share: settings, one Temporal client and the region stores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client

from foundation.settings import Settings
from regions.store import Store


@dataclass(frozen=True)
class Services:
    settings: Settings
    client: Client
    stores: dict[str, Store]


# Every dependency of the API is `async` though none waits: FastAPI runs a plain `def` one on a
# thread, a hop per request.
async def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]
