"""`s3fn describe`: ask an LLM (OpenAI-compatible endpoint) for class descriptions."""

from __future__ import annotations

import argparse
import logging

from s3fn.progress import Progress, print_outputs
from s3fn.semantics.prompts import DEFAULT_CONTEXT, DEFAULT_SPECTRAL_RANGE


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's description and options."""
    parser.description = (
        "Ask an OpenAI-compatible chat endpoint for factual paragraphs about each class "
        "(replies are cached on disk) and write a descriptions file. The endpoint, model and "
        "key default to S3FN_LLM_BASE_URL, S3FN_LLM_MODEL and S3FN_LLM_API_KEY."
    )
    parser.add_argument("classes", nargs="+", metavar="CLASS", help="class names")
    parser.add_argument("--out", required=True, help="descriptions file to write (.json/.yaml)")
    parser.add_argument("--base-url", help="API root, e.g. http://localhost:8000/v1")
    parser.add_argument("--model", help="model name at the endpoint")
    parser.add_argument("--paragraphs", type=int, default=10, help="paragraphs per class")
    parser.add_argument("--spectral-range", default=DEFAULT_SPECTRAL_RANGE)
    parser.add_argument("--context", default=DEFAULT_CONTEXT)
    parser.add_argument("--temperature", type=float)
    parser.add_argument("--no-cache", action="store_true", help="ask again even if cached")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Ask for every class and write the file."""
    from s3fn.semantics import LLMClient, describe, save_descriptions

    client = LLMClient(args.base_url, args.model)
    bar = Progress(args.quiet).bar(len(args.classes), "asking the LLM", "class")
    handler = _Ticks(bar)
    logger = logging.getLogger("s3fn.semantics.describe")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        descriptions = describe(
            args.classes,
            client=client,
            n_paragraphs=args.paragraphs,
            spectral_range=args.spectral_range,
            context=args.context,
            temperature=args.temperature,
            use_cache=not args.no_cache,
        )
    finally:
        logger.removeHandler(handler)
        bar.close()
    path = save_descriptions(args.out, descriptions)
    counts = ", ".join(f"{n} {len(descriptions[n])}" for n in descriptions.names)
    print(f"paragraphs per class: {counts} ({client.model})")
    print_outputs("wrote:", [path])
    return 0


class _Ticks(logging.Handler):
    """Advances a bar on every class `describe` starts."""

    def __init__(self, bar: object) -> None:
        super().__init__(logging.INFO)
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        self.bar.update(1)
