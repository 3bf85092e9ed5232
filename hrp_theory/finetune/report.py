"""Report of the end-to-end LoRA study (``hrp-sim lora``): the table, the files and figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..results import provenance, write_json, write_npz, write_text
from . import figures as study_figures
from .config import LoraConfig


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
        for name, fig in study_figures.figures(summary, study, cfg).items():
            paths[name] = str(save_png(fig, out / f"{name}.png"))
    return paths
