"""``zeroserve serve`` (the activator, or --direct) and ``zeroserve predict`` (a client)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from zeroserve.cli.saved_models import format_option
from zeroserve.errors import UsageError
from zeroserve.settings import PodSettings, ServerSettings, Settings
from zeroserve.telemetry.logs import configure_logging

if TYPE_CHECKING:
    from pydantic import BaseModel

    from zeroserve.coldstart import StartupTimeline
    from zeroserve.serving.materialize import ModelFolders

SettingsModel = TypeVar("SettingsModel", bound="BaseModel")
REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://")
EXIT_FAILURE = 1


SERVER_FLAGS = ("port", "host", "max_body_size", "max_header_size", "access_log")


@click.command()
@click.argument("target", metavar="PATH[:CLASS] | MODEL_FILE | URI")
@format_option
@click.option(
    "--optimize",
    type=click.Choice(["onnx"]),
    default=None,
    help="Serve a scikit-learn, XGBoost or LightGBM model converted to ONNX (checked against "
    "the original first; kept in the cache).",
)
@click.option("--port", type=int, default=None, help="Port to listen on [default: 8080].")
@click.option("--host", default=None, help="Address to bind [default: 127.0.0.1].")
@click.option("--max-body-size", default=None, help="Largest request body, e.g. 32MiB.")
@click.option("--max-header-size", default=None, help="Largest request head, e.g. 64KiB.")
@click.option(
    "--access-log/--no-access-log",
    default=None,
    help="Log one line per request (uvicorn's access line, KServe's latency line) [default: off].",
)
@click.option(
    "--direct",
    is_flag=True,
    help="Serve every model in this one process, loaded now and never scaled (what a cluster "
    "pod runs: Knative scales pods there).",
)
@click.option(
    "--fork/--no-fork",
    default=None,
    help="Fork workers from a process that imported the model code once [default: fork].",
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    metavar="NAME=VERSION:WEIGHT,...",
    help="Answer NAME with served models by weight, e.g. iris=v1:90,v2:10 (a version is the "
    "model VERSION, else NAME-VERSION); a client pins one with a zeroserve-version header.",
)
@click.option(
    "--shadow",
    "shadows",
    multiple=True,
    metavar="NAME=VERSION",
    help="Send VERSION a copy of each request for NAME; its answers are recorded (GET "
    "/zeroserve/splits/NAME, metrics), never returned.",
)
@click.option("--queue-limit", type=int, default=None, help="Requests held per model at zero.")
@click.option("--start-timeout", type=float, default=None, help="Seconds a start may take.")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this machine's activator; ray: Ray Serve applications on a Ray cluster.",
)
@click.option(
    "--address",
    default=None,
    help="With --engine ray: the cluster (auto, HOST:PORT or ray://HOST:PORT) [default: start "
    "a local one].",
)
@click.option(
    "--ray-resource",
    "ray_resources",
    multiple=True,
    metavar="MODEL=RESOURCE[:AMOUNT]",
    help="With --engine ray: a custom Ray resource MODEL's replicas need (repeatable).",
)
@click.pass_obj
def serve(
    settings: Settings,
    /,
    target: str,
    model_format: str | None,
    optimize: str | None,
    direct: bool,
    engine: str,
    address: str | None,
    ray_resources: tuple[str, ...],
    **flags: Any,
) -> None:
    """Serve the @predictor classes in PATH (a .py file or a folder of them, or the URI of a
    code artifact made by `zeroserve package`), or saved models with no code: a model file
    (.joblib/.pkl, .skops, XGBoost .json/.ubj, LightGBM .txt, .onnx, torch .pt2/.pt), a folder
    of them or a Hugging Face folder, or a model artifact's URI (s3://bucket/models/iris@v1).

    Each model starts on its first request and scales back to zero when idle; add --direct to
    load them all in this process instead, or --engine ray to run them on a Ray cluster."""
    from zeroserve.cli.saved_models import code_for
    from zeroserve.coldstart import ModelCache

    cache = ModelCache(settings.cache.root, settings.cache.budget)
    if settings.pod.inference_service:  # a cluster pod: its target is the rendered code artifact
        _serve_code(settings, target, direct, engine, address, ray_resources, flags)
        return
    with code_for(target, model_format, optimize, cache) as code:
        _serve_code(settings, code, direct, engine, address, ray_resources, flags)


def _serve_code(
    settings: Settings,
    target: str,
    direct: bool,
    engine: str,
    address: str | None,
    ray_resources: tuple[str, ...],
    flags: dict[str, Any],
) -> None:
    server_flags = {key: flags.pop(key) for key in SERVER_FLAGS}
    _check_split_flags(flags, direct, engine)
    server_settings = _with_flags(settings.server, server_flags)
    local_settings = _with_flags(settings.local, flags)
    configure_logging()
    if engine == "ray":
        _refuse_for_ray(direct, flags)
        both = settings.model_copy(update={"server": server_settings, "local": local_settings})
        _serve_on_ray(target, both, address, ray_resources)
        return
    if address or ray_resources:
        raise UsageError("--address and --ray-resource go with --engine ray")
    from zeroserve.coldstart import ModelCache, StartupTimeline

    timeline = StartupTimeline()
    from zeroserve.serving.loader import python_files
    from zeroserve.serving.materialize import ModelFolders, model_uris_in

    folders = ModelFolders(ModelCache(settings.cache.root, settings.cache.budget), timeline)
    try:
        if REMOTE.match(target):  # a code artifact, as the cluster runtime gets it
            code = folders.code_folder(target)
            _use_dependencies(code, target, settings, timeline)
            target = str(code)
        if not direct:
            activated = settings.model_copy(
                update={"server": server_settings, "local": local_settings}
            )
            _serve_activated(target, activated)
            return
        pinned = settings.pod.model_uri  # a pod's one model, pinned at deploy
        # overlaps with the imports below
        folders.prefetch([pinned] if pinned else model_uris_in(python_files(target)))
        _serve_found(
            target, server_settings, folders, timeline, settings.pod, _cold_start_reporter(settings)
        )
    finally:
        folders.close()


def _use_dependencies(code: Path, uri: str, settings: Settings, timeline: StartupTimeline) -> None:
    """Import the artifact's locked requirements from their environment on the cache volume
    (built by the first pod that needs it)."""
    import logging

    from zeroserve.coldstart import ColdStartError
    from zeroserve.coldstart.dependencies import LOCK_FILE, activate, environment_for
    from zeroserve.errors import ServeFailed, exit_code_for

    if not (code / LOCK_FILE).is_file():
        return
    with timeline.phase("dependencies"):
        try:
            environment = environment_for(
                code / LOCK_FILE, settings.cache.root, notice=logging.getLogger("zeroserve").info
            )
        except ColdStartError as exc:
            raise ServeFailed(f"code artifact {uri}: {exc}", exit_code=exit_code_for(exc)) from None
    if environment is not None:
        activate(environment)


def _check_split_flags(flags: dict[str, Any], direct: bool, engine: str) -> None:
    """Parse --split/--shadow now (a typo exits before anything starts); keep them as lists."""
    from zeroserve.local.split_config import parse_shadow_flag, parse_split_flag

    splits, shadows = list(flags.pop("splits", ())), list(flags.pop("shadows", ()))
    for text in splits:
        parse_split_flag(text)
    for text in shadows:
        parse_shadow_flag(text)
    if (splits or shadows) and (direct or engine != "local"):
        raise UsageError(
            "--split and --shadow are the local activator's: --direct serves each model under "
            "its own name, and on a cluster `zeroserve rollout` moves a canary's traffic"
        )
    flags["splits"], flags["shadows"] = splits or None, shadows or None


def _refuse_for_ray(direct: bool, flags: dict[str, Any]) -> None:
    if direct or flags.get("fork") is not None:
        raise UsageError(
            "--direct and --fork are for the local engine; Ray Serve starts the replicas "
            "with --engine ray"
        )


def _serve_on_ray(
    target: str, settings: Settings, address: str | None, ray_resources: tuple[str, ...]
) -> None:
    if REMOTE.match(target):
        raise UsageError(
            "--engine ray serves a local PATH (Ray ships it to the nodes); fetch the code "
            "artifact first, or serve it with the local engine"
        )
    from zeroserve.serving.loader import find_predictors
    from zeroserve.serving.sockets import bind_socket
    from zeroserve.targets.ray.options import check_runnable, parse_resource_flags

    resources = parse_resource_flags(ray_resources)
    found = find_predictors(target)
    for item in found:
        traffic = item.declaration.spec.traffic
        if traffic is not None:
            click.secho(
                f"note: {item.name}'s traffic=Traffic(route='{traffic.route}') splits a name on "
                f"the local engine; on Ray, {item.name} is served under its own name",
                err=True,
            )
    check_runnable([item.declaration for item in found], resources)
    sock = bind_socket(settings.server.host, settings.server.port)
    where = f"http://{settings.server.host}:{sock.getsockname()[1]}"
    names = ", ".join(item.name for item in found)
    click.secho(
        f"zeroserve: serving {names} on {where} through Ray Serve (console at {where}/zeroserve/)",
        err=True,
    )
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise UsageError("--engine ray needs Ray Serve: pip install 'zeroserve[ray]'")
    from zeroserve.targets.ray.server import serve_on_ray

    serve_on_ray(found, settings, address, resources, sock)


def _serve_activated(target: str, settings: Settings) -> None:
    from zeroserve.local.activator import Activator
    from zeroserve.serving.sockets import bind_socket

    sock = bind_socket(settings.server.host, settings.server.port)
    Activator(target, settings).serve(sock)


def _cold_start_reporter(settings: Settings) -> Callable[[StartupTimeline], None] | None:
    """In a cluster pod: write each cold start as a ColdStart event on its InferenceService."""
    if not settings.pod.inference_service:
        return None
    from zeroserve.targets.kserve.events import PodIdentity, report_in_background

    identity = PodIdentity.of_this_pod(settings.pod)
    if identity is None:
        return None

    def report(timeline: StartupTimeline) -> None:
        report_in_background(identity, timeline.as_dict())

    return report


def _serve_found(
    target: str,
    settings: ServerSettings,
    folders: ModelFolders,
    timeline: StartupTimeline,
    pod: PodSettings,
    on_started: Callable[[StartupTimeline], None] | None = None,
) -> None:
    with timeline.phase("imports"):
        from zeroserve.serving.kserve_model import serving_model
        from zeroserve.serving.loader import find_predictors
        from zeroserve.serving.server import LocalModelServer
        from zeroserve.serving.sockets import bind_socket

        found = _served_here(find_predictors(target), pod)
    sock = bind_socket(settings.host, settings.port)
    model_dirs = {item.name: folders.folder_for(item, pod.model_uri or None) for item in found}
    models = [
        serving_model(item.cls, item.declaration, model_dirs[item.name], timeline) for item in found
    ]
    where = f"http://{settings.host}:{sock.getsockname()[1]}"
    names = ", ".join(model.name for model in models)
    click.secho(f"zeroserve: serving {names} on {where} (docs at {where}/docs)", err=True)
    on_ready = None if on_started is None else (lambda: on_started(timeline))
    LocalModelServer(settings).serve(models, sock, timeline, on_ready=on_ready)


def _served_here(found: list[Any], pod: PodSettings) -> list[Any]:
    """All of them, or in a cluster pod the one its InferenceService was rendered for."""
    if not pod.inference_service:
        return found
    chosen = [item for item in found if item.name == pod.inference_service]
    if not chosen:
        names = ", ".join(item.name for item in found) or "none"
        raise UsageError(
            f"the code has no @predictor named '{pod.inference_service}' (it has: {names}); "
            "deploy the model again so its InferenceService and code agree"
        )
    return chosen


def _with_flags(base: SettingsModel, flags: dict[str, Any]) -> SettingsModel:
    """``base`` with the flags that were given; a bad value is a usage error naming the flag."""
    from pydantic import ValidationError

    from zeroserve.spec.spec import describe_validation_error

    given = {key: value for key, value in flags.items() if value is not None}
    try:
        return type(base).model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        raise UsageError(describe_validation_error(exc).replace("_", "-")) from None


@click.command()
@click.argument("name")
@click.option("--data", required=True, help="Request body: JSON text, or @FILE to read it.")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="Server URL.")
@click.option("--v2", "use_v2", is_flag=True, help="Send to the v2 (Open Inference) route.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for an answer.")
def predict(name: str, data: str, url: str, use_v2: bool, timeout: float) -> None:
    """Send one prediction request to model NAME and print the response."""
    import httpx

    body = _read_body(data)
    route = f"/v2/models/{name}/infer" if use_v2 else f"/v1/models/{name}:predict"
    try:
        response = httpx.post(url.rstrip("/") + route, json=body, timeout=timeout)
    except httpx.TransportError as exc:
        raise UsageError(
            f"no answer from {url} ({type(exc).__name__}); is `zeroserve serve` running there?"
        ) from None
    click.echo(response.text)
    if response.is_error:
        sys.exit(EXIT_FAILURE)


def _read_body(data: str) -> Any:
    text = data
    if data.startswith("@"):
        path = Path(data[1:])
        if not path.is_file():
            raise UsageError(f"--data {data}: no such file")
        text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--data is not valid JSON: {exc}") from None
