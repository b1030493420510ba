"""Evaluation: OA / AA / kappa / macro-F1 / per-class metrics, window- and image-level (after
majority or mean-probability voting), per-pixel scene scores, and mean ± std over seeds."""

from s3fn.evaluate.metrics import Report, confusion_matrix
from s3fn.evaluate.predict import Evaluation, evaluate, predict_probabilities
from s3fn.evaluate.scene import score_map
from s3fn.evaluate.seeds import SeedSummary, markdown_table, run_seeds
from s3fn.evaluate.voting import VOTINGS, Votes, group_labels, vote, vote_one

__all__ = [
    "VOTINGS",
    "Evaluation",
    "Report",
    "SeedSummary",
    "Votes",
    "confusion_matrix",
    "evaluate",
    "group_labels",
    "markdown_table",
    "predict_probabilities",
    "run_seeds",
    "score_map",
    "vote",
    "vote_one",
]
