"""Turn per-seed results into the JSON summary, a terminal table and saved artefacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .experiment import ExperimentResult
from .inits import reference_init
from .metrics import time_to_excess
from .results import new_run_id, provenance, write_json, write_npz
from .stats import (
    DIVERGENCE_FACTOR,
    DIVERGENCE_RULE,
    MIN_SEEDS,
    Moments,
    band_of_moments,
    curve_band,
    paired_difference,
    summarize,
    summarize_moments,
)


def _finite_mean(x) -> list:
    """Mean over seeds of the rows that are finite (NaN where none is)."""
    x = np.asarray(x, float)
    ok = np.all(np.isfinite(x), axis=1)
    return (x[ok].mean(axis=0) if ok.any() else np.full(x.shape[1], np.nan)).tolist()


def _stat(x) -> dict:
    return summarize_moments(x) if isinstance(x, Moments) else summarize(x)


def _band(x) -> dict:
    return band_of_moments(x) if isinstance(x, Moments) else curve_band(x)


def _mean_vector(x) -> list:
    return x.mean.tolist() if isinstance(x, Moments) else _finite_mean(x)


def _total(x) -> float:
    """Sum over seeds of a 0/1 indicator."""
    return float(x.n * x.mean) if isinstance(x, Moments) else float(np.sum(x))


def _count(x) -> int:
    return int(x.n + x.n_nonfinite) if isinstance(x, Moments) else int(np.size(x))


def _median_time(d: dict, steps, eps: float) -> float:
    """Median first step with excess ≤ ε over the seeds that did not diverge (inf: not reached)."""
    t = time_to_excess(d["excess_curve"], steps, eps)[d["diverged"] == 0]
    return float(np.median(t)) if t.size else float("nan")


def summarize_experiment(res: ExperimentResult) -> dict:
    """The JSON contract of ``hrp-sim compare``.

    ``{config, provenance, seeds_done, interrupted, optimal_loss, steps, reference,
    inits: {name: {final_loss, excess_loss, n_diverged, curve, …}}}``; statistics are
    ``{mean, se, median, q05, q95, ci95, n, n_nonfinite}``. Loss means
    ``½‖(M − s·BAᵀ)Σ^{1/2}‖²_F``. A streamed run (``res.moments``) gives the same fields from
    streaming moments; medians and quantiles are then None.
    """
    cfg = res.config
    steps = cfg.steps_axis()
    ref = reference_init(cfg.inits)
    streamed = res.per_seed is None
    v = res.view()
    inits = {}
    for name in cfg.inits:
        d = v[name]
        entry = {
            "final_loss": _stat(d["final_loss"]),
            "excess_loss": _stat(d["excess_loss"]),
            "n_diverged": int(round(_total(d["diverged"]))),
            "curve": {"steps": steps.tolist(), **_band(d["loss_curve"])},
            "excess_curve": {"steps": steps.tolist(), **_band(d["excess_curve"])},
            "captured_energy_init": _stat(d["captured_energy_init"]),
            "captured_energy_final": _stat(d["captured_energy_final"]),
            "angles_init_deg": _mean_vector(d["angles_init_deg"]),
            "angles_final_deg": _mean_vector(d["angles_final_deg"]),
            "time_to_eps": {
                "eps": cfg.eps,
                "fraction_reached": _total(d["reached_eps"]) / _count(d["reached_eps"]),
                "median_steps": None if streamed else _median_time(d, steps, cfg.eps),
            },
        }
        if "train_loss_curve" in d:
            entry["train_curve"] = {"steps": steps.tolist(), **_band(d["train_loss_curve"])}
        if "final_loss_same_total" in d:
            entry["same_total_budget"] = {
                "main_steps": cfg.same_total_step,
                "preheat_steps": cfg.hrp.steps,
                "final_loss": _stat(d["final_loss_same_total"]),
                "excess_loss": _stat(d["excess_loss_same_total"]),
            }
        if name != ref:
            diff = (
                _stat(d["excess_minus_ref"])
                if streamed
                else paired_difference(d["excess_loss"], v[ref]["excess_loss"])
            )
            entry["paired_vs_" + ref] = {"excess_loss_difference": diff}
        inits[name] = entry
    return {
        "config": cfg,
        "provenance": provenance(),
        "seeds_done": res.n_done,
        "divergence_rule": {"factor": DIVERGENCE_FACTOR, "rule": DIVERGENCE_RULE},
        "interrupted": res.interrupted,
        "streamed": streamed,
        "optimal_loss": _stat(v["optimal_loss"]),
        "preheat_rank": cfg.preheat_rank if cfg.preheats else None,
        "steps": steps.tolist(),
        "reference": ref,
        "inits": inits,
    }


def _fmt(x: float | None) -> str:
    if x is None:  # not available (a streamed run has no medians)
        return "—"
    return "nan" if not np.isfinite(x) else f"{x:.4g}"


def _ci(s: dict) -> str:
    if not s["n"]:  # no finite value: every seed diverged
        return f"all {s['n_nonfinite']} diverged"
    if s["n"] < MIN_SEEDS:  # an interval from 2–4 seeds is mostly the t quantile
        return f"{_fmt(s['mean'])} (n too small: {s['n']})"
    return f"{_fmt(s['mean'])} [{_fmt(s['ci95'][0])}, {_fmt(s['ci95'][1])}]"


def table(summary: dict) -> str:
    """A plain-text table: final and excess loss with 95 % CIs, paired difference, diverged."""
    ref = summary["reference"]
    head = (
        f"{'init':<14}{'final loss':>12}{'excess loss (95% CI)':>34}{'median':>11}"
        f"{'Δ vs ' + ref + ' (95% CI)':>34}{'energy@init':>13}{'diverged':>10}"
    )
    lines = [head, "-" * len(head)]
    for name, e in summary["inits"].items():
        ex = e["excess_loss"]
        ci = _ci(ex)
        diff = e.get("paired_vs_" + ref, {}).get("excess_loss_difference")
        dtxt = "—" if diff is None else (_ci(diff) if diff["n"] else "no pair finite")
        lines.append(
            f"{name:<14}{_fmt(e['final_loss']['mean']):>12}{ci:>34}"
            f"{_fmt(ex['median']):>11}{dtxt:>34}"
            f"{_fmt(e['captured_energy_init']['mean']):>13}{e['n_diverged']:>10}"
        )
        if "same_total_budget" in e:
            sb = e["same_total_budget"]["excess_loss"]
            lines.append(f"{'  same total':<14}{'':>12}{_ci(sb):>34}{_fmt(sb['median']):>11}")
    cfg = summary["config"]
    tail = (
        f"optimal rank-{cfg.lora.r} loss {_fmt(summary['optimal_loss']['mean'])}; "
        f"{summary['seeds_done']} seeds"
        + (" (INTERRUPTED: partial results)" if summary["interrupted"] else "")
    )
    return "\n".join(lines + [tail])


def save_experiment(
    res: ExperimentResult, out_dir, json_path=None, figures: bool = True, run_id: str | None = None
) -> dict:
    """Write ``per_seed.npz`` (not for a streamed run), ``summary.json`` and the figures to
    ``out_dir`` (and the summary to ``json_path``), each atomically; the npz and the summary
    carry the same ``run_id`` (``results.load_run`` checks it).

    Returns the summary, with the paths written under ``"paths"``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize_experiment(res)
    summary["run_id"] = run_id = run_id or new_run_id()
    paths = {}
    if res.per_seed is not None:  # a streamed run keeps no per-seed arrays
        flat = {"run_id": np.array(run_id), "optimal_loss": res.optimal_loss}
        for name, d in res.per_seed.items():
            for k, v in d.items():
                flat[f"{name}/{k}"] = v
        paths["per_seed"] = write_npz(out / "per_seed.npz", flat)
    paths["summary"] = write_json(out / "summary.json", summary)
    if json_path is not None:
        paths["json"] = write_json(json_path, summary)
    if figures:
        from .plotting import save_figures

        paths.update(save_figures(summary, res, out))
    summary["paths"] = {k: str(v) for k, v in paths.items()}
    return summary
