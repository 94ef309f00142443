"""Deploy to Kubernetes: server-side apply of rendered InferenceServices, status and rollouts.

Uses the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``), or the in-cluster service account.
Every API error a user meets becomes one line that says what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from zeroserve.errors import UsageError

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
FIELD_MANAGER = "zeroserve"
APPLY = "application/apply-patch+yaml"
INSTALL_KSERVE = (
    "install KServe (its CRDs and controller) on the cluster first; see manifests/README.md"
)


@dataclass(frozen=True)
class ModelStatus:
    """One line of `zeroserve status`."""

    name: str
    namespace: str
    ready: bool
    url: str
    latest_revision: str
    previous_revision: str
    traffic: dict[str, int]
    canary_percent: int | None
    conditions: list[dict[str, Any]]

    @classmethod
    def of(cls, isvc: dict[str, Any]) -> ModelStatus:
        status = isvc.get("status") or {}
        predictor = (status.get("components") or {}).get("predictor") or {}
        conditions = list(status.get("conditions") or [])
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        traffic = {
            str(t.get("revisionName", "?")): int(t.get("percent", 0))
            for t in predictor.get("traffic") or []
        }
        return cls(
            name=isvc["metadata"]["name"],
            namespace=isvc["metadata"]["namespace"],
            ready=ready,
            url=str(status.get("url") or ""),
            latest_revision=str(predictor.get("latestCreatedRevision") or ""),
            previous_revision=str(predictor.get("previousRolledoutRevision") or ""),
            traffic=traffic,
            canary_percent=isvc["spec"]["predictor"].get("canaryTrafficPercent"),
            conditions=conditions,
        )


class Cluster:
    """The InferenceServices of one cluster, through the official Kubernetes client."""

    def __init__(self, kubeconfig: str | None = None) -> None:
        from kubernetes import client
        from kubernetes import config as kubeconfig_loader

        config: Any = kubeconfig_loader
        if kubeconfig is not None:
            _load_named_kubeconfig(config, kubeconfig)
        else:
            _load_default_config(config)
        self.custom: Any = client.CustomObjectsApi()
        self.core: Any = client.CoreV1Api()
        self.server = client.Configuration.get_default_copy().host

    def apply(
        self, isvc: dict[str, Any], *, force: bool = False, expected_version: str | None = None
    ) -> dict[str, Any]:
        """Server-side apply with field manager `zeroserve`; unchanged specs change nothing.

        With ``expected_version`` the apply succeeds only if nobody changed the object since
        that resourceVersion was read: of two concurrent deploys, the later one gets a conflict.
        """
        metadata = isvc["metadata"]
        if expected_version:
            isvc = {**isvc, "metadata": {**metadata, "resourceVersion": expected_version}}
        with self._translated("apply", metadata["namespace"]):
            applied = self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                metadata["namespace"],
                PLURAL,
                metadata["name"],
                isvc,
                field_manager=FIELD_MANAGER,
                force=force,
                _content_type=APPLY,
            )
        # The generated client returns no body for 201 Created: read the object back.
        return dict(applied) if applied else self.get(metadata["name"], metadata["namespace"])

    def resource_version(self, name: str, namespace: str) -> str | None:
        """The object's current resourceVersion, or None when it does not exist yet."""
        from kubernetes.client.exceptions import ApiException

        try:
            found = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404 and "the server could not find" not in str(exc.body or ""):
                return None
            with self._translated("get", namespace, name):
                raise
        return str(found["metadata"]["resourceVersion"])

    def get(self, name: str, namespace: str) -> dict[str, Any]:
        with self._translated("get", namespace, name):
            return dict(
                self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            )

    def list_models(self, namespace: str) -> list[dict[str, Any]]:
        with self._translated("list", namespace):
            found = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return list(found.get("items", []))

    def delete(self, name: str, namespace: str) -> None:
        with self._translated("delete", namespace, name):
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def set_canary(self, name: str, namespace: str, percent: int | None) -> dict[str, Any]:
        """Own `canaryTrafficPercent` (None removes it: the latest revision takes all traffic)."""
        current = self.get(name, namespace)
        predictor = dict(current["spec"]["predictor"])
        if percent is None:
            predictor.pop("canaryTrafficPercent", None)
        else:
            predictor["canaryTrafficPercent"] = percent
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {**current["spec"], "predictor": predictor},
        }
        return self.apply(body, force=True)

    def replicas(self, name: str, namespace: str) -> int:
        """Running pods of the model (0 when it has scaled to zero)."""
        with self._translated("list pods", namespace):
            pods = self.core.list_namespaced_pod(
                namespace, label_selector=f"serving.kserve.io/inferenceservice={name}"
            )
        return sum(1 for pod in pods.items if (pod.status and pod.status.phase) == "Running")

    def events(self, name: str, namespace: str) -> list[dict[str, Any]]:
        with self._translated("list events", namespace):
            found = self.core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={name}"
            )
        return [{"type": e.type, "reason": e.reason, "message": e.message} for e in found.items]

    @contextlib.contextmanager
    def _translated(self, verb: str, namespace: str, name: str | None = None) -> Iterator[None]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            yield
        except ApiException as exc:
            raise UsageError(self._explain(exc, verb, namespace, name)) from None
        except HTTPError as exc:
            raise UsageError(
                f"no cluster reachable at {self.server} ({type(exc).__name__}); "
                "check KUBECONFIG and the network"
            ) from None

    def _explain(self, exc: Any, verb: str, namespace: str, name: str | None) -> str:
        body = str(exc.body or "")
        what = f"inferenceservice {name}" if name else "inferenceservices"
        if exc.status == 403:
            return (
                f"forbidden: you may not {verb} {what} in namespace {namespace}; ask for the "
                "zeroserve-deployer ClusterRole bound there (manifests/base/rbac.yaml)"
            )
        if exc.status == 404 and name is None or "the server could not find" in body:
            return f"the cluster has no InferenceService kind: {INSTALL_KSERVE}"
        if exc.status == 404:
            return f"no {what} in namespace {namespace}"
        if exc.status == 409 and "modified" in body:
            return (
                f"conflict: {what} in {namespace} changed while this deploy ran (another "
                "deploy?); nothing was applied; check `zeroserve status` and deploy again"
            )
        if exc.status == 409:
            return (
                f"conflict: another field manager owns fields of {what} in {namespace} "
                f"({_message(body)}); rerun with --force to take them over"
            )
        return f"{verb} {what} in {namespace} failed: HTTP {exc.status} {_message(body)}"


