"""Print the code block that follows a `<!-- MARKER -->` line in README.md."""

from __future__ import annotations

import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def block_after(marker: str, text: str) -> str:
    lines = text.splitlines()
    start = lines.index(f"<!-- {marker} -->")
    fence = start + 1
    if not lines[fence].startswith("```"):
        raise SystemExit(f"README.md: no code block right after <!-- {marker} -->")
    end = lines.index("```", fence + 1)
    return "\n".join(lines[fence + 1 : end])


if __name__ == "__main__":
    print(block_after(sys.argv[1], README.read_text()))
