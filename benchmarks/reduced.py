"""The reduced basis against the dense one, measured side by side in one process.

    python benchmarks/reduced.py                 # all three figures (a few minutes on 2 cores)
    python benchmarks/reduced.py --json reduced.json

* ``reduced_speedup``: seed·steps/s of a whole experiment (problem, inits, training, metrics) in
  the reduced basis against the dense basis, at m = n = 1024, a rank-8 power target, r = 4,
  p = 16, classic LoRA by GD, gaussian / aligned / hrp inits, float32;
* ``width_slope``: the log-log slope of the reduced basis's time per seed against m = n from 64
  to 65536 (everything else fixed);
* ``million_seeds_s``: 10⁶ seeds at m = n = 4096 with streamed statistics (bounded memory),
  and the process's peak RSS;
* ``layout``: the same reduced run vmapped in batches of 8 seeds (seed-major, as before the
  seed-minor layout) and of 16 to 256 (seed-minor, ``hrp_theory/layout.py``): seconds a seed
  each, and ``seed_minor_speedup``, the default batch's speed over seed-major batches of 8;
* ``roofline``: the flops of a reduced seed counted from the shapes (``seed_flops``), the
  float32 matmul peak measured in the same run on the same devices (``matmul_peak``), and the
  fraction of that peak the reduced run reaches (a lower bound: records and metrics are not
  counted).

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


def step_flops(q: int, rows: int, cols: int, k: int) -> int:
    """Flops of one GD step of a classic rank-``q`` LoRA on ``rows × cols`` reduced coordinates
    against ``diag(σ₁…σ_k)`` (``losses.factor_grads``): the four small products ``AᵀA``,
    ``B(AᵀA)``, ``BᵀB``, ``A(BᵀB)`` (2 flops a multiply-add), the diagonal target's two
    products, the gradients' scalings and the update."""
    products = 2 * q * q * (cols + rows + rows + cols)
    return products + 2 * k * q + 5 * q * (rows + cols)


def seed_flops(H, cfg) -> int:
    """Flops of one seed of the benchmark's config (classic LoRA by GD in the reduced basis):
    every init's main run at rank r, and HRP's preheat at rank p."""
    if cfg.lora.form != "classic" or cfg.train.optimizer != "gd":
        raise ValueError("seed_flops counts classic LoRA trained by GD only")
    b = H.bases.resolve_basis(cfg)
    main = cfg.train.steps * step_flops(cfg.lora.r, b.rows, b.cols, b.rank)
    pre = cfg.hrp.steps * step_flops(cfg.preheat_rank, b.rows, b.cols, b.rank)
    return len(cfg.inits) * main + ("hrp" in cfg.inits) * pre


def matmul_peak(H, size: int = 1024, reps: int = 10) -> float:
    """Float32 flop/s of one ``size``-square matmul per device, all local devices at once (the
    seeds' devices: one per core on a CPU)."""
    import jax
    import jax.numpy as jnp

    d = H.devices.local_devices()
    x = jax.device_put(jnp.ones((d, size, size), jnp.float32) / size, H.devices.seed_sharding(d))
    f = jax.jit(lambda a: a @ a)
    f(x).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(reps):
        x = f(x)
    x.block_until_ready()
    return reps * d * 2 * size**3 / (time.perf_counter() - t0)


def timed(H, cfg, stream: bool = False) -> float:
    """Seconds of a run, compile excluded: a first run of one chunk compiles the same program
    (every chunk of a run has the same shape)."""
    chunk = H.experiment.layout_plan(cfg).chunk
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
    p.add_argument("--batches", default="8,16,32,64,128,256", help="vmapped batches to time")
    p.add_argument(
        "--seed-minor-here",
        action="store_true",
        help="run small programs seed-minor on this backend too (an accelerator: the GPU check)",
    )
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    import hrp_theory as H

    try:
        H.configure()
    except ValueError as e:  # JAX already running here (under pytest)
        print(f"note: {e}")
    if a.json:
        H.results.check_output_file(a.json)
    if a.seed_minor_here:
        import jax

        H.devices.SEEDS_LAST_BACKENDS += (jax.default_backend(),)
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

    # 1b. the roofline: flops of a seed against the matmul peak of this run
    flops = seed_flops(H, red)
    peak = matmul_peak(H)
    achieved = flops * a.reduced_seeds / t_red
    out["roofline"] = {
        "seed_flops": flops,
        "matmul_peak_flops": peak,
        "achieved_flops": achieved,
        "fraction_of_peak": achieved / peak,
    }
    print(
        f"roofline: {flops / 1e6:.2f} Mflop a reduced seed, {achieved / 1e9:.2f} GFLOP/s "
        f"achieved against a float32 matmul peak of {peak / 1e9:.1f} GFLOP/s: "
        f"{100 * achieved / peak:.1f} % of peak",
        flush=True,
    )

    # 1c. the layout: seed-major batches of 8 against seed-minor batches (the default's choice)
    times = {}
    for b in [int(x) for x in a.batches.split(",")]:
        cfg_b = dataclasses.replace(red, batch_size=b)
        times[b] = timed(H, cfg_b) / a.reduced_seeds
        last = H.experiment.layout_plan(cfg_b).seeds_last
        print(f"reduced, batches of {b:>3} ({'seed-minor' if last else 'seed-major'}): "
              f"{1e6 * times[b]:.1f} µs a seed", flush=True)  # fmt: skip
    default = H.devices.SMALL_BATCH
    if 8 in times and default in times:
        out["seed_minor_speedup"] = times[8] / times[default]
        print(f"seed-minor batches of {default} against seed-major batches of 8: "
              f"{out['seed_minor_speedup']:.2f}x", flush=True)  # fmt: skip
    out["layout"] = {"batch": list(times), "seconds_per_seed": list(times.values())}

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
