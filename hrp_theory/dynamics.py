"""Training dynamics: GD and optax optimizers under ``lax.scan``, with records every k steps.

Update (GD):  ``B ← B − η ∇_B L``,  ``A ← A − η ∇_A L`` (frozen factors are left as they are).
``sgd``, ``adam`` and ``adamw`` are optax's, on the same exact (full-batch) gradients; ``sgd``
takes an optional heavy-ball ``momentum``. ``flow`` is gradient flow ``dθ/dt = −∇L`` integrated
by RK4 with step ``dt = lr`` (``rk4_step``), so ``steps·lr`` is the time horizon (``flow.py``
adds the adaptive integrator and trajectory API on top).

Records are taken at step 0 and after every ``record_every`` steps by a nested scan, so memory is
``O(steps / record_every)`` whatever the number of steps.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import devices as dev
from . import layout
from ._fields import traced
from .factors import LoraParams, trains
from .losses import DiagonalC, Objective, factor_grads, population_loss, train_loss
from .validation import (
    MAX_STEPS,
    in_interval,
    non_negative,
    one_of,
    optional_positive_int,
    optional_positive_number,
    positive_int,
)

OPTIMIZERS = ("gd", "sgd", "adam", "adamw", "flow")
DEFAULT_LR = {"gd": 0.1, "sgd": 0.1, "adam": 1e-2, "adamw": 1e-2, "flow": 0.02}


def check_optimizer(name: str, field: str = "optimizer") -> str:
    return one_of(name, field, OPTIMIZERS, "optimizer")


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """Optimiser and budget of a run.

    Attributes:
      optimizer: one of ``gd``, ``sgd``, ``adam``, ``adamw``, ``flow`` (gradient flow, RK4).
      lr: learning rate (default per optimizer: 0.1 for gd/sgd, 1e-2 for adam/adamw); for
        ``flow`` the RK4 time step (default 0.02), the horizon being ``steps·lr``.
      steps: number of optimisation steps.
      record_every: record the losses every k steps (default: steps/100 rounded to a divisor).
      momentum: heavy-ball momentum of ``sgd``.
      weight_decay: decoupled weight decay of ``adamw``.
    """

    optimizer: str = "gd"
    lr: float | None = traced(None)
    steps: int = 300
    record_every: int | None = None
    momentum: float = traced(0.0)
    weight_decay: float = traced(1e-4)

    def __post_init__(self):
        check_optimizer(self.optimizer)
        positive_int(self.steps, "steps", MAX_STEPS)
        optional_positive_number(self.lr, "lr")
        every = optional_positive_int(self.record_every, "record_every")
        if every is not None and self.steps % every:
            raise ValueError(
                f"record_every: {every} does not divide steps = {self.steps}; choose a divisor "
                "of steps"
            )
        in_interval(self.momentum, "momentum", 0.0, 1.0, open_hi=True)
        non_negative(self.weight_decay, "weight_decay")

    @property
    def learning_rate(self) -> float:
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr

    @property
    def every(self) -> int:
        return self.record_every if self.record_every is not None else record_interval(self.steps)


def record_interval(steps: int, records: int = 100) -> int:
    """The largest divisor of ``steps`` that is at most ``steps/records``: about ``records``
    evenly spaced records of a run."""
    target = max(1, steps // records)
    return max(d for d in range(1, target + 1) if steps % d == 0)


def make_optimizer(name: str, lr: Any, momentum: Any = 0.0, weight_decay: Any = 0.0):
    """An ``Optimizer`` (``flow``: the ``RK4`` marker); numbers may be traced."""
    if name == "flow":
        return RK4(dt=lr)
    check_optimizer(name)
    return Optimizer(name, lr, momentum, weight_decay)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["lr", "momentum", "weight_decay"],
    meta_fields=["name"],
)
@dataclasses.dataclass(frozen=True)
class Optimizer:
    """optax's ``gd`` (``sgd`` without momentum), ``sgd`` (heavy ball), ``adam`` or ``adamw`` with
    its numbers (which may be traced) as a pytree, so ``train`` can pass it to the seed-minor
    layout as an argument (``layout.py``). ``init`` and ``update`` are the optax
    transformation's."""

    name: str
    lr: Any
    momentum: Any = 0.0
    weight_decay: Any = 0.0

    def transform(self) -> optax.GradientTransformation:
        if self.name == "gd":
            return optax.sgd(self.lr)
        if self.name == "sgd":
            return optax.sgd(self.lr, momentum=self.momentum)
        if self.name == "adam":
            return optax.adam(self.lr)
        return optax.adamw(self.lr, weight_decay=self.weight_decay)

    def init(self, params):
        return self.transform().init(params)

    def update(self, updates, state, params=None):
        return self.transform().update(updates, state, params)


class RK4(NamedTuple):
    """The ``"flow"`` optimizer: gradient flow integrated by RK4 with step ``dt`` (traceable)."""

    dt: jax.Array


def velocity(params: LoraParams, obj: Objective, s, train_B: bool, train_A: bool) -> LoraParams:
    """``−∇L`` for the trained factors, 0 for the frozen ones."""
    return jax.tree.map(jnp.negative, factor_grads(params, obj, s, train_B, train_A))


