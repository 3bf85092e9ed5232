"""The end-to-end LoRA study: every init fine-tunes the same model on a real task, seeds paired.

For each init (and each learning rate of the grid) the S seeds run as one jitted program
(``programs``); their data order, heads and random factors are the same for every init
(``data``), so differences between inits are paired. A run (one init at one learning rate) is
saved when it finishes and reused by a rerun whose settings match (``runs``).

The study, step by step (``run_study``):

1. ``data.prepare``: the task and its fixed split, the base model, the target kernels;
2. ``data.seed_keys``, ``data.batch_order``, ``data.heads``: what each seed shares across inits;
3. ``inits.second_moments`` and ``bridge``'s targets: the inputs of the data-aware inits and of
   the captured energy;
4. per run (``run_one``): the init (``inits``; HRP's preheat trained with ``programs.train``),
   λ_max at init (``programs``), training with validation along the way, test accuracy and loss
   at the end (HRP also after ``steps − T_p`` main steps: the same total budget), the captured
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
from ..results import write_npz
from . import bridge, data, inits, programs, runs
from .config import LoraConfig

VAL_CURVE = 128  # validation examples of the curve's intermediate points (the end uses all)


class Shared(NamedTuple):
    """What the runs of a study share beyond ``data.Setup``: per-seed keys, heads and data
    order, and the inputs of the data-aware inits and of the bridge."""

    keys: jax.Array
    heads: dict
    order: np.ndarray  # (S, steps, batch)
    moments: dict  # {path: E[xxᵀ]} (float64, host)
    halves: dict  # {path: Σ^{1/2}} normalised
    targets: dict | None  # full fine-tune ΔW's top-r directions, or None


def start(setup: data.Setup, cfg: LoraConfig, shared: Shared, name: str, lr: float, bar):
    """Init ``name``'s adapters and frozen offsets for every seed (HRP: its preheat first)."""
    st, hy = inits.init_static(cfg), inits.init_hyper(cfg, lr)
    if name == "hrp":
        prog_p = programs.compiled(setup, cfg, lr, cfg.scale(cfg.preheat_rank), 0)
        begin = inits.preheat_start(setup.kernels, shared.keys, st, hy)
        pre, _ = programs.train(
            prog_p,
            programs.optimizer(cfg, lr),
            begin,
            {},
            shared.heads,
            setup.base,
            shared.order,
            cfg.preheat_steps,
            progress=bar,
        )
        return inits.from_preheat(pre["lora"], cfg.r, hy.std), {}
    grads = moments = None
    if name in inits.NEEDS_GRADIENT:
        prog = programs.compiled(setup, cfg, lr, cfg.scale(cfg.r), cfg.hessian_iters)
        grads = inits.full_gradients(setup, cfg, prog, shared.heads, shared.order)
    if name in inits.NEEDS_SIGMA:
        moments = {p: jnp.asarray(m, jnp.float32) for p, m in shared.moments.items()}
    return inits.initialize(name, setup.kernels, shared.keys, st, hy, grads=grads, moments=moments)


