"""``python -m zeroserve.coldstart preload URI --cache DIR --into PATH``: an init-container step.

Exit codes are those of zeroserve.coldstart.preload (0 ready, 2 bad reference, 3 not found,
4 access refused, 5 integrity, 6 no room, 1 other).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from zeroserve.coldstart.cache import ModelCache
from zeroserve.coldstart.errors import ColdStartError
from zeroserve.coldstart.preload import exit_code_for, preload

DEFAULT_BUDGET = 100 * 1024**3


class _Progress:
    """Prints bytes and rate to stderr at most every half second."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last = 0.0
        self.done = 0

    def __call__(self, size: int) -> None:
        self.done += size
        now = time.monotonic()
        if now - self.last >= 0.5:
            self.last = now
            rate = self.done / max(now - self.started, 1e-6) / 1e6
            print(f"fetched {self.done / 1e6:.1f} MB at {rate:.1f} MB/s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zeroserve.coldstart")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("preload", help="fill the cache with a model and expose it")
    run.add_argument("uri", help="model reference: REPO/NAME[@VERSION|@sha256:…] or a folder URI")
    run.add_argument("--cache", type=Path, required=True, help="cache root (the shared volume)")
    run.add_argument("--into", type=Path, help="path to expose the model at (e.g. /mnt/models)")
    run.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="cache budget in bytes")
    run.add_argument("--no-readahead", action="store_true", help="skip the page-cache readahead")
    args = parser.parse_args(argv)
    try:
        lease = preload(
            args.uri,
            ModelCache(args.cache, args.budget),
            into=args.into,
            readahead=not args.no_readahead,
            progress=_Progress(),
        )
    except ColdStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    state = "hit" if lease.hit else f"filled, {lease.fetched_bytes} bytes fetched"
    print(f"ready: {lease.path} ({state})", file=sys.stderr)
    lease.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
