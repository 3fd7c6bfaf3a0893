"""`geosaga dev` (what `make run` runs) brings the stack up, the README's walkthrough works
against it as written, Ctrl-C stops every child, and history survives a restart."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from foundation.security import DEV_API_KEY, DEV_GATEWAY_KEY
from geosaga.devserver import free_port

README = Path(__file__).resolve().parents[2] / "README.md"
CONTRACT_API = "http://127.0.0.1:8000"

# What each walkthrough order must end as: (status, reason).
EXPECTED = {
    "demo-completed": ("completed", None),
    "demo-split": ("completed", None),
    "demo-declined": ("compensated", "payment_declined"),
    "demo-out-of-stock": ("compensated", "out_of_stock"),
    "demo-cancel": ("compensated", "cancelled"),
    # Resolved by hand in the walkthrough once it needs attention.
    "demo-stuck": ("compensated", "out_of_stock"),
    "demo-cart": ("completed", None),
}


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    api: str
    log: Path

    def children(self) -> list[int]:
        return [pid for pid in _all_pids() if _parent(pid) == self.process.pid]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=60)


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def dev_env(tmp_path: Path) -> dict[str, str]:
    api_port, temporal_port, ui_port = free_port(), free_port(), free_port()
    gateway_port = free_port()
    return {
        **os.environ,
        "GEOSAGA_DATA_DIR": str(tmp_path / "data"),
        "GEOSAGA_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "GEOSAGA_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui_port}",
        "GEOSAGA_API_PORT": str(api_port),
        "GEOSAGA_API_URL": f"http://127.0.0.1:{api_port}",
        "GEOSAGA_GATEWAY_PORT": str(gateway_port),
        "GEOSAGA_GATEWAY_URL": f"http://127.0.0.1:{gateway_port}",
    }


def start_stack(env: dict[str, str], log: Path) -> Stack:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "geosaga", "dev"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    stack = Stack(process, env["GEOSAGA_API_URL"], log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{stack.api}/healthz", timeout=2).status_code == 200:
                return stack
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stack.stop()
    raise AssertionError(f"geosaga dev did not come up:\n{log.read_text()[-3000:]}")


@pytest.fixture
def stack(dev_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(dev_env, tmp_path / "dev.log")
    yield running
    if running.process.poll() is None:
        running.stop()


def walkthrough_commands() -> list[str]:
    """The README's bash blocks that talk to the API, in order."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    return [block for block in blocks if CONTRACT_API in block]


def answers(text: str) -> list[tuple[dict[str, Any], int]]:
    """Each write's body, then its status on a line of its own (`-w '\\n%{http_code}\\n'`)."""
    lines = text.splitlines()
    return [
        (json.loads(body), int(code)) for body, code in zip(lines[::2], lines[1::2], strict=True)
    ]