def run_one(
    setup: data.Setup, cfg: LoraConfig, shared: Shared, name: str, lr: float, progress=True
):
    """Train init ``name`` at ``lr`` on every seed; returns the run's arrays (module doc)."""
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    prog = programs.compiled(setup, cfg, lr, cfg.scale(cfg.r), cfg.hessian_iters)
    base, task = setup.base, setup.task
    bar = tqdm(
        total=cfg.steps + (cfg.preheat_steps if name == "hrp" else 0),
        desc=f"{name} lr={lr:g}",
        unit="step",
        disable=not progress,
    )
    out: dict[str, Any] = {}
    adapters, offsets = start(setup, cfg, shared, name, lr, bar)
    if name == "hrp":
        out["preheat_seconds"] = time.perf_counter() - t0
    init = adapters
    if cfg.hessian_iters > 0 and lr == cfg.lr:
        hkeys = jax.vmap(lambda k: jax.random.fold_in(k, 0x48455353))(shared.keys)  # "HESS"
        trainable0 = {"lora": adapters, "head": shared.heads}
        out["lam_max"] = np.asarray(
            prog.lam_max(trainable0, base, offsets, jnp.asarray(shared.order[:, 0]), hkeys),
            np.float64,
        )
    eval_steps = sorted({*range(cfg.eval_every, cfg.steps, cfg.eval_every), cfg.steps})
    val, equal_total = [], cfg.steps - cfg.preheat_steps if name == "hrp" else None

    def on_step(k, trainable):
        if k in eval_steps:
            split = task.val if k == cfg.steps else task.val[:VAL_CURVE]
            val.append(programs.evaluate(prog, trainable, base, offsets, split))
        if k == equal_total:
            out["test_loss_equal_total"], out["test_acc_equal_total"] = programs.evaluate(
                prog, trainable, base, offsets, task.test
            )

    first = {"lora": jax.tree.map(jnp.array, adapters), "head": shared.heads}
    l0, a0 = programs.evaluate(prog, first, base, offsets, task.val[:VAL_CURVE])
    opt = programs.optimizer(cfg, lr)
    final, losses = programs.train(
        prog, opt, adapters, offsets, shared.heads, base, shared.order, cfg.steps, on_step, bar
    )
    bar.close()
    out["test_loss"], out["test_acc"] = programs.evaluate(prog, final, base, offsets, task.test)
    if equal_total is None or equal_total < 1:
        out["test_loss_equal_total"], out["test_acc_equal_total"] = (
            out["test_loss"],
            out["test_acc"],
        )
    out["train_loss"] = losses
    out["val_steps"] = np.asarray([0, *eval_steps])
    out["val_loss"] = np.stack([l0, *[v[0] for v in val]], 1)
    out["val_acc"] = np.stack([a0, *[v[1] for v in val]], 1)
    out["val_loss_final"], out["val_acc_final"] = val[-1]
    out["captured_lora"] = bridge.captured_lora(init, final["lora"], offsets, cfg.r, shared.halves)
    for path, ab in final["lora"].items():  # seed 0's trained adapter and head (--export-peft)
        out[f"seed0|{path}|A"], out[f"seed0|{path}|B"] = ab.A[0], ab.B[0]
    for f, v in final["head"].items():
        out[f"seed0|head|{f}"] = v[0]
    out["moves_w0"] = np.asarray(bool(offsets))
    if shared.targets is not None:
        out["captured_target"] = bridge.captured_target(init, shared.targets, shared.halves)
    out["seconds"] = time.perf_counter() - t0
    return {k: np.asarray(v) for k, v in out.items()}


def shared_inputs(setup: data.Setup, cfg: LoraConfig, progress: bool) -> tuple[Shared, bool]:
    """Steps 2–3 of the study: each seed's key, head and data order, the kernels' input second
    moments and, when ``hrp-sim finetune`` ran for the task, ΔW's top-r directions."""
    keys = data.seed_keys(cfg)
    steps = max(cfg.steps, cfg.preheat_steps, cfg.grad_batches)
    moments = inits.second_moments(setup, cfg, progress)
    halves = bridge.whitenings(moments)
    deltas = bridge.full_finetune_deltas(setup, cfg)
    shared = Shared(
        keys=keys,
        heads=data.heads(keys, setup.hidden, len(setup.task.classes)),
        order=data.batch_order(cfg, setup.task.train, steps),
        moments=moments,
        halves=halves,
        targets=None if deltas is None else bridge.target_directions(deltas, cfg.r, halves),
    )
    return shared, deltas is not None


def run_study(cfg: LoraConfig, out, progress: bool = True) -> dict:
    """Every init at every learning rate; returns ``{"runs": {run name: arrays}, "meta"}``.
    Finished runs are saved in ``out/runs/`` and reused when their settings match."""
    t0 = time.perf_counter()
    programs.COMPILED.clear()
    setup = data.prepare(cfg, progress)
    shared, has_target = shared_inputs(setup, cfg, progress)
    runs_dir = Path(out) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    done, reused = {}, []
    for lr in cfg.lrs:
        for name in cfg.inits:
            key = runs.run_key(cfg, name, lr, has_target)
            run = runs.run_name(name, lr)
            stop_if_signalled()
            got = runs.load_saved(runs_dir / f"{run}.npz", key)
            if got is None:
                got = run_one(setup, cfg, shared, name, lr, progress)
                write_npz(runs_dir / f"{run}.npz", got | {"run_key": np.asarray(key)})
            else:
                reused.append(run)
            done[run] = got
    meta = {
        "kernels": [p for p, _ in setup.kernels],
        "classes": list(setup.task.classes),
        "split_sizes": {k: len(getattr(setup.task, k)) for k in ("train", "val", "test")},
        "reused_runs": reused,
        "bridge_target": has_target,
        "full_finetune": bridge.full_finetune_reference(cfg),
        "wall_seconds": time.perf_counter() - t0,
        # the compute of every run, reused ones included: the study's cost from scratch
        "runs_seconds": float(sum(float(r["seconds"]) for r in done.values())),
    }
    return {"runs": done, "meta": meta}
