"""The client's own log as the checker reads it: every exchange, and what each one asked for."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.contract import OrderInput

_ORDERS = re.compile(r"^/orders/?$")
_CHECKOUT = re.compile(r"^/carts/(?P<customer>[^/]+)/checkout$")
_ORDER = re.compile(r"^/orders/(?P<order>[^/]+)(?P<action>/.*)?$")
_STOCK = re.compile(r"^/regions/(?P<region>[^/]+)/stock/(?P<sku>[^/]+)$")
_REDRIVE = re.compile(r"^/regions/(?P<region>[^/]+)/dead-letters/(?P<event>[^/]+)/redrive$")


@dataclass(frozen=True)
class Exchange:
    """One request and its answer; `status` None means the answer was lost."""

    seq: int
    actor: str
    sent_at: float
    answered_at: float | None
    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    status: int | None
    answer: Any
    error: str | None = None

    @classmethod
    def of(cls, line: Mapping[str, Any]) -> Exchange:
        answered = line.get("answered_at")
        status = line.get("status")
        return cls(
            seq=int(line["seq"]),
            actor=str(line.get("actor", "")),
            sent_at=float(line["sent_at"]),
            answered_at=None if answered is None else float(answered),
            method=str(line["method"]).upper(),
            path=str(line["path"]),
            headers={str(k).lower(): str(v) for k, v in (line.get("headers") or {}).items()},
            body=line.get("body"),
            status=None if status is None else int(status),
            answer=line.get("answer"),
            error=line.get("error"),
        )

    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0]

    @property
    def key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def lost(self) -> bool:
        return self.status is None

    def order_id(self) -> str | None:
        """The order a request concerns: its key when it submits one, else its path's."""
        if self.method == "POST" and (_ORDERS.match(self.route) or _CHECKOUT.match(self.route)):
            return self.key
        found = _ORDER.match(self.route)
        return found["order"] if found else None

    def label(self) -> str:
        return f"#{self.seq} {self.method} {self.path}"


def read_exchanges(path: Path) -> list[Exchange]:
    """The last line of every request (a line is written at send time and again once it ends);
    a line torn by a killed harness (the last one) is skipped."""
    lines = path.read_text().splitlines() if path.exists() else []
    latest: dict[int, Exchange] = {}
    for number, text in enumerate(lines):
        if not text.strip():
            continue
        try:
            exchange = Exchange.of(json.loads(text))
        except (ValueError, KeyError, TypeError):
            if number < len(lines) - 1:
                raise ValueError(f"{path}:{number + 1} is not an exchange: {text[:200]}") from None
            continue
        latest[exchange.seq] = exchange
    return [latest[seq] for seq in sorted(latest)]


@dataclass(frozen=True)
class Request:
    """What an order submission asked for, in a form the saga's input can be compared with:
    a checkout's lines come from the cart, so it has none of its own."""

    checkout: bool
    customer_id: str
    home_region: str
    payment_token: str
    lines: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of_input(cls, order: OrderInput) -> Request:
        lines = () if order.cart else tuple((line.sku, line.quantity) for line in order.lines)
        return cls(
            order.cart is not None,
            order.customer_id,
            order.home_region,
            order.payment_token,
            lines,
        )


@dataclass(frozen=True)
class Submission:
    """A `POST /orders` or a checkout; `request` is None for a body that is not an order."""

    exchange: Exchange
    order_id: str
    request: Request | None


def submissions(exchanges: Iterable[Exchange], default_region: str) -> dict[str, list[Submission]]:
    """Every order submission, by its Idempotency-Key (the order's id), in the order sent."""
    found: dict[str, list[Submission]] = {}
    for exchange in exchanges:
        if exchange.method != "POST" or exchange.key is None:
            continue
        if _ORDERS.match(exchange.route):
            request = _order_request(exchange.body)
        elif checkout := _CHECKOUT.match(exchange.route):
            request = _checkout_request(
                exchange, checkout["customer"], exchange.headers.get("x-region", default_region)
            )
        else:
            continue
        found.setdefault(exchange.key, []).append(Submission(exchange, exchange.key, request))
    return found


def _order_request(body: Any) -> Request | None:
    try:
        return Request(
            checkout=False,
            customer_id=str(body["customer_id"]),
            home_region=str(body["home_region"]),
            payment_token=str(body["payment_token"]),
            lines=tuple((str(line["sku"]), int(line["quantity"])) for line in body["lines"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _checkout_request(exchange: Exchange, customer: str, region: str) -> Request | None:
    try:
        return Request(True, customer, region, str(exchange.body["payment_token"]))
    except (KeyError, TypeError):
        return None


@dataclass(frozen=True)
class StockSet:
    region: str
    sku: str
    on_hand: int
    exchange: Exchange


def stock_sets(exchanges: Iterable[Exchange]) -> list[StockSet]:
    """Every `PUT /regions/{r}/stock/{sku}` with a well-formed body."""
    found = []
    for exchange in exchanges:
        match = _STOCK.match(exchange.route)
        if exchange.method != "PUT" or match is None or not isinstance(exchange.body, dict):
            continue
        on_hand = exchange.body.get("on_hand")
        if isinstance(on_hand, int) and not isinstance(on_hand, bool):
            found.append(StockSet(match["region"], match["sku"], on_hand, exchange))
    return found


def redrives(exchanges: Iterable[Exchange]) -> dict[str, dict[str, Exchange]]:
    """Region → dead letter's event id → the operator's last redrive of it that answered 200
    or whose answer was lost (it may have been applied)."""
    found: dict[str, dict[str, Exchange]] = {}
    for exchange in exchanges:
        match = _REDRIVE.match(exchange.route)
        if exchange.method == "POST" and match and exchange.status in (200, None):
            found.setdefault(match["region"], {})[match["event"]] = exchange
    return found


def reruns(exchanges: Iterable[Exchange]) -> dict[str, int]:
    """Order → how many reruns (`POST /orders/{id}/retry`) the operator asked for that may
    have started a run: answered 202, answer lost, or a 5xx (Temporal killed after it took
    the reset and before it answered: the API cannot tell)."""
    counts: dict[str, int] = {}
    for exchange in exchanges:
        match = _ORDER.match(exchange.route)
        if (
            exchange.method == "POST"
            and match
            and match["action"] == "/retry"
            and (exchange.status in (202, None) or exchange.status >= 500)
        ):
            counts[match["order"]] = counts.get(match["order"], 0) + 1
    return counts


def catalog(exchanges: Iterable[Exchange]) -> list[Any] | None:
    """The catalog as the client last read it (`GET /catalog`), if it did."""
    answers = [
        e.answer
        for e in exchanges
        if e.method == "GET" and e.route == "/catalog" and e.status == 200
    ]
    return answers[-1] if answers and isinstance(answers[-1], list) else None
