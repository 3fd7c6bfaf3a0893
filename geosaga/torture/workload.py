"""The clients: concurrent actors driven by the seed, each with its own random stream, every
exchange in the client log. Orders (local, split, and ones competing for the last units of
scarce SKUs; every sandbox token), cancels at random moments, repeated submissions with one
key, cart edits in several regions and checkouts, stock adjustments, and the operator.

The load stays moderate (a few orders a second): the point is the faults, not throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from geosaga.torture.clientlog import Exchange, LoggedClient
from geosaga.torture.operator import Operator, Sent

# Stock set through the API before the load: scarce SKUs (SKU-4, SKU-8, and SKU-2 outside
# us-east) run out during a run; SKU-1 is everywhere, for local orders.
STOCK: dict[str, dict[str, int]] = {
    "us-east": {"SKU-1": 150, "SKU-2": 20, "SKU-4": 6, "SKU-7": 60, "SKU-8": 3},
    "eu-west": {"SKU-1": 120, "SKU-2": 5, "SKU-5": 150, "SKU-8": 2},
    "ap-south": {"SKU-1": 120, "SKU-6": 40, "SKU-8": 2},
}
SCARCE = ("SKU-4", "SKU-8")
TOKENS = ("tok_ok", "tok_decline", "tok_flaky", "tok_void_fail")
TOKEN_WEIGHTS = (72, 8, 12, 8)
ORDER_CLIENTS = 3
CUSTOMERS = tuple(f"cust-{n}" for n in range(1, 21))
# Customers whose carts are edited in several regions at once.
CART_CUSTOMERS = ("cart-1", "cart-2", "cart-3", "cart-4")
CART_SKUS = ("SKU-1", "SKU-2", "SKU-5", "SKU-6", "SKU-7")
_LOST_ANSWER_RETRIES = 3


class Workload:
    def __init__(
        self,
        seed: int,
        api: LoggedClient,
        operator: Operator,
        regions: tuple[str, ...],
    ) -> None:
        self.seed = seed
        self.api = api
        self.operator = operator
        self.regions = regions
        self.sent: dict[str, Sent] = operator.sent
        self._later: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    def _rng(self, actor: str) -> random.Random:
        return random.Random(f"torture-workload/{self.seed}/{actor}")

    async def seed_stock(self) -> None:
        for region, levels in STOCK.items():
            for sku, on_hand in levels.items():
                done = await self.api.call(
                    "seed", "PUT", f"/regions/{region}/stock/{sku}", body={"on_hand": on_hand}
                )
                if done.status != 200:
                    raise RuntimeError(f"seeding stock failed: {done.status} {done.answer}")

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        actors: list[Callable[[asyncio.Event], Awaitable[None]]] = [
            *(self._orders_actor(n) for n in range(1, ORDER_CLIENTS + 1)),
            self._carts,
            self._stock,
            self._operator,
        ]
        await asyncio.gather(*(actor(stop) for actor in actors))
        # Cancels, reads and terminations still waiting for their moment are left out.
        for task in self._later:
            task.cancel()
        await asyncio.gather(*self._later, return_exceptions=True)

    def _orders_actor(self, n: int) -> Callable[[asyncio.Event], Awaitable[None]]:
        async def orders(stop: asyncio.Event) -> None:
            await self._orders(f"orders-{n}", stop)

        return orders

    # Orders ------------------------------------------------------------------------------------

    async def _orders(self, actor: str, stop: asyncio.Event) -> None:
        rng = self._rng(actor)
        count = 0
        while await _pause(stop, rng.uniform(0.6, 1.6)):
            count += 1
            key = f"s{self.seed}-{actor}-{count}"
            body = self._order_body(rng)
            done = await self._submit(actor, key, body, rng)
            self.sent[key] = Sent(key, body["payment_token"], actor, body)
            if done.status != 202:
                continue
            roll = rng.random()
            if roll < 0.08:
                await self._submit(actor, key, body, rng)  # the same body: the same order
            elif roll < 0.12:
                other = {**body, "customer_id": rng.choice(CUSTOMERS), "payment_token": "tok_ok"}
                if other != body:
                    await self.api.call(
                        actor, "POST", "/orders", body=other, headers={"Idempotency-Key": key}
                    )  # another body under a used key: 409
            if rng.random() < 0.15:
                self._later_do(rng.uniform(0.0, 2.5), partial(self._cancel, actor, key))
            if rng.random() < 0.03:
                pause = rng.uniform(0.5, 2.0)
                self._later_do(
                    rng.uniform(0.3, 3.0), partial(self._terminate_and_rerun, key, pause)
                )
            if rng.random() < 0.2:
                self._later_do(
                    rng.uniform(0.5, 4.0), partial(self.api.call, actor, "GET", f"/orders/{key}")
                )

    def _order_body(self, rng: random.Random) -> dict[str, Any]:
        token = rng.choices(TOKENS, TOKEN_WEIGHTS)[0]
        customer = rng.choice(CUSTOMERS)
        roll = rng.random()
        if roll < 0.45:
            home = rng.choice(self.regions)
            lines = [(rng.choice(sorted(STOCK[home])), rng.randint(1, 3))]
        elif roll < 0.75:
            # The last units of a scarce SKU, from anywhere: some are split, some run out.
            home = rng.choice(self.regions)
            lines = [(rng.choice(SCARCE), rng.randint(1, 2))]
            if rng.random() < 0.3:
                lines.append(("SKU-1", 1))
        else:
            home, lines = "eu-west", [("SKU-2", rng.randint(3, 8))]  # eu-west has 5: a split
        return {
            "customer_id": customer,
            "home_region": home,
            "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
            "payment_token": token,
        }

    async def _submit(
        self, actor: str, key: str, body: dict[str, Any], rng: random.Random
    ) -> Exchange:
        """POST /orders; a lost answer is sent again with the same key, as a client would."""
        headers = {"Idempotency-Key": key}
        done = await self.api.call(actor, "POST", "/orders", body=body, headers=headers)
        for _ in range(_LOST_ANSWER_RETRIES):
            if not done.lost or self._stop.is_set():
                break
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            done = await self.api.call(actor, "POST", "/orders", body=body, headers=headers)
        return done

    async def _cancel(self, actor: str, key: str) -> None:
        await self.api.call(actor, "POST", f"/orders/{key}/cancel")

    async def _terminate_and_rerun(self, key: str, pause: float) -> None:
        if await self.operator.terminate(key):
            await asyncio.sleep(pause)
            await self.operator.rerun(key)

    def _later_do(self, delay: float, work: Callable[[], Awaitable[Any]]) -> None:
        async def later() -> None:
            await asyncio.sleep(delay)
            await work()

        task = asyncio.create_task(later())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    # Carts -------------------------------------------------------------------------------------

    async def _carts(self, stop: asyncio.Event) -> None:
        actor = "carts"
        rng = self._rng(actor)
        checkouts = 0
        while await _pause(stop, rng.uniform(0.4, 1.0)):
            customer = rng.choice(CART_CUSTOMERS)
            headers = {"X-Region": rng.choice(self.regions)}
            sku = rng.choice(CART_SKUS)
            roll = rng.random()
            if roll < 0.5:
                await self.api.call(
                    actor,
                    "PUT",
                    f"/carts/{customer}/items/{sku}",
                    body={"quantity": rng.randint(1, 3)},
                    headers=headers,
                )
            elif roll < 0.7:
                await self.api.call(
                    actor, "DELETE", f"/carts/{customer}/items/{sku}", headers=headers
                )
            elif roll < 0.8:
                await self.api.call(actor, "GET", f"/carts/{customer}", headers=headers)
            else:
                checkouts += 1
                key = f"s{self.seed}-checkout-{checkouts}"
                token = rng.choices(TOKENS, TOKEN_WEIGHTS)[0]
                body = {"payment_token": token}
                self.sent[key] = Sent(key, token, actor, None)
                await self.api.call(
                    actor,
                    "POST",
                    f"/carts/{customer}/checkout",
                    body=body,
                    headers={**headers, "Idempotency-Key": key},
                )

    # Stock -------------------------------------------------------------------------------------

    async def _stock(self, stop: asyncio.Event) -> None:
        """An operator's stock adjustments; a 409 (below what is reserved) is a normal answer."""
        actor = "stock"
        rng = self._rng(actor)
        while await _pause(stop, rng.uniform(2.0, 5.0)):
            region = rng.choice(self.regions)
            sku = rng.choice(sorted(STOCK[region]))
            levels = await self.api.call(actor, "GET", f"/regions/{region}/stock")
            if levels.status != 200 or not isinstance(levels.answer, list):
                continue
            on_hand = next((int(s["on_hand"]) for s in levels.answer if s["sku"] == sku), 0)
            if sku in (*SCARCE, "SKU-2") and rng.random() < 0.5:
                # A small delivery: the race for the last units starts again.
                on_hand += rng.randint(2, 5)
            else:
                on_hand = max(0, on_hand + rng.randint(-3, 4))
            await self.api.call(
                actor, "PUT", f"/regions/{region}/stock/{sku}", body={"on_hand": on_hand}
            )

    # The operator ------------------------------------------------------------------------------

    async def _operator(self, stop: asyncio.Event) -> None:
        rng = self._rng("operator")
        while await _pause(stop, rng.uniform(1.5, 3.0)):
            await self.operator.tend()


async def _pause(stop: asyncio.Event, seconds: float) -> bool:
    """Waits; False once the workload is to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return not stop.is_set()
