"""The one progress display (tqdm) for long work: estimates, training runs, benchmarks.

On a terminal it is tqdm's bar, redrawn in place. When stderr is not a terminal (a log file, a
pipe, CI) the bar becomes one plain line every ``log_interval`` seconds: a long piped job shows
that it is alive, a short one prints nothing, and the log holds no carriage returns.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["progress"]


class _Lines:
    """Writes tqdm's in-place refreshes as lines, at most one per ``interval`` seconds."""

    def __init__(self, stream: TextIO, interval: float) -> None:
        self.stream, self.interval = stream, interval
        self.last = time.monotonic()

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip("\n")
        now = time.monotonic()
        if line.strip() and now - self.last >= self.interval:
            self.stream.write(line + "\n")
            self.last = now

    def flush(self) -> None:
        self.stream.flush()


def progress(
    total: int, desc: str, enabled: bool = True, log_interval: float = 30.0, **kwargs: Any
) -> tqdm:
    """A tqdm bar on stderr over ``total`` units (disabled when ``enabled`` is false)."""
    stream = sys.stderr
    if stream.isatty():
        return tqdm(total=total, desc=desc, disable=not enabled, file=stream, **kwargs)
    return tqdm(
        total=total,
        desc=desc,
        disable=not enabled,
        file=_Lines(stream, log_interval),
        mininterval=log_interval,
        maxinterval=log_interval,
        dynamic_ncols=False,
        ncols=100,
        **kwargs,
    )
