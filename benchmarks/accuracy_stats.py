"""Statistics of the accuracy suite: mean and std over seeds per method, and the paired
per-seed difference of `default` against every other method with its t-interval."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from s3fn.evaluate import SeedSummary

CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedDifference:
    """Per-seed differences a - b over the seeds both have, with a t-interval of their mean."""

    seeds: list[int]
    diffs: list[float]
    confidence: float = CONFIDENCE

    @property
    def n(self) -> int:
        """Number of paired seeds."""
        return len(self.diffs)

    @property
    def mean(self) -> float:
        """Mean difference."""
        return float(np.mean(self.diffs))

    def interval(self) -> tuple[float, float] | None:
        """The `confidence` t-interval of the mean (None below two seeds)."""
        if self.n < 2:
            return None
        sd = float(np.std(self.diffs, ddof=1))
        half = float(stats.t.ppf((1 + self.confidence) / 2, self.n - 1)) * sd / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: seeds, differences, mean and interval."""
        interval = self.interval()
        return {
            "seeds": self.seeds,
            "diffs": self.diffs,
            "mean": self.mean,
            "low": None if interval is None else interval[0],
            "high": None if interval is None else interval[1],
            "confidence": self.confidence,
        }


def paired_difference(a: Mapping[int, float], b: Mapping[int, float]) -> PairedDifference | None:
    """a[seed] - b[seed] over the seeds in both (None when they share none)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    return PairedDifference(seeds, [float(a[s] - b[s]) for s in seeds])


def summarise(cells: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of OA / AA / kappa / train time of the finished cells, and the
    count of the others, for the cells of one (dataset, training size, method)."""
    done = [c for c in cells if c["status"] == "ok"]
    out: dict[str, Any] = {
        "seeds": [c["seed"] for c in done],
        "failed": sum(c["status"] == "failed" for c in cells),
        "unavailable": sum(c["status"] == "unavailable" for c in cells),
    }
    if done:
        metrics = ("oa", "aa", "kappa", "train_seconds")
        summary = SeedSummary([{"seed": c["seed"], **{m: c[m] for m in metrics}} for c in done])
        out.update(summary.to_dict())
        out.pop("runs")
    return out


def group_results(
    results: Sequence[Mapping[str, Any]],
) -> dict[tuple[str, str, float | None], dict[str, list[Mapping[str, Any]]]]:
    """Results by (dataset, protocol, training size), then by method."""
    groups: dict[tuple[str, str, float | None], dict[str, list[Mapping[str, Any]]]] = {}
    for r in results:
        where = (r["dataset"], r.get("protocol", "blocks"), r["train"])
        groups.setdefault(where, {}).setdefault(r["method"], []).append(r)
    return groups


def summaries_and_pairs(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (dataset, protocol, training size): each method's summary and the paired OA
    difference of `default` minus every other method."""
    out = []
    for (dataset, protocol, train), by_method in group_results(results).items():
        default_oa = {
            r["seed"]: r["oa"] for r in by_method.get("default", []) if r["status"] == "ok"
        }
        summaries = {m: summarise(cells) for m, cells in by_method.items()}
        pairs = {}
        for method, cells in by_method.items():
            if method == "default":
                continue
            other = {r["seed"]: r["oa"] for r in cells if r["status"] == "ok"}
            diff = paired_difference(default_oa, other)
            pairs[method] = None if diff is None else diff.to_dict()
        out.append(
            {
                "dataset": dataset,
                "protocol": protocol,
                "train": train,
                "methods": summaries,
                "paired": pairs,
            }
        )
    return out


def protocol_verdicts(groups: Sequence[Mapping[str, Any]], other: str) -> dict[str, Any]:
    """Per protocol, `default` against method `other`: the mean over datasets of the paired
    mean OA difference, and the datasets where `default` is below `other` by more than one
    standard deviation of the paired differences or 0.5 points, whichever is larger."""
    verdicts: dict[str, Any] = {}
    for group in groups:
        diff = group["paired"].get(other)
        if diff is None:
            continue
        entry = verdicts.setdefault(group["protocol"], {"means": {}, "behind": []})
        entry["means"][group["dataset"]] = diff["mean"]
        spread = float(np.std(diff["diffs"], ddof=1)) if len(diff["diffs"]) > 1 else 0.0
        if diff["mean"] < -max(spread, 0.005):
            entry["behind"].append(group["dataset"])
    for entry in verdicts.values():
        entry["average"] = float(np.mean(list(entry["means"].values())))
    return verdicts