def rk4_step(
    params: LoraParams, obj: Objective, s, dt, train_B: bool = True, train_A: bool = True
) -> LoraParams:
    """One classical RK4 step of the gradient flow."""
    f = lambda p: velocity(p, obj, s, train_B, train_A)
    axpy = lambda a, x, y: jax.tree.map(lambda u, v: v + a * u, x, y)
    k1 = f(params)
    k2 = f(axpy(dt / 2, k1, params))
    k3 = f(axpy(dt / 2, k2, params))
    k4 = f(axpy(dt, k3, params))
    return jax.tree.map(
        lambda p, a, b, c, d: p + dt / 6 * (a + 2 * b + 2 * c + d), params, k1, k2, k3, k4
    )


class TrainResult(NamedTuple):
    """Final factors, recorded curves (dict of ``(steps/record_every + 1,)`` arrays, or None),
    and the factors at ``snapshot_step`` (or None)."""

    params: LoraParams
    curves: Any
    snapshot: Any


def record(params: LoraParams, obj: Objective, s) -> dict:
    """Losses recorded along a run: population loss, and train loss for finite samples."""
    out = {"loss": population_loss(params, obj, s)}
    if obj.X is not None:
        out["train_loss"] = train_loss(params, obj, s)
    return out


def train(
    params: LoraParams,
    obj: Objective,
    s,
    *,
    form: str,
    opt,
    steps: int,
    record_every: int | None = None,
    snapshot_step: int | None = None,
    observe=None,
) -> TrainResult:
    """Run ``steps`` optimisation steps of a LoRA of any rank on ``obj``.

    Args:
      params: initial ``(B, A)``.
      obj: the objective (``losses.Objective``).
      s: LoRA scale (may be traced).
      form: ``classic``, ``freeze-a`` or ``freeze-b`` (static).
      opt: an ``Optimizer`` or ``RK4`` (``make_optimizer``), or any optax transformation.
      steps: number of steps (static).
      record_every: record at step 0 and every k steps (static; None: no records).
      snapshot_step: also return the factors after this many steps (static; None: no snapshot).
      observe: ``params -> dict`` recorded (default ``record``: the losses).

    Vmapped over a batch of seeds whose matrices are small, the run is seed-minor
    (``layout.py``; the same numbers, laid out for speed) when ``opt`` is ``make_optimizer``'s and
    ``observe`` is the default.
    """
    run = functools.partial(
        _train, form=form, steps=steps, record_every=record_every, snapshot_step=snapshot_step
    )
    if not isinstance(opt, (Optimizer, RK4)):
        return run(params, obj, s, opt, observe=observe)
    if observe is None:
        return layout.seed_minor(run, _width)(params, obj, s, opt)
    if not dev.is_small(_width(params, obj, s, opt)):
        return run(params, obj, s, opt, observe=observe)
    # a small run records its factors (seed-minor when batched) and observes them afterwards,
    # all records at once
    res = layout.seed_minor(functools.partial(run, observe=_factors), _width)(params, obj, s, opt)
    return res._replace(curves=jax.vmap(observe)(res.curves))


def _factors(p: LoraParams) -> LoraParams:
    return p


def _width(params: LoraParams, obj: Objective, s, opt) -> int | None:
    """A run's width for ``devices.seeds_last``: its factors' most rows when its target is
    diagonal in the whitened metric (the spectral and reduced bases), else None."""
    diagonal = isinstance(obj.C, DiagonalC) and obj.Sigma is None and obj.X is None
    return layout.widest(params) if diagonal else None


def _train(params, obj, s, opt, *, form, steps, record_every, snapshot_step, observe=None):
    """``train``'s loop; the factors may carry trailing seed axes (``layout.py``)."""
    train_B, train_A = trains(form)
    observe = observe or (lambda p: record(p, obj, s))
    flow = isinstance(opt, RK4)

    def step(carry, _):
        p, state, i, snap = carry
        if flow:
            new = rk4_step(p, obj, s, opt.dt, train_B, train_A)
        else:
            g = factor_grads(p, obj, s, train_B, train_A)
            updates, state = opt.update(g, state, p)
            new = LoraParams(*optax.apply_updates(p, updates))  # type: ignore[misc]
            new = LoraParams(B=new.B if train_B else p.B, A=new.A if train_A else p.A)
        i = i + 1
        if snapshot_step is not None:
            snap = jax.tree.map(lambda a, b: jnp.where(i == snapshot_step, a, b), new, snap)
        return (new, state, i, snap), None

    snap0 = params if snapshot_step is not None else None
    carry = (params, () if flow else opt.init(params), jnp.asarray(0, jnp.int32), snap0)
    if record_every is None:
        carry, _ = jax.lax.scan(step, carry, None, length=steps)
        curves = None
    else:

        def block(carry, _):
            carry, _ = jax.lax.scan(step, carry, None, length=record_every)
            return carry, observe(carry[0])

        carry, recs = jax.lax.scan(block, carry, None, length=steps // record_every)
        curves = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), observe(params), recs)
    return TrainResult(params=carry[0], curves=curves, snapshot=carry[3])
