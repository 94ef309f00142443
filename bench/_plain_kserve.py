"""The baseline: the iris model in a plain hand-written kserve.Model under kserve.ModelServer.

Run: python -m bench._plain_kserve MODEL_DIR PORT
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import joblib
import kserve


class PlainIris(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, model_dir: Path) -> None:
        super().__init__(name)
        self.model_dir = model_dir

    def load(self) -> bool:
        self.classifier = joblib.load(self.model_dir / "model.joblib")
        self.ready = True
        return True

    def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        return {"predictions": self.classifier.predict(payload["instances"]).tolist()}


def main() -> None:
    model_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    model = PlainIris("iris", model_dir)
    model.load()
    kserve.ModelServer(http_port=port, enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
