"""``zeroserve rollout NAME``: move a canary's share of traffic, or step it with an analysis.

On a cluster ``--canary P`` sets the InferenceService's ``canaryTrafficPercent``; with ``--local``
it sets the weights of a local ``zeroserve serve --split``. ``--analyze`` steps the candidate's
share (10 -> 25 -> 50 -> 100) every ``--interval`` while the analysis holds, and rolls back at
the first failed interval (``zeroserve.delivery.canary``). On a cluster the figures are the pods'
own, read from Prometheus (``--prometheus``); locally the activator's counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from zeroserve.cli.deploy import _change_canary, kubeconfig_option, namespace_option
from zeroserve.errors import UsageError

if TYPE_CHECKING:
    from zeroserve.delivery.analysis import Window
    from zeroserve.delivery.canary import LocalSplit, TrafficControl
    from zeroserve.delivery.prometheus import PrometheusFigures


def analysis_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The analysis's limits, with Flagger's and Kayenta's defaults."""
    options = [
        click.option("--steps", default=None, help="Rising percents [default: 10,25,50,100]."),
        click.option("--interval", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
                     help="Seconds at each step before it is judged."),
        click.option("--min-success-rate", type=click.FloatRange(0, 100), default=99.0,
                     show_default=True,
                     help="Percent of the candidate's answers that must not be 5xx."),
        click.option("--max-p99-ms", type=click.FloatRange(min=0), default=500.0,
                     show_default=True, help="Largest p99 latency of the candidate."),
        click.option("--max-latency-ratio", type=click.FloatRange(min=1), default=1.5,
                     show_default=True,
                     help="A candidate significantly slower (Mann-Whitney U, p < 0.05) fails "
                     "when its median latency is over this many times the baseline's."),
        click.option("--max-psi", type=click.FloatRange(min=0), default=0.2, show_default=True,
                     help="Largest shift of the predicted classes (PSI) against the baseline's."),
        click.option("--min-requests", type=click.IntRange(min=1), default=20, show_default=True,
                     help="Fewer answers on a side in an interval: no verdict, the step waits."),
        click.option("--max-waits", type=click.IntRange(min=1), default=3, show_default=True,
                     help="Intervals without a verdict before the rollout rolls back (without "
                     "figures: stops where it is)."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


@click.command("rollout")
@click.argument("name")
@click.option("--canary", type=int, default=None, help="Percent of traffic for the candidate.")
@click.option(
    "--analyze", is_flag=True, help="Step the candidate's share while the analysis holds."
)
@click.option(
    "--local", is_flag=True, help="A local `zeroserve serve --split` instead of a cluster."
)
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="With --local.")
@click.option(
    "--candidate", default=None, help="With --local: the version rolled out [default: the one "
    "with less traffic now]."
)  # fmt: skip
@click.option(
    "--prometheus",
    default=None,
    metavar="URL",
    help="With --analyze on a cluster: the Prometheus that scrapes the model pods (the "
    "PodMonitor in manifests/monitoring).",
)
@click.option(
    "--scrape-interval",
    type=float,
    default=15.0,
    show_default=True,
    help="With --prometheus: how often it scrapes the pods (the PodMonitor's interval).",
)
@analysis_options
@namespace_option
@kubeconfig_option
def rollout_command(
    name: str,
    canary: int | None,
    analyze: bool,
    local: bool,
    url: str,
    candidate: str | None,
    prometheus: str | None,
    scrape_interval: float,
    namespace: str,
    kubeconfig: str | None,
    **limits: float,
) -> None:
    """Move the split of a canary in progress: CANARY percent to NAME's latest revision (or, with
    --local, to the candidate version of a `serve --split`), the rest to the one serving now.
    With --analyze, step it up while the candidate holds and roll back when it does not."""
    from zeroserve.targets.kserve.rollout import checked_percent

    if canary is not None:
        checked_percent(canary)
    if candidate is not None and not local:
        raise UsageError("--candidate names a version of a local split: add --local")
    if analyze:
        from zeroserve.delivery.canary import steps_from

        steps_from(limits["steps"], canary)  # type: ignore[arg-type]  # bad steps: nothing asked
        if local:
            control: TrafficControl = _local_split(url, name, candidate)
        else:
            control = _cluster_canary(name, namespace, kubeconfig, prometheus, scrape_interval)
        _analyze(control, canary, limits)
    elif canary is None:
        raise UsageError("give --canary PERCENT, or --analyze to step it with an analysis")
    elif local:
        split = _local_split(url, name, candidate)
        split.change(canary, "rollout", {})
        click.echo(
            f"{name}: {split.candidate} gets {canary}% of traffic, {split.baseline} the rest"
        )
    else:
        from zeroserve.targets.kserve.rollout import check_rollout

        _change_canary(name, namespace, kubeconfig, canary, check_rollout, "rollout")
        click.echo(f"{name}: latest revision gets {canary}% of traffic")


def _local_split(url: str, name: str, candidate: str | None) -> LocalSplit:
    from zeroserve.delivery.canary import FiguresUnavailable, LocalSplit

    try:
        return LocalSplit(url, name, candidate)
    except FiguresUnavailable as exc:
        raise UsageError(
            f"cannot reach `zeroserve serve` at {url} ({exc}); is it running?"
        ) from None


def _cluster_canary(
    name: str, namespace: str, kubeconfig: str | None, url: str | None, scrape_interval: float
) -> ClusterCanary:
    from zeroserve.delivery.canary import FiguresUnavailable
    from zeroserve.delivery.prometheus import PrometheusFigures

    if url is None:
        raise UsageError(
            "rollout --analyze on a cluster judges the pods' metrics: give --prometheus URL (the "
            "Prometheus that scrapes them), or --local for a local `zeroserve serve --split`"
        )
    figures = PrometheusFigures(url, namespace, scrape_interval)
    try:
        figures.check()
    except FiguresUnavailable as exc:
        raise UsageError(f"{exc}; nothing was changed") from None
    return ClusterCanary(name, namespace, kubeconfig, figures)


class ClusterCanary:
    """An InferenceService's canary: its share set through ``canaryTrafficPercent`` (with the
    record and Event of each change), its figures its revisions' pods' in Prometheus."""

    def __init__(
        self, name: str, namespace: str, kubeconfig: str | None, figures: PrometheusFigures
    ) -> None:
        from zeroserve.cli.deploy import cluster_client
        from zeroserve.targets.kserve.rollout import ModelStatus, check_rollback

        status = ModelStatus.of(cluster_client(kubeconfig).get(name, namespace))
        check_rollback(status)  # a rolled-out revision other than the latest: a canary to judge
        self.name, self.namespace, self.kubeconfig = name, namespace, kubeconfig
        self.candidate, self.baseline = status.latest_revision, status.rolled_out_revision
        self.figures = figures
        self.since = time.time()

    def change(self, percent: int, action: str, details: dict[str, Any]) -> None:
        from zeroserve.targets.kserve.rollout import check_promote, check_rollback

        check = {"promote": check_promote, "rollback": check_rollback}.get(action, _no_check)
        share = None if action == "promote" else percent
        fields = {"candidate": self.candidate, "baseline": self.baseline, **details}
        _change_canary(self.name, self.namespace, self.kubeconfig, share, check, action, fields)

    def windows(self) -> tuple[Window, Window]:
        now = time.time()
        seconds, self.since = now - self.since, now
        window = self.figures.window
        return window(self.candidate, seconds, now), window(self.baseline, seconds, now)


def _no_check(status: Any) -> None:
    """A step of an analysed rollout may start the split (a deploy left the canary at 0)."""


def _analyze(control: TrafficControl, canary: int | None, options: dict[str, float]) -> None:
    from zeroserve.delivery.analysis import Limits
    from zeroserve.delivery.canary import Rollout, steps_from

    limits = Limits(
        min_success_rate=options["min_success_rate"] / 100,
        max_p99_s=options["max_p99_ms"] / 1000,
        max_latency_ratio=options["max_latency_ratio"],
        max_psi=options["max_psi"],
        min_requests=int(options["min_requests"]),
    )
    steps = steps_from(options["steps"], canary)  # type: ignore[arg-type]
    click.echo(
        f"{control.name}: rolling out {control.candidate} over {control.baseline} in steps "
        f"{steps}, judged every {options['interval']:g}s"
    )
    Rollout(
        control, steps, options["interval"], limits, int(options["max_waits"]), click.echo
    ).run()
