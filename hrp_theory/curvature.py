"""The largest eigenvalue of a loss Hessian at init, and GD's stability threshold ``2/λ_max``.

A recent re-evaluation of LoRA variants ("Learning Rate Matters", arXiv 2602.04998) traced the
different best learning rates of inits to ``λ_max`` of the loss Hessian at init: GD on a quadratic
is stable for ``lr < 2/λ_max``. Two ways to get it:

* ``lam_max_exact``: the dense Hessian of the synthetic LoRA loss over the flattened factors
  ``(B, A)`` (``jax.hessian``) and its top eigenvalue — exact, for problems of a few thousand
  parameters;
* ``lam_max_power``: power iteration on Hessian-vector products (forward-over-reverse), for any
  differentiable loss of a pytree — what the end-to-end study runs on MiniLM. It converges to the
  eigenvalue of largest magnitude, which at a LoRA init can be negative (the cross term between
  ``B`` and ``A`` is indefinite); the Rayleigh quotient is returned with its sign.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import linalg
from .factors import LoraParams
from .losses import Objective, population_loss


def lam_max_exact(params: LoraParams, obj: Objective, s) -> jax.Array:
    """Top eigenvalue of the Hessian of ``population_loss`` at ``params`` (dense)."""
    flat, unravel = ravel_pytree(params)
    H = jax.hessian(lambda f: population_loss(unravel(f), obj, s))(flat)
    return linalg.eigvalsh(0.5 * (H + H.T))[-1]


def lam_max_power(loss, params, key: jax.Array, iters: int) -> jax.Array:
    """Rayleigh quotient after ``iters`` power iterations of the Hessian of ``loss`` at
    ``params`` (any pytree), from a Gaussian start drawn from ``key``."""
    grad = jax.grad(loss)
    hvp = lambda v: jax.jvp(grad, (params,), (v,))[1]
    leaves, tdef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    v = tdef.unflatten([jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])
    norm = lambda t: jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(t)))
    dot = lambda a, b: sum(jnp.sum(x * y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    def body(_, carry):
        v, _ = carry
        v = jax.tree.map(lambda x: (x / norm(v)).astype(x.dtype), v)
        w = hvp(v)
        return w, dot(v, w)

    _, lam = jax.lax.fori_loop(0, iters, body, (v, jnp.zeros((), leaves[0].dtype)))
    return lam


def stability_lr(lam) -> jax.Array:
    """GD's stability threshold ``2/λ_max`` (inf where ``λ_max ≤ 0``)."""
    lam = jnp.asarray(lam)
    return jnp.where(lam > 0, 2.0 / jnp.where(lam > 0, lam, 1.0), jnp.inf)
