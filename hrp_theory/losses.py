"""Losses and their factored gradients.

Training minimises a quadratic in ``D = s·B Aᵀ``::

    L_train(D) = ½ tr(D Σ Dᵀ) − ⟨D, C⟩ + const,      ∇_D L = D Σ − C.

Population problems have ``Σ`` the input covariance and ``C = M Σ`` (so ``L = ½‖(M − D)Σ^{1/2}‖²``);
finite-sample problems have ``Σ = XᵀX/N`` and ``C = Yᵀ X/N`` with ``Y`` the residual labels
``y − W0 x``. The gradients with respect to the factors never form an ``m×n`` temporary::

    ∇_B L = s (s·B (AᵀΣA) − C A),       ∇_A L = s (s·Σ A (BᵀB) − Cᵀ B).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .factors import LoraParams


class DiagonalC(NamedTuple):
    """``C = diag(s)`` as an ``(m, n)`` matrix, ``k = len(s) ≤ min(m, n)``: a whitened population
    target in its own singular basis (the spectral fast path, the theory's ``M = diag(σ)``).

    A pytree whose zero-width ``rows`` (m, 0) and ``cols`` (n, 0) carry the shape. ``C @ X`` and
    ``ct_times(C, Y)`` cost ``O(k·r)`` instead of ``O(m·n·r)``.
    """

    s: jax.Array
    rows: jax.Array
    cols: jax.Array

    @classmethod
    def of(cls, s: jax.Array, m: int, n: int) -> DiagonalC:
        return cls(s, jnp.zeros((m, 0), s.dtype), jnp.zeros((n, 0), s.dtype))

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.shape[0], self.cols.shape[0]

    def __matmul__(self, X: jax.Array) -> jax.Array:
        """``C X`` for ``X`` (n, r, …): ``s ⊙ X[:k]`` padded to m rows."""
        return _pad_rows(col_scale(self.s, X[: self.s.shape[0]]), self.shape[0])

    def t_matmul(self, Y: jax.Array) -> jax.Array:
        """``Cᵀ Y`` for ``Y`` (m, r, …): ``s ⊙ Y[:k]`` padded to n rows."""
        return _pad_rows(col_scale(self.s, Y[: self.s.shape[0]]), self.shape[1])


def _pad_rows(X: jax.Array, rows: int) -> jax.Array:
    return jnp.concatenate([X, jnp.zeros((rows - X.shape[0],) + X.shape[1:], X.dtype)])


def ct_times(C, Y: jax.Array) -> jax.Array:
    """``Cᵀ Y`` (n, r). Dense: computed as ``(YᵀC)ᵀ`` because ``CᵀY`` makes XLA on CPU transpose
    C every step (2× slower)."""
    return C.t_matmul(Y) if isinstance(C, DiagonalC) else (Y.T @ C).T


class Objective(NamedTuple):
    """What a LoRA run is trained on and measured against (a pytree).

    Attributes:
      C: (m, n) linear term of the training loss (``MΣ`` or ``YᵀX/N``), or a ``DiagonalC``
        (spectral fast path: ``Σ = I`` and ``M = diag(σ)``; then ``Mt`` is None).
      Sigma: (n, n) training input covariance, or None for ``Σ = I``.
      Mt: (m, n) whitened population target ``M Σ^{1/2}`` (None when only training is needed).
      sigma_half: (n, n) ``Σ^{1/2}`` of the population, or None for ``Σ = I``.
      X: (N, n) training inputs, or None for a population problem.
      Y: (N, m) residual training labels ``y − W0 x``, or None.
    """

    C: Any
    Sigma: jax.Array | None = None
    Mt: jax.Array | None = None
    sigma_half: jax.Array | None = None
    X: jax.Array | None = None
    Y: jax.Array | None = None


def _times_sigma(Z: jax.Array, Sigma: jax.Array | None) -> jax.Array:
    return Z if Sigma is None else Sigma @ Z


#: Products of at most this many multiply-adds, with a contraction of at most 32, are written as
#: a broadcast and a sum (``small_matmul``).
SMALL_PRODUCT = 4096


def mat_t(x: jax.Array) -> jax.Array:
    """The transpose of the matrix in ``x``'s first two axes (any further axes are batch axes:
    the seed-minor layout's seeds, ``layout.py``)."""
    return jnp.swapaxes(x, 0, 1)


def col_scale(v: jax.Array, X: jax.Array) -> jax.Array:
    """``diag(v) X`` for ``X`` whose first axis has ``len(v)`` entries (further axes: columns,
    then batch axes)."""
    return v.reshape(v.shape + (1,) * (X.ndim - 1)) * X


def small_matmul(x: jax.Array, y: jax.Array) -> jax.Array:
    """``x @ y`` over the first two axes of each; any further axes are batch axes (the
    seed-minor layout, ``layout.py``), always written as a broadcast multiply and a sum. A plain
    pair of tiny matrices (the spectral and reduced bases, under ``vmap``) is written so too,
    which XLA fuses into one loop over the vmapped seeds (about 3× faster on CPU than a batch of
    tiny GEMMs); larger ones are a matmul."""
    i, k = x.shape[:2]
    j = y.shape[1]
    if x.ndim == y.ndim == 2 and not (k <= 32 and i * k * j <= SMALL_PRODUCT):
        return x @ y
    nd = max(x.ndim, y.ndim)
    x = x.reshape(x.shape + (1,) * (nd - x.ndim))
    y = y.reshape(y.shape + (1,) * (nd - y.ndim))
    return jnp.sum(x[:, :, None] * y[None], axis=1)


def factor_grads(
    params: LoraParams, obj: Objective, s, train_B: bool = True, train_A: bool = True
) -> LoraParams:
    """Exact gradients of the training loss with respect to ``B`` and ``A`` (zeros if frozen)."""
    B, A = params
    zeros = jnp.zeros_like
    mm = small_matmul if isinstance(obj.C, DiagonalC) else jnp.matmul
    gB = gA = None
    if train_B:
        SA = _times_sigma(A, obj.Sigma)
        gB = s * (s * mm(B, mm(mat_t(A), SA)) - obj.C @ A)
    if train_A:
        gA = s * (s * mm(_times_sigma(A, obj.Sigma), mm(mat_t(B), B)) - ct_times(obj.C, B))
    return LoraParams(B=zeros(B) if gB is None else gB, A=zeros(A) if gA is None else gA)


def population_loss(params: LoraParams, obj: Objective, s) -> jax.Array:
    """``½‖(M − s·B Aᵀ) Σ^{1/2}‖²_F`` computed from the residual (no cancellation).

    Spectral fast path (``C = diag(σ)``, ``Σ = I``): ``½(‖σ‖² − 2s·Σᵢ σᵢ⟨Bᵢ, Aᵢ⟩ + s²·⟨BᵀB, AᵀA⟩)``
    in ``O((m+n)r²)``; its rounding error is ``~eps·‖σ‖²``, the resolution floor the figures draw.
    """
    B, A = params
    if isinstance(obj.C, DiagonalC):  # B, A may carry trailing seed axes (``layout.py``)
        sig, k = obj.C.s, obj.C.s.shape[0]
        cross = jnp.sum(col_scale(sig, jnp.sum(B[:k] * A[:k], axis=1)), axis=0)
        gram = small_matmul(mat_t(B), B) * small_matmul(mat_t(A), A)
        return 0.5 * (jnp.sum(sig**2) - 2 * s * cross + s**2 * jnp.sum(gram, axis=(0, 1)))
    if obj.Mt is None:
        raise ValueError("objective: no population target (Mt); it is training-only")
    At = A if obj.sigma_half is None else obj.sigma_half @ A
    return 0.5 * jnp.sum((obj.Mt - s * B @ At.T) ** 2)


def train_loss(params: LoraParams, obj: Objective, s) -> jax.Array:
    """Empirical loss ``(1/2N)‖s·X A Bᵀ − Y‖²`` of a finite-sample problem."""
    B, A = params
    if obj.X is None or obj.Y is None:
        raise ValueError("objective: train_loss needs a finite-sample problem (X, Y)")
    N = obj.X.shape[0]
    return 0.5 * jnp.sum((s * (obj.X @ A) @ B.T - obj.Y) ** 2) / N


def shift_target(obj: Objective, dW0: jax.Array) -> Objective:
    """The objective after the frozen weight moves by ``dW0`` (``W0 ← W0 + dW0``).

    PiSSA, OLoRA and LoRA-GA subtract their initial product from ``W0`` so the model is
    unchanged at step 0; the adapter then fits ``M − dW0``.
    """
    C = obj.C - (dW0 if obj.Sigma is None else dW0 @ obj.Sigma)
    Mt = (
        None
        if obj.Mt is None
        else obj.Mt - (dW0 if obj.sigma_half is None else dW0 @ obj.sigma_half)
    )
    Y = None if obj.Y is None or obj.X is None else obj.Y - obj.X @ dW0.T
    return obj._replace(C=C, Mt=Mt, Y=Y)
