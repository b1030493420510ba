"""The S3FN description prompt as a template, and the parser for the model's reply.

The system message and the body follow the published S3FN notebooks (one factual,
comparative paragraph about a label and its spectral signature); the template asks for all
of a class's paragraphs in one reply, separated by blank lines, each naming the class.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

SYSTEM_PROMPT = (
    "You are an expert researcher and writer. Provide factual, precise, and comparative "
    "content with a focus on hyperspectral analysis."
)

PROMPT_TEMPLATE = (
    "Write {n_paragraphs} detailed, fact-based paragraphs about {class_name}, emphasizing its "
    "unique spectral characteristics and how its reflectance properties differ from the other "
    "classes: {other_classes}. Focus specifically on its spectral signature in the "
    "{spectral_range} range, highlighting key absorption features (with their wavelengths), "
    "reflectance peaks, and any notable spectral variations. Compare how these differences "
    "manifest in hyperspectral imaging, considering material composition, chemical properties, "
    "and subtle spectral anomalies. Emphasize how these spectral distinctions aid in "
    "hyperspectral classification and analysis. Additionally, mention any relevant physical or "
    "material properties that influence these spectral behaviors and how they aid in "
    "classification and material identification. Domain context: {context}.\n\n"
    'Every paragraph must mention "{class_name}" by name. Separate the paragraphs with one '
    "blank line; write no title, numbering, list markers or any other text."
)

TEMPLATE_FIELDS = ("class_name", "other_classes", "spectral_range", "context", "n_paragraphs")

DEFAULT_SPECTRAL_RANGE = "VNIR-SWIR (0.4-2.5 µm)"
DEFAULT_CONTEXT = "hyperspectral remote sensing and material classification"


def build_prompt(
    class_name: str,
    classes: Sequence[str],
    *,
    n_paragraphs: int = 10,
    spectral_range: str = DEFAULT_SPECTRAL_RANGE,
    context: str = DEFAULT_CONTEXT,
    template: str = PROMPT_TEMPLATE,
) -> str:
    """The user prompt for `class_name`, contrasting it with the other names in `classes`.

    `template` may use any of TEMPLATE_FIELDS as `{field}` placeholders.
    """
    if class_name not in classes:
        raise ValueError(f"build_prompt: class {class_name!r} is not among classes {list(classes)}")
    if n_paragraphs < 1:
        raise ValueError(f"build_prompt: n_paragraphs must be >= 1, got {n_paragraphs}")
    unknown = [
        name
        for _, name, _, _ in string.Formatter().parse(template)
        if name is not None and name not in TEMPLATE_FIELDS
    ]
    if unknown:
        raise ValueError(
            f"build_prompt: template: unknown field {', '.join(map(repr, unknown))}; "
            f"expected only {', '.join(TEMPLATE_FIELDS)}"
        )
    others = [c for c in classes if c != class_name]
    return template.format(
        class_name=class_name,
        other_classes=", ".join(others) if others else "(none)",
        spectral_range=spectral_range,
        context=context,
        n_paragraphs=n_paragraphs,
    )


def build_messages(prompt: str, *, system: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The chat-completions `messages` list: the system message, then the user prompt."""
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


# "1. ", "2) ", "3: ", "Paragraph 4:", "**5.**", "- ", "* ", "• " at the start of a line; the
# required whitespace keeps numbers such as "2.2 µm" from being read as markers.
_MARKER = re.compile(
    r"^(?:\*\*)?(?:paragraph\s+)?\d{1,2}\s*[.):](?:\*\*)?\s+|^[-*\u2022]\s+", re.IGNORECASE
)
_HEADING = re.compile(r"^#{1,6}\s")


def parse_paragraphs(reply: str) -> list[str]:
    """Split a model reply into paragraphs.

    Paragraphs end at blank lines or where a line starts with a list marker (numbers, bullets);
    markers and Markdown headings are dropped, as is any block ending in ':' (a lead-in such as
    "Here are ten paragraphs:"). Lines inside a paragraph are joined with spaces.
    """
    paragraphs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            paragraphs.append(" ".join(current))
            current.clear()

    for raw in reply.splitlines():
        line = raw.strip()
        if not line or _HEADING.match(line):
            flush()
            continue
        marker = _MARKER.match(line)
        if marker:
            flush()
            line = line[marker.end() :].strip()
        if line:
            current.append(line)
    flush()
    return [p for p in paragraphs if not p.endswith(":")]
