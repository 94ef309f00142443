"""Build the tiny LLM this sample serves: a random 2-layer Llama with its own tokenizer.

Nothing is downloaded: the weights are random (seeded) and the byte-level BPE tokenizer is trained
here on a few paragraphs of text. The model answers with nonsense, fast, which is all a test or a
benchmark of the serving path needs.

Run: python samples/tiny-llm/build.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

VOCAB_SIZE = 512
MAX_POSITIONS = 2048
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TEXT = """\
Serverless model serving starts a model when a request arrives and stops it when the model has
been idle for a while. The first request after a quiet period waits for the model to load, which
is why a fast cold start matters: weights come from a shared cache, are verified once, and are
read with as little copying as possible. Large language models generate one token at a time;
continuous batching lets many requests share each step of the model, so sixteen users cost little
more than one. A tokenizer turns text into numbers and back again. The quick brown fox jumps over
the lazy dog, and the five boxing wizards jump quickly. Kubernetes schedules pods onto nodes,
Knative scales them to zero, and KServe puts a model behind an HTTP endpoint.
"""


def build_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = ["<s>", "</s>", "<unk>"]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([TEXT] * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)


def build_model(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,  # head size 32: the CPU backend's smallest
        num_key_value_heads=4,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=0,
        eos_token_id=1,
        torch_dtype="float32",
    )
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out)
    build_model(out)
    print(f"tiny LLM written to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python samples/tiny-llm/build.py OUT_DIR")
    main(Path(sys.argv[1]))
