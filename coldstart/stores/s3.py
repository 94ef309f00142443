"""``s3://`` through boto3, for AWS S3 and any S3-compatible store (MinIO, moto, Ceph)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from zeroserve.coldstart.errors import ArtifactNotFound
from zeroserve.coldstart.stores.base import ObjectInfo
from zeroserve.coldstart.stores.translate import translated


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
