"""Concurrent edits of one customer's cart in one region, through the API, on SQLite and
PostgreSQL: no request answers 5xx, and the cart is what the acknowledged edits give applied one
after another in the order the store committed them (its outbox order): none is lost.

The script of edits and checkouts is drawn from SEED. Every PUT of a SKU sets a quantity no
other PUT of that SKU sets, so each committed operation names the request that made it.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass

import httpx
from sqlmodel import col, select
from temporalio.client import Client

from regions.events import CART
from regions.models import OutboxEvent, Stock
from regions.store import Store
from regions.values import SagaStatus
from tests.helpers import new_key, outcome, stock

SEED = 20261205
REGION = "eu-west"
SKUS = ("SKU-1", "SKU-2", "SKU-3")
KEPT = "SKU-4"
EDITS = 36
CHECKOUTS = 4


@dataclass(frozen=True)
class Edit:
    sku: str
    quantity: int | None  # None: DELETE


@dataclass(frozen=True)
class Checkout:
    key: str


Request = Edit | Checkout
Cart = dict[str, int]


def script(seed: int) -> list[Request]:
    rng = random.Random(seed)
    unused = {sku: rng.sample(range(1, 100), EDITS) for sku in SKUS}
    requests: list[Request] = []
    for _ in range(EDITS):
        sku = rng.choice(SKUS)
        requests.append(Edit(sku, None if rng.random() < 0.25 else unused[sku].pop()))
    requests += [Checkout(f"cart-race-{seed}-{n}-{new_key()}") for n in range(CHECKOUTS)]
    rng.shuffle(requests)
    return requests


async def send(api: httpx.AsyncClient, customer: str, request: Request) -> httpx.Response:
    headers = {"X-Region": REGION}
    if isinstance(request, Checkout):
        return await api.post(
            f"/carts/{customer}/checkout",
            json={"payment_token": "tok_ok"},
            headers={**headers, "Idempotency-Key": request.key},
        )
    path = f"/carts/{customer}/items/{request.sku}"
    if request.quantity is None:
        return await api.delete(path, headers=headers)
    return await api.put(path, json={"quantity": request.quantity}, headers=headers)


@dataclass(frozen=True)
class Committed:
    """One cart operation as the region's outbox has it, in commit order."""

    sku: str
    kind: str
    quantity: int
    dot: tuple[str, int]
    context: dict[str, int]

    @property
    def clears(self) -> bool:
        """A checkout's clear is a set to 0 (a PUT sets at least 1)."""
        return self.kind == "set" and self.quantity == 0

    def edit(self) -> Edit:
        return Edit(self.sku, self.quantity if self.kind == "set" else None)


def committed(store: Store, customer: str) -> list[Committed]:
    with store.reading() as session:
        rows = session.exec(
            select(OutboxEvent)
            .where(OutboxEvent.aggregate_type == CART, OutboxEvent.aggregate_id == customer)
            .order_by(col(OutboxEvent.sequence))
        ).all()
    ops = [json.loads(row.payload)["operation"] for row in rows]
    return [
        Committed(
            op["sku"],
            op["kind"],
            op["quantity"],
            (op["dot"]["region"], op["dot"]["counter"]),
            op["context"],
        )
        for op in ops
    ]


def serially(ops: list[Committed]) -> list[Cart]:
    """The cart after each operation when they run one at a time: a PUT replaces, a DELETE
    removes, a checkout's clear removes a SKU only if the version it took is still the one
    there (what was set after the checkout read the cart stays)."""
    current: dict[str, tuple[int, tuple[str, int]]] = {}
    after = []
    for op in ops:
        if op.clears:
            held = current.get(op.sku)
            if held is not None and op.context.get(held[1][0], 0) >= held[1][1]:
                del current[op.sku]
        elif op.kind == "remove":
            current.pop(op.sku, None)
        else:
            current[op.sku] = (op.quantity, op.dot)
        after.append({sku: quantity for sku, (quantity, _) in sorted(current.items())})
    return after


