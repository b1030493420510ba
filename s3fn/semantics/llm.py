"""A small client for OpenAI-compatible chat-completions endpoints (standard library only).

Works with any server that speaks `POST {base_url}/chat/completions` (OpenAI, vLLM, llama.cpp,
Ollama, LM Studio, ...). Retries with exponential backoff on 408/429/5xx, timeouts and
connection errors, honouring `Retry-After`; other 4xx fail at once with the server's message.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

ENV_BASE_URL = "S3FN_LLM_BASE_URL"
ENV_MODEL = "S3FN_LLM_MODEL"
ENV_API_KEY = "S3FN_LLM_API_KEY"

_MESSAGE_LIMIT = 300


class LLMError(RuntimeError):
    """A chat-completions request that failed for good (after any retries)."""


class ChatClient(Protocol):
    """What `describe` needs from a client: a model name and a `chat` call returning text."""

    model: str

    def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """The assistant's reply to `messages`."""
        ...


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def _server_message(body: bytes) -> str:
    """The error message in an error response body (OpenAI style or plain text)."""
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return _one_line(text) or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            for key in ("message", "detail", "error"):
                if isinstance(error.get(key), str):
                    return _one_line(error[key])
        if isinstance(error, str):
            return _one_line(error)
    return _one_line(text)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class LLMClient:
    """An OpenAI-compatible chat-completions client with timeout, retries and backoff.

    Arguments left as None come from `S3FN_LLM_BASE_URL`, `S3FN_LLM_MODEL` and
    `S3FN_LLM_API_KEY`. `base_url` is the API root (e.g. `https://api.openai.com/v1` or
    `http://localhost:8000/v1`). Retry `i` (0-based) waits `backoff * 2**i` seconds, or what
    the server's `Retry-After` asks, at most `max_backoff`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        base_url = base_url or os.environ.get(ENV_BASE_URL)
        model = model or os.environ.get(ENV_MODEL)
        if not base_url:
            raise ValueError(
                f"LLMClient: no endpoint: pass base_url= or set {ENV_BASE_URL} "
                "(e.g. https://api.openai.com/v1 or http://localhost:8000/v1)"
            )
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"LLMClient: base_url must start with http:// or https://, got {base_url!r}"
            )
        if not model:
            raise ValueError(f"LLMClient: no model: pass model= or set {ENV_MODEL}")
        if timeout <= 0 or max_retries < 0 or backoff < 0 or max_backoff < 0:
            raise ValueError(
                "LLMClient: expected timeout > 0 and max_retries, backoff, max_backoff >= 0, "
                f"got {timeout}, {max_retries}, {backoff}, {max_backoff}"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key or os.environ.get(ENV_API_KEY) or None
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"LLMClient(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"

    @property
    def url(self) -> str:
        """The chat-completions endpoint."""
        return f"{self.base_url}/chat/completions"

    def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """Send `messages` and return the assistant's reply text (`choices[0].message.content`)."""
        payload: dict[str, Any] = {"model": self.model, "messages": [dict(m) for m in messages]}
        if temperature is not None:
            payload["temperature"] = temperature
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        body = json.dumps(payload).encode("utf-8")
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            try:
                return self._content(self._post(body))
            except _Retryable as exc:
                last = str(exc)
                if attempt == self.max_retries:
                    break
                wait = exc.retry_after
                if wait is None:
                    wait = self.backoff * 2**attempt
                time.sleep(min(wait, self.max_backoff))
        raise LLMError(
            f"POST {self.url}: gave up after {self.max_retries + 1} attempts; last error: {last}"
        )

    def _post(self, body: bytes) -> bytes:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "s3fn",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            message = _server_message(exc.read())
            if exc.code in (408, 429) or exc.code >= 500:
                raise _Retryable(
                    f"HTTP {exc.code}: {message}", _retry_after(exc.headers.get("Retry-After"))
                ) from None
            raise LLMError(f"POST {self.url}: HTTP {exc.code} {exc.reason}: {message}") from None
        except TimeoutError:
            raise _Retryable(f"no reply within the {self.timeout} s timeout") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise _Retryable(f"no reply within the {self.timeout} s timeout") from None
            raise _Retryable(f"cannot connect ({exc.reason})") from None
        except (ConnectionError, http.client.HTTPException) as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__}: {exc})") from None

    def _content(self, raw: bytes) -> str:
        try:
            data = json.loads(raw.decode("utf-8"))
            choice = data["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError(
                f"POST {self.url}: malformed response: expected JSON with "
                f"choices[0].message.content, got {_one_line(raw.decode('utf-8', 'replace'))!r}"
            ) from None
        if not isinstance(content, str):
            raise LLMError(
                f"POST {self.url}: malformed response: choices[0].message.content is "
                f"{type(content).__name__}, expected a string"
            )
        if isinstance(choice, dict) and choice.get("finish_reason") == "length":
            warnings.warn(f"{self.model}: the reply was cut at the token limit", stacklevel=3)
        return content
