"""Ctrl-C and SIGTERM: both stop a run and keep what finished; neither cuts a write in half.

``catch()`` (the entry points call it) turns SIGTERM into ``KeyboardInterrupt`` as Ctrl-C is, so
the seed engine keeps the chunks already finished either way, and remembers which signal came
(``exit_code``: 130 for SIGINT, 143 for SIGTERM). Inside ``deferred()`` (the results being
written) a signal is only recorded: the writes finish, each one atomic, and the caller reports
and exits afterwards. A second signal there interrupts at once; every file is then either
complete or still the previous version.

**A signal is never ignored.** Python runs a signal handler only when the main thread is back in
the interpreter; a thread stuck inside one compiled XLA call (LAPACK spinning on a matrix with an
``inf`` was one) would never get there. So ``catch()`` also points ``signal.set_wakeup_fd`` at a
pipe that a watchdog thread reads: if the handler has not run ``GRACE_S`` seconds after a
signal arrived, the watchdog says so and leaves the process with ``os._exit(128 + signal)``.
Every file the run wrote is complete by then (each write is atomic), so nothing half-written is
left. Two places where Python cannot raise the handler's exception get the signal again a moment
later instead: inside an ``import`` (a ``KeyboardInterrupt`` there broke jaxlib's extension
modules: abort, SIGSEGV) and inside a garbage-collection callback (JAX registers one; the
exception was printed and the run went on). ``leave(code)`` is the same hard exit for the
command-line entry after an interrupt: the interpreter's teardown waits for XLA's threads, which
may still be busy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

_state = {"signal": None, "deferring": False, "pending": None, "handled": 0}
#: Seconds the watchdog waits for the Python handler before it ends the process itself.
GRACE_S = 10.0


def _handler(signum, frame):
    _state["signal"] = signum
    _state["handled"] += 1
    if _state["deferring"] and _state["pending"] is None:
        _state["pending"] = signum  # finish the writes first
        return
    if _importing(frame):  # raising inside an import can break a C extension's set-up
        _deliver_again(signum)
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _importing(frame) -> bool:
    """Whether the interrupted code runs inside an ``import`` (Python's import machinery is on
    the stack). A ``KeyboardInterrupt`` raised while jaxlib's extension modules initialise was
    seen to abort the process (``nanobind::python_error``), crash it (SIGSEGV) or surface as
    another exception; the signal waits until the import is done instead."""
    depth = 0
    while frame is not None and depth < 500:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame, depth = frame.f_back, depth + 1
    return False


def _deliver_again(signum: int, after_s: float = 0.02) -> None:
    """Send ``signum`` to this process again a moment later (from a timer thread)."""
    timer = threading.Timer(after_s, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()


@contextlib.contextmanager
def catch():
    """While the block runs, handle SIGINT and SIGTERM as interrupts (main thread only;
    elsewhere a no-op); the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state["signal"] = None
    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _redeliver(previous_hook)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    stop = threading.Event()
    watchdog = threading.Thread(target=_watch, args=(read_fd, stop), daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old_fd)
        sys.unraisablehook = previous_hook
        stop.set()
        os.close(write_fd)  # the watchdog's read returns b"" and it ends
        watchdog.join(timeout=1.0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _redeliver(previous):
    """An ``unraisablehook``: when the handler's ``KeyboardInterrupt`` was raised where Python
    can only print it (a garbage-collection callback, as JAX registers, or a ``__del__``), send
    the signal again a moment later so that it lands in the program; other reports go on to the
    previous hook. Without it, a signal while JAX starts was printed and the run went on."""

    def hook(unraisable):
        sig = _state["signal"]
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and sig is not None:
            _deliver_again(sig)
            return
        previous(unraisable)

    return hook


def _watch(read_fd: int, stop: threading.Event) -> None:
    """Read the signals the C-level handler wrote; end the process if the Python handler does
    not run within ``GRACE_S`` (the main thread is stuck inside compiled code)."""
    seen = _state["handled"]
    try:
        while not stop.is_set():
            data = os.read(read_fd, 64)
            if not data:
                return
            for signum in data:
                if signum not in (signal.SIGINT, signal.SIGTERM):
                    continue  # another handler's signal
                seen += 1
                deadline = time.monotonic() + GRACE_S
                while _state["handled"] < seen and time.monotonic() < deadline:
                    if stop.wait(0.05):
                        return
                if _state["handled"] < seen and not stop.is_set():
                    name = signal.Signals(signum).name
                    sys.stderr.write(
                        f"hrp-sim: {name} not handled after {GRACE_S:g} s (stuck inside a "
                        "compiled computation); leaving now. Every file on disk is complete.\n"
                    )
                    leave(128 + signum)
    finally:
        os.close(read_fd)


def leave(code: int) -> None:
    """End the process now with ``code``, flushing the standard streams, without interpreter
    teardown (which would wait for XLA's worker threads)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


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


def stop_if_signalled() -> None:
    """Raise ``KeyboardInterrupt`` if SIGINT/SIGTERM arrived: the handler's own exception is lost
    when the signal lands inside a garbage-collection callback (JAX registers one), so long loops
    also check the recorded signal."""
    if received() is not None:
        raise KeyboardInterrupt
