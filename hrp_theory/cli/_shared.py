"""What every ``hrp-sim`` command shares: the parser class, flags declared once (``Flag``),
the shared flag groups (``parents=``), the output guard and the interrupt messages."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import interrupts
from ..results import LOCK, OutputFolder, check_output_dir, check_output_file


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2), like the validation errors, and no
    abbreviated flags (``--preheat-r`` is not ``--preheat-rank``)."""

    def __init__(self, *args, **kw):
        kw.setdefault("allow_abbrev", False)
        super().__init__(*args, **kw)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@dataclasses.dataclass(frozen=True)
class Flag:
    """A command-line flag declared once: its name, where its value goes in a config
    (``target``, a dotted path; empty for a flag of the run itself), its type and help. The
    default is read from the config's dataclass (``default_of``) unless ``default`` is given."""

    name: str
    target: str = ""
    type: Callable | None = None
    help: str = ""
    default: Any = None
    action: str | None = None
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")

    def add(self, group, default=None) -> None:
        kw: dict[str, Any] = {"help": self.help, "dest": self.dest}
        if self.action:
            kw["action"] = self.action
        else:
            kw["type"] = self.type
            kw["default"] = default
            if self.metavar:
                kw["metavar"] = self.metavar
        group.add_argument(self.name, **kw)


def default_of(config, path: str) -> Any:
    """The value at ``path`` ("problem.m") of a config instance (its dataclass default)."""
    value = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


def explicit(argv, flags) -> set[str]:
    """The dests of ``flags`` given on the command line ``argv`` (abbreviations are off, so a
    flag appears under its own name, as ``--name`` or ``--name=value``)."""
    names = {f.name: f.dest for f in flags}
    return {names[a.split("=", 1)[0]] for a in argv if a.split("=", 1)[0] in names}


# --- shared flag groups (argparse parents) -------------------------------------------------------

SEED = Flag("--seed", "seed", int, "root seed, an integer in [0, 2^64 - 1] (default %(default)s)")


def seed_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    SEED.add(p, 0)
    return p


def quiet_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def output_parent(out: str, what: str = "results") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    g = p.add_argument_group("output")
    g.add_argument(
        "--out",
        default=out,
        help="output folder (default %(default)s); one run at a time may write there",
    )
    g.add_argument("--json", default=None, help=f"also write the {what} JSON to this file")
    g.add_argument("--no-figures", action="store_true", help="write no PNG figures")
    return p


# --- outputs ------------------------------------------------------------------------------------


def check_outputs(a: argparse.Namespace) -> None:
    """Every output of a run must be writable before it starts (``ValueError`` otherwise)."""
    check_output_dir(a.out, "out")
    if getattr(a, "json", None) is not None:
        check_output_file(a.json, "json")


def guarded(
    a: argparse.Namespace, run: Callable[[], int], command: str, primary: bool = True
) -> int:
    """Run ``run()`` holding the output folder ``a.out`` (exclusive lock; see
    ``results.OutputFolder``), and say what exists when an interrupt stops it."""
    check_outputs(a)
    if not primary:  # another process of a multi-host run writes
        return run()
    t0 = time.time()
    with OutputFolder(a.out):
        try:
            return run()
        except KeyboardInterrupt:
            print(
                f"hrp-sim {command}: interrupted ({_signal_name()}) "
                + what_exists(a.out, t0, getattr(a, "json", None)),
                file=sys.stderr,
            )
            return interrupts.exit_code()


def _signal_name() -> str:
    import signal

    sig = interrupts.received()
    return signal.Signals(sig).name if sig else "SIGINT"


def what_exists(out, since: float, json_path=None) -> str:
    """A sentence on the files this run wrote (modified since ``since``) and those it left as
    they were."""
    out = Path(out)
    paths = (
        [
            p
            for p in out.rglob("*")
            if p.is_file()
            and p.name != LOCK
            and not any(part.startswith(".") for part in p.relative_to(out).parts)
        ]
        if out.is_dir()
        else []
    )
    if json_path is not None and Path(json_path).is_file():
        paths.append(Path(json_path))
    new = sorted(str(p) for p in paths if p.stat().st_mtime >= since)
    old = sorted(str(p) for p in paths if p.stat().st_mtime < since)
    if not new:
        return "before any result was written; nothing written" + (
            f" ({len(old)} file(s) from an earlier run are untouched)" if old else ""
        )
    return f"after writing {', '.join(new)}" + (
        f"; left from an earlier run: {', '.join(old)}" if old else ""
    )


def report_written(paths: dict, deferred_signal) -> int:
    """Print the files written; after a signal deferred during the writes, say so and return
    its exit code (else 0)."""
    for k, v in paths.items():
        print(f"{k:>16}: {v}")
    if deferred_signal is not None:
        import signal

        print(
            f"hrp-sim: {signal.Signals(deferred_signal).name} arrived while writing; every file "
            "above was completed first",
            file=sys.stderr,
        )
        return 128 + int(deferred_signal)
    return 0
