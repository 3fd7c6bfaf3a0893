"""Telemetry of every process: the Temporal SDK's metrics for Prometheus, OpenTelemetry
tracing, and logs that carry the trace and span ids.

`configure_process` sets a `geosaga` process up once, at its start; tests build the same
parts (`worker_runtime`, `tracer_provider`) and hand them to the client factory instead, so
that nothing global changes under the rest of the suite.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from foundation.settings import Settings

TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s [trace=%(trace_id)s span=%(span_id)s] %(message)s"
NO_TRACE = "-"


def configure_process(settings: Settings, service: str, *, worker: bool = False) -> None:
    """Logging with trace ids, the process's tracer provider, and for a worker the Temporal
    runtime that serves its metrics. Call once, before the first Temporal client exists."""
    configure_logging(settings)
    if settings.tracing:
        trace.set_tracer_provider(tracer_provider(settings, service))
    if worker:
        runtime = worker_runtime(settings)
        if runtime is not None:
            Runtime.set_default(runtime, error_if_already_set=True)
            logging.getLogger(__name__).info(
                "Prometheus metrics on http://%s/metrics", metrics_address(settings)
            )


# Metrics --------------------------------------------------------------------------------------


def metrics_address(settings: Settings) -> str | None:
    if settings.worker_metrics_port is None:
        return None
    return f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"


def worker_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime that serves the SDK's metrics, and those the saga records with the
    workflow metric meter, for Prometheus at `/metrics` on the worker's metrics port (None
    when no port is configured: the SDK's default runtime, metrics off)."""
    address = metrics_address(settings)
    if address is None:
        return None
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=address, durations_as_seconds=True)
        )
    )


# Tracing --------------------------------------------------------------------------------------


def tracer_provider(settings: Settings, service: str) -> TracerProvider:
    """Spans of this process, named `geosaga-<service>`; sent to the OTLP/HTTP collector at
    `otlp_endpoint` when one is configured, otherwise kept for the trace ids in the logs."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"geosaga-{service}"}))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(settings.otlp_endpoint)))
    return provider


# Logs -----------------------------------------------------------------------------------------


class TraceIds(logging.Filter):
    """Adds `trace_id` and `span_id` (hex, or `-` outside a span) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        else:
            record.trace_id = record.span_id = NO_TRACE
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace and span ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", NO_TRACE),
            "span_id": getattr(record, "span_id", NO_TRACE),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_handler(settings: Settings, stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(TraceIds())
    handler.setFormatter(
        JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    return handler


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.handlers[:] = [log_handler(settings)]
