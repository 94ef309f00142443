"""CLI commands against a cluster: deploy, status, rollout, promote, rollback, delete."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from zeroserve.cli.build import service_account_option
from zeroserve.cli.saved_models import code_for, format_option
from zeroserve.delivery.history import record
from zeroserve.errors import UsageError
from zeroserve.settings import Settings
from zeroserve.targets.kserve.audit import post_event, with_record

kubeconfig_option = click.option("--kubeconfig", default=None, help="Path to a kubeconfig.")
namespace_option = click.option("--namespace", "-n", default="default", show_default=True)


def cluster_client(kubeconfig: str | None) -> Any:
    """The cluster client of the commands that talk to Kubernetes (imported when one runs)."""
    from zeroserve.targets.kserve.cluster import Cluster

    return Cluster(kubeconfig)


@click.command("deploy")
@click.argument("target", metavar="PATH[:CLASS] | MODEL_URI")
@format_option
@namespace_option
@kubeconfig_option
@click.option("--repository", default=None, help="Artifact repository for the code package.")
@click.option("--image", default=None, help="A custom runtime image.")
@service_account_option
@click.option(
    "--canary",
    type=int,
    default=None,
    help="Send this percent of traffic to the new revision, the rest to the rolled-out one "
    "(KServe's canaryTrafficPercent, set in the same update) [default: keep the cluster's split].",
)
@click.option("--wait/--no-wait", default=False, help="Wait until the model is ready.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait.")
@click.option(
    "--force", is_flag=True, help="Overwrite changes made since this deploy read the models."
)
@click.option(
    "--require-validation",
    "validation_report",
    type=click.Path(path_type=Path),
    default=None,
    help="Refuse unless this zeroserve validate report passed, for these very files.",
)
@click.pass_obj
def deploy_command(
    settings: Settings, /, target: str, model_format: str | None, **options: Any
) -> None:
    """Package PATH, push its code, and server-side apply its InferenceServices (a saved
    model's artifact URI is served by its format's built-in predictor).

    Each InferenceService is read before the code is pushed; one that changed by the time it is
    applied (another deploy, a kubectl edit) is refused, and nothing is applied, unless --force.
    """
    from zeroserve.serving.loader import find_predictors
    from zeroserve.targets.kserve.rollout import checked_percent

    if options["canary"] is not None:
        checked_percent(options["canary"])
    report_path = options.pop("validation_report")
    validation = None
    if report_path is not None:
        from zeroserve.delivery.validate import check_report

        report = check_report(report_path, target)  # before the cluster is asked anything
        validation = {
            "report": report["digest"],
            "verdict": report["verdict"],
            "candidate": report["candidate"]["digest"],
        }
    with code_for(target, model_format, None, None) as code:
        _deploy_found(settings, find_predictors(code), validation=validation, **options)


def _note_local_traffic(spec: Any) -> None:
    """``traffic=Traffic(...)`` splits a name in `zeroserve serve`; a cluster splits revisions."""
    if spec.traffic is not None:
        click.secho(
            f"note: {spec.name}'s traffic=Traffic(route='{spec.traffic.route}') applies to "
            f"`zeroserve serve`; here {spec.name} is an InferenceService of its own. To send it "
            f"part of {spec.traffic.route}'s traffic, deploy it as {spec.traffic.route} with "
            "--canary N and step it with `zeroserve rollout --analyze`",
            err=True,
        )


def _deploy_found(
    settings: Settings,
    found: list[Any],
    *,
    validation: dict[str, str] | None,
    namespace: str,
    kubeconfig: str | None,
    repository: str | None,
    image: str | None,
    service_account: str | None,
    canary: int | None,
    wait: bool,
    timeout: float,
    force: bool,
) -> None:
    from zeroserve.cli.build import _repository
    from zeroserve.targets.kserve.package import pinned_model_uris, publish
    from zeroserve.targets.kserve.preflight import check_before_apply
    from zeroserve.targets.kserve.render import RenderOptions
    from zeroserve.targets.kserve.rollout import canary_for_deploy

    for item in found:
        _note_local_traffic(item.declaration.spec)
    cluster = cluster_client(kubeconfig)
    cluster.list_models(namespace)  # fail fast (no cluster, KServe or rights) before any push
    live = {item.name: cluster.find(item.name, namespace) for item in found}
    splits = {item.name: canary_for_deploy(item.name, live[item.name], canary) for item in found}
    model_uris = pinned_model_uris(found)  # before any push: an unreadable store stops here
    with tempfile.TemporaryDirectory() as scratch:
        code_uri, _ = publish(found, _repository(settings, repository), Path(scratch))
    isvcs = {}
    options = RenderOptions(
        namespace=namespace,
        code_uri=code_uri,
        image=image,
        service_account=service_account,
        model_uris=model_uris,
    )
    records = {}
    for item in found:
        isvc = _rendered(item.declaration.spec, options)
        isvc["spec"]["predictor"].update(_canary_field(splits[item.name]))
        records[item.name] = record(
            "deploy",
            item.name,
            namespace=namespace,
            spec_digest=isvc["metadata"]["annotations"].get("zeroserve.dev/spec-digest"),
            code=code_uri,
            weights=model_uris.get(item.name),
            canary=splits[item.name],
            validation=validation,
        )  # kept on the InferenceService by the same apply as the change
        isvc["metadata"]["annotations"].update(with_record(live[item.name], records[item.name]))
        isvcs[item.name] = isvc
    # all or nothing: quota, limits, references and concurrent changes checked before any apply
    new = sum(1 for name in isvcs if live[name] is None)
    for note in check_before_apply(cluster, list(isvcs.values()), namespace, new):
        click.echo(note, err=True)
    if not force:
        cluster.refuse_changed(live, namespace)
    for item in found:
        isvc = isvcs[item.name]
        applied = cluster.apply_unchanged(isvc, live[item.name], check=not force, force=force)
        generation = applied["metadata"].get("generation")
        click.echo(f"inferenceservice/{item.name} applied in {namespace} (generation {generation})")
        _note(post_event(cluster.core, applied, records[item.name]))
        _say_split(item.name, canary, splits[item.name])
        if wait:
            _wait_ready(cluster, item.name, namespace, timeout)


def _rendered(spec: Any, options: Any) -> dict[str, Any]:
    from zeroserve.targets.kserve.cluster import writer_annotations
    from zeroserve.targets.kserve.render import render_inference_service

    isvc = render_inference_service(spec, options)
    isvc["metadata"]["annotations"].update(writer_annotations())
    return isvc


def _note(problem: str | None) -> None:
    if problem is not None:
        click.echo(problem, err=True)


def _canary_field(percent: int | None) -> dict[str, int]:
    return {} if percent is None else {"canaryTrafficPercent": percent}


def _say_split(name: str, asked: int | None, split: int | None) -> None:
    if asked is not None:
        rest = 100 - asked
        click.echo(f"{name}: the new revision gets {asked}% of traffic, the rolled-out one {rest}%")
    elif split is not None:
        click.echo(
            f"{name}: kept the cluster's canary split ({split}% to the latest revision); "
            "`zeroserve promote` or `zeroserve rollback` ends it"
        )


def _wait_ready(cluster: Any, name: str, namespace: str, timeout: float) -> None:
    from zeroserve.targets.kserve.rollout import ModelStatus

    deadline = time.monotonic() + timeout
    console = Console(stderr=True)
    with console.status(f"waiting for {name}") as spinner:
        while True:
            status = ModelStatus.of(cluster.get(name, namespace))
            if status.ready:
                break
            pending = [c for c in status.conditions if c.get("status") != "True"]
            detail = (
                "; ".join(
                    f"{c.get('type')}: {c.get('reason') or ''} {c.get('message') or ''}".strip()
                    for c in pending
                )
                or "no conditions reported yet"
            )
            if time.monotonic() > deadline:
                raise UsageError(
                    f"{name} not ready after {timeout:.0f}s; last conditions: {detail}"
                )
            spinner.update(f"waiting for {name}: {detail}")
            time.sleep(1)
    click.echo(f"{name} is ready at {status.url}")


@click.command("status")
@click.argument("name", required=False)
@namespace_option
@kubeconfig_option
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["table", "json"]), default="table"
)
@click.option("--drift", is_flag=True, help="With NAME: ask the model itself for its input drift.")
@click.option("--local", is_flag=True, help="Ask a local `zeroserve serve` instead of a cluster.")
@click.option(
    "--engine",
    type=click.Choice(["kserve", "local", "ray"]),
    default=None,
    help="Where the models run [default: kserve; local as --local; ray: ask the front of a "
    "`zeroserve serve --engine ray` at --url].",
)
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="With --local.")
def status_command(
    name: str | None,
    namespace: str,
    kubeconfig: str | None,
    output_format: str,
    drift: bool,
    local: bool,
    engine: str | None,
    url: str,
) -> None:
    """One line per model, or NAME's conditions and recent events (--local: state, replicas,
    held requests and the last cold start of each model on a local `zeroserve serve`)."""
    if local or engine in ("local", "ray"):
        from zeroserve.cli.local_status import print_local_status

        print_local_status(url, name, output_format)
        return
    from zeroserve.targets.kserve.rollout import ModelStatus

    cluster = cluster_client(kubeconfig)
    items = [cluster.get(name, namespace)] if name else cluster.list_models(namespace)
    statuses = [ModelStatus.of(item) for item in items]
    replicas = {status.name: cluster.replicas(status.name, namespace) for status in statuses}
    cold_starts = cluster.cold_starts(namespace)
    if output_format == "json":
        rows = [
            {
                **dataclasses.asdict(status),
                "replicas": replicas[status.name],
                "last_cold_start": cold_starts.get(status.name),
            }
            for status in statuses
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    _print_table(statuses, replicas, cold_starts)
    if name:
        _print_detail(cluster, statuses[0], namespace)
        if drift:
            _print_drift_unless_at_zero(statuses[0], replicas[name])


def _print_table(
    statuses: list[Any], replicas: dict[str, int], cold_starts: dict[str, dict[str, Any]]
) -> None:
    table = Table(
        "name", "ready", "url", "replicas", "latest", "rolled out", "traffic", "last cold start"
    )
    for status in statuses:
        last = cold_starts.get(status.name)
        table.add_row(
            status.name,
            "yes" if status.ready else "no",
            status.url,
            str(replicas[status.name]),
            status.latest_revision,
            status.rolled_out_revision,
            status.traffic_text(),
            last["message"].split(":")[0].removeprefix("cold start ") if last else "",
        )
    Console(width=200).print(table)


def _print_detail(cluster: Any, status: Any, namespace: str) -> None:
    """Traffic, conditions and the model's last events (its cold starts among them)."""
    for share in status.traffic:
        click.echo(f"traffic {share}")
    for condition in status.conditions:
        click.echo(
            f"condition {condition.get('type')}={condition.get('status')} "
            f"{condition.get('reason') or ''} {condition.get('message') or ''}".rstrip()
        )
    for event in cluster.events(status.name, namespace)[-10:]:
        click.echo(f"event {event['time']} {event['type']} {event['reason']}: {event['message']}")


