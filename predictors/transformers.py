"""Hugging Face ``transformers`` models from a local folder (``save_pretrained``): text
classification and embeddings.

The task comes from the config: a ``*ForSequenceClassification`` architecture classifies,
anything else embeds (the mean of the last hidden states over each text's tokens); set ``task``
on a subclass to choose. A request's texts (and a batch's requests) are tokenized together,
padded, and run in one forward pass. A classifier answers ``{"label", "score"}`` per text, or
every label's score with ``parameters: {"output": "scores"}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from zeroserve import InvalidPayload

TextOutput = Literal["label", "scores"]
CLASSIFICATION = "text-classification"
EMBEDDINGS = "embeddings"


class TransformersPredictor:
    """A tokenizer and a model from one folder; see the module doc."""

    model_file: str = ""  # unused: the whole folder is the model
    task: str = ""  # "" → from the config's architecture
    max_length: int = 512
    preimport_modules = ("torch", "transformers")

    def load(self, model_dir: Path) -> None:
        import torch
        from transformers import (
            AutoConfig,
            AutoModel,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        config = AutoConfig.from_pretrained(model_dir)
        classifies = any(
            a.endswith("ForSequenceClassification") for a in config.architectures or []
        )
        self.task_name = self.task or (CLASSIFICATION if classifies else EMBEDDINGS)
        loader = (
            AutoModelForSequenceClassification if self.task_name == CLASSIFICATION else AutoModel
        )
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = loader.from_pretrained(model_dir).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.labels = [config.id2label[i] for i in range(config.num_labels)]

    def check_request(self, instances: list[str], output: TextOutput = "label") -> None:
        if output == "scores" and self.task_name != CLASSIFICATION:
            raise InvalidPayload('this model embeds texts; "output": "scores" is for classifiers')

    def predict(self, instances: list[str], output: TextOutput = "label") -> list[Any]:
        import torch

        encoded = self.tokenizer(
            instances,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            if self.task_name != CLASSIFICATION:
                hidden = self.model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                return ((hidden * mask).sum(dim=1) / mask.sum(dim=1)).cpu().tolist()  # type: ignore[no-any-return]
            scores = torch.softmax(self.model(**encoded).logits, dim=-1).cpu()
        if output == "scores":
            return [dict(zip(self.labels, row.tolist(), strict=True)) for row in scores]
        best = scores.argmax(dim=-1).tolist()
        return [{"label": self.labels[i], "score": float(scores[n, i])} for n, i in enumerate(best)]

    def v2_metadata(self) -> dict[str, list[dict[str, Any]]]:
        width = [-1, -1] if self.task_name != CLASSIFICATION else [-1]
        return {
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {
                    "name": "output",
                    "datatype": "FP32" if len(width) == 2 else "BYTES",
                    "shape": width,
                }
            ],
        }
