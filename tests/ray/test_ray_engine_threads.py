"""The engine's Ray Serve calls from several threads (the front's status poller and a deploy)."""

from __future__ import annotations

import threading

import pytest

from tests.ray.conftest import MODELS, RayCluster
from zeroserve.serving.loader import find_predictors

pytestmark = [
    pytest.mark.timeout(300),
    # Ray Serve's own pydantic models warn at import; they are not ours to fix.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
]


def test_status_reads_during_deploys_leave_the_deploys_working(
    ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Serve builds its config objects in serve.deployment() and in serve.status(), and each
    build registers and unregisters a module with cloudpickle, which is not thread-safe: the
    front's poller reading the status made a deploy fail ("... is not registered for pickle by
    value"), and the model never got ready. Without the engine's lock this fails within a few
    deploys."""
    from zeroserve.targets.ray.engine import HANDLE_METRICS_PUSH, RayEngine

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # as the cluster (see conftest)
    monkeypatch.setenv(HANDLE_METRICS_PUSH, "0.1")
    (at_zero,) = find_predictors(str(MODELS.parent / "broken.py"))  # min_replicas 0: no replica
    engine = RayEngine(ray_cluster.address, {})
    stop = threading.Event()
    failures: list[BaseException] = []

    def read_status() -> None:
        while not stop.is_set():
            try:
                engine.status()
            except Exception as exc:
                failures.append(exc)

    reader = threading.Thread(target=read_status)
    try:
        engine.connect([at_zero])
        engine.deploy(at_zero, 60)
        reader.start()
        for _ in range(15):
            engine.deploy(at_zero, 60)
    finally:
        stop.set()
        if reader.is_alive():
            reader.join(timeout=30)
        engine.close()
    assert not failures, failures
