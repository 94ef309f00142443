"""Object stores behind one small interface: S3 (boto3), local folders, and fsspec for the rest.

Third-party errors are translated here, at the boundary, into ColdStartError subclasses whose
message names the URI and what to do.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlparse

from zeroserve.coldstart.errors import (
    ArtifactNotFound,
    ColdStartError,
    IntegrityError,
    StoreAccessError,
)


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


def open_store(uri: str) -> ObjectStore:
    """The store for a folder URI: ``s3://``, ``file://``, a plain path, or any fsspec URL."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return S3Store(uri)
    if parsed.scheme in ("", "file"):
        return LocalStore(Path(parsed.path if parsed.scheme else uri).expanduser())
    return FsspecStore(uri)


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


class S3Store:
    """An S3 prefix through boto3; endpoint, region and credentials come from the usual AWS
    environment variables and files (``AWS_ENDPOINT_URL`` for any S3-compatible store)."""

    def __init__(self, uri: str) -> None:
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise ArtifactNotFound(f"{uri}: an S3 URI needs a bucket, e.g. s3://bucket/models")
        self.uri = uri.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                retries={"max_attempts": 5, "mode": "adaptive"}, max_pool_connections=32
            )
            # A session of its own: credentials are read from the environment as it is now.
            self._client = boto3.session.Session().client("s3", config=config)
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}".strip("/") if self.prefix else key

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        full = self._key(prefix)
        full = full + "/" if full and not full.endswith("/") else full
        found = []
        with translated(f"s3://{self.bucket}/{full}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) + 1 :] if self.prefix else item["Key"]
                    found.append(ObjectInfo(key, int(item["Size"]), item["ETag"].strip('"')))
        return found

    def read_bytes(self, key: str) -> bytes:
        with translated(f"s3://{self.bucket}/{self._key(key)}"):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            return bytes(body.read())

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> BinaryIO:
        arguments = {"Bucket": self.bucket, "Key": self._key(key)}
        if start or end is not None:
            arguments["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        with translated(f"s3://{self.bucket}/{self._key(key)}"):
            return self.client.get_object(**arguments)["Body"]  # type: ignore[no-any-return]

    def write_file(self, key: str, source: Path) -> None:
        with translated(f"s3://{self.bucket}/{self._key(key)}"):
            self.client.upload_file(str(source), self.bucket, self._key(key))

    def write_bytes(self, key: str, data: bytes) -> None:
        with translated(f"s3://{self.bucket}/{self._key(key)}"):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def exists(self, key: str) -> bool:
        try:
            with translated(f"s3://{self.bucket}/{self._key(key)}"):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ArtifactNotFound:
            return False
        return True


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


@contextlib.contextmanager
def translated(where: str) -> Iterator[None]:
    """Turn boto, fsspec and OS errors into ColdStartErrors that name ``where`` and the fix."""
    try:
        yield
    except ColdStartError:
        raise
    except FileNotFoundError:
        raise ArtifactNotFound(f"{where} does not exist") from None
    except PermissionError:
        raise StoreAccessError(f"{where}: permission denied") from None
    except Exception as exc:
        if not type(exc).__module__.startswith(_STORE_CLIENTS):
            raise  # not the store's answer: a bug to see with its traceback
        raise _translate_boto(where, exc) from None


_STORE_CLIENTS = ("botocore", "boto3", "s3transfer", "urllib3", "aiobotocore", "s3fs", "fsspec")


_BOTO_CODES = {
    "NoSuchBucket": (ArtifactNotFound, "the bucket does not exist; check the URI"),
    "NoSuchKey": (ArtifactNotFound, "no such object; check the URI and version"),
    "InvalidRange": (
        IntegrityError,
        "the object is shorter than its manifest says: it was truncated or replaced after it "
        "was pushed; push the model again",
    ),
    "404": (ArtifactNotFound, "no such object; check the URI and version"),
    "AccessDenied": (
        StoreAccessError,
        "access denied; grant s3:GetObject/ListBucket to these "
        "credentials (in a cluster: the service account's role)",
    ),
    "403": (StoreAccessError, "access denied; check the credentials' permissions"),
    "InvalidAccessKeyId": (
        StoreAccessError,
        "the access key is not known to this store; check AWS_ACCESS_KEY_ID and AWS_ENDPOINT_URL",
    ),
    "SignatureDoesNotMatch": (
        StoreAccessError,
        "the secret key is wrong; check AWS_SECRET_ACCESS_KEY",
    ),
}


def _translate_boto(where: str, exc: Exception) -> Exception:
    kind = type(exc).__name__
    if kind == "NoCredentialsError":
        return StoreAccessError(
            f"{where}: no AWS credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run where an IAM role is available"
        )
    if kind in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        return StoreAccessError(
            f"{where}: cannot reach the object store ({exc}); check "
            "AWS_ENDPOINT_URL and the network"
        )
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        error_class, advice = _BOTO_CODES.get(code, (StoreAccessError, f"store error {code}"))
        return error_class(f"{where}: {advice}")
    return StoreAccessError(f"{where}: {kind}: {exc}")
