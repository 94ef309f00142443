"""The model console: one HTML page, its script and its style, served at ``/zeroserve/``.

No build step and nothing fetched from outside the machine: three files shipped in the package.
The page reads the same JSON routes a script would (``/zeroserve/status`` for states, replicas
and cold starts; ``/zeroserve/overview`` for traffic, batch sizes and drift) and changes batching
through ``PUT /zeroserve/models/NAME/batching``, so it never offers what the API would refuse.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

HTML = "text/html; charset=utf-8"
OVERVIEW_PATH = "/zeroserve/overview"
# Only the page's own files may run or load; model names are written as text, never as markup.
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}
ASSETS = {
    "/zeroserve": ("console.html", HTML),
    "/zeroserve/": ("console.html", HTML),
    "/zeroserve/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/zeroserve/console.css": ("console.css", "text/css; charset=utf-8"),
}


def asset(path: str) -> tuple[bytes, str] | None:
    """The file served at ``path`` and its content type; None for a path that is not the
    console's (not remembered: any path a client sends comes here)."""
    found = ASSETS.get(path)
    if found is None:
        return None
    name, content_type = found
    return (_file(name), content_type)


@cache
def _file(name: str) -> bytes:
    """One of the three files, read once."""
    return resources.files(__name__).joinpath(name).read_bytes()
