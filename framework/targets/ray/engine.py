"""The driver's side of the Ray engine: connect, ship the code, deploy each model, read status.

Ray is imported here and in ``replica`` only, and only when the Ray engine runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from zeroserve.errors import UsageError
from zeroserve.serving.loader import FoundPredictor
from zeroserve.targets.ray.options import check_runnable, deployment_options
from zeroserve.targets.ray.replica import REGISTRY_NAMESPACE, ModelReplica

logger = logging.getLogger("zeroserve")
# Ray Serve's handle tells its controller about waiting requests every 10 s by default, so a
# request to a model at zero waited up to that long before the controller started a replica.
HANDLE_METRICS_PUSH = "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S"
HANDLE_METRICS_PUSH_S = "0.1"
FAILED_STATES = {"DEPLOY_FAILED", "UNHEALTHY"}


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

    def connect(self, found: list[FoundPredictor]) -> None:
        """Join (or start) the Ray cluster with the code as the job's working directory, which
        Ray ships to every node and Serve gives every replica."""
        check_runnable([item.declaration for item in found], self.resources)
        os.environ.setdefault(HANDLE_METRICS_PUSH, HANDLE_METRICS_PUSH_S)
        import ray

        self._staged = _stage_code(found)
        try:
            ray.init(
                address=self.address,
                namespace=REGISTRY_NAMESPACE,
                runtime_env={"working_dir": str(self._staged)},
                include_dashboard=False if self.address is None else None,
                logging_level=logging.WARNING,
                log_to_driver=True,
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

    def deploy(self, item: FoundPredictor) -> Any:
        """Run the model as its own Serve application (named after it); its handle."""
        from ray import serve

        options = deployment_options(item.declaration, self.resources.get(item.name))
        target = f"{item.source.name}:{item.cls.__name__}"
        app = (
            serve.deployment(ModelReplica)
            .options(**options)
            .bind(target, item.name, self.registry_name)
        )
        handle = serve.run(app, name=item.name, route_prefix=None, blocking=False)
        self.deployed.append(item.name)
        return handle

    def status(self) -> dict[str, dict[str, Any]]:
        """Each deployed model's Serve status: state, message, replicas by state."""
        from ray import serve

        applications = serve.status().applications
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
            if self.address is not None:
                from ray import serve

                for name in self.deployed:
                    try:
                        serve.delete(name, _blocking=False)
                    except Exception as exc:  # the cluster may be gone already
                        logger.warning("could not delete Ray Serve application %s: %s", name, exc)
            ray.shutdown()
        if self._staged is not None:
            shutil.rmtree(self._staged.parent, ignore_errors=True)


def _stage_code(found: list[FoundPredictor]) -> Path:
    """The predictors' folder as `zeroserve package` ships it (no caches, no secrets)."""
    from zeroserve.targets.kserve.package import stage

    scratch = Path(tempfile.mkdtemp(prefix="zeroserve-ray-"))
    return stage(found, scratch / "code")
