"""Throughput of classic-LoRA GD: hrp_theory (JAX) vs a NumPy per-seed loop, in one process.

Measures seed·steps/s of the library's own ``train`` (factored gradients, optax GD, ``lax.scan``)
run for many seeds inside one jit, next to what a user would otherwise write: a NumPy loop over
seeds with the same factored update. Both see the same targets and inits, in float32.

    python benchmarks/throughput.py                 # m = n = 256, r = 8, 256 seeds, 200 steps
    python benchmarks/throughput.py --json out.json

Two NumPy loops run: the factored update (the strong baseline ``ratio_vs_numpy`` is taken
against) and the residual form ``E = BAᵀ − M`` most people write first.
Prints the figures and ratios; ``--json`` writes ``{"jax_seed_steps_per_s",
"numpy_seed_steps_per_s", "ratio_vs_numpy", "ratio_vs_numpy_residual", "variants", "config"}``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np


def factored_step(M, B, A, lr):
    """The update a careful user writes (factored gradients, no m×n temporaries)."""
    gB = B @ (A.T @ A) - M @ A
    gA = A @ (B.T @ B) - M.T @ B
    return B - lr * gB, A - lr * gA


def residual_step(M, B, A, lr):
    """The same update written the first way that comes to mind: form the m×n residual."""
    E = B @ A.T - M
    return B - lr * (E @ A), A - lr * (E.T @ B)


def numpy_loop(Ms, A0s, lr, steps, step=factored_step):
    """A NumPy loop over seeds, then over steps."""
    out = []
    for M, A in zip(Ms, A0s):
        B = np.zeros((M.shape[0], A.shape[1]), M.dtype)
        for _ in range(steps):
            B, A = step(M, B, A, lr)
        out.append(B @ A.T)
    return out


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--m", type=int, default=256)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--seeds", type=int, default=256)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--numpy-seeds", type=int, default=None,
                   help="seeds for the NumPy loop (default: all; its rate is per seed·step)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    import jax
    import jax.numpy as jnp

    import hrp_theory as H
    from hrp_theory.inits import random_factor

    if a.json:
        H.results.check_writable(a.json)
    spec = H.ProblemSpec(m=a.m, n=a.n, spectrum="power:1")
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(a.seeds))
    Ms = jax.jit(jax.vmap(lambda k: H.make_problem(k, spec, with_w0=False).M))(keys)
    A0s = jax.jit(jax.vmap(lambda k: random_factor(jax.random.fold_in(k, 1), a.n, a.r,
                                                   "kaiming", 0.0, jnp.float32)))(keys)
    Ms, A0s = jax.block_until_ready((Ms, A0s))
    opt = H.make_optimizer("gd", a.lr)

    def one(M, A0):
        p0 = H.LoraParams(jnp.zeros((a.m, a.r), M.dtype), A0)
        res = H.train(p0, H.Objective(C=M, Mt=M), 1.0, form="classic", opt=opt, steps=a.steps)
        return res.params.B @ res.params.A.T

    variants = {
        "lax.map(batch_size=1)": jax.jit(lambda M, A: jax.lax.map(lambda x: one(*x), (M, A),
                                                                  batch_size=1)),
        "lax.map(batch_size=8)": jax.jit(lambda M, A: jax.lax.map(lambda x: one(*x), (M, A),
                                                                  batch_size=8)),
        "vmap(all seeds)": jax.jit(jax.vmap(one)),
    }
    work = a.seeds * a.steps
    rates, outputs = {}, {}
    for name, fn in variants.items():
        outputs[name] = jax.block_until_ready(fn(Ms, A0s))  # compile + warm up
        t = best_time(lambda: jax.block_until_ready(fn(Ms, A0s)), a.repeats)
        rates[name] = work / t
        print(f"jax   {name:<24} {rates[name]:>12,.0f} seed·steps/s", flush=True)

    ns = a.seeds if a.numpy_seeds is None else min(a.numpy_seeds, a.seeds)
    Ms_np, A0_np = np.asarray(Ms[:ns]), np.asarray(A0s[:ns])
    lr32 = np.float32(a.lr)
    t = best_time(lambda: numpy_loop(Ms_np, A0_np, lr32, a.steps), 1)
    np_rate = ns * a.steps / t
    t = best_time(lambda: numpy_loop(Ms_np, A0_np, lr32, a.steps, residual_step), 1)
    np_resid_rate = ns * a.steps / t
    ref = numpy_loop(Ms_np[:2], A0_np[:2], lr32, a.steps)
    best_name = max(rates, key=rates.get)
    agree = float(max(np.abs(np.asarray(outputs[best_name][i]) - ref[i]).max() for i in range(2)))
    print(f"numpy per-seed loop, factored  {np_rate:>12,.0f} seed·steps/s  ({ns} seeds)")
    print(f"numpy per-seed loop, residual  {np_resid_rate:>12,.0f} seed·steps/s  ({ns} seeds)")
    default = "lax.map(batch_size=1)"
    ratio = rates[default] / np_rate
    print(f"ratio jax {default} / numpy factored = {ratio:.2f}x, / numpy residual = "
          f"{rates[default] / np_resid_rate:.2f}x;  best variant {best_name}: "
          f"{rates[best_name] / np_rate:.2f}x;  max |ΔW_jax − ΔW_numpy| = {agree:.2e}")
    peak_flops = 4 * a.m * a.n * a.r * rates[best_name]
    print(f"matmul work of the best variant: {peak_flops / 1e9:.1f} GFLOP/s (4mnr per step)")
    if a.json:
        H.results.write_json(a.json, {
            "jax_seed_steps_per_s": rates[default], "numpy_seed_steps_per_s": np_rate,
            "ratio_vs_numpy": ratio, "numpy_residual_seed_steps_per_s": np_resid_rate,
            "ratio_vs_numpy_residual": rates[default] / np_resid_rate, "best_variant": best_name,
            "best_ratio_vs_numpy": rates[best_name] / np_rate, "variants": rates,
            "max_abs_difference": agree,
            "config": {**vars(a), "backend": jax.default_backend(), "cpus": os.cpu_count(),
                       "machine": platform.machine(), "jax": jax.__version__,
                       "python": sys.version.split()[0]}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
