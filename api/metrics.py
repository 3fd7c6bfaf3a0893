"""Prometheus metrics: replication lag and counters, read from the region stores at scrape."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from regions import lag
from regions.store import Store

_PAIR = ["source", "destination"]


class ReplicationCollector(Collector):
    """Each scrape reads every region's counters, so any API replica reports the same."""

    def __init__(self, stores: Mapping[str, Store]) -> None:
        self._stores = stores

    def collect(self) -> Iterator[Metric]:
        lag_events = GaugeMetricFamily(
            "geosaga_replication_lag_events",
            "Events not yet applied at the destination (undelivered, held or failing)",
            labels=_PAIR,
        )
        lag_seconds = GaugeMetricFamily(
            "geosaga_replication_lag_seconds",
            "Age of the oldest event not yet applied at the destination",
            labels=_PAIR,
        )
        parts = {
            name: GaugeMetricFamily(f"geosaga_replication_{name}", help_text, labels=_PAIR)
            for name, help_text in (
                ("undelivered_events", "Events in the source's outbox not yet delivered"),
                ("held_events", "Events in the destination's inbox waiting for a predecessor"),
                ("failing_events", "Events in the destination's inbox whose last try failed"),
            )
        }
        counters = {
            name: CounterMetricFamily(f"geosaga_replication_{name}", help_text, labels=_PAIR)
            for name, help_text in (
                ("events_applied", "Events applied"),
                ("duplicates_skipped", "Redelivered events recognised and skipped"),
                ("events_held_back", "Events that arrived before their predecessor"),
                ("conflicts_detected", "Events concurrent with what the destination knew"),
                ("conflicts_resolved", "Concurrent events merged (LWW or cart CRDT)"),
                ("events_dead_lettered", "Events moved to the dead-letter table"),
            )
        }
        depth = GaugeMetricFamily(
            "geosaga_dead_letters",
            "Dead-lettered events waiting for an operator",
            labels=["region"],
        )
        for destination, store in self._stores.items():
            for pair in lag.status(self._stores, destination):
                labels = [pair.source, destination]
                lag_events.add_metric(labels, pair.lag_events)
                lag_seconds.add_metric(labels, pair.lag_seconds)
                parts["undelivered_events"].add_metric(labels, pair.undelivered_events)
                parts["held_events"].add_metric(labels, pair.held_events)
                parts["failing_events"].add_metric(labels, pair.failing_events)
                counters["events_applied"].add_metric(labels, pair.applied)
                counters["duplicates_skipped"].add_metric(labels, pair.duplicates)
                counters["events_held_back"].add_metric(labels, pair.held_back)
                counters["conflicts_detected"].add_metric(labels, pair.conflicts_detected)
                counters["conflicts_resolved"].add_metric(labels, pair.conflicts_resolved)
                counters["events_dead_lettered"].add_metric(labels, pair.dead_lettered)
            depth.add_metric([destination], lag.dead_letter_depth(store))
        yield lag_events
        yield lag_seconds
        yield from parts.values()
        yield from counters.values()
        yield depth


def registry_for(stores: Mapping[str, Store]) -> CollectorRegistry:
    """A registry of this app's own, so several apps in one process never share metrics."""
    registry = CollectorRegistry()
    registry.register(ReplicationCollector(stores))
    return registry
