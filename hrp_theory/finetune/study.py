"""The end-to-end LoRA study: every init fine-tunes the same model on a real task, seeds paired.

For each init, form (classic, freeze-A) and learning rate, the S seeds run as one jitted program
(``programs``); their data order, heads and random factors are the same for every init
(``data``), so differences between inits are paired. A run is saved when it finishes and reused
by a rerun whose settings match (``runs``).

The study, step by step (``run_study``):

1. ``data.prepare``: the task and its fixed split, the base model, the target kernels;
2. ``shared_inputs``: each seed's key, head and data order (``data``), the kernels' input
   statistics and EVA's ranks (``inits.study_inputs``), the full fine-tune's ΔW and its top-r
   directions (``bridge``) when ``hrp-sim finetune`` ran for the task;
3. per run (``run_one``): the init (``start``: the core's formulas through ``inits``; HRP's
   preheat trained with ``programs.train`` in the run's form), the Hessian's extreme eigenvalues
   at init (``programs``, Lanczos), training with test accuracy at the curve's checkpoints, at
   the equal-total-budget step (``config.equal_total_steps``) and at the end (per example, for
   the paired bootstrap), validation accuracy at the end (learning-rate choice), the captured
   energy at init (``bridge``) and seed 0's adapter for ``--export-peft`` (``peft``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..interrupts import stop_if_signalled
from . import bridge, data, inits, programs, runs
from .config import LoraConfig


class Shared(NamedTuple):
    """What the runs of a study share beyond ``data.Setup``: per-seed keys, heads and data
    order, the inputs of the data-aware inits and of the bridge."""

    keys: jax.Array
    heads: dict
    order: np.ndarray  # (S, steps, batch)
    inputs: inits.Inputs
    halves: dict  # {path: Σ^{1/2}} normalised
    targets: dict | None  # full fine-tune ΔW's top-r directions, or None


def start(setup: data.Setup, cfg: LoraConfig, shared: Shared, name: str, form: str, lr, bar):
    """Init ``name``'s ``(adapters, offsets, scales)`` for every seed (HRP: its preheat first,
    in the run's form)."""
    st, hy = inits.init_static(cfg), inits.init_hyper(cfg, lr)
    if name == "hrp":
        prog_p = programs.compiled(setup, cfg, form)
        begin = inits.preheat_start(setup.kernels, shared.keys, st, hy)
        s_p = {p: cfg.scale(cfg.preheat_rank) for p in begin}
        pre, _ = programs.train(
            prog_p,
            programs.optimizer(cfg, lr, form),
            {"lora": begin, "head": shared.heads},
            s_p,
            {},
            setup.base,
            shared.order,
            cfg.preheat_steps,
            progress=bar,
        )
        adapters = inits.from_preheat(pre["lora"], cfg.r, hy.std)
        return adapters, {}, {p: cfg.scale(cfg.r) for p in adapters}
    grads = None
    if name in inits.NEEDS_GRADIENT:
        prog = programs.compiled(setup, cfg, form)
        grads = inits.full_gradients(setup, cfg, prog, shared.heads, shared.order)
    return inits.initialize(
        name, setup.kernels, shared.keys, st, hy, cfg, grads=grads, inputs=shared.inputs
    )


def curvature(prog, cfg: LoraConfig, shared: Shared, base, trainable, scales, offsets) -> dict:
    """The Hessian's extreme eigenvalues at init on the first ``curvature_seeds`` seeds, the
    loss averaged over their first ``curvature_batches`` batches: ``{block: (C, 4)}`` rows of
    ``λ_max, residual, λ_min, residual`` (``programs.BLOCKS``)."""
    C = min(cfg.curvature_seeds, cfg.seeds)
    first = lambda t: jax.tree.map(lambda x: x[:C], t)
    keys = jax.vmap(lambda k: jax.random.fold_in(k, 0x48455353))(shared.keys[:C])  # "HESS"
    idx = jnp.asarray(shared.order[:C, : cfg.curvature_batches])
    ext = prog.curvature(first(trainable), scales, base, first(offsets), idx, keys)
    return {
        f"curvature|{block}": np.stack([np.asarray(x, np.float64) for x in e], axis=1)
        for block, e in zip(programs.BLOCKS, ext)
    }


