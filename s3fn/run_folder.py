"""The layout of a run folder of `s3fn train`, which `s3fn evaluate` and `s3fn predict` read
back: the names of its files, in one place."""

CONFIG_FILE = "config.yaml"  # the configuration the run used
SPLIT_FILE = "split.json"  # its train / validation / test parts
METRICS_FILE = "metrics.json"  # its scores, label counts and histories
BUNDLE_DIR = "bundle"  # the inference bundle it saved
