"""A peer of ``bench.peers``: the iris model as LitServe's docs write a LitAPI.

One inference worker, one API server, no batching; ``fast_queue`` (ZeroMQ between the API server
and the worker), which LitServe's docs advise for throughput.
Run with LitServe's environment: python -m bench._peer_litserve MODEL_DIR PORT
"""

import sys
from pathlib import Path
from typing import Any

import joblib
import litserve


class IrisAPI(litserve.LitAPI):  # type: ignore[misc]
    def __init__(self, model_dir: Path) -> None:
        super().__init__()
        self.model_dir = model_dir

    def setup(self, device: str) -> None:
        self.classifier = joblib.load(self.model_dir / "model.joblib")

    def decode_request(self, request):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        # unannotated, as LitServe's docs write it: it builds the route from this signature
        return request["instances"]

    def predict(self, instances: Any) -> list[int]:
        return [int(label) for label in self.classifier.predict(instances)]

    def encode_response(self, labels: list[int]) -> dict[str, Any]:
        return {"predictions": labels}


def main() -> None:
    model_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    server = litserve.LitServer(
        IrisAPI(model_dir), accelerator="cpu", workers_per_device=1, fast_queue=True
    )
    server.run(
        host="127.0.0.1",
        port=port,
        num_api_servers=1,
        log_level="warning",
        generate_client_file=False,
    )


if __name__ == "__main__":
    main()
