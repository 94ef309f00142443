"""Import KServe without letting it read our command line.

``kserve.model_server`` parses ``sys.argv`` with argparse when it is imported, so zeroserve's own
flags (``--max-body-size`` is an ambiguous prefix of KServe's ``--max_*`` flags) could make it exit.
Every zeroserve module that needs KServe imports it through :func:`kserve_argv`, which shows KServe
the only flags zeroserve wants from it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

# The OpenAPI docs (/docs) are fixed when KServe builds its FastAPI app at import time.
KSERVE_IMPORT_ARGV = ("--enable_docs_url", "true")


@contextmanager
def kserve_argv() -> Iterator[None]:
    """Within the block, ``sys.argv`` holds the program name and KSERVE_IMPORT_ARGV only."""
    saved = sys.argv
    sys.argv = [saved[0] if saved else "zeroserve", *KSERVE_IMPORT_ARGV]
    try:
        yield
    finally:
        sys.argv = saved
