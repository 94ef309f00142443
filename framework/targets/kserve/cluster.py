"""Deploy to Kubernetes: server-side apply of rendered InferenceServices, status and rollouts.

Uses the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``), or the in-cluster service account.
Every API error a user meets becomes one line that says what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from zeroserve.errors import ChangedMeanwhile, UsageError

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
FIELD_MANAGER = "zeroserve"
STATUS_RETRIES = 5  # a controller writing status between a check and an apply, again and again
DEPLOYED_BY, DEPLOYED_AT = "zeroserve.dev/deployed-by", "zeroserve.dev/deployed-at"
APPLY = "application/apply-patch+yaml"
INSTALL_KSERVE = (
    "install KServe (its CRDs and controller) on the cluster first; see manifests/README.md"
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
        self,
        isvc: dict[str, Any],
        *,
        force: bool = False,
        expected_version: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Server-side apply with field manager `zeroserve`; unchanged specs change nothing.

        With ``expected_version`` the apply succeeds only if nobody changed the object since
        that resourceVersion was read: of two concurrent deploys, the later one gets a conflict.
        ``dry_run``: the API server admits it (quota included) and stores nothing.
        """
        from kubernetes.client.exceptions import ApiException

        metadata = isvc["metadata"]
        name, namespace = metadata["name"], metadata["namespace"]
        if expected_version:
            isvc = {**isvc, "metadata": {**metadata, "resourceVersion": expected_version}}
        extra = {"dry_run": "All"} if dry_run else {}
        try:
            applied = self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, isvc,
                field_manager=FIELD_MANAGER, force=force, _content_type=APPLY, **extra,
            )  # fmt: skip
        except ApiException as exc:
            if exc.status == 409 and expected_version and "modified" in str(exc.body or ""):
                raise ChangedMeanwhile(self._changed_meanwhile(name, namespace)) from None
            with self._translated("apply", namespace, name):
                raise
        if dry_run:
            return dict(applied or {})
        # The generated client returns no body for 201 Created: read the object back.
        return dict(applied) if applied else self.get(metadata["name"], metadata["namespace"])

    def admit_pod(self, pod: dict[str, Any], namespace: str) -> dict[str, Any] | None:
        """The pod as the API server would admit it (LimitRange defaults filled in, quota and
        service account checked), by a dry run that creates nothing; None if this user may not
        create pods there. UsageError naming the quota or limit that refuses it."""
        from kubernetes.client.exceptions import ApiException

        try:
            admitted = self.core.create_namespaced_pod(namespace, pod, dry_run="All")
        except ApiException as exc:
            if exc.status == 403 and "cannot create resource" in str(exc.body or ""):
                return None
            with self._translated("create pods", namespace):
                raise
        return dict(self.core.api_client.sanitize_for_serialization(admitted))

    def quotas(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's ResourceQuotas: name, hard and used, as the quota controller counts."""
        with self._translated("list resourcequotas", namespace):
            found = self.core.list_namespaced_resource_quota(namespace)
        return [
            {
                "name": quota.metadata.name,
                "hard": dict((quota.status and quota.status.hard) or {}),
                "used": dict((quota.status and quota.status.used) or {}),
            }
            for quota in found.items
        ]

    def keys_of(self, kind: str, name: str, namespace: str) -> tuple[bool, set[str] | None]:
        """(readable, the keys of Secret or ConfigMap ``name`` or None if there is none); the
        values are never kept. (False, None) when this user may not read them."""
        from kubernetes.client.exceptions import ApiException

        if kind == "secret":
            read = self.core.read_namespaced_secret
        else:
            read = self.core.read_namespaced_config_map
        try:
            found = read(name, namespace)
        except ApiException as exc:
            if exc.status in (403, 404):
                return exc.status == 404, None
            with self._translated(f"get {kind}s", namespace, name):
                raise
        return True, set((found.data or {}).keys()) | set(getattr(found, "binary_data", None) or {})

    def _changed_meanwhile(
        self, name: str, namespace: str, now: dict[str, Any] | None = None
    ) -> str:
        """Who changed an InferenceService since a deploy read it, and when."""
        now = now if now is not None else self.find(name, namespace)
        who = "deleted meanwhile" if now is None else last_writer(now)
        return (
            f"inferenceservice {name} in {namespace} changed since this deploy read it ({who}); "
            "nothing was applied; check `zeroserve status` and deploy again, or pass --force "
            "to overwrite"
        )

    def refuse_changed(self, seen: dict[str, dict[str, Any] | None], namespace: str) -> None:
        """ChangedMeanwhile naming the writer unless every InferenceService is as ``seen`` (read
        earlier; None: there was none)."""
        for name, before in seen.items():
            self._unchanged(name, namespace, before)

    def _unchanged(
        self, name: str, namespace: str, before: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The object now, or ChangedMeanwhile if it changed since ``before``. Status written
        meanwhile (KServe's controller) is no change: only the spec (its generation), labels
        and annotations count."""
        now = self.find(name, namespace)
        if _what_a_deploy_writes(now) != _what_a_deploy_writes(before):
            raise ChangedMeanwhile(self._changed_meanwhile(name, namespace, now))
        return now

    def apply_unchanged(
        self, isvc: dict[str, Any], seen: dict[str, Any] | None, *, check: bool, force: bool
    ) -> dict[str, Any]:
        """Apply ``isvc`` (``force``: taking over other managers' fields) unless, with ``check``,
        the object changed since ``seen`` was read. The apply is conditional on the version
        checked, and checked again if only the status moved in between."""
        name, namespace = isvc["metadata"]["name"], isvc["metadata"]["namespace"]
        for _ in range(STATUS_RETRIES):
            now = self._unchanged(name, namespace, seen) if check else None
            version = None if now is None else str(now["metadata"]["resourceVersion"])
            try:
                return self.apply(isvc, force=force, expected_version=version)
            except ChangedMeanwhile:
                continue  # checked again: a status write passes, a spec change is refused
        raise ChangedMeanwhile(self._changed_meanwhile(name, namespace))

    def find(self, name: str, namespace: str) -> dict[str, Any] | None:
        """The InferenceService, or None when there is none of that name (one GET)."""
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
        return dict(found)

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

    def set_canary(
        self, current: dict[str, Any], percent: int | None, writer: dict[str, str]
    ) -> dict[str, Any]:
        """Set `canaryTrafficPercent` of ``current`` as it was read (None removes it: the latest
        revision takes all traffic); a change made since it was read is refused, not lost."""
        name, namespace = current["metadata"]["name"], current["metadata"]["namespace"]
        predictor = dict(current["spec"]["predictor"])
        if percent is None:
            predictor.pop("canaryTrafficPercent", None)
        else:
            predictor["canaryTrafficPercent"] = percent
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceService",
            # an apply owns what it sends: the labels and annotations go along, or they go away
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": current["metadata"].get("labels") or {},
                "annotations": {**(current["metadata"].get("annotations") or {}), **writer},
            },
            "spec": {**current["spec"], "predictor": predictor},
        }
        return self.apply_unchanged(body, current, check=True, force=True)

    def replicas(self, name: str, namespace: str) -> int:
        """Running pods of the model (0 when it has scaled to zero)."""
        with self._translated("list pods", namespace):
            pods = self.core.list_namespaced_pod(
                namespace, label_selector=f"serving.kserve.io/inferenceservice={name}"
            )
        return sum(1 for pod in pods.items if (pod.status and pod.status.phase) == "Running")

    def events(self, name: str, namespace: str) -> list[dict[str, Any]]:
        """The events on ``name``, oldest first."""
        return self._events(namespace, f"involvedObject.name={name}")

    def cold_starts(self, namespace: str) -> dict[str, dict[str, Any]]:
        """The last ColdStart event of each InferenceService in ``namespace``, by name."""
        selector = "reason=ColdStart,involvedObject.kind=InferenceService"
        return {event["object"]: event for event in self._events(namespace, selector)}

    def _events(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        with self._translated("list events", namespace):
            found = self.core.list_namespaced_event(namespace, field_selector=selector)
        events = [
            {
                "object": e.involved_object.name,
                "type": e.type,
                "reason": e.reason,
                "message": e.message,
                "time": _utc(e.last_timestamp or e.event_time or e.metadata.creation_timestamp),
            }
            for e in found.items
        ]
        return sorted(events, key=lambda event: event["time"])

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
        from zeroserve.targets.kserve.preflight import admission_refusal

        body = str(exc.body or "")
        what = f"inferenceservice {name}" if name else "inferenceservices"
        # "list pods", "get secrets" name their own resource; a bare verb is of InferenceServices
        act = (f"{verb} {name}" if name else verb) if " " in verb else f"{verb} {what}"
        if exc.status == 403:
            refusal = admission_refusal(_message(body), namespace)
            return refusal or (
                f"forbidden: you may not {act} in namespace {namespace}; ask for the "
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
        return f"{act} in {namespace} failed: HTTP {exc.status} {_message(body)}"


def _utc(moment: Any) -> str:
    """``2026-12-03T08:33:52Z`` for a datetime the client parsed (an empty string for none)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else ""


def _what_a_deploy_writes(isvc: dict[str, Any] | None) -> Any:
    """What a change of the object is measured by: its spec (generation), labels, annotations."""
    if isvc is None:
        return None
    metadata = isvc["metadata"]
    return metadata.get("generation"), metadata.get("labels"), metadata.get("annotations")


def _status_only(entry: dict[str, Any]) -> bool:
    """A managed-fields entry of a status writer (a controller), who changed no model: marked
    by ``subresource`` (Kubernetes 1.22+) or owning nothing but ``status``."""
    owned = set((entry.get("fieldsV1") or {}).keys())
    return entry.get("subresource") == "status" or (bool(owned) and owned <= {"f:status"})


def writer_annotations() -> dict[str, str]:
    """Who changes an InferenceService now, for the next writer's conflict message."""
    import datetime
    import getpass
    import socket

    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {DEPLOYED_BY: f"{getpass.getuser()}@{socket.gethostname()}", DEPLOYED_AT: now}


def last_writer(isvc: dict[str, Any]) -> str:
    """``changed by USER@HOST at TIME``: from zeroserve's annotations, else the newest entry of
    the object's managed fields (kubectl, a controller)."""
    metadata = isvc.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    writes = [f for f in metadata.get("managedFields") or [] if not _status_only(f)]
    fields = sorted(writes, key=lambda f: str(f.get("time") or ""))
    newest = fields[-1] if fields else {}
    if newest.get("manager") in (None, FIELD_MANAGER) and DEPLOYED_BY in annotations:
        return f"changed by {annotations[DEPLOYED_BY]} at {annotations.get(DEPLOYED_AT, '?')}"
    return f"changed by {newest.get('manager', 'an unknown writer')} at {newest.get('time', '?')}"


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
