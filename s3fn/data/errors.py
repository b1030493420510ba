"""The errors raised for bad input data."""

from __future__ import annotations


class S3FNDataError(ValueError):
    """Bad input data; the one-line message names the file, the field and what was expected."""


class LeakageError(S3FNDataError):
    """A split whose training (or validation) windows would see pixels or images of another part."""
