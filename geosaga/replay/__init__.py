"""Replays recorded saga and relay histories against today's workflow code."""

from geosaga.replay.histories import (
    Outcome,
    Source,
    history_files,
    read_history,
    replay,
    replay_all,
)

__all__ = ["Outcome", "Source", "history_files", "read_history", "replay", "replay_all"]
