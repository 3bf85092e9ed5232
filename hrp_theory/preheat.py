"""THE preheat-then-SVD routine of HRP, shared by synthetic problems and real layers.

1. Preheat: a rank-``p`` LoRA from ``B_p = 0`` and a random ``A_p`` is trained for ``T_p`` steps
   (``classic`` or ``freeze-a``; any optimizer), or, for ``freeze-a``, taken to its exact limit
   ``B_p = C A_p (A_pᵀ Σ A_p)^{-1} / s`` (``steps="converged"``).
2. The top-r singular triplets of ``B_p A_pᵀ`` are read off without forming the ``m×n`` product:
   ``B_p = Q_B R_B``, ``A_p = Q_A R_A`` (thin QR) and ``R_B R_Aᵀ = W_L Ŝ W_Rᵀ`` (a ``p×p`` SVD),
   so ``Û_r = Q_B W_L[:, :r]`` and ``V̂_r = Q_A W_R[:, :r]``. Cost ``O((m+n)p² + p³)``.

The main run then starts from ``A = c·V̂_r, B = 0`` (``inits.hrp``).

**Σ-aware HRP** (``sigma_aware=True``, docs/theory.md §6): the SVD is of ``B_p A_pᵀ Σ^{1/2}``
(factors ``B_p`` and ``Σ^{1/2}A_p``), so ``V̂_r`` lives in whitened coordinates;
``inits.hrp-sigma`` maps it back, ``A ∝ orth(Σ^{-1/2} V̂_r)``. It uses ``obj.sigma_half`` (the
population ``Σ^{1/2}``; for a real layer, the covariance estimated from activations). With
``Σ = I`` it is plain HRP.

**Two-sided HRP** (``two_sided=True``, docs/theory.md §5.5, not the paper's recipe): keep the
preheat's *left* factor, ``Q = orth(B_p)`` (a randomized range finder:
``range(B_p) ≈ range(M A_p)``), take one gradient ``−∂L/∂A`` at ``(B, A) = (Q, 0)``, which is
``s·CᵀQ``, and read the top-r right singular vectors of ``QᵀC``. Then
``‖M(I − P_{V̂_r})‖² ≤ ‖M − [P_Y M]_r‖²`` pathwise, so the fixed-rank HMT bound
``(1 + r/(p−r−1))·T_r`` holds in expectation when ``B_p = M A_p`` (one freeze-A GD step of
learning rate 1 from ``B_p = 0``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import linalg
from .dynamics import make_optimizer, train
from .factors import LoraParams
from .losses import Objective, ct_times
from .validation import MAX_STEPS, one_of

PREHEAT_FORMS = ("classic", "freeze-a")


def check_preheat(p: int, r: int, form: str, steps, k: int) -> None:
    """Validate a preheat: ``r ≤ p ≤ min(m, n)``, a known form, ``steps`` ≥ 1 or 'converged'."""
    if isinstance(p, bool) or not isinstance(p, int) or not r <= p <= k:
        raise ValueError(
            f"preheat_rank: p = {p!r} must be an integer with r = {r} <= p <= min(m, n) = {k}"
        )
    one_of(form, "preheat", PREHEAT_FORMS, "preheat form")
    if steps == "converged":
        if form != "freeze-a":
            raise ValueError(
                "preheat_steps: 'converged' has a closed form only for the freeze-a "
                "preheat; add --preheat freeze-a or give a number of steps"
            )
    elif isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(
            f"preheat_steps: {steps!r} must be a positive integer (at most "
            f"{MAX_STEPS}) or 'converged'"
        )


def canonical_signs(U: jax.Array, V: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Flip singular-vector pairs so the largest-magnitude entry of each ``V`` column is > 0."""
    idx = jnp.argmax(jnp.abs(V), axis=0)
    sign = jnp.sign(V[idx, jnp.arange(V.shape[1])])
    sign = jnp.where(sign == 0, 1.0, sign).astype(V.dtype)
    return U * sign, V * sign


def thin_svd_of_product(B: jax.Array, A: jax.Array, r: int):
    """Top-r SVD of ``B Aᵀ`` from its factors, never forming the ``m×n`` product.

    Args:
      B: (m, p); A: (n, p); r ≤ p.

    Returns:
      ``(U_r (m, r), S_r (r,), V_r (n, r))`` with canonical signs.
    """
    Q_B, R_B = linalg.qr(B)
    Q_A, R_A = linalg.qr(A)
    W_L, S, W_Rt = linalg.svd(R_B @ R_A.T)
    U, V = canonical_signs(Q_B @ W_L[:, :r], Q_A @ W_Rt[:r].T)
    return U, S[:r], V


