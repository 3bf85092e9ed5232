"""Figures. Each function returns a ``matplotlib.figure.Figure`` built without pyplot: nothing
here picks a backend or keeps figures alive, ``results.write_png`` saves one from any process
(no display needed), and a notebook shows a returned figure inline whatever its backend (the
figures render themselves as PNG, ``_repr_png_``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .results import write_png
from .stats import MIN_SEEDS, resolution


class ShownFigure(Figure):
    """A Figure that Jupyter shows as an image even before pyplot has set up its inline backend
    (IPython asks objects for ``_repr_png_``)."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100)
        return buf.getvalue()


def _subplots(*grid, figsize, **kw):
    """``(fig, axes)`` of a pyplot-free figure (same arguments as ``plt.subplots``)."""
    fig = ShownFigure(figsize=figsize)
    return fig, fig.subplots(*grid, **kw)


COLORS = {
    "kaiming": "tab:gray",
    "gaussian": "tab:brown",
    "aligned": "tab:green",
    "aligned-sigma": "tab:olive",
    "hrp": "tab:red",
    "hrp-sigma": "darkred",
    "hrp-2s": "tab:orange",
    "pissa": "tab:purple",
    "olora": "tab:pink",
    "lora-ga": "tab:blue",
    "lora-one": "tab:cyan",
    "eva": "gold",
    "corda": "teal",
}
#: The one label of the excess loss on every figure.
EXCESS = r"excess loss $L - L^{*}_{r}$"


def resolution_floor(summary: dict) -> float:
    """Smallest excess loss the dtype resolves at this loss scale (curves are clipped there)."""
    starts = [e["curve"]["mean"][0] for e in summary["inits"].values()]
    scale = max(
        [abs(summary["optimal_loss"]["mean"] or 0.0)]
        + [float(v) for v in starts if v is not None and np.isfinite(v)],
    )
    scale = scale if np.isfinite(scale) else 1.0
    return resolution(summary["provenance"]["dtype"], scale)


def _all_diverged(ax, names) -> None:
    """Say on an empty panel that no seed of ``names`` has a finite value to draw."""
    text = "every seed diverged: nothing to draw\n(" + ", ".join(names) + ")"
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_yticks([])


def _title(summary: dict) -> str:
    c = summary["config"]
    p = c.problem
    t = (
        f"m={p.m}, n={p.n}, r={c.lora.r}, {p.spectrum}, Σ={p.sigma}, {c.lora.form} LoRA, "
        f"{c.train.optimizer} lr={c.train.learning_rate:g}, {summary['seeds_done']} seeds"
    )
    if summary["seeds_done"] < MIN_SEEDS:
        t += f" (fewer than {MIN_SEEDS}: bands are not intervals a reader can trust)"
    if summary.get("preheat_rank"):
        t += f"\nHRP: p={summary['preheat_rank']}, T_p={c.hrp.steps} ({c.hrp.form} preheat)"
    return t


def _style_legend(ax, median: bool = True, floor: str | None = None) -> None:
    """Legend entries for the line styles themselves (black), after the per-init entries."""
    ax.plot([], [], color="k", lw=2, label="mean (band: 95% CI)")
    if median:
        ax.plot([], [], color="k", lw=1, ls="--", label="median")
    if floor:
        ax.plot([], [], color="k", lw=0.6, ls=":", label=floor)


