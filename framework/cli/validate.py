"""``zeroserve validate``: judge a candidate model before it gets traffic (``delivery/``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from zeroserve.delivery.quality import GREATER_IS_BETTER, MetricThreshold
from zeroserve.errors import UsageError, ValidationFailed
from zeroserve.settings import Settings


@click.command("validate")
@click.argument("candidate", metavar="PATH[:CLASS] | MODEL_URI")
@click.option(
    "--data",
    "data_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Held-out rows: a CSV (a label column) or JSONL file.",
)
@click.option(
    "--baseline",
    default=None,
    metavar="PATH | MODEL_URI | URL",
    help="What the candidate replaces: code, a pushed model or a live server's URL.",
)
@click.option("--model", default=None, help="The model to validate, where a target serves several.")
@click.option("--label", default="label", show_default=True, help="The column of true labels.")
@click.option(
    "--task",
    type=click.Choice(["classification", "regression"]),
    default=None,
    help="[default: from the labels]",
)
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="METRIC:FIELD=VALUE",
    help="MLflow's MetricThreshold, e.g. accuracy:threshold=0.9, "
    "accuracy:min_absolute_change=-0.01, rmse:min_relative_change=-0.05. "
    "[default: the primary metric loses at most 1% of the baseline's]",
)
@click.option("--p99-budget-ms", type=float, default=None, help="The highest p99 allowed.")
@click.option(
    "--max-latency-ratio",
    type=float,
    default=2.0,
    show_default=True,
    help="The highest candidate p99 / baseline p99.",
)
@click.option(
    "--max-psi",
    type=float,
    default=0.2,
    show_default=True,
    help="The largest shift (PSI) of the predictions from the baseline's.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    default=Path("zeroserve-validation.json"),
    show_default=True,
)
@click.pass_obj
def validate_command(
    settings: Settings, /, candidate: str, data_path: Path, report_path: Path, **options: Any
) -> None:
    """Start CANDIDATE as serve would, check it on held-out data and write a report.

    Checks: it starts and answers; its request schema takes what the baseline's takes; held-out
    quality against thresholds; p50/p99 under a short load; the shift of its predictions from
    the baseline's. Exit code 0 when every check passes, 8 when one fails, 2 for bad input.
    """
    from zeroserve.delivery.heldout import read_held_out
    from zeroserve.delivery.history import append, record
    from zeroserve.delivery.validate import Plan, validate

    thresholds = [parse_threshold(text) for text in options.pop("thresholds")]
    plan = Plan(
        candidate=candidate,
        data=read_held_out(data_path, options.pop("label")),
        thresholds=thresholds,
        **options,
    )
    console = Console(stderr=True)
    with console.status("validating") as status:
        report = validate(plan, lambda step: status.update(step))
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    append(
        record(
            "validate",
            report["model"],
            candidate=candidate,
            candidate_digest=report["candidate"]["digest"],
            baseline=options["baseline"],
            verdict=report["verdict"],
            report=report["digest"],
            report_path=str(report_path.resolve()),
        )
    )
    console.print(_table(report))
    click.echo(f"report: {report_path} ({report['digest']})")
    if report["verdict"] != "pass":
        failed = [check["name"] for check in report["checks"] if not check["passed"]]
        raise ValidationFailed(
            f"{candidate} failed validation ({', '.join(failed)}); see {report_path}"
        )


def parse_threshold(text: str) -> MetricThreshold:
    """``accuracy:threshold=0.9`` as a MetricThreshold; UsageError naming the mistake."""
    metric, _, rest = text.partition(":")
    name, _, value = rest.partition("=")
    fields = ("threshold", "min_absolute_change", "min_relative_change")
    if metric not in GREATER_IS_BETTER or name not in fields:
        raise UsageError(
            f"--threshold {text}: write METRIC:FIELD=VALUE with a metric of "
            f"{', '.join(GREATER_IS_BETTER)} and a field of {', '.join(fields)}"
        )
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"--threshold {text}: {value!r} is not a number") from None
    return MetricThreshold(metric, **{name: number})


def _table(report: dict[str, Any]) -> Table:
    table = Table(title=f"validation of {report['model']}: {report['verdict']}")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    for check in report["checks"]:
        mark = "[green]pass[/green]" if check["passed"] else "[red]FAIL[/red]"
        table.add_row(check["name"], mark, check["detail"])
    return table
