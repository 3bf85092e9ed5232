"""Throughput of classic-LoRA GD: hrp_theory (JAX) vs NumPy and PyTorch loops, in one process.

Measures seed·steps/s of the library's own ``train`` (factored gradients, optax GD, ``lax.scan``)
run for many seeds inside one jit, next to what a user would otherwise write, all on the same
targets and inits in float32. The default variant is the library default: seeds split over every
local device (on a CPU, one XLA device per core, as ``hrp_theory.configure()`` and ``hrp-sim``
set up), ``lax.map`` one seed at a time on each; the 1-device variants show what the split buys.
``fraction_of_peak`` is the default variant's matmul work over this machine's float32 matmul peak.

* NumPy per-seed loops: the factored update (``ratio_vs_numpy`` is taken against it, the strong
  baseline) and the residual form ``E = BAᵀ − M`` most people write first;
* batched PyTorch (``torch.bmm`` over all seeds), factored form (``ratio_vs_torch``; skipped
  if torch is not installed: ``pip install torch==2.13.0``, the ``bench`` extra);
* the spectral fast path (``M = diag(σ)``, ``losses.DiagonalC``): ``spectral_speedup`` against
  the default dense variant (``spectral_speedup_vs_dense_vmap`` against the naive ``vmap``);
* the float32 matmul peak of this machine (a 2048² matmul, the better of ``jnp`` and NumPy),
  measured in the same run.

    python benchmarks/throughput.py                 # m = n = 256, r = 8, 256 seeds, 200 steps
    python benchmarks/throughput.py --json out.json --scaling

``--scaling`` also times the default variant over seeds, width and steps and reports log-log
slopes. ``--json PATH`` writes the figures and ratios there and ``PATH`` with ``.png`` a figure.
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


def torch_batched(Ms, A0s, lr, steps):
    """Batched PyTorch GD over all seeds at once, factored gradients (its best form)."""
    import torch

    M = torch.from_numpy(np.array(Ms))
    A = torch.from_numpy(np.array(A0s))
    B = torch.zeros(M.shape[0], M.shape[1], A.shape[2], dtype=M.dtype)
    Mt = M.transpose(1, 2).contiguous()
    with torch.no_grad():
        for _ in range(steps):
            gB = torch.bmm(B, torch.bmm(A.transpose(1, 2), A)) - torch.bmm(M, A)
            gA = torch.bmm(A, torch.bmm(B.transpose(1, 2), B)) - torch.bmm(Mt, B)
            B, A = B - lr * gB, A - lr * gA
        return torch.bmm(B, A.transpose(1, 2)).numpy()


def matmul_peak(jnp, jax, size=None, repeats=5):
    """float32 GFLOP/s of a ``size``² matmul on this machine (2048 on a CPU, 8192 on an
    accelerator): the better of ``jnp`` (XLA runs one large dot on every core, or the GPU at its
    default float32 precision, the one the runs use) and NumPy's BLAS, best of ``repeats``."""
    if size is None:
        size = 2048 if jax.default_backend() == "cpu" else 8192
    x = jnp.ones((size, size), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    jax.block_until_ready(f(x))
    xn = np.ones((size, size), np.float32)
    t = min(
        best_time(lambda: jax.block_until_ready(f(x)), repeats), best_time(lambda: xn @ xn, repeats)
    )
    return 2 * size**3 / t / 1e9


def slope(x, y):
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--m", type=int, default=256)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--seeds", type=int, default=256)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument(
        "--numpy-seeds",
        type=int,
        default=None,
        help="seeds for the NumPy loop (default: all; its rate is per seed·step)",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--variants",
        choices=("all", "default"),
        default="all",
        help="'default': only the library default, dense and spectral (for a GPU, where the "
        "one-seed-at-a-time variants are slow and say nothing new)",
    )
    p.add_argument("--scaling", action="store_true", help="also measure log-log scaling slopes")
    p.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        help="XLA CPU devices to split the host into (default: one per core)",
    )
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    from hrp_theory import runtime

    try:
        runtime.configure(a.cpu_devices)  # the library default: one CPU device per core
    except ValueError as e:  # JAX already running in this process (e.g. under pytest)
        print(f"note: {e}; measuring on the devices it has")
    import jax
    import jax.numpy as jnp

    import hrp_theory as H
    from hrp_theory.devices import seed_sharding, shard_seeds, vmap_batch
    from hrp_theory.inits import random_factor
    from hrp_theory.losses import DiagonalC
    from hrp_theory.problems import problem_arrays

    if a.json:
        H.results.check_output_file(a.json)
    opt = H.make_optimizer("gd", a.lr)

    def data(m, n, seeds):
        spec = H.ProblemSpec(m=m, n=n, spectrum="power:1")
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(jnp.arange(seeds))
        Ms = jax.jit(
            jax.vmap(lambda k: H.make_problem(k, spec, with_w0=False).M.astype(jnp.float32))
        )(keys)
        A0s = jax.jit(
            jax.vmap(
                lambda k: random_factor(
                    jax.random.fold_in(k, 1), n, a.r, "kaiming", 0.0, jnp.float32
                )
            )
        )(keys)
        S = problem_arrays(spec, jnp.float32).sigma
        return jax.block_until_ready((Ms, A0s)) + (S,)

    def one(obj, A0, steps):
        m = obj.C.shape[0]
        p0 = H.LoraParams(jnp.zeros((m, a.r), A0.dtype), A0)
        res = H.train(p0, obj, 1.0, form="classic", opt=opt, steps=steps)
        return res.params.B @ res.params.A.T

    def sharded(local, devices, in_specs):
        """``local`` over seeds split across ``devices`` local devices, as ``chunk_runner`` does."""
        return jax.jit(shard_seeds(local, devices, in_specs))

    def dense_runner(batch, steps, devices=1):
        body = lambda x: one(H.Objective(C=x[0], Mt=x[0]), x[1], steps)
        if batch is None:
            return jax.jit(jax.vmap(lambda M, A: body((M, A))))
        local = lambda M, A: jax.lax.map(body, (M, A), batch_size=batch)
        return sharded(local, devices, ("seeds", "seeds"))

    def spectral_runner(m, n, steps, batch=1, devices=1):
        body = lambda A, S: one(H.Objective(C=DiagonalC.of(S, m, n)), A, steps)
        if batch is None:
            return jax.jit(jax.vmap(body, in_axes=(0, None)))
        local = lambda A, S: jax.lax.map(lambda x: body(x, S), A, batch_size=batch)
        return sharded(local, devices, ("seeds", None))

    D = jax.local_device_count()
    if a.seeds % D:
        a.seeds = -(-a.seeds // D) * D
        print(f"seeds rounded up to {a.seeds}, a multiple of the {D} local devices")
    Ms, A0s, S = data(a.m, a.n, a.seeds)
    Ms_d, A0s_d = (jax.device_put(x, seed_sharding(D)) for x in (Ms, A0s))
    work = a.seeds * a.steps
    rates, outputs, compile_s = {}, {}, {}
    b = vmap_batch(None, a.seeds // D)  # the library default: 1 on a CPU, all on a GPU
    default = f"lax.map(batch {b}), {D} dev"
    spectral_default = f"spectral, lax.map(batch {b}), {D} dev"
    variants = {
        default: (dense_runner(b, a.steps, D), (Ms_d, A0s_d)),
        spectral_default: (spectral_runner(a.m, a.n, a.steps, b, D), (A0s_d, S)),
    }
    if a.variants == "all":
        variants |= {
            "lax.map(batch 1), 1 dev": (dense_runner(1, a.steps), (Ms, A0s)),
            "lax.map(batch 8), 1 dev": (dense_runner(8, a.steps), (Ms, A0s)),
            "vmap(all seeds), 1 dev": (dense_runner(None, a.steps), (Ms, A0s)),
            "spectral, lax.map(batch 1), 1 dev": (spectral_runner(a.m, a.n, a.steps), (A0s, S)),
            "spectral, vmap(all seeds), 1 dev": (
                spectral_runner(a.m, a.n, a.steps, None),
                (A0s, S),
            ),
        }
    # The baselines run first, on an idle machine. (The NumPy residual loop is bimodal from one
    # process to the next, ~7k or ~15.5k seed·steps/s whatever the order: see the README.)
    ns = a.seeds if a.numpy_seeds is None else min(a.numpy_seeds, a.seeds)
    Ms_np, A0_np = np.asarray(Ms[:ns]), np.asarray(A0s[:ns])
    lr32 = np.float32(a.lr)
    t = best_time(lambda: numpy_loop(Ms_np, A0_np, lr32, a.steps), 1)
    np_rate = ns * a.steps / t
    t = best_time(lambda: numpy_loop(Ms_np, A0_np, lr32, a.steps, residual_step), 1)
    np_resid_rate = ns * a.steps / t
    print(f"numpy per-seed loop, factored  {np_rate:>12,.0f} seed·steps/s  ({ns} seeds)")
    print(f"numpy per-seed loop, residual  {np_resid_rate:>12,.0f} seed·steps/s  ({ns} seeds)")
    torch_rate = torch_agree = None
    try:
        import torch
    except ImportError:
        print("torch not installed: pip install torch==2.13.0 (the bench extra) to compare")
    else:
        Mall, Aall = np.asarray(Ms), np.asarray(A0s)
        t = best_time(lambda: torch_batched(Mall, Aall, a.lr, a.steps), a.repeats)
        torch_rate = work / t
        torch_out = torch_batched(Mall[:2], Aall[:2], a.lr, a.steps)
        print(
            f"torch batched (bmm), factored  {torch_rate:>12,.0f} seed·steps/s  "
            f"(torch {torch.__version__}, {torch.get_num_threads()} threads)"
        )
    for name, (fn, args) in variants.items():
        t0 = time.perf_counter()
        outputs[name] = jax.block_until_ready(fn(*args))  # compile + first run
        first = time.perf_counter() - t0
        t = best_time(lambda: jax.block_until_ready(fn(*args)), a.repeats)
        compile_s[name] = max(first - t, 0.0)
        rates[name] = work / t
        print(
            f"jax   {name:<36} {rates[name]:>12,.0f} seed·steps/s  "
            f"(compile {compile_s[name]:.2f} s)",
            flush=True,
        )

    ref = numpy_loop(Ms_np[:2], A0_np[:2], lr32, a.steps)
    agree = float(max(np.abs(np.asarray(outputs[default][i]) - ref[i]).max() for i in range(2)))
    if torch_rate:
        torch_agree = float(np.abs(np.asarray(outputs[default][:2]) - torch_out).max())
    peak = matmul_peak(jnp, jax)
    flops = {k: 4 * a.m * a.n * a.r * v for k, v in rates.items() if "spectral" not in k}
    best_name = max(flops, key=flops.get)
    default_fraction = flops[default] / 1e9 / peak
    ratio = rates[default] / np_rate
    spectral = rates[spectral_default] / rates[default]
    spectral_best = max(v for k, v in rates.items() if k.startswith("spectral")) / rates[default]
    naive = rates.get("vmap(all seeds), 1 dev")
    print(
        f"ratio jax {default} / numpy factored = {ratio:.2f}x, / numpy residual = "
        f"{rates[default] / np_resid_rate:.2f}x"
        + (f", / torch batched = {rates[default] / torch_rate:.2f}x" if torch_rate else "")
        + f";  spectral / dense = {spectral:.1f}x (best spectral variant {spectral_best:.1f}x);"
        f"  max |ΔW_jax − ΔW_numpy| = {agree:.2e}"
    )
    print(
        f"matmul work of the default ({default}): {flops[default] / 1e9:.1f} GFLOP/s (4mnr per "
        f"step) = {default_fraction:.0%} of this machine's measured {peak:.0f} GFLOP/s float32 "
        f"matmul peak (best variant, {best_name}: {flops[best_name] / 1e9 / peak:.0%})"
    )
    result = {
        "jax_seed_steps_per_s": rates[default],
        "numpy_seed_steps_per_s": np_rate,
        "ratio_vs_numpy": ratio,
        "numpy_residual_seed_steps_per_s": np_resid_rate,
        "ratio_vs_numpy_residual": rates[default] / np_resid_rate,
        "torch_seed_steps_per_s": torch_rate,
        "ratio_vs_torch": rates[default] / torch_rate if torch_rate else None,
        "spectral_seed_steps_per_s": rates[spectral_default],
        "spectral_speedup": spectral,
        "spectral_speedup_best": spectral_best,
        "spectral_speedup_vs_dense_vmap": rates[spectral_default] / naive if naive else None,
        "devices": D,
        "default_variant": default,
        "variants": rates,
        "compile_s": compile_s,
        "matmul_peak_gflops": peak,
        "fraction_of_peak": default_fraction,
        "fraction_of_peak_best": flops[best_name] / 1e9 / peak,
        "best_dense_variant": best_name,
        "max_abs_difference": agree,
        "max_abs_difference_torch": torch_agree,
        "config": {
            **vars(a),
            "backend": jax.default_backend(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "jax": jax.__version__,
            "python": sys.version.split()[0],
        },
    }
    if a.scaling:
        result["scaling"] = scaling(
            a, data, lambda steps: dense_runner(1, steps, D), seed_sharding(D), jax
        )
        print(
            "log-log slopes of time:",
            {k: round(v["slope"], 2) for k, v in result["scaling"].items()},
        )
    if a.json:
        H.results.write_json(a.json, result)
        figure(result, a.json)
    return 0


def scaling(a, data, runner, sharding, jax):
    """Time of the default variant over seeds, width (m = n) and steps; log-log slopes."""
    out = {}
    grids = {
        "seeds": [a.seeds // 4, a.seeds // 2, a.seeds],
        "width": [a.m // 4, a.m // 2, a.m],
        "steps": [a.steps // 4, a.steps // 2, a.steps],
    }
    for axis, values in grids.items():
        times = []
        for v in values:
            seeds = v if axis == "seeds" else a.seeds
            w = v if axis == "width" else a.m
            steps = v if axis == "steps" else a.steps
            Ms, A0s, _ = data(w, w, seeds)
            fn = runner(steps)
            Ms, A0s = (jax.device_put(x, sharding) for x in (Ms, A0s))
            jax.block_until_ready(fn(Ms, A0s))
            times.append(best_time(lambda: jax.block_until_ready(fn(Ms, A0s)), a.repeats))
        out[axis] = {"values": values, "seconds": times, "slope": slope(values, times)}
    return out


def figure(result, json_path):
    """Bar chart of the rates next to the JSON (``PATH`` with ``.png``)."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hrp_theory.plotting import save_png

    bars = dict(result["variants"])
    bars["numpy loop, factored"] = result["numpy_seed_steps_per_s"]
    bars["numpy loop, residual"] = result["numpy_residual_seed_steps_per_s"]
    if result["torch_seed_steps_per_s"]:
        bars["torch bmm, factored"] = result["torch_seed_steps_per_s"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = list(bars)
    ax.barh(
        names,
        [bars[k] for k in names],
        color=[
            "tab:red" if k.startswith(("lax", "vmap", "spectral")) else "tab:gray" for k in names
        ],
    )
    ax.set_xscale("log")
    ax.set_xlabel("seed·steps / s (log)")
    c = result["config"]
    ax.set_title(
        f"classic LoRA GD, m = n = {c['m']}, r = {c['r']}, {c['backend']}, float32", fontsize=9
    )
    fig.tight_layout()
    save_png(fig, Path(json_path).with_suffix(".png"))


if __name__ == "__main__":
    sys.exit(main())
