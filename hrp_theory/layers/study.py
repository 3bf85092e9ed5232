"""The per-layer study: every init on every selected kernel of a real model (``kernels``).

Losses are reported relative to ``L(0)``, the loss of the unchanged model. Every init comes from
``hrp_theory.inits`` (HRP through THE ``preheat.preheat_then_svd``), the runs from
``dynamics.train``; layers of equal shape are stacked and mapped inside one jitted call
(``lax.map``; vmapped on GPU), seeds through ``seeds.map_seeds``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..devices import vmap_batch
from ..dynamics import make_optimizer, record_interval, train
from ..inits import InitHyper, InitStatic, draw, start
from ..losses import population_loss
from ..metrics import direction_metrics
from ..preheat import converged_freeze_a
from ..problems import Problem
from ..seeds import map_seeds
from ..stats import diverged, summarize
from .config import FORMS, RealConfig
from .kernels import layer_problem, load_layers

# ---------------------------------------------------------------------------------------------
# the jitted measurement


@dataclasses.dataclass(frozen=True)
class _Static:
    inits: tuple[str, ...]
    r: int
    p: int
    steps: int
    preheat_steps: int
    optimizer: str
    layer_batch: int


def _raw_view(problem: Problem) -> Problem:
    """The problem as seen against the raw ``ΔW`` (no whitening): metrics then measure
    ``col(A)`` against ``ΔW``'s own top-r right singular vectors."""
    return problem._replace(
        whitened=problem.target, objective=problem.objective._replace(sigma_half=None)
    )


def measure(problem: Problem, key: jax.Array, st: _Static, hy: InitHyper) -> dict:
    """Every init on one layer for one seed: directions, losses after K steps, freeze-A limit.

    Losses are relative to ``L(0)``. ``start_loss`` is the init's loss at step 0 (1 unless the
    init moves the product, as LoRA-One does) and each trained form records its loss along the
    run (``…_curve``), for the divergence rule (``stats.diverged``)."""
    ist = InitStatic(
        r=st.r,
        form="classic",
        base="kaiming",
        p=st.p,
        preheat_form="classic",
        preheat_steps=st.preheat_steps,
        preheat_optimizer=st.optimizer,
    )
    draws = draw(key, problem, ist, hy, ("kaiming",))
    opt = make_optimizer(st.optimizer, hy.lr, hy.momentum, hy.weight_decay)
    Mt = problem.objective.Mt
    assert Mt is not None  # a population problem (problem_from_matrices)
    L0 = 0.5 * jnp.sum(Mt**2)  # the unchanged model's loss
    raw = _raw_view(problem)
    out: dict[str, Any] = {
        "L0": L0,
        "optimal_loss": 0.5 * jnp.sum(problem.whitened.S[st.r :] ** 2) / L0,
    }
    every = record_interval(st.steps, 20)
    for name in st.inits:
        params, obj = start(name, problem, ist, hy, draws)
        d_raw = direction_metrics(params, raw, st.r, "classic")
        d_w = direction_metrics(params, problem, st.r, "classic")
        rec = {
            "captured_energy": d_raw["captured_energy"],
            "angles_deg": d_raw["angles_deg"],
            "captured_energy_whitened": d_w["captured_energy"],
            "angles_whitened_deg": d_w["angles_deg"],
            "start_loss": population_loss(params, obj, hy.s) / L0,
        }
        for form in FORMS:
            curve = (
                train(
                    params, obj, hy.s, form=form, opt=opt, steps=st.steps, record_every=every
                ).curves["loss"]
                / L0
            )
            rec[f"loss_{form}"], rec[f"loss_{form}_curve"] = curve[-1], curve
        limit = params._replace(B=converged_freeze_a(params.A, obj, hy.s))
        rec["loss_freeze-a_limit"] = population_loss(limit, obj, hy.s) / L0
        out[name] = rec
    return out


def _layers_seed(key: jax.Array, st: _Static, args) -> dict:
    problems, hy = args
    return jax.lax.map(lambda pr: measure(pr, key, st, hy), problems, batch_size=st.layer_batch)


def _stack(problems: list[Problem]) -> Problem:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *problems)


