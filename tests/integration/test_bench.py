"""`geosaga bench` runs end to end on a throwaway stack (a smoke test: no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`geosaga bench ARGS` in a process of its own, wide enough for its tables."""
    return subprocess.run(
        [sys.executable, "-m", "geosaga", "bench", *args],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bench_measures_sagas_and_the_floor_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = _bench(
        *("--spawn", "--orders", "4", "--concurrency", "2", "--idle", "2", "--starts", "3"),
        *("--scale", "2,3", "--soak-warmup", "1", "--heals", "1", "--json", str(out)),
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())["tuned"]
    assert result["saga_load"]["runs"] == 4
    assert result["floor_load"]["runs"] == 4
    assert result["saga_idle"]["runs"] == 2
    assert result["saga_load"]["per_second"] > 0
    assert set(result["ratios"]) == {
        "throughput (saga / floor)",
        "idle p50 (saga / floor)",
        "POST /orders p99 / raw start p99",
    }
    steps = {step["name"] for step in result["saga_steps"]}
    assert {"workflow task", "check_stock", "reserve_stock", "capture_payment"} <= steps
    assert {step["name"] for step in result["floor_steps"]} == {"workflow task", "noop"}
    assert "geosaga against the floor" in run.stdout
    # CPU is charged to the spawned stack's own processes, the Temporal server among them.
    assert {"temporal server", "api", "worker us-east", "total"} <= set(result["cpu_ms"]["saga"])
    assert result["cpu_ms"]["saga"]["total"] > 0
    # Replication lag was sampled while the sagas ran (their events had to reach two regions).
    lag = result["replication_lag"]
    assert 0 <= lag["p50"] <= lag["p99"]
    assert "replication lag under saga load" in run.stdout
    heals = json.loads(out.read_text())["heals"]
    # The frozen region missed the other regions' events, and caught up once resumed.
    assert heals["region"] == "ap-south"
    assert heals["backlog_events"][0] > 0
    assert len(heals["seconds"]) == 1
    scale = json.loads(out.read_text())["scale"]
    assert [r["orders"] for r in scale["runs"]] == [2, 3]
    assert all(r["per_second"] > 0 for r in scale["runs"])
    # Each run charges the stack's CPU to its orders and says how much the hypervisor took.
    assert all(r["cpu_ms_per_order"] > 0 for r in scale["runs"])
    assert all(0 <= r["steal"] < 1 for r in scale["runs"])
    # The soak samples the API and one worker per region of the stack it spawned, no others.
    assert {m["process"] for m in scale["memory"]} == {
        "api",
        "worker us-east",
        "worker eu-west",
        "worker ap-south",
    }
    assert all(m["first_mb"] > 0 for m in scale["memory"])
    # The soak's baseline was taken once its first order (the warm-up asked for) had ended.
    assert all(m["warm_mb"] > 0 for m in scale["memory"])
    assert all(
        m["warm_growth"] == round(m["last_mb"] / m["warm_mb"] - 1, 3) for m in scale["memory"]
    )
    assert "after warm-up" in run.stdout


def test_bench_against_runs_two_stacks_at_once_and_compares_them(tmp_path: Path) -> None:
    out = tmp_path / "against.json"
    run = _bench(
        *("--spawn", "--orders", "3", "--concurrency", "2"),
        *("--against", "GEOSAGA_REPLICATION_LINGER_SECONDS=0.5", "--json", str(out)),
    )

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())["against"]
    assert result["a"]["overrides"] == {}
    assert result["b"]["overrides"] == {"GEOSAGA_REPLICATION_LINGER_SECONDS": "0.5"}
    for side in (result["a"], result["b"]):
        assert side["per_second"] > 0
        # Each side is charged its own stack's CPU, its Temporal server's included.
        assert {"temporal server", "api", "worker us-east", "total"} <= set(side["cpu_ms"])
        assert side["cpu_ms"]["total"] > 0
    ratios = result["ratios"]
    assert ratios["throughput (B / A)"] == round(
        result["b"]["per_second"] / result["a"]["per_second"], 3
    )
    assert "CPU per saga (B / A)" in run.stdout


def test_bench_against_names_a_setting_it_cannot_take() -> None:
    run = _bench("--spawn", "--against", "LINGER=2", timeout=120)

    assert run.returncode == 2
    assert "--against" in run.stderr
    assert "GEOSAGA_NAME=value" in run.stderr
