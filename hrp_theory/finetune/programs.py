"""The jitted programs of an end-to-end study, seeds vmapped: the train step, the evaluation, the
Hessian's top eigenvalue and the full-weight gradient; and the host loops that drive them
(``train``, ``evaluate``).

The frozen base is shared by every seed; adapters, heads and optimizer states carry a leading
seed axis. The inits of a study share their compiled programs (``compiled``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..curvature import lam_max_power
from ..interrupts import stop_if_signalled
from ..models import checkpoints
from . import adapters
from .config import LoraConfig
from .data import Setup

EVAL_BATCH = 64


def optimizer(cfg: LoraConfig, lr: float):
    if cfg.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return optax.adam(lr)
    return optax.sgd(lr)


def _loss(model, s, trainable, base, offsets, ids, mask, y):
    lg = adapters.logits(model, base, trainable, offsets, s, ids, mask)
    return optax.softmax_cross_entropy_with_integer_labels(lg, y).mean()


class Programs(NamedTuple):
    step: Any
    evaluate: Any
    lam_max: Any
    grads: Any


def programs(setup: Setup, opt, s, hessian_iters: int) -> Programs:
    """The seed-vmapped jitted train step, evaluation, Hessian power iteration and full-weight
    gradient of one scale ``s`` and optimizer."""
    model = setup.model
    data = (setup.ids, setup.mask, setup.labels)

    def batch(idx):
        return tuple(jnp.take(a, idx, axis=0) for a in data)

    def step(trainable, state, base, offsets, idx):
        loss, g = jax.value_and_grad(_loss, argnums=2)(
            model, s, trainable, base, offsets, *batch(idx)
        )
        updates, state = opt.update(g, state, trainable)
        return optax.apply_updates(trainable, updates), state, loss

    def evaluate(trainable, base, offsets, idx, valid):
        ids, mask, y = batch(idx)
        lg = adapters.logits(model, base, trainable, offsets, s, ids, mask)
        ce = optax.softmax_cross_entropy_with_integer_labels(lg, y)
        right = (jnp.argmax(lg, -1) == y).astype(ce.dtype)
        return jnp.sum(ce * valid), jnp.sum(right * valid)

    def lam_max(trainable, base, offsets, idx, key):
        args = batch(idx)
        loss = lambda t: _loss(model, s, t, base, offsets, *args)
        return lam_max_power(loss, trainable, key, hessian_iters)

    def grads(kernels, head, base, idx):
        """``∂L/∂W`` (out, in) of each kernel at the base, zero adapters, averaged over batches."""

        def loss_of(ks, i):
            tree = checkpoints.flatten(base)
            tree.update({f"{p}/kernel": K for p, K in ks.items()})
            t = {"lora": {}, "head": head}
            return _loss(model, s, t, checkpoints.unflatten(tree), {}, *batch(i))

        g = jax.lax.map(lambda i: jax.grad(loss_of)(kernels, i), idx)
        return {p: jnp.mean(x, 0).T for p, x in g.items()}

    return Programs(
        step=jax.jit(jax.vmap(step, in_axes=(0, 0, None, 0, 0)), donate_argnums=(0, 1)),
        evaluate=jax.jit(jax.vmap(evaluate, in_axes=(0, None, 0, None, None))),
        lam_max=jax.jit(jax.vmap(lam_max, in_axes=(0, None, 0, 0, 0))),
        grads=jax.jit(grads),
    )


def evaluate(prog: Programs, trainable, base, offsets, split: np.ndarray) -> tuple[Any, Any]:
    """``(loss, accuracy)`` per seed on ``split`` (batches of ``EVAL_BATCH``; the last padded)."""
    n = len(split)
    pad = (-n) % EVAL_BATCH
    idx = np.concatenate([split, np.repeat(split[:1], pad)]).reshape(-1, EVAL_BATCH)
    valid = np.ones(idx.size, np.float32)
    valid[n:] = 0.0
    valid = valid.reshape(idx.shape)
    tot_l, tot_a = 0.0, 0.0
    for b, v in zip(idx, valid):
        l, a = prog.evaluate(trainable, base, offsets, jnp.asarray(b), jnp.asarray(v))
        tot_l, tot_a = tot_l + np.asarray(l), tot_a + np.asarray(a)
    return tot_l / n, tot_a / n


COMPILED: dict = {}  # the current study's compiled programs (cleared by run_study)


def compiled(setup: Setup, cfg: LoraConfig, lr: float, s: float, iters: int) -> Programs:
    """``programs`` cached per study and settings: the inits of a study share their compiled
    train step, evaluation and power iteration."""
    key = (id(setup), cfg.optimizer, cfg.weight_decay, lr, s, iters)
    if key not in COMPILED:
        COMPILED[key] = programs(setup, optimizer(cfg, lr), s, iters)
    return COMPILED[key]


def train(
    prog: Programs,
    opt,
    adapters: dict,
    offsets: dict,
    hd: dict,
    base: dict,
    order: np.ndarray,
    steps: int,
    on_step=None,
    progress=None,
):
    """Run ``steps`` seed-vmapped steps from ``adapters`` and heads ``hd``; returns the trained
    ``{"lora", "head"}`` and the ``(S, steps)`` training losses. ``on_step(k, trainable)`` is
    called after step k (1-based)."""
    # fresh copies: the train step donates its inputs, and the caller keeps the init
    trainable = jax.tree.map(jnp.array, {"lora": adapters, "head": hd})
    state = jax.vmap(opt.init)(trainable)
    losses = []
    for k in range(steps):
        stop_if_signalled()
        trainable, state, loss = prog.step(
            trainable, state, base, offsets, jnp.asarray(order[:, k])
        )
        losses.append(loss)
        if on_step is not None:
            on_step(k + 1, trainable)
        if progress is not None:
            progress.update(1)
    return trainable, np.asarray(jnp.stack(losses, 1), np.float64)
