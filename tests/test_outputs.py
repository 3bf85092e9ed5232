"""Outputs that survive: SIGTERM and Ctrl-C keep finished seeds, a signal while writing leaves
complete files, one run id per pair of files, one run per folder, unique temp names, the umask."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers import xla_flags

from hrp_theory import cli, load_run, report
from hrp_theory.results import OutputFolder, write_json, write_png

SMALL = [
    "--m",
    "8",
    "--n",
    "6",
    "--r",
    "2",
    "--steps",
    "4",
    "--seeds",
    "6",
    "--quiet",
    "--preheat-rank",
    "4",
    "--preheat-steps",
    "2",
]


def _start(args, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["XLA_FLAGS"] = xla_flags()  # the devices: the child's own configure()
    return subprocess.Popen(
        [sys.executable, "-m", "hrp_theory.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )


def _wait_for_seeds(proc, at_least: int, timeout: float = 240.0) -> None:
    """Read the progress bar (stderr) until ``at_least`` seeds are done (the adversarial
    scenarios' reader, tools/adversarial_scenarios.py)."""
    from adversarial_scenarios import seeds_done

    assert seeds_done(proc, at_least, timeout), "no progress before the signal"


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_run_keeps_finished_seeds(tmp_path, sig, code):
    out = tmp_path / "run"
    proc = _start(
        [
            "compare",
            "--m",
            "48",
            "--n",
            "48",
            "--steps",
            "400",
            "--seeds",
            "20000",
            "--chunk-size",
            "16",
            "--no-figures",
            "--out",
            str(out),
        ],
        tmp_path,
    )
    try:
        _wait_for_seeds(proc, 16)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == code, err[-2000:]
    summary, per_seed = load_run(out)
    assert summary["interrupted"] and 16 <= summary["seeds_done"] < 20000
    assert per_seed["kaiming/final_loss"].shape == (summary["seeds_done"],)
    assert "interrupted after" in err


def test_signal_while_writing_completes_the_files(tmp_path, monkeypatch, capsys):
    """SIGTERM arrives in the middle of writing: the writes finish, the pair matches, exit 143,
    and the message says the files are complete."""
    real = report.write_npz

    def slow_npz(path, arrays):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered while writing
        return real(path, arrays)

    monkeypatch.setattr(report, "write_npz", slow_npz)
    out = tmp_path / "run"
    assert cli.main(["compare", *SMALL, "--out", str(out)]) == 143
    assert (
        "SIGTERM arrived while writing; every file above was completed" in capsys.readouterr().err
    )
    summary, _ = load_run(out)
    for f in ("summary.json", "per_seed.npz", "curves.png", "distribution.png"):
        assert (out / f).stat().st_size > 0


def test_interrupt_before_any_seed_writes_nothing(tmp_path, monkeypatch, capsys):
    from hrp_theory import seeds

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(seeds, "chunk_runner", lambda *a: boom)
    out = tmp_path / "new"
    assert cli.main(["compare", *SMALL, "--out", str(out)]) == 130
    assert "nothing written" in capsys.readouterr().err
    assert not out.exists()
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text("{}")
    assert cli.main(["compare", *SMALL, "--out", str(old)]) == 130
    err = capsys.readouterr().err
    assert "nothing written" in err and "1 file(s) from an earlier run are untouched" in err


def test_mismatched_pair_is_refused(tmp_path):
    for name in ("a", "b"):
        assert cli.main(["compare", *SMALL, "--no-figures", "--out", str(tmp_path / name)]) == 0
    os.replace(tmp_path / "b" / "per_seed.npz", tmp_path / "a" / "per_seed.npz")
    with pytest.raises(ValueError, match="run_id: .* come from different runs"):
        load_run(tmp_path / "a")


def test_a_busy_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "busy"
    with OutputFolder(out):
        assert cli.main(["compare", *SMALL, "--out", str(out)]) == 2
        assert "is in use by another hrp-sim run" in capsys.readouterr().err
    assert cli.main(["compare", *SMALL, "--no-figures", "--out", str(out)]) == 0


@pytest.mark.slow
def test_two_processes_into_one_folder(tmp_path):
    """Two real runs started together into one --out: one writes, the other exits 2."""
    args = ["compare", *SMALL, "--seeds", "64", "--no-figures", "--out", str(tmp_path / "o")]
    procs = [_start(args, tmp_path) for _ in range(2)]
    codes = sorted(p.wait(timeout=300) for p in procs)
    errs = [p.stderr.read() for p in procs]
    assert codes == [0, 2], errs
    assert any("is in use" in e for e in errs)
    load_run(tmp_path / "o")


def test_unique_temp_names_under_concurrent_writes(tmp_path):
    from matplotlib.figure import Figure

    target, errors = tmp_path / "fig.png", []

    def work():
        try:
            for _ in range(5):
                fig = Figure()
                fig.subplots().plot([0, 1])
                write_png(target, fig)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and target.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]  # no temp file left


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode and json.loads(path.read_text()) == {"a": 1}


