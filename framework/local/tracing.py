"""The activator's span: ``hold``, for a request held while its model starts.

Warm requests pass ``traceparent`` through untouched (no span, nothing spent); a held request
gets a span that continues the client's trace, and the worker continues that span.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import propagate, trace

from zeroserve.local.wire import Request
from zeroserve.telemetry.tracing import inject_headers, sampled_root, tracer, tracing_on

TRACE_HEADERS = (b"traceparent", b"tracestate")


@contextlib.contextmanager
def hold_span(request: Request, model: str) -> Iterator[Any]:
    traced = request.header(b"traceparent") is not None
    if not tracing_on() or not (traced or sampled_root()):
        yield None
        return
    carrier = {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in request.headers
    }
    context = propagate.extract(carrier)
    span = tracer().start_span("hold", context=context, kind=trace.SpanKind.SERVER)
    span.set_attribute("zeroserve.model", model)
    with trace.use_span(span, end_on_exit=True):
        yield span


def continue_trace(request: Request) -> None:
    """Name the current (hold) span as the parent in the request the worker gets."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.add_event("forwarded")
    headers = inject_headers(span)
    request.headers = [(n, v) for n, v in request.headers if n.lower() not in TRACE_HEADERS]
    request.headers += [(name.encode(), value.encode()) for name, value in headers.items()]
