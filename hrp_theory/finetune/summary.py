"""Statistics of the end-to-end LoRA study (``hrp-sim lora``): the ``summary.json`` contract.

Per form (classic, freeze-A) and init, at the common learning rate and at the init's own best
one (chosen on the validation split when a grid ran):

* **test accuracy and loss** on the fixed test split, with percentile intervals from a paired
  bootstrap that resamples seeds *and* test examples (``stats.bootstrap_paired``), so the test
  set's sampling error is in the interval;
* **paired differences** against the reference init (``kaiming`` when it ran), at the same main
  steps and at the **same total budget** (``config.equal_total_steps``: every init's extra
  passes counted), and tuned against tuned; each with its bootstrap p-value and the
  **Holm–Bonferroni** adjusted one over every comparison the form's table reports;
* test accuracy along the run (``curve``), every checkpoint on the same test examples;
* the Hessian's extreme eigenvalues at init (Lanczos) with their residuals, per block;
* captured energy at init (mean over kernels) of the full fine-tune's ΔW and of the own update.

The bridge to the theory, per form: Spearman's ρ across inits of per-init means (captured energy
at init against final test loss) with an exact permutation p-value; within each init whose start
varies with the seed, ρ across its seeds; and the theory's predicted order (random < HRP <
aligned-ft) in captured energy, test loss and accuracy. Seeds that break the divergence rule
(``stats.DIVERGENCE_RULE``) on their training loss are counted and left out. Below
``stats.MIN_SEEDS`` paired seeds an interval, p-value or correlation is not reported.
"""

from __future__ import annotations

import numpy as np

from ..inits import reference_init
from ..results import jsonable, new_run_id
from ..stats import (
    BOOTSTRAP_DRAWS,
    DIVERGENCE_RULE,
    MIN_SEEDS,
    bootstrap_paired,
    diverged,
    holm,
    spearman_permutation,
    summarize,
)
from .config import LoraConfig, lr_label
from .runs import run_name

SMOOTH = 10  # steps of the running mean the target-loss crossing is read from
CURVE_DRAWS = 2_000  # bootstrap draws of each curve point (a figure, not a table)
#: Inits whose start varies with the seed (the others are one start for every seed).
SEED_VARYING = ("kaiming", "gaussian", "hrp", "lora-ga", "lora-one")
THEORY_ORDER = ("kaiming", "hrp", "aligned-ft")


def steps_to(losses: np.ndarray, target: float) -> np.ndarray:
    """First step (1-based) whose running mean over ``SMOOTH`` steps is ≤ ``target`` (inf if
    never), per seed."""
    k = min(SMOOTH, losses.shape[1])
    run = np.stack([np.convolve(row, np.ones(k) / k, mode="valid") for row in losses])
    hit = run <= target
    first = np.argmax(hit, axis=1) + k
    return np.where(hit.any(axis=1), first, np.inf).astype(np.float64)


def _masked(run: dict, field: str) -> np.ndarray:
    """A run's per-seed, per-example array with diverged seeds' rows NaN."""
    x = np.asarray(run[field], np.float64)
    bad = diverged(run["train_loss"]) if run["train_loss"].shape[1] else np.zeros(len(x), bool)
    x[bad] = np.nan
    return x


def _interval(a, b=None, draws=BOOTSTRAP_DRAWS) -> dict:
    """``bootstrap_paired`` in points where it applies, ``n_too_small`` below ``MIN_SEEDS``."""
    out = bootstrap_paired(a, b, draws=draws)
    if out["n"] < MIN_SEEDS:
        return out | {"ci95": None, "p": None, "n_too_small": True}
    return out | {"n_too_small": False}


def _per_seed_mean(x) -> dict:
    return summarize(np.asarray(x, np.float64)) | {"n_too_small": int(np.isfinite(x).sum()) < 5}


def _curvature(run: dict) -> dict | None:
    out = {}
    for key, v in run.items():
        if key.startswith("curvature|"):
            v = np.asarray(v, np.float64)
            out[key.split("|", 1)[1]] = {
                "seeds": int(v.shape[0]),
                "lam_max": v[:, 0].tolist(),
                "res_max": v[:, 1].tolist(),
                "lam_min": v[:, 2].tolist(),
                "res_min": v[:, 3].tolist(),
                "lam_max_mean": float(v[:, 0].mean()),
                "lam_min_mean": float(v[:, 2].mean()),
            }
    return out or None


def _captured(run: dict, field: str) -> dict | None:
    if field not in run:
        return None
    c = np.asarray(run[field], np.float64).mean(axis=1)  # (S, 2): mean over kernels
    return {"raw": _per_seed_mean(c[:, 0]), "whitened": _per_seed_mean(c[:, 1])}


