"""Metrics and tracing after a real saga: the API's /metrics counts the request, the worker's
/metrics (the Temporal runtime's Prometheus endpoint) has the SDK's metrics and the saga's
outcome and step latencies, and one trace runs from the HTTP request through the workflow to
each activity."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from api.main import create_app
from foundation.settings import Settings
from foundation.telemetry import worker_runtime
from foundation.temporal import connect
from geosaga.devserver import free_port
from regions.store import Store
from regions.values import SagaStatus
from tests.cluster import Cluster
from tests.helpers import auth_headers, order, place, stock
from worker.saga_metrics import OUTCOMES, STEP_DURATION

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in found.items() if n == name and wanted <= have)


@asynccontextmanager
async def serving(
    settings: Settings, client: Client, stores: dict[str, Store], provider: TracerProvider | None
) -> AsyncIterator[httpx.AsyncClient]:
    """Region workers on `client`, and the API app (its own client) over httpx."""
    app = create_app(settings, tracer_provider=provider)
    async with (
        Cluster(client, settings, stores),
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://geosaga.test",
            headers=auth_headers(settings),
        ) as http,
    ):
        yield http


async def eventually(read: Callable[[], Samples], holds: Callable[[Samples], bool]) -> Samples:
    """The exporter serves what it has; the saga's last metrics follow its result closely."""
    found = read()
    for _ in range(100):
        if holds(found):
            break
        await asyncio.sleep(0.1)
        found = read()
    return found


async def test_metrics_move_after_a_saga(settings: Settings, stores: dict[str, Store]) -> None:
    port = free_port()
    worker_settings = settings.model_copy(update={"worker_metrics_port": port})
    client = await connect(worker_settings, runtime=worker_runtime(worker_settings))
    stock(stores, {"us-east": {"SKU-1": 5}})

    def worker_metrics() -> Samples:
        return samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)

    async with serving(worker_settings, client, stores, None) as api:

        async def api_metrics() -> Samples:
            return samples((await api.get("/metrics")).text)

        before_api = await api_metrics()
        before_worker = worker_metrics()
        state = await place(api, client, order("us-east", [("SKU-1", 2)]))
        after_api = await api_metrics()
        after_worker = await eventually(
            worker_metrics,
            lambda found: (
                value(found, f"{OUTCOMES}_total", status="completed")
                > value(before_worker, f"{OUTCOMES}_total", status="completed")
            ),
        )

    assert state.status == SagaStatus.COMPLETED
    posted = {"method": "POST", "route": "/orders", "status": "202"}
    assert value(after_api, "geosaga_http_requests_total", **posted) == (
        value(before_api, "geosaga_http_requests_total", **posted) + 1
    )
    timed = {"method": "POST", "route": "/orders"}
    assert value(after_api, "geosaga_http_request_duration_seconds_count", **timed) == (
        value(before_api, "geosaga_http_request_duration_seconds_count", **timed) + 1
    )
    # The saga's own metrics, recorded with the workflow metric meter.
    done = {"status": "completed", "reason": "none", "workflow_type": "OrderSaga"}
    assert value(after_worker, f"{OUTCOMES}_total", **done) == (
        value(before_worker, f"{OUTCOMES}_total", **done) + 1
    )
    for step in ("reserve_stock", "authorise_payment", "capture_payment", "commit_stock"):
        labels = {"step": step, "region": "us-east", "result": "ok"}
        assert value(after_worker, f"{STEP_DURATION}_count", **labels) >= (
            value(before_worker, f"{STEP_DURATION}_count", **labels) + 1
        ), step
    # The SDK's own, from the same runtime.
    assert value(after_worker, "temporal_workflow_completed_total", workflow_type="OrderSaga") >= 1
    assert value(after_worker, "temporal_activity_execution_latency_count") >= 5


def only(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, (name, [span.name for span in spans])
    return found[0]


async def test_one_trace_spans_the_request_the_workflow_and_its_activities(
    settings: Settings, stores: dict[str, Store]
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = await connect(settings, tracer_provider=provider)
    stock(stores, {"us-east": {"SKU-1": 5}})

    async with serving(settings, client, stores, provider) as api:
        state = await place(api, client, order("us-east", [("SKU-1", 1)]))
    provider.force_flush()
    spans = list(exporter.get_finished_spans())

    assert state.status == SagaStatus.COMPLETED
    request = only([span for span in spans if span.kind == SpanKind.SERVER], "POST /orders")
    assert request.context is not None
    trace_id = request.context.trace_id
    in_trace = [span for span in spans if span.context and span.context.trace_id == trace_id]
    names = {span.name for span in in_trace}
    assert {
        "StartWorkflow:OrderSaga",
        "RunWorkflow:OrderSaga",
        "StartActivity:reserve_stock",
        "RunActivity:reserve_stock",
        "RunActivity:authorise_payment",
        "RunActivity:capture_payment",
        "RunActivity:commit_stock",
        "RunActivity:record_outcome",
    } <= names, names
    # The chain: request → start → workflow → each activity's start → its run.
    start = only(in_trace, "StartWorkflow:OrderSaga")
    run = only(in_trace, "RunWorkflow:OrderSaga")
    assert start.parent is not None
    assert start.parent.span_id == request.context.span_id
    assert run.parent is not None
    assert start.context is not None
    assert run.parent.span_id == start.context.span_id
    by_id = {span.context.span_id: span for span in in_trace if span.context}
    for span in in_trace:
        if span.name.startswith("RunActivity:"):
            assert span.parent is not None
            assert by_id[span.parent.span_id].name == span.name.replace("Run", "Start", 1)
