"""Checks 3, 4, 5: HRP with a converged freeze-A preheat (docs/theory.md §5.1–§5.3): pathwise
identities, Theorem C's bounds and the rank-1 Beta law.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as _st

from .. import theory
from ..losses import Objective
from ..metrics import orth
from ..preheat import preheat_then_svd
from ..problems import ProblemSpec, build_problem, problem_arrays
from ..spectra import spectrum_values
from ._rules import (
    M_,
    N_,
    R_,
    SPECTRA,
    Context,
    Outcome,
    Row,
    bound,
    count,
    expectation,
    pathwise,
    rel_error,
    singular_values_of,
)


def hrp_residuals(key, static, arrays):
    """R_HRP(p) for nested Gaussian A_p (first p columns of one n×p_max matrix), converged
    freeze-A preheat, through the shared preheat-then-SVD routine; ``p = r`` is the random init."""
    spec, basis, ps = static
    kp, ka = jax.random.split(key)
    pb = build_problem(kp, spec, arrays, False, basis)
    A = jax.random.normal(ka, (spec.n, max(ps)), arrays.sigma.dtype)
    out = []
    for p in ps:
        V = preheat_then_svd(
            A[:, :p], Objective(C=pb.M), 1.0, 1.0, r=R_, form="freeze-a", steps="converged"
        ).V
        out.append(jnp.sum((pb.M - pb.M @ V @ V.T) ** 2))
    Q = orth(A[:, :R_])
    return {"R": jnp.stack(out), "random": jnp.sum((pb.M - pb.M @ Q @ Q.T) ** 2)}


def _hrp_paths(ctx, spectrum, ps, seeds, m=M_, n=N_):
    spec = ProblemSpec(m=m, n=n, spectrum=spectrum)
    static = (ProblemSpec(m=m, n=n), ctx.basis, tuple(ps))
    return ctx.seeds_map(hrp_residuals, static, problem_arrays(spec), seeds, f"HRP {spectrum}")


def check_hrp_identities(ctx: Context) -> Outcome:
    """§8.3 HRP (converged freeze-A preheat): p = r is random, p = n optimal, monotone."""
    st = ctx.st
    seeds = st.seeds(200, 50)
    ps = (4, 6, 8, 16, 32, 48, 64)
    # Square: p may not exceed min(m, n), and the p = n identity needs p = n.
    out = _hrp_paths(ctx, "power:1", ps, seeds, m=N_, n=N_)
    R = out["R"]
    T = theory.energies(spectrum_values("power:1", N_), R_)[2]
    rise = np.diff(R, axis=1)
    return Outcome(
        [
            pathwise(
                "3 HRP p = r equals random",
                "m = n = 64, same A, power:1",
                rel_error(R[:, 0], out["random"]),
                st.pathwise_tol,
                seeds,
            ),
            pathwise(
                "3 HRP p = n is optimal",
                "R_HRP(64) = T_r",
                rel_error(R[:, -1], T),
                st.pathwise_tol,
                seeds,
            ),
            count(
                "3 HRP monotone in p",
                f"violations of R(p') ≤ R(p) beyond 1e-10, p ∈ {list(ps)}",
                int((rise > 1e-10).sum()),
                seeds,
                "violation count = 0",
            ),
        ]
    )


THEOREM_C_PS = (4, 6, 8, 12, 16, 24, 32, 40, 48)
THEOREM_C_CHECKED = (6, 8, 16, 32, 48)


def check_theorem_c(ctx: Context) -> Outcome:
    """§8.4 Theorem C lower/upper bounds on E R_HRP(p), four spectra; strict gain."""
    st, rows, data = ctx.st, [], {}
    seeds = st.seeds(2000, 300)
    for label, spectrum in SPECTRA.items():
        sigma = singular_values_of(spectrum)
        out = _hrp_paths(ctx, spectrum, THEOREM_C_PS, seeds)
        R = out["R"]
        grid = np.arange(R_, max(THEOREM_C_PS) + 1)
        lo, hi = np.array([theory.theorem_c_bounds(sigma, N_, R_, int(q)) for q in grid]).T
        data[label] = {
            "spectrum": spectrum,
            "p": list(THEOREM_C_PS),
            "seeds": seeds,
            "bounds": {"p": grid.tolist(), "lower": lo.tolist(), "upper": hi.tolist()},
            "mean": R.mean(0).tolist(),
            "se": (R.std(0, ddof=1) / math.sqrt(seeds)).tolist(),
            "random": theory.freeze_a_mean(sigma, N_, R_),
            "optimal": theory.energies(sigma, R_)[2],
        }
        for j, p in enumerate(THEOREM_C_PS):
            if p not in THEOREM_C_CHECKED:
                continue
            lo, hi = theory.theorem_c_bounds(sigma, N_, R_, p)
            where = f"{spectrum}, p = {p}, converged freeze-A preheat"
            rows.append(bound("4 Theorem C lower", where, R[:, j], lo, st, upper=False))
            rows.append(bound("4 Theorem C upper", where, R[:, j], hi, st, upper=True))
        if label == "power":
            j = THEOREM_C_PS.index(16)
            rows.append(
                bound(
                    "4 strict gain over random",
                    "power:1, p = 16: R_rand − R_HRP (paired) ≥ ((p−r)/n)(E_r − rT_r/(n−r))",
                    out["random"] - R[:, j],
                    theory.theorem_c_gain(sigma, N_, R_, 16),
                    st,
                    upper=False,
                )
            )
    return Outcome(rows, {"theorem_c": data})


def check_rank1(ctx: Context) -> Outcome:
    """§8.5 rank-1 M: R_HRP ~ Beta((n−p)/2, p/2): mean, variance, KS test."""
    st, rows = ctx.st, []
    seeds = st.seeds(2000, 400)
    ps = (4, 8, 32)
    R = _hrp_paths(ctx, "rank:1", ps, seeds)["R"]
    for j, p in enumerate(ps):
        law = theory.rank1_law(N_, p)
        x = R[:, j]
        what = "random A (p = r)" if p == R_ else f"HRP p = {p}"
        rows.append(expectation("5 rank-1 mean", f"σ = 1, {what}: 1 − p/n", x, law.mean(), st))
        c = x - x.mean()
        var = c.var(ddof=1)
        # SE of the sample variance from the Beta law's own fourth central moment.
        mu4 = law.expect(lambda y: (y - law.mean()) ** 4)
        se = math.sqrt(max(mu4 - law.var() ** 2, 0.0) / seeds)
        tol = st.n_se_expect * se
        rows.append(
            Row(
                "5 rank-1 variance",
                f"σ = 1, {what}: 2p(n−p)/(n²(n+2))",
                law.var(),
                float(var),
                se,
                seeds,
                tol,
                bool(abs(var - law.var()) <= tol),
                f"|var − prediction| ≤ {st.n_se_expect:g} SE(var)",
            )
        )
        pval = _st.kstest(x, law.cdf).pvalue
        rows.append(
            Row(
                "5 rank-1 KS vs Beta((n−p)/2, p/2)",
                f"σ = 1, {what}: KS p-value",
                1e-3,
                float(pval),
                None,
                seeds,
                1e-3,
                bool(pval > 1e-3),
                "p-value > 1e-3",
                "level",
            )
        )
    return Outcome(rows)
