"""CLI commands that prepare a cluster deploy: render, package, build."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import click
import yaml

from zeroserve.cli.saved_models import code_for, format_option
from zeroserve.errors import UsageError
from zeroserve.settings import Settings

service_account_option = click.option(
    "--service-account",
    default="zeroserve-model",
    show_default=True,
    help="Service account the pods run as (the kit's may write their ColdStart events).",
)

DOCKERFILE = """\
# syntax=docker/dockerfile:1
# Built by `zeroserve build`: for models that need system packages or compiled extensions.
# Most models need no image of their own: they run in the shared zeroserve runtime, which also
# installs a model's locked requirements itself. This image derives from that runtime (zeroserve
# is not installed from PyPI): pass --build-arg RUNTIME=... to build on another copy of it.
ARG RUNTIME=ghcr.io/zeroserve/runtime:{version}
FROM ${{RUNTIME}}
# where a network needs its own CA for PyPI: mount the bundle and name it here
ARG PIP_CERT
USER root
# System packages this model needs, e.g.:
# RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \\
#     && rm -rf /var/lib/apt/lists/*
COPY --chown=10001 . /srv/model
RUN if [ -f /srv/model/requirements.lock ]; then \\
      /opt/venv/bin/pip install --no-cache-dir -r /srv/model/requirements.lock; fi
USER 10001
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["zeroserve", "serve", "/srv/model", "--direct", "--host", "0.0.0.0", "--port", "8080"]
"""


def _repository(settings: Settings, given: str | None) -> str:
    repository = given or settings.repository
    if not repository:
        raise UsageError(
            "no artifact repository: pass --repository s3://bucket/prefix or set "
            "ZEROSERVE_REPOSITORY"
        )
    return repository


@click.command("render")
@click.argument("target", metavar="PATH[:CLASS] | MODEL_URI")
@format_option
@click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
)
@click.option("--namespace", default="default", show_default=True)
@click.option("--image", default=None, help="A custom runtime image (see `zeroserve build`).")
@click.option("--repository", default=None, help="Artifact repository for the code package.")
@service_account_option
@click.pass_obj
def render_command(
    settings: Settings,
    target: str,
    model_format: str | None,
    output_format: str,
    namespace: str,
    image: str | None,
    repository: str | None,
    service_account: str | None,
) -> None:
    """Print the InferenceService manifests for the predictors in PATH, or for a saved model's
    artifact (s3://…/iris@v1) served by its format's built-in predictor (no cluster needed)."""
    with code_for(target, model_format, None, None) as code:
        objects = render_objects(
            code,
            namespace=namespace,
            image=image,
            repository=_repository(settings, repository),
            service_account=service_account,
        )
    if output_format == "json":
        click.echo(json.dumps(objects if len(objects) > 1 else objects[0], indent=2))
    else:
        click.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)


def render_objects(
    target: str,
    *,
    namespace: str,
    image: str | None,
    repository: str,
    service_account: str | None,
) -> list[dict[str, Any]]:
    """The InferenceServices for ``target``, with its code artifact pinned by digest."""
    from zeroserve.serving.loader import find_predictors
    from zeroserve.targets.kserve.package import code_manifest, code_name, pinned_model_uris
    from zeroserve.targets.kserve.render import RenderOptions, render_inference_service

    found = find_predictors(target)
    with tempfile.TemporaryDirectory() as scratch:
        digest = code_manifest(found, Path(scratch)).digest
    code_uri = f"{repository.rstrip('/')}/{code_name(found[0])}@{digest}"
    options = RenderOptions(
        namespace=namespace,
        code_uri=code_uri,
        image=image,
        service_account=service_account,
        model_uris=pinned_model_uris(found),
    )
    return [render_inference_service(item.declaration.spec, options) for item in found]


@click.command("package")
@click.argument("target", metavar="PATH[:CLASS]")
@click.option("--repository", default=None, help="Artifact repository, e.g. s3://bucket/zs.")
@click.pass_obj
def package_command(settings: Settings, target: str, repository: str | None) -> None:
    """Build the code artifact of PATH and push it; print its pinned reference."""
    from zeroserve.serving.loader import find_predictors
    from zeroserve.targets.kserve.package import publish

    found = find_predictors(target)
    with tempfile.TemporaryDirectory() as scratch:
        reference, uploaded = publish(found, _repository(settings, repository), Path(scratch))
    click.echo(f"{reference} {'pushed' if uploaded else '(already pushed)'}")


@click.command("build")
@click.argument("target", metavar="PATH[:CLASS]")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the Dockerfile and its context [default: ./build/NAME].",
)
def build_command(target: str, output: Path | None) -> None:
    """Write a Dockerfile on the runtime image, and its build context; building it is yours
    (docker build)."""
    from zeroserve import __version__
    from zeroserve.serving.loader import find_predictors
    from zeroserve.targets.kserve.package import stage

    found = find_predictors(target)
    destination = output or Path("build") / found[0].name
    if destination.exists() and not destination.is_dir():
        raise UsageError(f"{destination} is a file; pass --output with an empty folder")
    if destination.exists() and any(destination.iterdir()):
        raise UsageError(f"{destination} is not empty; pass --output with an empty folder")
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists():
        destination.rmdir()
    stage(found, destination)
    (destination / "Dockerfile").write_text(DOCKERFILE.format(version=__version__))
    click.echo(f"wrote {destination}/Dockerfile; build with: docker build -t IMAGE {destination}")
