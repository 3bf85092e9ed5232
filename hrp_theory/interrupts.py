"""Ctrl-C and SIGTERM: both stop a run and keep what finished; neither cuts a write in half.

``catch()`` (the entry points call it) turns SIGTERM into ``KeyboardInterrupt`` as Ctrl-C is, so
the seed engine keeps the chunks already finished either way, and remembers which signal came
(``exit_code``: 130 for SIGINT, 143 for SIGTERM). Inside ``deferred()`` (the results being
written) a signal is only recorded: the writes finish, each one atomic, and the caller reports
and exits afterwards. A second signal there interrupts at once; every file is then either
complete or still the previous version.
"""

from __future__ import annotations

import contextlib
import signal
import threading

_state = {"signal": None, "deferring": False, "pending": None}


def _handler(signum, frame):
    _state["signal"] = signum
    if _state["deferring"] and _state["pending"] is None:
        _state["pending"] = signum  # finish the writes first
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def catch():
    """While the block runs, handle SIGINT and SIGTERM as interrupts (main thread only;
    elsewhere a no-op); the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state["signal"] = None
    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def received() -> int | None:
    """The last signal received (``signal.SIGINT`` / ``SIGTERM``), or None."""
    return _state["signal"]


def exit_code() -> int:
    """128 + the signal number: 130 after Ctrl-C (or a plain KeyboardInterrupt), 143 after
    SIGTERM."""
    return 128 + int(_state["signal"] or signal.SIGINT)


@contextlib.contextmanager
def deferred():
    """Record SIGINT/SIGTERM instead of raising while the block runs; yields a dict whose
    ``"signal"`` is the deferred signal (or None) once the block is done."""
    out = {"signal": None}
    _state["deferring"], _state["pending"] = True, None
    try:
        yield out
    finally:
        out["signal"] = _state["pending"]
        _state["deferring"], _state["pending"] = False, None
