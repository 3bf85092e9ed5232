"""Report of the end-to-end LoRA study (``hrp-sim lora``): statistics, table, files, figures.

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

from pathlib import Path
from typing import Any

import numpy as np

from ..inits import reference_init
from ..results import jsonable, new_run_id, provenance, write_json, write_npz, write_text
from ..stats import DIVERGENCE_RULE, diverged, paired_difference, summarize
from .config import LoraConfig, lr_label

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
    from .lora_study import run_name

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
    from .lora_study import run_name

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


def table(summary: dict) -> str:
    """Per init: test accuracy (mean ± 95 % CI half-width) and paired difference vs the
    reference at the common lr, the best lr and its accuracy, λ_max and steps to target."""
    cfg = summary["config"]
    ref = summary["reference_init"]
    lines = [
        f"{cfg['task']}: r={cfg['r']}, {cfg['steps']} steps, {cfg['seeds']} seeds, common lr "
        f"{cfg['lr']:g}; Δ = paired difference vs {ref} (accuracy points)",
        f"{'init':<10}{'test acc':>16}{'Δ vs ' + ref:>18}{'best lr':>9}{'acc @best':>16}"
        f"{'Δ tuned':>16}{'λ_max':>9}{'steps→L*':>10}{'div':>5}",
    ]
    pct = lambda s, sign="": f"{100 * s['mean']:{sign}.1f} ± {100 * (s['ci95'][1] - s['mean']):.1f}"
    diff = lambda d: "" if d is None else pct(d, "+")
    for name, rec in summary["inits"].items():
        c = rec["common_lr"]
        lam = c.get("lam_max", {}).get("mean", float("nan"))
        st = c["steps_to_target"]
        lines.append(
            f"{name:<10}{pct(c['test_acc']):>16}{diff(c.get('diff_test_acc')):>18}"
            f"{rec['best_lr']:>9g}{pct(rec['at_best_lr']['test_acc']):>16}"
            f"{diff(rec.get('diff_test_acc_tuned')):>16}{lam:>9.3g}"
            f"{st['mean']:>7.0f} {st['reached']}/{st['n'] + st['n_nonfinite']}"
            f"{c['n_diverged']:>4}"
        )
    if "hrp" in summary["inits"]:
        e = summary["inits"]["hrp"]["common_lr"]
        lines.append(
            f"hrp at the same total budget ({cfg['steps'] - cfg['preheat_steps']} main + "
            f"{cfg['preheat_steps']} preheat steps): {pct(e['test_acc_equal_total'])}"
        )
    ft = summary["meta"].get("full_finetune")
    if ft is not None:
        lines.append(
            f"full fine-tune (reference, {ft['command']}: every weight, {ft['steps']} steps of "
            f"{ft['batch_size']}×{ft['max_tokens']} tokens, lr {ft['lr']:g}, one seed, its own "
            f"{ft['held_out_examples']}-sentence held-out split): "
            f"{100 * ft['held_out_accuracy']:.1f} %"
        )
    sh = summary.get("lam_max_vs_best_lr")
    if sh is not None and sh["rho"] is not None:
        lines.append(
            f"sharpness vs learning rate: Spearman ρ(λ_max at init, best lr) = {sh['rho']:+.2f} "
            f"(p = {sh['p']:.2g}, n = {sh['n']} inits)"
        )
    for k, v in summary["bridge"].items():
        if v["rho"] is not None:
            lines.append(
                f"bridge ({k.replace('_', ' ')}): Spearman ρ(captured energy at init, test loss) "
                f"= {v['rho']:+.2f} (p = {v['p']:.2g}, n = {v['n']})"
            )
    return "\n".join(lines)


def per_seed(study: dict) -> dict:
    """Flat ``{"run|field": array}`` of every run (for ``per_seed.npz``)."""
    return {
        f"{run}|{f}": np.asarray(v)
        for run, arrs in study["runs"].items()
        for f, v in arrs.items()
        if not f.startswith("seed0|")  # the exported adapter stays in runs/
    }


def save(
    summary: dict, study: dict, cfg: LoraConfig, out_dir, json_path=None, figures=True
) -> dict:
    """Write ``summary.json``, ``per_seed.npz`` (same ``run_id``), ``table.txt`` and figures."""
    from ..plotting import save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    body = summary | {"provenance": provenance()}
    paths = {"summary": str(write_json(out / "summary.json", body))}
    if json_path is not None:
        paths["json"] = str(write_json(json_path, body))
    flat = per_seed(study) | {"run_id": np.asarray(summary["run_id"])}
    paths["per_seed"] = str(write_npz(out / "per_seed.npz", flat))
    paths["table"] = str(write_text(out / "table.txt", table(summary) + "\n"))
    if figures:
        from . import lora_figures

        for name, fig in lora_figures.figures(summary, study, cfg).items():
            paths[name] = str(save_png(fig, out / f"{name}.png"))
    return paths
