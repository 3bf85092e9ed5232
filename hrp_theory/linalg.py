"""Dense linear algebra that never issues a batched LAPACK call on CPU.

jaxlib 0.10.2 runs a batched LAPACK call on CPU by splitting the batch over XLA's intra-op
thread pool and blocking a pool thread until the pieces are done, which deadlocks when as many
such calls run at once as the pool has threads (see ``runtime``). Here each routine is wrapped in
``jax.custom_batching.sequential_vmap`` on CPU: under ``vmap`` (seeds, layers, time grids) it runs
one matrix at a time inside a ``lax.map``, so LAPACK always sees a single matrix and runs inline.
On GPU and TPU the routines are jax's own, batched. ``tests/test_linalg.py`` checks the compiled
programs for batched LAPACK calls.

**Non-finite input.** LAPACK's divide-and-conquer SVD (``gesdd``, what ``jnp.linalg.svd`` calls
on CPU) never returns on a matrix holding an ``inf``: a diverged seed (a preheat at too large a
learning rate in float32) used to spin a core forever inside one XLA call. ``svd`` therefore
decomposes a zero matrix instead and returns NaN factors for such an input; a diverged seed is
then counted as diverged, like any other NaN.

Same signatures and results as ``jnp.linalg`` (thin/reduced forms only).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.scipy.linalg


def _cpu_sequential(fn):
    """``fn`` itself off CPU; on CPU (the default backend at trace time) a version whose
    ``vmap`` is a loop over single matrices."""
    seq = jax.custom_batching.sequential_vmap(fn)

    @functools.wraps(fn)
    def wrapped(*args):
        return (seq if jax.default_backend() == "cpu" else fn)(*args)

    return wrapped


@_cpu_sequential
def qr(x):
    """Reduced QR: ``(Q (m, k), R (k, n))`` with ``k = min(m, n)``."""
    return jnp.linalg.qr(x)


@_cpu_sequential
def svd(x):
    """Thin SVD ``(U, S, Vt)`` (``full_matrices=False``); all NaN for an input with NaN/inf
    entries (module docstring: LAPACK would not return)."""
    finite = jnp.all(jnp.isfinite(x))
    out = jnp.linalg.svd(jnp.where(finite, x, jnp.zeros_like(x)), full_matrices=False)
    return tuple(jnp.where(finite, t, jnp.full_like(t, jnp.nan)) for t in out)


@_cpu_sequential
def singular_values(x):
    """Singular values, descending."""
    return jnp.linalg.svd(x, compute_uv=False)


@_cpu_sequential
def eigh(x):
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix."""
    return jnp.linalg.eigh(x)


@_cpu_sequential
def eigvalsh(x):
    """Eigenvalues (ascending) of a symmetric matrix."""
    return jnp.linalg.eigvalsh(x)


@_cpu_sequential
def solve(a, b):
    """``a⁻¹ b`` (LU with partial pivoting)."""
    return jnp.linalg.solve(a, b)


@_cpu_sequential
def solve_upper(a, b):
    """``a⁻¹ b`` for upper-triangular ``a``."""
    return jax.scipy.linalg.solve_triangular(a, b, lower=False)


def orth(x):
    """Orthonormal basis of ``col(x)`` (thin QR)."""
    return qr(x)[0]


def spectral_norm(x):
    """Largest singular value."""
    return singular_values(x)[0]
