"""The accuracy suite's outputs: Markdown tables of the summaries and paired differences, the
docs section with the machine it ran on, and the JSON results file."""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from benchmarks.accuracy_plan import LABELS, SEMANTIC_LABELS
from benchmarks.accuracy_stats import CONFIDENCE, protocol_verdicts, summaries_and_pairs
from benchmarks.description_corruption import MIXED_FRACTION

REPO = Path(__file__).resolve().parents[1]


def mean_std(summary: Mapping[str, Any], metric: str, *, factor: float, digits: int) -> str:
    """ "mean ± std" of a summary's metric (the mean alone for one seed; "-" for none)."""
    if not summary["seeds"]:
        return "-"
    mean = f"{summary['mean'][metric] * factor:.{digits}f}"
    if len(summary["seeds"]) < 2:
        return mean
    return f"{mean} ± {summary['std'][metric] * factor:.{digits}f}"


def format_difference(diff: Mapping[str, Any] | None) -> tuple[str, str, str, str]:
    """(mean, interval, seeds, per-seed values) of a paired OA difference, in points."""
    if diff is None:
        return "-", "-", "0", "-"
    low, high = diff["low"], diff["high"]
    interval = "-" if low is None else f"[{100 * low:+.2f}, {100 * high:+.2f}]"
    per_seed = ", ".join(f"{100 * d:+.2f}" for d in diff["diffs"])
    return f"{100 * diff['mean']:+.2f}", interval, str(len(diff["diffs"])), per_seed


def markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    """`text` with the part between `<!-- name:begin -->` and `<!-- name:end -->` replaced by
    `body`; the markers and body are appended at the end when the markers are missing."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    if start < 0 or stop < 0:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    return text[:start] + block + text[stop + len(end) :]


def render(
    groups: Sequence[Mapping[str, Any]],
    labels: Mapping[str, str],
    *,
    with_train: bool,
) -> tuple[str, str]:
    """(summary table, paired-difference table) in Markdown."""
    first = ["dataset", "train / class" if with_train else "protocol", "method"]
    rows, pair_rows = [], []
    for group in groups:
        where = [group["dataset"], f"{group['train']:g}" if with_train else group["protocol"]]
        for method, s in group["methods"].items():
            seeds = str(len(s["seeds"]))
            if s["failed"] or s["unavailable"]:
                seeds += f" ({s['failed']} failed, {s['unavailable']} unavailable)"
            rows.append(
                [
                    *where,
                    labels[method],
                    mean_std(s, "oa", factor=100, digits=2),
                    mean_std(s, "aa", factor=100, digits=2),
                    mean_std(s, "kappa", factor=100, digits=2),
                    mean_std(s, "train_seconds", factor=1, digits=1),
                    seeds,
                ]
            )
        for method, diff in group["paired"].items():
            pair_rows.append([*where, labels[method], *format_difference(diff)])
    summary = markdown(
        [*first, "OA (%)", "AA (%)", "kappa (x100)", "train time (s)", "seeds"], rows
    )
    paired = markdown(
        [*first, "ΔOA (points)", f"{CONFIDENCE:.0%} interval", "seeds", "per seed"], pair_rows
    )
    return summary, paired


def machine() -> dict[str, Any]:
    """The machine, the library versions and the source revision the results come from."""
    from benchmarks.run import machine_info

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info = machine_info(device)
    info["platform"] = platform.platform()
    for name in ("numpy", "scipy", "scikit-learn", "s3fn"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    info["commit"] = _git("rev-parse", "HEAD")
    info["uncommitted_changes"] = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return info


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def section(
    table: str,
    groups: Sequence[Mapping[str, Any]],
    info: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> str:
    """The Markdown of one table's marked section of docs/results.md."""
    semantic = table == "semantics"
    labels = SEMANTIC_LABELS if semantic else LABELS
    summary, paired = render(groups, labels, with_train=semantic)
    commit = (info.get("commit") or "unknown")[:10]
    dirty = " with uncommitted changes" if info.get("uncommitted_changes") else ""
    device = info.get("gpu") or f"{info['cpu']}, {info['cores']} cores"
    title = "S3FN with and without label semantics" if semantic else "Accuracy suite"
    lines = [
        f"## {title}",
        "",
        f"Made by `{settings['command']}` on {settings['date'][:10]}: {device}, torch "
        f"{info['torch']}, s3fn {info.get('s3fn')} at {commit}{dirty}. Every number and the "
        f"settings are in `{settings['output']}` (key `{table}`).",
        "",
    ]
    if settings.get("quick"):
        lines += [f"**Quick run.** {settings['quick']}.", ""]
    if semantic:
        lines += [
            f"Object datasets, {settings['object_val']} validation images per class, the rest "
            "tested, scored per image. Every row of a (dataset, training size, seed) trains on "
            "the split of its S3FN run. Corrupted descriptions come from the class "
            "descriptions through s3fn.semantics.ablations, seeded by the run's seed: `mixed` "
            f"replaces {MIXED_FRACTION:.0%} of each class's sentences with sentences of other "
            "classes, `first-sentence` keeps only the first sentence, `swapped` gives every "
            "class another class's paragraphs (class names renamed, so label-token pooling "
            "still finds them).",
        ]
    else:
        lines += [
            f"Objects: {settings['object_train']} training and {settings['object_val']} "
            "validation images per class, the rest tested, scored per image (networks: vote of "
            "their windows; linear / SVM: the image's mean spectrum). Scenes, by protocol: "
            f"`blocks` holds out random spatial blocks (train {settings['scene_train']:g}, "
            f"validation {settings['scene_val']:g}, the rest tested); `west` and `north` label "
            f"the west (north) {settings.get('region_side', 0.45):.0%} of the columns (rows) "
            "and score the other side, from half a window beyond it on, as a user who labelled "
            "the fields they walked maps the rest (the networks: `s3fn train --labels SIDE "
            "--test-labels OTHER_SIDE` with default options, which hold out whole labelled "
            "fields, about 20 % of the side, for validation and refit on all of it; the plain "
            "3D-CNN's region cells were early-stopped on the earlier validation blocks). Scored "
            "per pixel. The "
            "networks of a (dataset, protocol, seed) share the split.json of its `default` "
            "run; linear / SVM train on the labels the default's final model trained on.",
        ]
        verdicts = protocol_verdicts(groups, "linear")
        if verdicts:
            lines += ["", f"{labels['default']} against {labels['linear']}, by protocol:", ""]
            for protocol, entry in verdicts.items():
                behind = ", ".join(entry["behind"]) or "none"
                lines.append(
                    f"- `{protocol}`: mean paired OA difference averaged over the datasets "
                    f"{100 * entry['average']:+.2f} points; datasets where the default is "
                    f"behind by more than one standard deviation or 0.5 points: {behind}."
                )
    lines += [""]
    lines += [
        f"Mean ± sample standard deviation over seeds ({settings['seeds']} asked). Train time: "
        "seconds of `train_classifier` (windows, PCA and training) or of the scikit-learn fit.",
        "",
        summary,
        "",
        f"Paired per-seed OA difference, {labels['default']} minus each method, in points, with "
        f"the {CONFIDENCE:.0%} t-interval of its mean (positive: {labels['default']} is better):",
        "",
        paired,
        "",
    ]
    notes = [f"- {name}: skipped, {why}" for name, why in settings["skipped"].items()]
    notes += [
        f"- {r['dataset']} / {r.get('protocol', 'blocks')} / {r['method']} / seed {r['seed']}: "
        f"{r['status']}, {r['reason'][:300]}"
        for r in settings["not_ok"]
    ]
    if notes:
        lines += ["Not in the tables:", "", *notes, ""]
    return "\n".join(lines)


def write_outputs(
    table: str,
    results: Sequence[Mapping[str, Any]],
    settings: dict[str, Any],
    output: Path,
    docs: Path,
) -> str:
    """Update `table`'s key of the JSON file and its section of the docs; returns the section."""
    groups = summaries_and_pairs(results)
    info = machine()
    settings["not_ok"] = [
        {
            k: r.get(k)
            for k in ("dataset", "protocol", "method", "train", "seed", "status", "reason")
        }
        for r in results
        if r["status"] != "ok"
    ]
    text = section(table, groups, info, settings)
    existing = json.loads(output.read_text()) if output.is_file() else {}
    existing[table] = {
        "machine": info,
        "settings": settings,
        "cells": list(results),
        "summaries": groups,
        "markdown": text,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(existing, indent=2) + "\n")
    old = docs.read_text() if docs.is_file() else ""
    docs.write_text(replace_section(old, table, text))
    return text
