"""A folder of 2000 models: the activator lists them all and starts any one on its request."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server
from tests.integration.test_activator import poll

MODEL = """from zeroserve import predictor


@predictor(name="m{n}")
class M{n}:
    def predict(self, instances: list[int]) -> list[int]:
        return [value + {n} for value in instances]
"""


@pytest.mark.timeout(240)
def test_two_thousand_models_are_served_from_one_folder(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for n in range(2000):
        (folder / f"m{n}.py").write_text(MODEL.format(n=n))
    server = start_server(folder, tmp_path / "activator.log")
    try:

        def listed() -> bool:
            assert server.process.poll() is None, server.log()[-3000:]
            return len(httpx.get(f"{server.url}/v1/models", timeout=10).json()["models"]) == 2000

        poll(listed, "2000 models are listed", server)
        for n in (0, 1234, 1999):
            answer = httpx.post(
                f"{server.url}/v1/models/m{n}:predict", json={"instances": [1]}, timeout=60
            )
            assert answer.json() == {"predictions": [1 + n]}
    finally:
        server.stop()