def test_compare_files_share_a_run_id(tmp_path):
    out = tmp_path / "o"
    assert cli.main(["compare", *SMALL, "--out", str(out), "--json", str(tmp_path / "s.json")]) == 0
    summary, per_seed = load_run(out)
    assert json.loads((tmp_path / "s.json").read_text())["run_id"] == summary["run_id"]
    assert np.isfinite(per_seed["hrp/final_loss"]).all()


def test_a_clean_exit_leaves_no_lock_file(tmp_path):
    """Every output folder kept a ``.hrp-sim.lock`` after a clean exit (issue 24)."""
    from hrp_theory import cli
    from hrp_theory.results import LOCK

    out = tmp_path / "o"
    args = ["compare", "--m", "8", "--n", "6", "--r", "2", "--seeds", "2", "--steps", "3"]
    assert cli.main([*args, "--quiet", "--no-figures", "--out", str(out)]) == 0
    assert (out / "summary.json").exists() and not (out / LOCK).exists()


def test_a_signal_inside_a_gc_callback_is_not_lost():
    """JAX registers a garbage-collection callback; a signal whose handler ran inside it had its
    KeyboardInterrupt printed as "Exception ignored" and the run went on to exit 0 (found by
    tools/adversarial_scenarios.py: SIGTERM 0.4 s after start). It is now delivered again."""
    import gc

    from hrp_theory import interrupts

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(1000))  # bytecodes: the Python handler runs here, inside the callback

    fired: list = []
    gc.callbacks.append(callback)
    try:
        with pytest.raises(KeyboardInterrupt), interrupts.catch():
            gc.collect()
            assert fired
            deadline = time.time() + 5
            while time.time() < deadline:  # the re-delivered signal lands here
                time.sleep(0.01)
    finally:
        gc.callbacks.remove(callback)
    assert interrupts.received() == signal.SIGINT


def test_a_signal_during_an_import_waits_for_the_import(tmp_path, monkeypatch):
    """A KeyboardInterrupt raised while jaxlib's extension modules initialised aborted the
    process (nanobind::python_error), crashed it (SIGSEGV) or surfaced as another exception
    (tools/adversarial_scenarios.py, under load). A signal inside an import now waits until the
    import is done, then interrupts as usual."""
    import importlib

    from hrp_theory import interrupts

    (tmp_path / "slow_module_for_signal_test.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "t0 = time.time()\n"
        "while time.time() - t0 < 0.3:\n"
        "    pass\n"
        "COMPLETE = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = []
    with pytest.raises(KeyboardInterrupt), interrupts.catch():
        imported.append(importlib.import_module("slow_module_for_signal_test"))
        deadline = time.time() + 5
        while time.time() < deadline:  # the signal, delivered again, lands here
            time.sleep(0.01)
    assert imported and imported[0].COMPLETE  # the import finished before the interrupt
    assert interrupts.received() == signal.SIGTERM