def _print_drift_unless_at_zero(status: Any, replicas: int) -> None:
    """Drift is counted by a running pod: asking a model at zero would wake it (and find an
    empty window), so it is not asked."""
    if replicas == 0:
        click.echo(
            f"{status.name} is at zero (no pod running): drift is counted by a running pod, so "
            "there is none to report and the model was not woken; ask again while it serves"
        )
    elif not (status.ready and status.url):
        click.echo(f"{status.name} is not ready: no drift to ask for yet")
    else:
        from zeroserve.cli.local_status import print_drift

        print_drift(status.url, status.name)


@click.command("promote")
@click.argument("name")
@namespace_option
@kubeconfig_option
def promote_command(name: str, namespace: str, kubeconfig: str | None) -> None:
    """Give NAME's latest revision all traffic (ends the canary)."""
    from zeroserve.targets.kserve.rollout import check_promote

    _change_canary(name, namespace, kubeconfig, None, check_promote, "promote")
    click.echo(f"{name}: latest revision promoted to 100% of traffic")


@click.command("rollback")
@click.argument("name")
@namespace_option
@kubeconfig_option
def rollback_command(name: str, namespace: str, kubeconfig: str | None) -> None:
    """Pin all of NAME's traffic to its last rolled-out revision (canaryTrafficPercent: 0)."""
    from zeroserve.targets.kserve.rollout import check_rollback

    rolled_out = _change_canary(name, namespace, kubeconfig, 0, check_rollback, "rollback")
    click.echo(f"{name}: all traffic back to {rolled_out}")


