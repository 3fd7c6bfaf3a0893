"""Log lines carry the trace they were written in; telemetry settings."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from foundation.settings import Settings
from foundation.telemetry import NO_TRACE, log_handler, worker_runtime


@pytest.fixture
def logged(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    logger = logging.getLogger(f"geosaga.test.{request.node.name}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = log_handler(Settings(log_format=request.param), stream)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


@pytest.mark.parametrize("logged", ["json"], indirect=True)
def test_json_lines_carry_the_trace_and_span_ids(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    tracer = TracerProvider().get_tracer("test")

    with tracer.start_as_current_span("request") as span:
        logger.info("reserved %s units", 3)
    logger.warning("outside any span")

    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    context = span.get_span_context()
    assert inside["message"] == "reserved 3 units"
    assert inside["level"] == "INFO"
    assert inside["trace_id"] == trace.format_trace_id(context.trace_id)
    assert inside["span_id"] == trace.format_span_id(context.span_id)
    assert (outside["trace_id"], outside["span_id"]) == (NO_TRACE, NO_TRACE)


@pytest.mark.parametrize("logged", ["text"], indirect=True)
def test_text_lines_carry_the_trace_id_too(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    tracer = TracerProvider().get_tracer("test")

    with tracer.start_as_current_span("request") as span:
        logger.info("hello")

    trace_id = trace.format_trace_id(span.get_span_context().trace_id)
    assert f"[trace={trace_id} span=" in stream.getvalue()


def test_telemetry_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSAGA_WORKER_METRICS_HOST", "0.0.0.0")
    monkeypatch.setenv("GEOSAGA_WORKER_METRICS_PORT", "9464")
    monkeypatch.setenv("GEOSAGA_TRACING", "false")
    monkeypatch.setenv("GEOSAGA_OTLP_ENDPOINT", "http://collector:4318/v1/traces")
    monkeypatch.setenv("GEOSAGA_LOG_FORMAT", "json")

    settings = Settings()

    assert (settings.worker_metrics_host, settings.worker_metrics_port) == ("0.0.0.0", 9464)
    assert settings.tracing is False
    assert settings.otlp_endpoint == "http://collector:4318/v1/traces"
    assert settings.log_format == "json"


def test_no_metrics_port_no_metrics_runtime() -> None:
    assert Settings().worker_metrics_port is None
    assert worker_runtime(Settings()) is None
