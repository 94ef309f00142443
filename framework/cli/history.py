"""``zeroserve history NAME``: every recorded change of a model, oldest first."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from zeroserve.cli.deploy import cluster_client, kubeconfig_option, namespace_option


@click.command("history")
@click.argument("name")
@namespace_option
@kubeconfig_option
@click.option(
    "--local",
    is_flag=True,
    help="This machine's records (zeroserve validate verdicts) instead of the cluster's.",
)
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["table", "json"]), default="table"
)
def history_command(
    name: str, namespace: str, kubeconfig: str | None, local: bool, output_format: str
) -> None:
    """NAME's deploys, rollout steps, promotes and rollbacks as its InferenceService keeps them
    (who, when, the spec, code and weights digests, the validation report's digest and verdict,
    the split); --local: the validations recorded on this machine."""
    from zeroserve.delivery.history import history_file, local_history
    from zeroserve.targets.kserve.audit import HISTORY, details, history_of

    if local:
        entries, where = local_history(name), str(history_file())
    else:
        entries = history_of(cluster_client(kubeconfig).get(name, namespace))
        where = f"the {HISTORY} annotation of inferenceservice {name} in {namespace}"
    if output_format == "json":
        click.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        click.echo(f"no records of {name} in {where}")
        return
    table = Table("time", "action", "who", "details", title=f"history of {name}")
    for entry in entries:
        table.add_row(entry["time"], entry["action"], entry["who"], details(entry))
    Console(width=200).print(table)