async def test_concurrent_edits_and_checkouts_of_one_cart_lose_nothing(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    """A first wave of edits and checkouts at once, then a second wave of edits while the
    checkouts' sagas take what they ordered out of the cart. A SKU nobody else edits keeps the
    cart from being empty until a checkout's saga takes it."""
    stock(stores, {REGION: dict.fromkeys([*SKUS, KEPT], 1000)})
    customer = f"c-{new_key()}"
    kept = Edit(KEPT, 1)
    ahead = await send(api, customer, kept)
    requests = script(SEED)
    first = requests[: len(requests) // 2]
    second = [request for request in requests[len(first) :] if isinstance(request, Edit)]
    first += [request for request in requests[len(first) :] if isinstance(request, Checkout)]

    answers = await asyncio.gather(*(send(api, customer, request) for request in first))
    started = [
        request.key
        for request, response in zip(first, answers, strict=True)
        if isinstance(request, Checkout) and response.status_code == 202
    ]
    later = await asyncio.gather(*(send(api, customer, request) for request in second))
    sagas = [await outcome(client, key) for key in started]

    sent = list(zip([kept, *first, *second], [ahead, *answers, *later], strict=True))
    assert [
        (r.request.method, r.request.url, r.text) for _, r in sent if r.status_code >= 500
    ] == []
    edits = [
        (request, response.json())
        for request, response in sent
        if isinstance(request, Edit) and response.status_code == 200
    ]
    assert len(edits) == 1 + len(second) + sum(isinstance(r, Edit) for r in first)
    refused = [
        response.json()["detail"]
        for request, response in sent
        if isinstance(request, Checkout) and response.status_code != 202
    ]
    # Only a checkout that came after another's saga had emptied the cart finds it empty.
    assert started
    assert all("empty" in detail for detail in refused), refused
    assert all(saga.status == SagaStatus.COMPLETED for saga in sagas), sagas

    ops = committed(stores[REGION], customer)
    carts = serially(ops)
    # Every acknowledged edit was committed, once; nothing else was but the checkouts' clears.
    assert Counter(op.edit() for op in ops if not op.clears) == Counter(e for e, _ in edits)
    assert any(op.clears for op in ops)
    # Each edit answered the cart as it stood right after it.
    answered = Counter((edit, json.dumps(body["items"], sort_keys=True)) for edit, body in edits)
    shown = Counter(
        (op.edit(), json.dumps(_items(cart), sort_keys=True))
        for op, cart in zip(ops, carts, strict=True)
        if not op.clears
    )
    assert answered == shown
    # Each checkout ordered the cart as it stood between two operations.
    states = [{}, *carts]
    for saga in sagas:
        assert {line.sku: line.quantity for line in saga.lines} in states, saga.lines
    final = await api.get(f"/carts/{customer}", headers={"X-Region": REGION})
    assert final.status_code == 200
    assert {i["sku"]: i["quantity"] for i in final.json()["items"]} == carts[-1]


async def test_one_checkout_sent_many_times_at_once_orders_once(
    api: httpx.AsyncClient, client: Client, stores: dict[str, Store]
) -> None:
    stock(stores, {REGION: {"SKU-1": 10}})
    customer = f"c-{new_key()}"
    assert (await send(api, customer, Edit("SKU-1", 2))).status_code == 200
    key = f"cart-twice-{new_key()}"

    answers = await asyncio.gather(*(send(api, customer, Checkout(key)) for _ in range(6)))

    assert [a.status_code for a in answers] == [202] * 6, [a.text for a in answers]
    assert {a.json()["order_id"] for a in answers} == {key}
    assert sum(a.headers.get("Idempotent-Replayed") != "true" for a in answers) == 1
    saga = await outcome(client, key)
    assert saga.status == SagaStatus.COMPLETED
    assert [(line.sku, line.quantity) for line in saga.lines] == [("SKU-1", 2)]
    cart = await api.get(f"/carts/{customer}", headers={"X-Region": REGION})
    assert cart.json()["items"] == []
    with stores[REGION].reading() as session:
        held = session.exec(select(Stock).where(Stock.sku == "SKU-1")).one()
    assert (held.on_hand, held.reserved) == (8, 0)


def _items(cart: Cart) -> list[dict[str, object]]:
    return [{"sku": sku, "quantity": quantity} for sku, quantity in cart.items()]
