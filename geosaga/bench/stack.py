"""A throwaway `geosaga dev` stack for `geosaga bench --spawn`: free ports, a fresh data
directory, and any GEOSAGA_* overrides (how the stock and tuned profiles are compared)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from foundation.settings import Settings
from geosaga.devserver import free_port

# What the dev stack looked like before tuning (see BENCHMARKS.md): the dev server's own
# SQLite defaults, dynamic config and Go GC target, and the SDK's default worker options.
STOCK: dict[str, str] = {
    "GEOSAGA_DEV_SQLITE_PRAGMAS": "false",
    "GEOSAGA_DEV_DYNAMIC_CONFIG": "{}",
    "GEOSAGA_DEV_GO_GC": "100",
    "GEOSAGA_WORKER_TUNING": "false",
}


@asynccontextmanager
async def spawned(overrides: Mapping[str, str] = {}) -> AsyncIterator[Settings]:
    """Runs `geosaga dev` on free ports until the block ends; yields its settings."""
    with tempfile.TemporaryDirectory(prefix="geosaga-bench-") as folder:
        api_port, temporal_port, ui_port = free_port(), free_port(), free_port()
        gateway_port = free_port()
        env = {
            **os.environ,
            "GEOSAGA_DATA_DIR": folder,
            "GEOSAGA_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "GEOSAGA_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui_port}",
            "GEOSAGA_API_PORT": str(api_port),
            "GEOSAGA_API_URL": f"http://127.0.0.1:{api_port}",
            "GEOSAGA_GATEWAY_PORT": str(gateway_port),
            "GEOSAGA_GATEWAY_URL": f"http://127.0.0.1:{gateway_port}",
            **overrides,
        }
        with (Path(folder) / "dev.log").open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "geosaga", "dev", env=env, stdout=log, stderr=log
            )
        try:
            await _healthy(env["GEOSAGA_API_URL"], process, Path(folder) / "dev.log")
            yield Settings(
                temporal_address=env["GEOSAGA_TEMPORAL_ADDRESS"],
                temporal_ui_url=env["GEOSAGA_TEMPORAL_UI_URL"],
                api_url=env["GEOSAGA_API_URL"],
                api_port=api_port,
                gateway_url=env["GEOSAGA_GATEWAY_URL"],
                data_dir=Path(folder),
            )
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
                await process.wait()


async def _healthy(api: str, process: asyncio.subprocess.Process, log: Path) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            if process.returncode is not None:
                raise RuntimeError(f"geosaga dev exited:\n{await _tail(log)}")
            try:
                if (await http.get(f"{api}/healthz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"geosaga dev did not come up:\n{await _tail(log)}")


async def _tail(log: Path) -> str:
    text = await asyncio.to_thread(log.read_text)
    return text[-2000:]
