"""Gradient flow of a LoRA: ``dB/dt = −∇_B L``, ``dA/dt = −∇_A L`` (frozen factors stay put).

Two integrators:

* ``rk4`` — classical fixed-step Runge–Kutta (order 4) under ``lax.scan``. It is the optimizer
  ``"flow"`` of ``dynamics.train`` (``dynamics.rk4_step``; learning rate = step ``dt``,
  ``steps·dt`` = horizon), so every runner, recorder and snapshot that works for GD works for
  gradient flow too. ``euler`` is GD
  with ``lr = dt`` (order 1), kept for convergence-order tests.
* ``tsit5`` — adaptive Tsitouras 5(4) with a PID step-size controller (diffrax; the optional
  extra, ``pip install -e ".[ode]"`` from a clone), error-controlled to ``rtol``/``atol``,
  optionally stopping at a steady state.

With ``Σ = I`` and ``s = 1`` the classic flow is ``dB/dt = (M − BAᵀ)A``, ``dA/dt = (M − BAᵀ)ᵀB``
and conserves ``BᵀB − AᵀA`` (docs/theory.md §5.4); the freeze-A flow is the linear ODE of
docs/theory.md §3.1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .dynamics import make_optimizer, train, velocity
from .factors import LoraParams, trains
from .losses import Objective

METHODS = ("euler", "rk4", "tsit5")


class Flow(NamedTuple):
    """A gradient-flow trajectory: save times ``t`` (saves+1,), observations ``ys`` (a pytree with
    leading axis saves+1), final factors, and the number of steps taken."""

    t: jax.Array
    ys: object
    params: LoraParams
    n_steps: jax.Array


def check_flow(t_end, saves, method: str, dt, rtol, atol) -> int:
    """Validate an integration request; returns the fixed-step count per save (0 for tsit5)."""
    for value, name in ((t_end, "t_end"), (dt, "dt"), (rtol, "rtol"), (atol, "atol")):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"{name}: {value!r} must be a positive number")
    if isinstance(saves, bool) or not isinstance(saves, int) or saves < 1:
        raise ValueError(f"saves: {saves!r} must be a positive integer")
    if method not in METHODS:
        raise ValueError(f"method: unknown integrator {method!r}; use one of {', '.join(METHODS)}")
    if method == "tsit5":
        try:
            import diffrax  # noqa: F401
        except ImportError:
            raise ValueError(
                "method: tsit5 needs diffrax; pip install -e '.[ode]' (from a clone) or use "
                "method='rk4'"
            ) from None
        return 0
    per_save = t_end / saves / dt
    if abs(per_save - round(per_save)) > 1e-9 * max(1.0, per_save) or round(per_save) < 1:
        raise ValueError(
            f"dt: {dt} does not divide the save interval t_end/saves = "
            f"{t_end / saves:g}; pick dt = (t_end/saves)/k for an integer k"
        )
    return int(round(per_save))


def gradient_flow(
    params: LoraParams,
    obj: Objective,
    s,
    *,
    form: str,
    t_end: float,
    saves: int,
    method: str = "rk4",
    dt: float = 0.02,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: int = 1_000_000,
    steady_state: bool = False,
    observe: Callable | None = None,
) -> Flow:
    """Integrate the LoRA gradient flow from ``params`` to ``t_end``.

    ``ẋ = −∇L(x)`` with ``x = (B, A)`` (the frozen factor of ``form`` is held fixed). The state is
    observed at ``t_k = k·t_end/saves``, ``k = 0 … saves``.

    Args:
      params: initial ``(B, A)``.
      obj: the objective.
      s: LoRA scale.
      form: ``classic``, ``freeze-a`` or ``freeze-b`` (static).
      t_end: horizon (static).
      saves: number of save intervals (static).
      method: ``rk4`` / ``euler`` (fixed step ``dt``, which must divide ``t_end/saves``) or
        ``tsit5`` (adaptive, ``dt`` is the first step, error ≤ ``rtol·|x| + atol`` per step).
      steady_state: tsit5 only — stop once ``‖ẋ‖ ≤ rtol·‖x‖ + atol``; later saves repeat the
        final state.
      observe: ``params -> pytree`` recorded at each save (default: the factors themselves).

    Works under ``jit`` and ``vmap`` (all non-array arguments are static Python values).
    """
    per_save = check_flow(t_end, saves, method, dt, rtol, atol)
    if steady_state and method != "tsit5":
        raise ValueError("steady_state: needs method='tsit5' (fixed-step runs go to t_end)")
    observe = observe or (lambda p: p)
    t = jnp.linspace(0.0, t_end, saves + 1, dtype=params.A.dtype)
    if method != "tsit5":
        opt = make_optimizer("flow" if method == "rk4" else "gd", dt)
        res = train(
            params,
            obj,
            s,
            form=form,
            opt=opt,
            steps=per_save * saves,
            record_every=per_save,
            observe=observe,
        )
        return Flow(t=t, ys=res.curves, params=res.params, n_steps=jnp.asarray(per_save * saves))
    return _tsit5(params, obj, s, form, t, dt, rtol, atol, max_steps, steady_state, observe)


def _tsit5(params, obj, s, form, t, dt, rtol, atol, max_steps, steady_state, observe) -> Flow:
    import diffrax

    train_B, train_A = trains(form)
    term = diffrax.ODETerm(lambda _t, y, _a: velocity(y, obj, s, train_B, train_A))
    event = (
        diffrax.Event(diffrax.steady_state_event(rtol=rtol, atol=atol)) if steady_state else None
    )
    sol = diffrax.diffeqsolve(
        term,
        diffrax.Tsit5(),
        t0=t[0],
        t1=t[-1],
        dt0=dt,
        y0=params,
        saveat=diffrax.SaveAt(ts=t, t1=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        event=event,
        throw=False,
    )
    # After a steady-state stop diffrax writes the terminal state into the next save slot and
    # leaves the later ones (and the t1 slot) at inf: the state no longer moves, so repeat it.
    assert sol.ts is not None and sol.ys is not None
    last = jnp.sum(jnp.isfinite(sol.ts)) - 1
    final = jax.tree.map(lambda y: y[last], sol.ys)
    done = jnp.isfinite(sol.ts[:-1])
    ys = jax.tree.map(
        lambda y, f: jnp.where(done.reshape((-1,) + (1,) * f.ndim), y[:-1], f), sol.ys, final
    )
    return Flow(t=t, ys=jax.vmap(observe)(ys), params=final, n_steps=sol.stats["num_steps"])
