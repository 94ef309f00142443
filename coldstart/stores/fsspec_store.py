"""Every other scheme through fsspec (``gs://``, ``http(s)://``, ``az://`` …)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from zeroserve.coldstart.errors import StoreAccessError
from zeroserve.coldstart.stores.base import ObjectInfo
from zeroserve.coldstart.stores.translate import translated


class FsspecStore:
    """Any other fsspec URL (``gs://``, ``http(s)://``, …); the protocol's package must be
    installed (e.g. gcsfs for gs://)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri.rstrip("/")
        try:
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(self.uri)
        except (ImportError, ValueError) as exc:
            raise StoreAccessError(
                f"{uri}: no filesystem for this scheme ({exc}); install its fsspec package, "
                "e.g. `pip install gcsfs` for gs://"
            ) from None

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else str(self.root)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        with translated(self._path(prefix)):
            found = self.fs.find(self._path(prefix), detail=True)
        root = str(self.root).rstrip("/") + "/"
        return [
            ObjectInfo(
                path[len(root) :] if path.startswith(root) else path,
                int(info["size"]),
                str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or ""),
            )
            for path, info in sorted(found.items())
        ]

    def read_bytes(self, key: str) -> bytes:
        with translated(self._path(key)):
            return bytes(self.fs.cat_file(self._path(key)))

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        with translated(self._path(key)):
            stream = self.fs.open(self._path(key), "rb")
            stream.seek(start)
            return stream  # type: ignore[no-any-return]

    def write_file(self, key: str, source: Path) -> None:
        with translated(self._path(key)):
            self.fs.put_file(str(source), self._path(key))

    def write_bytes(self, key: str, data: bytes) -> None:
        with translated(self._path(key)):
            self.fs.pipe_file(self._path(key), data)

    def exists(self, key: str) -> bool:
        with translated(self._path(key)):
            return bool(self.fs.exists(self._path(key)))