def _load_named_kubeconfig(config: Any, path: str) -> None:
    """Load the kubeconfig a user named; UsageError naming the file and what is wrong with it."""
    from kubernetes.config.config_exception import ConfigException

    if not Path(path).expanduser().is_file():
        raise UsageError(f"--kubeconfig {path}: no such file; pass the path of a kubeconfig")
    try:
        config.load_kube_config(config_file=str(Path(path).expanduser()))
    except (ConfigException, yaml.YAMLError, TypeError, ValueError, KeyError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UsageError(
            f"--kubeconfig {path} is not a usable kubeconfig ({reason}); check it with "
            "`kubectl --kubeconfig PATH config view`"
        ) from None


def _load_default_config(config: Any) -> None:
    """KUBECONFIG or ~/.kube/config, else the in-cluster service account."""
    from kubernetes.config.config_exception import ConfigException

    try:
        config.load_kube_config()
    except (ConfigException, FileNotFoundError, TypeError):
        try:
            config.load_incluster_config()
        except ConfigException:
            raise UsageError(
                "no cluster configured: set KUBECONFIG (or --kubeconfig), or run inside a "
                "cluster with a service account"
            ) from None
    except yaml.YAMLError as exc:
        raise UsageError(f"the kubeconfig is not valid YAML ({exc}); check KUBECONFIG") from None


def _message(body: str) -> str:
    import json

    with contextlib.suppress(ValueError, TypeError):
        return str(json.loads(body).get("message", body))[:300]
    return body[:300]
