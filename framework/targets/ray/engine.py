"""The driver's side of the Ray engine: connect, ship the code, deploy each model, read status.

Ray is imported here and in ``replica`` only, and only when the Ray engine runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zeroserve.errors import DeployFailed, UsageError
from zeroserve.serving.loader import FoundPredictor
from zeroserve.targets.ray.options import check_runnable, deployment_options
from zeroserve.targets.ray.replica import REGISTRY_NAMESPACE, ModelReplica

logger = logging.getLogger("zeroserve")
# Ray Serve's handle tells its controller about waiting requests every 10 s by default, so a
# request to a model at zero waited up to that long before the controller started a replica.
HANDLE_METRICS_PUSH = "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S"
HANDLE_METRICS_PUSH_S = "0.1"
FAILED_STATES = {"DEPLOY_FAILED", "UNHEALTHY"}
# Ray Client's proxy forks a server per client, which sometimes dies at birth (ray-project/ray
# #63202: "Starting Ray client server failed", some 7% of connections); the next try works
CLIENT_SERVER_FAILED = "Starting Ray client server failed"
CONNECT_ATTEMPTS = 3
DEPLOY_POLL_S = 0.1


class ReplicaRegistry:
    """A small actor the replicas report their start to (node, pid, cold-start timeline)."""

    def __init__(self) -> None:
        self.replicas: dict[str, dict[str, dict[str, Any]]] = {}

    def replica_started(self, model: str, where: dict[str, Any]) -> None:
        self.replicas.setdefault(model, {})[where["actor"]] = where

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        return self.replicas

    def forget(self, actors: list[str]) -> None:
        """Drop replicas that ended (the front saw their actors gone)."""
        for replicas in self.replicas.values():
            for actor in actors:
                replicas.pop(actor, None)


class RayEngine:
    """One `zeroserve serve --engine ray`: its Ray connection, its applications, its registry."""

    def __init__(self, address: str | None, resources: dict[str, dict[str, float]]) -> None:
        self.address = address
        self.resources = resources
        self.registry_name = f"zeroserve-registry-{uuid.uuid4().hex[:8]}"
        self.registry: Any = None
        self.deployed: list[str] = []
        self._staged: Path | None = None
        # Serve's config objects (built by serve.deployment and by serve.status) register and
        # unregister a module with cloudpickle on each build, which is not thread-safe: a status
        # read in one thread made a deploy in another fail with "is not registered for pickle by
        # value". Every call into Serve that builds one holds this lock.
        self._serve_calls = threading.Lock()

    def connect(self, found: list[FoundPredictor]) -> None:
        """Join (or start) the Ray cluster with the code as the job's working directory, which
        Ray ships to every node and Serve gives every replica."""
        check_runnable([item.declaration for item in found], self.resources)
        os.environ.setdefault(HANDLE_METRICS_PUSH, HANDLE_METRICS_PUSH_S)
        import ray

        self._staged = _stage_code(found)
        try:
            init_with_retries(
                lambda: ray.init(
                    address=self.address,
                    namespace=REGISTRY_NAMESPACE,
                    runtime_env={"working_dir": str(self._staged)},
                    include_dashboard=False if self.address is None else None,
                    logging_level=logging.WARNING,
                    log_to_driver=True,
                ),
                ray.shutdown,
            )
        except ConnectionError as exc:
            raise UsageError(
                f"cannot reach the Ray cluster at {self.address}: {exc}; start one with "
                "`ray start --head`, or leave --address out to start a local one"
            ) from None
        from ray import serve

        self.registry = (
            ray.remote(num_cpus=0)(ReplicaRegistry)
            .options(name=self.registry_name, namespace=REGISTRY_NAMESPACE)
            .remote()
        )
        serve.start(proxy_location="Disabled")

    def deploy(self, item: FoundPredictor, timeout_s: float) -> Any:
        """Run the model as its own Serve application (named after it); its handle once Serve
        reports it running. Raises DeployFailed when Serve gives up on it or ``timeout_s`` ends
        first (``serve.run`` itself would wait for ever), with what Serve says of it."""
        from ray import serve

        options = deployment_options(item.declaration, self.resources.get(item.name))
        target = f"{item.source.name}:{item.cls.__name__}"
        with self._serve_calls:
            app = (
                serve.deployment(ModelReplica)
                .options(**options)
                .bind(target, item.name, self.registry_name)
            )
            run = serve.RunTarget(app, name=item.name, route_prefix=None)
            (handle,) = serve.run_many([run], wait_for_applications_running=False)
        self.deployed.append(item.name)
        self._wait_running(item, timeout_s)
        return handle

    def _wait_running(self, item: FoundPredictor, timeout_s: float) -> None:
        """Return once Serve reports the model's application RUNNING; DeployFailed if it gives
        up on it or ``timeout_s`` passes first."""
        deadline = time.monotonic() + timeout_s
        while True:
            application = self._applications().get(item.name)
            state = str(application.status.value) if application else "NOT_STARTED"
            if state == "RUNNING":
                return
            if state == "DEPLOY_FAILED":
                raise DeployFailed(item.name, state, self._reason(item, application))
            if time.monotonic() > deadline:
                reason = f"not running after {timeout_s:g} s (the start timeout); "
                reason += f"{self._reason(item, application)}; `ray status` shows what it lacks"
                raise DeployFailed(item.name, state, reason)
            time.sleep(DEPLOY_POLL_S)

    def _reason(self, item: FoundPredictor, application: Any) -> str:
        """What Serve says of the model's deployment (the replica's error), else of its app."""
        deployment = self.status().get(item.name, {})
        said = deployment.get("message") or (application.message if application else "")
        state = deployment.get("state", "NOT_DEPLOYED")
        return f"deployment {state}: {status_gist(said) if said else 'no message'}"

    def _applications(self) -> dict[str, Any]:
        from ray import serve

        with self._serve_calls:
            return dict(serve.status().applications)

    def status(self) -> dict[str, dict[str, Any]]:
        """Each deployed model's Serve status: state, message, replicas by state."""
        applications = self._applications()
        found: dict[str, dict[str, Any]] = {}
        for name in self.deployed:
            application = applications.get(name)
            deployment = application.deployments.get(name) if application else None
            if deployment is None:
                found[name] = {"state": "NOT_DEPLOYED", "message": "", "replica_states": {}}
                continue
            found[name] = {
                "state": str(deployment.status.value),
                "message": deployment.message,
                "replica_states": dict(deployment.replica_states),
            }
        return found

    def replicas(self) -> dict[str, list[dict[str, Any]]]:
        """The replicas alive now, with where they run and how their start went."""
        import ray
        from ray.util import list_named_actors

        reported = ray.get(self.registry.snapshot.remote(), timeout=10)
        alive = {entry["name"] for entry in list_named_actors(all_namespaces=True)}
        ended = [name for replicas in reported.values() for name in replicas if name not in alive]
        if ended:
            self.registry.forget.remote(ended)
        return {
            model: [where for actor, where in replicas.items() if actor in alive]
            for model, replicas in reported.items()
        }

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's nodes: id, liveness, address and resources."""
        import ray

        return [
            {
                "node_id": node["NodeID"],
                "alive": node["Alive"],
                "address": node["NodeManagerAddress"],
                "resources": node.get("Resources", {}),
            }
            for node in ray.nodes()
        ]

    def close(self) -> None:
        """Delete this command's applications from a shared cluster (the controller finishes
        that on its own), or stop the local cluster this command started."""
        import ray

        if ray.is_initialized():
            from ray import serve

            # A local cluster's stop kills the replicas outright: their applications are deleted
            # first, and waited for, so that each replica runs its close() (an LLM's engine
            # shutdown). On a shared cluster the controller finishes that on its own.
            for name in self.deployed:
                try:
                    serve.delete(name, _blocking=self.address is None)
                except Exception as exc:  # the cluster may be gone already
                    logger.warning("could not delete Ray Serve application %s: %s", name, exc)
            ray.shutdown()
        if self._staged is not None:
            shutil.rmtree(self._staged.parent, ignore_errors=True)


def init_with_retries(
    init: Callable[[], object], shutdown: Callable[[], object], attempts: int = CONNECT_ATTEMPTS
) -> None:
    """``init()``, tried again (after ``shutdown()``) while Ray Client's server fails to start."""
    for attempt in range(1, attempts + 1):
        try:
            init()
            return
        except ConnectionError as exc:
            if CLIENT_SERVER_FAILED not in str(exc) or attempt == attempts:
                raise
            logger.warning("Ray Client's server did not start (try %d of %d): trying again",
                           attempt, attempts)  # fmt: skip
            shutdown()
            time.sleep(0.5 * attempt)


def _stage_code(found: list[FoundPredictor]) -> Path:
    """The predictors' folder as `zeroserve package` ships it (no caches, no secrets)."""
    from zeroserve.targets.kserve.package import stage

    scratch = Path(tempfile.mkdtemp(prefix="zeroserve-ray-"))
    return stage(found, scratch / "code")


def status_gist(message: str) -> str:
    """Ray's status message without the traceback: its first line and the error's own line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) <= 2:
        return " ".join(lines)
    return f"{lines[0]} ... {lines[-1]}"
