"""`geosaga setup` registers the saga's search attributes on a server that lacks them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from geosaga.devserver import DevServer, free_port


@pytest.fixture
def bare_server() -> Iterator[DevServer]:
    """A Temporal server that knows none of the saga's search attributes."""
    server = DevServer(port=free_port(), headless=True, search_attributes=False)
    process = subprocess.Popen(
        server.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_setup_registers_search_attributes_once(bare_server: DevServer) -> None:
    env = {**os.environ, "GEOSAGA_TEMPORAL_ADDRESS": bare_server.address}
    command = [sys.executable, "-m", "geosaga", "setup"]
    for _ in range(300):
        first = subprocess.run(command, env=env, capture_output=True, text=True)
        if first.returncode == 0:
            break
    second = subprocess.run(command, env=env, capture_output=True, text=True)

    assert first.returncode == 0, first.stderr
    assert "added: CustomerId, HomeRegion, OrderId, SagaReason, SagaRegions, SagaStatus" in (
        " ".join(first.stdout.split())
    )
    assert second.returncode == 0
    assert "already present" in second.stdout
