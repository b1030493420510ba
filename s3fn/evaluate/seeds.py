"""Repeating a configuration over seeds and reporting each metric as mean ± std."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from s3fn.evaluate.metrics import Report

RunResult = Mapping[str, float] | Report


@dataclass(frozen=True)
class SeedSummary:
    """One record of metrics per seed, and their mean and sample standard deviation (ddof=1)."""

    runs: list[dict[str, float]]

    @property
    def seeds(self) -> list[int]:
        """The seeds, in run order."""
        return [int(r["seed"]) for r in self.runs]

    @property
    def metrics(self) -> list[str]:
        """The metric names (those of the first run)."""
        return [k for k in self.runs[0] if k != "seed"]

    def values(self, metric: str) -> np.ndarray:
        """One value per seed."""
        return np.array([r[metric] for r in self.runs], dtype=np.float64)

    def mean(self, metric: str) -> float:
        """Mean over seeds."""
        return float(self.values(metric).mean())

    def std(self, metric: str) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        values = self.values(metric)
        return float(values.std(ddof=1)) if len(values) > 1 else 0.0

    def format(self, metric: str, *, percent: bool = True, digits: int = 2) -> str:
        """ "mean ± std", in percent by default; the mean alone for a single seed (no spread)."""
        factor = 100.0 if percent else 1.0
        mean = f"{self.mean(metric) * factor:.{digits}f}"
        if len(self.runs) < 2:
            return f"{mean} (1 seed)"
        return f"{mean} ± {self.std(metric) * factor:.{digits}f}"

    def to_dict(self) -> dict[str, Any]:
        """The runs and, per metric, the mean and std (JSON-ready)."""
        return {
            "runs": self.runs,
            "mean": {m: self.mean(m) for m in self.metrics},
            "std": {m: self.std(m) for m in self.metrics},
        }


def run_seeds(run: Callable[[int], RunResult], seeds: Iterable[int]) -> SeedSummary:
    """Call `run(seed)` for each seed; each returns a flat {metric: value} or a `Report`."""
    runs = []
    for seed in seeds:
        result = run(seed)
        values = result.scalars() if isinstance(result, Report) else dict(result)
        runs.append({"seed": int(seed), **{k: float(v) for k, v in values.items()}})
    if not runs:
        raise ValueError("run_seeds: no seeds given")
    return SeedSummary(runs)


def markdown_table(
    summaries: Mapping[str, SeedSummary],
    metrics: Sequence[str],
    *,
    headers: Sequence[str] | None = None,
    percent: bool = True,
) -> str:
    """A Markdown table, one row per named summary, "mean ± std" per metric."""
    headers = list(headers or metrics)
    lines = [
        "| method | " + " | ".join(headers) + " |",
        "|---|" + "---|" * len(headers),
    ]
    for name, summary in summaries.items():
        cells = [summary.format(m, percent=percent) for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