# ---------------------------------------------------------------------------------------------
# the study


def run_study(cfg: RealConfig, progress: bool = True, log=print) -> dict:
    """Load, build and measure every layer; returns the report (JSON contract of ``hrp-sim
    real``) with per-seed arrays under ``"per_seed"`` (dropped when saving the JSON)."""
    t0 = time.perf_counter()
    layers, info = load_layers(cfg, progress)
    t_load = time.perf_counter() - t0
    built = [layer_problem(L) for L in layers]
    dtype = built[0][0].M.dtype
    f = lambda x: jnp.asarray(x, dtype)
    groups: dict[tuple, list[int]] = {}
    for i, L in enumerate(layers):
        groups.setdefault(L.W0.shape, []).append(i)
    per_layer: list = [None] * len(layers)
    interrupted = False
    t1 = time.perf_counter()
    for shape, idx in groups.items():
        n = shape[1]
        hy = InitHyper(
            s=f(1.0),
            s_p=f(1.0),
            std=f(1 / math.sqrt(3 * n)),
            lr=f(cfg.lr),
            lr_p=f(cfg.lr),
            momentum=f(0.0),
            weight_decay=f(0.0),
        )
        st = _Static(
            inits=cfg.inits,
            r=cfg.r,
            p=cfg.p,
            steps=cfg.steps,
            preheat_steps=cfg.preheat_steps,
            optimizer=cfg.optimizer,
            layer_batch=vmap_batch(None, len(idx)),
        )
        res = map_seeds(
            _layers_seed,
            st,
            (_stack([built[i][0] for i in idx]), hy),
            seeds=cfg.seeds,
            seed=cfg.seed,
            chunk_size=1,
            progress=progress,
            desc=f"layers {shape[0]}×{shape[1]} (×{len(idx)})",
        )
        interrupted |= res.interrupted
        for j, i in enumerate(idx):
            per_layer[i] = jax.tree.map(lambda a: np.asarray(a)[:, j], res.out)
        if res.interrupted:
            break
    t_run = time.perf_counter() - t1
    report = {
        "config": dataclasses.asdict(cfg) | {"inits": list(cfg.inits)},
        "inputs": info,
        "units": "losses relative to L(0) = ½‖ΔW Σ^{1/2}‖²; captured energy of ΔW's "
        "top-r part in [0, 1]; angles in degrees",
        "layers": [],
        "timings_s": {"load": t_load, "run": t_run},
        "interrupted": interrupted,
    }
    per_seed = {}
    for L, (_, facts), out in zip(layers, built, per_layer):
        if out is None:
            continue
        entry = {
            "path": L.path,
            "shape": list(L.W0.shape),
            "optimal_loss": float(np.mean(out["optimal_loss"])),
            "facts": facts,
            "inits": {},
        }
        for name in cfg.inits:
            o = out[name]
            entry["inits"][name] = {
                "captured_energy": _ms(o["captured_energy"]),
                "loss": _ms(o["loss_classic"], diverged(o["loss_classic_curve"])),
                "loss_freeze_a": _ms(o["loss_freeze-a"], diverged(o["loss_freeze-a_curve"])),
                "loss_freeze_a_limit": _ms(
                    o["loss_freeze-a_limit"], diverged(o["loss_freeze-a_limit"], o["start_loss"])
                ),
                "captured_energy_whitened": _ms(o["captured_energy_whitened"]),
                "principal_angles_deg": np.nanmean(o["angles_deg"], axis=0).tolist(),
                "principal_angles_whitened_deg": np.nanmean(
                    o["angles_whitened_deg"], axis=0
                ).tolist(),
            }
        report["layers"].append(entry)
        per_seed[L.path] = out
    report["per_seed"] = per_seed
    return report


def _ms(x, bad=None) -> dict:
    """Mean, SE and counts of a per-seed metric; seeds flagged ``bad`` (diverged, by the rule of
    ``stats.diverged``) are left out and counted."""
    x = np.asarray(x, np.float64)
    if bad is not None:
        x = np.where(bad, np.nan, x)
    s = summarize(x)
    return {"mean": s["mean"], "se": s["se"], "n": s["n"], "diverged": s["n_nonfinite"]}
