"""`geosaga gateway` as a real process for tests, and what tests read from it (its books)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from geosaga.devserver import free_port

# What the test gateways accept (GEOSAGA_GATEWAY_API_KEY).
TEST_GATEWAY_KEY = "geosaga-test-gateway-key-0123"


@dataclass(frozen=True)
class GatewayServer:
    url: str
    key: str
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30)

    def authorisations(self, reference: str) -> list[dict[str, Any]]:
        with self.http() as http:
            answer = http.get("/authorisations", params={"reference": reference})
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()["authorisations"]
        return found

    def ledger(self, reference: str | None = None) -> list[dict[str, Any]]:
        """Every ledger entry (under `reference`, when given), oldest first."""
        entries: list[dict[str, Any]] = []
        after = 0
        with self.http() as http:
            while True:
                page = http.get("/ledger", params={"after": after}).raise_for_status().json()
                entries += page["entries"]
                if not page["entries"]:
                    break
                after = page["next"]
        return [e for e in entries if reference is None or e["reference"] == reference]

    def release(self, authorisation_id: str) -> dict[str, Any]:
        with self.http() as http:
            answer = http.post(f"/console/authorisations/{authorisation_id}/release")
        answer.raise_for_status()
        released: dict[str, Any] = answer.json()
        return released

    def set_faults(self, **faults: float) -> None:
        with self.http() as http:
            http.put("/faults", json=faults).raise_for_status()


@contextmanager
def gateway_process(
    folder: Path,
    database_url: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
) -> Iterator[GatewayServer]:
    """`geosaga gateway` on `port` (default: a free one), its store a SQLite file in `folder`
    unless given; stopped when the block ends."""
    port = port or free_port()
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith("GEOSAGA_")},
        "GEOSAGA_DATA_DIR": str(folder),
        "GEOSAGA_GATEWAY_HOST": "127.0.0.1",
        "GEOSAGA_GATEWAY_PORT": str(port),
        "GEOSAGA_GATEWAY_API_KEY": TEST_GATEWAY_KEY,
        **({"GEOSAGA_GATEWAY_DATABASE_URL": database_url} if database_url else {}),
        **(env or {}),
    }
    log = folder / f"gateway-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "geosaga", "gateway"],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = GatewayServer(f"http://127.0.0.1:{port}", TEST_GATEWAY_KEY, log)
    try:
        _wait_until_healthy(server, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_healthy(server: GatewayServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, server.log.read_text()[-3000:]
        try:
            if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"the gateway did not come up: {server.log}"
        time.sleep(0.1)