def _change_canary(
    name: str,
    namespace: str,
    kubeconfig: str | None,
    percent: int | None,
    check: Callable[[Any], None],
    action: str,
    details: dict[str, Any] | None = None,
) -> str:
    """Check the change against the model as read, then apply it to that version only, its
    record (with ``details``: an analysis's figures) in the same apply; return the rolled-out
    revision."""
    from zeroserve.targets.kserve.cluster import writer_annotations
    from zeroserve.targets.kserve.rollout import ModelStatus

    cluster = cluster_client(kubeconfig)
    current = cluster.get(name, namespace)
    status = ModelStatus.of(current)
    check(status)
    entry = record(
        action,
        name,
        namespace=namespace,
        canary=percent,
        revision=status.latest_revision,
        rolled_out=status.rolled_out_revision,
        **(details or {}),
    )
    changes = writer_annotations() | with_record(current, entry)
    _note(post_event(cluster.core, cluster.set_canary(current, percent, changes), entry))
    return status.rolled_out_revision


@click.command("delete")
@click.argument("name")
@namespace_option
@kubeconfig_option
def delete_command(name: str, namespace: str, kubeconfig: str | None) -> None:
    """Delete NAME's InferenceService."""
    cluster_client(kubeconfig).delete(name, namespace)
    click.echo(f"inferenceservice/{name} deleted from {namespace}")
