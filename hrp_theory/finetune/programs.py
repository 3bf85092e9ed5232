"""The jitted programs of an end-to-end study, seeds vmapped: the train step, the evaluation, the
Hessian's extreme eigenvalues and the full-weight gradient; and the host loops that drive them
(``train``, ``evaluate``).

The frozen base is shared by every seed; adapters, heads and optimizer states carry a leading
seed axis. In the ``freeze-a`` form ``A`` is held at its init (its gradient is never formed and
the optimizer leaves it) while ``B`` and the head train. The inits of a study share their
compiled programs (``compiled``).
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..curvature import hessian_extremes
from ..factors import LoraParams
from ..interrupts import stop_if_signalled
from ..models import checkpoints
from . import adapters
from .config import LoraConfig
from .data import Setup

EVAL_BATCH = 64
#: The Hessian blocks whose extreme eigenvalues are measured at init: the adapters with the head
#: held fixed, and the adapters with the head (what a run trains).
BLOCKS = ("adapters", "adapters+head")


def optimizer(cfg: LoraConfig, lr: float, form: str = "classic"):
    """The main run's optimizer; in the ``freeze-a`` form ``A`` gets no update. The learning
    rate (and AdamW's decay) live in the optimizer's state, in JAX's default float dtype
    (``optax.inject_hyperparams``), not in the program: one compiled train step serves every
    rate of a grid, and the arithmetic is the one a constant rate gives (``settled_state``)."""
    inject = optax.inject_hyperparams
    if cfg.optimizer == "adamw":
        opt = inject(optax.adamw)(learning_rate=lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = inject(optax.adam)(learning_rate=lr)
    else:
        opt = inject(optax.sgd)(learning_rate=lr)
    if form == "classic":
        return opt

    def labels(trainable):
        lora = {p: LoraParams(B="train", A="frozen") for p in trainable["lora"]}  # type: ignore[arg-type]
        return {"lora": lora, "head": jax.tree.map(lambda _: "train", trainable["head"])}

    return optax.multi_transform({"train": opt, "frozen": optax.set_to_zero()}, labels)


def _frozen_a(trainable: dict) -> dict:
    lora = {p: ab._replace(A=jax.lax.stop_gradient(ab.A)) for p, ab in trainable["lora"].items()}
    return {**trainable, "lora": lora}


class Programs(NamedTuple):
    step: Any
    evaluate: Any
    curvature: Any
    grads: Any


def programs(setup: Setup, opt, form: str, lanczos_steps: int = 0) -> Programs:
    """The seed-vmapped jitted train step, evaluation, Hessian extremes (``lanczos_steps``) and
    full-weight gradient of one optimizer and form. Scales are per kernel (``{path: s}``)."""
    model = setup.model
    data = (setup.ids, setup.mask, setup.labels)

    def batch(idx):
        return tuple(jnp.take(a, idx, axis=0) for a in data)

    def loss_fn(trainable, scales, base, offsets, ids, mask, y):
        if form == "freeze-a":
            trainable = _frozen_a(trainable)
        lg = adapters.logits(model, base, trainable, offsets, scales, ids, mask)
        return optax.softmax_cross_entropy_with_integer_labels(lg, y).mean()

    def step(trainable, state, scales, base, offsets, idx):
        loss, g = jax.value_and_grad(loss_fn)(trainable, scales, base, offsets, *batch(idx))
        updates, state = opt.update(g, state, trainable)
        return optax.apply_updates(trainable, updates), state, loss

    def evaluate(trainable, scales, base, offsets, idx):
        ids, mask, y = batch(idx)
        lg = adapters.logits(model, base, trainable, offsets, scales, ids, mask)
        ce = optax.softmax_cross_entropy_with_integer_labels(lg, y)
        return jnp.argmax(lg, -1) == y, ce

    def curvature(trainable, scales, base, offsets, idx, key):
        """Extreme eigenvalues of the Hessian of the loss on the batches ``idx`` (K, batch),
        over the trained adapter factors (B, and A unless frozen), then with the head."""
        ids, mask, y = batch(idx.reshape(-1))
        names = ("B",) if form == "freeze-a" else ("B", "A")
        params = {n: {p: getattr(ab, n) for p, ab in trainable["lora"].items()} for n in names}
        params["head"] = trainable["head"]
        frozen = {p: ab.A for p, ab in trainable["lora"].items()}

        def loss(q):
            lora = {
                p: LoraParams(B=q["B"][p], A=q["A"][p] if "A" in q else frozen[p]) for p in frozen
            }
            t = {"lora": lora, "head": q["head"]}
            return loss_fn(t, scales, base, offsets, ids, mask, y)

        k1, k2 = jax.random.split(key)
        return (
            hessian_extremes(loss, params, k1, lanczos_steps, block=names),
            hessian_extremes(loss, params, k2, lanczos_steps),
        )

    def grads(kernels, head, base, idx):
        """``∂L/∂W`` (out, in) of each kernel at the base, zero adapters, averaged over batches."""

        def loss_of(ks, i):
            tree = checkpoints.flatten(base)
            tree.update({f"{p}/kernel": K for p, K in ks.items()})
            t = {"lora": {}, "head": head}
            return loss_fn(t, {}, checkpoints.unflatten(tree), {}, *batch(i))

        g = jax.lax.map(lambda i: jax.grad(loss_of)(kernels, i), idx)
        return {p: jnp.mean(x, 0).T for p, x in g.items()}

    return Programs(
        step=jax.jit(jax.vmap(step, in_axes=(0, 0, None, None, 0, 0)), donate_argnums=(0, 1)),
        evaluate=jax.jit(jax.vmap(evaluate, in_axes=(0, None, None, 0, None))),
        curvature=jax.jit(jax.vmap(curvature, in_axes=(0, None, None, 0, 0, 0))),
        grads=jax.jit(grads),
    )


def evaluate(prog: Programs, trainable, scales, base, offsets, split: np.ndarray):
    """``(correct, ce)``: per seed and example of ``split``, whether the argmax is the label and
    the cross-entropy, ``(S, len(split))`` (batches of ``EVAL_BATCH``, the last padded)."""
    n = len(split)
    pad = (-n) % EVAL_BATCH
    idx = np.concatenate([split, np.repeat(split[:1], pad)]).reshape(-1, EVAL_BATCH)
    right, ce = [], []
    for b in idx:
        stop_if_signalled()
        r, c = prog.evaluate(trainable, scales, base, offsets, jnp.asarray(b))
        right.append(np.asarray(r))
        ce.append(np.asarray(c, np.float64))
    return np.concatenate(right, 1)[:, :n], np.concatenate(ce, 1)[:, :n]


COMPILED: dict = {}  # the current study's compiled programs (cleared by run_study)


def compiled(setup: Setup, cfg: LoraConfig, form: str) -> Programs:
    """``programs`` cached per study and settings: the inits and learning rates of a study share
    their compiled train step, evaluation and curvature (the rate is in the optimizer's state,
    ``optimizer``)."""
    key = (id(setup), cfg.optimizer, form, cfg.lanczos_steps)
    if key not in COMPILED:
        COMPILED[key] = programs(setup, optimizer(cfg, cfg.lr, form), form, cfg.lanczos_steps)
    return COMPILED[key]


def settled_state(opt, trainable: dict):
    """``opt``'s seed-vmapped initial state in the dtypes an update leaves it in. Under x64 the
    rate and Adam's betas are float64, so after one step the moments of float32 factors are
    float64; starting them there (zeros either way: the same numbers) keeps one compiled train
    step instead of one for step 1 and another for the rest."""
    state = jax.vmap(opt.init)(trainable)
    after = jax.eval_shape(jax.vmap(opt.update), trainable, state, trainable)[1]
    return jax.tree.map(lambda x, a: x.astype(a.dtype), state, after)


def train(
    prog: Programs,
    opt,
    start: dict,
    scales: dict,
    offsets: dict,
    base: dict,
    order: np.ndarray,
    steps: int,
    on_step=None,
    progress=None,
):
    """Run ``steps`` seed-vmapped steps from ``start = {"lora", "head"}``; returns the trained
    ``{"lora", "head"}`` and the ``(S, steps)`` training losses. ``on_step(k, trainable)`` is
    called after step k (1-based)."""
    # fresh copies: the train step donates its inputs, and the caller keeps the init
    trainable = jax.tree.map(jnp.array, start)
    if steps == 0:
        return trainable, np.zeros((order.shape[0], 0))
    state = settled_state(opt, trainable)
    losses = []
    for k in range(steps):
        stop_if_signalled()
        if k == 0 and progress is not None:  # the first call compiles: say so, then how long
            progress.set_postfix_str("compiling the train step…")
            t0 = time.perf_counter()
        trainable, state, loss = prog.step(
            trainable, state, scales, base, offsets, jnp.asarray(order[:, k])
        )
        if k == 0 and progress is not None:
            jax.block_until_ready(loss)
            progress.set_postfix_str(f"compile + first step {time.perf_counter() - t0:.0f} s")
        losses.append(loss)
        if on_step is not None:
            on_step(k + 1, trainable)
        if progress is not None:
            progress.update(1)
    return trainable, np.asarray(jnp.stack(losses, 1), np.float64)
