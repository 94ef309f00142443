"""The control channel: typed messages round-trip, messages of any size, senders interleaved."""

from __future__ import annotations

import random
import socket
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeroserve.local import protocol
from zeroserve.local.protocol import (
    FRAGMENT_BYTES,
    PACKET_LIMIT,
    Exited,
    Failed,
    Fork,
    Forked,
    Hello,
    HostFailed,
    Ready,
    Reassembler,
    ServedModel,
    Stopping,
    StopWorker,
    WorkerOptions,
    decode,
    encode,
    packets,
)
from zeroserve.spec.spec import Batching, PredictorSpec

SPEC = PredictorSpec(name="iris", max_replicas=3, batching=Batching(max_batch_size=8))
OPTIONS = WorkerOptions(max_body_size=1024, max_header_size=512, batching=Batching())
EVERY_MESSAGE = [
    Fork("iris", "iris-1", OPTIONS),
    Fork("iris", "iris-2", WorkerOptions(max_body_size=1, max_header_size=1)),
    StopWorker(42),
    Hello(7, (ServedModel("iris", SPEC, openai=False),), fork=True, timeline={"phases": []}),
    Hello(7, (), fork=False, reason="--no-fork was given"),
    HostFailed("no predictor in x.py", exit_code=2),
    Forked("iris-1", 8),
    Ready("iris-1", 8, 40123, {"phases": [{"name": "load"}]}),
    Failed("iris-1", "load() raised"),
    Stopping("iris-1", "out of memory"),
    Exited("iris-1", 8, -9),
    Exited(None, 9, None),
]


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_as_its_type(message: protocol.Message) -> None:
    decoded = decode(encode(message))
    assert type(decoded) is type(message)
    assert decoded == message


def test_the_parent_gets_a_real_spec() -> None:
    hello = decode(encode(Hello(1, (ServedModel("iris", SPEC),), fork=True)))
    assert isinstance(hello, Hello)
    assert hello.models[0].spec is not SPEC
    assert hello.models[0].spec == SPEC
    assert hello.models[0].spec.batching == Batching(max_batch_size=8)


@pytest.mark.parametrize("data", [b"[]", b'{"type": "Nope"}', b'{"event": "ready"}'])
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a zeroserve control message"):
        decode(data)


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 5 * FRAGMENT_BYTES), min_size=1, max_size=4),
    seed=st.integers(0, 2**32),
)
def test_messages_of_any_size_survive_interleaved_senders(sizes: list[int], seed: int) -> None:
    messages = [Failed(f"replica-{n}", "x" * size) for n, size in enumerate(sizes)]
    queues = [packets(message, sender_pid=1000 + n) for n, message in enumerate(messages)]
    rng = random.Random(seed)
    wire: list[bytes] = []
    while any(queues):  # each sender's packets stay in order; senders interleave at random
        queue = rng.choice([q for q in queues if q])
        wire.append(queue.pop(0))
    reassembler = Reassembler()
    received = [m for m in (reassembler.feed(packet) for packet in wire) if m is not None]
    assert sorted(received, key=lambda m: getattr(m, "replica_id", "")) == messages
    assert all(len(packet) <= PACKET_LIMIT for packet in wire)


def test_a_hello_of_4000_models_crosses_a_real_seqpacket_pair() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        models = tuple(
            ServedModel(f"m{n}", SPEC.model_copy(update={"name": f"m{n}"})) for n in range(4000)
        )
        message = Hello(1, models, fork=True)
        theirs.settimeout(10)
        ours.settimeout(10)
        sender = threading.Thread(target=protocol.send_message, args=(theirs, message))
        sender.start()
        reassembler = Reassembler()
        received = None
        while received is None:
            received = reassembler.feed(ours.recv(PACKET_LIMIT))
        sender.join()
    assert received == message
