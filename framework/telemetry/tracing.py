"""OpenTelemetry spans for zeroserve's phases, on ``opentelemetry-api``.

Spans cost next to nothing until an SDK is configured. ``configure_tracing()`` installs one when
``OTEL_TRACES_EXPORTER`` names an exporter (``console``, ``otlp``) and ``opentelemetry-sdk`` is
installed (``pip install 'zeroserve[tracing]'``); the standard ``OTEL_*`` variables (service
name, resource attributes, OTLP endpoint and headers) apply. Call it after a fork, never before:
an exporter's thread does not survive one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import propagate, trace

logger = logging.getLogger("zeroserve")
TRACER_NAME = "zeroserve"


class _Switch:
    """Whether this process exports spans; until it does, span code is skipped entirely
    (even the API's no-op spans cost a few percent of a fast model's request)."""

    on = False
    tracer: trace.Tracer | None = None
    root_ratio = 1.0  # the share of requests without a traceparent that start a trace


def sampled_root() -> bool:
    """Whether a request that arrived without a trace starts one (decided before any span)."""
    return _Switch.root_ratio >= 1.0 or random.random() < _Switch.root_ratio


def tracing_on() -> bool:
    return _Switch.on


def tracer() -> trace.Tracer:
    """zeroserve's tracer: the configured provider's, else the global API's (no-op)."""
    return _Switch.tracer or trace.get_tracer(TRACER_NAME)


def configure_tracing() -> bool:
    """Export spans as OTEL_TRACES_EXPORTER says; False when tracing stays off."""
    names = [name.strip() for name in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [name for name in names if name and name != "none"]
    if not names:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        logger.warning(
            "OTEL_TRACES_EXPORTER=%s but opentelemetry-sdk is not installed: no spans are "
            "exported (pip install 'zeroserve[tracing]')",
            ",".join(names),
        )
        return False
    sampler, _Switch.root_ratio = _root_sampling()
    provider = TracerProvider(resource=Resource.create(), sampler=sampler)
    for name in names:
        processor = _processor(name)
        if processor is not None:
            provider.add_span_processor(processor)
    use_provider(provider)
    return True


def _root_sampling() -> tuple[Any, float]:
    """The provider's sampler and zeroserve's root ratio, from OTEL_TRACES_SAMPLER(_ARG).

    With a trace-id ratio, zeroserve makes the root decision itself before creating any span
    (an unsampled request then costs nothing) and the provider samples what follows its parent.
    """
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    name = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if name not in ("traceidratio", "parentbased_traceidratio"):
        return None, 1.0  # the SDK reads any other sampler from the environment itself
    try:
        ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        logger.warning("OTEL_TRACES_SAMPLER_ARG must be a ratio from 0 to 1; sampling every trace")
        ratio = 1.0
    return ParentBased(ALWAYS_ON), ratio


def use_provider(provider: Any) -> None:
    """Export zeroserve's spans through ``provider`` (an SDK TracerProvider).

    The provider is not made global: FastAPI traces every request itself once a global provider
    exists (three spans each), which costs a fast model a fifth of its throughput here, while
    zeroserve's spans (hold, predict, batch, cold start) already carry the request's trace.
    """
    _Switch.tracer = provider.get_tracer(TRACER_NAME)
    _Switch.on = True


def _processor(name: str) -> Any:
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    if name == "console":  # one JSON object per line, as it ends
        return SimpleSpanProcessor(ConsoleSpanExporter(formatter=_one_line))
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            logger.warning("OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http")
            return None
        return BatchSpanProcessor(OTLPSpanExporter())
    logger.warning("OTEL_TRACES_EXPORTER: unknown exporter '%s' (use console or otlp)", name)
    return None


def _one_line(span: Any) -> str:
    return str(span.to_json(indent=None)) + "\n"


def server_span(
    name: str, headers: Mapping[str, str] | None, attributes: dict[str, Any]
) -> contextlib.AbstractContextManager[Any]:
    """A span that continues the caller's W3C trace (``traceparent`` in ``headers``)."""
    if not _Switch.on:
        return contextlib.nullcontext()
    if headers and "traceparent" in headers:
        context = propagate.extract(headers)
    elif sampled_root():
        context = None
    else:
        return contextlib.nullcontext()
    return tracer().start_as_current_span(
        name, context=context, kind=trace.SpanKind.SERVER, attributes=attributes
    )


def timeline_spans(timeline: dict[str, Any], origin_monotonic: float, model: str) -> None:
    """Record a finished startup timeline as a ``cold_start`` span with a child per phase."""
    if not _Switch.on:
        return
    phases = [p for p in timeline["phases"] if p["end_s"] is not None]
    if not phases:
        return
    to_epoch_ns = time.time_ns() - int(time.monotonic() * 1e9) + int(origin_monotonic * 1e9)
    end = max(p["end_s"] for p in phases)
    root = tracer().start_span(
        "cold_start", start_time=to_epoch_ns, attributes={"zeroserve.model": model}
    )
    with trace.use_span(root, end_on_exit=False):
        for phase in phases:
            if phase["end_s"] == phase["start_s"]:
                continue  # a mark (ready), not a phase
            child = tracer().start_span(
                phase["name"], start_time=to_epoch_ns + int(phase["start_s"] * 1e9)
            )
            child.end(end_time=to_epoch_ns + int(phase["end_s"] * 1e9))
    root.end(end_time=to_epoch_ns + int(end * 1e9))


def inject_headers(span: Any) -> dict[str, str]:
    """The ``traceparent`` (and ``tracestate``) naming ``span`` as the parent."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier
