"""`zeroserve serve` with tracing configured, switched on and off at run time by signals.

SIGUSR1 turns span recording on, SIGUSR2 off; the exporter (and its thread) stays configured
either way. The overhead benchmark measures one process in both states, so that where the process
landed on this machine (which moves its speed by ~5%) cannot pass for the cost of tracing.

Run: python -m bench._toggled_tracing serve MODEL.py --direct --port PORT  (OTEL_* set)
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from zeroserve.cli.main import cli
from zeroserve.telemetry import tracing


def _switch(on: bool) -> Any:
    def handler(signum: int, frame: Any) -> None:
        tracing._Switch.on = on and tracing._Switch.tracer is not None  # noqa: SLF001

    return handler


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _switch(True))
    signal.signal(signal.SIGUSR2, _switch(False))
    sys.exit(cli.main(args=sys.argv[1:], prog_name="zeroserve"))
