"""Report of the end-to-end LoRA study (``hrp-sim lora``): the table, the files and figures.

Accuracies and their differences print in points; an interval is the bootstrap's 95 % interval
over seeds and test examples, ``p`` its Holm-adjusted p-value over every comparison of the form's
table. Below ``stats.MIN_SEEDS`` paired seeds a cell says "n too small".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..results import provenance, write_json, write_npz, write_text
from ..stats import MIN_SEEDS
from . import figures as study_figures
from .config import FORM_TITLE, LoraConfig


def _points(s: dict | None, sign: str = "") -> str:
    """``mean ± half-width`` in points (or why not)."""
    if s is None:
        return "—"
    if s.get("n_too_small"):
        return f"n too small ({s['n']})"
    lo, hi = s["ci95"]
    return f"{100 * s['mean']:{sign}.1f} [{100 * lo:{sign}.1f}, {100 * hi:{sign}.1f}]"


def _diff(s: dict | None) -> str:
    if s is None:
        return "—"
    text = _points(s, "+")
    if s.get("p_holm") is not None:
        text += f" p={s['p_holm']:.2g}"
    return text


def _curv(rec: dict) -> str:
    c = (rec.get("curvature") or {}).get("adapters+head")
    if not c:
        return "—"
    return f"{c['lam_max_mean']:.3g}/{c['lam_min_mean']:.3g}"


def _captured(rec: dict) -> str:
    c = rec.get("captured_target") or rec.get("captured_lora")
    return "—" if c is None else f"{c['whitened']['mean']:.3f}"


def form_table(summary: dict, form: str) -> list[str]:
    cfg, ref = summary["config"], summary["reference_init"]
    fs = summary["forms"][form]
    n_cmp = len(fs["holm_family"])
    lines = [
        f"{cfg['task']}, {FORM_TITLE[form]}: r={cfg['r']}, {cfg['steps']} main steps, "
        f"{cfg['seeds']} seeds, lr {cfg['lr']:g}, {summary['meta']['split_sizes']['test']} test "
        f"examples. Accuracy in %, [95 % bootstrap interval over seeds and test examples]; "
        f"Δ vs {ref} in points, p Holm-adjusted over the table's {n_cmp} comparisons",
        f"{'init':<17}{'test acc':>22}{'Δ same main steps':>30}{'equal budget: steps, Δ':>36}"
        f"{'λmax/λmin':>14}{'captured':>10}{'div':>5}",
    ]
    captured_what = "ΔW_ft" if summary["meta"]["bridge_target"] else "own update"
    for name, rec in fs["inits"].items():
        c = rec["common_lr"]
        eq = c["equal_total"]
        eq_text = (
            "no main step left"
            if eq["test_acc"] is None
            else f"{eq['main_steps']}: {_diff(eq.get('diff_test_acc'))}"
            if name != ref
            else f"{eq['main_steps']}: —"
        )
        lines.append(
            f"{name:<17}{_points(c['test_acc']):>22}{_diff(c.get('diff_test_acc')):>30}"
            f"{eq_text:>36}{_curv(c):>14}{_captured(c):>10}{c['n_diverged']:>5}"
        )
    lines.append(
        f"captured: whitened captured energy at init of the {captured_what}, mean over kernels; "
        "λmax/λmin: Hessian extremes at init over adapters + head (Lanczos)"
    )
    lines += _bridge_lines(fs)
    if len(cfg.get("lr_grid") or []) > 1:
        lines.append("tuned (each init at its best lr on validation, vs the reference at its own):")
        for name, rec in fs["inits"].items():
            lines.append(
                f"  {name:<15} best lr {rec['best_lr']:g}: {_points(rec['at_best_lr']['test_acc'])}"
                f"  Δ tuned {_diff(rec.get('diff_test_acc_tuned'))}"
            )
    return lines


def _rho(r: dict | None) -> str:
    if r is None or r["rho"] is None:
        n = 0 if r is None else r["n"]
        return f"n too small ({n} < {MIN_SEEDS})"
    how = "exact" if r["exact"] else f"{r['draws']:,} permutations"
    return f"ρ = {r['rho']:+.2f} (permutation p = {r['p']:.2g}, {how}, n = {r['n']})"


def _bridge_lines(fs: dict) -> list[str]:
    lines = []
    b = fs["bridge"]
    for field, what in (("captured_target", "ΔW_ft"), ("captured_lora", "own update")):
        r = b.get(f"{field}_vs_test_loss")
        if r is not None and r["inits"]:
            lines.append(
                f"bridge, across inits (captured energy of the {what} at init vs test loss): "
                + _rho(r)
            )
        for name, w in (b.get(f"{field}_vs_test_loss_within_init") or {}).items():
            lines.append(f"  within {name}, across its seeds: {_rho(w)}")
    t = fs.get("theory_order")
    if t is not None:
        order = " < ".join(t["order"])
        if "captured_whitened" in t:
            lines.append(
                f"theory's order {order} in captured energy: "
                + ", ".join(f"{v:.3f}" for v in t["captured_whitened"])
                + f" (kernels in order: {100 * t['kernels_in_order']:.0f} %)"
            )
        for key, v in t.items():
            if " - " in key:
                lines.append(
                    f"  {key}: test acc {_diff(v['test_acc'])} points, test loss "
                    f"{_points(v['test_loss'], '+')} (×0.01 nats)"
                )
    sh = fs.get("lam_max_vs_best_lr")
    if sh is not None:
        lines.append(
            "sharpness vs learning rate, across inits (λ_max at init, best lr): " + _rho(sh)
        )
    return lines


def table(summary: dict) -> str:
    """Every form's table, the bridge lines and the full fine-tune's reference row."""
    lines = []
    for form in summary["forms"]:
        lines += form_table(summary, form) + [""]
    ft = summary["meta"].get("full_finetune")
    if ft is not None:
        lines.append(
            f"full fine-tune (reference, {ft['command']}: every weight, {ft['steps']} steps of "
            f"{ft['batch_size']}×{ft['max_tokens']} tokens, lr {ft['lr']:g}, one seed, trained on "
            f"the {ft['train_examples']} training examples): "
            f"{100 * ft['test_accuracy']:.1f} % on the same {ft['test_examples']} test examples"
        )
    return "\n".join(lines).rstrip()


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
        for name, fig in study_figures.figures(summary, study, cfg).items():
            paths[name] = str(save_png(fig, out / f"{name}.png"))
    return paths
