"""The torch and Hugging Face built-in predictors, on models built here (no downloads): a small
network as a torch.export program (batch dimension dynamic, and fixed) and as TorchScript, and a
tiny random BERT classifier and embedder with a tokenizer trained here. They run in the llm
environment, which has torch and transformers."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer, run_zeroserve, start_server, wait_ready

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.timeout(300)
ROWS = [[0.5, -1.0, 2.0, 0.1], [1.5, 0.3, -0.7, 2.2], [0.0, 0.0, 1.0, -1.0]]
TEXT = "the quick brown fox jumps over the lazy dog while a model serves every request " * 4


class Net(torch.nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
        )

    def forward(self, rows: Any) -> Any:
        return self.layers(rows)


def save_networks(folder: Path) -> Any:
    torch.manual_seed(0)
    net = Net().eval()
    example = (torch.randn(2, 4),)
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic = torch.export.export(net, example, dynamic_shapes=({0: batch},))
    torch.export.save(dynamic, folder / "dynamic.pt2")
    fixed = torch.export.export(net, (torch.randn(2, 4),))  # batch size 2 only
    torch.export.save(fixed, folder / "fixed.pt2")
    with warnings.catch_warnings():  # TorchScript is deprecated, and still what many users have
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(net, example), folder / "scripted.pt")
    return net


def save_bert(folder: Path, *, classifier: bool) -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        PreTrainedTokenizerFast,
    )

    folder.mkdir()
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(
        [TEXT], trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials)
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    model = (BertForSequenceClassification if classifier else BertModel)(config).eval()
    model.save_pretrained(folder)
    return model, fast


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("torch")
    networks = folder / "networks"
    networks.mkdir()
    return {
        "folder": folder,
        "net": save_networks(networks),
        "sentiment": save_bert(folder / "sentiment", classifier=True),
        "embedder": save_bert(folder / "embedder", classifier=False),
    }


@pytest.fixture(scope="module")
def servers(
    models: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, RunningServer]]:
    logs = tmp_path_factory.mktemp("logs")
    started: dict[str, RunningServer] = {}
    try:
        for name in ("networks", "sentiment", "embedder"):
            started[name] = start_server(models["folder"] / name, logs / f"{name}.log")
        yield started
    finally:
        for server in started.values():
            server.stop()


def predict(server: RunningServer, model: str, body: dict[str, Any]) -> httpx.Response:
    wait_ready(server, model, timeout=120)
    return httpx.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=60)


def test_exported_and_scripted_networks_answer_as_torch_does(
    models: dict[str, Any], servers: dict[str, RunningServer]
) -> None:
    server = servers["networks"]
    with torch.inference_mode():
        expected = models["net"](torch.tensor(ROWS))
    for model in ("dynamic", "fixed", "scripted"):
        answer = predict(server, model, {"instances": ROWS})
        assert answer.status_code == 200, (model, answer.text, server.log_gist())
        assert torch.allclose(torch.tensor(answer.json()["predictions"]), expected, atol=1e-5)
        labels = predict(server, model, {"instances": ROWS, "parameters": {"output": "label"}})
        assert labels.json()["predictions"] == expected.argmax(dim=-1).tolist()


def test_an_instance_of_the_wrong_shape_is_400_naming_it(servers: dict[str, RunningServer]) -> None:
    answer = predict(servers["networks"], "dynamic", {"instances": [[1.0, 2.0, 3.0]]})
    assert answer.status_code == 400, answer.text
    assert "instances[0] has shape [3]; the model takes instances of shape [4]" in answer.text
    metadata = httpx.get(f"{servers['networks'].url}/v2/models/dynamic", timeout=10).json()
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]


def run_locally(built: tuple[Any, Any], texts: list[str]) -> tuple[Any, Any, Any]:
    """The model, its own output for ``texts`` in this process, and the padding mask."""
    model, tokenizer = built
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        output = model(**encoded)
    return model, output, encoded["attention_mask"].unsqueeze(-1).float()


def test_the_classifier_labels_texts_as_transformers_does(
    models: dict[str, Any], servers: dict[str, RunningServer]
) -> None:
    texts = ["the quick fox", "a lazy dog serves every request"]
    model, output, _ = run_locally(models["sentiment"], texts)
    scores = torch.softmax(output.logits, dim=-1)
    answer = predict(servers["sentiment"], "sentiment", {"instances": texts})
    assert answer.status_code == 200, (answer.text, servers["sentiment"].log_gist())
    got = answer.json()["predictions"]
    assert [item["label"] for item in got] == [
        model.config.id2label[i] for i in scores.argmax(dim=-1).tolist()
    ]
    assert abs(got[0]["score"] - float(scores[0].max())) < 1e-5
    every = predict(
        servers["sentiment"], "sentiment", {"instances": texts, "parameters": {"output": "scores"}}
    )
    assert set(every.json()["predictions"][0]) == {"negative", "positive"}
    wrong = predict(servers["sentiment"], "sentiment", {"instances": [1, 2]})
    assert wrong.status_code == 400, wrong.text


def test_the_embedder_answers_mean_pooled_vectors(
    models: dict[str, Any], servers: dict[str, RunningServer]
) -> None:
    texts = ["the quick fox", "a lazy dog"]
    _, output, mask = run_locally(models["embedder"], texts)
    hidden = output.last_hidden_state
    expected = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
    answer = predict(servers["embedder"], "embedder", {"instances": texts})
    assert answer.status_code == 200, (answer.text, servers["embedder"].log_gist())
    assert torch.allclose(torch.tensor(answer.json()["predictions"]), expected, atol=1e-5)


def test_optimize_onnx_serves_an_exported_program_as_torch_answers(
    models: dict[str, Any], tmp_path: Path
) -> None:
    source = models["folder"] / "networks"
    env = {**os.environ, "ZEROSERVE_CACHE__ROOT": str(tmp_path / "cache")}
    with torch.inference_mode():
        expected = models["net"](torch.tensor(ROWS))
    for name in ("dynamic", "fixed"):
        server = start_server(
            source / f"{name}.pt2", tmp_path / f"{name}.log", "--optimize", "onnx", env=env
        )
        try:
            answer = predict(server, name, {"instances": ROWS})
            assert answer.status_code == 200, (answer.text, server.log_gist())
            got = torch.tensor(answer.json()["predictions"])
            assert torch.allclose(got, expected, atol=1e-4), name
            wrong = predict(server, name, {"instances": [[1.0, 2.0]]})
            assert wrong.status_code == 400, wrong.text
        finally:
            server.stop()
        assert "Traceback" not in server.log()
    refused = run_zeroserve("serve", str(source / "scripted.pt"), "--optimize", "onnx", env=env)
    assert refused.returncode == 2, refused.stderr
    assert "a TorchScript module does not say the shape it takes" in refused.stderr
