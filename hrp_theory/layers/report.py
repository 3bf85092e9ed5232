"""Report of the per-layer study: terminal table, JSON (the ``hrp-sim real`` contract), per-seed
npz and the layers × inits heatmaps."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..results import provenance, write_json, write_npz, write_text

METRICS = (
    ("captured_energy", r"captured energy of $[\Delta W]_r$ (raw)", "viridis", False),
    (
        "captured_energy_whitened",
        r"captured energy of $[\Delta W \Sigma^{1/2}]_r$ (whitened)",
        "viridis",
        False,
    ),
    ("loss_freeze_a_limit", r"excess loss $(L - L^*_r)/L(0)$, freeze-A limit", "magma_r", True),
    ("loss", r"excess loss $(L - L^*_r)/L(0)$, K classic steps", "magma_r", True),
)


_SHORT = {
    "attention/self/query": "q",
    "attention/self/key": "k",
    "attention/self/value": "v",
    "attention/output/dense": "attn.out",
    "intermediate/dense": "ffn.in",
    "output/dense": "ffn.out",
}


def short(path: str) -> str:
    """``encoder/layer/3/attention/self/query`` → ``L3.q`` (other paths unchanged)."""
    m = re.match(r"encoder/layer/(\d+)/(.+)$", path)
    if m and m.group(2) in _SHORT:
        return f"L{m.group(1)}.{_SHORT[m.group(2)]}"
    return path


def matrix(report: dict, metric: str) -> np.ndarray:
    """``(layers, inits)`` means of one metric."""
    inits = report["config"]["inits"]
    return np.array(
        [[L["inits"][i][metric]["mean"] for i in inits] for L in report["layers"]], dtype=float
    )


def table(report: dict) -> str:
    """Per layer: captured energy (raw) and classic loss after K steps per init, and the optimum."""
    inits = report["config"]["inits"]
    w = max(9, *(len(i) for i in inits)) + 1
    head = f"{'layer':<16}{'shape':>10}{'optimal':>9} │ " + "".join(f"{i:>{w}}" for i in inits)
    lines = [
        f"captured energy of ΔW's top-r subspace (raw) │ loss after "
        f"{report['config']['steps']} classic steps / L(0)",
        head,
        "─" * len(head),
    ]
    for L in report["layers"]:
        shape = "×".join(map(str, L["shape"]))
        ce = "".join(f"{L['inits'][i]['captured_energy']['mean']:>{w}.3f}" for i in inits)
        lo = "".join(_num(L["inits"][i]["loss"], w) for i in inits)
        lines.append(f"{short(L['path']):<16}{shape:>10}{'':>9} │ {ce}")
        lines.append(f"{'':<16}{'':>10}{L['optimal_loss']:>9.3f} │ {lo}")
    return "\n".join(lines)


def _num(s: dict, w: int) -> str:
    if s["diverged"] and s["n"] == 0:
        return f"{'diverged':>{w}}"
    return f"{s['mean']:>{w}.3f}" + ("*" if s["diverged"] else "")


def heatmap(report: dict):
    """Four panels, layers × inits: captured energy (raw, whitened), freeze-A limit loss and
    classic loss after K steps (both relative to L(0); diverged runs grey)."""
    import matplotlib
    from matplotlib.colors import LogNorm, Normalize

    from ..plotting import ShownFigure

    inits = report["config"]["inits"]
    names = [short(L["path"]) for L in report["layers"]]
    fig = ShownFigure(figsize=(4.2 * len(METRICS), max(4.0, 1.8 + 0.22 * len(names))))
    axes = fig.subplots(1, len(METRICS), sharey=True)
    for ax, (metric, title, cmap, is_loss) in zip(axes, METRICS):
        X = matrix(report, metric)
        cm = matplotlib.colormaps[cmap].with_extremes(bad="lightgrey")
        if is_loss:  # excess over the best rank-r loss, on a log scale
            X = X - np.array([L["optimal_loss"] for L in report["layers"]])[:, None]
            norm = LogNorm(vmin=1e-3, vmax=1.0, clip=True)
        else:
            norm = Normalize(vmin=0.0, vmax=1.0)
        im = ax.imshow(np.ma.masked_invalid(X), aspect="auto", cmap=cm, norm=norm)
        ax.set_xticks(range(len(inits)), inits, rotation=60, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
        if is_loss:
            ax.set_xlabel("grey: diverged", fontsize=7)
    axes[0].set_yticks(range(len(names)), names, fontsize=7)
    c = report["config"]
    ck = Path(report["inputs"]["checkpoint"])
    fig.suptitle(
        f"{ck.parent.name}/{ck.name}: r = {c['r']}, p = {c['p']}, "
        f"Σ = {c['sigma']}, ΔW = {Path(str(report['inputs']['delta'])).name}, "
        f"{c['seeds']} seeds",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def save(report: dict, out_dir, json_path=None, figures: bool = True) -> dict:
    """Write ``report.json`` (contract), ``per_seed.npz``, ``table.txt`` and ``heatmap.png``."""
    from ..plotting import save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in report.items() if k != "per_seed"} | {"provenance": provenance()}
    paths = {"json": str(write_json(out / "report.json", body))}
    if json_path is not None:
        paths["json_copy"] = str(write_json(json_path, body))
    flat = {
        f"{layer}|{name}|{metric}": np.asarray(v)
        for layer, per in report["per_seed"].items()
        for name, rec in per.items()
        for metric, v in (rec.items() if isinstance(rec, dict) else [("value", rec)])
    }
    paths["per_seed"] = str(write_npz(out / "per_seed.npz", flat))
    paths["table"] = str(write_text(out / "table.txt", table(report) + "\n"))
    if figures and report["layers"]:
        paths["heatmap"] = str(save_png(heatmap(report), out / "heatmap.png"))
    return paths
