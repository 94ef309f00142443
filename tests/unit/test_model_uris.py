"""The model URIs fetched before the user's imports finish are found in every declaration form."""

from __future__ import annotations

from pathlib import Path

import pytest

from zeroserve.serving.materialize import model_uris_in

FORMS = {
    "decorator": """
from zeroserve import predictor

@predictor(name="iris", model_uri="s3://models/iris@v1")
class Iris: ...
""",
    "qualified decorator": """
import zeroserve

@zeroserve.predictor(name="iris", model_uri="s3://models/iris@v1")
class Iris: ...
""",
    "factory": """
from zeroserve.predictors.vllm import vllm_predictor

TinyLLM = vllm_predictor("tiny-llm", "s3://models/iris@v1", llm={"max_model_len": 512})
""",
    "factory by keyword": """
from zeroserve.predictors import vllm

TinyLLM = vllm.vllm_predictor("tiny-llm", model_uri="s3://models/iris@v1")
""",
    "module constant": """
from zeroserve import predictor

MODEL_URI = "s3://models/iris@v1"

@predictor(name="iris", model_uri=MODEL_URI)
class Iris: ...
""",
}


@pytest.mark.parametrize("source", FORMS.values(), ids=FORMS.keys())
def test_every_declaration_form_is_found(tmp_path: Path, source: str) -> None:
    (tmp_path / "model.py").write_text(source)
    assert model_uris_in([tmp_path / "model.py"]) == ["s3://models/iris@v1"]


def test_other_calls_and_broken_files_are_passed_over(tmp_path: Path) -> None:
    (tmp_path / "other.py").write_text('open("s3://not/a/model", "r")\nprint("x", "s3://y")\n')
    (tmp_path / "broken.py").write_text("def (:\n")
    (tmp_path / "plain.py").write_text(
        'from zeroserve import predictor\n@predictor(name="a")\nclass A: ...\n'
    )
    assert (
        model_uris_in([tmp_path / "other.py", tmp_path / "broken.py", tmp_path / "plain.py"]) == []
    )
