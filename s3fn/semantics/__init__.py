"""Label semantics for S3FN: class descriptions, an LLM client, text encoders, class embeddings.

Typical use::

    from s3fn.semantics import TextEncoder, bundled_descriptions
    names, embeddings = TextEncoder().encode_classes(bundled_descriptions("materials"))

`transformers` is imported only when a `TextEncoder` is built.
"""

from s3fn.semantics.ablations import mix_sentences, name_only, shuffle_descriptions
from s3fn.semantics.cache import EmbeddingCache, ReplyCache, default_cache_dir
from s3fn.semantics.describe import describe
from s3fn.semantics.descriptions import (
    Descriptions,
    DescriptionsError,
    bundled_descriptions,
    bundled_names,
    load_descriptions,
    parse_descriptions,
    save_descriptions,
)
from s3fn.semantics.encoders import POOLINGS, EncoderError, LabelNotFoundWarning, TextEncoder
from s3fn.semantics.llm import ChatClient, LLMClient, LLMError
from s3fn.semantics.prompts import (
    PROMPT_TEMPLATE,
    SYSTEM_PROMPT,
    build_messages,
    build_prompt,
    parse_paragraphs,
)

__all__ = [
    "POOLINGS",
    "PROMPT_TEMPLATE",
    "SYSTEM_PROMPT",
    "ChatClient",
    "Descriptions",
    "DescriptionsError",
    "EmbeddingCache",
    "EncoderError",
    "LLMClient",
    "LLMError",
    "LabelNotFoundWarning",
    "ReplyCache",
    "TextEncoder",
    "build_messages",
    "build_prompt",
    "bundled_descriptions",
    "bundled_names",
    "default_cache_dir",
    "describe",
    "load_descriptions",
    "mix_sentences",
    "name_only",
    "parse_descriptions",
    "parse_paragraphs",
    "save_descriptions",
    "shuffle_descriptions",
]
