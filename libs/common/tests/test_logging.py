"""Logging never holds up the event loop (issue #16, items 4 and 5): a stdout nobody reads
drops lines instead of blocking, and aiokafka's repeats during an outage are rate-limited."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import threading
from collections.abc import Iterator

import pytest

from quimbi_common import observability
from quimbi_common.observability import RateLimitFilter, configure_logging

pytestmark = pytest.mark.unit


@contextlib.contextmanager
def stdout_nobody_reads() -> Iterator[None]:
    """sys.stdout on a pipe whose buffer is already full, like a stalled log collector."""
    read_end, write_end = os.pipe()
    flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"x" * 65536)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags)  # blocking again, as stdout is
    original = sys.stdout
    sys.stdout = os.fdopen(write_end, "w", buffering=1)
    try:
        yield
    finally:
        stream, sys.stdout = sys.stdout, original
        logging.getLogger().handlers[:] = []
        listener = observability._listener
        assert listener is not None
        with open(os.devnull, "w") as devnull:
            raising, logging.raiseExceptions = logging.raiseExceptions, False
            os.close(read_end)  # the writer's stuck write fails, and it drains into devnull
            with contextlib.suppress(OSError):  # flushing the old stream: the pipe is gone
                listener.handlers[0].setStream(devnull)  # type: ignore[attr-defined]
            observability._stop_listener()
            logging.raiseExceptions = raising
        with contextlib.suppress(OSError):
            stream.close()


def test_a_stalled_stdout_does_not_block_the_code_that_logs() -> None:
    finished = threading.Event()

    def log_a_lot() -> None:
        for i in range(30_000):
            logging.getLogger("quimbi.test").warning("line %d", i)
        finished.set()

    with stdout_nobody_reads():
        configure_logging("probe")
        worker = threading.Thread(target=log_a_lot, daemon=True)
        worker.start()
        worker.join(timeout=20)
        assert finished.is_set(), "logging blocked on a stdout nobody reads"
    assert observability.DroppingQueueHandler.dropped > 0


def test_aiokafka_repeats_pass_once_per_interval_with_a_count() -> None:
    limiter = RateLimitFilter(("aiokafka",), interval=3600)

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, ("node 1",), None)

    passed = [limiter.filter(record("aiokafka.conn", "Unable connect to %s")) for _ in range(500)]
    assert passed.count(True) == 1
    assert not limiter.filter(record("aiokafka.cluster", "Unable to update metadata from %s"))
    assert limiter.filter(record("quimbi_common.outbox", "anything")) is True
    limiter.interval = 0
    again = record("aiokafka.conn", "Unable connect to %s")
    assert limiter.filter(again)
    assert "500 alike suppressed" in again.getMessage()
