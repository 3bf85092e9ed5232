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
# # Quickstart: where does LoRA end up, and how much does HRP help?
#
# We fit a rank-r LoRA `s·B Aᵀ` to a synthetic target `M = ΔW` with a power-law spectrum and
# compare three initialisations on the *same* targets (paired Monte Carlo):
#
# * `kaiming` — PEFT's default, `A ~ U(−1/√n, 1/√n)`, `B = 0`;
# * `aligned` — the oracle, `A = c·V_r(M)`;
# * `hrp` — High-Rank Preheating: a rank-p LoRA trained for `T_p` steps, then `A = c·V̂_r` from
#   the SVD of the preheated `B_p A_pᵀ` (never formed: thin QR of both factors + a p×p SVD).
#
# Set `HRP_SMOKE=1` to run everything at a tiny size (that is what CI does).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

import hrp_theory as H

H.configure()  # one XLA CPU device per core, before JAX starts (what hrp-sim does)
SMOKE = os.environ.get("HRP_SMOKE") == "1"
SEEDS = 16 if SMOKE else 200
STEPS = 40 if SMOKE else 300

# %% [markdown]
# ## 1. Classic LoRA with gradient descent: the finite-budget gap

# %%
config = H.ExperimentConfig(
    problem=H.ProblemSpec(m=64, n=64, spectrum="power:1"),
    lora=H.LoraSpec(r=4, form="classic"),
    train=H.TrainSpec(optimizer="gd", lr=0.1, steps=STEPS),
    hrp=H.HrpSpec(rank=16, steps=20),
    inits=("kaiming", "aligned", "hrp"),
    seeds=SEEDS,
)
result = H.run_experiment(config, progress=False)
summary = H.summarize_experiment(result)
print(H.table(summary))

# %%
from hrp_theory.plotting import final_distribution, loss_curves

loss_curves(summary)

# %%
final_distribution(summary, result)

# %% [markdown]
# ## 2. Asymmetric LoRA (A frozen): the endpoint is decided at initialisation
#
# With `A` frozen, gradient flow sends `B Aᵀ → M P_A`, so the final residual is
# `R = ‖M(I − P_A)‖²`. For a random `A`, `E R = (1 − r/n)‖M‖²_F`; for the aligned `A` it is the
# Eckart–Young optimum `T_r = Σ_{i>r} σ_i²`. HRP with a converged freeze-A preheat of rank p picks
# the best r directions inside a random p-dimensional subspace, so it moves from random (p = r) to
# optimal (p = n).

# %%
m, n, r = 48, 64, 4
ps = [4, 8, 16, 32, 48] if not SMOKE else [4, 16, 48]
sigma = H.spectrum_values("power:1", min(m, n))
F, T_r = float((sigma**2).sum()), float((sigma[r:] ** 2).sum())
means, halfwidths = [], []
for p in ps:
    cfg = H.ExperimentConfig(
        problem=H.ProblemSpec(m=m, n=n, spectrum="power:1"),
        lora=H.LoraSpec(r=r, form="freeze-a"),
        train=H.TrainSpec(
            optimizer="gd",
            lr=1.5,
            steps=300 if not SMOKE else 100,
            record_every=300 if not SMOKE else 100,
        ),
        hrp=H.HrpSpec(rank=p, steps="converged", form="freeze-a"),
        inits=("hrp",),
        seeds=SEEDS,
    )
    R = 2 * H.run_experiment(cfg, progress=False).per_seed["hrp"]["final_loss"]
    s = H.summarize(R)
    means.append(s["mean"])
    halfwidths.append(s["mean"] - s["ci95"][0])

fig, ax = plt.subplots(figsize=(6, 4))
ax.errorbar(ps, means, yerr=halfwidths, fmt="o-", color="tab:red", label="HRP (mean, 95% CI)")
ax.axhline((1 - r / n) * F, color="tab:gray", ls="--", label="random: (1 − r/n)F")
ax.axhline(T_r, color="tab:green", ls="--", label="aligned: T_r (optimal)")
ax.set_xlabel("preheat rank p")
ax.set_ylabel("final residual R = ‖M − BAᵀ‖²")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 3. One preheat, by hand
#
# `preheat_then_svd` is the routine HRP is made of; the real-layer module calls the same function.

# %%
import jax

problem = H.make_problem(jax.random.key(0), H.ProblemSpec(m=64, n=64, spectrum="power:1"))
A_p = jax.random.uniform(jax.random.key(1), (64, 16), minval=-1 / 8, maxval=1 / 8)
pre = H.preheat_then_svd(A_p, problem.objective, 1.0, 0.1, r=4, form="classic", steps=20)
angles = H.principal_angles(problem.target.V[:, :4], pre.V)
print("principal angles between V̂_4 and V_4 (degrees):", np.round(np.asarray(angles), 1))
