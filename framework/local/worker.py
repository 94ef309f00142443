"""A worker: one replica of one model on the real ``kserve.ModelServer``, on a private port.

Forked by the model host (the fork server) or, where fork is off, spawned as
``python -m zeroserve.local.worker TARGET --model NAME --id ID --control-fd FD``. Either way it
binds 127.0.0.1 on a free port, runs ``load()`` and ``warmup()``, then tells the activator it is
ready (with its startup timeline) over the control channel.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from zeroserve.coldstart import ColdStartError, ModelCache, StartupTimeline
from zeroserve.errors import LoadError, OutOfMemory, UsageError, ZeroserveError
from zeroserve.loader import FoundPredictor
from zeroserve.local.control import configure_logging, die_with_parent, send_message
from zeroserve.settings import ServerSettings, Settings

logger = logging.getLogger("zeroserve")
WORKER_KEEP_ALIVE_S = 3600  # the activator pools connections; the worker must not drop them
EXIT_LOAD_FAILED = 3
EXIT_USAGE = 2
EXIT_OUT_OF_MEMORY = 4


def run_replica(
    found: FoundPredictor,
    model_dir: Path | None,
    control: socket.socket,
    replica_id: str,
    options: dict[str, Any],
    timeline: StartupTimeline | None = None,
) -> int:
    """Serve ``found`` until SIGTERM; the exit code says how it ended."""
    from zeroserve.adapter import serving_model
    from zeroserve.server import LocalModelServer
    from zeroserve.sockets import bind_socket
    from zeroserve.spec import Batching

    timeline = timeline or StartupTimeline()
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    model = serving_model(found.cls, found.declaration, model_dir, timeline)
    if options.get("batching") and model.batchers is not None:
        model.batchers.update(Batching.model_validate(options["batching"]))
    settings = ServerSettings(
        host="127.0.0.1",
        port=port,
        access_log=bool(options.get("access_log", False)),
        max_body_size=options.get("max_body_size", ServerSettings().max_body_size),
        max_header_size=options.get("max_header_size", ServerSettings().max_header_size),
    )
    server = LocalModelServer(settings, timeout_keep_alive=WORKER_KEEP_ALIVE_S)

    def ready() -> None:
        send_message(
            control,
            event="ready",
            id=replica_id,
            pid=os.getpid(),
            port=port,
            timeline=timeline.as_dict(),
        )

    server.on_stopping = functools.partial(stopping, control, replica_id)
    try:
        server.serve([model], sock, timeline, on_ready=ready)
    except LoadError as exc:
        send_message(control, event="failed", id=replica_id, error=str(exc))
        return EXIT_LOAD_FAILED
    except OutOfMemory:
        return EXIT_OUT_OF_MEMORY
    return 0


def stopping(control: socket.socket, replica_id: str, reason: str) -> None:
    """Tell the activator this worker stops on its own, so no request is routed to it."""
    send_message(control, event="stopping", id=replica_id, reason=reason)


def main(argv: list[str] | None = None) -> None:
    """Entry point of a spawned worker (fork off)."""
    parser = argparse.ArgumentParser(prog="python -m zeroserve.local.worker")
    parser.add_argument("target")
    parser.add_argument("--model", required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--options", default="{}", help="JSON: batching, max_body_size")
    args = parser.parse_args(argv)
    die_with_parent()
    configure_logging()
    control = socket.socket(fileno=args.control_fd)
    import orjson

    from zeroserve.loader import find_predictors
    from zeroserve.materialize import ModelFolders

    settings = Settings()
    timeline = StartupTimeline()  # a spawned worker's own imports and fetch are phases too
    folders = ModelFolders(ModelCache(settings.cache.root, settings.cache.budget), timeline)
    try:
        with timeline.phase("imports"):
            found = [item for item in find_predictors(args.target) if item.name == args.model]
        if not found:
            raise UsageError(f"{args.target} has no predictor named '{args.model}'")
        model_dir = folders.folder_for(found[0])
        options = orjson.loads(args.options)
        code = run_replica(found[0], model_dir, control, args.id, options, timeline)
    except (ZeroserveError, ColdStartError) as exc:
        send_message(control, event="failed", id=args.id, error=str(exc))
        logger.error("worker %s: %s", args.id, exc)
        code = EXIT_USAGE
    finally:
        folders.close()
    sys.exit(code)


if __name__ == "__main__":
    main()
