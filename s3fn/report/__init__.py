"""Run reports: `report.md` with the scores and per-class tables, and PNG plots (training curves,
confusion matrices, per-class F1, a scene's predicted map beside its ground truth)."""

from s3fn.report.markdown import REPORT_FILE, SceneMaps, main_report, write_report
from s3fn.report.plots import confusion, label_map, per_class_f1, scene_maps, training_curves

__all__ = [
    "REPORT_FILE",
    "SceneMaps",
    "confusion",
    "label_map",
    "main_report",
    "per_class_f1",
    "scene_maps",
    "training_curves",
    "write_report",
]
