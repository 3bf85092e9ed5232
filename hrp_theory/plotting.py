"""Figures (functions return matplotlib Figures; nothing calls ``plt.show``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = {"kaiming": "tab:gray", "gaussian": "tab:brown", "aligned": "tab:green",
          "aligned-sigma": "tab:olive", "hrp": "tab:red", "pissa": "tab:purple",
          "olora": "tab:pink", "lora-ga": "tab:blue", "lora-one": "tab:cyan"}


def resolution_floor(summary: dict) -> float:
    """Smallest excess loss the dtype resolves at this loss scale (curves are clipped there)."""
    eps = np.finfo(np.float64 if summary["provenance"]["dtype"] == "float64" else np.float32).eps
    scale = max(abs(summary["optimal_loss"]["mean"] or 0.0),
                max(e["curve"]["mean"][0] for e in summary["inits"].values()))
    return 10 * eps * scale


def _title(summary: dict) -> str:
    c = summary["config"]
    p = c.problem
    t = (f"m={p.m}, n={p.n}, r={c.lora.r}, {p.spectrum}, Σ={p.sigma}, {c.lora.form} LoRA, "
         f"{c.train.optimizer} lr={c.train.learning_rate:g}, {summary['seeds_done']} seeds")
    if summary.get("preheat_rank"):
        t += f"\nHRP: p={summary['preheat_rank']}, T_p={c.hrp.steps} ({c.hrp.form} preheat)"
    return t


def loss_curves(summary: dict) -> plt.Figure:
    """Excess loss over the best rank-r loss vs step: mean with 95 % CI band, median dashed."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    floor = resolution_floor(summary)
    for name, e in summary["inits"].items():
        c = e["excess_curve"]
        x, col = np.asarray(c["steps"]), COLORS.get(name)
        clip = lambda v: np.maximum(np.asarray(v, float), floor)  # noqa: E731
        ax.plot(x, clip(c["mean"]), color=col, lw=2, label=f"{name} (mean, 95% CI)")
        ax.fill_between(x, clip(c["lo"]), clip(c["hi"]), color=col, alpha=0.2)
        ax.plot(x, clip(c["median"]), color=col, lw=1, ls="--")
    ax.axhline(floor, color="k", lw=0.6, ls=":")
    ax.text(x[-1], floor, f"{summary['provenance']['dtype']} resolution ", ha="right",
            va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("main-run step")
    ax.set_ylabel("excess loss  L − L*_r")
    ax.set_title(_title(summary), fontsize=8)
    ax.plot([], [], color="k", ls="--", lw=1, label="median")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def final_distribution(summary: dict, res) -> plt.Figure:
    """Distribution of the final excess loss per init (box plot over seeds, log scale)."""
    names = list(summary["inits"])
    data = []
    for n in names:
        x = np.asarray(res.per_seed[n]["excess_loss"], float)
        x = x[np.isfinite(x)]
        data.append(np.maximum(x, resolution_floor(summary)))
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    bp = ax.boxplot(data, whis=(5, 95), showmeans=True, patch_artist=True)
    for patch, n in zip(bp["boxes"], names):
        patch.set_facecolor(COLORS.get(n, "white"))
        patch.set_alpha(0.5)
    ax.set_xticks(range(1, len(names) + 1), names)
    ax.set_yscale("log")
    ax.set_ylabel("final excess loss (whiskers 5–95 %, ▲ mean)\nclipped at the dtype resolution")
    ax.set_title(_title(summary), fontsize=8)
    ax.grid(alpha=0.3, axis="y", which="both")
    fig.tight_layout()
    return fig


def save_figures(summary: dict, res, out_dir) -> dict:
    out = Path(out_dir)
    paths = {}
    for key, fig in (("fig_curves", loss_curves(summary)),
                     ("fig_distribution", final_distribution(summary, res))):
        path = out / (key.removeprefix("fig_") + ".png")
        tmp = path.with_name("." + path.name + ".tmp.png")
        fig.savefig(tmp, dpi=120)
        tmp.replace(path)
        plt.close(fig)
        paths[key] = path
    return paths
