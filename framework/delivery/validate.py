"""``zeroserve validate``: a candidate model judged before it gets traffic.

The candidate is started in a real worker, as ``serve`` starts it (a baseline too, or a live
baseline is asked at its URL), and checked in order:

1. ``starts``: it loads and answers every held-out row (and, with a baseline, its request schema
   takes every request the baseline's takes: ``delivery.compat``);
2. ``quality``: the task's metrics on the held-out rows against MLflow-style thresholds, absolute
   and relative to the baseline (``delivery.quality``);
3. ``latency``: p50/p99 and throughput over a short load, against a p99 budget and the baseline
   (alternating rounds, as every benchmark here measures);
4. ``shift``: the candidate's predictions against the baseline's on the same rows (PSI).

The report (JSON) names the candidate's and the data's digests and carries its own, over its
canonical JSON; ``deploy --require-validation REPORT`` checks all three.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zeroserve.coldstart.manifest import FileEntry, digest_of, hash_file
from zeroserve.delivery.compat import breaking_changes
from zeroserve.delivery.heldout import HeldOut
from zeroserve.delivery.probe import Refused, Served, StartFailed, latency_figures, served
from zeroserve.delivery.quality import PRIMARY, MetricThreshold, metrics, shift, task_of
from zeroserve.errors import UsageError

REPORT_VERSION = 1
LOAD_ROUNDS = 2


@dataclass
class Plan:
    """What to validate, against what, and the limits (see ``zeroserve validate --help``)."""

    candidate: str
    data: HeldOut
    baseline: str | None = None
    model: str | None = None
    task: str | None = None
    thresholds: list[MetricThreshold] = field(default_factory=list)
    p99_budget_ms: float | None = None
    max_latency_ratio: float = 2.0
    max_psi: float = 0.2
    load_seconds: float = 1.0
    clients: int = 4


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def validate(plan: Plan, progress: Callable[[str], None] = lambda step: None) -> dict[str, Any]:
    """The report for ``plan``; UsageError where the input is wrong (nothing judged then)."""
    task = plan.task or task_of(plan.data.labels)
    for target in (plan.candidate, plan.baseline):
        if target is not None and not _reachable(target):
            raise UsageError(f"{target} does not exist; pass a model file, folder, URI or URL")
    with contextlib.ExitStack() as stack:
        progress("starting the candidate")
        try:
            candidate = stack.enter_context(served(plan.candidate, plan.model))
        except StartFailed as exc:  # the first check, failed: reported, not bad input
            unstarted = Served(plan.candidate, "", plan.model or "?")
            return _report(plan, task, unstarted, None, [Check("starts", False, str(exc))], {})
        baseline = None
        if plan.baseline is not None:
            progress("starting the baseline")
            baseline = stack.enter_context(served(plan.baseline, plan.model or candidate.model))
        progress("asking for predictions")
        checks, figures = _judge(plan, task, candidate, baseline, progress)
    return _report(plan, task, candidate, baseline, checks, figures)


def _judge(
    plan: Plan,
    task: str,
    candidate: Served,
    baseline: Served | None,
    progress: Callable[[str], None],
) -> tuple[list[Check], dict[str, Any]]:
    instances, labels = plan.data.instances, plan.data.labels
    old = _baseline_predictions(baseline, instances)
    checks = [_schema_check(candidate, baseline)]
    try:
        new = candidate.predictions(instances)
    except Refused as exc:
        checks.insert(0, Check("starts", False, f"answered {exc.status}: {exc.message}"))
        return checks, {}
    checks.insert(0, Check("starts", True, f"answered all {len(instances)} held-out rows"))
    figures: dict[str, Any] = {"metrics": {"candidate": metrics(task, labels, new)}}
    if old is not None:
        figures["metrics"]["baseline"] = metrics(task, labels, old)
    checks.append(_quality_check(plan, task, figures["metrics"]))
    progress("measuring latency")
    figures["latency"] = _latency(plan, candidate, baseline)
    checks.append(_latency_check(plan, figures["latency"]))
    if old is not None:
        figures["shift"] = shift(task, old, new)
        psi = figures["shift"]["psi"]
        detail = f"PSI {psi:.4f} of the predictions against the baseline's (limit {plan.max_psi})"
        checks.append(Check("shift", psi <= plan.max_psi, detail))
    return checks, figures


def _reachable(target: str) -> bool:
    """A URL or URI (its store says whether it exists), or a path that exists (PATH[:CLASS])."""
    return "://" in target or Path(target).exists() or Path(target.rsplit(":", 1)[0]).exists()


def _baseline_predictions(baseline: Served | None, instances: list[Any]) -> list[Any] | None:
    if baseline is None:
        return None
    try:
        return baseline.predictions(instances)
    except Refused as exc:
        raise UsageError(
            f"the baseline refuses the held-out data ({exc.status}: {exc.message}); the data "
            "does not match the model's schema: fix --data (or --label)"
        ) from None


def _schema_check(candidate: Served, baseline: Served | None) -> Check:
    if baseline is None:
        return Check("schema", True, "no baseline to compare with")
    broken = breaking_changes(baseline.schema(), candidate.schema())
    if broken:
        return Check("schema", False, "breaking: " + "; ".join(broken))
    return Check("schema", True, "takes every request the baseline takes")


def _quality_check(plan: Plan, task: str, found: dict[str, dict[str, float]]) -> Check:
    thresholds = plan.thresholds or [_default_threshold(task, "baseline" in found)]
    failures = []
    for threshold in thresholds:
        if threshold.metric not in found["candidate"]:
            raise UsageError(
                f"--threshold names {threshold.metric}, not a {task} metric "
                f"({', '.join(found['candidate'])})"
            )
        before = found.get("baseline", {}).get(threshold.metric)
        failures += threshold.failures(found["candidate"][threshold.metric], before)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in found["candidate"].items())
    return Check("quality", not failures, "; ".join(failures) or shown)


def _default_threshold(task: str, with_baseline: bool) -> MetricThreshold:
    """Without thresholds: the primary metric may lose at most 1% of the baseline's value."""
    return MetricThreshold(PRIMARY[task], min_relative_change=-0.01 if with_baseline else None)


