"""Third-party failures become one-line errors naming the URI and what to do."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from zeroserve.coldstart import (
    ArtifactNotFound,
    DiskFull,
    StoreAccessError,
    exit_code_for,
    manifest_of_folder,
)
from zeroserve.coldstart import fetch as fetch_module
from zeroserve.coldstart.fetch import fetch_into
from zeroserve.coldstart.stores import LocalStore, translated


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetObject")


@pytest.mark.parametrize(
    ("raised", "expected", "needle", "exit_code"),
    [
        (client_error("AccessDenied"), StoreAccessError, "access denied; grant s3:GetObject", 4),
        (client_error("NoSuchBucket"), ArtifactNotFound, "the bucket does not exist", 3),
        (client_error("NoSuchKey"), ArtifactNotFound, "no such object", 3),
        (client_error("InvalidAccessKeyId"), StoreAccessError, "check AWS_ACCESS_KEY_ID", 4),
        (NoCredentialsError(), StoreAccessError, "no AWS credentials found", 4),
        (
            EndpointConnectionError(endpoint_url="http://x"),
            StoreAccessError,
            "cannot reach the object store",
            4,
        ),
    ],
)
def test_boto_errors_are_translated(
    raised: Exception, expected: type[Exception], needle: str, exit_code: int
) -> None:
    with pytest.raises(expected) as caught, translated("s3://bucket/models/iris"):
        raise raised
    message = str(caught.value)
    assert message.startswith("s3://bucket/models/iris: ")
    assert needle in message
    assert "\n" not in message
    assert exit_code_for(caught.value) == exit_code


def test_disk_full_names_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "w.bin").write_bytes(os.urandom(1000))

    def full(_sink: object, _data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fetch_module, "_write", full)
    with pytest.raises(DiskFull, match="no space left on the filesystem of .*lower the cache"):
        fetch_into(LocalStore(source), manifest_of_folder(source), tmp_path / "out")
    assert exit_code_for(DiskFull("x")) == 6
