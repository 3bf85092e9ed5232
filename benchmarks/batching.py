"""How a CPU should run a problem's seeds: one at a time or in vmapped batches, with or without
XLA's YNNPACK fusion, measured side by side in one process (the figures behind
``devices.SMALL_DIM``: docs/performance.md, "Which programs are batched").

    python benchmarks/batching.py                                  # about 6 minutes on 2 cores
    python benchmarks/batching.py --problems spectral:48x64 --x64 --json batching.json

Each problem is the whole experiment of ``hrp-sim compare`` (problem, gaussian / aligned / hrp
inits, 300 GD steps of a rank-4 classic LoRA, the metrics) on a ``power:1`` target, run by
``seeds.chunk_runner`` over every local device with each batch and compiler option; every
variant is compiled first, then timed twice, and the best time is reported in microseconds a
seed. ``best`` names the fastest variant and ``default`` the one ``devices.plan`` picks.
"""

from __future__ import annotations

import argparse
import json
import time

VARIANTS = (  # (name, vmapped batch, YNNPACK fusion on)
    ("1 seed, YNNPACK", 1, True),
    ("1 seed, XLA fusion", 1, False),
    ("batch 16, XLA fusion", 16, False),
    ("batch 64, XLA fusion", 64, False),
    ("batch 64, YNNPACK", 64, True),
)


def measure(H, jax, basis: str, m: int, n: int, seeds: int) -> dict:
    """Microseconds a seed of each variant (best of two timed runs)."""
    import jax.numpy as jnp

    from hrp_theory.experiment import preflight, simulate_seed
    from hrp_theory.seeds import chunk_runner, root_key

    cfg = H.ExperimentConfig(
        problem=H.ProblemSpec(m=m, n=n, spectrum="power:1"),
        lora=H.LoraSpec(r=4),
        train=H.TrainSpec(optimizer="gd", lr=1.0, steps=300, record_every=300),
        inits=("gaussian", "aligned", "hrp"),
        base="gaussian",  # rotation-invariant: the spectral basis is exact
        seeds=seeds,
        basis=basis,
    )
    static, hyper = preflight(cfg)
    n_dev = H.devices.local_devices()
    start = jnp.asarray(0, jnp.int32)
    runs = {}
    for name, batch, ynn in VARIANTS:
        # the extent only selects the compiler options here: 1 (without YNNPACK), None (with it)
        run = chunk_runner(simulate_seed, static, seeds, batch, n_dev, extent=None if ynn else 1)
        jax.block_until_ready(run(root_key(0), start, hyper))  # compile
        runs[name] = run
    best: dict[str, float] = {}
    for _ in range(2):
        for name, run in runs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(run(root_key(0), start, hyper))
            best[name] = min(best.get(name, float("inf")), 1e6 * (time.perf_counter() - t0) / seeds)
    width = H.devices.width(static.basis, m, n)  # devices.plan's and compiler_options' choice
    if H.devices.is_small(width):
        default = "batch 64, XLA fusion"
    elif H.devices.compiler_options(width, max(m, n)) is not None:
        default = "1 seed, XLA fusion"
    else:
        default = "1 seed, YNNPACK"
    return {
        "basis": static.basis.kind,
        "m": m,
        "n": n,
        "us_a_seed": best,
        "best": min(best, key=lambda k: best[k]),
        "default": default,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description="How a CPU should run a problem's seeds")
    p.add_argument(
        "--problems",
        default="spectral:48x64,spectral:128x128,spectral:256x256,spectral:1024x1024,"
        "dense:48x64,dense:64x64,dense:128x128,dense:256x256",
        help="comma list of BASIS:MxN (basis: spectral, reduced or dense)",
    )
    p.add_argument("--seeds", type=int, default=128, help="seeds of each timed run")
    p.add_argument("--x64", action="store_true", help="float64 (as hrp-sim verify)")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    import hrp_theory as H

    H.configure()
    import jax

    if a.x64:
        jax.config.update("jax_enable_x64", True)
    rows = []
    for item in a.problems.split(","):
        basis, mn = item.split(":")
        m, n = (int(x) for x in mn.split("x"))
        row = measure(H, jax, basis, m, n, a.seeds)
        rows.append(row)
        cells = "  ".join(f"{k}: {v:,.0f}" for k, v in row["us_a_seed"].items())
        print(f"{row['basis']} {m}x{n} (µs a seed) {cells}", flush=True)
        print(f"  fastest: {row['best']}; the default plan: {row['default']}", flush=True)
    if a.json:
        out = {"dtype": "float64" if a.x64 else "float32", "seeds": a.seeds, "problems": rows}
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
