"""Check 11: anisotropic inputs (docs/theory.md §6), with the correction the computation
forced (the converged freeze-A preheat's row space is col(A_p)).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import linalg, theory
from ..factors import LoraParams
from ..losses import population_loss
from ..metrics import orth
from ..preheat import converged_freeze_a, preheat_then_svd
from ..problems import ProblemSpec, build_problem, problem_arrays
from ._rules import M_, N_, R_, Context, Outcome, Row, Settings, exceeds, pathwise, rel_error

SIGMA_BETA = math.log(1000) / math.log(N_)  # eigenvalues spread over three decades


OPTIMAL = "aligned-sigma (optimal)"
#: The directions compared (their names on the figure and in the rows).
DIRECTIONS = (OPTIMAL, "aligned V_r(M)", "lora-one V_r(MΣ)", "hrp p=16", "hrp p=r", "gaussian")


def _aniso_seed(key, spec, arrays):
    kp, ka = jax.random.split(key)
    pb = build_problem(kp, spec, arrays, with_w0=False)
    obj, M = pb.objective, pb.M
    A = jax.random.normal(ka, (spec.n, 16), M.dtype)

    def residual(X):  # converged freeze-A residual R̃ with direction col(X)
        return 2 * population_loss(LoraParams(converged_freeze_a(X, obj, 1.0), X), obj, 1.0)

    hrp = lambda p: (
        preheat_then_svd(A[:, :p], obj, 1.0, 1.0, r=R_, form="freeze-a", steps="converged").V
    )
    assert pb.sigma_inv_half is not None  # Σ ≠ I here
    V_opt = orth(pb.sigma_inv_half @ pb.whitened.V[:, :R_])
    dirs = {
        "aligned-sigma (optimal)": V_opt,
        "aligned V_r(M)": pb.target.V[:, :R_],
        "lora-one V_r(MΣ)": linalg.svd(obj.C)[2][:R_].T,
        "hrp p=16": hrp(16),
        "hrp p=r": hrp(R_),
        "gaussian": A[:, :R_],
    }
    out = {k: residual(v) for k, v in dirs.items()}
    P = lambda X: X @ X.T
    out["hrp_vs_col_a"] = jnp.linalg.norm(P(dirs["hrp p=r"]) - P(orth(A[:, :R_])))
    out["tail"] = jnp.sum(pb.whitened.S[R_:] ** 2)  # Σ_{i>r} σ_i(MΣ^{1/2})²
    return out


def check_anisotropic(ctx: Context) -> Outcome:
    """§8.11 anisotropic Σ: Σ-aware optimum, ordering, HRP(p = r), r = 1 weights."""
    st, rows, data = ctx.st, [], {}
    seeds = st.seeds(2000, 200)
    for basis in ("random", "adversarial"):
        sig = f"power:{SIGMA_BETA:.4f}:{basis}"
        spec = ProblemSpec(m=M_, n=N_, spectrum="power:1", sigma=sig)
        out = ctx.seeds_map(
            _aniso_seed,
            dataclasses.replace(spec, spectrum="flat"),
            problem_arrays(spec),
            seeds,
            f"11 Σ {basis}",
        )
        names = list(DIRECTIONS)
        data[basis] = {
            "sigma": sig,
            "seeds": seeds,
            **{
                k: {
                    "mean": float(np.mean(out[k])),
                    "se": float(np.std(out[k], ddof=1) / math.sqrt(seeds)),
                }
                for k in names
            },
        }
        where = f"power:1, Σ = {sig} (κ = 1e3)"
        if basis == "random":
            rows.append(
                pathwise(
                    "11a Σ-aware optimum attained",
                    where + ": R̃(Σ^{-1/2}Ṽ_r) vs Σ_{i>r}σ_i(MΣ^{1/2})²",
                    rel_error(out[OPTIMAL], out["tail"]),
                    st.pathwise_tol,
                    seeds,
                )
            )
            for k in ("aligned V_r(M)", "lora-one V_r(MΣ)"):
                rows.append(
                    exceeds(
                        f"11b {k} strictly worse than optimal",
                        where + ": R̃ − R̃_opt",
                        out[k] - out[OPTIMAL],
                        0.0,
                        st,
                    )
                )
            # docs/theory.md §6 (c) says orth(ΣA_p); the computation says col(A_p): B_∞A_pᵀ =
            # MΣA_p(A_pᵀΣA_p)⁻¹A_pᵀ has row space col(A_p). See the module docstring.
            rows.append(
                pathwise(
                    "11c HRP(p = r) direction = col(A_p) (docs/theory.md §6 corrected)",
                    where + ": ‖P_HRP − P_A‖_F",
                    out["hrp_vs_col_a"],
                    1e-10,
                    seeds,
                )
            )
            rows.append(
                exceeds(
                    "11d HRP p = 16 (raw-weight SVD) worse than Σ-aware optimum",
                    where + ": R̃_HRP − R̃_opt",
                    out["hrp p=16"] - out[OPTIMAL],
                    0.0,
                    st,
                )
            )
        else:
            rows.append(
                pathwise(
                    "11d adversarial Σ: HRP(p = r) = random (docs/theory.md §6 corrected)",
                    where + ": |R̃_HRP(p=r) − R̃_rand|/R̃_rand",
                    rel_error(out["hrp p=r"], out["gaussian"]),
                    st.pathwise_tol,
                    seeds,
                )
            )
    rows.append(_rank1_weights_row(st))
    return Outcome(rows, {"anisotropic": data})


def _rank1_weights_row(st: Settings) -> Row:
    n, draws = 8, st.seeds(200_000, 40_000)
    lam = 1000.0 ** (-np.arange(n) / (n - 1))
    rng = np.random.default_rng(st.seed + 11)
    a2 = rng.standard_normal((draws, n)) ** 2 * lam
    w = a2 / a2.sum(1, keepdims=True)  # diag of P_{Σ^{1/2}a} in Σ's eigenbasis
    pred = theory.anisotropic_rank1_weights(lam)
    se = w.std(0, ddof=1) / math.sqrt(draws)
    z = np.abs(w.mean(0) - pred) / se
    i = int(np.argmax(z))
    return Row(
        "11e r = 1 random-A weights (integral)",
        f"n = 8, λ from 1 to 1e-3: worst of 8 weights (i = {i + 1})",
        float(pred[i]),
        float(w.mean(0)[i]),
        float(se[i]),
        draws,
        st.n_se_expect * float(se[i]),
        bool(z.max() <= st.n_se_expect),
        f"every |mean − prediction| ≤ {st.n_se_expect:g} SE",
    )
