"""Progress of the long steps on stderr: tqdm bars on a terminal, plain periodic lines when
stderr is a file or a pipe (a log), silenced by `--quiet`; and the list of outputs a step wrote."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

from tqdm.auto import tqdm

from s3fn.data.datasets import ObjectDataset, ObjectSample

T = TypeVar("T")
_EPOCH = re.compile(r"^\[(?P<stage>\w+)\] epoch (?P<epoch>\d+)/(?P<total>\d+)\s+(?P<rest>.*)$")


class Progress:
    """Makes the bars of one command; with `quiet`, none is shown. `lines` (default: when
    stderr is not a terminal) prints a plain line every `interval` seconds instead of a bar,
    since a bar's carriage returns turn a log file into noise."""

    def __init__(
        self, quiet: bool = False, *, lines: bool | None = None, interval: float = 30.0
    ) -> None:
        self.quiet = quiet
        self.lines = not sys.stderr.isatty() if lines is None else lines
        self.interval = interval

    def bar(self, total: int | None = None, desc: str = "", unit: str = "it") -> Any:
        """A bar (or line printer) to `update()` by hand."""
        if self.lines and not self.quiet:
            return LineProgress(total, desc, unit, self.interval)
        return tqdm(total=total, desc=desc, unit=unit, disable=self.quiet, leave=False)

    def each(
        self, items: Iterable[T], desc: str, unit: str = "it", total: int | None = None
    ) -> Iterator[T]:
        """`items`, with a bar."""
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        bar = self.bar(total, desc, unit)
        try:
            for item in items:
                yield item
                bar.update(1)
        finally:
            bar.close()

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


class LineProgress:
    """The part of tqdm's interface the commands use, printed as plain lines: one at most every
    `interval` seconds, and one when done (`desc: 12/40 tiles (30%), 1m05s, ~2m32s left`)."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        interval: float,
        stream: TextIO | None = None,
    ) -> None:
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.stream = stream if stream is not None else sys.stderr
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.closed = False

    def update(self, n: int = 1) -> None:
        """Advance by `n`; print a line if `interval` has passed since the last."""
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._print(now)

    def set_description(self, desc: str, refresh: bool = True) -> None:
        """Rename the step the lines report (e.g. from loading a model to using it)."""
        self.desc = desc

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        """Text shown after the count (e.g. the last epoch's losses)."""
        self.postfix = text
        self.update(0)

    def close(self) -> None:
        """Print the final line once."""
        if not self.closed:
            self.closed = True
            self._print(time.monotonic())

    def _print(self, now: float) -> None:
        elapsed = now - self.start
        count = f"{self.n} {self.unit}"
        if self.total:
            count = f"{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%)"
        line = f"{self.desc}: {count}, {_duration(elapsed)}"
        if self.total and 0 < self.n < self.total:
            line += f", ~{_duration(elapsed * (self.total - self.n) / self.n)} left"
        if self.postfix:
            line += f"  {self.postfix}"
        print(line, file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


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


def print_outputs(title: str, paths: Iterable[str | os.PathLike]) -> None:
    """`title`, then one indented line per output path."""
    print(title)
    for path in paths:
        print(f"  {Path(path)}")
