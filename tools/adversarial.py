"""An adversarial pass over every ``hrp-sim`` command: hostile values for every flag, unknown and
abbreviated flags, and (``--scenarios``) signals, damaged resume files and two runs into one
folder. Each case is checked against the project's contract:

* refused: exit 2, exactly one line on stderr (``hrp-sim CMD: error: …``), nothing on stdout,
  nothing written (neither the output folder nor the JSON file exists afterwards);
* or accepted, and then only where ``ACCEPTED`` documents what that value means; with
  ``--run-accepted`` each accepted ``compare``/``sweep``/``verify`` case also runs for real, at a
  small size, and must exit 0 having written its summary;
* a scenario: exit 130/143 after a signal, with what was kept consistent; a damaged file refused
  by its content; a second run into a busy folder refused (exit 2, one line).

The flag cases run in this process, each stopped by a fuse where its first long loop starts
(the first progress bar raises ``Accepted``): every check, including those that read the
checkpoint or the data, has run by then, and nothing is written before it.

    python tools/adversarial.py                      # flag cases (about 1 minute)
    python tools/adversarial.py --run-accepted       # and run the accepted ones (minutes)
    python tools/adversarial.py --scenarios          # and the subprocess scenarios (minutes)
    python tools/adversarial.py --json report.json

Exit 0 when every case meets the contract, 1 otherwise (one line per failure).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Small sizes so that an accepted case that runs for real takes seconds.
SMALL = ["--m", "8", "--n", "6", "--r", "2", "--steps", "4", "--seeds", "2", "--quiet"]
SMALL += ["--preheat-rank", "4", "--preheat-steps", "2"]
BASE = {
    "compare": SMALL,
    "demo": ["--quiet"],
    "sweep": [*SMALL, "--vary", "lr=0.05,0.1"],
    "verify": ["--quick", "--checks", "aligned", "--quiet"],
    "real": ["--quiet"],
    "lora": ["--quiet"],
    "finetune": ["--quiet"],
    "convert": [],
    "fetch-data": [],
}
# The result file an accepted run must have written.
RESULT = {"compare": "summary.json", "sweep": "sweep.json", "verify": "verify.json"}
# The flag a sweep varies when the flag under test is --lr.
SWEEP_ALT = ["--vary", "steps=3,4"]

# Values no numeric flag may take.
NUMERIC_BAD = ["", " ", "nan", "inf", "-inf", "abc", "1e400", "0x10", "1,2", "--"]
# Values a numeric flag may refuse, or accept where ACCEPTED says what they mean.
NUMERIC_EDGE = ["0", "-1", "99999999999999999999", "1_000"]
INT_EDGE = ["1.5", "1e3"]
FLOAT_EDGE = ["1e-300", "-0.0"]
# Values no flag that names things (spectra, inits, optimizers, regexes, lists) may take.
NAME_BAD = ["", " ", "abc", "nan", "a,,b", ",", "1e400"]
# Path flags: "" and paths that cannot be written or read.
PATH_BAD = ["", "{file}/below", "/proc/version/x"]
READ_PATH_BAD = ["", "/nonexistent/x", "{file}", "{garbage_dir}"]

PATH_FLAGS = {"--out", "--json", "--export-peft"}
READ_FLAGS = {"--checkpoint", "--data", "--delta"}
NO_VALUE_SKIP = {"--help"}
# Flags whose value is free text by design (checked by what they connect to).
FREE_TEXT = {"--coordinator"}

# (command or "*", flag or "*", value) -> what the accepted value means. Anything accepted that is
# not here is a failure: a value slipped past validation. Every entry is met by the pass (the
# values the commands refuse have none).
ACCEPTED = {
    ("*", "--seed", "0"): "the default root seed",
    ("*", "--lanczos-steps", "0"): "documented: skip the curvature",
    ("*", "--curve-examples", "0"): "documented: every test example",
    ("*", "--weight-decay", "0"): "no weight decay (the default)",
    ("*", "--weight-decay", "-0.0"): "no weight decay",
    ("*", "--momentum", "0"): "plain GD (the default)",
    ("*", "--momentum", "-0.0"): "plain GD",
    ("*", "--noise", "0"): "noiseless targets (the default)",
    ("*", "--noise", "-0.0"): "noiseless targets",
    ("*", "--w0-align", "0"): "W0 unaligned (the default)",
    ("*", "--w0-align", "-0.0"): "W0 unaligned",
    ("*", "--target-loss", "1e-300"): "a loss no run reaches: reported as not reached",
    ("*", "--target-loss", "99999999999999999999"): "reached at step 0: reported as such",
    ("*", "*", "1_000"): "read as 1000 (Python's digit grouping, as int() and float() read it)",
    ("*", "--train-limit", "99999999999999999999"): "a cap above the split: the whole split",
    ("*", "--batch-size", "99999999999999999999"): "above --seeds: every seed in one batch",
    ("*", "--chunk-size", "99999999999999999999"): "above --seeds: one chunk",
}
# Any finite positive value is a legal setting of these; a run that diverges (too large a rate
# or scale) or barely moves (too small) is reported as such. --run-accepted runs each.
for _flag in ("--alpha", "--init-std", "--lr", "--preheat-lr", "--weight-decay", "--eps"):
    ACCEPTED[("*", _flag, "99999999999999999999")] = "a finite positive value"
for _flag in ("--scale", "--alpha", "--init-std", "--lr", "--preheat-lr", "--momentum"):
    ACCEPTED[("*", _flag, "1e-300")] = "a positive value, however small"
for _flag in ("--w0-align", "--w0-scale", "--weight-decay"):
    ACCEPTED[("*", _flag, "1e-300")] = "a non-negative value, however small"


class Accepted(Exception):
    """Raised by the fuse where the run would start: every check has passed."""


@dataclass
class Case:
    command: str
    argv: list[str]
    kind: str  # bad | edge | flag
    flag: str = ""
    value: str = ""
    outcome: str = ""  # refused | accepted | crashed
    ok: bool = False
    why: str = ""
    stderr: str = ""


@dataclass
class Report:
    cases: list[Case] = field(default_factory=list)
    scenarios: list[dict] = field(default_factory=list)

    def failures(self) -> list[str]:
        out = [f"{c.command} {' '.join(c.argv)}: {c.why}" for c in self.cases if not c.ok]
        out += [f"scenario {s['name']}: {s['why']}" for s in self.scenarios if not s["ok"]]
        return out


def parsers() -> dict:
    from hrp_theory.cli import build_parser

    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def flag_cases(commands=None) -> list[Case]:
    """Every (command, flag, hostile value), plus unknown, abbreviated and misused flags."""
    cases = []
    for cmd, p in parsers().items():
        if commands and cmd not in commands:
            continue
        base = BASE.get(cmd, [])
        for act in p._actions:
            if not act.option_strings or act.option_strings[0] in NO_VALUE_SKIP:
                continue
            flag = act.option_strings[0]
            if act.nargs == 0:  # store_true: a value is a mistake
                cases.append(Case(cmd, [*base, f"{flag}=1"], "flag", flag, "=1"))
                continue
            if flag in FREE_TEXT:
                continue
            if flag in PATH_FLAGS:
                values = [(v, "bad") for v in PATH_BAD]
            elif flag in READ_FLAGS:
                values = [(v, "bad") for v in READ_PATH_BAD]
            elif act.type in (int, float) or flag == "--preheat-steps":
                edge = NUMERIC_EDGE + (INT_EDGE if act.type is int else FLOAT_EDGE)
                values = [(v, "bad") for v in NUMERIC_BAD] + [(v, "edge") for v in edge]
            else:
                values = [(v, "bad") for v in NAME_BAD]
            for v, kind in values:
                b = base
                if cmd == "sweep" and flag == "--lr":
                    b = [*SMALL, *SWEEP_ALT]
                cases.append(Case(cmd, [*b, flag, v], kind, flag, v))
        for bad in (["--bogus"], ["--bogus=1"], ["positional"], ["-x"]):
            cases.append(Case(cmd, [*base, *bad], "flag", bad[0], ""))
        longs = [
            a.option_strings[0]
            for a in p._actions
            if a.option_strings and a.option_strings[0].startswith("--") and a.nargs != 0
        ]
        for flag in longs:  # abbreviations are refused (never a silent other flag)
            if len(flag) > 5 and not any(o != flag and o.startswith(flag[:-1]) for o in longs):
                cases.append(Case(cmd, [*base, flag[:-1], "1"], "flag", flag[:-1], "1"))
    seen, unique = set(), []
    for c in cases:
        key = (c.command, tuple(c.argv))
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def _accepted_reason(c: Case) -> str | None:
    for key in ((c.command, c.flag, c.value), ("*", c.flag, c.value), ("*", "*", c.value)):
        if key in ACCEPTED:
            return ACCEPTED[key]
    return None


@contextlib.contextmanager
def fuse():
    """Stop a run where its first long loop starts (the first progress bar is made, shown or
    not): every check of the input has passed by then, and nothing has been written."""
    import tqdm.auto

    real = tqdm.auto.tqdm

    def started(*args, **kw):
        raise Accepted

    tqdm.auto.tqdm = started  # the commands import it at the call (from tqdm.auto import tqdm)
    try:
        yield
    finally:
        tqdm.auto.tqdm = real


def run_case(c: Case, work: Path) -> Case:
    from hrp_theory import cli

    here = Path(tempfile.mkdtemp(prefix="case", dir=work))
    file = here / "a-file"
    file.write_text("not a folder")
    garbage = here / "garbage"
    garbage.mkdir()
    (garbage / "config.json").write_text("{not json")
    (garbage / "flax_model.msgpack").write_bytes(os.urandom(64))
    out = here / "out"
    argv = [
        a.format(file=file, garbage_dir=garbage) if "{" in a and "}" in a else a for a in c.argv
    ]
    if "--out" not in c.argv:
        argv += ["--out", str(out)]
    before = set(here.iterdir())
    err, std = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(here)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
            try:
                rc = cli.main([c.command, *argv])
            except SystemExit as e:  # argparse
                rc = e.code if isinstance(e.code, int) else 2
            except Accepted:
                rc = None
    except Exception as e:  # a traceback is never the contract
        c.outcome, c.why = "crashed", f"{type(e).__name__}: {e}"
        return c
    finally:
        os.chdir(cwd)
    c.stderr = err.getvalue().strip()
    lines = c.stderr.splitlines()
    written = sorted(str(p.name) for p in set(here.iterdir()) - before)
    if rc is None:
        c.outcome = "accepted"
        reason = _accepted_reason(c)
        c.ok = c.kind == "edge" and reason is not None
        c.why = "" if c.ok else "accepted: a value no check refused"
        return c
    c.outcome = "refused" if rc == 2 else f"exit {rc}"
    problems = []
    if rc != 2:
        problems.append(f"exit {rc}")
    if len(lines) != 1 or not lines[0].startswith(f"hrp-sim {c.command}: error:"):
        problems.append(f"stderr is not one error line: {lines[:3]}")
    if std.getvalue().strip():
        problems.append("printed on stdout")
    if written:
        problems.append(f"wrote {written}")
    c.ok, c.why = not problems, "; ".join(problems)
    return c


def available(command: str) -> str | None:
    """Why a command cannot be exercised here (its extra or data absent), else None."""
    import importlib.util

    if command in ("real", "lora", "finetune", "convert"):
        if importlib.util.find_spec("flax") is None:
            return 'the real extra is absent (pip install -e ".[real]")'
        from hrp_theory.models import checkpoints

        try:
            checkpoints.minilm_path()
        except Exception as e:
            return f"MiniLM absent: {e}"
    return None


def run_flag_cases(commands=None, progress=True) -> tuple[list[Case], dict]:
    skipped = {}
    cases = []
    for c in flag_cases(commands):
        why = available(c.command)
        if why:
            skipped.setdefault(c.command, why)
            continue
        cases.append(c)
    with tempfile.TemporaryDirectory() as tmp, fuse():
        for i, c in enumerate(cases):
            run_case(c, Path(tmp))
            if progress and (i + 1) % 100 == 0:
                print(f"  {i + 1}/{len(cases)} flag cases", file=sys.stderr)
    return cases, skipped


def run_accepted(cases: list[Case], timeout: float = 300) -> list[Case]:
    """Run every accepted compare/sweep/verify case for real (small sizes): exit 0, summary."""
    import subprocess

    done = []
    for c in cases:
        if c.outcome != "accepted" or c.command not in ("compare", "sweep", "verify"):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            cmd = [sys.executable, "-m", "hrp_theory.cli", c.command, *c.argv]
            cmd += ["--out", str(out), "--no-figures"]
            t0 = time.time()
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp)
                rc, err = r.returncode, r.stderr
            except subprocess.TimeoutExpired:
                rc, err = None, f"still running after {timeout:.0f} s"
            summary = out / RESULT[c.command]
            ran = Case(c.command, c.argv, "run", c.flag, c.value, outcome=f"ran: exit {rc}")
            ran.ok = rc == 0 and summary.exists()
            ran.why = "" if ran.ok else f"exit {rc}, summary {summary.exists()}: {err[-300:]}"
            ran.stderr = f"{time.time() - t0:.1f} s"
            done.append(ran)
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commands", help="comma list (default: every command)")
    ap.add_argument("--run-accepted", action="store_true", help="run accepted cases for real")
    ap.add_argument("--scenarios", action="store_true", help="signals, damaged files, busy folder")
    ap.add_argument("--json", type=Path, help="write every case and its outcome here")
    args = ap.parse_args(argv)
    commands = set(args.commands.split(",")) if args.commands else None
    t0 = time.time()
    report = Report()
    report.cases, skipped = run_flag_cases(commands)
    if args.run_accepted:
        report.cases += run_accepted(report.cases)
    if args.scenarios:
        import adversarial_scenarios

        report.scenarios = adversarial_scenarios.run_all(progress=True)
    by = {}
    for c in report.cases:
        k = (c.command, c.outcome.split(":")[0])
        by[k] = by.get(k, 0) + 1
    for cmd in sorted({c.command for c in report.cases}):
        parts = [f"{o} {n}" for (c2, o), n in sorted(by.items()) if c2 == cmd]
        print(f"{cmd:>10}: " + ", ".join(parts))
    for cmd, why in skipped.items():
        print(f"{cmd:>10}: skipped ({why})")
    n_ok = sum(c.ok for c in report.cases) + sum(s["ok"] for s in report.scenarios)
    n = len(report.cases) + len(report.scenarios)
    print(f"{n_ok}/{n} cases meet the contract ({time.time() - t0:.0f} s)")
    bad = report.failures()
    for line in bad:
        print(line, file=sys.stderr)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cases": [c.__dict__ for c in report.cases],
                    "scenarios": report.scenarios,
                    "skipped": skipped,
                    "meet_contract": n_ok,
                    "total": n,
                },
                indent=1,
            )
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
