"""free_port hands out ports a test or bench stack can bind, outside the kernel's ephemeral
range (where other processes' outgoing connections could take them first)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from geosaga import devserver
from geosaga.devserver import free_port


def test_ports_are_bindable_distinct_and_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]

    assert len(set(ports)) == len(ports)
    assert all(10_000 <= port < low for port in ports)
    for port in ports[:5]:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server, socket.socket() as spare:
        server.bind(("127.0.0.1", 0))
        server.listen()
        spare.bind(("127.0.0.1", 0))
        busy, idle = server.getsockname()[1], spare.getsockname()[1]
        spare.close()
        picks = iter([busy, idle])
        monkeypatch.setattr("geosaga.devserver.random.randrange", lambda *_: next(picks))

        assert devserver.free_port() == idle