def _latency(plan: Plan, candidate: Served, baseline: Served | None) -> dict[str, Any]:
    sides = {"candidate": candidate} | ({"baseline": baseline} if baseline else {})
    seen: dict[str, list[float]] = {name: [] for name in sides}
    for round_index in range(LOAD_ROUNDS):
        order = list(sides) if round_index % 2 == 0 else list(sides)[::-1]
        for name in order:
            seen[name] += sides[name].load(plan.data.instances, plan.load_seconds, plan.clients)
    seconds = plan.load_seconds * LOAD_ROUNDS
    return {name: latency_figures(values, seconds) for name, values in seen.items()}


def _latency_check(plan: Plan, found: dict[str, Any]) -> Check:
    p99 = found["candidate"]["p99_ms"]
    failures = []
    if plan.p99_budget_ms is not None and p99 > plan.p99_budget_ms:
        failures.append(f"p99 {p99:.1f} ms over the budget of {plan.p99_budget_ms:g} ms")
    if "baseline" in found:
        ratio = p99 / max(found["baseline"]["p99_ms"], 1e-6)
        if ratio > plan.max_latency_ratio:
            failures.append(
                f"p99 {p99:.1f} ms is {ratio:.2f}x the baseline's "
                f"(limit {plan.max_latency_ratio:g}x)"
            )
    shown = f"p50 {found['candidate']['p50_ms']:.2f} ms, p99 {p99:.2f} ms"
    return Check("latency", not failures, "; ".join(failures) or shown)


def _report(
    plan: Plan,
    task: str,
    candidate: Served,
    baseline: Served | None,
    checks: list[Check],
    figures: dict[str, Any],
) -> dict[str, Any]:
    report = {
        "zeroserve_validation": REPORT_VERSION,
        "model": candidate.model,
        "candidate": {"target": plan.candidate, "digest": target_digest(plan.candidate)},
        "baseline": None
        if baseline is None
        else {"target": plan.baseline, "digest": target_digest(baseline.target)},
        "data": {
            "path": str(plan.data.path),
            "rows": len(plan.data.labels),
            "digest": plan.data.digest,
        },
        "task": task,
        "checks": [vars(check) for check in checks],
        **figures,
        "verdict": "pass" if all(check.passed for check in checks) else "fail",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    return {**report, "digest": report_digest(report)}


def report_digest(report: dict[str, Any]) -> str:
    """sha256 of the report's canonical JSON, its own ``digest`` left out."""
    body = {key: value for key, value in report.items() if key != "digest"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def target_digest(target: str) -> str:
    """sha256 over what ``serve TARGET`` serves: a URL or URI as written (a pushed version is
    pinned by its own digest), else every file of the target's folder (code and weights)."""
    path = Path(target)
    if "://" not in target and not path.exists():
        path = Path(target.rsplit(":", 1)[0])  # PATH:CLASS
    if "://" in target or not path.exists():
        return "sha256:" + hashlib.sha256(target.encode()).hexdigest()
    folder = path if path.is_dir() else path.parent
    files = [
        FileEntry(file.relative_to(folder).as_posix(), file.stat().st_size, hash_file(file))
        for file in _served_files(folder)
    ]
    return digest_of(files)  # as a pushed artifact's manifest digests its files


def _served_files(folder: Path) -> Iterator[Path]:
    for file in folder.rglob("*"):
        parts = file.relative_to(folder).parts
        if file.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in parts):
            yield file


def check_report(report_path: Path, target: str) -> dict[str, Any]:
    """The report that allows deploying ``target``; UsageError saying why it does not."""
    hint = f"run zeroserve validate {target} --data HELDOUT --report {report_path} first"
    if not report_path.is_file():
        raise UsageError(f"--require-validation: {report_path} does not exist; {hint}")
    try:
        report = json.loads(report_path.read_text())
    except ValueError:
        raise UsageError(f"--require-validation: {report_path} is not a JSON report") from None
    if not isinstance(report, dict) or report.get("digest") != report_digest(report):
        raise UsageError(f"--require-validation: {report_path} was changed after it was written")
    if report.get("verdict") != "pass":
        failed = [c["name"] for c in report.get("checks", []) if not c.get("passed")]
        raise UsageError(f"--require-validation: the candidate failed {', '.join(failed)}")
    if report["candidate"]["digest"] != target_digest(target):
        raise UsageError(
            f"--require-validation: {report_path} validated other code or weights than {target} "
            f"(changed since); {hint}"
        )
    return report
