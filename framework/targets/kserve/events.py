"""ColdStart events: each cold start of a pod, phase by phase, on its InferenceService.

The runtime in the pod writes one once its model is ready, as the pod's service account: the kit's
``zeroserve-cold-start-events`` Role lets it create events and read InferenceServices (an event
names its object's UID, which is what ``kubectl describe`` matches events on), nothing else.
``kubectl describe isvc NAME`` and ``zeroserve status`` read them back without waking the model.
A pod that cannot write one says why in one log line and serves on.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroserve.settings import PodSettings

logger = logging.getLogger("zeroserve")
REASON = "ColdStart"
COMPONENT = "zeroserve"
ROLE = "zeroserve-cold-start-events"
ISVC_PATH = "/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/{name}"
# (label in the message, the timeline phases it sums)
PHASES = (
    ("fetch", ("fetch_code", "fetch")),
    ("dependency environment", ("dependencies",)),
    ("imports", ("imports", "preimport")),
    ("load", ("load",)),
    ("warm-up", ("warmup",)),
)
# an LLM engine's phases inside its load, named where the engine reported them (vllm_start)
ENGINE_PHASES = (
    ("engine core start", "engine_core_start"),
    ("weights", "weight_load"),
    ("KV cache", "kv_cache"),
    ("compile", "compile"),
)


def cold_start_message(timeline: dict[str, Any]) -> str:
    """``cold start 3.21s: fetch 1.20s, dependency environment -, imports 0.81s, load 0.90s,
    warm-up 0.30s``: each phase's own seconds (``-``: it did not run) and the wall time from the
    process start to ready (phases may overlap: weights are fetched while code imports). An LLM's
    load adds its engine's phases: ``(engine 0.80s: engine core start 0.10s, weights 0.30s, KV
    cache 0.20s, compile 0.10s)``."""
    spent: dict[str, float] = {}
    total = 0.0
    for phase in timeline["phases"]:
        end = phase.get("end_s")
        if end is None:
            continue
        total = max(total, end)
        spent[phase["name"]] = spent.get(phase["name"], 0.0) + end - phase["start_s"]
    parts = []
    for label, names in PHASES:
        seconds = [spent[name] for name in names if name in spent]
        parts.append(f"{label} {sum(seconds):.2f}s" if seconds else f"{label} -")
    message = f"cold start {total:.2f}s: " + ", ".join(parts)
    if "engine_start" in spent:
        engine = [f"{label} {spent[name]:.2f}s" for label, name in ENGINE_PHASES if name in spent]
        message += f" (engine {spent['engine_start']:.2f}s: " + ", ".join(engine) + ")"
    return message


@dataclass(frozen=True)
class PodIdentity:
    """Where the API server is and who this pod is, from what the kubelet mounts and sets."""

    api_server: str
    token: str
    certificate_authority: Path
    namespace: str
    inference_service: str
    pod: str

    @classmethod
    def of_this_pod(cls, settings: PodSettings) -> PodIdentity | None:
        """None outside a cluster pod (no InferenceService named), with a log line if the pod
        lacks what it needs to write events."""
        if not settings.inference_service:
            return None
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        folder = settings.service_account_dir
        try:
            if not host:
                raise OSError("KUBERNETES_SERVICE_HOST is not set")
            token = (folder / "token").read_text().strip()
            namespace = (folder / "namespace").read_text().strip()
        except OSError as exc:
            logger.warning(
                "no ColdStart events for inferenceservice %s: no service account to write them "
                "as (%s); run the pod with automountServiceAccountToken",
                settings.inference_service,
                exc,
            )
            return None
        return cls(
            api_server=f"https://{f'[{host}]' if ':' in host else host}:{port}",
            token=token,
            certificate_authority=folder / "ca.crt",
            namespace=namespace,
            inference_service=settings.inference_service,
            pod=settings.name or os.environ.get("HOSTNAME", ""),
        )


def report_cold_start(identity: PodIdentity, timeline: dict[str, Any]) -> bool:
    """Write the ColdStart event; False (and one warning line) when the cluster refuses."""
    import httpx

    name, namespace = identity.inference_service, identity.namespace
    try:
        with httpx.Client(
            base_url=identity.api_server,
            verify=str(identity.certificate_authority),
            headers={"Authorization": f"Bearer {identity.token}"},
            timeout=10.0,
        ) as client:
            found = client.get(ISVC_PATH.format(namespace=namespace, name=name))
            if found.status_code != 200:
                return _refused(identity, "get inferenceservices", found)
            event = _event(identity, found.json()["metadata"]["uid"], timeline)
            written = client.post(f"/api/v1/namespaces/{namespace}/events", json=event)
            if written.status_code not in (200, 201):
                return _refused(identity, "create events", written)
    except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
        logger.warning(
            "no ColdStart event for inferenceservice %s: the API server at %s did not answer "
            "(%s: %s)",
            name,
            identity.api_server,
            type(exc).__name__,
            exc,
        )
        return False
    logger.info("ColdStart event written on inferenceservice %s", name)
    return True


def report_in_background(identity: PodIdentity, timeline: dict[str, Any]) -> threading.Thread:
    """Write the event off the serving loop (a slow API server never delays a request)."""
    thread = threading.Thread(
        target=report_cold_start, args=(identity, timeline), name="zeroserve-event", daemon=True
    )
    thread.start()
    return thread


def _event(identity: PodIdentity, uid: str, timeline: dict[str, Any]) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{identity.inference_service}.coldstart."},
        "involvedObject": {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "name": identity.inference_service,
            "namespace": identity.namespace,
            "uid": uid,
        },
        "reason": REASON,
        "message": f"{cold_start_message(timeline)} (pod {identity.pod})",
        "type": "Normal",
        "source": {"component": COMPONENT, "host": identity.pod},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def _refused(identity: PodIdentity, verb: str, answer: Any) -> bool:
    why = (
        f"the pod's service account may not {verb} in {identity.namespace}; bind the Role "
        f"{ROLE} (manifests/base/rbac.yaml) to it"
        if answer.status_code in (401, 403)
        else f"{verb}: HTTP {answer.status_code} {answer.text[:200]}"
    )
    logger.warning(
        "no ColdStart event for inferenceservice %s: %s", identity.inference_service, why
    )
    return False
