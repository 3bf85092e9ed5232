"""Check 12: the Halko–Martinsson–Tropp bound (docs/theory.md §5.5): two-sided HRP inherits it,
the paper's recipe does not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import linalg, theory
from ..metrics import orth
from ..preheat import preheat_then_svd, thin_svd_of_product
from ..problems import ProblemSpec, build_problem, problem_arrays
from ._rules import M_, N_, R_, Context, Outcome, bound, exceeds, pathwise, singular_values_of

HMT_PS = (8, 16, 32)


def _hmt_seed(key, static, arrays):
    spec, basis = static
    kp, ka = jax.random.split(key)
    pb = build_problem(kp, spec, arrays, False, basis)
    M = pb.M
    Omega = jax.random.normal(ka, (spec.n, max(HMT_PS)), M.dtype)
    F = jnp.sum(M**2)
    out = {"two_sided": [], "fixed_rank": [], "paper": []}
    for p in HMT_PS:
        # One freeze-A GD step of lr 1 from B_p = 0 gives B_p = M Ω exactly: Y = range(MΩ).
        pre = preheat_then_svd(
            Omega[:, :p], pb.objective, 1.0, 1.0, r=R_, form="freeze-a", steps=1, two_sided=True
        )
        V2 = pre.V
        Vp = thin_svd_of_product(pre.params.B, pre.params.A, R_)[2]  # the paper's recipe
        s = linalg.singular_values(orth(pre.params.B).T @ M)
        out["two_sided"].append(jnp.sum((M - M @ V2 @ V2.T) ** 2))
        out["fixed_rank"].append(F - jnp.sum(s[:R_] ** 2))  # ‖M − [P_Y M]_r‖²
        out["paper"].append(jnp.sum((M - M @ Vp @ Vp.T) ** 2))
    return {k: jnp.stack(v) for k, v in out.items()} | {"F": F}


def check_hmt(ctx: Context) -> Outcome:
    """§8.12 HMT: two-sided HRP inherits the bound, the paper recipe does not."""
    st, rows = ctx.st, []
    seeds = st.seeds(2000, 300)
    for spectrum in ("power:1", "exp:3") if not st.quick else ("power:1",):
        spec = ProblemSpec(m=M_, n=N_, spectrum=spectrum)
        out = ctx.seeds_map(
            _hmt_seed,
            (ProblemSpec(m=M_, n=N_), ctx.basis),
            problem_arrays(spec),
            seeds,
            f"12 HMT {spectrum}",
        )
        sigma = singular_values_of(spectrum)
        for j, p in enumerate(HMT_PS):
            hmt = theory.hmt_bound(sigma, R_, p)
            where = f"{spectrum}, p = {p}, Y = MΩ"
            rows.append(
                pathwise(
                    "12 two-sided HRP ≤ fixed-rank HMT error (pathwise)",
                    where + ": max((R_2s − ‖M − [P_Y M]_r‖²)/F, 0)",
                    np.maximum(out["two_sided"][:, j] - out["fixed_rank"][:, j], 0) / out["F"],
                    st.pathwise_tol,
                    seeds,
                )
            )
            rows.append(
                bound(
                    "12 fixed-rank HMT bound",
                    where + ": E‖M − [P_Y M]_r‖² ≤ (1 + r/(p−r−1))T_r",
                    out["fixed_rank"][:, j],
                    hmt,
                    st,
                )
            )
            rows.append(
                bound(
                    "12 two-sided HRP under the HMT bound", where, out["two_sided"][:, j], hmt, st
                )
            )
            if p == 16:
                rows.append(
                    exceeds(
                        "12 paper recipe does NOT inherit HMT",
                        where + ", one-step preheat: E R_paper − HMT bound",
                        out["paper"][:, j],
                        hmt,
                        st,
                    )
                )
    return Outcome(rows)
