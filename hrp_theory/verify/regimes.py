"""Check 10: HRP with a classic preheat (docs/theory.md §5.4): the linearised closed form,
saturation and the finite-budget gap.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import theory
from ..dynamics import make_optimizer, train
from ..factors import LoraParams
from ..inits import random_factor
from ..preheat import thin_svd_of_product
from ..problems import ProblemSpec, build_problem, optimal_loss, problem_arrays
from ._rules import (
    GAP,
    M_,
    N_,
    R_,
    Context,
    Outcome,
    Row,
    bound,
    pathwise,
    rel_error,
    singular_values_of,
)

REGIME_T = 20.0
REGIME_DT = 0.02
REGIME_EVERY = 10  # a record every 0.2 time units
MAIN_T = 40.0


def _regime_seed(key, static, args):
    """Classic-GF preheats of rank p ∈ ps from one nested A₀; linearised and first-order
    predictors; classic main runs (random, HRP p=8 T_p=10, aligned)."""
    spec, basis, ps, eps_static = static
    arrays = args
    kp, ka = jax.random.split(key)
    pb = build_problem(kp, spec, arrays, False, basis)
    M, obj = pb.M, pb.objective
    A0 = random_factor(ka, spec.n, max(ps), "gaussian", eps_static / math.sqrt(spec.n), M.dtype)
    U, S, V = pb.target

    def right_loss(Vh):
        return 0.5 * jnp.sum((M - M @ Vh @ Vh.T) ** 2)

    def observe(p):
        Vh = thin_svd_of_product(p.B, p.A, R_)[2]
        return {"loss": right_loss(Vh), "V": Vh}

    steps = int(round(REGIME_T / REGIME_DT))
    t_grid = jnp.arange(steps // REGIME_EVERY + 1) * REGIME_DT * REGIME_EVERY
    out = {}
    for p in ps:
        A = A0[:, :p]
        rec = train(
            LoraParams(jnp.zeros((spec.m, p), M.dtype), A),
            obj,
            1.0,
            form="classic",
            opt=make_optimizer("flow", REGIME_DT),
            steps=steps,
            record_every=REGIME_EVERY,
            observe=observe,
        ).curves

        def linear(t):
            Vh = thin_svd_of_product(*theory.classic_linear_phase(U, S, V, A, t), R_)[2]
            return {"loss": right_loss(Vh), "V": Vh}

        lin = jax.vmap(linear)(t_grid)
        c1 = thin_svd_of_product(M @ A, A, R_)[2]
        proj = lambda X: X @ jnp.swapaxes(X, -1, -2)
        out[f"p{p}"] = {
            "ode": rec["loss"],
            "linear": lin["loss"],
            "first_order": right_loss(c1),
            "distance": jnp.linalg.norm(proj(rec["V"]) - proj(lin["V"]), axis=(-2, -1)),
        }
        if p == 8:
            V_hrp = rec["V"][int(round(10.0 / (REGIME_DT * REGIME_EVERY)))]  # T_p = 10
    main_steps = int(round(MAIN_T / REGIME_DT))
    starts = {"gaussian": A0[:, :R_], "hrp": eps_static * V_hrp, "aligned": eps_static * V[:, :R_]}
    for name, A in starts.items():
        curve = train(
            LoraParams(jnp.zeros((spec.m, R_), M.dtype), A),
            obj,
            1.0,
            form="classic",
            opt=make_optimizer("flow", REGIME_DT),
            steps=main_steps,
            record_every=50,
        ).curves["loss"]
        out["main_" + name] = curve
    out["optimal"] = optimal_loss(pb, R_)
    return out


def _ratio_se(a, b):
    """SE of mean(a)/mean(b) for paired samples (delta method)."""
    ma, mb = a.mean(), b.mean()
    cov = np.cov(a, b)
    var = (cov[0, 0] / mb**2 - 2 * ma * cov[0, 1] / mb**3 + ma**2 * cov[1, 1] / mb**4) / a.size
    return math.sqrt(max(var, 0.0))


def _median_ratio_se(a, b, seed, resamples=400):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, (resamples, a.size))
    return float(np.std(np.median(a[idx], 1) / np.median(b[idx], 1), ddof=1))


def check_preheat_regimes(ctx: Context) -> Outcome:
    """§8.10 classic preheat regimes: linearised form, saturation, finite-budget gap."""
    st, rows = ctx.st, []
    seeds = st.seeds(200, 16)
    eps = 0.01
    spec = ProblemSpec(m=M_, n=N_, spectrum=GAP)
    out = ctx.seeds_map(
        _regime_seed,
        (ProblemSpec(m=M_, n=N_), ctx.basis, (4, 8, 16), eps),
        problem_arrays(spec),
        seeds,
        "10 preheat regimes",
        width=ctx.width,
    )
    L_opt = float(np.mean(out["optimal"]))
    t = np.arange(out["p8"]["ode"].shape[1]) * REGIME_DT * REGIME_EVERY
    at = lambda T: int(round(T / (REGIME_DT * REGIME_EVERY)))
    for p in (8, 16):
        for T in (1.0, 3.0):
            j = at(T)
            where = f"{GAP}, ε = {eps}, p = {p}, T_p = {T:g}"
            rows.append(
                pathwise(
                    "10a linear regime: subspace = linearised",
                    where + ": ‖P_ODE − P_lin‖_F",
                    out[f"p{p}"]["distance"][:, j],
                    1e-2,
                    seeds,
                )
            )
            rows.append(
                pathwise(
                    "10a linear regime: loss = linearised",
                    where + ": relative difference of the right-vector loss",
                    rel_error(out[f"p{p}"]["ode"][:, j], out[f"p{p}"]["linear"][:, j]),
                    1e-2,
                    seeds,
                )
            )
    j10 = at(10.0)
    rows.append(
        bound(
            "10b saturated: right vectors near-optimal",
            f"{GAP}, p = 8, T_p = 10: right-vector loss ≤ L_opt + 0.01",
            out["p8"]["ode"][:, j10],
            L_opt + 0.01,
            st,
        )
    )
    k20 = int(round(20.0 / (REGIME_DT * 50)))
    g_hrp = out["main_hrp"][:, k20] - out["optimal"]
    g_rand = out["main_gaussian"][:, k20] - out["optimal"]
    ratio = g_hrp.mean() / g_rand.mean()
    rows.append(
        Row(
            "10b finite-budget gap ratio HRP/random (mean)",
            "classic main run, T = 20, p = 8, T_p = 10",
            0.05,
            float(ratio),
            _ratio_se(g_hrp, g_rand),
            seeds,
            st.n_se_bound * _ratio_se(g_hrp, g_rand),
            bool(ratio <= 0.05 + st.n_se_bound * _ratio_se(g_hrp, g_rand)),
            f"ratio ≤ 0.05 + {st.n_se_bound:g} SE (delta method)",
            "upper bound",
        )
    )
    med = np.median(g_hrp) / np.median(g_rand)
    mse = _median_ratio_se(g_hrp, g_rand, st.seed)
    rows.append(
        Row(
            "10b finite-budget gap ratio HRP/random (median)",
            "classic main run, T = 20, p = 8, T_p = 10",
            0.05,
            float(med),
            mse,
            seeds,
            st.n_se_bound * mse,
            bool(med <= 0.05 + st.n_se_bound * mse),
            f"ratio ≤ 0.05 + {st.n_se_bound:g} SE (bootstrap)",
            "upper bound",
        )
    )
    j20 = at(20.0)
    rows.append(
        bound(
            "10c p = r gains nothing over p = 8",
            f"{GAP}, T_p = 20: right-vector loss L(p=4) − L(p=8), paired",
            out["p4"]["ode"][:, j20] - out["p8"]["ode"][:, j20],
            0.0,
            st,
            upper=False,
        )
    )
    main_t = np.arange(out["main_gaussian"].shape[1]) * REGIME_DT * 50
    data = {
        "regimes": {
            "t": t.tolist(),
            "seeds": seeds,
            "eps": eps,
            "optimal": L_opt,
            "random": theory.freeze_a_mean(singular_values_of(GAP), N_, R_) / 2,
            "tau_sat": theory.saturation_time(1.0, eps**2),
            "sigma1": 1.0,
            **{
                f"p{p}": {
                    k: np.mean(out[f"p{p}"][k], 0).tolist()
                    for k in ("ode", "linear", "first_order")
                }
                for p in (4, 8, 16)
            },
        },
        "gap": {
            "t": main_t.tolist(),
            "seeds": seeds,
            "p": 8,
            "T_p": 10.0,
            **{
                name: {"mean": np.mean(g, 0).tolist(), "median": np.median(g, 0).tolist()}
                for name in ("gaussian", "hrp", "aligned")
                for g in [out["main_" + name] - out["optimal"][:, None]]
            },
        },
    }
    return Outcome(rows, data)
