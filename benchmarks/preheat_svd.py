"""Cost of HRP's preheat-then-SVD on wide layers: factored thin SVD vs the dense SVD of ``B Aᵀ``.

HRP needs the top-r singular vectors of the preheated ``B_p A_pᵀ`` (m×n, rank p). The library's
``preheat.thin_svd_of_product`` gets them from two thin QRs and one p×p SVD, O((m+n)p² + p³);
the obvious alternative forms the m×n product and decomposes it, O(mn·min(m, n)). Measured side
by side in one process, float32, on the same factors (m = n = width):

* ``thin``  — ``thin_svd_of_product(B, A, r)`` (jitted);
* ``dense`` — ``jnp.linalg.svd(B @ A.T)`` (jitted; XLA's dense SVD) and, for reference,
  ``scipy.linalg.svd(..., lapack_driver="gesdd")`` on the host;
* ``preheat_then_svd`` — the whole routine (T_p classic GD steps on a rank-p LoRA, then the thin
  SVD), and the same preheat followed by the dense SVD.

    python benchmarks/preheat_svd.py                      # widths 512 … 8192, p = 64, r = 8
    python benchmarks/preheat_svd.py --dense-max 4096 --json out.json

Prints the table and the ratios; ``--json`` writes ``{"rows", "speedup_at_4096",
"thin_slope", "dense_slope", "config", …}`` and ``--figure`` a log-log PNG. Slopes are the
least-squares log-log slopes of time against width (thin: ≈1 expected, dense: ≈3).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import best_time as best


def slope(x, y):
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0]) if len(x) >= 2 else float("nan")


def time_study() -> dict:
    """Wall time of ``run_study`` on its defaults (float64, as ``hrp-sim real`` runs it)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from hrp_theory.layers.study import RealConfig, run_study

    t = time.perf_counter()
    rep = run_study(RealConfig(), progress=False)
    return {
        "layers": len(rep["layers"]),
        "seeds": rep["config"]["seeds"],
        "inits": len(rep["config"]["inits"]),
        "wall_s": time.perf_counter() - t,
        **{f"{k}_s": v for k, v in rep["timings_s"].items()},
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", default="512,1024,2048,4096,8192")
    ap.add_argument("--p", type=int, default=64)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--preheat-steps", type=int, default=20)
    ap.add_argument(
        "--dense-max",
        type=int,
        default=4096,
        help="largest width at which the dense SVD runs (it is cubic)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--figure", default=None, help="write a log-log PNG here")
    ap.add_argument(
        "--study",
        action="store_true",
        help="also time the whole per-layer study (hrp-sim real's defaults: 36 "
        "MiniLM kernels, 8 seeds, float64); needs the real extra, MiniLM, the "
        "polarity data and hrp-sim finetune's checkpoint",
    )
    a = ap.parse_args(argv if argv is not None else sys.argv[1:])

    import jax
    import jax.numpy as jnp
    import scipy.linalg

    from hrp_theory.losses import Objective
    from hrp_theory.preheat import preheat_then_svd, thin_svd_of_product

    widths = [int(w) for w in a.widths.split(",")]
    thin = jax.jit(thin_svd_of_product, static_argnums=2)
    dense = jax.jit(lambda B, A: jnp.linalg.svd(B @ A.T, full_matrices=False))
    rows = []
    for w in widths:
        key = jax.random.key(w)
        kb, ka, km = jax.random.split(key, 3)
        B = jax.random.normal(kb, (w, a.p), jnp.float32)
        A = jax.random.normal(ka, (w, a.p), jnp.float32) / np.sqrt(w)
        # a target with a decaying spectrum, built low-rank so making it stays cheap
        U = jax.random.normal(km, (w, 2 * a.p), jnp.float32) / np.sqrt(w)
        obj = Objective(C=(U * (1.0 / jnp.arange(1, 2 * a.p + 1))) @ U.T * w / 8)
        row = {"width": w}
        jax.block_until_ready(thin(B, A, a.r))
        row["thin_s"] = best(lambda: jax.block_until_ready(thin(B, A, a.r)), a.repeats)
        pre = lambda: jax.block_until_ready(
            preheat_then_svd(A, obj, 1.0, 0.1, r=a.r, steps=a.preheat_steps)
        )
        pre()
        row["preheat_then_svd_s"] = best(pre, a.repeats)
        if w <= a.dense_max:
            jax.block_until_ready(dense(B, A))
            reps = a.repeats if w <= 2048 else 1
            row["dense_s"] = best(lambda: jax.block_until_ready(dense(B, A)), reps)
            P = np.asarray(B @ A.T)
            row["dense_lapack_s"] = best(
                lambda: scipy.linalg.svd(P, full_matrices=False, lapack_driver="gesdd"), reps
            )
            U_t, S_t, V_t = thin(B, A, a.r)
            _, S_d, _ = dense(B, A)
            row["top_r_rel_err"] = float(jnp.max(jnp.abs(S_t - S_d[: a.r]) / S_d[: a.r]))
            row["speedup"] = row["dense_s"] / row["thin_s"]
            row["speedup_vs_lapack"] = row["dense_lapack_s"] / row["thin_s"]
            # the whole routine with the dense SVD in place of the thin one
            row["preheat_then_dense_s"] = row["preheat_then_svd_s"] - row["thin_s"] + row["dense_s"]
            row["routine_speedup"] = row["preheat_then_dense_s"] / row["preheat_then_svd_s"]
        rows.append(row)
        print(
            " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            ),
            flush=True,
        )

    dense_rows = [r for r in rows if "dense_s" in r]
    at = {r["width"]: r for r in rows}
    result = {
        "config": {
            "widths": widths,
            "p": a.p,
            "r": a.r,
            "preheat_steps": a.preheat_steps,
            "dtype": "float32",
            "repeats": a.repeats,
        },
        "rows": rows,
        "speedup_at_4096": at.get(4096, {}).get("speedup"),
        "speedup_vs_lapack_at_4096": at.get(4096, {}).get("speedup_vs_lapack"),
        "routine_speedup_at_4096": at.get(4096, {}).get("routine_speedup"),
        "thin_slope": slope([r["width"] for r in rows], [r["thin_s"] for r in rows]),
        "preheat_then_svd_slope": slope(
            [r["width"] for r in rows], [r["preheat_then_svd_s"] for r in rows]
        ),
        "dense_slope": slope([r["width"] for r in dense_rows], [r["dense_s"] for r in dense_rows]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "backend": jax.default_backend(),
            "jax": jax.__version__,
        },
    }
    if a.study:
        result["study"] = time_study()
        print(f"per-layer study: {result['study']}")
    print(
        f"thin SVD vs dense SVD of B Aᵀ at width 4096: {result['speedup_at_4096']}× "
        f"(vs LAPACK gesdd {result['speedup_vs_lapack_at_4096']}×); whole routine "
        f"{result['routine_speedup_at_4096']}×"
    )
    print(
        f"log-log slopes vs width: thin {result['thin_slope']:.2f}, preheat_then_svd "
        f"{result['preheat_then_svd_slope']:.2f}, dense {result['dense_slope']:.2f}"
    )
    if a.json:
        from hrp_theory.results import write_json

        write_json(a.json, result)
    if a.figure:
        import matplotlib.pyplot as plt

        from hrp_theory.plotting import save_png

        fig, ax = plt.subplots(figsize=(5.5, 4))
        ws = [r["width"] for r in rows]
        ax.loglog(ws, [r["thin_s"] for r in rows], "o-", label=f"thin SVD of product (p={a.p})")
        ax.loglog(
            ws,
            [r["preheat_then_svd_s"] for r in rows],
            "s-",
            label=f"preheat ({a.preheat_steps} steps) + thin SVD",
        )
        ax.loglog(
            [r["width"] for r in dense_rows],
            [r["dense_s"] for r in dense_rows],
            "^-",
            label="dense SVD of B Aᵀ (XLA)",
        )
        ax.loglog(
            [r["width"] for r in dense_rows],
            [r["dense_lapack_s"] for r in dense_rows],
            "v--",
            label="dense SVD (LAPACK gesdd)",
        )
        ax.set_xticks(ws, [str(w) for w in ws])
        ax.minorticks_off()
        ax.set_xlabel("width m = n")
        ax.set_ylabel("seconds")
        ax.set_title(f"top-{a.r} SVD of a rank-{a.p} product ({jax.default_backend()})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        save_png(fig, a.figure)
    print(json.dumps({k: result[k] for k in ("speedup_at_4096", "thin_slope", "dense_slope")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
