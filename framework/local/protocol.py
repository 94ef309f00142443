"""The typed messages between the activator, a model host and its workers, and their framing.

One ``SOCK_SEQPACKET`` socket pair per serve target: the activator holds one end; the host and
every worker share the other, so each packet arrives whole, whoever sent it. The host reads
commands (``FromActivator``); the activator reads events (``FromChild``). Every message is a frozen
dataclass; the parent receives real ``PredictorSpec`` objects, never dicts read by string keys.

On the wire a message is one JSON object ``{"type": CLASS, ...fields}`` in one packet, or, over
``FRAGMENT_BYTES`` (a socket's send buffer caps a packet: the hello of 1000 models did not fit),
in fragments tagged with the sender's pid, which ``Reassembler`` puts back together whatever the
other senders interleave.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

from zeroserve.spec.spec import Batching, PredictorSpec

FRAGMENT_BYTES = 32 * 1024
PACKET_LIMIT = FRAGMENT_BYTES + 16
WHOLE, MORE, LAST = b"=", b"+", b"."


@dataclass(frozen=True)
class WorkerOptions:
    """What a worker needs from the activator's settings: its HTTP limits and batching."""

    max_body_size: int
    max_header_size: int
    access_log: bool = False
    fast_path: bool = True
    batching: Batching | None = None  # a change made through the admin route; None: the spec's


@dataclass(frozen=True)
class ServedModel:
    """One model a host imported: its name, its spec and whether it answers OpenAI routes."""

    name: str
    spec: PredictorSpec
    openai: bool = False


# ---- from the activator to the model host -----------------------------------------------------
@dataclass(frozen=True)
class Fork:
    """Fork a worker for ``model`` as replica ``replica_id``."""

    model: str
    replica_id: str
    options: WorkerOptions


@dataclass(frozen=True)
class StopWorker:
    """SIGTERM the host's child ``pid`` (it finishes what it holds)."""

    pid: int


FromActivator = Fork | StopWorker


# ---- from a model host or a worker to the activator -------------------------------------------
@dataclass(frozen=True)
class Hello:
    """The host imported the target: its models, and whether it forks workers (and why not)."""

    pid: int
    models: tuple[ServedModel, ...]
    fork: bool
    reason: str | None = None
    timeline: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HostFailed:
    """The host could not import or fetch the target; ``exit_code`` as the CLI exits for it."""

    message: str
    exit_code: int


@dataclass(frozen=True)
class Forked:
    """A worker process exists for ``replica_id``."""

    replica_id: str
    pid: int


@dataclass(frozen=True)
class Ready:
    """The worker loaded and warmed up its model and listens on ``port``."""

    replica_id: str
    pid: int
    port: int
    timeline: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    """The worker's model could not start (load() or warmup() raised, the fetch failed)."""

    replica_id: str
    error: str


@dataclass(frozen=True)
class Stopping:
    """The worker stops on its own (its model ran out of memory): route nothing more to it."""

    replica_id: str
    reason: str


@dataclass(frozen=True)
class Exited:
    """A worker process ended; ``code`` as ``os.waitstatus_to_exitcode`` gives it."""

    replica_id: str | None
    pid: int
    code: int | None


FromChild = Hello | HostFailed | Forked | Ready | Failed | Stopping | Exited
Message = FromActivator | FromChild
_TYPES: dict[str, type[Any]] = {
    kind.__name__: kind
    for kind in (Fork, StopWorker, Hello, HostFailed, Forked, Ready, Failed, Stopping, Exited)
}


def encode(message: Message) -> bytes:
    """A message as JSON text, tagged with its type."""
    return orjson.dumps({"type": type(message).__name__, **json_fields(message)})


def decode(data: bytes) -> Message:
    """The message that ``encode`` wrote; ValueError for anything else."""
    fields = orjson.loads(data)
    if not isinstance(fields, dict) or fields.get("type") not in _TYPES:
        raise ValueError(f"not a zeroserve control message: {data[:80]!r}")
    kind = _TYPES[fields.pop("type")]
    if kind is Fork:
        fields["options"] = decode_options(fields["options"])
    elif kind is Hello:
        fields["models"] = tuple(
            ServedModel(m["name"], PredictorSpec.model_validate(m["spec"]), m["openai"])
            for m in fields["models"]
        )
    message: Message = kind(**fields)
    return message


def decode_options(fields: dict[str, Any]) -> WorkerOptions:
    """``WorkerOptions`` from their JSON fields."""
    batching = fields.get("batching")
    return WorkerOptions(
        **{**fields, "batching": None if batching is None else Batching.model_validate(batching)}
    )


def json_fields(value: Any) -> Any:
    """Dataclasses and pydantic models as JSON-ready dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_fields(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [json_fields(item) for item in value]
    return value


def packets(message: Message, sender_pid: int | None = None) -> list[bytes]:
    """One message as the packets that carry it (fragments name the sender, this process)."""
    data = encode(message)
    if len(data) <= FRAGMENT_BYTES:
        return [WHOLE + data]
    sender = struct.pack("!I", sender_pid if sender_pid is not None else os.getpid())
    pieces = [data[i : i + FRAGMENT_BYTES] for i in range(0, len(data), FRAGMENT_BYTES)]
    return [(LAST if i == len(pieces) - 1 else MORE) + sender + p for i, p in enumerate(pieces)]


def send_message(control: socket.socket, message: Message) -> None:
    """Send one message; a closed channel (the activator is gone) is not an error here."""
    with contextlib.suppress(OSError):
        for packet in packets(message):
            control.send(packet)


class Reassembler:
    """Messages from packets, the fragments of each sender joined in order."""

    def __init__(self) -> None:
        self.partial: dict[bytes, bytearray] = {}

    def feed(self, packet: bytes) -> Message | None:
        """The message this packet completes, or None while fragments are still to come."""
        kind = packet[:1]
        if kind == WHOLE:
            return decode(packet[1:])
        sender, piece = packet[1:5], packet[5:]
        if kind == MORE:
            self.partial.setdefault(sender, bytearray()).extend(piece)
            return None
        return decode(bytes(self.partial.pop(sender, b"")) + piece)
