"""The process-level half of the adversarial pass (``tools/adversarial.py --scenarios``): each
command in its own process, stopped by SIGINT or SIGTERM at start, mid-run and after its last
write; damaged resume files; two runs into one folder. Each scenario states its contract and
returns ``{"name", "ok", "why", "seconds"}``.

The contract, from the README: a signal gives exit 130 (SIGINT) or 143 (SIGTERM) and one line
saying what was kept; what was kept is consistent (the summary and the per-seed arrays share a
run id and a seed count); a rerun resumes from it; a damaged saved file is run again, never
trusted by its name; a second run into a busy folder exits 2 with one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CODE = {signal.SIGINT: 130, signal.SIGTERM: 143}
# A compare run long enough to stop mid-way: many small chunks of seeds.
LONG_COMPARE = ["compare", "--m", "32", "--n", "32", "--steps", "400", "--seeds", "4096"]
LONG_COMPARE += ["--chunk-size", "16", "--no-figures"]
SMALL = ["--m", "8", "--n", "6", "--r", "2", "--steps", "4", "--seeds", "2", "--quiet"]
SMALL += ["--preheat-rank", "4", "--preheat-steps", "2", "--no-figures"]


def _start(args, cwd) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    return subprocess.Popen(
        [sys.executable, "-m", "hrp_theory.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(cond, proc, timeout=300.0) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return cond()
        time.sleep(0.05)
    return False


def seeds_done(proc, at_least: int, timeout: float = 300.0) -> bool:
    """Read the progress bar (stderr, carriage returns) until ``at_least`` seeds are done."""
    buf, t0 = "", time.time()
    while time.time() - t0 < timeout:
        ch = proc.stderr.read(1) if proc.stderr else ""
        if not ch:
            return False
        buf = (buf + ch)[-400:]
        if ch in "\r\n" or ch == "|":
            for part in buf.replace("\r", "\n").split("\n")[-3:]:
                if "seed" in part and "/" in part:
                    try:
                        done = int(part.split("|")[-1].split("/")[0].strip().split()[-1])
                    except (ValueError, IndexError):
                        continue
                    if done >= at_least:
                        return True
    return False


def _finish(proc, timeout=240.0) -> tuple[int | None, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:  # a hang: the contract is broken
        proc.kill()
        out, err = proc.communicate()
        return None, out, err


def _one_line(err: str) -> bool:
    return len([ln for ln in err.strip().splitlines() if ln.strip()]) == 1


def _kept_is_consistent(out: Path) -> str:
    """'' when a stopped compare kept nothing or a consistent summary + per-seed pair."""
    s, p = out / "summary.json", out / "per_seed.npz"
    if not s.exists() and not p.exists():
        return ""
    if not (s.exists() and p.exists()):
        return f"half a pair kept: summary {s.exists()}, per_seed {p.exists()}"
    summary = json.loads(s.read_text())
    with np.load(p, allow_pickle=False) as z:
        rid = str(z["run_id"]) if "run_id" in z.files else None
        n = z["kaiming/final_loss"].shape[0] if "kaiming/final_loss" in z.files else None
    if rid != summary.get("run_id"):
        return "summary and per-seed arrays from different runs"
    if n != summary.get("seeds_done", n):
        return f"per-seed arrays hold {n} seeds, the summary says {summary.get('seeds_done')}"
    return ""


# --- scenarios ----------------------------------------------------------------------------------


def signal_at_start(command: list[str], sig: int, name: str, delay: float):
    """The signal ``delay`` s after launch: while Python imports, JAX starts or compiles."""

    def run(tmp: Path):
        out = tmp / "out"
        proc = _start([*command, "--out", str(out)], tmp)
        time.sleep(delay)
        if proc.poll() is not None:  # finished first: then it must have finished cleanly
            rc, _, err = _finish(proc)
            return "" if rc == 0 else f"finished before the signal with exit {rc}: {err[-300:]}"
        proc.send_signal(sig)
        rc, _, err = _finish(proc)
        if rc != CODE[sig]:
            return f"exit {rc}, not {CODE[sig]}: {err[-300:]}"
        lines = [ln for ln in err.strip().splitlines() if "interrupted" in ln or "error" in ln]
        if "Traceback" in err or "Exception ignored" in err or not lines:
            return f"no line says what was kept, or a traceback: {err[-300:]}"
        return _kept_is_consistent(out) if command[0] == "compare" else ""

    return (f"{name} {signal.Signals(sig).name} {delay:g} s after start", run)


def compare_signal_mid_run(sig: int):
    def run(tmp: Path):
        out = tmp / "out"
        proc = _start([*LONG_COMPARE, "--out", str(out)], tmp)
        if not seeds_done(proc, 32):
            proc.kill()
            return "no progress before the signal"
        time.sleep(1.0)
        proc.send_signal(sig)
        rc, _, err = _finish(proc)
        if rc != CODE[sig]:
            return f"exit {rc}, not {CODE[sig]}: {err[-300:]}"
        if "interrupted" not in err:
            return "no line says what was kept"
        why = _kept_is_consistent(out)
        if why:
            return why
        summary = json.loads((out / "summary.json").read_text())
        if not summary.get("interrupted") or not 0 < summary["seeds_done"] < 4096:
            return f"summary does not say it stopped part-way: {summary.get('seeds_done')}"
        return ""

    return (f"compare {signal.Signals(sig).name} mid-run keeps finished seeds", run)


def signal_after_last_write(sig: int):
    def run(tmp: Path):
        out = tmp / "out"
        proc = _start(["compare", *SMALL, "--out", str(out)], tmp)
        table = out / "table.txt"
        _wait_for(lambda: (out / "summary.json").exists() and table.exists(), proc, 300)
        proc.send_signal(sig)
        rc, _, err = _finish(proc)
        if rc not in (0, CODE[sig]):
            return f"exit {rc}: {err[-300:]}"
        if rc == CODE[sig] and "nothing was lost" not in err and "interrupted" not in err:
            return f"exit {rc} without saying what was kept: {err[-300:]}"
        why = _kept_is_consistent(out)
        if why:
            return why
        json.loads((out / "summary.json").read_text())  # complete
        return ""

    return (f"compare {signal.Signals(sig).name} after the last write", run)


def sweep_signal_then_resume():
    def run(tmp: Path):
        out = tmp / "out"
        args = ["sweep", "--m", "32", "--n", "32", "--steps", "400", "--seeds", "64"]
        args += [
            "--chunk-size",
            "16",
            "--no-figures",
            "--vary",
            "lr=0.05,0.1,0.2",
            "--out",
            str(out),
        ]
        proc = _start(args, tmp)
        first = out / "points" / "point-000.json"
        _wait_for(first.exists, proc, 300)
        proc.send_signal(signal.SIGINT)
        rc, _, err = _finish(proc)
        if rc != 130:
            return f"exit {rc}, not 130: {err[-300:]}"
        if not first.exists():
            return "the finished point was not kept"
        rc, stdout, err = _finish(_start(args, tmp))
        if rc != 0 or "kept from" not in stdout:
            return f"resume: exit {rc}, reused: {'kept from' in stdout}: {err[-300:]}"
        return ""

    return ("sweep SIGINT after a point, then resume", run)


def sweep_damaged_point(damage: str):
    def run(tmp: Path):
        out = tmp / "out"
        args = ["sweep", *SMALL, "--vary", "lr=0.05,0.1", "--out", str(out)]
        rc, _, err = _finish(_start(args, tmp))
        if rc != 0:
            return f"first run: exit {rc}: {err[-300:]}"
        point = out / "points" / "point-000.json"
        _damage(point, damage)
        rc, stdout, err = _finish(_start([a for a in args if a != "--quiet"], tmp))
        if rc != 0:
            return f"rerun: exit {rc}: {err[-300:]}"
        if "point 1/2 {'lr': 0.05}: kept" in stdout:
            return "the damaged point was trusted"
        json.loads(point.read_text())
        return ""

    return (f"sweep point file {damage}: run again", run)


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "random bytes":
        path.write_bytes(os.urandom(len(data)))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "wrong shapes":  # a valid npz with the right key and one seed too few
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: (z[k][:-1] if z[k].ndim and k != "run_key" else z[k]) for k in z.files}
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    elif how == "not a zip":
        path.write_text("PK not really a zip")
    else:
        raise ValueError(how)


def busy_folder():
    def run(tmp: Path):
        out = tmp / "out"
        a = _start([*LONG_COMPARE, "--out", str(out)], tmp)
        try:
            if not _wait_for((out / ".hrp-sim.lock").exists, a, 300):
                return "the first run never took the folder"
            rc, _, err = _finish(_start(["compare", *SMALL, "--out", str(out)], tmp))
            if rc != 2 or not _one_line(err) or "busy" not in err and "another" not in err:
                return f"second run: exit {rc}: {err[-300:]}"
        finally:
            a.send_signal(signal.SIGTERM)
            rc_a, _, _ = _finish(a)
        if rc_a != 143:
            return f"first run after SIGTERM: exit {rc_a}"
        return _kept_is_consistent(out)

    return ("two compare runs into one folder", run)


def lora_scenarios() -> list:
    """On the tiny random BERT of the tests: damaged run files are run again; SIGTERM keeps
    finished runs. Skipped (empty) without the real extra or MiniLM's tokenizer."""
    import importlib.util

    if importlib.util.find_spec("flax") is None:
        return []
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from helpers import tiny_lora_bert
    except Exception:
        return []

    base = ["lora", "--inits", "kaiming", "--r", "2", "--alpha", "4", "--preheat-rank", "4"]
    base += ["--steps", "3", "--seeds", "2", "--batch-size", "8", "--max-tokens", "16"]
    base += ["--lanczos-steps", "0", "--curve-examples", "32", "--no-figures"]

    def damaged(how):
        def run(tmp: Path):
            try:
                ckpt = tiny_lora_bert(_mkdir(tmp / "tiny"))
            except Exception as e:  # MiniLM's tokenizer absent
                return f"skip: {e}"
            out = tmp / "out"
            args = [*base, "--checkpoint", str(ckpt), "--out", str(out)]
            rc, _, err = _finish(_start(args, tmp), timeout=600)
            if rc != 0:
                return f"first run: exit {rc}: {err[-300:]}"
            run_file = out / "runs" / "kaiming@classic@lr=0.0005.npz"
            _damage(run_file, how)
            rc, _, err = _finish(_start(args, tmp), timeout=600)
            if rc != 0:
                return f"rerun: exit {rc}: {err[-300:]}"
            if "reused kaiming" in err:
                return "the damaged run was reused"
            summary = json.loads((out / "summary.json").read_text())
            if summary["meta"]["reused_runs"]:
                return f"summary says reused: {summary['meta']['reused_runs']}"
            with np.load(run_file, allow_pickle=False) as z:
                zipfile.ZipFile(run_file).testzip()
                if "run_key" not in z.files:
                    return "the rerun left no valid file"
            return ""

        return (f"lora run file {how}: run again", run)

    return [damaged(h) for h in ("truncated", "random bytes", "empty", "wrong shapes")]


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def scenarios() -> list:
    out = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        for delay in (0.3, 1.0, 2.5):
            out.append(signal_at_start(["compare", *SMALL], sig, "compare", delay))
            out.append(
                signal_at_start(["sweep", *SMALL, "--vary", "lr=0.05,0.1"], sig, "sweep", delay)
            )
            out.append(
                signal_at_start(["verify", "--quick", "--checks", "aligned"], sig, "verify", delay)
            )
            out.append(signal_at_start(["lora", "--seeds", "2"], sig, "lora", delay))
            out.append(signal_at_start(["real", "--seeds", "2"], sig, "real", delay))
        out.append(compare_signal_mid_run(sig))
        out.append(signal_after_last_write(sig))
    out.append(sweep_signal_then_resume())
    for how in ("truncated", "random bytes", "empty"):
        out.append(sweep_damaged_point(how))
    out.append(busy_folder())
    out += lora_scenarios()
    return out


def run_all(progress: bool = True, names: str | None = None) -> list[dict]:
    results = []
    todo = [s for s in scenarios() if names is None or names in s[0]]
    for i, (name, fn) in enumerate(todo):
        t0 = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                why = fn(Path(tmp))
            except Exception as e:  # the scenario itself failed: count it as a failure
                why = f"{type(e).__name__}: {e}"
        skipped = why.startswith("skip:")
        results.append(
            {
                "name": name,
                "ok": not why or skipped,
                "why": why,
                "skipped": skipped,
                "seconds": round(time.time() - t0, 1),
            }
        )
        if progress:
            mark = "skip" if skipped else ("ok" if not why else "FAIL")
            print(
                f"  scenario {i + 1}/{len(todo)} {mark:>4} {name} ({results[-1]['seconds']} s)",
                file=sys.stderr,
            )
    return results


if __name__ == "__main__":
    res = run_all(names=sys.argv[1] if len(sys.argv) > 1 else None)
    bad = [r for r in res if not r["ok"]]
    for r in bad:
        print(f"{r['name']}: {r['why']}", file=sys.stderr)
    print(f"{len(res) - len(bad)}/{len(res)} scenarios meet the contract")
    sys.exit(1 if bad else 0)
