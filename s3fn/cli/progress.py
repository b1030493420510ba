"""Progress bars for the long steps (tqdm on stderr), silenced by `--quiet`."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tqdm.auto import tqdm

from s3fn.data.datasets import ObjectDataset, ObjectSample

T = TypeVar("T")
_EPOCH = re.compile(r"^\[(?P<stage>\w+)\] epoch (?P<epoch>\d+)/(?P<total>\d+)\s+(?P<rest>.*)$")


class Progress:
    """Makes the bars of one command; with `quiet`, none is shown."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def bar(self, total: int | None = None, desc: str = "", unit: str = "it") -> tqdm:
        """A bar to `update()` by hand."""
        return tqdm(total=total, desc=desc, unit=unit, disable=self.quiet, leave=False)

    def each(
        self, items: Iterable[T], desc: str, unit: str = "it", total: int | None = None
    ) -> Iterator[T]:
        """`items`, with a bar."""
        yield from tqdm(items, desc=desc, unit=unit, total=total, disable=self.quiet, leave=False)

    @contextmanager
    def epochs(self) -> Iterator[None]:
        """A bar per training stage, fed by the epoch records that `fit` logs."""
        handler = _EpochBars(self)
        logger = logging.getLogger("s3fn.train")
        logger.addHandler(handler)
        previous = logger.level
        logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(previous)
            handler.close_bar()


class _EpochBars(logging.Handler):
    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.INFO)
        self.progress = progress
        self.stage: str | None = None
        self.current: tqdm | None = None

    def emit(self, record: logging.LogRecord) -> None:
        match = _EPOCH.match(record.getMessage())
        if match is None:
            return
        stage, epoch = match["stage"], int(match["epoch"])
        if stage != self.stage or self.current is None:
            self.close_bar()
            self.stage = stage
            self.current = self.progress.bar(int(match["total"]), f"training {stage}", "epoch")
        self.current.n = epoch
        self.current.set_postfix_str(match["rest"], refresh=True)

    def close_bar(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


class CountingObjects(ObjectDataset):
    """An object dataset whose image reads advance a bar (window cutting, evaluation)."""

    def __init__(self, data: ObjectDataset) -> None:
        super().__init__(
            data.images, data.class_names, root=data.root, threshold=data.threshold, key=data.key
        )
        self.ticker: Any = None

    def __getitem__(self, index: int) -> ObjectSample:
        sample = super().__getitem__(index)
        if self.ticker is not None:
            self.ticker.update(1)
            if self.ticker.total is not None and self.ticker.n >= self.ticker.total:
                self.ticker.close()
                self.ticker = None
        return sample

    @contextmanager
    def counting(self, bar: Any) -> Iterator[None]:
        """Advance `bar` on every image read inside the block."""
        self.ticker = bar
        try:
            yield
        finally:
            if self.ticker is not None:
                self.ticker.close()
            self.ticker = None
