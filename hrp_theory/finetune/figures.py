"""Figures of the end-to-end LoRA study (pyplot-free): per form ``curves_FORM`` (test accuracy
along the run and the paired difference against the reference, one panel per init), and
``accuracy``, ``bridge`` and, with a learning-rate grid, ``lr``, each with one panel per form.
Accuracies are in percent, every band is the bootstrap's 95 % interval (seeds and test examples),
clipped to [0, 100] where it is an accuracy."""

from __future__ import annotations

import math

import numpy as np

from ..plotting import COLORS, _subplots
from ..stats import curve_band
from .config import FORM_TITLE, LoraConfig, lr_label
from .inits import ORACLE_OF
from .runs import run_name
from .summary import SMOOTH


def _color(name: str):
    """An init's colour; the oracles take their synthetic counterparts' (``aligned-ft`` is
    ``aligned``'s green, ``aligned-ft-sigma`` ``aligned-sigma``'s olive)."""
    return COLORS.get(ORACLE_OF.get(name, name), "black")


def _pct(v):
    return np.array([np.nan if x is None else 100 * x for x in v], float)


def curves(summary: dict, study: dict, cfg: LoraConfig, form: str):
    """Test accuracy along the run (every checkpoint on the same test examples), the training
    loss, and one panel per init with its paired difference against the reference, all on one
    y-axis."""
    fs = summary["forms"][form]
    ref = summary["reference_init"]
    others = [n for n in fs["inits"] if n != ref]
    cols = max(2, min(4, len(others)))  # no empty columns when few inits ran
    rows = 1 + math.ceil(len(others) / cols)
    fig, axes = _subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows), squeeze=False)
    acc_ax, loss_ax = axes[0][0], axes[0][1]
    for ax in axes[0][2:]:
        ax.axis("off")
    for name, rec in fs["inits"].items():
        c = rec["common_lr"]["curve"]
        x = c["steps"]
        m, lo, hi = (np.clip(_pct(c["acc"][k]), 0, 100) for k in ("mean", "lo", "hi"))
        acc_ax.plot(x, m, "o-", ms=3, color=_color(name), label=name)
        acc_ax.fill_between(x, lo, hi, color=_color(name), alpha=0.12)
        loss = np.asarray(study["runs"][run_name(name, form, cfg.lr)]["train_loss"])
        k = min(SMOOTH, loss.shape[1])
        if k:
            sm = np.stack([np.convolve(r, np.ones(k) / k, mode="valid") for r in loss])
            loss_ax.plot(
                np.arange(k, loss.shape[1] + 1), curve_band(sm)["mean"], color=_color(name)
            )
    n_curve = summary["meta"]["curve_examples"]
    acc_ax.set(xlabel="main-run step", ylabel="test accuracy (%)", ylim=(0, 100))
    acc_ax.set_title(f"all inits ({n_curve} test examples at every step)", fontsize=8)
    acc_ax.legend(fontsize=6, ncol=2)
    loss_ax.set(xlabel="step", ylabel=f"training loss (running mean of {SMOOTH})")
    loss_ax.set_title("training loss, mean over seeds", fontsize=8)
    for ax, name in zip(axes[1:].ravel(), others):
        d = fs["inits"][name]["common_lr"]["curve"].get("diff")
        x = fs["inits"][name]["common_lr"]["curve"]["steps"]
        ax.axhline(0, color="k", lw=0.7)
        if d is not None:
            ax.plot(x, _pct(d["mean"]), "o-", ms=3, color=_color(name))
            ax.fill_between(x, _pct(d["lo"]), _pct(d["hi"]), color=_color(name), alpha=0.25)
        ax.set_title(f"{name} − {ref}", fontsize=9)
        ax.set(xlabel="main-run step", ylabel="Δ test accuracy (points)")
    diff_axes = axes[1:].ravel()[: len(others)]
    if len(diff_axes):  # one y-axis for every init's difference: "by how much" reads across
        lims = np.array([ax.get_ylim() for ax in diff_axes])
        for ax in diff_axes:
            ax.set_ylim(lims[:, 0].min(), lims[:, 1].max())
    for ax in axes[1:].ravel()[len(others) :]:
        ax.axis("off")
    fig.suptitle(
        f"{cfg.task}, {FORM_TITLE[form]}: r={cfg.r}, {cfg.seeds} seeds, lr {cfg.lr:g}\n"
        "bands: 95 % bootstrap over seeds and test examples",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def _errorbar(ax, x, s, **kw):
    if s is None or s.get("ci95") is None:
        if s is not None and s.get("mean") is not None and np.isfinite(s["mean"]):
            ax.plot([x], [100 * s["mean"]], kw.get("fmt", "o"), color=kw.get("color"))
        return
    m, (lo, hi) = 100 * s["mean"], (100 * v for v in s["ci95"])
    ax.errorbar([x], [m], yerr=[[m - lo], [hi - m]], capsize=3, **kw)


def accuracy(summary: dict, cfg: LoraConfig):
    """Test accuracy per init at the same main steps and at the same total budget, one panel per
    form, with the full fine-tune's reference line when it ran."""
    forms = list(summary["forms"])
    names = list(summary["forms"][forms[0]]["inits"])
    fig, axes = _subplots(
        1, len(forms), figsize=(max(6, 0.8 * len(names) + 2) * len(forms), 4.2), squeeze=False
    )
    ft = summary["meta"].get("full_finetune")
    for ax, form in zip(axes[0], forms):
        inits = summary["forms"][form]["inits"]
        for i, name in enumerate(names):
            c = inits[name]["common_lr"]
            _errorbar(ax, i - 0.12, c["test_acc"], fmt="o", color="k")
            _errorbar(ax, i + 0.12, c["equal_total"]["test_acc"], fmt="^", color="tab:orange")
        ax.plot([], [], "ko", label=f"{cfg.steps} main steps")
        ax.plot([], [], "^", color="tab:orange", label="same total budget")
        if ft is not None:
            ax.axhline(100 * ft["test_accuracy"], color="tab:green", ls="--", lw=1)
            ax.plot([], [], "--", color="tab:green", label="full fine-tune (1 seed)")
        ax.set_xticks(range(len(names)), names, rotation=35, fontsize=8)
        ax.set(ylabel="test accuracy (%)", title=f"{FORM_TITLE[form]}")
        ax.legend(fontsize=7)
    fig.suptitle(
        f"{cfg.task}: test accuracy\n95 % bootstrap intervals over {cfg.seeds} seeds and "
        f"{summary['meta']['split_sizes']['test']} test examples",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def bridge(summary: dict, cfg: LoraConfig):
    """The bridge, one panel per form: each init's mean final test loss against its mean
    whitened captured energy at init (of the full fine-tune's ΔW when it ran, else of the run's
    own update), with Spearman's ρ across inits and its permutation p."""
    forms = list(summary["forms"])
    field = "captured_target" if summary["meta"]["bridge_target"] else "captured_lora"
    what = "the full fine-tune's ΔW" if field == "captured_target" else "the run's own update"
    fig, axes = _subplots(1, len(forms), figsize=(5.6 * len(forms), 4.4), squeeze=False)
    for ax, form in zip(axes[0], forms):
        fs = summary["forms"][form]
        for name, rec in fs["inits"].items():
            c = rec["common_lr"]
            cap, loss = c[field]["whitened"], c["test_loss"]
            if loss.get("ci95") is None:
                continue
            ax.errorbar(
                cap["mean"],
                loss["mean"],
                xerr=[[cap["mean"] - cap["ci95"][0]], [cap["ci95"][1] - cap["mean"]]]
                if np.isfinite(cap["se"])
                else None,
                yerr=[[loss["mean"] - loss["ci95"][0]], [loss["ci95"][1] - loss["mean"]]],
                fmt="o",
                color=_color(name),
                capsize=2,
                label=name,
            )
        if not ax.get_legend_handles_labels()[0]:  # no init has an interval: say so
            ax.text(0.5, 0.5, "too few seeds for an interval", ha="center", transform=ax.transAxes)
        r = fs["bridge"][f"{field}_vs_test_loss"]
        rho = (
            f"ρ = {r['rho']:+.2f}, permutation p = {r['p']:.2g} ({r['n']} inits)"
            if r["rho"] is not None
            else "n too small for ρ"
        )
        ax.set_title(f"{FORM_TITLE[form]}\n{rho}", fontsize=9)
        ax.set(xlabel=f"captured energy at init of {what} (whitened)", ylabel="test loss")
    fig.suptitle(f"{cfg.task}: does the theory's captured energy predict the outcome?", fontsize=10)
    _legend_below(fig, axes[0])
    return fig


def _legend_below(fig, axes) -> None:
    """One legend for every init drawn in any of `axes`, below the panels where it hides no
    point, then the layout with a 4 % strip per legend row."""
    legend = {}
    for ax in axes:
        legend |= dict(zip(*ax.get_legend_handles_labels()[::-1]))
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=6, fontsize=7)
    fig.tight_layout(rect=(0, 0.04 * -(-len(legend) // 6), 1, 1))


def learning_rates(summary: dict, cfg: LoraConfig):
    """Validation accuracy against the learning rate, per init, one panel per form; ★ marks each
    init's best rate."""
    forms = list(summary["forms"])
    fig, axes = _subplots(1, len(forms), figsize=(6.5 * len(forms), 4.8), squeeze=False)
    for ax, form in zip(axes[0], forms):
        for name, rec in summary["forms"][form]["inits"].items():
            lrs = list(cfg.lrs)
            acc = [100 * rec["val_acc_by_lr"][lr_label(lr)] for lr in lrs]
            ax.plot(lrs, acc, "o-", color=_color(name), label=name, ms=3)
            best = 100 * rec["val_acc_by_lr"][lr_label(rec["best_lr"])]
            ax.plot([rec["best_lr"]], [best], "*", color=_color(name), ms=11)
        ax.set_xscale("log")
        ax.set_xticks(cfg.lrs, [f"{lr:g}" for lr in cfg.lrs])
        ax.minorticks_off()
        ax.set(xlabel="learning rate", ylabel="validation accuracy (%)", title=FORM_TITLE[form])
    fig.suptitle(f"{cfg.task}: each init's learning rate (★ best on validation)", fontsize=10)
    _legend_below(fig, axes[0])
    return fig


def figures(summary: dict, study: dict, cfg: LoraConfig) -> dict:
    out = {f"curves_{form}": curves(summary, study, cfg, form) for form in cfg.forms}
    out["accuracy"] = accuracy(summary, cfg)
    out["bridge"] = bridge(summary, cfg)
    if len(cfg.lrs) > 1:
        out["lr"] = learning_rates(summary, cfg)
    return out
