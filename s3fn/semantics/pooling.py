"""Token-level pieces of the encoders: finding a class name's tokens, and long-text windows.

A paragraph longer than the model's limit is cut into overlapping windows; every token of
the paragraph then takes its hidden state from the one window where it has the most context
(its distance to a cut window edge is largest), so each token, and each occurrence of a class
name, is counted exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Tokenize = Callable[[str], list[int]]


def name_variants(name: str) -> list[str]:
    """Spellings a class name takes in running text: as given, lower, Capitalised, Title, UPPER."""
    lower = name.lower()
    variants = [name, lower, lower.capitalize(), lower.title(), name.upper()]
    return list(dict.fromkeys(variants))


def name_patterns(tokenize: Tokenize, name: str) -> list[tuple[int, ...]]:
    """Token-id sequences a class name can have inside a paragraph, longest first.

    Each spelling from `name_variants` is tokenised both alone and after a space, because
    byte-level BPE (RoBERTa, GPT-2) gives a word a different token after a space ("Ġsoil")
    than at the start of a text; for WordPiece (BERT) both forms are the same and merge.
    """
    patterns = {
        tuple(tokenize(prefix + variant)) for variant in name_variants(name) for prefix in ("", " ")
    }
    patterns.discard(())
    return sorted(patterns, key=lambda p: (-len(p), p))


def find_spans(ids: Sequence[int], patterns: Sequence[tuple[int, ...]]) -> list[tuple[int, int]]:
    """Non-overlapping `[start, end)` spans where any pattern occurs in `ids`, left to right.

    At each position the longest matching pattern wins, so patterns should come longest first.
    """
    spans: list[tuple[int, int]] = []
    ids = list(ids)
    i = 0
    while i < len(ids):
        for pattern in patterns:
            if tuple(ids[i : i + len(pattern)]) == pattern:
                spans.append((i, i + len(pattern)))
                i += len(pattern)
                break
        else:
            i += 1
    return spans


def window_starts(n_tokens: int, size: int, overlap: int) -> list[int]:
    """Start offsets of windows of `size` tokens covering `n_tokens`, sharing >= `overlap`.

    Windows advance by `size - overlap`; the last one is aligned to the end of the text, so
    every window is full and consecutive windows share at least `overlap` tokens.
    """
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(
            f"window_starts: need size >= 1 and 0 <= overlap < size, "
            f"got size={size}, overlap={overlap}"
        )
    if n_tokens <= size:
        return [0]
    return [*range(0, n_tokens - size, size - overlap), n_tokens - size]


def assign_windows(n_tokens: int, starts: Sequence[int], size: int) -> list[int]:
    """For each token, the index of the window where it has the most context.

    A token's context in a window is its distance to the nearest edge where the window cuts
    the text (a window edge at the start or end of the text cuts nothing); ties go to the
    earlier window.
    """
    owners = []
    for p in range(n_tokens):
        best, best_context = -1, -1.0
        for w, start in enumerate(starts):
            end = min(start + size, n_tokens)
            if not start <= p < end:
                continue
            left = p - start if start > 0 else float("inf")
            right = end - 1 - p if end < n_tokens else float("inf")
            if min(left, right) > best_context:
                best, best_context = w, min(left, right)
        owners.append(best)
    return owners


def stitch(
    window_states: Sequence[torch.Tensor],
    starts: Sequence[int],
    n_tokens: int,
    size: int,
    offset: int,
) -> torch.Tensor:
    """The (n_tokens, d) hidden states of a text, each token's row from its best window.

    `window_states[w]` holds the states of window `w` with its special tokens; its content
    tokens begin at row `offset` (the number of leading special tokens).
    """
    owners = assign_windows(n_tokens, starts, size)
    bases = [0]
    for states in window_states[:-1]:
        bases.append(bases[-1] + states.shape[0])
    index = [bases[w] + offset + p - starts[w] for p, w in enumerate(owners)]
    return torch.cat(list(window_states))[torch.tensor(index, dtype=torch.long)]
