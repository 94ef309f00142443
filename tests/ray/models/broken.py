"""A predictor whose load() fails: Ray Serve gives up on its replicas.

``ZEROSERVE_TEST_BROKEN_MIN_REPLICAS`` sets its warm floor (0 unless given).
"""

from __future__ import annotations

import os
from pathlib import Path

from zeroserve import predictor


@predictor(
    name="broken",
    cpu=None,
    memory=None,
    min_replicas=int(os.environ.get("ZEROSERVE_TEST_BROKEN_MIN_REPLICAS", "0")),
)
class Broken:
    def load(self, model_dir: Path) -> None:
        raise FileNotFoundError("weights.bin is missing from the model folder")

    def predict(self, instances: list[float]) -> list[float]:
        return instances
