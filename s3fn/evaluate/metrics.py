"""Classification metrics from a confusion matrix: OA, AA, Cohen's kappa, macro-F1, per class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_classes: int
) -> np.ndarray:
    """K x K int64 counts: row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"confusion_matrix: {len(y_true)} true labels but {len(y_pred)} predicted")
    for name, y in (("true", y_true), ("predicted", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(
                f"confusion_matrix: {name} labels span {y.min()}..{y.max()}; "
                f"expected 0..{n_classes - 1}"
            )
    counts = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass(frozen=True, eq=False)
class Report:
    """The metrics of one classification, all derived from its confusion matrix.

    Per class: precision, recall (= per-class accuracy) and F1, 0 where undefined (as
    scikit-learn's zero_division=0); `support` says how many samples each class had. AA is the
    mean recall over the classes present in the truth; macro-F1 the mean F1 over the classes
    present in the truth or the predictions. Kappa is NaN when chance agreement is 1.
    """

    confusion: np.ndarray
    class_names: list[str]

    @classmethod
    def from_labels(
        cls,
        y_true: Sequence[int] | np.ndarray,
        y_pred: Sequence[int] | np.ndarray,
        class_names: Sequence[str] | int,
    ) -> Report:
        """Score predicted class indices against true ones; `class_names` or the class count."""
        if isinstance(class_names, int):
            class_names = [str(k) for k in range(class_names)]
        names = list(class_names)
        return cls(confusion_matrix(y_true, y_pred, len(names)), names)

    @property
    def total(self) -> int:
        """Number of scored samples."""
        return int(self.confusion.sum())

    @property
    def support(self) -> np.ndarray:
        """Samples per true class."""
        return self.confusion.sum(axis=1)

    @property
    def precision(self) -> np.ndarray:
        """Per-class precision: correct / predicted as the class."""
        return _ratio(np.diag(self.confusion), self.confusion.sum(axis=0))

    @property
    def recall(self) -> np.ndarray:
        """Per-class recall (per-class accuracy): correct / samples of the class."""
        return _ratio(np.diag(self.confusion), self.support)

    @property
    def f1(self) -> np.ndarray:
        """Per-class F1, the harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return _ratio(2 * p * r, p + r)

    @property
    def oa(self) -> float:
        """Overall accuracy: correct / total."""
        return float(np.trace(self.confusion) / self.total) if self.total else float("nan")

    @property
    def aa(self) -> float:
        """Average accuracy: the mean recall over classes present in the truth."""
        present = self.support > 0
        return float(self.recall[present].mean()) if present.any() else float("nan")

    @property
    def kappa(self) -> float:
        """Cohen's kappa: (p_o - p_e) / (1 - p_e), p_e the chance agreement of the marginals."""
        if not self.total:
            return float("nan")
        n = float(self.total)
        expected = float((self.confusion.sum(axis=1) * self.confusion.sum(axis=0)).sum()) / n**2
        return float("nan") if expected == 1.0 else (self.oa - expected) / (1.0 - expected)

    @property
    def macro_f1(self) -> float:
        """The mean F1 over classes present in the truth or the predictions."""
        seen = (self.support > 0) | (self.confusion.sum(axis=0) > 0)
        return float(self.f1[seen].mean()) if seen.any() else float("nan")

    def scalars(self) -> dict[str, float]:
        """{"oa", "aa", "kappa", "macro_f1"}."""
        return {"oa": self.oa, "aa": self.aa, "kappa": self.kappa, "macro_f1": self.macro_f1}

    def to_dict(self) -> dict[str, Any]:
        """The scalars, the per-class values by class name and the confusion matrix (JSON-ready)."""
        per_class = {
            name: {
                "precision": float(p),
                "recall": float(r),
                "f1": float(f),
                "support": int(s),
            }
            for name, p, r, f, s in zip(
                self.class_names, self.precision, self.recall, self.f1, self.support, strict=True
            )
        }
        return {
            **self.scalars(),
            "total": self.total,
            "per_class": per_class,
            "confusion": self.confusion.tolist(),
        }

    def summary(self) -> str:
        """A text table: per-class precision / recall / F1 / support, then OA, AA, kappa, F1."""
        width = max(len("class"), *(len(n) for n in self.class_names))
        lines = [f"{'class':<{width}}  precision  recall      f1  support"]
        for name, p, r, f, s in zip(
            self.class_names, self.precision, self.recall, self.f1, self.support, strict=True
        ):
            lines.append(f"{name:<{width}}  {p:9.4f}  {r:6.4f}  {f:6.4f}  {s:7d}")
        lines.append(
            f"OA {self.oa:.4f}  AA {self.aa:.4f}  kappa {self.kappa:.4f}  "
            f"macro-F1 {self.macro_f1:.4f}  ({self.total} samples)"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