def _curve(run: dict, ref: dict | None) -> dict:
    acc, diff = {"mean": [], "lo": [], "hi": []}, {"mean": [], "lo": [], "hi": []}
    x = _masked(run, "curve_correct")
    r = None if ref is None else _masked(ref, "curve_correct")
    for k in range(x.shape[1]):
        for rec, b in ((acc, None), (diff, None if r is None else r[:, k])):
            if rec is diff and b is None:
                continue
            got = _interval(x[:, k], b, draws=CURVE_DRAWS)
            rec["mean"].append(got["mean"])
            lo, hi = got["ci95"] if got["ci95"] is not None else (None, None)
            rec["lo"].append(lo)
            rec["hi"].append(hi)
    return {"steps": np.asarray(run["curve_steps"]).tolist(), "acc": acc} | (
        {"diff": diff} if ref is not None else {}
    )


def run_stats(run: dict, ref: dict | None, cfg: LoraConfig) -> dict:
    """One run's statistics (module docstring); ``ref``: the reference init's run at the same
    form and learning rate (None for the reference itself)."""
    bad = diverged(run["train_loss"]) if run["train_loss"].shape[1] else np.zeros(1, bool)
    hit = steps_to(run["train_loss"], cfg.target_loss) if run["train_loss"].shape[1] else None
    rec = {
        "n_diverged": int(bad.sum()),
        "test_acc": _interval(_masked(run, "test_correct")),
        "test_loss": _interval(_masked(run, "test_ce")),
        "val_acc": float(np.nanmean(_masked(run, "val_correct"))) if "val_correct" in run else None,
        "equal_total": {
            "main_steps": int(run["equal_total_steps"]),
            "extra_budget": float(run["extra_budget"]),
            "test_acc": (
                _interval(_masked(run, "test_correct_equal_total"))
                if "test_correct_equal_total" in run
                else None  # the budget leaves no main step
            ),
        },
        "curve": _curve(run, ref),
        "curvature": _curvature(run),
        "captured_lora": _captured(run, "captured_lora"),
        "captured_target": _captured(run, "captured_target"),
        "ranks": np.asarray(run["ranks"]).tolist(),
        "seconds": float(run["seconds"]),
        "init_seconds": float(run["init_seconds"]),
    }
    if hit is not None:
        rec["steps_to_target"] = summarize(hit) | {"reached": int(np.isfinite(hit).sum())}
    if ref is not None:
        right, ref_right = _masked(run, "test_correct"), _masked(ref, "test_correct")
        rec["diff_test_acc"] = _interval(right, ref_right)
        rec["diff_test_loss"] = _interval(_masked(run, "test_ce"), _masked(ref, "test_ce"))
        if "test_correct_equal_total" in run:
            rec["equal_total"]["diff_test_acc"] = _interval(
                _masked(run, "test_correct_equal_total"), ref_right
            )
    return rec


def _holm_family(inits: dict) -> list[tuple[str, dict]]:
    """Every paired accuracy comparison a form's table reports, as ``(label, path)``."""
    family = []
    for name, rec in inits.items():
        for label, path in (
            ("common lr", ["common_lr", "diff_test_acc"]),
            ("equal total budget", ["common_lr", "equal_total", "diff_test_acc"]),
            ("tuned", ["diff_test_acc_tuned"]),
        ):
            node = rec
            for k in path:
                node = node.get(k) if isinstance(node, dict) else None
            if isinstance(node, dict) and node.get("p") is not None:
                family.append((f"{name}: {label}", node))
    return family


def _correlations(inits: dict, runs: dict, cfg: LoraConfig, form: str) -> dict:
    """The bridge (module docstring), at the common learning rate."""
    out = {}
    for field in ("captured_target", "captured_lora"):
        names = [n for n in inits if inits[n]["common_lr"][field] is not None]
        x = [inits[n]["common_lr"][field]["whitened"]["mean"] for n in names]
        y = [inits[n]["common_lr"]["test_loss"]["mean"] for n in names]
        out[f"{field}_vs_test_loss"] = spearman_permutation(x, y) | {"inits": names}
        within = {}
        for n in names:
            if n in SEED_VARYING:
                run = runs[run_name(n, form, cfg.lr)]
                c = np.asarray(run[field], np.float64)[..., 1].mean(1)
                loss = np.nanmean(_masked(run, "test_ce"), axis=1)
                within[n] = spearman_permutation(c, loss)
        out[f"{field}_vs_test_loss_within_init"] = within
    return out


def _theory_order(inits: dict, runs: dict, cfg: LoraConfig, form: str) -> dict | None:
    """random < HRP < aligned-ft: captured energy at init (per kernel and mean), and the paired
    differences in final test loss and accuracy along that order."""
    if not all(n in inits for n in THEORY_ORDER):
        return None
    get = {n: runs[run_name(n, form, cfg.lr)] for n in THEORY_ORDER}
    out: dict = {"order": list(THEORY_ORDER)}
    if all("captured_target" in r for r in get.values()):
        per_kernel = np.stack(
            [np.asarray(get[n]["captured_target"])[..., 1].mean(0) for n in THEORY_ORDER]
        )  # (3, kernels): seed means, whitened
        out["captured_whitened"] = per_kernel.mean(1).tolist()
        out["kernels_in_order"] = float(
            np.mean((per_kernel[0] < per_kernel[1]) & (per_kernel[1] < per_kernel[2]))
        )
    for a, b in zip(THEORY_ORDER, THEORY_ORDER[1:]):
        ra, rb = get[a], get[b]
        out[f"{b} - {a}"] = {
            "test_acc": _interval(_masked(rb, "test_correct"), _masked(ra, "test_correct")),
            "test_loss": _interval(_masked(rb, "test_ce"), _masked(ra, "test_ce")),
        }
    return out


