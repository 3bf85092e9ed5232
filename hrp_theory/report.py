"""Turn per-seed results into the JSON summary, a terminal table and saved artefacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .inits import reference_init
from .metrics import time_to_excess
from .montecarlo import ExperimentResult, stream_view
from .results import provenance, write_json, write_npz, write_text
from .stats import (Moments, band_of_moments, curve_band, paired_difference, summarize,
                    summarize_moments)


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
    v = res.moments if streamed else stream_view(cfg)(
        {**res.per_seed, "optimal_loss": res.optimal_loss})
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
            "time_to_eps": {"eps": cfg.eps,
                            "fraction_reached": _total(d["reached_eps"]) / _count(d["reached_eps"]),
                            "median_steps": None if streamed else float(np.median(time_to_excess(
                                res.per_seed[name]["loss_curve"] - res.optimal_loss[:, None],
                                steps, cfg.eps)))},
        }
        if "train_loss_curve" in d:
            entry["train_curve"] = {"steps": steps.tolist(), **_band(d["train_loss_curve"])}
        if "final_loss_same_total" in d:
            entry["same_total_budget"] = {
                "main_steps": cfg.same_total_step, "preheat_steps": cfg.hrp.steps,
                "final_loss": _stat(d["final_loss_same_total"]),
                "excess_loss": _stat(d["excess_loss_same_total"])}
        if name != ref:
            diff = (_stat(d["excess_minus_ref"]) if streamed
                    else paired_difference(d["excess_loss"], v[ref]["excess_loss"]))
            entry["paired_vs_" + ref] = {"excess_loss_difference": diff}
        inits[name] = entry
    return {"config": cfg, "provenance": provenance(), "seeds_done": res.n_done,
            "interrupted": res.interrupted, "streamed": streamed,
            "optimal_loss": _stat(v["optimal_loss"]),
            "preheat_rank": cfg.preheat_rank if cfg.preheats else None,
            "steps": steps.tolist(), "reference": ref, "inits": inits}


def _fmt(x: float | None) -> str:
    if x is None:  # not available (a streamed run has no medians)
        return "—"
    return "nan" if not np.isfinite(x) else f"{x:.4g}"


def table(summary: dict) -> str:
    """A plain-text table: final and excess loss with 95 % CIs, paired difference, diverged."""
    ref = summary["reference"]
    head = (f"{'init':<14}{'final loss':>12}{'excess loss (95% CI)':>34}{'median':>11}"
            f"{'Δ vs ' + ref + ' (95% CI)':>34}{'energy@init':>13}{'diverged':>10}")
    lines = [head, "-" * len(head)]
    for name, e in summary["inits"].items():
        ex = e["excess_loss"]
        ci = f"{_fmt(ex['mean'])} [{_fmt(ex['ci95'][0])}, {_fmt(ex['ci95'][1])}]"
        diff = e.get("paired_vs_" + ref, {}).get("excess_loss_difference")
        dtxt = "—" if diff is None else (
            f"{_fmt(diff['mean'])} [{_fmt(diff['ci95'][0])}, {_fmt(diff['ci95'][1])}]")
        lines.append(f"{name:<14}{_fmt(e['final_loss']['mean']):>12}{ci:>34}"
                     f"{_fmt(ex['median']):>11}{dtxt:>34}"
                     f"{_fmt(e['captured_energy_init']['mean']):>13}{e['n_diverged']:>10}")
        if "same_total_budget" in e:
            sb = e["same_total_budget"]["excess_loss"]
            lines.append(f"{'  same total':<14}{'':>12}"
                         f"{_fmt(sb['mean']) + ' [' + _fmt(sb['ci95'][0]) + ', ' + _fmt(sb['ci95'][1]) + ']':>34}"
                         f"{_fmt(sb['median']):>11}")
    cfg = summary["config"]
    tail = (f"optimal rank-{cfg.lora.r} loss {_fmt(summary['optimal_loss']['mean'])}; "
            f"{summary['seeds_done']} seeds"
            + (" (INTERRUPTED: partial results)" if summary["interrupted"] else ""))
    return "\n".join(lines + [tail])


def save_experiment(res: ExperimentResult, out_dir, json_path=None, figures: bool = True) -> dict:
    """Write ``summary.json``, ``per_seed.npz`` (not for a streamed run) and figures to
    ``out_dir`` (and ``json_path``).

    Returns the summary and the paths written under ``"paths"``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize_experiment(res)
    paths = {"summary": write_json(out / "summary.json", summary)}
    if res.per_seed is not None:  # a streamed run keeps no per-seed arrays
        flat = {"optimal_loss": res.optimal_loss}
        for name, d in res.per_seed.items():
            for k, v in d.items():
                flat[f"{name}/{k}"] = v
        paths["per_seed"] = write_npz(out / "per_seed.npz", flat)
    if json_path is not None:
        paths["json"] = write_json(json_path, summary)
    if figures:
        from .plotting import save_figures

        paths.update(save_figures(summary, res, out))
    summary["paths"] = {k: str(v) for k, v in paths.items()}
    return summary


