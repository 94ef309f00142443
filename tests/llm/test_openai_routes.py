"""OpenAI-compatible routes of the vLLM predictor, through the activator, on real vLLM."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import RunningServer
from tests.llm.conftest import MODEL

pytestmark = pytest.mark.timeout(900)  # the first test waits for the engine to start
GREEDY = {"temperature": 0.0, "ignore_eos": True}


def complete(url: str, **body: Any) -> httpx.Response:
    payload = {"model": MODEL, **GREEDY, **body}
    return httpx.post(f"{url}/openai/v1/completions", json=payload, timeout=120)


def vllm_metric(url: str, name: str, **labels: str) -> float:
    """One vLLM series of the worker, read through the activator's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_completion_generates_the_tokens_asked_for(llm_server: str) -> None:
    answer = complete(llm_server, prompt="The quick brown fox", max_tokens=12)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "text_completion"
    assert body["model"] == MODEL
    assert body["usage"]["completion_tokens"] == 12
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["text"]


def test_chat_applies_the_tokenizers_chat_template(llm_server: str, tiny_llm_folder: Path) -> None:
    from transformers import AutoTokenizer

    messages = [
        {"role": "system", "content": "You serve models."},
        {"role": "user", "content": "Scale to zero, please."},
    ]
    answer = httpx.post(
        f"{llm_server}/openai/v1/chat/completions",
        json={"model": MODEL, "messages": messages, "max_tokens": 5, **GREEDY},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_folder)
    templated = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if not isinstance(templated, list):  # newer transformers answer a BatchEncoding
        templated = templated["input_ids"]
    assert body["usage"]["prompt_tokens"] == len(templated)
    assert body["usage"]["completion_tokens"] == 5


def sse_events(lines: list[str]) -> list[Any]:
    events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


def test_streaming_sends_server_sent_events_that_add_up_to_the_answer(llm_server: str) -> None:
    whole = complete(llm_server, prompt="Knative scales", max_tokens=10).json()
    payload = {"model": MODEL, "prompt": "Knative scales", "max_tokens": 10, "stream": True}
    with httpx.stream(
        "POST", f"{llm_server}/openai/v1/completions", json={**payload, **GREEDY}, timeout=120
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        chunks = sse_events(list(stream.iter_lines()))
    assert len(chunks) == 10
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == whole["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_sixteen_concurrent_requests_share_the_engine(llm_server: str) -> None:
    prompts = [f"Request number {index} asks about caches" for index in range(16)]

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=300) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{llm_server}/openai/v1/completions",
                        json={"model": MODEL, "prompt": p, "max_tokens": 16, **GREEDY},
                    )
                    for p in prompts
                )
            )

    answers = asyncio.run(all_at_once())
    assert [answer.status_code for answer in answers] == [200] * 16
    assert all(answer.json()["usage"]["completion_tokens"] == 16 for answer in answers)
    alone = complete(llm_server, prompt=prompts[3], max_tokens=16).json()
    assert answers[3].json()["choices"][0]["text"] == alone["choices"][0]["text"]


def wait_for(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


LONG = {"model": MODEL, "prompt": "Tell", "max_tokens": 500, **GREEDY}


def aborts(server: RunningServer) -> int:
    """Requests the engine aborted so far (it logs each: --enable-log-requests)."""
    return server.log().count("Aborted request")


def test_a_streaming_client_that_hangs_up_aborts_its_generation(
    llm_serving: RunningServer,
) -> None:
    before = aborts(llm_serving)
    with httpx.stream(
        "POST",
        f"{llm_serving.url}/openai/v1/completions",
        json={**LONG, "stream": True},
        timeout=120,
    ) as stream:
        events = (line for line in stream.iter_lines() if line.startswith("data: "))
        for _ in range(5):
            next(events)
    # the connection is closed here, 495 tokens before the end
    wait_for(lambda: aborts(llm_serving) == before + 1)


def test_a_non_streaming_request_is_aborted_when_its_client_leaves(
    llm_serving: RunningServer,
) -> None:
    before = aborts(llm_serving)
    with pytest.raises(httpx.ReadTimeout):  # 500 tokens take seconds here
        httpx.post(f"{llm_serving.url}/openai/v1/completions", json=LONG, timeout=0.5)
    wait_for(lambda: aborts(llm_serving) == before + 1)


@pytest.mark.parametrize(
    ("route", "body", "status", "says"),
    [
        ("completions", {"prompt": "fox " * 2000, "max_tokens": 4}, 400, "maximum context length"),
        ("completions", {"prompt": "x", "max_tokens": 100000}, 400, "max_tokens"),
        ("completions", {"prompt": "x", "max_tokens": -3}, 400, "max_tokens"),
        ("chat/completions", {"messages": "hello"}, 400, "messages"),
        ("chat/completions", {"messages": [{"content": "no role"}]}, 400, "role"),
        ("completions", {"model": "no-such-model", "prompt": "x"}, 404, "no-such-model"),
    ],
)
def test_bad_requests_get_openai_errors_and_the_engine_keeps_serving(
    llm_server: str, route: str, body: dict[str, Any], status: int, says: str
) -> None:
    answer = httpx.post(
        f"{llm_server}/openai/v1/{route}", json={"model": MODEL, **body}, timeout=60
    )
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert says in error["message"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert int(error["code"]) == status
    assert complete(llm_server, prompt="Still there?", max_tokens=2).status_code == 200


def test_models_route_and_v1_predict(llm_server: str) -> None:
    models = httpx.get(f"{llm_server}/openai/v1/models", timeout=10).json()
    assert [model["id"] for model in models["data"]] == [MODEL]
    answer = httpx.post(
        f"{llm_server}/v1/models/{MODEL}:predict",
        json={"instances": ["The lazy dog", "Five boxing wizards"]},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == 2
    assert all(isinstance(text, str) and text for text in predictions)