def two_sided_directions(B_p: jax.Array, C: jax.Array, r: int):
    """Top-r singular triplets of ``Q Qᵀ C`` with ``Q = orth(B_p)``: ``Q W_L``, ``Ŝ``, ``W_R`` from
    the ``p×n`` SVD of ``QᵀC`` (canonical signs)."""
    Q = linalg.orth(B_p)
    W_L, S, W_Rt = linalg.svd(ct_times(C, Q).T)
    U, V = canonical_signs(Q @ W_L[:, :r], W_Rt[:r].T)
    return U, S[:r], V


class Preheated(NamedTuple):
    """Result of a preheat: top-r triplets of ``s_p·B_p A_pᵀ`` and the preheated factors."""

    U: jax.Array
    S: jax.Array
    V: jax.Array
    params: LoraParams


def freeze_a_limit(A_p: jax.Array, obj: Objective, s):
    """The freeze-A limit in an orthonormal basis: ``A_p = Q R`` and ``B_∞ A_pᵀ = K Qᵀ`` with
    ``K = C Q (QᵀΣQ)^{-1} / s`` — well conditioned even when ``A_p`` is not (p close to n)."""
    Q, R = linalg.qr(A_p)
    CQ = obj.C @ Q
    K = CQ if obj.Sigma is None else linalg.solve(Q.T @ obj.Sigma @ Q, CQ.T).T
    return K / s, Q, R


def converged_freeze_a(A_p: jax.Array, obj: Objective, s) -> jax.Array:
    """Exact limit of the freeze-A flow/GD: ``B_∞ = C A_p (A_pᵀ Σ A_p)^{-1} / s``
    (docs/theory.md §3.1)."""
    K, _, R = freeze_a_limit(A_p, obj, s)
    return _b_from_limit(K, R)


def _b_from_limit(K: jax.Array, R: jax.Array) -> jax.Array:
    """``B`` with ``B Rᵀ = K`` (so that ``B A_pᵀ = K Qᵀ``)."""
    return linalg.solve_upper(R, K.T).T


@functools.partial(
    jax.jit, static_argnames=("r", "form", "steps", "optimizer", "two_sided", "sigma_aware")
)
def preheat_then_svd(
    A_p: jax.Array,
    obj: Objective,
    s,
    lr,
    *,
    r: int,
    form: str = "classic",
    steps: int | str = 20,
    optimizer: str = "gd",
    momentum=0.0,
    weight_decay=0.0,
    two_sided: bool = False,
    sigma_aware: bool = False,
) -> Preheated:
    """Preheat a rank-p LoRA from ``(B_p = 0, A_p)`` on ``obj``, then take the top-r SVD.

    Args:
      A_p: (n, p) random input-side factor (p = its number of columns).
      obj: the objective; only ``C`` and ``Sigma`` are used.
      s: the preheat LoRA scale; lr: its learning rate (both may be traced).
      r: number of singular triplets to return (static).
      form: ``classic`` or ``freeze-a`` (static).
      steps: preheat length ``T_p`` (static int), or ``"converged"`` (freeze-a only).
      optimizer: ``gd``, ``sgd``, ``adam``, ``adamw`` or ``flow`` (gradient flow, RK4 with step
        ``lr``; static).
      two_sided: return the two-sided HRP triplets (module docstring) instead of the SVD of
        ``B_p A_pᵀ`` (static).
      sigma_aware: SVD of ``B_p A_pᵀ Σ^{1/2}`` instead; ``V`` is then in whitened coordinates
        (module docstring; static).
    """
    check_preheat(A_p.shape[1], r, form, steps, A_p.shape[0])
    obj_in, obj = obj, Objective(C=obj.C, Sigma=obj.Sigma)
    if steps == "converged":
        K, Q, R = freeze_a_limit(A_p, obj, s)
        params = LoraParams(B=_b_from_limit(K, R), A=A_p)
        factors = (K, Q)  # same product, better conditioned factors
    else:
        opt = make_optimizer(optimizer, lr, momentum, weight_decay)
        B0 = jnp.zeros((obj.C.shape[0], A_p.shape[1]), A_p.dtype)
        params = train(LoraParams(B0, A_p), obj, s, form=form, opt=opt, steps=int(steps)).params
        factors = (params.B, params.A)
    if two_sided:
        U, S, V = two_sided_directions(params.B, obj.C, r)
        return Preheated(U=U, S=S, V=V, params=params)
    if sigma_aware and obj_in.sigma_half is not None:
        factors = (factors[0], obj_in.sigma_half @ factors[1])
    U, S, V = thin_svd_of_product(*factors, r)
    return Preheated(U=U, S=s * S, V=V, params=params)
