"""One seed of an experiment: its problem, its random draws, every init trained and measured.

``split_config`` cuts a config into its static view (which keys the compilation) and its traced
numbers (so a sweep over learning rates, scales or spectra compiles once); ``simulate_seed`` is
the per-seed function the seed engine maps (``seeds.map_seeds``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._fields import static_view
from .bases import resolve_basis
from .config import ExperimentConfig
from .dynamics import make_optimizer, train
from .inits import (
    NEEDS_W0,
    PREHEATED,
    InitHyper,
    InitStatic,
    draw,
    families_needed,
    start,
)
from .losses import population_loss
from .metrics import direction_metrics
from .problems import Basis, ProblemArrays, build_problem, optimal_loss, problem_arrays


@dataclasses.dataclass(frozen=True)
class SeedStatic:
    """What shapes a seed's program: the config's static view and the basis it runs in."""

    config: ExperimentConfig
    basis: Basis


class Hyper(NamedTuple):
    """The traced numbers of a config."""

    arrays: ProblemArrays
    init: InitHyper


def split_config(config: ExperimentConfig) -> tuple[SeedStatic, Hyper]:
    """The static part of a config (hashable: its static view, whose traced fields hold
    ``TRACED`` (see ``_fields``), and its basis) and its traced numbers."""
    dtype = jnp.result_type(float)
    lr = config.train.learning_rate
    lr_p = config.hrp.lr if config.hrp.lr is not None else lr
    std = config.init_std if config.init_std is not None else 1.0 / math.sqrt(3 * config.problem.n)
    f = lambda x: jnp.asarray(x, dtype)
    hyper = Hyper(
        arrays=problem_arrays(config.problem, dtype),
        init=InitHyper(
            s=f(config.lora.scale()),
            s_p=f(config.lora.scale(config.preheat_rank)),
            std=f(std),
            lr=f(lr),
            lr_p=f(lr_p),
            momentum=f(config.train.momentum),
            weight_decay=f(config.train.weight_decay),
        ),
    )
    return SeedStatic(static_view(config), resolve_basis(config)), hyper


def init_static(cfg: ExperimentConfig, basis: Basis = Basis()) -> InitStatic:
    """The inits' static settings of a config (or of its static view) in ``basis``."""
    reduced = basis.kind == "reduced"
    return InitStatic(
        dims=(cfg.problem.m, cfg.problem.n) if reduced else None,
        rank=basis.rank if reduced else 0,
        r=cfg.lora.r,
        form=cfg.lora.form,
        base=cfg.base,
        p=cfg.preheat_rank if cfg.preheats else cfg.lora.r,
        preheat_form=cfg.hrp.form,
        preheat_steps=cfg.hrp.steps,
        preheat_optimizer=cfg.hrp.optimizer or cfg.train.optimizer,
    )


def simulate_seed(key: jax.Array, static: SeedStatic, hyper: Hyper) -> dict:
    """All inits of one seed on the same problem. Returns ``{name: {metric: array}}`` plus
    ``optimal_loss``."""
    cfg, basis = static.config, static.basis
    r, form = cfg.lora.r, cfg.lora.form
    hy = hyper.init
    k_problem, k_init = jax.random.split(key)
    problem = build_problem(
        k_problem,
        cfg.problem,
        hyper.arrays,
        with_w0=any(i in NEEDS_W0 for i in cfg.inits),
        basis=basis,
    )
    L_opt = optimal_loss(problem, r)
    st = init_static(cfg, basis)
    draws = draw(k_init, problem, st, hy, families_needed(cfg.inits, cfg.base))
    opt = make_optimizer(cfg.train.optimizer, hy.lr, hy.momentum, hy.weight_decay)
    out: dict[str, Any] = {"optimal_loss": L_opt}
    for name in cfg.inits:
        params, obj = start(name, problem, st, hy, draws)
        snap = cfg.same_total_step if name in PREHEATED else None
        res = train(
            params,
            obj,
            hy.s,
            form=form,
            opt=opt,
            steps=cfg.train.steps,
            record_every=cfg.train.every,
            snapshot_step=snap,
        )
        begin = direction_metrics(params, problem, r, form)
        end = direction_metrics(res.params, problem, r, form)
        final = res.curves["loss"][-1]
        rec = {
            "loss_curve": res.curves["loss"],
            "final_loss": final,
            "excess_loss": final - L_opt,
            "angles_init_deg": begin["angles_deg"],
            "angles_final_deg": end["angles_deg"],
            "captured_energy_init": begin["captured_energy"],
            "captured_energy_final": end["captured_energy"],
        }
        if "train_loss" in res.curves:
            rec["train_loss_curve"] = res.curves["train_loss"]
        if snap is not None:
            same = population_loss(res.snapshot, obj, hy.s)
            rec["final_loss_same_total"] = same
            rec["excess_loss_same_total"] = same - L_opt
        out[name] = rec
    return out
