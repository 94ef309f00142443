"""Spans with the SDK's in-memory exporter: the cold-start timeline and a continued trace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from zeroserve.local.tracing import continue_trace, hold_span
from zeroserve.local.wire import Request
from zeroserve.telemetry import tracing
from zeroserve.telemetry.tracing import configure_tracing, server_span, timeline_spans, use_provider

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


@pytest.fixture(scope="module")
def provider() -> TracerProvider:
    provider = TracerProvider()
    use_provider(provider)  # once per process: the API allows one global provider
    return provider


@pytest.fixture
def spans(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()


def test_timeline_becomes_a_cold_start_span_with_a_child_per_phase(
    spans: InMemorySpanExporter,
) -> None:
    timeline = {
        "phases": [
            {"name": "imports", "start_s": 0.5, "end_s": 2.0},
            {"name": "load", "start_s": 2.0, "end_s": 2.25, "model": "iris"},
            {"name": "ready", "start_s": 2.3, "end_s": 2.3},
        ]
    }
    timeline_spans(timeline, origin_monotonic=100.0, model="iris")
    by_name = {span.name: span for span in spans.get_finished_spans()}
    assert set(by_name) == {"cold_start", "imports", "load"}
    root = by_name["cold_start"]
    for phase, seconds in (("imports", 1.5), ("load", 0.25)):
        child = by_name[phase]
        assert child.parent is not None
        assert child.parent.span_id == root.context.span_id
        assert abs((child.end_time - child.start_time) / 1e9 - seconds) < 1e-6
    assert abs((root.end_time - root.start_time) / 1e9 - 2.3) < 1e-6


def test_server_span_continues_the_client_trace(spans: InMemorySpanExporter) -> None:
    with server_span("predict", {"traceparent": TRACEPARENT}, {"zeroserve.model": "iris"}):
        pass
    (span,) = spans.get_finished_spans()
    assert format(span.context.trace_id, "032x") == CLIENT_TRACE
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == CLIENT_SPAN
    assert span.attributes["zeroserve.model"] == "iris"


def test_a_held_request_is_forwarded_as_a_child_of_the_hold_span(
    spans: InMemorySpanExporter,
) -> None:
    request = Request(method=b"POST", url=b"/v1/models/iris:predict")
    request.headers = [(b"Traceparent", TRACEPARENT.encode()), (b"host", b"x")]
    with hold_span(request, "iris"):
        continue_trace(request)
    (hold,) = spans.get_finished_spans()
    assert format(hold.context.trace_id, "032x") == CLIENT_TRACE
    forwarded = dict(request.headers)[b"traceparent"].decode()
    assert forwarded.split("-")[1] == CLIENT_TRACE
    assert forwarded.split("-")[2] == format(hold.context.span_id, "016x")
    assert sum(1 for name, _ in request.headers if name.lower() == b"traceparent") == 1


def test_tracing_is_off_without_an_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert configure_tracing() is False
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert configure_tracing() is False


def test_an_unsampled_root_request_makes_no_span_a_traced_one_always_does(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing._Switch, "root_ratio", 0.0)
    with server_span("predict", {"host": "x"}, {}) as span:
        assert span is None
    with server_span("predict", {"traceparent": TRACEPARENT}, {}):
        pass
    (span,) = spans.get_finished_spans()
    assert format(span.context.trace_id, "032x") == CLIENT_TRACE


def test_a_trace_id_ratio_is_decided_at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    sampler, ratio = tracing._root_sampling()
    assert ratio == 0.25
    assert "ParentBased" in type(sampler).__name__
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "7")
    assert tracing._root_sampling()[1] == 1.0
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    assert tracing._root_sampling() == (None, 1.0)
