"""Statistics of the end-to-end LoRA study (``hrp-sim lora``): the ``summary.json`` contract.

Per init, at the common learning rate and at its own best one (chosen on the validation split
when a grid ran): test accuracy and loss (mean, SE, 95 % CI), the paired difference against the
reference init (``kaiming`` when it ran; with a grid also "tuned against tuned": each init at its
best learning rate against the reference at the reference's best), HRP at the same total budget
(preheat steps counted), steps to reach the target training loss, λ_max of the loss Hessian at
init and GD's stability threshold ``2/λ_max``. The bridge: Spearman's rank correlation, across
(init, seed), between the mean whitened captured energy at init and the final test loss. Seeds
that break the divergence rule (``stats.DIVERGENCE_RULE``) on their training loss are counted
and left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..inits import reference_init
from ..results import jsonable, new_run_id
from ..stats import DIVERGENCE_RULE, diverged, paired_difference, summarize
from .config import LoraConfig, lr_label
from .runs import run_name

SMOOTH = 10  # steps of the running mean the target-loss crossing is read from


def steps_to(losses: np.ndarray, target: float) -> np.ndarray:
    """First step (1-based) whose running mean over ``SMOOTH`` steps is ≤ ``target`` (inf if
    never), per seed."""
    k = min(SMOOTH, losses.shape[1])
    run = np.stack([np.convolve(row, np.ones(k) / k, mode="valid") for row in losses])
    hit = run <= target
    first = np.argmax(hit, axis=1) + k
    return np.where(hit.any(axis=1), first, np.inf).astype(np.float64)


def _outcomes(run: dict) -> dict:
    """Per-seed outcomes of a run, NaN where the seed diverged."""
    bad = diverged(run["train_loss"])
    keep = lambda x: np.where(bad, np.nan, np.asarray(x, np.float64))
    out = {
        f: keep(run[f])
        for f in (
            "test_acc",
            "test_loss",
            "test_acc_equal_total",
            "test_loss_equal_total",
            "val_acc_final",
        )
    }
    out["diverged"] = bad
    return out


def _init_stats(run: dict, ref: dict | None, cfg: LoraConfig) -> dict:
    o = _outcomes(run)
    rec = {
        "n_diverged": int(o["diverged"].sum()),
        "test_acc": summarize(o["test_acc"]),
        "test_loss": summarize(o["test_loss"]),
        "test_acc_equal_total": summarize(o["test_acc_equal_total"]),
        "val_acc": summarize(o["val_acc_final"]),
        "seconds": float(run["seconds"]),
    }
    hit = steps_to(run["train_loss"], cfg.target_loss)
    rec["steps_to_target"] = summarize(hit) | {"reached": int(np.isfinite(hit).sum())}
    if "lam_max" in run:
        lam = np.asarray(run["lam_max"], np.float64)
        rec["lam_max"] = summarize(lam)
        rec["gd_stability_lr"] = summarize(
            np.where(lam > 0, 2.0 / np.where(lam > 0, lam, 1), np.nan)
        )
    for f in ("captured_lora", "captured_target"):
        if f in run:
            c = np.asarray(run[f], np.float64).mean(axis=1)  # (S, 2): mean over kernels
            rec[f] = {"raw": summarize(c[:, 0]), "whitened": summarize(c[:, 1])}
    if ref is not None:
        r = _outcomes(ref)
        rec["diff_test_acc"] = paired_difference(o["test_acc"], r["test_acc"])
        rec["diff_test_loss"] = paired_difference(o["test_loss"], r["test_loss"])
        rec["diff_test_acc_equal_total"] = paired_difference(
            o["test_acc_equal_total"], r["test_acc"]
        )
    return rec


def spearman(x, y) -> dict:
    """Spearman's ρ of the finite pairs, with its two-sided p-value."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return {"rho": None, "p": None, "n": int(ok.sum())}
    res: Any = spearmanr(x[ok], y[ok])
    return {"rho": float(res[0]), "p": float(res[1]), "n": int(ok.sum())}


def bridge_points(study: dict, cfg: LoraConfig, lr: float) -> dict:
    """Per (init, seed) at ``lr``: whitened captured energy at init (of the full fine-tune's ΔW
    when it exists, and of the run's own final update) and the final test loss."""
    pts = {}
    for name in cfg.inits:
        run = study["runs"][run_name(name, lr)]
        o = _outcomes(run)
        pts[name] = {
            "test_loss": o["test_loss"],
            "own": np.asarray(run["captured_lora"])[..., 1].mean(1),
        }
        if "captured_target" in run:
            pts[name]["target"] = np.asarray(run["captured_target"])[..., 1].mean(1)
    return pts


def summarize_study(study: dict, cfg: LoraConfig) -> dict:
    """The ``summary.json`` contract (README, "hrp-sim lora")."""
    ref_name = reference_init(cfg.inits)
    runs = study["runs"]
    by_lr = {
        lr: {
            name: _init_stats(
                runs[run_name(name, lr)],
                None if name == ref_name else runs[run_name(ref_name, lr)],
                cfg,
            )
            for name in cfg.inits
        }
        for lr in cfg.lrs
    }
    inits = {}
    for name in cfg.inits:
        val = {lr: by_lr[lr][name]["val_acc"]["mean"] for lr in cfg.lrs}
        best = max(cfg.lrs, key=lambda lr: -np.inf if not np.isfinite(val[lr]) else val[lr])
        inits[name] = {
            "common_lr": by_lr[cfg.lr][name],
            "best_lr": best,
            "at_best_lr": by_lr[best][name],
            "val_acc_by_lr": {lr_label(lr): val[lr] for lr in cfg.lrs},
        }
    # tuned against tuned: each init at its best lr against the reference at the reference's
    # own best lr, paired by seed (the same seeds, data order and heads)
    ref_best = _outcomes(runs[run_name(ref_name, inits[ref_name]["best_lr"])])
    for name in cfg.inits:
        if name != ref_name:
            o = _outcomes(runs[run_name(name, inits[name]["best_lr"])])
            inits[name]["diff_test_acc_tuned"] = paired_difference(
                o["test_acc"], ref_best["test_acc"]
            )
    sharpness = None
    lam = {n: r["common_lr"].get("lam_max", {}).get("mean") for n, r in inits.items()}
    if len(cfg.lrs) > 1 and all(v is not None for v in lam.values()):
        # the λ_max prediction: a sharper init wants a smaller learning rate
        sharpness = spearman([lam[n] for n in cfg.inits], [inits[n]["best_lr"] for n in cfg.inits])
    pts = bridge_points(study, cfg, cfg.lr)
    cat = lambda f: (
        np.concatenate([p[f] for p in pts.values()]) if all(f in p for p in pts.values()) else None
    )
    loss = cat("test_loss")
    bridge = {"own_update": spearman(cat("own"), loss)}
    if cat("target") is not None:
        bridge["full_finetune"] = spearman(cat("target"), loss)
    return {
        "run_id": new_run_id(),
        "config": jsonable(cfg),
        "reference_init": ref_name,
        "divergence_rule": DIVERGENCE_RULE,
        "meta": study["meta"],
        "inits": inits,
        "bridge": bridge,
        "lam_max_vs_best_lr": sharpness,
        "units": "accuracy in [0, 1]; loss: mean cross-entropy (nats); lam_max of the loss "
        "Hessian over adapters and head at init; captured energy: mean over kernels, whitened",
    }
