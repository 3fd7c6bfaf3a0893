"""A region's clock skew, read from a file (fault testing): the offset reaches the HLC, a
changed file is read again, and a skew beyond the bound makes remote events refused."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from regions import clock
from regions.clock import RECHECK_SECONDS, SkewFiles, physical_ms, use_skew
from regions.hlc import DEFAULT_MAX_DRIFT_MS, ClockDriftError, Timestamp, wall_ms
from regions.store import Store


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str) -> None:
    """As the harness does: a whole new file renamed into place."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


@pytest.fixture
def skew_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "skew"
    folder.mkdir()
    use_skew(folder)
    yield folder
    use_skew(None)


def test_a_missing_file_is_no_skew(tmp_path: Path) -> None:
    assert SkewFiles(tmp_path).offset_ms("us-east") == 0


def test_the_offset_is_read_again_only_once_the_recheck_interval_passed(tmp_path: Path) -> None:
    monotonic = Monotonic()
    skew = SkewFiles(tmp_path, monotonic=monotonic)
    write(tmp_path / "eu-west", "2500\n")
    assert skew.offset_ms("eu-west") == 2500
    assert skew.offset_ms("us-east") == 0

    write(tmp_path / "eu-west", "-70000")
    assert skew.offset_ms("eu-west") == 2500  # not looked at again yet
    monotonic.now += 2 * RECHECK_SECONDS
    assert skew.offset_ms("eu-west") == -70000
    (tmp_path / "eu-west").unlink()
    monotonic.now += 2 * RECHECK_SECONDS
    assert skew.offset_ms("eu-west") == 0


def test_an_unreadable_offset_is_no_skew(tmp_path: Path) -> None:
    write(tmp_path / "us-east", "soon")
    assert SkewFiles(tmp_path).offset_ms("us-east") == 0


def test_without_a_skew_folder_the_clock_is_the_wall_clock() -> None:
    use_skew(None)
    before = wall_ms()
    assert before <= physical_ms("us-east") <= wall_ms()


def test_the_regions_hlc_ticks_on_its_skewed_clock(skew_dir: Path, tmp_path: Path) -> None:
    write(skew_dir / "us-east", "5000")
    store = Store("us-east", f"sqlite:///{tmp_path}/us-east.db")
    store.create_schema()
    try:
        before = wall_ms()
        with store.transaction() as session:
            stamp = clock.tick(session, "us-east")
        assert before + 5000 <= stamp.wall_ms <= wall_ms() + 5000
        assert before <= physical_ms("eu-west") <= wall_ms()
    finally:
        store.dispose()


def test_a_region_skewed_behind_beyond_the_bound_refuses_remote_events(
    skew_dir: Path, tmp_path: Path
) -> None:
    store = Store("ap-south", f"sqlite:///{tmp_path}/ap-south.db")
    store.create_schema()
    try:
        remote = Timestamp(wall_ms(), 0, "us-east")
        write(skew_dir / "ap-south", str(-(DEFAULT_MAX_DRIFT_MS + 10_000)))
        with pytest.raises(ClockDriftError), store.transaction() as session:
            clock.observe(session, "ap-south", remote)
        write(skew_dir / "ap-south", "0")
        use_skew(skew_dir)  # a fresh process: nothing read yet (a running one rechecks soon)
        with store.transaction() as session:
            assert clock.observe(session, "ap-south", remote) > remote
    finally:
        store.dispose()
