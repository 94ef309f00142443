"""Third-party store errors (boto, fsspec, OS) as ColdStartErrors that name the URI and the fix.

An exception that did not come from a store client is re-raised as it is, with its traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from zeroserve.coldstart.errors import (
    ArtifactNotFound,
    ColdStartError,
    IntegrityError,
    StoreAccessError,
)


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
