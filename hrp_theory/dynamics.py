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
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from .lora import LoraParams, trains
from .losses import Objective, factor_grads, population_loss, train_loss

OPTIMIZERS = ("gd", "sgd", "adam", "adamw", "flow")
DEFAULT_LR = {"gd": 0.1, "sgd": 0.1, "adam": 1e-2, "adamw": 1e-2, "flow": 0.02}


def check_optimizer(name: str, field: str = "optimizer") -> str:
    if name not in OPTIMIZERS:
        raise ValueError(f"{field}: unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")
    return name


def check_positive(value, field: str, kind=float):
    """``value`` must be a positive finite number (a positive integer if ``kind`` is int)."""
    ok_type = isinstance(value, int) if kind is int else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or value <= 0:
        what = "a positive integer" if kind is int else "a positive number"
        raise ValueError(f"{field}: {value!r} must be {what}")
    return value


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
    lr: float | None = None
    steps: int = 300
    record_every: int | None = None
    momentum: float = 0.0
    weight_decay: float = 1e-4

    def __post_init__(self):
        check_optimizer(self.optimizer)
        check_positive(self.steps, "steps", int)
        if self.lr is not None:
            check_positive(self.lr, "lr")
        if self.record_every is not None:
            check_positive(self.record_every, "record_every", int)
            if self.steps % self.record_every:
                raise ValueError(f"record_every: {self.record_every} does not divide steps = "
                                 f"{self.steps}; choose a divisor of steps")
        if not (0 <= self.momentum < 1):
            raise ValueError(f"momentum: {self.momentum} must lie in [0, 1)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay: {self.weight_decay} must be >= 0")

    @property
    def learning_rate(self) -> float:
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr

    @property
    def every(self) -> int:
        if self.record_every is not None:
            return self.record_every
        target = max(1, self.steps // 100)
        return max(d for d in range(1, target + 1) if self.steps % d == 0)


def make_optimizer(name: str, lr, momentum=0.0, weight_decay=0.0):
    """An optax transformation (``flow``: the ``RK4`` marker); numbers may be traced."""
    if name == "flow":
        return RK4(dt=lr)
    if name == "gd":
        return optax.sgd(lr)
    if name == "sgd":
        return optax.sgd(lr, momentum=momentum)
    if name == "adam":
        return optax.adam(lr)
    if name == "adamw":
        return optax.adamw(lr, weight_decay=weight_decay)
    raise ValueError(check_optimizer(name))


class RK4(NamedTuple):
    """The ``"flow"`` optimizer: gradient flow integrated by RK4 with step ``dt`` (may be traced)."""

    dt: jax.Array


def velocity(params: LoraParams, obj: Objective, s, train_B: bool, train_A: bool) -> LoraParams:
    """``−∇L`` for the trained factors, 0 for the frozen ones."""
    return jax.tree.map(jnp.negative, factor_grads(params, obj, s, train_B, train_A))


def rk4_step(params: LoraParams, obj: Objective, s, dt, train_B: bool = True,
             train_A: bool = True) -> LoraParams:
    """One classical RK4 step of the gradient flow."""
    f = lambda p: velocity(p, obj, s, train_B, train_A)  # noqa: E731
    axpy = lambda a, x, y: jax.tree.map(lambda u, v: v + a * u, x, y)  # noqa: E731
    k1 = f(params)
    k2 = f(axpy(dt / 2, k1, params))
    k3 = f(axpy(dt / 2, k2, params))
    k4 = f(axpy(dt, k3, params))
    return jax.tree.map(lambda p, a, b, c, d: p + dt / 6 * (a + 2 * b + 2 * c + d),
                        params, k1, k2, k3, k4)


class TrainResult(NamedTuple):
    """Final factors, recorded curves (dict of ``(steps/record_every + 1,)`` arrays, or None),
    and the factors at ``snapshot_step`` (or None)."""

    params: LoraParams
    curves: dict | None
    snapshot: LoraParams | None


def record(params: LoraParams, obj: Objective, s) -> dict:
    """Losses recorded along a run: population loss, and train loss for finite samples."""
    out = {"loss": population_loss(params, obj, s)}
    if obj.X is not None:
        out["train_loss"] = train_loss(params, obj, s)
    return out


def train(params: LoraParams, obj: Objective, s, *, form: str, opt, steps: int,
          record_every: int | None = None, snapshot_step: int | None = None,
          observe=None) -> TrainResult:
    """Run ``steps`` optimisation steps of a LoRA of any rank on ``obj``.

    Args:
      params: initial ``(B, A)``.
      obj: the objective (``losses.Objective``).
      s: LoRA scale (may be traced).
      form: ``classic``, ``freeze-a`` or ``freeze-b`` (static).
      opt: an optax transformation or ``RK4`` (``make_optimizer``).
      steps: number of steps (static).
      record_every: record at step 0 and every k steps (static; None: no records).
      snapshot_step: also return the factors after this many steps (static; None: no snapshot).
      observe: ``params -> dict`` recorded (default ``record``: the losses).
    """
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
            new = optax.apply_updates(p, updates)
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
