"""A command given an unknown region says so in one line and exits 2, before it opens a store."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "args",
    [
        ("dead-letters", "list", "nowhere"),
        ("dead-letters", "redrive", "nowhere", "e1"),
    ],
)
def test_an_unknown_region_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "geosaga", *args], capture_output=True, text=True, check=False
    )

    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2
    assert lines == ["unknown region 'nowhere'; known: us-east, eu-west, ap-south"]
