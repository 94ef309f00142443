"""CLI commands for model artifacts and the cache: push, models ls, cache ls|warm|verify|gc."""

from __future__ import annotations

import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from zeroserve.coldstart import ArtifactNotFound, ModelCache, list_versions, push, resolve
from zeroserve.errors import UsageError
from zeroserve.settings import Settings, parse_size


def _labels(pairs: tuple[str, ...]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--label")
        labels[key] = value
    return labels


@click.command("push")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repository")
@click.option("--name", required=True, help="Model name, e.g. iris.")
@click.option("--version", "version", required=True, help="Immutable version, e.g. v1.")
@click.option("--label", "labels", multiple=True, help="KEY=VALUE label (repeatable).")
@click.option("--framework", default="", help="Framework metadata, e.g. sklearn==1.5.")
@click.option(
    "--reference",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='JSON sample of instances (a list, or {"instances": [...]}) to profile for drift.',
)
def push_command(
    folder: Path,
    repository: str,
    name: str,
    version: str,
    labels: tuple[str, ...],
    framework: str,
    reference: Path | None,
) -> None:
    """Upload FOLDER to REPOSITORY/NAME/VERSION with a manifest of every file's sha256.

    With --reference, the sample's profile is saved in FOLDER first (zeroserve-reference.json)
    and travels with the model: serving compares live inputs with it."""
    if reference is not None:
        from zeroserve.telemetry.drift import write_profile

        saved = write_profile(reference, folder)
        click.echo(f"reference profile saved as {saved}", err=True)
    meta = {"framework": framework} if framework else {}
    with Console(stderr=True).status(f"hashing and uploading {folder}"):
        manifest, uploaded = push(
            folder, repository, name=name, version=version, labels=_labels(labels), framework=meta
        )
    state = "pushed" if uploaded else "already there (same content)"
    click.echo(
        f"{repository.rstrip('/')}/{name}@{version} {state}: {manifest.digest} "
        f"({len(manifest.files)} files, {manifest.total_bytes} bytes)"
    )


@click.group("models")
def models_group() -> None:
    """Inspect pushed model versions."""


@models_group.command("ls")
@click.argument("location", metavar="REPOSITORY/NAME")
def models_ls(location: str) -> None:
    """List the versions pushed under REPOSITORY/NAME, oldest first."""
    versions = list_versions(location)
    if not versions:
        raise ArtifactNotFound(
            f"{location}: no versions pushed there; check the repository and name, or push "
            "one with `zeroserve push FOLDER REPOSITORY --name NAME --version v1`"
        )
    table = Table("version", "digest", "files", "bytes", "created", "labels")
    for manifest in versions:
        created = datetime.datetime.fromtimestamp(manifest.created, datetime.UTC)
        labels = ",".join(f"{k}={v}" for k, v in sorted(manifest.labels.items()))
        table.add_row(
            manifest.version,
            manifest.digest[:19] + "…",
            str(len(manifest.files)),
            str(manifest.total_bytes),
            created.strftime("%Y-%m-%d %H:%M:%S"),
            labels,
        )
    Console().print(table)


@click.group("cache")
@click.option(
    "--cache",
    "root",
    type=click.Path(path_type=Path),
    default=None,
    help="Cache folder [default: ZEROSERVE_CACHE__ROOT or ~/.cache/zeroserve/models].",
)
@click.option("--budget", default=None, help="Cache budget, e.g. 50GiB.")
@click.pass_context
def cache_group(ctx: click.Context, root: Path | None, budget: str | None) -> None:
    """Inspect and maintain the local model cache."""
    settings: Settings = ctx.obj
    try:
        size = settings.cache.budget if budget is None else parse_size(budget)
    except ValueError as exc:
        raise UsageError(f"--budget: {exc}") from None
    folder = root or settings.cache.root
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--cache {folder} is a file; pass a folder (it is made if missing)")
    ctx.obj = ModelCache(folder, int(str(size)))


@cache_group.command("ls")
@click.pass_obj
def cache_ls(cache: ModelCache) -> None:
    """Entries, least recently used first."""
    table = Table("digest", "name", "bytes", "last used", "in use")
    for entry in cache.entries():
        used = datetime.datetime.fromtimestamp(entry.last_used, datetime.UTC)
        table.add_row(
            entry.digest[:19] + "…",
            entry.name,
            str(entry.size),
            used.strftime("%Y-%m-%d %H:%M:%S"),
            "yes" if entry.leased else "",
        )
    Console().print(table)


@cache_group.command("warm")
@click.argument("reference")
@click.pass_obj
def cache_warm(cache: ModelCache, reference: str) -> None:
    """Fetch REFERENCE into the cache now (e.g. before scaling from zero)."""
    artifact = resolve(reference)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(str(artifact.ref), total=artifact.manifest.total_bytes)
        lease = cache.materialize(
            artifact, progress=lambda size: progress.advance(task, size), notice=click.echo
        )
    lease.release()
    click.echo(f"{artifact.ref}: {'already cached' if lease.hit else 'fetched'} at {lease.path}")


@cache_group.command("verify")
@click.pass_obj
def cache_verify(cache: ModelCache) -> None:
    """Rehash every entry; corrupt ones are removed and refetched on next use."""
    problems = cache.verify()
    for problem in problems:
        click.echo(problem)
    click.echo(f"{len(cache.entries())} entries intact, {len(problems)} removed")
    if problems:
        raise SystemExit(1)


@cache_group.command("gc")
@click.pass_obj
def cache_gc(cache: ModelCache) -> None:
    """Remove leftovers of killed fills and evict least-used entries over the budget."""
    for removed in cache.gc():
        click.echo(f"removed {removed}")
    used = sum(entry.size for entry in cache.entries())
    click.echo(f"{used} of {cache.budget_bytes} bytes used")
