"""Render a predictor as a KServe InferenceService in Knative mode (KServe 0.21's name for what
earlier releases called Serverless; its default mode is Standard, which never scales to zero).

Plain dicts, no cluster needed. The model's code runs in the shared ``zeroserve-python``
ClusterServingRuntime from a code artifact (``ZEROSERVE_CODE_URI``); weights arrive through the
shared cache volume in process (no storageUri, so no second download by KServe's
storage-initializer). Only annotation keys that Knative documents are written.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from zeroserve.errors import UsageError
from zeroserve.spec.fields import DNS_LABEL
from zeroserve.spec.spec import ClusterValue, PredictorSpec

RUNTIME = "zeroserve-python"
# The kit's zeroserve-python container resources (manifests/base/clusterservingruntime.yaml):
# KServe merges a model's own over them.
RUNTIME_RESOURCES = {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}
MODEL_FORMAT = "zeroserve"
CACHE_CLAIM = "zeroserve-model-cache"
CACHE_MOUNT = "/var/cache/zeroserve"
CONTAINER_PORT = 8080
# Knative names a revision "<isvc>-predictor-00001" and it must stay a 63-character DNS label.
MAX_NAME = 63 - len("-predictor-00001")
VLLM_ARGS_ENV = "ZEROSERVE_VLLM_ARGS"  # read by zeroserve.predictors.vllm
# For the pod's ColdStart events; its own name is HOSTNAME (a fieldRef would need Knative's
# `kubernetes.podspec-fieldref` flag, off by default).
POD_ENV = "ZEROSERVE_POD__INFERENCE_SERVICE"
PINNED_ENV = "ZEROSERVE_POD__MODEL_URI"  # the model_uri pinned at deploy
RESERVED_ENV = {"ZEROSERVE_CODE_URI", "ZEROSERVE_CACHE__ROOT", VLLM_ARGS_ENV, POD_ENV, PINNED_ENV}
RUNTIME_USER = 10001  # the runtime image's user (manifests/runtime/Dockerfile)
SERVICE_ACCOUNT = "zeroserve-model"  # the kit's: may write ColdStart events, nothing else
IMAGE = re.compile(r"^[a-z0-9]+([._/:@-][a-zA-Z0-9_.-]+)*$")
GPU_RESOURCE = "nvidia.com/gpu"
KNATIVE = "autoscaling.knative.dev"
SECRET_NAME = re.compile(
    r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|ACCESS_KEY|API_KEY|PRIVATE_KEY", re.I
)


@dataclass(frozen=True)
class RenderOptions:
    """Where and how a predictor is deployed."""

    namespace: str = "default"
    code_uri: str = ""
    image: str | None = None
    service_account: str | None = SERVICE_ACCOUNT
    startup_seconds: int = 600  # the longest load() a pod may take before it is restarted
    request_timeout_seconds: int = 300
    # each model's remote model_uri pinned to a digest (package.pinned_model_uris), by name
    model_uris: dict[str, str] = field(default_factory=dict)


def render_inference_service(spec: PredictorSpec, options: RenderOptions) -> dict[str, Any]:
    """The InferenceService for ``spec``; UsageError if it cannot be expressed."""
    _check(spec, options)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": spec.name,
            "namespace": options.namespace,
            "labels": {
                "app.kubernetes.io/name": spec.name,
                "app.kubernetes.io/component": "predictor",
                "app.kubernetes.io/part-of": "zeroserve",
                "app.kubernetes.io/managed-by": "zeroserve",
            },
            "annotations": {
                "serving.kserve.io/deploymentMode": "Knative",
                # traffic targets tagged `latest` and `prev` (KServe's ksvc reconciler), each
                # with a URL of its own while a canary runs
                "serving.kserve.io/enable-tag-routing": "true",
                "zeroserve.dev/spec-digest": spec_digest(spec, options),
                **_knative_annotations(spec),
            },
        },
        "spec": {"predictor": _predictor(spec, options)},
    }


def spec_digest(spec: PredictorSpec, options: RenderOptions) -> str:
    """A digest of everything rendered, for drift checks against the live object."""
    body = json.dumps([spec.as_json(), options.__dict__], sort_keys=True)
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def _check(spec: PredictorSpec, options: RenderOptions) -> None:
    if len(spec.name) > MAX_NAME:
        raise UsageError(
            f"model name '{spec.name}' has {len(spec.name)} characters; Knative names revisions "
            f"'<name>-predictor-00001', so an InferenceService name may have at most {MAX_NAME}"
        )
    if not DNS_LABEL.match(options.namespace) or len(options.namespace) > 63:
        raise UsageError(f"namespace '{options.namespace}' is not a DNS-1123 label")
    if not options.code_uri:
        raise UsageError("no code artifact URI: pass --repository (or ZEROSERVE_REPOSITORY)")
    if options.image is not None and not IMAGE.match(options.image):
        raise UsageError(f"--image '{options.image}' is not an image reference like repo/name:tag")
    clashes = RESERVED_ENV & set(spec.env)
    if clashes:
        raise UsageError(f"env sets {sorted(clashes)}, which zeroserve sets itself; rename them")
    inline = sorted(k for k, v in spec.env.items() if isinstance(v, str) and SECRET_NAME.search(k))
    if inline:
        raise UsageError(
            f"env {inline} look like credentials but are written inline; keep them in a Secret "
            f"and refer to it: env={{'{inline[0]}': zeroserve.secret('NAME', 'KEY')}}"
        )
    if spec.batching and spec.concurrency < spec.batching.max_batch_size:
        raise UsageError(
            f"concurrency={spec.concurrency} is below batching.max_batch_size="
            f"{spec.batching.max_batch_size}: Knative would scale out before a batch can fill; "
            f"set concurrency >= {spec.batching.max_batch_size}"
        )


def _knative_annotations(spec: PredictorSpec) -> dict[str, str]:
    annotations = {
        f"{KNATIVE}/scale-to-zero-pod-retention-period": f"{int(spec.scale_to_zero_after)}s",
        f"{KNATIVE}/target-burst-capacity": str(spec.concurrency * 2),
    }
    if spec.min_replicas == 0:
        annotations[f"{KNATIVE}/initial-scale"] = "0"  # needs allow-zero-initial-scale (kit patch)
    return annotations


def _predictor(spec: PredictorSpec, options: RenderOptions) -> dict[str, Any]:
    predictor: dict[str, Any] = {
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "scaleMetric": "concurrency",
        "scaleTarget": spec.concurrency,
        "containerConcurrency": 0,  # no hard limit: the activator queues, batching absorbs bursts
        "timeout": options.request_timeout_seconds,
        "model": _model(spec, options),
        "volumes": [{"name": "model-cache", "persistentVolumeClaim": {"claimName": CACHE_CLAIM}}],
        # on the pods: what manifests/monitoring's PodMonitor selects
        "labels": {"app.kubernetes.io/managed-by": "zeroserve", "zeroserve.dev/model": spec.name},
        # the runtime's user may write a fresh cache volume (where the volume type lets the
        # kubelet set its group: block-backed and most CSI volumes; NFS keeps its own modes)
        "securityContext": {"runAsNonRoot": True, "fsGroup": RUNTIME_USER},
    }
    if spec.llm is not None:  # vLLM's workers share tensors through /dev/shm
        predictor["volumes"].append(
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.llm.shm_size}}
        )
    if options.service_account:
        predictor["serviceAccountName"] = options.service_account
    if spec.gpu:
        predictor["tolerations"] = [
            {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
        ]
        predictor["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    return predictor


def _model(spec: PredictorSpec, options: RenderOptions) -> dict[str, Any]:
    def ready() -> dict[str, Any]:
        return {"path": f"/v2/models/{spec.name}/ready", "port": CONTAINER_PORT}

    period = 5
    env = [
        {"name": "ZEROSERVE_CODE_URI", "value": options.code_uri},
        {"name": "ZEROSERVE_CACHE__ROOT", "value": CACHE_MOUNT},
        {"name": POD_ENV, "value": spec.name},
    ]
    if spec.name in options.model_uris:
        env.append({"name": PINNED_ENV, "value": options.model_uris[spec.name]})
    env += [_env_var(key, value) for key, value in sorted(spec.env.items())]
    mounts = [{"name": "model-cache", "mountPath": CACHE_MOUNT}]
    startup_seconds = options.startup_seconds
    if spec.llm is not None:  # the engine's arguments, tunable in the manifest
        env.append({"name": VLLM_ARGS_ENV, "value": shlex.join(spec.llm.vllm_args())})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        startup_seconds = max(startup_seconds, int(spec.llm.startup_timeout_s))
    model: dict[str, Any] = {
        "modelFormat": {"name": MODEL_FORMAT},
        "runtime": RUNTIME,
        "env": env,
        "resources": _resources(spec),
        "volumeMounts": mounts,
        "startupProbe": {
            "httpGet": ready(),
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": max(1, startup_seconds // period),
        },
        "readinessProbe": {"httpGet": ready(), "periodSeconds": period, "timeoutSeconds": 2},
    }
    if options.image:
        model["image"] = options.image
    return model


def _env_var(name: str, value: str | ClusterValue) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": name, "value": value}
    source = "secretKeyRef" if value.kind == "secret" else "configMapKeyRef"
    return {"name": name, "valueFrom": {source: {"name": value.name, "key": value.key}}}


def _resources(spec: PredictorSpec) -> dict[str, dict[str, str]]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if spec.cpu:
        requests["cpu"] = spec.cpu
    if spec.memory:
        requests["memory"] = limits["memory"] = spec.memory
    if spec.gpu:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(spec.gpu)
    return {"requests": requests, "limits": limits}
