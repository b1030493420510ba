"""Mean and covariance of many pixels, accumulated in chunks with bounded memory."""

from __future__ import annotations

import numpy as np

from s3fn.data.errors import S3FNDataError


class RunningCovariance:
    """Accumulates the mean and (population) covariance of B-band pixels, chunk by chunk.

    Each chunk is shifted by a reference spectrum (the first chunk's mean), multiplied in float32
    and added to float64 sums, so millions of pixels cost a few BLAS calls and no pixels x bands
    float64 copy.
    """

    def __init__(self, n_bands: int, chunk_rows: int = 16384) -> None:
        self.n_bands = n_bands
        self.chunk_rows = chunk_rows
        self.count = 0
        self._shift: np.ndarray | None = None
        self._sum = np.zeros(n_bands, dtype=np.float64)
        self._cross = np.zeros((n_bands, n_bands), dtype=np.float64)

    def update(self, pixels: np.ndarray) -> None:
        """Add pixels given as an (..., B) array; nothing larger than one chunk is copied."""
        pixels = np.asarray(pixels)
        if pixels.shape[-1:] != (self.n_bands,):
            raise S3FNDataError(
                f"pixels of shape {pixels.shape}: expected (..., {self.n_bands}) band values"
            )
        rows = pixels.reshape(-1, self.n_bands)
        for start in range(0, len(rows), self.chunk_rows):
            chunk = np.asarray(rows[start : start + self.chunk_rows], dtype=np.float32)
            if self._shift is None:
                self._shift = chunk.mean(axis=0, dtype=np.float64).astype(np.float32)
            centred = chunk - self._shift
            self._sum += centred.sum(axis=0, dtype=np.float64)
            self._cross += centred.T @ centred
            self.count += len(chunk)

    @property
    def mean(self) -> np.ndarray:
        """Mean spectrum (float64, B)."""
        self._need_data()
        return self._shift + self._sum / self.count

    @property
    def covariance(self) -> np.ndarray:
        """Population covariance matrix (float64, BxB)."""
        self._need_data()
        offset = self._sum / self.count
        cov = self._cross / self.count - np.outer(offset, offset)
        return (cov + cov.T) / 2

    def _need_data(self) -> None:
        if self.count == 0:
            raise S3FNDataError("no pixels were given; expected at least one training pixel")
