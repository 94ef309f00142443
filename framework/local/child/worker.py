"""A worker: one replica of one model on the real ``kserve.ModelServer``, on a private port.

Forked by the model host (the fork server) or, where fork is off, spawned as
``python -m zeroserve.local.child.worker --bootstrap JSON`` (see ``bootstrap``). Either way it
binds 127.0.0.1 on a free port, runs ``load()`` and ``warmup()``, then tells the activator it is
``Ready`` (with its startup timeline) over the control channel.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
from pathlib import Path

from zeroserve.coldstart import ColdStartError, ModelCache, StartupTimeline
from zeroserve.errors import LoadError, ModelUnhealthy, OutOfMemory, UsageError, ZeroserveError
from zeroserve.local.protocol import Failed, Ready, Stopping, WorkerOptions, send_message
from zeroserve.serving.loader import FoundPredictor
from zeroserve.settings import ServerSettings

logger = logging.getLogger("zeroserve")
WORKER_KEEP_ALIVE_S = 3600  # the activator pools connections; the worker must not drop them
EXIT_NOT_SERVED = 2  # the model could not be found, imported or fetched
EXIT_LOAD_FAILED = 3  # how a worker ends, as zeroserve.local.upstream describes it
EXIT_OUT_OF_MEMORY = 4
EXIT_UNHEALTHY = 5  # the model's own healthy() said no once it was ready


def run_replica(
    found: FoundPredictor,
    model_dir: Path | None,
    control: socket.socket,
    replica_id: str,
    options: WorkerOptions,
    timeline: StartupTimeline | None = None,
) -> int:
    """Serve ``found`` until SIGTERM; the exit code says how it ended."""
    from zeroserve.serving.kserve_model import serving_model
    from zeroserve.serving.server import LocalModelServer
    from zeroserve.serving.sockets import bind_socket

    timeline = timeline or StartupTimeline()
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    model = serving_model(found.cls, found.declaration, model_dir, timeline)
    if options.batching is not None and model.batchers is not None:
        model.batchers.update(options.batching)
    settings = ServerSettings(
        host="127.0.0.1",
        port=port,
        access_log=options.access_log,
        max_body_size=options.max_body_size,
        max_header_size=options.max_header_size,
        fast_path=options.fast_path,
    )
    server = LocalModelServer(settings, timeout_keep_alive=WORKER_KEEP_ALIVE_S)

    def ready() -> None:
        send_message(control, Ready(replica_id, os.getpid(), port, timeline.as_dict()))

    server.on_stopping = functools.partial(stopping, control, replica_id)
    try:
        server.serve([model], sock, timeline, on_ready=ready)
    except LoadError as exc:
        send_message(control, Failed(replica_id, str(exc)))
        return EXIT_LOAD_FAILED
    except OutOfMemory:
        return EXIT_OUT_OF_MEMORY
    except ModelUnhealthy:
        return EXIT_UNHEALTHY
    return 0


def stopping(control: socket.socket, replica_id: str, reason: str) -> None:
    """Tell the activator this worker stops on its own, so no request is routed to it."""
    send_message(control, Stopping(replica_id, reason))


def main(argv: list[str] | None = None) -> None:
    """Entry point of a spawned worker (fork off)."""
    from zeroserve.local.child.bootstrap import read_child_start
    from zeroserve.serving.loader import find_predictors
    from zeroserve.serving.materialize import ModelFolders

    start = read_child_start(argv, prog="python -m zeroserve.local.child.worker")
    assert start.replica is not None, "a spawned worker is started for one replica"
    replica = start.replica
    control = socket.socket(fileno=start.control_fd)
    cache = start.settings.cache
    timeline = StartupTimeline()  # a spawned worker's own imports and fetch are phases too
    folders = ModelFolders(ModelCache(cache.root, cache.budget), timeline)
    try:
        with timeline.phase("imports"):
            found = [item for item in find_predictors(start.target) if item.name == replica.model]
        if not found:
            raise UsageError(f"{start.target} has no predictor named '{replica.model}'")
        model_dir = folders.folder_for(found[0])
        code = run_replica(
            found[0], model_dir, control, replica.replica_id, replica.options, timeline
        )
    except (ZeroserveError, ColdStartError) as exc:
        send_message(control, Failed(replica.replica_id, str(exc)))
        logger.error("worker %s: %s", replica.replica_id, exc)
        code = EXIT_NOT_SERVED
    finally:
        folders.close()
    sys.exit(code)


if __name__ == "__main__":
    main()
