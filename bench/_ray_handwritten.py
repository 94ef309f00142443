"""The baseline of ``bench.ray``: iris as a Ray Serve user writes it from Ray's docs.

One deployment class behind Ray Serve's own HTTP proxy; it reads the JSON body, predicts, and
answers the v1 shape. Scaling is what the bench gives zeroserve's copy of the sample (from zero
to one replica with a short idle window; or one replica always, for throughput); everything else
is Ray's default unless the bench passes options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class HandWrittenIris:
    def __init__(self, model_dir: str) -> None:
        import joblib

        self.classifier = joblib.load(Path(model_dir) / "model.joblib")

    async def __call__(self, request: Any) -> dict[str, Any]:
        body = await request.json()
        labels = self.classifier.predict(body["instances"])
        return {"predictions": [int(label) for label in labels]}


def deploy(model_dir: Path, idle_s: float | None, **options: Any) -> None:
    """Run it as the application ``handwritten`` at route ``/handwritten``: scaling from zero
    after ``idle_s`` (one replica at most), or with ``idle_s`` None one replica always."""
    import ray.cloudpickle
    from ray import serve

    ray.cloudpickle.register_pickle_by_value(__import__(__name__, fromlist=["_"]))
    if idle_s is not None:
        options["autoscaling_config"] = {
            "min_replicas": 0,
            "initial_replicas": 0,
            "max_replicas": 1,
            "downscale_delay_s": idle_s,
            "downscale_to_zero_delay_s": idle_s,
        }
    else:
        options["num_replicas"] = 1
    app = serve.deployment(HandWrittenIris, **options)
    serve.run(app.bind(str(model_dir)), name="handwritten", route_prefix="/handwritten")
