"""Whether a port is taken, and by which process: `geosaga dev` refuses to start on a taken one."""

from __future__ import annotations

import os
import socket
from pathlib import Path

_LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp
_LONGEST = 60


def taken(host: str, port: int) -> bool:
    """Whether binding host:port fails. SO_REUSEADDR, as the servers set it: a port left in
    TIME_WAIT by a stack that just stopped is free."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def holder(port: int) -> str | None:
    """`name (pid N)` of a process listening on `port`, from /proc (Linux); None when it cannot
    be told (another user's process, or no /proc)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    sockets = {f"socket:[{inode}]" for inode in inodes}
    for pid in (entry for entry in _listdir(Path("/proc")) if entry.isdigit()):
        fds = Path("/proc", pid, "fd")
        for fd in _listdir(fds):
            try:
                target = os.readlink(fds / fd)
            except OSError:
                continue
            if target in sockets:
                return f"{_name(pid)} (pid {pid})"
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port and inode != "0":
                inodes.add(inode)
    return inodes


def _name(pid: str) -> str:
    try:
        command = Path("/proc", pid, "cmdline").read_bytes().split(b"\0")
        words = [word.decode(errors="replace") for word in command if word]
    except OSError:
        words = []
    if not words:
        return "?"
    # `python -m geosaga worker` says more than `python`; the line stays one line, and short.
    text = " ".join(" ".join([Path(words[0]).name, *words[1:4]]).split())
    return text if len(text) <= _LONGEST else f"{text[: _LONGEST - 1]}…"


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []
