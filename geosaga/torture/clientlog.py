"""The client's own log: every request the harness sends and the answer it got, or that it
got none.

`client.jsonl` holds one JSON object per line: `seq`, `actor`, `sent_at`, `answered_at`,
`method`, `path`, `headers` (only `Idempotency-Key` and `X-Region`, never `Authorization`),
`body`, `status`, `answer`, `error`. Times are seconds since the run started. Each exchange is
written twice under one `seq`: when it is sent (status, answer and error null) and when it
ends; the later line is the one that counts. An ended exchange with `status` null lost its
answer (timeout, connection reset, API killed), and `error` says how.

Paths starting with `/` are requests to the API. The operator also acts elsewhere, and those
are logged too: `gateway:/...` is a request to the payment gateway's console, and
`temporal:terminate/<workflow id>` (method `TERMINATE`) a saga terminated through Temporal
(an operator's mistake the workload makes on purpose).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import httpx

LOGGED_HEADERS = ("Idempotency-Key", "X-Region")


@dataclass
class Exchange:
    seq: int
    actor: str
    sent_at: float
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    answered_at: float | None = None
    status: int | None = None
    answer: Any = None
    error: str | None = None

    @property
    def lost(self) -> bool:
        return self.status is None


class ClientLog:
    """Appends exchanges to `client.jsonl` as they happen; keeps the ended ones in memory."""

    def __init__(self, path: Path, started: float) -> None:
        self.path = path
        self.started = started
        self._file: IO[str] = path.open("a", buffering=1)
        self._seq = itertools.count(1)
        self.ended: list[Exchange] = []
        self.in_flight = 0
        # Set while a request is in flight (the nemesis kills the API mid-request).
        self.busy = asyncio.Event()

    def now(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def send(
        self,
        actor: str,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Exchange:
        kept = {name: value for name, value in (headers or {}).items() if name in LOGGED_HEADERS}
        exchange = Exchange(next(self._seq), actor, self.now(), method, path, kept, body)
        self._write(exchange)
        self.in_flight += 1
        self.busy.set()
        return exchange

    def end(
        self, exchange: Exchange, status: int | None, answer: Any = None, error: str | None = None
    ) -> Exchange:
        exchange.status, exchange.answer, exchange.error = status, answer, error
        exchange.answered_at = self.now() if status is not None else None
        self._write(exchange)
        self.in_flight -= 1
        if not self.in_flight:
            self.busy.clear()
        self.ended.append(exchange)
        return exchange

    def close(self) -> None:
        self._file.close()

    def _write(self, exchange: Exchange) -> None:
        self._file.write(json.dumps(asdict(exchange), default=str) + "\n")


class LoggedClient:
    """An HTTP client whose every exchange goes into the client log."""

    def __init__(self, http: httpx.AsyncClient, log: ClientLog, prefix: str = "") -> None:
        self.http = http
        self.log = log
        # Logged before each path: "" for the API, "gateway:" for the gateway's console.
        self.prefix = prefix

    async def call(
        self,
        actor: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Exchange:
        exchange = self.log.send(actor, method, self.prefix + path, headers, body)
        try:
            response = await self.http.request(method, path, json=body, headers=dict(headers or {}))
        except httpx.HTTPError as error:
            return self.log.end(exchange, None, error=f"{type(error).__name__}: {error}")
        return self.log.end(exchange, response.status_code, _answer(response))


def _answer(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"text": response.text[:500]}
