"""Settings, read once by the CLI from flags and ``ZEROSERVE_*`` environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_SIZE = re.compile(r"^\s*(\d+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(value: object) -> object:
    """``"16MiB"`` -> 16777216; integers pass through; anything else is left for pydantic."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f"'{value}' is not a size; use bytes or a unit, e.g. 16MiB or 500kB")
        return int(match.group(1)) * _UNITS[match.group(2).lower()]
    return value


ByteSize = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]


class ServerSettings(BaseModel):
    """How a local server listens and what it accepts."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_size: ByteSize = 32 * 1024**2
    max_header_size: ByteSize = 64 * 1024  # request line and headers together (h11's default)
    keep_alive_timeout: float = Field(default=75.0, gt=0)  # idle between requests (nginx's)
    header_timeout: float = Field(default=30.0, gt=0)  # first byte to the end of the headers
    body_timeout: float = Field(default=60.0, gt=0)  # the longest pause while a body arrives
    # one line per request (uvicorn's access line and KServe's latency line): off, as nobody
    # reads them at thousands a second; the metrics and the console count every request anyway
    access_log: bool = False
    # JSON v1/v2 predictions for ready models skip FastAPI's routing (serving/fast_path.py);
    # ZEROSERVE_SERVER__FAST_PATH=false sends every request through KServe's app
    fast_path: bool = True


class LocalSettings(BaseModel):
    """The local activator: how many requests it holds, how long a start may take, scaling."""

    queue_limit: int = Field(default=100, gt=0)  # Knative's activator-capacity default
    start_timeout: float = Field(default=300.0, gt=0)
    stable_window: float = Field(default=60.0, gt=0)  # Knative's stable-window default
    tick: float = Field(default=0.5, gt=0)
    fork: bool = True
    drain_grace: float = Field(default=30.0, gt=0)
    splits: list[str] = Field(default_factory=list)  # --split NAME=VERSION:WEIGHT,...
    shadows: list[str] = Field(default_factory=list)  # --shadow NAME=VERSION


class CacheSettings(BaseModel):
    """Where fetched models are kept, and how much room they may take."""

    root: Path = Path("~/.cache/zeroserve/models").expanduser()
    budget: ByteSize = 20 * 1024**3


class PodSettings(BaseModel):
    """What a cluster pod knows of itself (rendered by `zeroserve render`; empty elsewhere): the
    InferenceService it serves (and so the one predictor of its code artifact to serve, with
    the weights pinned at deploy), to write a ColdStart event on, as its service account."""

    inference_service: str = ""  # also the one @predictor the pod serves (its name)
    model_uri: str = ""  # that predictor's model_uri, pinned to a digest at deploy
    name: str = ""  # the pod's own name (default: HOSTNAME, which Kubernetes sets to it)
    service_account_dir: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class Settings(BaseSettings):
    """All of zeroserve's settings; ``ZEROSERVE_SERVER__PORT=9000`` sets ``server.port``."""

    model_config = SettingsConfigDict(env_prefix="ZEROSERVE_", env_nested_delimiter="__")

    server: ServerSettings = ServerSettings()
    cache: CacheSettings = CacheSettings()
    local: LocalSettings = LocalSettings()
    pod: PodSettings = PodSettings()
    repository: str = ""
    debug: bool = False
