"""Figures of the end-to-end LoRA study: ``curves``, ``accuracy``, ``bridge`` and, with a
learning-rate grid, ``lr`` (pyplot-free)."""

from __future__ import annotations

import numpy as np

from ..plotting import COLORS, _subplots
from ..stats import curve_band
from .config import LoraConfig, lr_label
from .runs import run_name
from .summary import SMOOTH, bridge_points


def _color(name: str):
    return COLORS.get(name, "black")


def curves(study: dict, cfg: LoraConfig):
    """Training loss (running mean over ``SMOOTH`` steps) and validation accuracy, mean and 95 %
    CI band over seeds, per init at the common learning rate."""
    fig, (a, b) = _subplots(1, 2, figsize=(11, 4))
    for name in cfg.inits:
        run = study["runs"][run_name(name, cfg.lr)]
        loss = np.asarray(run["train_loss"])
        k = min(SMOOTH, loss.shape[1])
        sm = np.stack([np.convolve(x, np.ones(k) / k, mode="valid") for x in loss])
        x = np.arange(k, loss.shape[1] + 1)
        band = curve_band(sm)
        a.plot(x, band["mean"], color=_color(name), label=name)
        a.fill_between(x, band["lo"], band["hi"], color=_color(name), alpha=0.15)
        vb = curve_band(run["val_acc"])
        b.plot(run["val_steps"], vb["mean"], "o-", color=_color(name), label=name, ms=3)
        b.fill_between(run["val_steps"], vb["lo"], vb["hi"], color=_color(name), alpha=0.15)
    a.axhline(cfg.target_loss, color="k", ls=":", lw=0.8, label="target loss")
    a.set(xlabel="step", ylabel=f"training loss (running mean of {SMOOTH})", title="training")
    b.set(xlabel="step", ylabel="validation accuracy", title="validation (95 % CI over seeds)")
    a.legend(fontsize=7, ncol=2)
    fig.suptitle(f"LoRA r={cfg.r} on {cfg.task}, {cfg.seeds} seeds, lr {cfg.lr:g}")
    fig.tight_layout()
    return fig


def accuracy(summary: dict, cfg: LoraConfig):
    """Test accuracy per init (mean and 95 % CI) at the common lr and at each init's best lr."""
    fig, ax = _subplots(1, 1, figsize=(max(6, 0.9 * len(cfg.inits) + 2), 4))
    names = list(summary["inits"])
    x = np.arange(len(names))
    grid = cfg.lr_grid is not None
    for dx, key, label in ((-0.15, "common_lr", f"lr {cfg.lr:g}"), (0.15, "at_best_lr", "best lr")):
        if key == "at_best_lr" and not grid:
            continue
        m = np.array([summary["inits"][n][key]["test_acc"]["mean"] for n in names])
        ci = np.array([summary["inits"][n][key]["test_acc"]["ci95"] for n in names], float)
        err = np.abs(ci.T - m)
        ax.errorbar(
            x + (dx if grid else 0),
            m,
            yerr=err,
            fmt="o" if key == "common_lr" else "s",
            capsize=3,
            label=label,
            color="k" if key == "common_lr" else "tab:red",
        )
    if "hrp" in names:
        e = summary["inits"]["hrp"]["common_lr"]["test_acc_equal_total"]
        i = names.index("hrp")
        ax.errorbar(
            i + 0.3,
            e["mean"],
            yerr=[[e["mean"] - e["ci95"][0]], [e["ci95"][1] - e["mean"]]],
            fmt="^",
            color="tab:orange",
            capsize=3,
            label="hrp, same total steps",
        )
    ax.set_xticks(x, names, rotation=30)
    ax.set(
        ylabel="test accuracy", title=f"{cfg.task}: test accuracy, 95 % CI over {cfg.seeds} seeds"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def bridge(summary: dict, study: dict, cfg: LoraConfig):
    """Final test loss against the mean whitened captured energy at init, one point per
    (init, seed): of the full fine-tune's ΔW when it exists, and of the run's own final update."""
    pts = bridge_points(study, cfg, cfg.lr)
    panels = [("own", "own final LoRA update", "own_update")]
    if all("target" in p for p in pts.values()):
        panels.insert(0, ("target", "full fine-tune's ΔW", "full_finetune"))
    fig, axes = _subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (field, what, key) in zip(axes[0], panels):
        for name, p in pts.items():
            ax.scatter(p[field], p["test_loss"], color=_color(name), label=name, s=18)
        rho = summary["bridge"][key]
        title = f"captured energy at init of the {what}"
        if rho["rho"] is not None:
            title += f"\nSpearman ρ = {rho['rho']:+.2f} (p = {rho['p']:.2g})"
        ax.set(
            xlabel="whitened captured energy at init (mean over kernels)",
            ylabel="test loss",
            title=title,
        )
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def learning_rates(summary: dict, cfg: LoraConfig):
    """Validation accuracy (mean over seeds) against the learning rate, per init, with each
    init's λ_max at init in the legend and its best rate marked."""
    fig, ax = _subplots(1, 1, figsize=(6.5, 4.2))
    for name, rec in summary["inits"].items():
        lrs = sorted(float(k) for k in rec["val_acc_by_lr"])
        acc = [rec["val_acc_by_lr"][lr_label(lr)] for lr in lrs]
        lam = rec["common_lr"].get("lam_max", {}).get("mean")
        label = name if lam is None else f"{name} (λ_max {lam:.3g})"
        ax.plot(lrs, acc, "o-", color=_color(name), label=label, ms=3)
        ax.plot(
            [rec["best_lr"]],
            [rec["val_acc_by_lr"][lr_label(rec["best_lr"])]],
            "*",
            color=_color(name),
            ms=11,
        )
    ax.set_xscale("log")
    ax.set_xticks(cfg.lrs, [f"{lr:g}" for lr in cfg.lrs])  # the grid's rates, not log-minor labels
    ax.minorticks_off()
    ax.set(
        xlabel="learning rate",
        ylabel=f"validation accuracy (mean of {cfg.seeds} seeds)",
        title=f"{cfg.task}: each init's learning rate (★ best on validation)",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def figures(summary: dict, study: dict, cfg: LoraConfig) -> dict:
    out = {
        "curves": curves(study, cfg),
        "accuracy": accuracy(summary, cfg),
        "bridge": bridge(summary, study, cfg),
    }
    if cfg.lr_grid is not None and len(cfg.lrs) > 1:
        out["lr"] = learning_rates(summary, cfg)
    return out
