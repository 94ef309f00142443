"""Versions of one model name in the local activator: a weighted split and a shadow.

Each request for a split name goes to one of its versions, drawn at random by weight (a client
may pin one with the ``zeroserve-version`` header); reads (metadata, schema) go to the heaviest
version. A shadow gets a copy of each POST: its answers and errors are counted and the last
failures kept (``GET /zeroserve/splits/NAME``), never returned; a shadow at zero starts on its
first copy like any model. Weights change live with ``PUT /zeroserve/splits/NAME``.

Each version counts its answers by status and observes their latency in the activator's metrics,
labelled ``model`` (the name clients use), ``version`` and ``role`` (``split`` or ``shadow``), and
keeps its recent ones numbered, so an analysis can ask for what came after its last look.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from zeroserve.errors import InvalidPayload, UnknownModel
from zeroserve.local.metrics import activator_metrics
from zeroserve.local.pool import CLIENT_GONE
from zeroserve.local.split_config import SplitPlan
from zeroserve.local.wire import ClientConnection, Request

if TYPE_CHECKING:
    from zeroserve.local.pool import ModelPool

logger = logging.getLogger("zeroserve")
VERSION_HEADER = b"zeroserve-version"
RECENT_SAMPLES = 10_000  # per version, for an analysis that looks every interval
RECENT_SHADOW_FAILURES = 20
KEPT_BODY_BYTES = 2048
TALLIED_ANSWER_BYTES = 4096  # longer answers are not tallied (their JSON would be cut short)
TALLIED_CLASSES = 100  # distinct predicted values counted per version; the rest are not


@dataclass
class Version:
    """One model answering for a split name, and what its answers were."""

    label: str
    model: str
    weight: int
    role: str = "split"
    answers: Counter[int] = field(default_factory=Counter)
    samples: deque[tuple[int, int, float]] = field(
        default_factory=lambda: deque(maxlen=RECENT_SAMPLES)
    )  # (number, status, seconds)
    outputs: Counter[str] = field(default_factory=Counter)  # predicted classes, from 200s

    def tally(self, answer: bytes) -> None:
        """Count the predicted classes (strings, integers, booleans) of a 200 answer."""
        head, _, body = answer.partition(b"\r\n\r\n")
        if head[9:12] != b"200":
            return
        try:
            found = orjson.loads(body)
        except orjson.JSONDecodeError:
            return  # over TALLIED_ANSWER_BYTES, or not JSON
        values = found.get("predictions") if isinstance(found, dict) else None
        if values is None and isinstance(found, dict) and found.get("outputs"):
            values = found["outputs"][0].get("data")
        for value in values if isinstance(values, list) else ():
            if isinstance(value, float) and not value.is_integer():
                continue  # a regression's output: not a class
            key = str(int(value) if isinstance(value, float) else value)
            if isinstance(value, str | int | float) and (
                key in self.outputs or len(self.outputs) < TALLIED_CLASSES
            ):
                self.outputs[key] += 1

    def describe(self, since: int) -> dict[str, Any]:
        recent = [(n, s, t) for n, s, t in self.samples if n > since]
        return {
            "model": self.model,
            "weight": self.weight,
            "answers": {str(status): count for status, count in sorted(self.answers.items())},
            "outputs": dict(self.outputs),
            "recent": {
                "status": [status for _, status, _ in recent],
                "seconds": [round(seconds, 6) for _, _, seconds in recent],
            },
        }


class TrafficSplit:
    """One split name: its weighted versions, its shadow, and the figures of each."""

    def __init__(self, plan: SplitPlan, pools: dict[str, ModelPool]) -> None:
        self.name = plan.route
        self.versions = [Version(v.label, v.model, v.weight) for v in plan.versions]
        self.shadow = (
            Version(plan.shadow.label, plan.shadow.model, 0, "shadow") if plan.shadow else None
        )
        self.pools = pools
        self.numbered = 0  # answers observed, across versions: what ``since`` counts
        self.shadow_failures: deque[dict[str, Any]] = deque(maxlen=RECENT_SHADOW_FAILURES)
        self.shadow_in_flight = 0
        self.shadow_skipped = 0  # copies not sent: the shadow held as many as it can serve
        self.random = random.Random()

    @property
    def members(self) -> list[Version]:
        return [*self.versions, *([self.shadow] if self.shadow else [])]

    # ---- routing -------------------------------------------------------------------------
    def route(self, request: Request, client: ClientConnection) -> None:
        """Forward ``request`` to the version it is pinned to or drawn for; mirror a POST."""
        post = request.method == b"POST"
        pinned = request.header(VERSION_HEADER)
        if pinned is not None:
            version = self._pinned(pinned.decode("latin-1").strip())
            if version is None:
                labels = [v.label for v in self.members]
                client.respond_error(
                    UnknownModel(
                        model=f"{self.name} version {pinned.decode('latin-1')}", served=labels
                    )
                )
                return
        elif post:
            version = self._draw()
        else:  # metadata and schema: the version most clients get
            version = max(self.versions, key=lambda v: v.weight)
        self._send(version, request, TallyingClient(client, version) if post else client)
        if self.shadow is not None and post and version is not self.shadow:
            self._mirror(self.shadow, request)

    def _mirror(self, shadow: Version, request: Request) -> None:
        """A copy for the shadow, unless it already holds as many as it can serve at once
        (twice its replicas' concurrency): a shadow that falls behind skips copies, counted,
        rather than piling them up."""
        spec = self.pools[shadow.model].spec
        if self.shadow_in_flight >= 2 * spec.concurrency * spec.max_replicas:
            self.shadow_skipped += 1
            activator_metrics().version_answers.labels(
                self.name, shadow.label, "shadow", "skipped"
            ).inc()
            return
        self.shadow_in_flight += 1
        self._send(shadow, request, ShadowClient(self, shadow), mirrored=True)

    def _pinned(self, label: str) -> Version | None:
        return next((v for v in self.members if label in (v.label, v.model)), None)

    def _draw(self) -> Version:
        versions = self.versions
        return self.random.choices(versions, weights=[v.weight for v in versions])[0]

    def _send(
        self, version: Version, request: Request, client: Any, mirrored: bool = False
    ) -> None:
        old, new = b"/models/" + self.name.encode(), b"/models/" + version.model.encode()
        forwarded = dataclasses.replace(request, url=request.url.replace(old, new, 1))
        began = time.perf_counter()
        observe = self._observer(version, began, mirrored)
        self.pools[version.model].route(forwarded, client, observe)

    def _observer(self, version: Version, began: float, mirrored: bool) -> Callable[[int], None]:
        metrics = activator_metrics()

        def observe(status: int) -> None:
            seconds = time.perf_counter() - began
            if mirrored:
                self.shadow_in_flight -= 1
            status = status or CLIENT_GONE
            version.answers[status] += 1
            self.numbered += 1
            version.samples.append((self.numbered, status, seconds))
            metrics.version_answers.labels(self.name, version.label, version.role, status).inc()
            metrics.version_latency.labels(self.name, version.label, version.role).observe(seconds)

        return observe

    # ---- the admin route -----------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Weights and shadow, as ``/zeroserve/status`` shows them."""
        return {
            "versions": {v.label: {"model": v.model, "weight": v.weight} for v in self.versions},
            "shadow": {"label": self.shadow.label, "model": self.shadow.model}
            if self.shadow
            else None,
        }

    def describe(self, since: int = 0) -> dict[str, Any]:
        """Weights, answers by status, and each version's answers numbered after ``since``."""
        return {
            "model": self.name,
            "numbered": self.numbered,
            "versions": {v.label: v.describe(since) for v in self.versions},
            "shadow": (
                {"label": self.shadow.label, **self.shadow.describe(since)} if self.shadow else None
            ),
            "shadow_failures": list(self.shadow_failures),
            "shadow_skipped": self.shadow_skipped,
        }

    def change_weights(self, body: bytes) -> None:
        """Set the weights from ``{"weights": {"v1": 75, "v2": 25}}``; InvalidPayload if not
        every weighted version gets a whole percent and they do not add up to 100."""
        try:
            weights = orjson.loads(body).get("weights")
        except (orjson.JSONDecodeError, AttributeError):
            weights = None
        example = ", ".join(f'"{v.label}": {v.weight}' for v in self.versions)
        if not isinstance(weights, dict):
            raise InvalidPayload(f'split weights: send {{"weights": {{{example}}}}}')
        labels = {v.label for v in self.versions}
        unknown = sorted(set(weights) - labels)
        bad = [k for k, w in weights.items() if type(w) is not int or not 0 <= w <= 100]
        if unknown or bad:
            what = f"no version {unknown}" if unknown else f"{bad}: not a whole percent 0-100"
            raise InvalidPayload(f"split weights: {what}; versions: {sorted(labels)}")
        merged = {v.label: weights.get(v.label, v.weight) for v in self.versions}
        if sum(merged.values()) != 100:
            raise InvalidPayload(
                f"split weights: {merged} add up to {sum(merged.values())}; make them add to 100"
            )
        for version in self.versions:
            version.weight = merged[version.label]
        logger.info("model '%s': traffic split is now %s", self.name, merged)

    def record_shadow_failure(self, version: Version, status: int, body: bytes) -> None:
        self.shadow_failures.append(
            {
                "at": time.time(),
                "version": version.label,
                "status": status,
                "body": body[:KEPT_BODY_BYTES].decode("utf-8", "replace"),
            }
        )


class TallyingClient:
    """A client's connection, passed through, keeping the start of its answer to tally it."""

    def __init__(self, client: ClientConnection, version: Version) -> None:
        self.client = client
        self.version = version
        self.kept = bytearray()

    @property
    def on_lost(self) -> Callable[[], object] | None:
        return self.client.on_lost

    @on_lost.setter
    def on_lost(self, callback: Callable[[], object] | None) -> None:
        self.client.on_lost = callback

    @property
    def closed(self) -> bool:
        return self.client.closed

    def write(self, data: bytes) -> None:
        if len(self.kept) <= TALLIED_ANSWER_BYTES:
            self.kept += data
        self.client.write(data)

    def finish(self, keep_alive: bool) -> None:
        self.client.finish(keep_alive)
        if len(self.kept) <= TALLIED_ANSWER_BYTES:
            self.version.tally(bytes(self.kept))

    def respond(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.client.respond(status, body, headers)

    def respond_error(self, error: Any, headers: dict[str, str] | None = None) -> None:
        self.client.respond_error(error, headers)


class ShadowClient:
    """The client of a mirrored request: keeps the start of the answer and sends nothing on.

    It answers the calls a pool and an exchange make of a ``ClientConnection``."""

    closed = False

    def __init__(self, split: TrafficSplit, version: Version) -> None:
        self.split = split
        self.version = version
        self.on_lost: Callable[[], object] | None = None
        self.kept = bytearray()
        self.status = 0

    def write(self, data: bytes) -> None:
        room = TALLIED_ANSWER_BYTES + 1 - len(self.kept)
        if room > 0:
            self.kept += data[:room]

    def respond(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.respond_bytes(status, orjson.dumps(body), "application/json", headers)

    def respond_bytes(
        self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.write(b"HTTP/1.1 %d\r\n\r\n" % status + payload)
        self.finish(keep_alive=False)

    def respond_error(self, error: Any, headers: dict[str, str] | None = None) -> None:
        from zeroserve.errors import http_status_for

        self.respond(http_status_for(error), error.to_body(), headers)

    def finish(self, keep_alive: bool) -> None:
        self.version.tally(bytes(self.kept))
        status = int(self.kept[9:12]) if self.kept[9:12].isdigit() else 0
        if status >= 400 or status == 0:
            body = bytes(self.kept).partition(b"\r\n\r\n")[2]
            self.split.record_shadow_failure(self.version, status, body)
