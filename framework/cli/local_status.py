"""``zeroserve status --local``: what the local activator is doing, model by model."""

from __future__ import annotations

import json
from typing import Any

import click

from zeroserve.errors import UsageError


def fetch_local_status(url: str) -> dict[str, Any]:
    """GET /zeroserve/status from a running `zeroserve serve`, or UsageError saying why not."""
    import httpx

    try:
        response = httpx.get(url.rstrip("/") + "/zeroserve/status", timeout=10)
    except httpx.TransportError as exc:
        raise UsageError(
            f"no answer from {url} ({type(exc).__name__}); is `zeroserve serve` running there? "
            "(pass --url)"
        ) from None
    if response.status_code != 200:
        raise UsageError(
            f"{url} answered {response.status_code} to /zeroserve/status; is it a zeroserve "
            "activator (not `zeroserve serve --direct`)?"
        )
    body: dict[str, Any] = response.json()
    return body


def _cold_start(last: dict[str, Any] | None) -> str:
    if not last:
        return "-"
    ready = last.get("ready_s")
    first = last.get("first_response_s")
    text = f"{ready:.2f}s to ready" if ready is not None else "starting"
    if first is not None:
        text += f", {first:.2f}s to first answer"
    return f"{text} ({last.get('mode')})"


def print_local_status(url: str, name: str | None, output_format: str) -> None:
    from rich.console import Console
    from rich.table import Table

    status = fetch_local_status(url)
    models, splits, name = _selected(status, name, url)
    if output_format == "json":
        click.echo(json.dumps({**status, "models": models}, indent=2))
        return
    table = Table("model", "state", "replicas", "in flight", "held", "last cold start", "error")
    for model, item in models.items():
        ready = sum(1 for replica in item["replicas"] if replica["state"] == "ready")
        table.add_row(
            model,
            item["state"],
            f"{ready}/{len(item['replicas'])} (max {item['max_replicas']})",
            str(item["in_flight"]),
            str(item["queued"]),
            _cold_start(item["last_cold_start"]),
            item["last_error"] or "",
        )
    Console(width=160).print(table)
    if status.get("engine") == "ray":
        click.echo(f"replicas run on Ray Serve ({status['address']})")
    else:
        mode = "fork" if status["fork"] else f"spawn ({status['fork_off_reason']})"
        click.echo(f"workers start by {mode}")
    for split_name, split in splits.items():
        click.echo(_split_line(split_name, split))
    if name is not None and models[name]["last_cold_start"]:
        timeline = models[name]["last_cold_start"].get("worker_timeline") or {}
        for phase in timeline.get("phases", []):
            click.echo(f"  {phase['name']}: {phase['start_s']}s -> {phase['end_s']}s")
    ray = status.get("engine") == "ray"  # drift is counted in each replica there
    if name is not None and models[name]["state"] == "ready" and not ray:  # never wake one
        print_drift(url, name)


def _selected(
    status: dict[str, Any], name: str | None, url: str
) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """What a status for ``name`` shows: one model, the versions of a split name, or all."""
    models, splits = status["models"], status.get("splits") or {}
    if name is None:
        return models, splits, None
    if name in splits and name not in models:
        chosen = {name: splits[name]}
        return {model: models[model] for model in _members(chosen)}, chosen, None
    if name not in models:
        raise UsageError(f"model '{name}' is not served at {url} (models: {', '.join(models)})")
    return {name: models[name]}, {}, name


def _members(splits: dict[str, Any]) -> set[str]:
    return {
        member["model"]
        for split in splits.values()
        for member in [*split["versions"].values(), *([split["shadow"]] if split["shadow"] else [])]
    }


def _split_line(name: str, split: dict[str, Any]) -> str:
    """``split iris: v1 (iris-v1) 90%, v2 (iris-v2) 10%; shadow v3 (iris-v3)``"""
    shares = ", ".join(
        f"{label} ({version['model']}) {version['weight']}%"
        for label, version in split["versions"].items()
    )
    shadow = split["shadow"]
    mirrored = f"; shadow {shadow['label']} ({shadow['model']})" if shadow else ""
    return f"split {name}: {shares}{mirrored}"


def print_drift(url: str, name: str) -> None:
    """Print model NAME's drift report, fetched from the server at URL."""
    import httpx

    try:
        response = httpx.get(f"{url.rstrip('/')}/zeroserve/models/{name}/drift", timeout=10)
    except httpx.TransportError as exc:
        click.echo(f"drift: {url} is not reachable from here ({type(exc).__name__})")
        return
    if response.status_code != 200:
        click.echo(f"drift: {url} answered {response.status_code}")
        return
    report = response.json()
    if not report.get("profile"):
        click.echo("drift: no reference profile (zeroserve push --reference SAMPLE.json)")
        return
    click.echo(
        f"drift over the last {report['window_instances']} instances "
        f"(PSI threshold {report['threshold']}, flagged from {report['min_instances']}):"
    )
    for feature in report["features"]:
        flag = "DRIFTED" if feature["drifted"] else "ok"
        click.echo(f"  {feature['name']} ({feature['kind']}): PSI {feature['psi']} {flag}")