def form_summary(runs: dict, cfg: LoraConfig, form: str) -> dict:
    """Every init's statistics in one form, the Holm adjustment and the bridge."""
    ref_name = reference_init(cfg.inits)
    by_lr = {
        lr: {
            name: run_stats(
                runs[run_name(name, form, lr)],
                None if name == ref_name else runs[run_name(ref_name, form, lr)],
                cfg,
            )
            for name in cfg.inits
        }
        for lr in cfg.lrs
    }
    inits = {}
    for name in cfg.inits:
        val = {lr: by_lr[lr][name]["val_acc"] for lr in cfg.lrs}
        score = lambda lr: -np.inf if val[lr] is None or not np.isfinite(val[lr]) else val[lr]
        best = max(cfg.lrs, key=score) if len(cfg.lrs) > 1 else cfg.lr
        inits[name] = {
            "common_lr": by_lr[cfg.lr][name],
            "best_lr": best,
            "at_best_lr": by_lr[best][name],
            "val_acc_by_lr": {lr_label(lr): val[lr] for lr in cfg.lrs},
        }
    if len(cfg.lrs) > 1:  # tuned against tuned, paired by seed
        ref_best = runs[run_name(ref_name, form, inits[ref_name]["best_lr"])]
        for name in cfg.inits:
            if name != ref_name:
                mine = runs[run_name(name, form, inits[name]["best_lr"])]
                inits[name]["diff_test_acc_tuned"] = _interval(
                    _masked(mine, "test_correct"), _masked(ref_best, "test_correct")
                )
    family = _holm_family(inits)
    for (_, node), adjusted in zip(family, holm([node["p"] for _, node in family])):
        node["p_holm"] = adjusted
    sharpness = _sharpness(inits, inits) if len(cfg.lrs) > 1 else None
    return {
        "inits": inits,
        "holm_family": [label for label, _ in family],
        "bridge": _correlations(inits, runs, cfg, form),
        "theory_order": _theory_order(inits, runs, cfg, form),
        "lam_max_vs_best_lr": sharpness,
    }


def _lam_max(init_summary: dict):
    """An init's λ_max at init over adapters + head (mean over its curvature seeds), or None."""
    curvature = init_summary["common_lr"]["curvature"] or {}
    return (curvature.get("adapters+head") or {}).get("lam_max_mean")


def lam_max_vs_best_lr(study: dict, grid: dict, form: str = "classic") -> dict | None:
    """Spearman's ρ across inits of λ_max at init (from ``study``, a ``summary.json`` whose runs
    had Lanczos) and each init's best rate on validation (from ``grid``, one made with
    ``--lr-grid``), with its permutation p; over the inits both hold, None when either lacks
    them. The published study runs its grid without Lanczos: λ at init does not depend on the
    rate, and the grid's seeds include the study's curvature seeds, so the two studies' figures
    belong to the same inits on the same seeds."""
    return _sharpness(
        study["forms"].get(form, {}).get("inits", {}), grid["forms"].get(form, {}).get("inits", {})
    )


def _sharpness(have: dict, tuned: dict) -> dict | None:
    """Spearman across the inits of both of λ_max at init (``have``) and the best rate
    (``tuned``), per-init summaries; None when an init lacks either."""
    names = [n for n in tuned if n in have]
    lam = [_lam_max(have[n]) for n in names]
    best = [tuned[n].get("best_lr") for n in names]
    if not names or any(v is None for v in [*lam, *best]):
        return None
    return spearman_permutation(lam, best) | {"inits": names, "lam_max": lam, "best_lr": best}


def summarize_study(study: dict, cfg: LoraConfig) -> dict:
    """The ``summary.json`` contract (README, "hrp-sim lora")."""
    return {
        "run_id": new_run_id(),
        "config": jsonable(cfg),
        "reference_init": reference_init(cfg.inits),
        "divergence_rule": DIVERGENCE_RULE,
        "min_seeds": MIN_SEEDS,
        "bootstrap": {
            "draws": BOOTSTRAP_DRAWS,
            "resamples": "seeds and test examples, independently (percentile interval)",
            "p": "two-sided bootstrap p; p_holm: Holm-Bonferroni over the form's table",
        },
        "meta": study["meta"],
        "forms": {form: form_summary(study["runs"], cfg, form) for form in cfg.forms},
        "units": "accuracy and its differences in [0, 1] (tables print points); loss: mean "
        "cross-entropy (nats); curvature: extreme eigenvalues of the loss Hessian at init "
        "(Lanczos) with residual norms; captured energy: mean over kernels",
    }
