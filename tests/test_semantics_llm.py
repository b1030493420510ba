"""The chat-completions client and `describe`, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from s3fn.semantics import (
    LLMClient,
    LLMError,
    describe,
    load_descriptions,
    save_descriptions,
)
from s3fn.semantics.llm import _retry_after

CLASSES = ["soil", "asphalt", "plant litter"]


def completion(content: str) -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
            }
        ],
    }


def reply_for(prompt: str) -> str:
    """What the fake model writes: numbered paragraphs naming the class in the prompt."""
    name = re.search(r"paragraphs about (.+?), emphasizing", prompt).group(1)
    count = int(re.search(r"Write (\d+) ", prompt).group(1))
    body = "\n\n".join(f"{i + 1}. {name.capitalize()} fact {i}." for i in range(count))
    return f"Here are the paragraphs:\n\n{body}"


class FakeLLM:
    """A chat-completions server in a thread; plays `script` in order, then answers by prompt.

    A script step is (status, body, headers, delay_s); a `dict` body is sent as JSON.
    """

    def __init__(self) -> None:
        self.script: list[tuple[int, object, dict, float]] = []
        self.requests: list[dict] = []
        self.stop = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length))
                fake.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": payload}
                )
                if fake.script:
                    status, body, headers, delay = fake.script.pop(0)
                else:
                    prompt = payload["messages"][-1]["content"]
                    status, body, headers, delay = 200, completion(reply_for(prompt)), {}, 0.0
                if delay:
                    fake.stop.wait(delay)
                data = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _direct_loopback(monkeypatch):
    """Never route requests to the loopback server through a proxy from the environment."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1")


@pytest.fixture
def fake():
    server = FakeLLM()
    yield server
    server.close()


def client(fake: FakeLLM, **kwargs) -> LLMClient:
    options = {"timeout": 2.0, "max_retries": 2, "backoff": 0.01} | kwargs
    return LLMClient(fake.url, "test-model", **options)


MESSAGES = [
    {"role": "user", "content": "Write 1 detailed, fact-based paragraphs about soil, emphasizing x"}
]


def test_success_sends_an_openai_style_request(fake):
    fake.script.append((200, completion("Soil is brown."), {}, 0.0))
    reply = client(fake, api_key="sk-test").chat(MESSAGES, temperature=0.0, max_tokens=50)
    assert reply == "Soil is brown."
    (request,) = fake.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["json"] == {
        "model": "test-model",
        "messages": MESSAGES,
        "temperature": 0.0,
        "max_tokens": 50,
    }


def test_no_api_key_sends_no_authorization(fake, monkeypatch):
    monkeypatch.delenv("S3FN_LLM_API_KEY", raising=False)
    fake.script.append((200, completion("ok"), {}, 0.0))
    client(fake).chat(MESSAGES)
    assert "Authorization" not in fake.requests[0]["headers"]


@pytest.mark.parametrize(
    ("status", "headers"), [(429, {"Retry-After": "0"}), (500, {}), (503, {}), (408, {})]
)
def test_retryable_status_then_success(fake, status, headers):
    fake.script.append((status, {"error": {"message": "busy"}}, headers, 0.0))
    fake.script.append((200, completion("second time"), {}, 0.0))
    assert client(fake).chat(MESSAGES) == "second time"
    assert len(fake.requests) == 2


def test_persistent_500_exhausts_the_retries_with_backoff(fake):
    fake.script.extend([(500, {"error": {"message": "boom"}}, {}, 0.0)] * 3)
    start = time.monotonic()
    with pytest.raises(LLMError, match=r"gave up after 3 attempts; last error: HTTP 500: boom"):
        client(fake, backoff=0.05).chat(MESSAGES)
    assert time.monotonic() - start >= 0.05 + 0.1
    assert len(fake.requests) == 3


def test_retry_after_is_honoured(fake):
    fake.script.append((429, {"error": "slow down"}, {"Retry-After": "0.3"}, 0.0))
    fake.script.append((200, completion("ok"), {}, 0.0))
    start = time.monotonic()
    assert client(fake, backoff=0.0).chat(MESSAGES) == "ok"
    assert time.monotonic() - start >= 0.3


@pytest.mark.parametrize(("status", "reason"), [(401, "Unauthorized"), (400, "Bad Request")])
def test_client_errors_fail_at_once_with_the_server_message(fake, status, reason):
    fake.script.append((status, {"error": {"message": "Incorrect API key\nprovided"}}, {}, 0.0))
    with pytest.raises(LLMError) as info:
        client(fake, api_key="sk-secret").chat(MESSAGES)
    assert str(info.value) == (
        f"POST {fake.url}/chat/completions: HTTP {status} {reason}: Incorrect API key provided"
    )
    assert "sk-secret" not in str(info.value)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        "this is not json",
        {"choices": []},
        {"object": "x"},
        {"choices": [{"message": {"content": None}}]},
    ],
)
def test_malformed_body_is_a_clear_error(fake, body):
    fake.script.append((200, body, {}, 0.0))
    with pytest.raises(LLMError, match="malformed response") as info:
        client(fake).chat(MESSAGES)
    assert "\n" not in str(info.value)
    assert len(fake.requests) == 1


