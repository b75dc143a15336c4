"""Progress lines of the preparation stage wait until it succeeds.

Bad input found while loading the data (a malformed file, a class the data lacks, k larger
than the training set) must end with the one error line alone, not after a few progress
lines. The terminal's log handlers are therefore held back while a run prepares; run.log
still gets every line. Long preparation (a large image folder) is not kept silent: after
``patience`` seconds the held lines and everything after them stream as usual.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from logging.handlers import MemoryHandler

from anomaly_bench.errors import ConfigError

PATIENCE_S = 10.0


class _HeldBack(MemoryHandler):
    """Buffers records for one terminal handler until ``deadline``, then passes them through."""

    def __init__(self, target: logging.Handler, deadline: float) -> None:
        super().__init__(capacity=100_000, flushLevel=logging.CRITICAL + 1, target=target, flushOnClose=False)
        self.deadline = deadline

    def shouldFlush(self, record: logging.LogRecord) -> bool:
        return time.monotonic() >= self.deadline or len(self.buffer) >= self.capacity


def _terminal_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [
        h for h in logger.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]


@contextlib.contextmanager
def held_progress(patience: float = PATIENCE_S) -> Iterator[None]:
    """Hold the terminal's log lines back; drop them if bad input (ConfigError) ends the block."""
    root = logging.getLogger()
    deadline = time.monotonic() + patience
    swapped = [(handler, _HeldBack(handler, deadline)) for handler in _terminal_handlers(root)]
    for handler, held in swapped:
        root.removeHandler(handler)
        root.addHandler(held)
    bad_input = False
    try:
        yield
    except ConfigError:
        bad_input = True
        raise
    finally:
        for handler, held in swapped:
            if bad_input:
                held.buffer.clear()
            held.flush()
            root.removeHandler(held)
            root.addHandler(handler)