# --- `hrp-sim verify` ---------------------------------------------------------------------------------

def _num(x) -> str:
    return "—" if x is None else f"{x:.6g}"


def verify_table(result: dict) -> str:
    """Terminal table of the verification catalogue: one row per check, verdict last."""
    head = (f"{'check':<52}{'prediction':>13}{'measured':>13}{'SE':>11}{'tol':>10}{'seeds':>8}"
            "  verdict")
    lines = [head, "-" * len(head)]
    for c in result["checks"]:
        short = lambda x: "—" if x is None else f"{x:.3g}"  # noqa: E731
        lines.append(f"{c['name'][:51]:<52}{_num(c['prediction']):>13}{_num(c['measured']):>13}"
                     f"{short(c['se']):>11}{short(c['tolerance']):>10}{c['seeds']:>8}  "
                     f"{'pass' if c['passed'] else 'FAIL'}")
    n_ok = sum(c["passed"] for c in result["checks"])
    lines.append(f"{n_ok}/{len(result['checks'])} rows pass"
                 + (" (INTERRUPTED: partial catalogue)" if result["interrupted"] else ""))
    return "\n".join(lines)


def verify_markdown(result: dict, figures: dict) -> str:
    """The Markdown report: verdict, settings, the full table (with settings and rules), figures."""
    st = result["settings"]
    n_ok = sum(c["passed"] for c in result["checks"])
    out = ["# hrp-theory: THEORY.md checks vs Monte Carlo", "",
           f"**Verdict: {'ALL PASS' if result['passed'] else 'FAILURES'}** — {n_ok}/"
           f"{len(result['checks'])} rows pass; {'quick' if st['quick'] else 'full'} run, "
           f"float64, root seed {st['seed']}, expectations within {st['n_se_expect']:g} SE, bounds "
           f"within {st['n_se_bound']:g} SE, pathwise identities at {st['pathwise_tol']:g}.", "",
           "Values are R = ‖(M − BAᵀ)Σ^{1/2}‖² (twice the loss) unless the setting says loss.", "",
           "| check | setting | prediction / bound | measured | SE | tolerance | seeds | rule | "
           "verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for c in result["checks"]:
        out.append(f"| {c['name']} | {c['setting']} | {_num(c['prediction'])} | "
                   f"{_num(c['measured'])} | {_num(c['se'])} | {_num(c['tolerance'])} | "
                   f"{c['seeds']} | {c['rule']} | {'pass' if c['passed'] else '**FAIL**'} |")
    out += ["", "Wall time per check (s): " + ", ".join(
        f"{k} {v:.1f}" for k, v in result["timings_s"].items()), ""]
    for key, path in figures.items():
        out += [f"## {key}", "", f"![{key}]({Path(path).name})", ""]
    return "\n".join(out)


def save_verification(result: dict, out_dir, json_path=None, figures: bool = True) -> dict:
    """Write ``verify.json``, ``report.md`` and the figures to ``out_dir`` (atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = {}
    if figures:
        from .plotting import VERIFY_FIGURES, save_png

        figs = {key: save_png(fn(result["data"][key]), out / f"{key}.png")
                for key, fn in VERIFY_FIGURES.items() if key in result["data"]}
    doc = dict(result, provenance=provenance())
    paths = {"json": write_json(out / "verify.json", doc)}
    if json_path is not None:
        paths["json_copy"] = write_json(json_path, doc)
    paths["report"] = write_text(out / "report.md", verify_markdown(result, figs))
    paths.update({f"fig_{k}": v for k, v in figs.items()})
    return {k: str(v) for k, v in paths.items()}
