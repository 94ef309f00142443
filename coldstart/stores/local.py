"""A folder on a local or mounted filesystem: plain paths and ``file://`` URIs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO

from zeroserve.coldstart.errors import ArtifactNotFound
from zeroserve.coldstart.stores.base import ObjectInfo


class LocalStore:
    """A folder on a local or mounted filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uri = str(root)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return []
        found = []
        for path in sorted(base.rglob("*")):
            if path.is_file():
                stat = path.stat()
                key = path.relative_to(self.root).as_posix()
                found.append(ObjectInfo(key, stat.st_size, f"{stat.st_size}-{stat.st_mtime_ns}"))
        return found

    def read_bytes(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(f"{self.root / key} does not exist") from None

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        try:
            stream = (self.root / key).open("rb")
        except FileNotFoundError:
            raise ArtifactNotFound(f"{self.root / key} does not exist") from None
        stream.seek(start)
        return stream

    def write_file(self, key: str, source: Path) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)

    def write_bytes(self, key: str, data: bytes) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def exists(self, key: str) -> bool:
        return (self.root / key).exists()
