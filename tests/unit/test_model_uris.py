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


@pytest.mark.timeout(60)
@pytest.mark.parametrize("form", ["file://{store}/m@v1", "{store}/m@v1"])
def test_a_version_pushed_to_a_local_store_is_served_from_the_cache(
    tmp_path: Path, form: str
) -> None:
    from zeroserve.coldstart import ModelCache, StartupTimeline, push
    from zeroserve.serving.loader import find_predictors
    from zeroserve.serving.materialize import ModelFolders

    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.bin").write_bytes(b"w" * 4096)
    store = tmp_path / "store"
    push(weights, f"file://{store}", name="m", version="v1")
    uri = form.format(store=store)
    (tmp_path / "model.py").write_text(
        f"from zeroserve import predictor\n@predictor(name='m', model_uri={uri!r})\n"
        "class M:\n    def load(self, model_dir): ...\n"
        "    def predict(self, x: list[int]) -> list[int]: return x\n"
    )
    (found,) = find_predictors(str(tmp_path / "model.py"))
    folders = ModelFolders(ModelCache(tmp_path / "cache", 10**8), StartupTimeline())
    folders.prefetch([uri])
    try:
        folder = folders.folder_for(found)
    finally:
        folders.close()
    assert folder.is_relative_to(tmp_path / "cache")
    assert (folder / "model.bin").read_bytes() == b"w" * 4096


def test_a_local_folder_is_used_in_place_and_a_missing_one_is_named(tmp_path: Path) -> None:
    from zeroserve.coldstart import ModelCache, StartupTimeline
    from zeroserve.errors import UsageError
    from zeroserve.serving.loader import find_predictors
    from zeroserve.serving.materialize import ModelFolders

    (tmp_path / "weights").mkdir()
    folders = ModelFolders(ModelCache(tmp_path / "cache", 10**8), StartupTimeline())
    for name, uri in (("here", str(tmp_path / "weights")), ("gone", str(tmp_path / "x@v1"))):
        (tmp_path / f"{name}.py").write_text(
            f"from zeroserve import predictor\n@predictor(name={name!r}, model_uri={uri!r})\n"
            "class M:\n    def load(self, model_dir): ...\n"
            "    def predict(self, x: list[int]) -> list[int]: return x\n"
        )
    (here,) = find_predictors(str(tmp_path / "here.py"))
    (gone,) = find_predictors(str(tmp_path / "gone.py"))
    try:
        assert folders.folder_for(here) == (tmp_path / "weights").resolve()
        with pytest.raises(UsageError, match="x@v1 does not exist"):
            folders.folder_for(gone)
    finally:
        folders.close()
