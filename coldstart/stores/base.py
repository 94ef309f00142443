"""What every object store offers: a folder-like view of objects under one root URI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class ObjectInfo:
    """One object under a store's root: its key relative to the root, size and ETag."""

    key: str
    size: int
    etag: str


class ObjectStore(Protocol):
    """A folder-like view of objects under one root URI."""

    uri: str

    def list(self, prefix: str = "") -> list[ObjectInfo]: ...

    def read_bytes(self, key: str) -> bytes: ...

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO: ...

    def write_file(self, key: str, source: Path) -> None: ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def exists(self, key: str) -> bool: ...