def loss_curves(summary: dict) -> Figure:
    """Excess loss over the best rank-r loss vs step: mean with 95 % CI band, median dashed."""
    fig, ax = _subplots(figsize=(7.5, 4.8))
    floor = resolution_floor(summary)
    medians, drawn, diverged = False, 0, []
    for name, e in summary["inits"].items():
        c = e["excess_curve"]
        x, col = np.asarray(c["steps"]), COLORS.get(name)
        clip = lambda v: np.maximum(np.asarray(v, float), floor)
        if not np.any(np.isfinite(np.asarray(c["mean"], float))):
            diverged.append(name)
            ax.plot([], [], color=col, lw=2, label=f"{name}: every seed diverged")
            continue
        drawn += 1
        ax.plot(x, clip(c["mean"]), color=col, lw=2, label=name)
        ax.fill_between(x, clip(c["lo"]), clip(c["hi"]), color=col, alpha=0.2)
        if c["median"] is not None:  # None for a streamed run
            medians = True
            ax.plot(x, clip(c["median"]), color=col, lw=1, ls="--")
    if drawn:
        ax.axhline(floor, color="k", lw=0.6, ls=":")
        _style_legend(ax, medians, f"{summary['provenance']['dtype']} resolution (values clipped)")
        ax.set_yscale("log")
    else:
        ax.set_xlim(0, max(summary["steps"]))
        _all_diverged(ax, diverged)
    ax.set_xlabel("main-run step")
    ax.set_ylabel(EXCESS)
    ax.set_title(_title(summary), fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def final_distribution(summary: dict, res) -> Figure:
    """Distribution of the final excess loss per init over the seeds that did not diverge (box
    plot, log scale), from a run's per-seed results (an ``ExperimentResult``)."""
    names = list(summary["inits"])
    floor = resolution_floor(summary)
    view = res.view()
    data = []
    for n in names:
        x = np.asarray(view[n]["excess_loss"], float)
        data.append(np.maximum(x[np.isfinite(x)], floor))
    fig, ax = _subplots(figsize=(7.5, 4.2))
    bp = ax.boxplot(data, whis=(5, 95), showmeans=True, patch_artist=True)
    for patch, n in zip(bp["boxes"], names):
        patch.set_facecolor(COLORS.get(n, "white"))
        patch.set_alpha(0.5)
    labels = [n if d.size else f"{n}\n(every seed diverged)" for n, d in zip(names, data)]
    ax.set_xticks(range(1, len(names) + 1), labels)
    if any(d.size for d in data):
        ax.set_yscale("log")
    else:
        _all_diverged(ax, names)
    ax.set_ylabel(f"final {EXCESS}")
    ax.set_title(
        _title(summary) + "\nbox: quartiles, whiskers: 5–95 %, ▲: mean; clipped at the "
        f"{summary['provenance']['dtype']} resolution",
        fontsize=8,
    )
    ax.grid(alpha=0.3, axis="y", which="both")
    fig.tight_layout()
    return fig


def save_png(fig: Figure, path) -> Path:
    """Save ``fig`` as a PNG atomically."""
    return write_png(path, fig)


def save_figures(summary: dict, res, out_dir) -> dict:
    """``curves.png`` and (with per-seed arrays) ``distribution.png``."""
    out = Path(out_dir)
    paths = {"fig_curves": save_png(loss_curves(summary), out / "curves.png")}
    if res.per_seed is not None:  # the distribution needs the per-seed values
        paths["fig_distribution"] = save_png(
            final_distribution(summary, res), out / "distribution.png"
        )
    return paths


# --- figures of `hrp-sim verify` (inputs: the ``data`` entries of ``verify.run_checks``) ---------


def theorem_c_figure(data: dict) -> Figure:
    """E R_HRP vs preheat rank p (mean, 95 % CI) between Theorem C's two bounds, per spectrum."""
    fig, axes = _subplots(2, 2, figsize=(10, 7.5))
    for ax, (label, d) in zip(axes.ravel(), data.items()):
        grid, lo, hi = (np.asarray(d["bounds"][k]) for k in ("p", "lower", "upper"))
        ax.fill_between(grid, lo, hi, color="tab:blue", alpha=0.12)
        ax.plot(grid, hi, color="tab:blue", lw=1, label="Theorem C upper bound")
        ax.plot(grid, lo, color="tab:blue", lw=1, ls="--", label="Theorem C lower bound")
        ax.errorbar(
            d["p"],
            d["mean"],
            yerr=1.96 * np.asarray(d["se"]),
            fmt="o",
            ms=4,
            color=COLORS["hrp"],
            label="hrp: Monte Carlo mean, 95% CI",
        )
        ax.axhline(
            d["random"], color=COLORS["gaussian"], ls=":", label=r"gaussian (p = r): $(1 - r/n)F$"
        )
        ax.axhline(d["optimal"], color=COLORS["aligned"], ls="-.", label=r"aligned: $T_r$")
        ax.set_title(f"{label} ({d['spectrum']}), {d['seeds']} seeds", fontsize=9)
        ax.set_xlabel("preheat rank $p$")
        ax.set_ylabel(r"$R_{HRP} = \|M(I - \hat V_r \hat V_r^T)\|_F^2$")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(
        "Theorem C (docs/theory.md §5.2): converged freeze-A preheat, m = 48, n = 64, r = 4",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def transient_figure(data: dict) -> Figure:
    """Random Gaussian A, freeze-A gradient flow: MC mean loss vs the exact expected curve."""
    t, mean, se = (np.asarray(data[k]) for k in ("t", "mean", "se"))
    fig, ax = _subplots(figsize=(6.6, 4.2))
    ax.fill_between(t, mean - 1.96 * se, mean + 1.96 * se, color=COLORS["gaussian"], alpha=0.25)
    ax.plot(
        t,
        mean,
        color=COLORS["gaussian"],
        label=f"gaussian, RK4: mean (band: 95% CI), {data['seeds']} seeds",
    )
    ax.plot(
        t,
        data["theory"],
        "k--",
        lw=1,
        label=r"theory: $\frac{1}{2}(1-\frac{r}{n})F + \frac{F}{2n}\,"
        r"\mathbb{E}\,\mathrm{tr}\,e^{-2tA^TA}$",
    )
    ax.set_xscale("symlog", linthresh=0.5)
    ax.set_xlabel("time $t$")
    ax.set_ylabel("loss $L(t)$")
    ax.set_title(
        "Freeze-A learning curve (docs/theory.md §3.4), power:1, m = 48, n = 64, r = 4", fontsize=9
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def gap_figure(data: dict) -> Figure:
    """Classic LoRA (gradient flow): excess loss vs time for gaussian / HRP / aligned starts."""
    fig, ax = _subplots(figsize=(6.8, 4.4))
    t = np.asarray(data["t"])
    floor = 1e-15
    for name in ("gaussian", "hrp", "aligned"):
        label = name if name != "hrp" else f"hrp (p = {data['p']}, $T_p$ = {data['T_p']:g})"
        col = COLORS[name]
        ax.plot(t, np.maximum(data[name]["mean"], floor), color=col, lw=2, label=label)
        ax.plot(t, np.maximum(data[name]["median"], floor), color=col, lw=1, ls="--")
    ax.plot([], [], color="k", lw=2, label="mean")
    ax.plot([], [], color="k", lw=1, ls="--", label="median")
    ax.set_yscale("log")
    ax.set_xlabel("main-run time $t$")
    ax.set_ylabel(EXCESS + " (clipped at 1e-15)")
    ax.set_title(
        f"Finite-budget gap, classic LoRA, gap:4:0.1, ε = 0.01, {data['seeds']} seeds", fontsize=9
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def regimes_figure(data: dict) -> Figure:
    """HRP quality vs classic-preheat length T_p: simulated, linearised and first-order."""
    fig, ax = _subplots(figsize=(7.2, 4.6))
    t = np.asarray(data["t"])
    keep = t > 0
    for key, col in (("p4", "tab:purple"), ("p8", "tab:red"), ("p16", "tab:orange")):
        d = data[key]
        ax.plot(t[keep], np.asarray(d["ode"])[keep], color=col, lw=2, label=f"p = {key[1:]}")
        ax.plot(t[keep], np.asarray(d["linear"])[keep], color="k", lw=0.9, ls=(0, (3, 3)), zorder=3)
        ax.axhline(d["first_order"], color=col, lw=0.8, ls=":")
    ax.plot([], [], color="k", lw=2, label="simulated preheat (ODE), mean")
    ax.plot([], [], color="k", lw=0.9, ls=(0, (3, 3)), label="linearised closed form")
    ax.plot([], [], color="k", lw=0.8, ls=":", label="first-order predictor")
    ax.axhline(
        data["random"],
        color=COLORS["gaussian"],
        lw=1,
        ls="-.",
        label=r"gaussian: $\frac{1}{2}(1 - r/n)F$",
    )
    ax.axhline(
        data["optimal"], color=COLORS["aligned"], lw=1, ls="-.", label=r"aligned: $\frac{1}{2}T_r$"
    )
    ax.axvline(1 / data["sigma1"], color="k", lw=0.6)
    ax.axvline(data["tau_sat"], color="k", lw=0.6)
    top = ax.get_ylim()[1]
    ax.text(0.3, top, "first order", fontsize=8, va="top")
    ax.text(1.2, top, "linear", fontsize=8, va="top")
    ax.text(data["tau_sat"] * 1.1, top, "saturated", fontsize=8, va="top")
    ax.set_xscale("log")
    ax.set_xlabel(r"preheat length $T_p$ (classic gradient flow)")
    ax.set_ylabel(r"$\frac{1}{2}\|M(I - \hat V_r \hat V_r^T)\|^2$ of HRP's right vectors")
    ax.set_title(
        f"HRP regimes (docs/theory.md §5.4), gap:4:0.1, ε = {data['eps']}, {data['seeds']} seeds",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="center left")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


#: What each panel of the anisotropic figure shows (the ordering claim holds in one of them).
ANISO_SCOPE = {
    "random": "the ordering of docs/theory.md §6 holds here",
    "adversarial": "Σ's small eigenvalues on M's top directions: no ordering claim",
}


def anisotropic_figure(data: dict) -> Figure:
    """Converged freeze-A residual R̃ per direction, random vs adversarial Σ (mean, 95 % CI)."""
    fig, axes = _subplots(1, len(data), figsize=(11, 4.4))
    for ax, (basis, d) in zip(np.atleast_1d(axes), data.items()):
        names = [k for k in d if isinstance(d[k], dict)]
        mean = [d[k]["mean"] for k in names]
        err = [1.96 * d[k]["se"] for k in names]
        ax.bar(range(len(names)), mean, yerr=err, color="tab:blue", alpha=0.6, capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(
            f"Σ eigenbasis {basis} ({d['sigma']}), {d['seeds']} seeds\n"
            f"{ANISO_SCOPE.get(basis, '')}",
            fontsize=9,
        )
        ax.grid(alpha=0.3, axis="y")
    np.atleast_1d(axes)[0].set_ylabel(r"$\tilde R = \|(M - BA^T)\Sigma^{1/2}\|_F^2$")
    fig.suptitle(
        "Converged freeze-A residual per direction of A (docs/theory.md §6); bars: mean, 95% CI",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


VERIFY_FIGURES = {
    "theorem_c": theorem_c_figure,
    "transient": transient_figure,
    "gap": gap_figure,
    "regimes": regimes_figure,
    "anisotropic": anisotropic_figure,
}


def sweep_figure(rows: list, flag: str, dtype: str = "float32", title: str | None = None) -> Figure:
    """Final excess loss (mean with 95 % CI, median dashed) vs the first varied flag, one line per
    init; values are clipped at the dtype's resolution of the loss (drawn dotted), as in
    ``loss_curves``. ``title``: the sweep's fixed configuration."""
    losses = [abs(r["final_loss"] or np.nan) for r in rows]
    floor = resolution(dtype, max((v for v in losses if np.isfinite(v)), default=1.0))
    clip = lambda v: np.maximum(np.asarray(v, float), floor)

    xs = list(dict.fromkeys(r[flag] for r in rows))
    num = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    pos = {x: (x if num else i) for i, x in enumerate(xs)}
    fig, ax = _subplots(figsize=(6.8, 4.6))
    for name in dict.fromkeys(r["init"] for r in rows):
        rs = sorted((r for r in rows if r["init"] == name), key=lambda r: pos[r[flag]])
        x = np.array([pos[r[flag]] for r in rs], float)
        y, lo, hi = (
            clip([r[k] for r in rs]) for k in ("excess_loss", "excess_ci_lo", "excess_ci_hi")
        )
        col = COLORS.get(name)
        ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o-", color=col, capsize=3, label=name)
        med = [r["excess_median"] for r in rs]
        if all(v is not None for v in med):  # None in a streamed sweep
            ax.plot(x, clip(med), ls="--", color=col, lw=1)
    ax.axhline(floor, color="k", lw=0.6, ls=":")
    ax.plot([], [], "ko-", lw=1.5, label="mean, 95% CI")
    ax.plot([], [], color="k", lw=1, ls="--", label="median")
    ax.plot([], [], color="k", lw=0.6, ls=":", label=f"{dtype} resolution (values clipped)")
    finite = [r["excess_loss"] for r in rows if r["n"] and np.isfinite(r["excess_loss"])]
    if not num:
        ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=20)
    elif min(xs) > 0 and max(xs) / min(xs) >= 4:  # ranks 4, 8, 16, 32 are a geometric sweep
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
    if finite:
        ax.set_yscale("log")
    else:
        _all_diverged(ax, list(dict.fromkeys(r["init"] for r in rows)))
    ax.set_xlabel(flag)
    ax.set_ylabel(f"final {EXCESS}")
    if title:
        ax.set_title("sweep of " + flag + "; fixed: " + title, fontsize=7, wrap=True)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig
