"""The soak's memory summary: first minute, the minute after the warm-up, and the last."""

from __future__ import annotations

from geosaga.bench.scale import MemorySampler


def _sampler(samples: list[tuple[float, float]], warm_at: float | None) -> MemorySampler:
    sampler = MemorySampler({})
    sampler.samples["worker us-east"] = samples
    sampler.warm_at = warm_at
    return sampler


def test_growth_after_the_warm_up_leaves_the_warm_up_out() -> None:
    # Rises from 100 to 150 MB over the first 5 minutes, then holds at 150-153 MB.
    rising = [(t * 5.0, 100 + t * 5 * 50 / 300) for t in range(61)]
    level = [(300 + t * 5.0, 150.0 + t % 4) for t in range(1, 181)]
    [memory] = _sampler(rising + level, warm_at=300.0).summary()

    assert memory.first_mb == 110.0
    assert memory.warm_mb == 153.0
    assert memory.last_mb == 153.0
    assert memory.growth == 0.391
    assert memory.warm_growth == 0.0
    assert memory.warm_minutes == 15.0


def test_without_a_warm_up_only_the_first_minute_is_the_baseline() -> None:
    [memory] = _sampler([(0.0, 100.0), (60.0, 104.0), (600.0, 120.0)], warm_at=None).summary()

    assert memory.first_mb == 104.0
    assert memory.warm_mb is None
    assert memory.warm_growth is None
    assert memory.growth == round(120 / 104 - 1, 3)
