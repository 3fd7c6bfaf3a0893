"""Chaos fixtures: a stack of its own per test, load from concurrent HTTP submissions, and the
invariant checker at the end."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from api.main import create_app
from foundation.temporal import connect
from geosaga.check import Report, check, summary
from regions.store import Store, close_stores, open_stores
from tests.chaos.stack import ChaosStack
from tests.helpers import auth_headers, new_key, order, outcome, stock

STOCK = {
    "us-east": {"SKU-1": 400, "SKU-2": 200, "SKU-7": 100},
    "eu-west": {"SKU-1": 300, "SKU-2": 10, "SKU-5": 300},
    "ap-south": {"SKU-1": 300, "SKU-6": 100},
}


@dataclass
class Load:
    submitted: int = 0
    accepted: list[str] = field(default_factory=list)
    refused: dict[int, int] = field(default_factory=dict)


@dataclass
class Chaos:
    stack: ChaosStack
    stores: dict[str, Store]
    api: httpx.AsyncClient
    client: Client

    async def load(self, orders: int, concurrency: int, pace: float = 0.0, seed: int = 7) -> Load:
        """Submits orders concurrently: mostly local, some split, some declined or flaky.

        Each of the `concurrency` slots waits `pace` seconds after a submission, so the load
        lasts long enough for the chaos to land in the middle of it."""
        rng = random.Random(seed)
        done = Load()
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            body = _random_order(rng)
            async with gate:
                done.submitted += 1
                try:
                    response = await self.api.post(
                        "/orders", json=body, headers={"Idempotency-Key": new_key()}
                    )
                except httpx.HTTPError:
                    done.refused[0] = done.refused.get(0, 0) + 1
                    return
                await asyncio.sleep(pace)
            if response.status_code == 202:
                done.accepted.append(response.json()["order_id"])
            else:
                done.refused[response.status_code] = done.refused.get(response.status_code, 0) + 1

        await asyncio.gather(*(one() for _ in range(orders)))
        return done

    async def settle(self, load: Load, timeout: float = 120) -> dict[str, int]:
        """Waits for every accepted saga to end; returns how many ended each way."""
        waits = asyncio.gather(*(outcome(self.client, o, timeout) for o in load.accepted))
        ended = await asyncio.wait_for(waits, timeout)
        counts: dict[str, int] = {}
        for saga in ended:
            name = f"{saga.status} ({saga.reason})" if saga.reason else str(saga.status)
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))

    async def verify(self, load: Load) -> Report:
        return await self.verify_orders(load.accepted)

    async def verify_orders(self, orders: list[str]) -> Report:
        report = await check(self.client, self.stores, orders=orders, settled=True)
        assert report.ok, summary(report)
        return report


def _random_order(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    token = "tok_decline" if roll < 0.1 else "tok_flaky" if roll < 0.2 else "tok_ok"
    if rng.random() < 0.2:
        return order("eu-west", [("SKU-2", rng.randint(5, 12))], token)  # a split
    home = rng.choice(["us-east", "eu-west", "ap-south"])
    return order(home, [("SKU-1", rng.randint(1, 3))], token, customer=f"c{rng.randint(1, 20)}")


@pytest_asyncio.fixture
async def chaos(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Chaos]:
    faults = getattr(request, "param", {})
    stack = ChaosStack(tmp_path, faults)
    stores = open_stores(stack.settings)
    stock(stores, STOCK)
    await stack.start()
    app = create_app(stack.settings)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://chaos",
                timeout=30,
                headers=auth_headers(stack.settings),
            ) as api,
        ):
            yield Chaos(stack, stores, api, await connect(stack.settings))
    finally:
        await stack.stop()
        close_stores(stores)


def record(artifacts: Path, scenario: str, **row: Any) -> None:
    """Leaves the scenario's numbers for RELIABILITY.md."""
    folder = artifacts / "reliability"
    folder.mkdir(exist_ok=True)
    (folder / f"{scenario}.json").write_text(json.dumps(row, indent=2, default=_plain) + "\n")


def _plain(value: object) -> object:
    return asdict(value) if hasattr(value, "__dataclass_fields__") else str(value)  # type: ignore[call-overload]
