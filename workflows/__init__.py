"""Workflows: deterministic orchestration only; everything that touches the world is an activity."""