def wait_for_status(api: str, order_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        view: dict[str, Any] = httpx.get(f"{api}/orders/{order_id}", timeout=10).json()
        if view.get("status") in statuses:
            return view
        time.sleep(0.2)
    raise AssertionError(f"{order_id} never reached {statuses}: {view}")


def wait_for_empty_cart(api: str, customer: str, region: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cart = httpx.get(f"{api}/carts/{customer}", headers={"X-Region": region}).json()
        if cart["items"] == []:
            return
        time.sleep(0.2)
    raise AssertionError(f"the cart of {customer} in {region} is not empty: {cart}")


def wait_for_end(api: str, order_id: str) -> dict[str, Any]:
    return wait_for_status(api, order_id, "completed", "compensated")


def assert_secured(stack: Stack, children: list[int]) -> None:
    """Writes need the development key, which `geosaga dev` prints; the dev server's Web UI
    decodes payloads through the API's codec endpoint."""
    refused = httpx.post(f"{stack.api}/orders/demo-completed/cancel", timeout=10)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert DEV_API_KEY in stack.log.read_text()
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in children]
    [server] = [command for command in commands if b"start-dev" in command]
    flag = server.index(b"--ui-codec-endpoint")
    assert server[flag + 1].decode() == f"{stack.api}/codec"


def assert_paid_through_the_gateway(gateway: str, log: Path) -> None:
    """`geosaga dev` prints the gateway's address, and the orders were paid there: its ledger
    has the completed order's capture and the out-of-stock order's void."""
    assert gateway in log.read_text()
    headers = {"Authorization": f"Bearer {DEV_GATEWAY_KEY}"}
    entries = httpx.get(f"{gateway}/ledger", headers=headers, timeout=10).json()["entries"]
    books = {(entry["reference"], entry["kind"]) for entry in entries}
    assert ("order-demo-completed/authorise/us-east", "captured") in books
    assert ("order-demo-out-of-stock/authorise/ap-south", "voided") in books


def test_a_second_stack_refuses_in_one_line_before_starting_anything(
    dev_env: dict[str, str],
) -> None:
    """As when `make run` runs twice: the port is taken, and who holds it is named."""
    with socket.socket() as first:
        first.bind(("127.0.0.1", int(dev_env["GEOSAGA_API_PORT"])))
        first.listen()
        second = subprocess.run(
            [sys.executable, "-m", "geosaga", "dev"],
            env=dev_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        checked = subprocess.run(
            [sys.executable, "-m", "geosaga", "dev", "--check"],
            env=dev_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    lines = (second.stdout + second.stderr).strip().splitlines()
    assert second.returncode == 1, lines
    assert len(lines) == 1, lines
    assert f"the API port 127.0.0.1:{dev_env['GEOSAGA_API_PORT']} is taken" in lines[0]
    assert f"(pid {os.getpid()})" in lines[0]
    assert "a geosaga stack is probably already running" in lines[0]
    assert (checked.returncode, checked.stdout) == (second.returncode, second.stdout)
    # Refused before anything started: no dev server, no stores.
    assert not Path(dev_env["GEOSAGA_DATA_DIR"]).exists()


def test_make_reset_deletes_the_data_directory_only_while_no_stack_runs(
    dev_env: dict[str, str], tmp_path: Path
) -> None:
    checkout = tmp_path / "checkout"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / "Makefile").write_text((README.parent / "Makefile").read_text())
    (checkout / ".venv" / "bin" / "geosaga").symlink_to(README.parent / ".venv/bin/geosaga")
    (checkout / ".data").mkdir()
    (checkout / ".data" / "us-east.db").write_text("orders")
    (checkout / "notes.txt").write_text("mine")

    def reset() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-s", "reset"], cwd=checkout, env=dev_env, capture_output=True, text=True
        )

    with socket.socket() as running:
        running.bind(("127.0.0.1", int(dev_env["GEOSAGA_API_PORT"])))
        running.listen()
        refused = reset()
    kept = (checkout / ".data" / "us-east.db").exists()
    done = reset()

    assert refused.returncode != 0, refused.stdout
    assert "a geosaga stack is probably already running" in refused.stdout
    assert "nothing deleted" in refused.stdout
    assert kept
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(path.name for path in checkout.iterdir()) == [".venv", "Makefile", "notes.txt"]


def test_readme_walkthrough_on_the_dev_stack(stack: Stack, dev_env: dict[str, str]) -> None:
    commands = walkthrough_commands()
    assert len(commands) >= 8, "the README walkthrough lost its curl blocks"

    outputs = []
    for block in commands:
        if "/compensations/retry" in block:
            # The walkthrough says to wait until the saga shows needs_attention.
            wait_for_status(stack.api, "demo-stuck", "needs_attention")
        script = block.replace(CONTRACT_API, stack.api)
        run = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        # Every answer ends its line, and every status shown is a success.
        assert run.stdout.endswith("\n"), run.stdout
        statuses = re.findall(r"^\d{3}$", run.stdout, flags=re.M)
        assert all(code in ("200", "202") for code in statuses), run.stdout
        outputs.append(run.stdout)

    [cancel_output] = [
        out for block, out in zip(commands, outputs, strict=True) if "/cancel" in block
    ]
    [(_, placed), (cancelled, accepted)] = answers(cancel_output)
    assert (placed, accepted) == (202, 202), cancel_output
    assert cancelled.get("accepted") is True, cancel_output
    for order_id, (status, reason) in EXPECTED.items():
        view = wait_for_end(stack.api, order_id)
        assert (view["status"], view["reason"]) == (status, reason), view
    split = wait_for_end(stack.api, "demo-split")
    assert {a["region"] for a in split["allocations"]} == {"eu-west", "us-east"}
    from_cart = wait_for_end(stack.api, "demo-cart")
    assert {(line["sku"], line["quantity"]) for line in from_cart["lines"]} == {
        ("SKU-1", 3),
        ("SKU-6", 1),
    }
    for region in ("us-east", "eu-west", "ap-south"):
        wait_for_empty_cart(stack.api, "grace", region)
    stuck = wait_for_end(stack.api, "demo-stuck")
    assert stuck["resolutions"][0]["resolved_by"] == "you@example.com"
    assert [c["status"] for c in stuck["compensations"]] == ["resolved"]
    listed = httpx.get(f"{stack.api}/orders?status=compensated").json()
    assert {"demo-declined", "demo-out-of-stock", "demo-cancel"} <= {o["order_id"] for o in listed}

    children = stack.children()
    assert len(children) == 6  # temporal, the gateway, three region workers, the API
    assert_secured(stack, children)
    assert_paid_through_the_gateway(dev_env["GEOSAGA_GATEWAY_URL"], stack.log)
    assert stack.stop() == 0
    assert [pid for pid in children if _alive(pid)] == []

    # History survives a restart: the dev server keeps its database in the data directory.
    restarted = start_stack(dev_env, stack.log)
    try:
        view = wait_for_end(restarted.api, "demo-completed")
        assert view["status"] == "completed"
    finally:
        assert restarted.stop() == 0
