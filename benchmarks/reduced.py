"""The reduced basis against the dense one, measured side by side in one process.

    python benchmarks/reduced.py                 # all three figures (a few minutes on 2 cores)
    python benchmarks/reduced.py --json reduced.json

* ``reduced_speedup``: seed·steps/s of a whole experiment (problem, inits, training, metrics) in
  the reduced basis against the dense basis, at m = n = 1024, a rank-8 power target, r = 4,
  p = 16, classic LoRA by GD, gaussian / aligned / hrp inits, float32;
* ``width_slope``: the log-log slope of the reduced basis's time per seed against m = n from 64
  to 65536 (everything else fixed);
* ``million_seeds_s``: 10⁶ seeds at m = n = 4096 with streamed statistics (bounded memory),
  and the process's peak RSS.

Every run uses the library defaults: one XLA CPU device per core, and the chunk and batch sizes
``hrp_theory.devices`` picks for the basis.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import time

import numpy as np


def config(H, n: int, seeds: int, basis: str, steps: int = 200):
    return H.ExperimentConfig(
        problem=H.ProblemSpec(m=n, n=n, spectrum="power:1", rank=8),
        lora=H.LoraSpec(r=4),
        train=H.TrainSpec(lr=0.1, steps=steps),
        hrp=H.HrpSpec(rank=16, steps=20),
        inits=("gaussian", "aligned", "hrp"),
        base="gaussian",
        seeds=seeds,
        basis=basis,
    )


def timed(H, cfg, stream: bool = False) -> float:
    """Seconds of a run, compile excluded: a first run of one chunk compiles the same program
    (every chunk of a run has the same shape)."""
    n_dev = H.devices.local_devices(cfg.devices)
    small = H.devices.is_small(H.bases.resolve_basis(cfg))
    chunk = H.devices.chunk_length(cfg.seeds, cfg.chunk_size, n_dev, small)
    H.run_experiment(dataclasses.replace(cfg, seeds=chunk), progress=False, stream=stream)
    t0 = time.perf_counter()
    H.run_experiment(cfg, progress=False, stream=stream)
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=1024, help="m = n of the dense-vs-reduced run")
    p.add_argument("--big-width", type=int, default=4096, help="m = n of the big run")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--dense-seeds", type=int, default=16)
    p.add_argument("--reduced-seeds", type=int, default=8192)
    p.add_argument("--widths", default="64,256,1024,4096,16384,65536")
    p.add_argument("--million", type=int, default=1_000_000, help="seeds of the big run")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    import hrp_theory as H

    try:
        H.configure()
    except ValueError as e:  # JAX already running here (under pytest)
        print(f"note: {e}")
    if a.json:
        H.results.check_output_file(a.json)
    steps, W = a.steps, a.width
    out: dict = {"config": vars(a)}

    # 1. reduced vs dense at m = n = W
    dense = config(H, W, a.dense_seeds, "dense", steps)
    red = config(H, W, a.reduced_seeds, "reduced", steps)
    t_dense, t_red = timed(H, dense), timed(H, red)
    rate_dense = a.dense_seeds * steps / t_dense
    rate_red = a.reduced_seeds * steps / t_red
    out["dense_seed_steps_per_s"] = rate_dense
    out["reduced_seed_steps_per_s"] = rate_red
    out["reduced_speedup"] = rate_red / rate_dense
    print(
        f"m = n = {W}: dense {rate_dense:,.0f} seed·steps/s ({a.dense_seeds} seeds), reduced "
        f"{rate_red:,.0f} ({a.reduced_seeds} seeds): reduced_speedup = "
        f"{out['reduced_speedup']:,.0f}x",
        flush=True,
    )

    # 2. time per seed against width
    widths = [int(w) for w in a.widths.split(",")]
    per_seed = []
    for n in widths:
        t = timed(H, config(H, n, a.reduced_seeds, "reduced", steps))
        per_seed.append(t / a.reduced_seeds)
        print(f"reduced, m = n = {n:>6}: {1e6 * per_seed[-1]:.1f} µs a seed", flush=True)
    slope = float(np.polyfit(np.log(widths), np.log(per_seed), 1)[0])
    out["width"] = {"n": widths, "seconds_per_seed": per_seed}
    out["width_slope"] = slope
    print(f"log-log slope of the time per seed against n: {slope:.3f}", flush=True)

    # 3. a million seeds at m = n = 4096, streamed
    big = config(H, a.big_width, a.million, "reduced", steps)
    t = timed(H, big, stream=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["million_seeds_s"] = t
    out["million_seeds"] = a.million
    out["peak_rss_mb"] = rss
    print(
        f"{a.million:,} seeds at m = n = {a.big_width}, streamed: {t:.1f} s; peak RSS {rss:.0f} MB",
        flush=True,
    )
    if a.json:
        H.results.write_json(a.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
