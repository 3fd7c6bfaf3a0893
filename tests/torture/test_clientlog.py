"""The client log: every exchange written when sent and again when it ends, lost answers
included, and never a key."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from geosaga.devserver import free_port
from geosaga.torture.clientlog import ClientLog, LoggedClient


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_exchange_is_written_when_sent_and_when_answered(tmp_path: Path) -> None:
    log = ClientLog(tmp_path / "client.jsonl", time.monotonic())
    sent = log.send(
        "orders",
        "POST",
        "/orders",
        {"Idempotency-Key": "k1", "Authorization": "Bearer secret", "X-Region": "eu-west"},
        {"customer_id": "c"},
    )
    assert log.busy.is_set()
    log.end(sent, 202, {"order_id": "k1"})
    log.close()

    first, last = lines(tmp_path / "client.jsonl")
    assert first["seq"] == last["seq"] == 1
    assert first["status"] is None
    assert first["answered_at"] is None
    assert first["error"] is None
    assert last["status"] == 202
    assert last["answer"] == {"order_id": "k1"}
    assert last["headers"] == {"Idempotency-Key": "k1", "X-Region": "eu-west"}
    assert "secret" not in (tmp_path / "client.jsonl").read_text()
    assert not log.busy.is_set()


async def test_a_lost_answer_is_logged_with_the_error_and_no_status(tmp_path: Path) -> None:
    log = ClientLog(tmp_path / "client.jsonl", time.monotonic())
    nobody = f"http://127.0.0.1:{free_port()}"
    async with httpx.AsyncClient(base_url=nobody, timeout=5) as http:
        done = await LoggedClient(http, log).call("carts", "GET", "/carts/c1")
    log.close()

    assert done.lost
    assert done.error is not None
    assert done.error.startswith("ConnectError")
    last = lines(tmp_path / "client.jsonl")[-1]
    assert last["status"] is None
    assert last["answered_at"] is None
    assert last["error"] == done.error
    assert log.ended == [done]