def test_reply_cut_at_the_token_limit_warns(fake):
    body = completion("Soil is")
    body["choices"][0]["finish_reason"] = "length"
    fake.script.append((200, body, {}, 0.0))
    with pytest.warns(UserWarning, match="test-model: the reply was cut at the token limit"):
        assert client(fake).chat(MESSAGES, max_tokens=2) == "Soil is"


def test_reply_slower_than_the_timeout_is_retried_then_fails(fake):
    fake.script.extend([(200, completion("late"), {}, 2.0)] * 2)
    start = time.monotonic()
    with pytest.raises(
        LLMError,
        match=r"gave up after 2 attempts; last error: no reply within "
        r"the 0.2 s timeout",
    ):
        client(fake, timeout=0.2, max_retries=1).chat(MESSAGES)
    assert time.monotonic() - start < 1.5


def test_slow_reply_then_fast_reply_succeeds(fake):
    fake.script.append((200, completion("late"), {}, 2.0))
    fake.script.append((200, completion("in time"), {}, 0.0))
    assert client(fake, timeout=0.2).chat(MESSAGES) == "in time"


def test_connection_refused_is_retried_then_reported():
    server = FakeLLM()
    url = server.url
    server.close()
    with pytest.raises(LLMError, match="gave up after 2 attempts; last error: cannot connect"):
        LLMClient(url, "m", timeout=1.0, max_retries=1, backoff=0.0).chat(MESSAGES)


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("S3FN_LLM_BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("S3FN_LLM_MODEL", "env-model")
    monkeypatch.setenv("S3FN_LLM_API_KEY", "sk-env")
    c = LLMClient()
    assert (c.url, c.model) == ("http://127.0.0.1:9/v1/chat/completions", "env-model")
    assert "sk-env" not in repr(c) and "api_key=set" in repr(c)
    monkeypatch.delenv("S3FN_LLM_MODEL")
    with pytest.raises(ValueError, match="no model: pass model= or set S3FN_LLM_MODEL"):
        LLMClient()
    monkeypatch.delenv("S3FN_LLM_BASE_URL")
    with pytest.raises(ValueError, match="no endpoint: pass base_url= or set S3FN_LLM_BASE_URL"):
        LLMClient(model="m")
    with pytest.raises(ValueError, match="must start with http"):
        LLMClient("ftp://127.0.0.1", "m")


def test_retry_after_header_forms():
    assert _retry_after("3") == 3.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    assert 8 <= _retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10
    assert _retry_after(formatdate(time.time() - 10, usegmt=True)) == 0.0


def test_describe_parses_caches_and_saves(fake, tmp_path):
    cache = tmp_path / "llm"
    d = describe(
        CLASSES,
        client=client(fake),
        n_paragraphs=3,
        cache_dir=cache,
        spectral_range="0.4-2.45 µm",
        context="urban materials",
    )
    assert d.names == CLASSES
    assert d["plant litter"] == (
        "Plant litter fact 0.",
        "Plant litter fact 1.",
        "Plant litter fact 2.",
    )
    assert d.meta["model"] == "test-model" and d.meta["n_paragraphs"] == 3
    prompts = [r["json"]["messages"][-1]["content"] for r in fake.requests]
    assert len(prompts) == 3
    assert "other classes: asphalt, plant litter." in prompts[0]
    assert all("0.4-2.45 µm" in p and "urban materials" in p for p in prompts)
    assert len(list(cache.glob("*.json"))) == 3

    again = describe(
        CLASSES,
        client=client(fake),
        n_paragraphs=3,
        cache_dir=cache,
        spectral_range="0.4-2.45 µm",
        context="urban materials",
    )
    assert again == d
    assert len(fake.requests) == 3  # a rerun asks nothing

    describe(
        CLASSES,
        client=client(fake),
        n_paragraphs=2,
        cache_dir=cache,
        spectral_range="0.4-2.45 µm",
        context="urban materials",
    )
    assert len(fake.requests) == 6  # a different prompt is a different request

    path = save_descriptions(tmp_path / "described.yaml", d)
    assert load_descriptions(path) == d


def test_describe_warns_on_paragraph_count_and_rejects_empty_replies(fake, tmp_path):
    fake.script.append((200, completion("Soil one.\n\nSoil two."), {}, 0.0))
    with pytest.warns(UserWarning, match="gave 2 paragraphs for class 'soil', asked for 3"):
        d = describe(["soil"], client=client(fake), n_paragraphs=3, cache_dir=tmp_path)
    assert d["soil"] == ("Soil one.", "Soil two.")
    fake.script.append((200, completion("Here you go:"), {}, 0.0))
    with pytest.raises(LLMError, match="gave no paragraphs for class 'asphalt'"):
        describe(["asphalt"], client=client(fake), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1  # the empty reply was not cached


def test_describe_rejects_bad_class_lists(fake):
    for classes in ([], ["soil", "soil"], ["soil", " "]):
        with pytest.raises(ValueError, match="describe: "):
            describe(classes, client=client(fake), use_cache=False)
