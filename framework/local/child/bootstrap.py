"""How a child process of the activator starts: the one place settings enter a child.

The activator starts the model host (and, where fork is off, each worker) as
``python -m MODULE --bootstrap JSON``; ``ChildStart`` is that JSON: the serve target, the control
channel's file descriptor and the activator's whole ``Settings``. A forked worker inherits the
host's ``ChildStart``. No child reads ``ZEROSERVE_*`` from its environment again.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
from dataclasses import dataclass

import orjson

from zeroserve.local.protocol import WorkerOptions, decode_options, json_fields
from zeroserve.settings import Settings
from zeroserve.telemetry.logs import configure_logging

PR_SET_PDEATHSIG = 1
HOST_MODULE = "zeroserve.local.child.forkserver"
WORKER_MODULE = "zeroserve.local.child.worker"


@dataclass(frozen=True)
class SpawnedReplica:
    """What a spawned (not forked) worker serves: one model, as one replica."""

    model: str
    replica_id: str
    options: WorkerOptions


@dataclass(frozen=True)
class ChildStart:
    """Everything a child process is given at its start."""

    target: str
    control_fd: int
    settings: Settings
    no_fork: bool = False
    replica: SpawnedReplica | None = None  # only for a spawned worker

    def command(self, module: str) -> list[str]:
        """The command line that starts ``module`` with this bootstrap."""
        fields = {
            "target": self.target,
            "control_fd": self.control_fd,
            "settings": self.settings.model_dump(mode="json"),
            "no_fork": self.no_fork,
            "replica": json_fields(self.replica),
        }
        return [sys.executable, "-m", module, "--bootstrap", orjson.dumps(fields).decode()]


def read_child_start(argv: list[str] | None, prog: str) -> ChildStart:
    """The ``ChildStart`` this process was started with; the process is then made a child:
    it dies with its parent and logs as every zeroserve process does."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--bootstrap", required=True, help="JSON written by ChildStart.command")
    fields = orjson.loads(parser.parse_args(argv).bootstrap)
    replica = fields["replica"]
    start = ChildStart(
        target=fields["target"],
        control_fd=int(fields["control_fd"]),
        settings=Settings.model_validate(fields["settings"]),
        no_fork=bool(fields["no_fork"]),
        replica=None
        if replica is None
        else SpawnedReplica(
            replica["model"], replica["replica_id"], decode_options(replica["options"])
        ),
    )
    die_with_parent()
    configure_logging()
    return start


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent ends, so no worker outlives zeroserve."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the parent's shutdown still stops workers
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
