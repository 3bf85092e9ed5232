# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Theory vs simulation: checking HRP's expectation bounds with error bars
#
# Each statement of THEORY.md is a closed form (`hrp_theory.theory`) and a Monte Carlo
# measurement through the simulator; `hrp_theory.verify` turns each into a verdict with a
# tolerance derived from the standard error. Here we
#
# 1. measure `E R_HRP(p)` against Theorem C's bounds ourselves, seed by seed;
# 2. integrate the gradient flow exactly and compare it with the freeze-A closed form;
# 3. run catalogue checks and read their verdicts.
#
# `HRP_SMOKE=1` runs everything at CI size.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import hrp_theory as H
from hrp_theory import flow, theory, verify
from hrp_theory.verify import hrp as hrp_checks
from hrp_theory.verify.report import verify_table

H.configure()  # one XLA CPU device per core, before JAX starts (what hrp-sim does)
jax.config.update("jax_enable_x64", True)  # the theory's checks are stated in float64

SMOKE = os.environ.get("HRP_SMOKE") == "1"
SEEDS = 100 if SMOKE else 2000
m, n, r = 48, 64, 4

# %% [markdown]
# ## 1. Theorem C by hand
#
# HRP with a converged freeze-A preheat of rank `p` keeps the best r-dimensional subspace inside a
# random p-dimensional one. Theorem C sandwiches its expected residual
# `max(T_r, (1−p/n)F) ≤ E R_HRP(p) ≤ R_rand − ((p−r)/(n−r))(R_rand − T_r)`.
# We draw `SEEDS` problems, run the shared preheat-then-SVD routine for several `p` on nested
# Gaussian `A_p`, and put the Monte Carlo mean with its 95 % CI next to the bounds.

# %%
spectrum = "power:1"
sigma = H.spectrum_values(spectrum, min(m, n))
ps = (4, 8, 16, 32, 48)
out = H.map_seeds(
    hrp_checks.hrp_residuals,
    (H.ProblemSpec(m=m, n=n), H.problems.Basis("dense"), ps),
    H.problems.problem_arrays(H.ProblemSpec(m=m, n=n, spectrum=spectrum)),
    seeds=SEEDS,
    batch_size=8,
    progress=False,
).out
R = out["R"]
for j, p in enumerate(ps):
    lo, hi = theory.theorem_c_bounds(sigma, n, r, p)
    s = H.summarize(R[:, j])
    print(f"p = {p:2d}: {lo:.4f} ≤ {s['mean']:.4f} ± {1.96 * s['se']:.4f} ≤ {hi:.4f}")

# %%
grid = np.arange(r, 49)
bounds = np.array([theory.theorem_c_bounds(sigma, n, r, int(q)) for q in grid])
fig, ax = plt.subplots(figsize=(6, 4))
ax.fill_between(grid, bounds[:, 0], bounds[:, 1], alpha=0.2, label="Theorem C")
ax.errorbar(
    ps,
    R.mean(0),
    yerr=1.96 * R.std(0, ddof=1) / np.sqrt(SEEDS),
    fmt="o",
    color="tab:red",
    label=f"HRP, {SEEDS} seeds (95% CI)",
)
ax.set_xlabel("preheat rank p")
ax.set_ylabel("R_HRP")
ax.legend()
plt.show()

# %% [markdown]
# ## 2. Exact gradient flow
#
# With `A` frozen the flow `dB/dt = (M − BAᵀ)A` is linear: `B(t) = M A G⁻¹(I − e^{−tG})`. RK4 (the
# optimizer `"flow"`) is order 4; the adaptive Tsit5 (diffrax, optional) is error-controlled.

# %%
pb = H.make_problem(jax.random.key(0), H.ProblemSpec(m=m, n=n), with_w0=False)
A = jax.random.normal(jax.random.key(1), (n, r)) / jnp.sqrt(3 * n)
P0 = H.LoraParams(jnp.zeros((m, r)), A)
exact = theory.freeze_a_flow(A, pb.M, None, 1.0)
for dt in (0.1, 0.05, 0.025):
    f = flow.gradient_flow(P0, pb.objective, 1.0, form="freeze-a", t_end=1.0, saves=1, dt=dt)
    print(f"RK4 dt = {dt:<6} error {float(jnp.linalg.norm(f.params.B - exact)):.2e}")

# %% [markdown]
# ## 3. Catalogue checks with verdicts
#
# `hrp-sim verify` runs all twelve; here three cheap ones. Tolerances: expectations within 4 SE,
# bounds within 3 SE, pathwise identities at 1e-8.

# %%
result = verify.run_checks(
    ["aligned", "hrp-identities", "rank1"], verify.Settings(quick=SMOKE, progress=False)
)
print(verify_table(result))
assert result["passed"]
