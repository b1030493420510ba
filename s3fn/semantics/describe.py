"""Ask an LLM for class descriptions, one prompt per class, with an on-disk reply cache."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence

from s3fn.semantics.cache import ReplyCache, content_key
from s3fn.semantics.descriptions import Descriptions
from s3fn.semantics.llm import ChatClient, LLMError
from s3fn.semantics.prompts import (
    DEFAULT_CONTEXT,
    DEFAULT_SPECTRAL_RANGE,
    PROMPT_TEMPLATE,
    SYSTEM_PROMPT,
    build_messages,
    build_prompt,
    parse_paragraphs,
)

logger = logging.getLogger(__name__)


def describe(
    classes: Sequence[str],
    *,
    client: ChatClient,
    n_paragraphs: int = 10,
    spectral_range: str = DEFAULT_SPECTRAL_RANGE,
    context: str = DEFAULT_CONTEXT,
    template: str = PROMPT_TEMPLATE,
    system: str = SYSTEM_PROMPT,
    temperature: float | None = None,
    max_tokens: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> Descriptions:
    """Descriptions of `classes` written by the LLM behind `client` (one request per class).

    Each reply is cached under `cache_dir` (default `$S3FN_CACHE/llm` or `~/.cache/s3fn/llm`),
    keyed by a hash of the model and the full request, so a rerun asks nothing twice. The
    result records the model and prompt settings in `meta`; save it with `save_descriptions`.
    """
    names = list(classes)
    if not names or any(not isinstance(n, str) or not n.strip() for n in names):
        raise ValueError(f"describe: classes must be non-empty strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"describe: duplicate class names in {names!r}")
    cache = ReplyCache(cache_dir) if use_cache else None
    described: dict[str, list[str]] = {}
    for i, name in enumerate(names, 1):
        prompt = build_prompt(
            name,
            names,
            n_paragraphs=n_paragraphs,
            spectral_range=spectral_range,
            context=context,
            template=template,
        )
        request = {
            "model": client.model,
            "messages": build_messages(prompt, system=system),
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        key = content_key(request)
        reply = cache.get(key) if cache is not None else None
        if reply is None:
            logger.info("describe: asking %s about %r (%d/%d)", client.model, name, i, len(names))
            reply = client.chat(request["messages"], temperature=temperature, max_tokens=max_tokens)
            fresh = True
        else:
            logger.info("describe: %r from the reply cache (%d/%d)", name, i, len(names))
            fresh = False
        paragraphs = parse_paragraphs(reply)
        if not paragraphs:
            raise LLMError(
                f"describe: {client.model} gave no paragraphs for class {name!r}; "
                f"reply starts {reply[:80]!r}"
            )
        if len(paragraphs) != n_paragraphs:
            warnings.warn(
                f"describe: {client.model} gave {len(paragraphs)} paragraphs for class "
                f"{name!r}, asked for {n_paragraphs}; keeping them all",
                stacklevel=2,
            )
        if fresh and cache is not None:
            cache.put(key, request, reply)
        described[name] = paragraphs
    meta = {
        "source": "LLM",
        "model": client.model,
        "n_paragraphs": n_paragraphs,
        "spectral_range": spectral_range,
        "context": context,
        "template": template,
        "system": system,
        "temperature": temperature,
    }
    return Descriptions(described, meta)
