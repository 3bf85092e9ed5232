"""Checks 1, 6, 7: a random frozen A (docs/theory.md §3): the endpoint M·P_A, its mean
(1 − r/n)F and variance, and the expected learning curve.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import linalg, theory
from ..dynamics import make_optimizer, train
from ..factors import LoraParams
from ..inits import random_factor
from ..metrics import orth
from ..problems import ProblemSpec, build_problem, problem_arrays
from ._rules import (
    M_,
    N_,
    R_,
    Context,
    Outcome,
    Row,
    expectation,
    experiment,
    pathwise,
    singular_values_of,
)


def _random_asym_runs(ctx: Context):
    st = ctx.st
    plan = [
        ("power:1", 2000, 300),
        ("rank:1", 1000, 200),
        ("exp:3", 1000, 200),
        ("rank:8", 1000, 200),
    ]
    for spectrum, full, quick in plan[: 2 if st.quick else 4]:
        # GD lr 1.5 contracts every mode of AᵀA (eigenvalues ≈ 0.19…0.52 for entry variance
        # 1/(3n)) by ≤ 0.75 a step: 300 steps reach the limit to < 1e-30.
        yield (
            spectrum,
            ctx.run(
                experiment(spectrum, "freeze-a", ("kaiming", "gaussian"), st.seeds(full, quick), st)
            ),
        )


def check_random_asymmetric(ctx: Context) -> Outcome:
    """§8.1 random freeze-A endpoint M·P_A and E R_∞ = (1 − r/n)F (Kaiming, Gaussian; mirror)."""
    st, rows = ctx.st, []
    for spectrum, res in _random_asym_runs(ctx):
        pred = theory.freeze_a_mean(singular_values_of(spectrum), N_, R_)
        for init in ("kaiming", "gaussian"):
            rows.append(
                expectation(
                    "1 random freeze-A mean",
                    f"{spectrum}, {init} A, m=48 n=64 r=4, GD to convergence",
                    2 * res[init]["final_loss"],
                    pred,
                    st,
                )
            )
    res = ctx.run(experiment("power:1", "freeze-b", ("kaiming",), st.seeds(2000, 300), st))
    rows.append(
        expectation(
            "1 mirror (B frozen) mean",
            "power:1, Kaiming B, E R = (1 − r/m)F",
            2 * res["kaiming"]["final_loss"],
            theory.freeze_a_mean(singular_values_of("power:1"), M_, R_),
            st,
        )
    )
    errs = ctx.seeds_map(
        _endpoint_seed,
        (ProblemSpec(m=M_, n=N_), ctx.basis),
        problem_arrays(ProblemSpec(m=M_, n=N_)),
        20,
        "1 endpoint",
    )
    rows.append(
        pathwise(
            "1 freeze-A endpoint = M P_A",
            "‖BAᵀ − M P_A‖/‖M‖ after GD with η = 2/(λ_min + λ_max)",
            errs,
            st.pathwise_tol,
            20,
        )
    )
    return Outcome(rows)


def _endpoint_seed(key, static, arrays):
    spec, basis = static
    kp, ka = jax.random.split(key)
    pb = build_problem(kp, spec, arrays, False, basis)
    A = random_factor(ka, N_, R_, "gaussian", 1 / math.sqrt(3 * N_), arrays.sigma.dtype)
    lam = linalg.eigvalsh(A.T @ A)
    out = train(
        LoraParams(jnp.zeros((M_, R_), A.dtype), A),
        pb.objective,
        1.0,
        form="freeze-a",
        opt=make_optimizer("gd", 2.0 / (lam[0] + lam[-1])),
        steps=400,
    )
    Q = orth(A)
    return jnp.linalg.norm(out.params.B @ A.T - pb.M @ Q @ Q.T) / jnp.linalg.norm(pb.M)


def check_variance(ctx: Context) -> Outcome:
    """§8.6 Var R_∞ of random Gaussian A against the Haar formula."""
    st = ctx.st
    res = ctx.run(
        experiment("power:1", "freeze-a", ("kaiming", "gaussian"), st.seeds(2000, 300), st)
    )
    R = 2 * np.asarray(res["gaussian"]["final_loss"], np.float64)
    pred = theory.freeze_a_variance(singular_values_of("power:1"), N_, R_)
    # SE of the sample variance from the sample's fourth central moment.
    c = R - R.mean()
    var, m4 = c.var(ddof=1), (c**4).mean()
    se = math.sqrt(max(m4 - var**2, 0.0) / R.size)
    tol = st.n_se_expect * se
    return Outcome(
        [
            Row(
                "6 random freeze-A variance",
                "power:1, Gaussian A: 2r(n−r)/(n(n−1)(n+2))·(Σσ⁴ − F²/n)",
                pred,
                float(var),
                se,
                R.size,
                tol,
                bool(abs(var - pred) <= tol),
                f"|var − prediction| ≤ {st.n_se_expect:g} SE(var)",
            )
        ]
    )


def check_transient(ctx: Context) -> Outcome:
    """§8.7 random Gaussian A: expected freeze-A learning curve E L(t)."""
    st, rows = ctx.st, []
    seeds = st.seeds(2000, 300)
    dt, t_end, every = 0.05, 20.0, 10
    std = 1 / math.sqrt(3 * N_)
    res = ctx.run(
        experiment(
            "power:1",
            "freeze-a",
            ("gaussian",),
            seeds,
            st,
            optimizer="flow",
            lr=dt,
            steps=int(t_end / dt),
            record_every=every,
            init_std=std,
        )
    )
    L = np.asarray(res["gaussian"]["loss_curve"])
    t = np.arange(L.shape[1]) * dt * every
    sigma = singular_values_of("power:1")
    draws = 40_000 if st.quick else 400_000
    mean, se = theory.freeze_a_expected_curve(sigma, N_, R_, std, t, draws=draws, seed=st.seed + 1)
    for tk in (0.5, 2.0, 5.0, 20.0):
        j = int(round(tk / (dt * every)))
        rows.append(
            expectation(
                "7 random freeze-A learning curve",
                f"power:1, Gaussian A std 1/√(3n), loss at t = {tk:g} "
                f"(trace term: {draws} Wishart draws)",
                L[:, j],
                mean[j] / 2,
                st,
                pred_se=se[j] / 2,
            )
        )
    data = {
        "t": t.tolist(),
        "mean": L.mean(0).tolist(),
        "se": (L.std(0, ddof=1) / math.sqrt(seeds)).tolist(),
        "theory": (mean / 2).tolist(),
        "theory_se": (se / 2).tolist(),
        "seeds": seeds,
    }
    return Outcome(rows, {"transient": data})
