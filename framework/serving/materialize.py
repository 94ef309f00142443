"""Model folders for serving: local paths as they are, remote URIs through the shared cache.

Fetching starts before the user's module is imported (the URIs are read from the source with
``ast``), so the download overlaps with importing KServe and the model's libraries.
"""

from __future__ import annotations

import ast
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from zeroserve.coldstart import ColdStartError, Lease, ModelCache, StartupTimeline
from zeroserve.coldstart.artifacts import local_folder
from zeroserve.coldstart.preload import lease_reference, read_ahead
from zeroserve.errors import ServeFailed, UsageError, exit_code_for
from zeroserve.serving.loader import FoundPredictor

logger = logging.getLogger("zeroserve")


def model_uris_in(files: list[Path]) -> list[str]:
    """The ``model_uri`` of every declaration in these files, read from the source.

    Every form the docs show: ``@predictor(model_uri=...)``, ``@zeroserve.predictor(...)``, and
    a factory such as ``vllm_predictor("name", "s3://...")`` (the second positional argument of
    a call to a name ending in ``predictor``); the value may be a string or a module-level name
    bound to one (``MODEL_URI = "s3://..."``).
    """
    found: list[str] = []
    for file in files:
        try:
            tree = ast.parse(file.read_text(), filename=str(file))
        except (OSError, SyntaxError, ValueError):
            continue  # the import that follows reports it properly
        constants = _module_strings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _called_name(node).endswith("predictor"):
                uri = _uri_argument(node, constants)
                if uri and uri not in found:
                    found.append(uri)
    return found


def _called_name(call: ast.Call) -> str:
    function = call.func
    if isinstance(function, ast.Attribute):
        return function.attr
    return function.id if isinstance(function, ast.Name) else ""


def _module_strings(tree: ast.Module) -> dict[str, str]:
    """``NAME = "text"`` assignments at the top of a module."""
    strings = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    strings[target.id] = node.value.value
    return strings


def _uri_argument(call: ast.Call, constants: dict[str, str]) -> str | None:
    values = [k.value for k in call.keywords if k.arg == "model_uri"]
    if not values and len(call.args) > 1 and _called_name(call) != "predictor":
        values = [call.args[1]]  # vllm_predictor(name, model_uri, ...)
    for value in values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
        if isinstance(value, ast.Name) and value.id in constants:
            return constants[value.id]
    return None


class ModelFolders:
    """Fetches remote model URIs into the cache (in the background) and hands out folders."""

    def __init__(self, cache: ModelCache, timeline: StartupTimeline) -> None:
        self.cache = cache
        self.timeline = timeline
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="zeroserve-fetch")
        self._pending: dict[str, Future[Lease]] = {}
        self.leases: list[Lease] = []

    def prefetch(self, uris: list[str]) -> None:
        """Start fetching every remote URI now."""
        for uri in uris:
            if _fetched(uri) and uri not in self._pending:
                self._pending[uri] = self._pool.submit(self._fetch, uri)

    def _materialize(self, uri: str) -> Lease:
        return lease_reference(uri, self.cache, notice=logger.info)

    def _fetch(self, uri: str) -> Lease:
        with self.timeline.phase("fetch", uri=uri) as phase:
            lease = self._materialize(uri)
            phase.details.update(hit=lease.hit, bytes=lease.fetched_bytes, digest=lease.digest)
            read_ahead(lease.path)  # into the page cache while the code imports: load() reads RAM
        state = "cache hit" if lease.hit else f"fetched {lease.fetched_bytes} bytes"
        logger.info("model %s: %s (%s)", uri, state, lease.path)
        return lease

    def code_folder(self, uri: str) -> Path:
        """Fetch a code artifact (from `zeroserve package`) and return its folder."""
        with self.timeline.phase("fetch_code", uri=uri):
            try:
                lease = self._materialize(uri)
            except ColdStartError as exc:
                message = f"code artifact {uri}: {exc}"
                raise ServeFailed(message, exit_code=exit_code_for(exc)) from None
        state = "cache hit" if lease.hit else f"fetched {lease.fetched_bytes} bytes"
        logger.info("code artifact %s: %s (%s)", uri, state, lease.path)
        self.leases.append(lease)
        return lease.path

    def folder_for(self, found: FoundPredictor, pinned: str | None = None) -> Path:
        """The folder handed to load(): model_uri's (fetched if remote; ``pinned``: that URI
        pinned to a digest at deploy, used instead) or the source's folder."""
        uri = pinned or found.declaration.spec.model_uri
        if uri is None:
            return found.source.parent
        local = local_folder(uri, base=found.source.parent)
        if local is not None and (local.is_dir() or not _pushed_version(local)):
            if not local.is_dir():
                raise UsageError(f"model '{found.name}': model_uri folder {local} does not exist")
            return local.resolve()
        self.prefetch([uri])
        try:
            lease = self._pending[uri].result()
        except ColdStartError as exc:
            message = f"model '{found.name}': {exc}"
            raise ServeFailed(message, exit_code=exit_code_for(exc)) from None
        self.leases.append(lease)  # held while serving: the entry is never evicted under us
        return lease.path

    def stop_fetching(self) -> None:
        """Join the fetch threads (a process must be single-threaded before it forks)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for lease in self.leases:
            lease.release()


def _fetched(uri: str, base: Path | None = None) -> bool:
    """Whether a model URI goes through the cache: a remote one, or a pushed version in a local
    store; a local folder is used in place."""
    local = local_folder(uri, base=base)
    return local is None or (not local.is_dir() and _pushed_version(local))


def _pushed_version(folder: Path) -> bool:
    """Whether a local URI that is no folder names a pushed version (``STORE/NAME@VERSION``, as
    `zeroserve push` writes to a local or mounted store): fetched into the cache like any other."""
    name, _, version = folder.name.partition("@")
    return bool(name and version) and (folder.parent / name).is_dir()
