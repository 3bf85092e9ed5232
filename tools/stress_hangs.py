"""Rerun the configurations that used to hang, each in a fresh process with a timeout; count hangs.

    python tools/stress_hangs.py                 # 100 runs (about 30 minutes on 2 cores)
    python tools/stress_hangs.py --runs 12 --json stress.json
    python tools/stress_hangs.py --control 3     # also run the unfixed reproducer: it must hang

Every run uses the library default, one XLA CPU device per core. The configurations, in turn:

* ``quickstart``: notebook 01's code (the kernel that hung the suite 3 times out of 3 with
  several CPU devices), as a script at smoke size;
* ``batch-8`` … ``batch-64``: ``hrp-sim compare`` with 8–64 seeds vmapped together on each
  device, float64, every init that calls LAPACK (QR, SVD, eigh, solves), Σ ≠ I;
* ``verify``: the chunked checks of ``hrp-sim verify --quick`` that call LAPACK per seed;
* ``repro-fixed``: ``tools/jaxlib_lapack_deadlock/repro.py --fixed``.

A run that exceeds ``--timeout`` seconds is a hang (killed; counted); a non-zero exit is a
failure. ``--control N`` first runs the unfixed reproducer N times, to show that the timeout does
catch the deadlock on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INITS = "kaiming,gaussian,aligned-sigma,hrp,hrp-sigma,hrp-2s,pissa,olora,lora-ga,lora-one"


def configurations(tmp: Path) -> dict[str, list[str]]:
    py = sys.executable
    cli = [py, "-m", "hrp_theory.cli"]
    out = {"quickstart": [py, str(ROOT / "notebooks" / "01_quickstart.py")]}
    for batch in (8, 16, 32, 64):
        out[f"batch-{batch}"] = [
            *cli,
            "compare",
            "--m",
            "24",
            "--n",
            "20",
            "--r",
            "2",
            "--preheat-rank",
            "8",
            "--preheat-steps",
            "5",
            "--steps",
            "20",
            "--sigma",
            "power:1:random",
            "--inits",
            INITS,
            "--seeds",
            str(4 * batch),
            "--batch-size",
            str(batch),
            "--x64",
            "--quiet",
            "--no-figures",
            "--out",
            str(tmp / f"b{batch}"),
        ]
    out["verify"] = [
        *cli,
        "verify",
        "--quick",
        "--checks",
        "hrp-identities,preheat-regimes,anisotropic,hmt",
        "--no-figures",
        "--quiet",
        "--out",
        str(tmp / "verify"),
    ]
    out["repro-fixed"] = [
        py,
        str(ROOT / "tools" / "jaxlib_lapack_deadlock" / "repro.py"),
        "--fixed",
    ]
    return out


def run(cmd, timeout: float) -> tuple[str, float]:
    env = dict(os.environ, HRP_SMOKE="1", MPLBACKEND="Agg")
    env.pop("XLA_FLAGS", None)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        status = "ok" if p.returncode == 0 else f"exit {p.returncode}: {p.stderr[-300:]}"
    except subprocess.TimeoutExpired:
        status = "hang"
    return status, time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--control", type=int, default=0, metavar="N")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    results = {"control": [], "runs": []}
    repro = [sys.executable, str(ROOT / "tools" / "jaxlib_lapack_deadlock" / "repro.py")]
    for i in range(a.control):
        status, secs = run(repro, min(a.timeout, 60.0))
        results["control"].append({"status": status, "seconds": secs})
        print(f"control {i + 1}/{a.control} (unfixed repro): {status} ({secs:.0f} s)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        configs = configurations(Path(tmp))
        names = list(configs)
        for i in range(a.runs):
            name = names[i % len(names)]
            status, secs = run(configs[name], a.timeout)
            results["runs"].append({"config": name, "status": status, "seconds": secs})
            print(f"run {i + 1}/{a.runs} {name}: {status} ({secs:.0f} s)", flush=True)
    statuses = [r["status"] for r in results["runs"]]
    results["summary"] = {
        "runs": len(statuses),
        "hangs": statuses.count("hang"),
        "failures": sum(s not in ("ok", "hang") for s in statuses),
        "control_hangs": sum(r["status"] == "hang" for r in results["control"]),
        "timeout_s": a.timeout,
    }
    print(json.dumps(results["summary"]))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return 0 if results["summary"]["hangs"] == results["summary"]["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
