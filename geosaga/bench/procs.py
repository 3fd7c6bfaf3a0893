"""The bench's view of a stack's processes, read from /proc (Linux): who they are, their
memory, and the CPU time they have used."""

from __future__ import annotations

import os
from pathlib import Path

TEMPORAL = "temporal server"


def stack_processes(data_dir: Path | None) -> dict[int, str]:
    """The Temporal dev server, API and region workers (of the stack using `data_dir`, when
    one is given: `geosaga dev` passes its environment to every child)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if data_dir is not None and f"GEOSAGA_DATA_DIR={data_dir}".encode() not in environ:
            continue
        name = _role([a.decode(errors="replace") for a in argv if a])
        if name is not None:
            found[int(entry.name)] = name
    return found


def _role(words: list[str]) -> str | None:
    if words and Path(words[0]).name == "temporal" and "start-dev" in words:
        return TEMPORAL
    if "geosaga" not in " ".join(words[:3]):
        return None
    if "api" in words:
        return "api"
    if "worker" in words and "--region" in words[:-1]:
        return f"worker {words[words.index('--region') + 1]}"
    return None


def rss_mb(pid: int) -> float | None:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def cpu_seconds(pids: dict[int, str]) -> dict[str, float]:
    """User plus system CPU time so far, by process name (processes sharing one add up)."""
    used: dict[str, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for pid, name in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


def machine_times() -> tuple[int, int]:
    """(all, stolen) clock ticks of the machine so far, from /proc/stat: how much of its time
    the hypervisor gave to other guests."""
    try:
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    # user nice system idle iowait irq softirq steal [guest guest_nice, counted in user]
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0
