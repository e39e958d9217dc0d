"""The fake OpenAI-compatible server, driven by the real `openai` client over real sockets."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from apps.inference.fake_server import (
    NO_SOURCE_ANSWER,
    FakeLLMServer,
    count_tokens,
    default_answer,
    split_pieces,
)

REPO_ROOT = Path(__file__).resolve().parents[3]

SOURCES = (
    "Answer from the sources below and cite them as [n].\n\n"
    "[1] Invoices\n"
    "Request an electronic invoice on the order page. It arrives by email within a day. "
    "Paper invoices are not available.\n"
    "[2] Returns\n"
    "Returns are free for 30 days."
)
MESSAGES = [
    {"role": "system", "content": "You are a support assistant. Cite sources like [1]."},
    {"role": "user", "content": f"{SOURCES}\n\nQuestion: how do I get an invoice?"},
]
EXPECTED = "Request an electronic invoice on the order page. It arrives by email within a day. [1]"


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer().start()
    yield server
    server.stop()


@pytest.fixture
def client(server: FakeLLMServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=5)


def chat(client: openai.OpenAI, messages: list | None = None, **kwargs):
    return client.chat.completions.create(model="fake-llm", messages=messages or MESSAGES, **kwargs)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_answers_from_source_one_with_usage(client, server):
    completion = chat(client, temperature=0, max_tokens=200)

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == EXPECTED
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage.completion_tokens == len(split_pieces(EXPECTED))
    assert usage.prompt_tokens == sum(count_tokens(m["content"]) for m in MESSAGES)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert server.requests[-1]["_path"] == "/v1/chat/completions"
    assert server.requests[-1]["messages"] == MESSAGES
    assert server.counts["chat"] == server.counts["completed"] == 1


def test_stream_reassembles_the_answer_with_the_configured_delays(client, server):
    server.configure(first_token_delay=0.3, token_delay=0.02)
    started = time.monotonic()
    stream = chat(client, stream=True, stream_options={"include_usage": True})
    arrivals, chunks = [], []
    for chunk in stream:
        arrivals.append(time.monotonic() - started)
        chunks.append(chunk)

    assert chunks[0].choices[0].delta.role == "assistant"
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(content) == EXPECTED
    assert len(content) == len(split_pieces(EXPECTED)) > 5
    assert arrivals[0] >= 0.3
    # Between the first and the last chunk: a token delay per chunk (the client may see the first
    # one a little late, so allow a tenth less).
    assert arrivals[-1] - arrivals[0] >= 0.9 * 0.02 * (len(content) - 1)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == len(content)
    assert server.counts["chat_stream"] == server.counts["completed"] == 1


def test_chunk_size_and_fixed_answer_can_be_configured(client, server):
    server.configure(answer="abcdefg", chunk_chars=3)
    server.configure(token_delay=0)  # settings left out keep their value
    stream = chat(client, stream=True)
    content = [c.choices[0].delta.content for c in stream if c.choices[0].delta.content]
    assert content == ["abc", "def", "g"]

    server.configure(answer=lambda payload: payload["messages"][-1]["content"].upper())
    assert chat(client, [{"role": "user", "content": "hi"}]).choices[0].message.content == "HI"


def test_max_tokens_cuts_the_answer(client):
    completion = chat(client, max_tokens=3)
    assert completion.choices[0].message.content == "Request an electronic"
    assert completion.choices[0].finish_reason == "length"


def test_default_answer_heuristics():
    chinese = "[1] 发票怎么开\n在订单详情页申请电子发票。一个工作日内发到邮箱。纸质发票不提供。"
    assert default_answer([{"role": "user", "content": chinese}]) == (
        "在订单详情页申请电子发票。一个工作日内发到邮箱。 [1]"
    )
    inline = "Sources: [1] Refunds take five days. Ask support. More text follows here."
    assert default_answer([{"role": "user", "content": inline}]) == (
        "Refunds take five days. Ask support. [1]"
    )
    assert default_answer([{"role": "user", "content": "What is the weather?"}]) == (
        NO_SOURCE_ANSWER
    )
    assert "".join(split_pieces("你好世界 and more")) == "你好世界 and more"
    assert split_pieces("你好世界 and more") == ["你好", "世界", " and", " more"]


def test_injected_failure_then_success(client, server):
    server.fail_with(500, times=1)
    with pytest.raises(openai.InternalServerError) as raised:
        chat(client)
    assert raised.value.status_code == 500
    assert raised.value.body["code"] == 500

    assert chat(client).choices[0].message.content == EXPECTED
    assert server.counts["failed"] == 1 and server.counts["completed"] == 1


def test_rate_limit_carries_retry_after(client, server):
    server.fail_with(429, retry_after=2)
    with pytest.raises(openai.RateLimitError) as raised:
        chat(client)
    assert raised.value.response.headers["retry-after"] == "2"
    with pytest.raises(openai.RateLimitError):
        chat(client, stream=True)  # until recover()

    server.recover()
    assert chat(client).choices[0].message.content == EXPECTED


def test_stream_closed_mid_way_raises_in_the_client(client, server):
    server.close_mid_stream(after_chunks=2, times=1)
    received = []
    with pytest.raises((httpx.TransportError, openai.APIConnectionError)):
        for chunk in chat(client, stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["", "Request", " an"]

    server.close_mid_stream(after_chunks=0, times=1)
    with pytest.raises(openai.APIConnectionError):
        chat(client)
    assert chat(client).choices[0].message.content == EXPECTED
    assert server.counts["failed"] == 2


def test_invented_phone_number_is_not_in_the_prompt(client, server):
    server.invent_phone(times=2)
    english = chat(client).choices[0].message.content
    assert english == f"{EXPECTED} For help call 400-555-0199."

    prompt = "[1] 发票\n致电 400-555-0199 申请发票。"
    chinese = chat(client, [{"role": "user", "content": f"{prompt}\n问题：怎么开发票？"}])
    answer = chinese.choices[0].message.content
    phone = re.search(r"\d{3}-\d{3}-\d{4}", answer.split("[1]")[1]).group()
    assert answer.endswith(f"如需帮助请拨打 {phone}。")
    assert phone not in prompt

    assert chat(client).choices[0].message.content == EXPECTED  # used up


def test_health_models_metrics_and_errors(server):
    assert get(f"{server.root_url}/health") == (200, "")
    server.set_health(False)
    assert get(f"{server.root_url}/health")[0] == 503
    server.set_health(True)
    assert get(f"{server.root_url}/health")[0] == 200

    status, body = get(f"{server.base_url}/models")
    assert status == 200
    assert json.loads(body)["data"] == [{"id": "fake-llm", "object": "model", "owned_by": "fake"}]

    status, body = get(f"{server.root_url}/nowhere")
    assert status == 404 and "error" in json.loads(body)
    request = urllib.request.Request(f"{server.base_url}/chat/completions", data=b"{not json")
    try:
        urllib.request.urlopen(request, timeout=5)
    except urllib.error.HTTPError as error:
        assert error.code == 400 and "error" in json.loads(error.read())
    else:
        pytest.fail("bad JSON was accepted")
    response = httpx.post(f"{server.base_url}/embeddings", json={"input": "x"})
    assert response.status_code == 404  # embeddings are off


def test_metrics_count_requests_in_flight_and_waiting(client, server):
    server.configure(first_token_delay=0.5)
    server.set_queue_length(7)
    thread = threading.Thread(target=lambda: list(chat(client, stream=True)))
    thread.start()
    time.sleep(0.2)
    status, text = get(f"{server.root_url}/metrics")
    thread.join()

    assert status == 200
    assert 'vllm:num_requests_running{model_name="fake-llm"} 1.0' in text
    assert 'vllm:num_requests_waiting{model_name="fake-llm"} 7.0' in text
    after = get(f"{server.root_url}/metrics")[1]
    assert 'vllm:num_requests_running{model_name="fake-llm"} 0.0' in after


def test_kill_drops_streams_in_flight_and_refuses_new_requests(client, server):
    server.configure(token_delay=0.05)
    stream = chat(client, stream=True)
    next(stream)
    killer = threading.Timer(0.1, server.kill)
    killer.start()
    with pytest.raises((httpx.TransportError, openai.APIConnectionError)):
        list(stream)
    killer.join()

    with pytest.raises(openai.APIConnectionError):
        chat(client)
    assert server.counts["aborted"] == 1


def test_requests_keep_only_the_latest(server, monkeypatch):
    monkeypatch.setattr("apps.inference.fake_server.KEEP_REQUESTS", 3)
    for n in range(5):
        httpx.post(f"{server.base_url}/chat/completions", json={"n": n})
    assert [r["n"] for r in server.requests] == [2, 3, 4]


def test_command_line_server_prints_ready_and_serves():
    process = subprocess.Popen(
        [sys.executable, "-m", "apps.inference.fake_server", "--port", "0", "--model", "m1"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline().strip()
        assert re.fullmatch(r"ready http://127\.0\.0\.1:\d+/v1", line)
        client = openai.OpenAI(base_url=line.split()[1], api_key="x", max_retries=0, timeout=5)
        completion = chat(client, stream=False)
        assert completion.choices[0].message.content == EXPECTED
        assert client.models.list().data[0].id == "m1"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
