"""Peak memory of a Monte Carlo run vs its number of seeds: streamed vs per-seed results.

Each measurement runs in a fresh Python process (peak RSS from ``getrusage``) on m = n = 64,
r = 4, Gaussian inits (so the spectral fast path runs), ``gaussian, aligned, hrp``:

    python benchmarks/memory.py                              # 1e4, 1e5, 1e6 seeds streamed
    python benchmarks/memory.py --seeds 10000,100000 --json out.json

``--per-seed-max`` also runs the per-seed (non-streamed) mode up to that many seeds, for
comparison. Prints peak RSS, wall time and seeds/s per run and the log-log slope of peak RSS
against seeds (≈0 means bounded); ``--json PATH`` writes them and ``PATH`` with ``.png``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

CHILD = r"""
import json, resource, sys, time
import hrp_theory as H
seeds, stream = int(sys.argv[1]), sys.argv[2] == "1"
steps, chunk = int(sys.argv[3]), int(sys.argv[4])
cfg = H.ExperimentConfig(problem=H.ProblemSpec(m=64, n=64, spectrum="power:1"),
                         lora=H.LoraSpec(r=4), train=H.TrainSpec(steps=steps),
                         hrp=H.HrpSpec(rank=16, steps=10), inits=("gaussian", "aligned", "hrp"),
                         base="gaussian", seeds=seeds, chunk_size=chunk)
t = time.perf_counter()
res = H.run_experiment(cfg, progress=False, stream=stream)
s = H.summarize_experiment(res)
wall = time.perf_counter() - t
print(json.dumps({"seeds": seeds, "stream": stream, "spectral": cfg.spectral, "wall_s": wall,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "hrp_excess": s["inits"]["hrp"]["excess_loss"]["mean"],
                  "hrp_excess_se": s["inits"]["hrp"]["excess_loss"]["se"]}))
"""


def measure(seeds: int, stream: bool, steps: int, chunk: int) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(seeds), "1" if stream else "0", str(steps), str(chunk)],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-2000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="10000,100000,1000000")
    ap.add_argument(
        "--per-seed-max",
        type=int,
        default=100000,
        help="also run the per-seed mode up to this many seeds (0: never)",
    )
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv if argv is not None else sys.argv[1:])
    rows = []
    for n in [int(s) for s in a.seeds.split(",")]:
        for stream in (True, False):
            if not stream and n > a.per_seed_max:
                continue
            r = measure(n, stream, a.steps, a.chunk)
            r["seeds_per_s"] = n / r["wall_s"]
            rows.append(r)
            print(
                f"{'streamed' if stream else 'per-seed':>9} {n:>9,} seeds: peak RSS "
                f"{r['peak_rss_mb']:7.0f} MB, {r['wall_s']:7.1f} s ({r['seeds_per_s']:,.0f} "
                f"seeds/s), HRP excess {r['hrp_excess']:.4g} ± {r['hrp_excess_se']:.2g}",
                flush=True,
            )
    slopes = {}
    for stream in (True, False):
        sel = [r for r in rows if r["stream"] == stream]
        if len(sel) >= 2:
            slopes["streamed" if stream else "per_seed"] = float(
                np.polyfit(
                    np.log([r["seeds"] for r in sel]), np.log([r["peak_rss_mb"] for r in sel]), 1
                )[0]
            )
    print("log-log slope of peak RSS vs seeds:", {k: round(v, 3) for k, v in slopes.items()})
    if a.json:
        from pathlib import Path

        import matplotlib.pyplot as plt

        from hrp_theory.plotting import save_png
        from hrp_theory.results import write_json

        write_json(a.json, {"rows": rows, "rss_slopes": slopes, "config": vars(a)})
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for stream, mark in ((True, "o-"), (False, "s--")):
            sel = [r for r in rows if r["stream"] == stream]
            if sel:
                ax.loglog(
                    [r["seeds"] for r in sel],
                    [r["peak_rss_mb"] for r in sel],
                    mark,
                    label="streamed" if stream else "per-seed arrays",
                )
        ax.set_xlabel("seeds")
        ax.set_ylabel("peak RSS (MB)")
        ax.set_title("m = n = 64, r = 4, 3 inits", fontsize=9)
        ax.legend()
        fig.tight_layout()
        save_png(fig, Path(a.json).with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
