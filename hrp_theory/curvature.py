"""The extreme eigenvalues of a loss Hessian at init, and GD's stability threshold ``2/λ_max``.

A recent re-evaluation of LoRA variants ("Learning Rate Matters", arXiv 2602.04998) traced the
different best learning rates of inits to ``λ_max`` of the loss Hessian at init: GD on a quadratic
is stable for ``lr < 2/λ_max``. Three ways to get it:

* ``lam_max_exact``: the dense Hessian of the synthetic LoRA loss over the flattened factors
  ``(B, A)`` (``jax.hessian``) and its top eigenvalue — exact, for problems of a few thousand
  parameters;
* ``lanczos``: ``k`` steps of Lanczos with full reorthogonalisation on Hessian-vector products
  (forward-over-reverse) of any differentiable loss of a pytree — what the end-to-end study runs
  on MiniLM. It returns the largest **and** the smallest Ritz value with their residual norms
  ``‖H y − θ y‖`` (a Ritz value is within its residual of an eigenvalue of ``H``). At a LoRA init
  the Hessian is indefinite (the cross term between ``B`` and ``A``), so the eigenvalue of largest
  magnitude can be ``λ_min``: the sign matters, and a power iteration gets it wrong;
* ``lam_max_power``: power iteration (the Rayleigh quotient of the eigenvalue of largest
  magnitude, with its sign), kept for the synthetic checks it was tested on.
"""

from __future__ import annotations

from typing import NamedTuple

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


class Extremes(NamedTuple):
    """Lanczos's extreme Ritz values and their residual norms ``‖H y − θ y‖``."""

    lam_max: jax.Array
    res_max: jax.Array
    lam_min: jax.Array
    res_min: jax.Array


def lanczos(hvp, v0: jax.Array, k: int) -> Extremes:
    """``k`` Lanczos steps with full reorthogonalisation on the symmetric operator ``hvp`` (flat
    vectors) from ``v0``; the extreme Ritz values of the ``k×k`` tridiagonal matrix ``T`` and
    their residual norms ``|β_k · e_kᵀ s|`` (``s`` the Ritz vector of ``T``).

    Full reorthogonalisation (two Gram–Schmidt passes against every earlier vector) keeps the
    basis orthonormal in float32, so no spurious copies of converged eigenvalues appear. Cost:
    ``k`` Hessian-vector products and ``O(k²·dim)`` for the orthogonalisation. A breakdown
    (``β ≈ 0``: an invariant subspace found) is handled by continuing with a zero vector, whose
    rows of ``T`` are then exactly zero-coupled, and their diagonal is set to ``α₀`` (a Rayleigh
    quotient inside the Krylov space, so never outside its extreme Ritz values): without that, a
    Hessian with few distinct eigenvalues would report a spurious 0 as an extreme."""
    n = v0.shape[0]
    dtype = v0.dtype
    Q = jnp.zeros((k + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    alpha, beta = jnp.zeros((k,), dtype), jnp.zeros((k,), dtype)

    def orthogonalize(w, Q, j):
        mask = (jnp.arange(k + 1) <= j).astype(dtype)[:, None]
        for _ in range(2):
            w = w - (Q * mask).T @ ((Q * mask) @ w)
        return w

    def body(j, carry):
        Q, alpha, beta = carry
        w = hvp(Q[j])
        a = jnp.vdot(Q[j], w)
        w = orthogonalize(w, Q, j)
        b = jnp.linalg.norm(w)
        tiny = jnp.finfo(dtype).eps * jnp.maximum(jnp.abs(a), 1.0)
        q = jnp.where(b > tiny, w / jnp.where(b > tiny, b, 1.0), jnp.zeros_like(w))
        return Q.at[j + 1].set(q), alpha.at[j].set(a), beta.at[j].set(jnp.where(b > tiny, b, 0))

    Q, alpha, beta = jax.lax.fori_loop(0, k, body, (Q, alpha, beta))
    alive = jnp.linalg.norm(Q[:k], axis=1) > 0  # rows after a breakdown carry a zero vector
    alpha = jnp.where(alive, alpha, alpha[0])
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    theta, S = linalg.eigh(T)
    res = jnp.abs(beta[-1] * S[-1])
    return Extremes(lam_max=theta[-1], res_max=res[-1], lam_min=theta[0], res_min=res[0])


def hessian_extremes(loss, params: dict, key: jax.Array, k: int, block=None) -> Extremes:
    """``lanczos`` on the Hessian of ``loss`` at ``params`` (a dict of pytrees), from a Gaussian
    start drawn from ``key``. ``block``: the top-level keys the Hessian is taken over (the others
    held fixed), e.g. ``("lora",)`` for the adapters with the head fixed; None: all of them."""
    keys = tuple(params) if block is None else tuple(block)
    flat, unravel = ravel_pytree({name: params[name] for name in keys})

    def loss_of(f):
        return loss(params | unravel(f))

    grad = jax.grad(loss_of)
    hvp = lambda v: jax.jvp(grad, (flat,), (v,))[1]
    return lanczos(hvp, jax.random.normal(key, flat.shape, flat.dtype), k)
