"""The model host: imports a serve target once, then forks a worker per replica.

``python -m zeroserve.local.child.forkserver --bootstrap JSON`` (see ``bootstrap``) imports Python,
KServe, zeroserve and the user's modules and fetches each ``model_uri`` into the cache, then says
``Hello`` (the models and their specs) to the activator. With fork on it waits for ``Fork``
commands: a forked child pays only ``load()`` and the bind. It reaps its children and reports
each exit code (``Exited``). Fork is off when asked (``--no-fork``) or unsafe (the user's modules
started threads at import, which a fork would copy stopped): then the host exits after ``Hello``
and the activator spawns fresh workers.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from zeroserve.coldstart import ColdStartError, ModelCache, StartupTimeline
from zeroserve.coldstart.preimport import preimport_pickled_modules
from zeroserve.errors import ZeroserveError, exit_code_for
from zeroserve.local.child.bootstrap import ChildStart, die_with_parent, read_child_start
from zeroserve.local.child.worker import run_replica
from zeroserve.local.protocol import (
    PACKET_LIMIT,
    Exited,
    Fork,
    Forked,
    FromActivator,
    Hello,
    HostFailed,
    Reassembler,
    ServedModel,
    StopWorker,
    send_message,
)
from zeroserve.serving.loader import FoundPredictor, python_files
from zeroserve.settings import Settings

logger = logging.getLogger("zeroserve")
STOP_GRACE_S = 30.0


def fork_unsafe_reason(no_fork: bool) -> str | None:
    """Why this process must not fork workers, or None when it may."""
    if no_fork:
        return "--no-fork was given"
    if not hasattr(os, "fork"):
        return "this platform has no fork()"
    threads = [thread.name for thread in threading.enumerate()]
    if len(threads) > 1:
        return (
            f"the model code started threads at import ({', '.join(threads[1:])}); a forked "
            "copy would hold them stopped"
        )
    return None


class ForkServer:
    """Forks workers on command and reports their exits; stops them all when told or orphaned."""

    def __init__(
        self,
        start: ChildStart,
        control: socket.socket,
        models: dict[str, tuple[FoundPredictor, Path | None]],
    ) -> None:
        self.start = start
        self.control = control
        self.models = models
        self.children: dict[int, str] = {}  # pid -> replica id
        self.selector = selectors.DefaultSelector()
        self.wakeup_read, self.wakeup_write = os.pipe()

    def loop(self) -> None:
        # What the host imported lives as long as every worker forked from it: frozen, a collection
        # in a worker skips it (vLLM's loader runs two full ones: 1.07 s over the heap of a host
        # that pre-imported vLLM, 2 cores) and the forks keep sharing its pages.
        gc.freeze()
        os.set_blocking(self.wakeup_read, False)
        os.set_blocking(self.wakeup_write, False)
        signal.set_wakeup_fd(self.wakeup_write)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)  # woken through the wakeup pipe
        self.selector.register(self.control, selectors.EVENT_READ)
        self.selector.register(self.wakeup_read, selectors.EVENT_READ)
        reassembler = Reassembler()
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.control:
                    data = self.control.recv(PACKET_LIMIT)
                    if not data:  # the activator is gone
                        self.stop()
                        return
                    message = reassembler.feed(data)
                    if isinstance(message, Fork | StopWorker):
                        self.command(message)
                elif self.signals_say_stop():
                    self.stop()
                    return
                self.reap()

    def signals_say_stop(self) -> bool:
        try:
            received = os.read(self.wakeup_read, 512)
        except BlockingIOError:
            return False
        return bool({signal.SIGTERM, signal.SIGINT} & set(received))

    def command(self, message: FromActivator) -> None:
        if isinstance(message, Fork):
            self.fork(message)
        elif isinstance(message, StopWorker):
            self.signal_child(message.pid, signal.SIGTERM)
        else:
            logger.warning("model host: not a command: %s", message)

    def fork(self, message: Fork) -> None:
        found, model_dir = self.models[message.model]
        pid = os.fork()
        if pid == 0:
            self.child(found, model_dir, message)
        self.children[pid] = message.replica_id
        send_message(self.control, Forked(message.replica_id, pid))

    def child(self, found: FoundPredictor, model_dir: Path | None, message: Fork) -> None:
        # The worker's phases count from here: /proc's process start time has a resolution of
        # one clock tick (10 ms), more than a fork's wait, which the activator measures against it
        forked_at = time.monotonic()
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            self.selector.close()
            os.close(self.wakeup_read)
            os.close(self.wakeup_write)
            die_with_parent()
            timeline = StartupTimeline(origin=forked_at)
            replica, options = message.replica_id, message.options
            code = run_replica(found, model_dir, self.control, replica, options, timeline)
        except BaseException:  # noqa: BLE001 - a forked child must never return into the host
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            replica_id = self.children.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            send_message(self.control, Exited(replica_id, pid, code))

    def signal_child(self, pid: int, signum: int) -> None:
        if pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def stop(self) -> None:
        """SIGTERM every worker, wait for them (SIGKILL after the grace period), report."""
        for pid in list(self.children):
            self.signal_child(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.02)
        for pid in list(self.children):
            self.signal_child(pid, signal.SIGKILL)
        while self.children:
            pid, status = os.waitpid(-1, 0)
            replica_id = self.children.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            send_message(self.control, Exited(replica_id, pid, code))


def discover(
    target: str, settings: Settings, timeline: StartupTimeline
) -> tuple[list[FoundPredictor], dict[str, Path | None], Any]:
    """Import the target (with KServe) and fetch its models; return them with the folders."""
    from zeroserve.serving.materialize import ModelFolders, model_uris_in

    folders = ModelFolders(ModelCache(settings.cache.root, settings.cache.budget), timeline)
    folders.prefetch(model_uris_in(python_files(target)))
    with timeline.phase("imports"):
        import zeroserve.serving.kserve_model
        import zeroserve.serving.server  # noqa: F401 - KServe, imported once for every fork
        from zeroserve.serving.loader import find_predictors

        found = find_predictors(target)
    model_dirs: dict[str, Path | None] = {item.name: folders.folder_for(item) for item in found}
    folders.stop_fetching()
    with timeline.phase("preimport") as phase:
        zeroserve.serving.server.import_serving_dependencies()
        for folder in {path for path in model_dirs.values() if path is not None}:
            phase.details.setdefault("modules", []).extend(preimport_pickled_modules(folder))
        for item in found:  # what a predictor imports when it loads (vLLM's engine, say)
            phase.details.setdefault("modules", []).extend(preimport_declared(item))
    return found, model_dirs, folders


def preimport_declared(found: FoundPredictor) -> list[str]:
    """Import the modules a predictor class names in ``preimport_modules``, and KServe's OpenAI
    routes for one that answers them; return their names."""
    names = [str(name) for name in getattr(found.cls, "preimport_modules", ())]
    for name in names:
        importlib.import_module(name)
    if found.declaration.openai:
        from zeroserve.llm.openai_routes import preimport_openai

        names.extend(preimport_openai())
    return names


def main(argv: list[str] | None = None) -> None:
    start = read_child_start(argv, prog="python -m zeroserve.local.child.forkserver")
    control = socket.socket(fileno=start.control_fd)
    timeline = StartupTimeline()
    try:
        found, model_dirs, folders = discover(start.target, start.settings, timeline)
    except (ZeroserveError, ColdStartError) as exc:
        send_message(control, HostFailed(str(exc), exit_code=exit_code_for(exc)))
        sys.exit(exit_code_for(exc))
    unsafe = fork_unsafe_reason(start.no_fork)
    models = tuple(
        ServedModel(item.name, item.declaration.spec, item.declaration.openai) for item in found
    )
    hello = Hello(os.getpid(), models, unsafe is None, unsafe, timeline.as_dict())
    send_message(control, hello)
    try:
        if unsafe is None:
            folders_of = {item.name: (item, model_dirs[item.name]) for item in found}
            ForkServer(start, control, folders_of).loop()
    finally:
        folders.close()


if __name__ == "__main__":
    main()
