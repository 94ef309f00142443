"""The control channel's framing: messages of any size, fragments of senders interleaved."""

from __future__ import annotations

import random
import socket
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from zeroserve.local import control
from zeroserve.local.control import FRAGMENT_BYTES, PACKET_LIMIT, Reassembler, packets


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 5 * FRAGMENT_BYTES), min_size=1, max_size=4),
    seed=st.integers(0, 2**32),
)
def test_messages_of_any_size_survive_interleaved_senders(sizes: list[int], seed: int) -> None:
    messages = [{"sender": n, "text": "x" * size} for n, size in enumerate(sizes)]
    queues = [packets(message, sender_pid=1000 + n) for n, message in enumerate(messages)]
    rng = random.Random(seed)
    wire: list[bytes] = []
    while any(queues):  # each sender's packets stay in order; senders interleave at random
        queue = rng.choice([q for q in queues if q])
        wire.append(queue.pop(0))
    reassembler = Reassembler()
    received = [m for m in (reassembler.feed(packet) for packet in wire) if m is not None]
    assert sorted(received, key=lambda m: m["sender"]) == messages
    assert all(len(packet) <= PACKET_LIMIT for packet in wire)


def test_a_large_message_crosses_a_real_seqpacket_pair() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        message = {"event": "hello", "models": [{"name": f"m{n}", "spec": {}} for n in range(4000)]}
        theirs.settimeout(10)
        ours.settimeout(10)
        sender = threading.Thread(target=control.send_message, args=(theirs,), kwargs=message)
        sender.start()
        reassembler = Reassembler()
        received = None
        while received is None:
            received = reassembler.feed(ours.recv(PACKET_LIMIT))
        sender.join()
    assert received == message
