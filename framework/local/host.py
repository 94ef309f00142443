"""The activator's handle on a model host and its workers: start, launch, stop, events.

Workers are forked by the host when fork is on, or spawned here as fresh processes otherwise;
their events (``Forked``, ``Ready``, ``Failed``, ``Stopping``, ``Exited``, and ``HostLost`` when
the host itself died) arrive through one callback either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from zeroserve.errors import ServeFailed
from zeroserve.local.background import Background
from zeroserve.local.child.bootstrap import (
    HOST_MODULE,
    WORKER_MODULE,
    ChildStart,
    SpawnedReplica,
)
from zeroserve.local.protocol import (
    PACKET_LIMIT,
    Exited,
    Fork,
    Forked,
    FromChild,
    Hello,
    HostFailed,
    Reassembler,
    StopWorker,
    WorkerOptions,
    packets,
)
from zeroserve.local.upstream import describe_exit
from zeroserve.settings import Settings

logger = logging.getLogger("zeroserve")


@dataclass(frozen=True)
class HostLost:
    """The model host died (its workers die with it); ``code`` is its exit code."""

    code: int


HostEvent = FromChild | HostLost


class WorkerLauncher(Protocol):
    """What a pool needs of the model host: ``ModelHost``, or a fake in the pool's unit tests."""

    fork: bool

    async def launch(self, model: str, replica_id: str, options: WorkerOptions) -> None: ...

    def stop_worker(self, pid: int | None, kill: bool = False) -> None: ...


EventHandler = Callable[[HostEvent], None]
HOST_STOP_S = 40.0
HOST_RESTART_BACKOFF_S = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0)


class ModelHost:
    """One serve target's host process and its control channel."""

    def __init__(self, target: str, settings: Settings, on_event: EventHandler) -> None:
        self.target = target
        self.settings = settings
        self.no_fork = not settings.local.fork
        self.on_event = on_event
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ours.setblocking(False)
        self.process: asyncio.subprocess.Process | None = None
        self.spawned: dict[str, asyncio.subprocess.Process] = {}
        self.hello: asyncio.Future[Hello | HostFailed] | None = None
        self.fork = False
        self.background = Background()
        self.closing = False
        self.up: asyncio.Event | None = None  # set while a host answers fork commands
        self.start_timeout = 300.0

    async def start(self, timeout: float) -> Hello:
        """Start the host; return its hello (models and specs) or raise ServeFailed."""
        self.up = asyncio.Event()
        self.start_timeout = timeout
        self.background.keep(self._read_events())
        hello = await self._start_process(timeout)
        self.fork = hello.fork
        if self.fork:
            logger.info("model host pid %d forks workers (imports paid once)", hello.pid)
            self.up.set()
        else:
            logger.info("workers are spawned fresh, not forked: %s", hello.reason)
        return hello

    def _child_start(self, replica: SpawnedReplica | None = None) -> ChildStart:
        fd = self.theirs.fileno()
        return ChildStart(self.target, fd, self.settings, self.no_fork, replica)

    async def _start_process(self, timeout: float) -> Hello:
        """One host process on the channel, until its hello; ServeFailed if it says none."""
        loop = asyncio.get_running_loop()
        self.hello = loop.create_future()
        fd = self.theirs.fileno()
        command = self._child_start().command(HOST_MODULE)
        # A process group of its own, so a terminal's Ctrl-C reaches only the activator (which
        # drains the workers), but the activator's session: where the kernel groups CPU time by
        # session (sched autogroup), a session of its own halved a vLLM engine's throughput here.
        self.process = await asyncio.create_subprocess_exec(
            *command, pass_fds=(fd,), preexec_fn=os.setpgrp
        )
        self.background.keep(self._watch_host(self.process))
        try:
            hello = await asyncio.wait_for(asyncio.shield(self.hello), timeout)
        except TimeoutError:
            self.process.kill()
            raise ServeFailed(f"importing {self.target} took over {timeout:.0f}s") from None
        if isinstance(hello, HostFailed):
            raise ServeFailed(hello.message, exit_code=hello.exit_code)
        return hello

    async def _read_events(self) -> None:
        loop = asyncio.get_running_loop()
        reassembler = Reassembler()
        while True:
            try:
                data = await loop.sock_recv(self.ours, PACKET_LIMIT)
            except OSError:
                return
            if not data:
                return
            message = reassembler.feed(data)
            if message is None:
                continue
            if isinstance(message, Hello | HostFailed):
                if self.hello is not None and not self.hello.done():
                    self.hello.set_result(message)
            elif not isinstance(message, Fork | StopWorker):  # commands are the host's to read
                self.on_event(message)

    async def _watch_host(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if self.hello is not None and not self.hello.done():
            self.hello.set_result(
                HostFailed(f"the model host ended with exit code {code}", exit_code=1)
            )
        elif self.fork and not self.closing and process is self.process:
            logger.error(
                "the model host (pid %d) ended: %s; its workers stop; starting a new host",
                process.pid,
                describe_exit(code),
            )
            assert self.up is not None
            self.up.clear()
            self.on_event(HostLost(code))
            self.background.keep(self._restart())

    async def _restart(self) -> None:
        """Start hosts until one says hello (backing off between tries), then fork again."""
        for attempt in itertools.count():
            await asyncio.sleep(HOST_RESTART_BACKOFF_S[min(attempt, 5)])
            if self.closing:
                return
            try:
                hello = await self._start_process(self.start_timeout)
            except ServeFailed as exc:
                logger.error("a new model host failed to start: %s", exc)
                continue
            logger.info("model host pid %d is back; models start on their next request", hello.pid)
            assert self.up is not None
            self.up.set()
            return

    async def launch(self, model: str, replica_id: str, options: WorkerOptions) -> None:
        """Start one worker for ``model``; its events arrive through ``on_event``."""
        if self.fork:
            assert self.up is not None
            await self.up.wait()  # a host that died is being replaced
            for packet in packets(Fork(model, replica_id, options)):
                await asyncio.get_running_loop().sock_sendall(self.ours, packet)
            return
        start = self._child_start(SpawnedReplica(model, replica_id, options))
        process = await asyncio.create_subprocess_exec(
            *start.command(WORKER_MODULE), pass_fds=(start.control_fd,), preexec_fn=os.setpgrp
        )
        self.spawned[replica_id] = process
        self.on_event(Forked(replica_id, process.pid))
        self.background.keep(self._watch_spawned(replica_id, process))

    async def _watch_spawned(self, replica_id: str, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        self.spawned.pop(replica_id, None)
        self.on_event(Exited(replica_id, process.pid, code))

    def stop_worker(self, pid: int | None, kill: bool = False) -> None:
        """SIGTERM (graceful: in-flight requests finish) or SIGKILL one worker."""
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)

    async def close(self) -> None:
        """Close the channel (the host stops its workers and exits) and wait for the host."""
        self.closing = True
        self.background.cancel()
        with contextlib.suppress(OSError):
            self.ours.shutdown(socket.SHUT_RDWR)  # EOF for the host, whoever holds the fd
        self.ours.close()
        self.theirs.close()
        if self.process is not None and self.process.returncode is None:
            try:
                await asyncio.wait_for(self.process.wait(), HOST_STOP_S)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
