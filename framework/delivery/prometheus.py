"""A revision's figures over an interval, from Prometheus: the model pods' own metrics as the
PodMonitor in ``manifests/monitoring`` has them scraped, through PromQL.

The PodMonitor copies each pod's ``serving.knative.dev/revision`` label onto its series
(``podTargetLabels``; the Prometheus Operator names it ``serving_knative_dev_revision``), so one
selector picks a canary's pods and another the rolled-out revision's. From each pod:

- requests: ``request_predict_seconds_count`` (KServe's, every predict, failed ones too);
- failures: ``zeroserve_errors_total`` with a 5xx ``status``;
- latency: the histogram's p99 over the interval, and, for the Mann-Whitney U test, the mean
  latency at every scrape step of it (Kayenta compares such series, not single requests);
- outputs: ``zeroserve_prediction_outputs_total`` by predicted ``value``.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from zeroserve.delivery.analysis import Window
from zeroserve.delivery.canary import FiguresUnavailable

REVISION_LABEL = "serving_knative_dev_revision"


class PrometheusFigures:
    """PromQL against ``url`` for the pods of one namespace; ``step_s`` is the scrape interval."""

    def __init__(self, url: str, namespace: str, step_s: float) -> None:
        self.url = url.rstrip("/")
        self.namespace = namespace
        self.step_s = step_s
        self.http = httpx.Client(timeout=10)

    def check(self) -> None:
        """FiguresUnavailable unless Prometheus answers a query."""
        self._query("vector(1)", None)

    def window(self, revision: str, seconds: float, at: float) -> Window:
        """``revision``'s figures over the ``seconds`` before ``at`` (a Unix time)."""
        selector = f'namespace="{self.namespace}",{REVISION_LABEL}="{revision}"'
        span = f"{max(round(seconds), 1)}s"
        requests = self._number(
            f"sum(increase(request_predict_seconds_count{{{selector}}}[{span}]))", at
        )
        failures = self._number(
            f'sum(increase(zeroserve_errors_total{{{selector},status=~"5.."}}[{span}]))', at
        )
        p99 = self._number(
            "histogram_quantile(0.99, sum by (le) "
            f"(rate(request_predict_seconds_bucket{{{selector}}}[{span}])))",
            at,
        )
        rate_span = f"{max(round(3 * self.step_s), 2)}s"  # three scrapes: rate needs two
        means = self._series(
            f"sum(rate(request_predict_seconds_sum{{{selector}}}[{rate_span}])) / "
            f"sum(rate(request_predict_seconds_count{{{selector}}}[{rate_span}]))",
            at - seconds,
            at,
        )
        outputs = self._query(
            f"sum by (value) (increase(zeroserve_prediction_outputs_total{{{selector}}}[{span}]))",
            at,
        )
        classes = {
            str(item["metric"].get("value", "")): round(float(item["value"][1])) for item in outputs
        }
        return Window(
            round(requests or 0),
            round(failures or 0),
            means,
            {value: count for value, count in classes.items() if count > 0},
            p99_s=p99,
        )

    def _number(self, query: str, at: float) -> float | None:
        result = self._query(query, at)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def _series(self, query: str, start: float, end: float) -> list[float]:
        params = {"query": query, "start": start, "end": end, "step": self.step_s}
        result = self._api("query_range", params)
        values = [float(v) for item in result for _, v in item["values"]]
        return [value for value in values if not math.isnan(value)]

    def _query(self, query: str, at: float | None) -> list[dict[str, Any]]:
        return self._api("query", {"query": query, **({"time": at} if at else {})})

    def _api(self, endpoint: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            response = self.http.get(f"{self.url}/api/v1/{endpoint}", params=params)
        except httpx.TransportError as exc:
            raise FiguresUnavailable(f"Prometheus at {self.url}: {exc}") from None
        try:
            found = response.json()
        except ValueError:
            found = {}
        if response.status_code != 200 or found.get("status") != "success":
            error = found.get("error") or response.text[:200]
            raise FiguresUnavailable(f"Prometheus at {self.url}: {error}")
        result: list[dict[str, Any]] = found["data"]["result"]
        return result