def run_one(setup: data.Setup, cfg: LoraConfig, shared: Shared, name, form, lr, progress=True):
    """Train init ``name`` in ``form`` at ``lr`` on every seed; returns the run's arrays."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    prog = programs.compiled(setup, cfg, form)
    base, task = setup.base, setup.task
    bar = tqdm(
        total=cfg.steps + (cfg.preheat_steps if name == "hrp" else 0),
        desc=f"{name} {form} lr={lr:g}",
        unit="step",
        disable=not progress,
    )
    out: dict[str, Any] = {}
    adapters, offsets, scales = start(setup, cfg, shared, name, form, lr, bar)
    out["init_seconds"] = time.perf_counter() - t0
    init = {"lora": adapters, "head": shared.heads}
    if cfg.lanczos_steps > 0 and lr == cfg.lr:
        bar.set_postfix_str("Lanczos curvature at init (compiles first)…")
        out |= curvature(prog, cfg, shared, base, init, scales, offsets)
    curve_split = data.curve_split(cfg, task)
    equal = cfg.equal_total_steps(name)
    checkpoints = tuple(cfg.curve_steps or ())
    curve = []

    def on_step(k, trainable):
        if k in checkpoints and k < cfg.steps:  # the last one is read off the test split
            curve.append(programs.evaluate(prog, trainable, scales, base, offsets, curve_split)[0])
        if k == equal and k < cfg.steps:
            right, ce = programs.evaluate(prog, trainable, scales, base, offsets, task.test)
            out["test_correct_equal_total"], out["test_ce_equal_total"] = right, ce

    opt = programs.optimizer(cfg, lr, form)
    final, losses = programs.train(
        prog, opt, init, scales, offsets, base, shared.order, cfg.steps, on_step, bar
    )
    bar.close()
    out["test_correct"], out["test_ce"] = programs.evaluate(
        prog, final, scales, base, offsets, task.test
    )
    if equal == cfg.steps:  # no extra budget: equal total is the main run
        out["test_correct_equal_total"] = out["test_correct"]
        out["test_ce_equal_total"] = out["test_ce"]
    out["equal_total_steps"] = np.asarray(equal)
    out["extra_budget"] = np.asarray(cfg.extra_budget(name))
    if len(cfg.lrs) > 1:  # validation accuracy picks each init's learning rate
        out["val_correct"], out["val_ce"] = programs.evaluate(
            prog, final, scales, base, offsets, task.val
        )
    if cfg.steps in checkpoints:
        curve.append(out["test_correct"][:, np.searchsorted(task.test, curve_split)])
    out["curve_steps"] = np.asarray(checkpoints)
    out["curve_correct"] = np.stack(curve, 1)  # (S, checkpoints, curve examples)
    out["train_loss"] = losses
    paths = [p for p, _ in setup.kernels]
    out["ranks"] = np.asarray([adapters[p].A.shape[-1] if p in adapters else 0 for p in paths])
    out["captured_lora"] = bridge.captured_lora(
        paths, adapters, final["lora"], offsets, cfg.r, shared.halves
    )
    if shared.targets is not None:
        out["captured_target"] = bridge.captured_target(
            paths, adapters, shared.targets, shared.halves
        )
    for path, ab in final["lora"].items():  # seed 0's trained adapter and head (--export-peft)
        out[f"seed0|{path}|A"], out[f"seed0|{path}|B"] = ab.A[0], ab.B[0]
        out[f"seed0|{path}|s"] = np.asarray(scales[path])
    for f, v in final["head"].items():
        out[f"seed0|head|{f}"] = v[0]
    out["moves_w0"] = np.asarray(bool(offsets))
    out["seconds"] = time.perf_counter() - t0
    return {k: np.asarray(v) for k, v in out.items()}


def shared_inputs(setup: data.Setup, cfg: LoraConfig, progress: bool) -> tuple[Shared, bool]:
    """Step 2 of the study: each seed's key, head and data order, the kernels' input statistics
    and EVA's ranks, and, when ``hrp-sim finetune`` ran for the task, ΔW's top-r directions."""
    deltas = bridge.full_finetune_deltas(setup, cfg)
    if deltas is None and any(i in inits.ORACLE_OF for i in cfg.inits):
        raise ValueError(
            f"inits: aligned-ft and aligned-ft-sigma start from the full fine-tune's ΔW; make "
            f"it first with `hrp-sim finetune --task {cfg.task}` (about 4 minutes), or drop them"
        )
    keys = data.seed_keys(cfg)
    steps = max(cfg.steps, cfg.preheat_steps, cfg.grad_batches, cfg.curvature_batches)
    inputs = inits.study_inputs(setup, cfg, deltas, progress)
    halves = bridge.whitenings({p: st.second for p, st in inputs.stats.items()})
    shared = Shared(
        keys=keys,
        heads=data.heads(keys, setup.hidden, len(setup.task.classes)),
        order=data.batch_order(cfg, setup.task.train, steps),
        inputs=inputs,
        halves=halves,
        targets=None if deltas is None else bridge.target_directions(deltas, cfg.r, halves),
    )
    return shared, deltas is not None


def run_study(cfg: LoraConfig, out, progress: bool = True, log=None) -> dict:
    """Every init in every form at every learning rate; returns ``{"runs": {run name: arrays},
    "meta"}``. Finished runs are saved in ``out/runs/`` and reused when their settings match;
    ``log(text)`` (default: nothing) hears what is reused and how long compiling took."""
    t0 = time.perf_counter()
    say = log or (lambda text: None)
    programs.COMPILED.clear()
    setup = data.prepare(cfg, progress)
    shared, has_target = shared_inputs(setup, cfg, progress)
    runs_dir = Path(out) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    done, reused = {}, []
    for form in cfg.forms:
        for lr in cfg.lrs:
            for name in cfg.inits:
                key = runs.run_key(cfg, name, form, lr, has_target)
                run = runs.run_name(name, form, lr)
                stop_if_signalled()
                got = runs.load_saved(runs_dir / f"{run}.npz", key, cfg.seeds)
                if got is None:
                    got = run_one(setup, cfg, shared, name, form, lr, progress)
                    runs.save(runs_dir / f"{run}.npz", got, key)
                else:
                    reused.append(run)
                    say(f"reused {run} (saved in {runs_dir}; its settings match)")
                done[run] = got
    meta = {
        "kernels": [p for p, _ in setup.kernels],
        "classes": list(setup.task.classes),
        "split_sizes": {k: len(getattr(setup.task, k)) for k in ("train", "val", "test")},
        "curve_examples": len(data.curve_split(cfg, setup.task)),
        "eva_ranks": shared.inputs.eva_ranks,
        "reused_runs": reused,
        "bridge_target": has_target,
        "full_finetune": bridge.full_finetune_reference(cfg),
        "wall_seconds": time.perf_counter() - t0,
        # the compute of every run, reused ones included: the study's cost from scratch
        "runs_seconds": float(sum(float(r["seconds"]) for r in done.values())),
    }
    return {"runs": done, "meta": meta}
