"""Text encoders: pooling maths on tiny random BERT/RoBERTa models, chunking, the cache, errors.

The tiny models are built here from a config and a vocabulary written to tmp_path (nothing
is downloaded); the end-to-end test runs the bundled all-MiniLM-L6-v2 with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from s3fn.semantics import (
    Descriptions,
    EncoderError,
    LabelNotFoundWarning,
    TextEncoder,
    bundled_descriptions,
)
from s3fn.semantics.pooling import assign_windows, find_spans, name_patterns, window_starts

transformers = pytest.importorskip("transformers")

WORDS = [
    "the",
    "a",
    "is",
    "and",
    "of",
    "red",
    "dark",
    "wet",
    "soil",
    "##s",
    "green",
    "vegetation",
    "top",
    "##soil",
    "asphalt",
    "concrete",
    "bright",
    "grey",
    "no",
    "name",
    "here",
    "Soil",
    "SOIL",
    ".",
    ",",
]
MAX_POSITIONS = 24  # tiny, so that chunking shows with short texts


def save_tiny_bert(folder, *, seed: int = 0, lower: bool = True) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n"
    )
    tokenizer = transformers.BertTokenizerFast.from_pretrained(
        folder, do_lower_case=lower, model_max_length=MAX_POSITIONS
    )
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=len(WORDS) + 5,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=MAX_POSITIONS,
    )
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def encoders(bert_dir):
    return {
        p: TextEncoder(bert_dir, pooling=p, device="cpu", use_cache=False)
        for p in ("label-token", "mean", "cls")
    }


def hidden(encoder: TextEncoder, ids: list[int]) -> torch.Tensor:
    """Last hidden states of one unpadded input, computed directly."""
    with torch.no_grad():
        return encoder.model(input_ids=torch.tensor([ids])).last_hidden_state[0]


def full_ids(encoder: TextEncoder, text: str) -> list[int]:
    return encoder.tokenizer(text)["input_ids"]


def test_label_positions_by_hand(encoders):
    enc = encoders["label-token"]
    text = "The red soil is dark and wet soil."
    assert enc.tokenizer.convert_ids_to_tokens(enc.tokenize(text)) == [
        "the",
        "red",
        "soil",
        "is",
        "dark",
        "and",
        "wet",
        "soil",
        ".",
    ]
    assert enc.label_spans(text, "soil") == [(2, 3), (7, 8)]
    assert enc.label_spans(text, "Soil") == [(2, 3), (7, 8)]
    # a continuation piece (##soil) is not the word; a plural's stem (soil ##s) is
    assert enc.label_spans("topsoil and soils", "soil") == [(3, 4)]
    # a multi-token name matches only as a whole, contiguous span
    text = "Green vegetation is green and the vegetation is wet."
    assert enc.label_spans(text, "green vegetation") == [(0, 2)]


def test_label_token_vector_is_the_mean_at_the_name_positions(encoders):
    enc = encoders["label-token"]
    text = "The red soil is dark and wet soil."
    states = hidden(enc, full_ids(enc, text))
    expected = states[[1 + 2, 1 + 7]].mean(0)  # +1 for [CLS]
    torch.testing.assert_close(
        enc.encode_paragraphs([text], "soil")[0], expected, rtol=1e-5, atol=1e-5
    )
    text = "Green vegetation is green and the vegetation is wet."
    expected = hidden(enc, full_ids(enc, text))[[1, 2]].mean(0)
    torch.testing.assert_close(
        enc.encode_paragraphs([text], "green vegetation")[0], expected, rtol=1e-5, atol=1e-5
    )


def test_mean_and_cls_against_manual_computation(encoders):
    text = "The grey concrete is bright."
    states = hidden(encoders["mean"], full_ids(encoders["mean"], text))
    torch.testing.assert_close(
        encoders["mean"].encode_paragraphs([text])[0], states.mean(0), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(
        encoders["cls"].encode_paragraphs([text])[0], states[0], rtol=1e-5, atol=1e-5
    )


def test_batching_and_padding_do_not_change_vectors(encoders):
    enc = encoders["label-token"]
    texts = ["soil .", "The red soil is dark and wet soil.", "a soil is a soil and a soil ."]
    together = enc.encode_paragraphs(texts, "soil")
    alone = torch.stack([enc.encode_paragraphs([t], "soil")[0] for t in texts])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_missing_name_falls_back_to_mean_with_a_warning(encoders):
    text = "No name here."
    with pytest.warns(
        LabelNotFoundWarning,
        match=r"paragraph 1 of class 'asphalt' never "
        r"mentions 'asphalt'; using mean pooling",
    ):
        vectors = encoders["label-token"].encode_paragraphs(["asphalt", text], "asphalt")
    torch.testing.assert_close(vectors[1], encoders["mean"].encode_paragraphs([text])[0])


LONG = "the " * 27 + "red soil ."  # 30 tokens; the model takes 24 (22 + [CLS] + [SEP])


def test_long_paragraph_is_chunked_and_a_late_name_is_found(encoders):
    enc = encoders["label-token"]
    ids = enc.tokenize(LONG)
    assert len(ids) == 30 and ids[28] == enc.tokenizer.convert_tokens_to_ids("soil")
    assert (enc.max_length, enc.window, enc.overlap) == (24, 22, 11)
    assert window_starts(30, 22, 11) == [0, 8]
    last = hidden(enc, [enc.tokenizer.cls_token_id, *ids[8:], enc.tokenizer.sep_token_id])
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelNotFoundWarning)
        vector = enc.encode_paragraphs([LONG], "soil")[0]
    torch.testing.assert_close(vector, last[1 + 28 - 8], rtol=1e-5, atol=1e-5)


def test_long_paragraph_mean_and_cls_count_each_token_once(encoders):
    enc = encoders["mean"]
    ids = enc.tokenize(LONG)
    cls, sep = enc.tokenizer.cls_token_id, enc.tokenizer.sep_token_id
    first = hidden(enc, [cls, *ids[:22], sep])  # tokens 0..21
    second = hidden(enc, [cls, *ids[8:], sep])  # tokens 8..29
    # tokens 0..14 have more context in the first window, 15..29 in the second
    rows = torch.cat([first[:1], first[1:16], second[1 + 7 : 1 + 22], second[23:]])
    assert rows.shape[0] == 30 + 2
    torch.testing.assert_close(enc.encode_paragraphs([LONG])[0], rows.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        encoders["cls"].encode_paragraphs([LONG])[0],
        (first[0] + second[0]) / 2,
        rtol=1e-5,
        atol=1e-5,
    )


@given(n=st.integers(1, 200), size=st.integers(1, 40), data=st.data())
def test_windows_cover_every_token_and_owners_contain_it(n, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    starts = window_starts(n, size, overlap)
    assert starts[0] == 0 and min(starts[-1] + size, n) == n
    assert all(s + size <= n for s in starts) or starts == [0]
    assert all(b - a <= size - overlap for a, b in itertools.pairwise(starts))
    for p, w in enumerate(assign_windows(n, starts, size)):
        assert starts[w] <= p < starts[w] + size


def test_cased_wordpiece_and_spans_are_case_insensitive(tmp_path):
    folder = save_tiny_bert(tmp_path / "cased", lower=False)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)

    def tokenize(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    ids = tokenize("Soil and soil and SOIL .")
    assert find_spans(ids, name_patterns(tokenize, "soil")) == [(0, 1), (2, 3), (4, 5)]


def save_tiny_roberta(folder) -> str:
    from tokenizers import ByteLevelBPETokenizer

    corpus = ["Soil is dark soil. Green vegetation is green. Asphalt and concrete roads."] * 20
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        corpus,
        vocab_size=300,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
    )
    folder.mkdir(parents=True)
    bpe.save_model(str(folder))
    tokenizer = transformers.RobertaTokenizerFast.from_pretrained(folder, model_max_length=512)
    torch.manual_seed(0)
    config = transformers.RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=34,
        pad_token_id=tokenizer.pad_token_id,
    )
    transformers.RobertaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_byte_level_bpe_name_in_context(tmp_path):
    enc = TextEncoder(save_tiny_roberta(tmp_path / "roberta"), device="cpu", use_cache=False)
    assert enc.max_length == 32  # 34 positions minus RoBERTa's padding offset
    text = "Soil is dark soil."
    pieces = enc.tokenizer.convert_ids_to_tokens(enc.tokenize(text))
    assert pieces[0] == "Soil" and "Ġsoil" in pieces  # different tokens, same name
    spans = enc.label_spans(text, "soil")
    assert len(spans) == 2 and spans[0][0] == 0
    positions = [1 + p for start, end in spans for p in range(start, end)]  # +1 for <s>
    expected = hidden(enc, full_ids(enc, text))[positions].mean(0)
    torch.testing.assert_close(
        enc.encode_paragraphs([text], "soil")[0], expected, rtol=1e-5, atol=1e-5
    )


def test_encode_classes_is_the_mean_over_paragraphs(encoders):
    enc = encoders["label-token"]
    d = Descriptions(
        {"soil": ["The red soil is dark.", "wet soil ."], "asphalt": ["asphalt is dark ."]}
    )
    names, embeddings = enc.encode_classes(d)
    assert names == ["soil", "asphalt"]
    assert embeddings.shape == (2, enc.dim) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings[0], enc.encode_paragraphs(d["soil"], "soil").mean(0))
    _, from_mapping = enc.encode_classes({name: list(d[name]) for name in d.names})
    torch.testing.assert_close(from_mapping, embeddings)


def count_forward_calls(encoder: TextEncoder) -> list[int]:
    calls: list[int] = []
    encoder.model.register_forward_hook(lambda *_: calls.append(1))
    return calls


DESCRIPTIONS = Descriptions(
    {
        "soil": ["The red soil is dark.", "wet soil ."],
        "asphalt": ["asphalt is dark .", "grey asphalt ."],
        "concrete": ["bright grey concrete ."],
    }
)


def test_second_run_reads_the_cache_and_calls_no_model(bert_dir, tmp_path):
    first = TextEncoder(bert_dir, device="cpu", cache_dir=tmp_path)
    calls = count_forward_calls(first)
    _, computed = first.encode_classes(DESCRIPTIONS)
    assert len(calls) == 3 and len(list(tmp_path.glob("*.npz"))) == 3

    second = TextEncoder(bert_dir, device="cpu", cache_dir=tmp_path)
    calls = count_forward_calls(second)
    names, cached = second.encode_classes(DESCRIPTIONS)
    assert calls == [] and names == DESCRIPTIONS.names
    torch.testing.assert_close(cached, computed, rtol=0, atol=0)

    changed = DESCRIPTIONS.to_dict()["classes"] | {"concrete": ["grey concrete ."]}
    second.encode_classes(changed)
    assert len(calls) == 1  # only the changed class is encoded again


def test_cache_key_separates_models_poolings_and_settings(bert_dir, tmp_path):
    base = TextEncoder(bert_dir, device="cpu", cache_dir=tmp_path)
    base.encode_classes(DESCRIPTIONS)
    other_weights = save_tiny_bert(tmp_path / "other", seed=1)
    for encoder in (
        TextEncoder(bert_dir, pooling="mean", device="cpu", cache_dir=tmp_path),
        TextEncoder(bert_dir, overlap=4, device="cpu", cache_dir=tmp_path),
        TextEncoder(other_weights, device="cpu", cache_dir=tmp_path),
    ):
        assert encoder.cache_key("soil", DESCRIPTIONS["soil"]) != base.cache_key(
            "soil", DESCRIPTIONS["soil"]
        )
        calls = count_forward_calls(encoder)
        encoder.encode_classes(DESCRIPTIONS)
        assert len(calls) == 3
    assert len(list(tmp_path.glob("*.npz"))) == 4 * 3


def test_corrupt_cache_entry_is_recomputed(bert_dir, tmp_path):
    enc = TextEncoder(bert_dir, device="cpu", cache_dir=tmp_path)
    _, expected = enc.encode_classes(DESCRIPTIONS)
    entry = enc.cache.path(enc.cache_key("soil", DESCRIPTIONS["soil"]))
    entry.write_bytes(b"not an npz file")
    calls = count_forward_calls(enc)
    with pytest.warns(UserWarning, match="unreadable embedding cache entry"):
        _, again = enc.encode_classes(DESCRIPTIONS)
    assert len(calls) == 1
    torch.testing.assert_close(again, expected)
    assert enc.cache.get(enc.cache_key("soil", DESCRIPTIONS["soil"])) is not None


def test_argument_errors(bert_dir, encoders, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="pooling must be one of label-token, mean, cls"):
        TextEncoder(bert_dir, pooling="max")
    with pytest.raises(ValueError, match=r"max_length must be in \(2, 24\]"):
        TextEncoder(bert_dir, max_length=100, use_cache=False)
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 22\)"):
        TextEncoder(bert_dir, overlap=22, use_cache=False)
    with pytest.raises(ValueError, match="needs the class_name"):
        encoders["label-token"].encode_paragraphs(["soil"])
    with pytest.raises(EncoderError, match="no such model folder"):
        TextEncoder(tmp_path / "missing")
    with pytest.raises(EncoderError, match="cannot load a text encoder from this folder"):
        TextEncoder(tmp_path)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(EncoderError, match="pass a local model folder") as info:
        TextEncoder("s3fn-test/no-such-model")
    assert "\n" not in str(info.value)


END_TO_END = """
import sys, warnings
import torch
from s3fn.semantics import LabelNotFoundWarning, TextEncoder, bundled_descriptions
warnings.simplefilter("error", LabelNotFoundWarning)  # every paragraph names its class
encoder = TextEncoder(device="cpu", use_cache=False)
descriptions = bundled_descriptions("materials")
names, first = encoder.encode_classes(descriptions)
_, second = encoder.encode_classes(descriptions)
torch.save({"names": names, "first": first, "second": second,
            "max_length": encoder.max_length}, sys.argv[1])
"""


def test_end_to_end_with_the_offline_default(tmp_path):
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    out = tmp_path / "out.pt"
    subprocess.run([sys.executable, "-c", END_TO_END, str(out)], env=env, check=True, timeout=300)
    result = torch.load(out)
    embeddings = result["first"]
    assert result["names"] == bundled_descriptions().names
    assert embeddings.shape == (8, 384) and embeddings.dtype == torch.float32
    assert torch.isfinite(embeddings).all() and (embeddings.norm(dim=1) > 0).all()
    torch.testing.assert_close(result["second"], embeddings, rtol=0, atol=0)
    unit = torch.nn.functional.normalize(embeddings, dim=1)
    similarity = unit @ unit.T
    off_diagonal = similarity[~torch.eye(8, dtype=torch.bool)]
    assert off_diagonal.max() < 0.95  # different classes get different embeddings
    assert result["max_length"] == 512


def test_importing_semantics_does_not_import_transformers():
    code = "import sys, s3fn.semantics; sys.exit('transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
