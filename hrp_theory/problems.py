"""Synthetic low-rank regression problems ``W_target = W0 + M``.

Convention (docs/theory.md §2): a layer is ``y = W x`` with ``W ∈ R^{m×n}``; the LoRA update is
``s·B Aᵀ`` with ``B ∈ R^{m×r}`` (output side) and ``A ∈ R^{n×r}`` (input side). With input
covariance ``Σ`` the population loss is ``L = ½‖(M − s·B Aᵀ) Σ^{1/2}‖²_F``.

Spectra and input covariances are given as strings (``hrp_theory.spectra``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import linalg
from ._fields import traced
from .losses import DiagonalC, Objective
from .spectra import parse_sigma, sigma_eigenvalues, sigma_structure, spectrum_values
from .validation import (
    MAX_DIM,
    in_interval,
    non_negative,
    optional_positive_int,
    positive_int,
)

#: The largest loss scale ½‖M‖² a problem may have: its squares and products stay finite in
#: float32 (3.4e38) with room to spare.
LOSS_LIMIT = 1e30


@dataclasses.dataclass(frozen=True)
class ProblemSpec:
    """What defines a synthetic problem. Validated on construction.

    Attributes:
      m, n: output and input dimension of the layer.
      spectrum, rank, scale: singular values of ``M = ΔW`` (module docstring).
      w0_spectrum, w0_scale: singular values of the pretrained ``W0`` (matters for PiSSA/OLoRA).
      w0_align: in [0, 1]; 0 draws ``W0``'s singular vectors independently (Haar), 1 makes them
        equal to ``M``'s (top subspaces aligned), values between rotate part way.
      sigma: input covariance string (``identity`` or ``power:β[:basis]``).
      n_samples: if set, a finite-sample problem: ``N`` inputs ``x ~ N(0, Σ)`` with labels
        ``y = W_target x + noise·ε``; training then sees the empirical loss.
      noise: label-noise standard deviation (finite-sample mode only).
    """

    m: int = 64
    n: int = 64
    spectrum: str = traced("power:1")
    rank: int | None = traced(None)
    scale: float = traced(1.0)
    w0_spectrum: str = traced("power:0.5")
    w0_scale: float = traced(1.0)
    w0_align: float = traced(0.0)
    sigma: str = traced("identity", static=sigma_structure)
    n_samples: int | None = None
    noise: float = traced(0.0)

    def __post_init__(self):
        positive_int(self.m, "m", MAX_DIM)
        positive_int(self.n, "n", MAX_DIM)
        # Parse everything once so errors surface here, at the boundary.
        sv = spectrum_values(self.spectrum, self.k, self.rank, self.scale)
        w0 = spectrum_values(self.w0_spectrum, self.k, None, self.w0_scale, field="w0_spectrum")
        in_interval(self.w0_align, "w0_align", 0.0, 1.0)
        parse_sigma(self.sigma)
        for field, v in (("scale", sv), ("w0_scale", w0)):
            with np.errstate(over="ignore"):
                energy = 0.5 * float(np.sum(np.square(np.asarray(v, np.float64))))
            if not energy <= LOSS_LIMIT:
                raise ValueError(
                    f"{field}: the loss scale ½‖M‖² = {energy:.3g} overflows single precision "
                    f"(limit {LOSS_LIMIT:.0e}); lower --{field.replace('_', '-')}"
                )
        optional_positive_int(self.n_samples, "n_samples")
        non_negative(self.noise, "noise")
        if self.noise > 0 and self.n_samples is None:
            raise ValueError("noise: label noise needs a finite-sample problem; set n_samples")

    @property
    def k(self) -> int:
        return min(self.m, self.n)

    @property
    def whitened(self) -> bool:
        return parse_sigma(self.sigma).identity


class ProblemArrays(NamedTuple):
    """The host-computed numbers of a spec, passed traced so a sweep over them compiles once."""

    sigma: jax.Array  # (k,) singular values of M
    w0_sigma: jax.Array  # (k,) singular values of W0
    sigma_eigs: jax.Array  # (n,) eigenvalues of Σ (descending)
    w0_align: jax.Array  # ()
    noise: jax.Array  # ()


def problem_arrays(spec: ProblemSpec, dtype=None) -> ProblemArrays:
    dtype = dtype or jnp.result_type(float)
    return ProblemArrays(
        sigma=jnp.asarray(spectrum_values(spec.spectrum, spec.k, spec.rank, spec.scale), dtype),
        w0_sigma=jnp.asarray(
            spectrum_values(spec.w0_spectrum, spec.k, None, spec.w0_scale, field="w0_spectrum"),
            dtype,
        ),
        sigma_eigs=jnp.asarray(sigma_eigenvalues(parse_sigma(spec.sigma), spec.n), dtype),
        w0_align=jnp.asarray(spec.w0_align, dtype),
        noise=jnp.asarray(spec.noise, dtype),
    )


class Svd(NamedTuple):
    """Thin SVD ``X = U diag(S) Vᵀ`` with ``U (m×k)``, ``S (k,)`` descending, ``V (n×k)``."""

    U: jax.Array
    S: jax.Array
    V: jax.Array


class Problem(NamedTuple):
    """One synthetic regression problem (a pytree; batch it with vmap).

    Attributes:
      M: (m, n) the target update ``ΔW``.
      W0: (m, n) pretrained weight, or None when no init needs it.
      target: SVD of ``M``.
      whitened: SVD of ``M Σ^{1/2}`` (equal to ``target`` when ``Σ = I``); the Σ-aware optimum
        and the metrics are measured in this basis.
      sigma_inv_half: (n, n) ``Σ^{-1/2}`` or None when ``Σ = I``.
      objective: what training sees (population or finite-sample; see ``losses.Objective``).
    """

    M: jax.Array
    W0: jax.Array | None
    target: Svd
    whitened: Svd
    sigma_inv_half: jax.Array | None
    objective: Objective


def haar_orthogonal(key: jax.Array, n: int, dtype=None) -> jax.Array:
    """A Haar-distributed ``n×n`` orthogonal matrix (QR of a Gaussian with sign fix)."""
    g = jax.random.normal(key, (n, n), dtype or jnp.result_type(float))
    q, r = linalg.qr(g)
    return q * jnp.sign(jnp.diagonal(r))


def _rotate_toward(Q_target: jax.Array, Q_random: jax.Array, align: jax.Array) -> jax.Array:
    """Orthogonal basis whose leading columns interpolate between ``Q_random`` (align = 0) and
    ``Q_target`` (align = 1): QR keeps the nested spans of ``cos θ·Q_target + sin θ·Q_random``."""
    theta = (1.0 - align) * (jnp.pi / 2)
    q, r = linalg.qr(jnp.cos(theta) * Q_target + jnp.sin(theta) * Q_random)
    return q * jnp.sign(jnp.diagonal(r))


class Basis(NamedTuple):
    """Where a seed's problem lives (static under jit).

    * ``dense``: ``M = U diag(σ) Vᵀ`` with Haar ``U``, ``V`` (and ``W0``, ``Σ``, data as the spec
      says);
    * ``spectral``: ``M = diag(σ)`` (m×n), ``Σ = I`` (``spectral_problem``);
    * ``reduced``: ``M = diag(σ₁…σ_k)`` on ``rows × cols`` coordinates, ``rank`` = k nonzero
      singular values (``reduced_problem``).
    """

    kind: str = "dense"
    rank: int = 0
    rows: int = 0
    cols: int = 0


def diagonal_problem(S: jax.Array, rows: int, cols: int) -> Problem:
    """The whitened population problem ``M = diag(S)`` on ``rows × cols`` coordinates, in its own
    singular basis: ``U = I``, ``V = I``, ``C`` a ``DiagonalC`` (``len(S) ≤ min(rows, cols)``)."""
    k = S.shape[0]
    idx = jnp.arange(k)
    M = jnp.zeros((rows, cols), S.dtype).at[idx, idx].set(S)
    target = Svd(jnp.eye(rows, k, dtype=S.dtype), S, jnp.eye(cols, k, dtype=S.dtype))
    return Problem(
        M=M,
        W0=None,
        target=target,
        whitened=target,
        sigma_inv_half=None,
        objective=Objective(C=DiagonalC.of(S, rows, cols)),
    )


def spectral_problem(spec: ProblemSpec, arrays: ProblemArrays) -> Problem:
    """The whitened population problem in ``M``'s own singular basis: ``M = diag(σ)``, ``U = I``,
    ``V = I``, ``C`` a ``DiagonalC`` (no random draw: every seed sees the same ``M``).

    For GD or gradient flow from a rotation-invariant init (Gaussian ``A``; HRP on it), this is
    exactly the dense problem ``U diag(σ) Vᵀ`` with the init rotated (``B' = UᵀB``, ``A' = VᵀA``):
    the loss, the gradients and the updates all commute with those rotations."""
    return diagonal_problem(arrays.sigma, spec.m, spec.n)


def reduced_problem(arrays: ProblemArrays, basis: Basis) -> Problem:
    """A rank-k whitened target in the reduced basis (docs/theory.md §2.1).

    In M's singular basis, with ``B₀ = 0`` and an update that commutes with rotations (GD,
    heavy-ball SGD, gradient flow), the rows of B beyond k stay 0 and the rows of A beyond k are
    only ever right-multiplied by r×r matrices: ``A_⊥ = Q_⊥R`` keeps ``Q_⊥`` and only ``R``
    moves. So the run on ``[A_k; R]`` (``k + cols`` rows) against ``diag(σ₁…σ_k)`` is the full
    run, exactly: the losses, gradients and every metric depend on ``A_⊥`` only through
    ``A_⊥ᵀA_⊥ = RᵀR``. The cost of a step no longer depends on m or n."""
    return diagonal_problem(arrays.sigma[: basis.rank], basis.rows, basis.cols)


def build_problem(
    key: jax.Array,
    spec: ProblemSpec,
    arrays: ProblemArrays,
    with_w0: bool = True,
    basis: Basis = Basis(),
) -> Problem:
    """Draw a problem from its spec; ``arrays`` carry the spec's numbers (traced under jit).

    The key is split by purpose: singular vectors of M, of W0, Σ's eigenbasis, data. A
    ``spectral`` or ``reduced`` basis gives ``spectral_problem`` / ``reduced_problem`` (whitened
    population problems only; no random draw).
    """
    if basis.kind == "spectral":
        return spectral_problem(spec, arrays)
    if basis.kind == "reduced":
        return reduced_problem(arrays, basis)
    m, n, k = spec.m, spec.n, spec.k
    dtype = arrays.sigma.dtype
    k_target, k_w0, k_sigma, k_data = jax.random.split(key, 4)
    ku, kv = jax.random.split(k_target)
    U_full, V_full = haar_orthogonal(ku, m, dtype), haar_orthogonal(kv, n, dtype)
    U, V, S = U_full[:, :k], V_full[:, :k], arrays.sigma
    M = (U * S) @ V.T
    target = Svd(U, S, V)

    W0 = None
    if with_w0:
        k0u, k0v = jax.random.split(k_w0)
        U0 = _rotate_toward(U_full, haar_orthogonal(k0u, m, dtype), arrays.w0_align)
        V0 = _rotate_toward(V_full, haar_orthogonal(k0v, n, dtype), arrays.w0_align)
        W0 = (U0[:, :k] * arrays.w0_sigma) @ V0[:, :k].T

    sig = parse_sigma(spec.sigma)
    if sig.identity:
        sigma = sigma_half = sigma_inv_half = None
        whitened, Mt = target, M
    else:
        lam = arrays.sigma_eigs
        if sig.basis == "random":
            Q = haar_orthogonal(k_sigma, n, dtype)
        else:  # M's right singular vectors carry the smallest (adversarial) or largest eigenvalues
            Q = V_full[:, ::-1] if sig.basis == "adversarial" else V_full
        sigma = (Q * lam) @ Q.T
        sigma_half = (Q * jnp.sqrt(lam)) @ Q.T
        sigma_inv_half = (Q / jnp.sqrt(lam)) @ Q.T
        Mt = M @ sigma_half
        Ut, St, VtT = linalg.svd(Mt)
        whitened = Svd(Ut, St, VtT.T)

    if spec.n_samples is None:
        objective = Objective(
            C=Mt if sigma is None else M @ sigma,
            Sigma=sigma,
            Mt=Mt,
            sigma_half=sigma_half,
            X=None,
            Y=None,
        )
    else:
        N = spec.n_samples
        kx, ke = jax.random.split(k_data)
        Z = jax.random.normal(kx, (N, n), dtype)
        X = Z if sigma_half is None else Z @ sigma_half
        Y = X @ M.T + arrays.noise * jax.random.normal(ke, (N, m), dtype)  # y − W0 x
        objective = Objective(
            C=Y.T @ X / N, Sigma=X.T @ X / N, Mt=Mt, sigma_half=sigma_half, X=X, Y=Y
        )
    return Problem(
        M=M,
        W0=W0,
        target=target,
        whitened=whitened,
        sigma_inv_half=sigma_inv_half,
        objective=objective,
    )


def make_problem(key: jax.Array, spec: ProblemSpec, with_w0: bool = True) -> Problem:
    """Draw the problem ``spec`` describes from ``key`` (works eagerly and under jit)."""
    return build_problem(key, spec, problem_arrays(spec), with_w0)


def optimal_loss(problem: Problem, r: int) -> jax.Array:
    """Best rank-r population loss ``½ Σ_{i>r} σ_i(M Σ^{1/2})²`` (Eckart–Young, Σ-aware)."""
    return 0.5 * jnp.sum(problem.whitened.S[r:] ** 2)


def _finite_matrix(x, name: str, shape=None) -> jax.Array:
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D matrix, got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name}: shape {a.shape} does not match the expected {shape}")
    if not np.all(np.isfinite(a)):
        bad = int((~np.isfinite(a)).sum())
        raise ValueError(f"{name}: {bad} non-finite entries (NaN/inf); clean or drop them first")
    return jnp.asarray(a, jnp.result_type(float))


def problem_from_matrices(M, W0=None, Sigma=None) -> Problem:
    """A population problem from given matrices (a real ``ΔW``, ``W0`` and input covariance).

    Args:
      M: (m, n) target update. W0: (m, n) pretrained weight or None.
      Sigma: (n, n) symmetric positive semi-definite input covariance, or None for ``Σ = I``.
        Eigenvalues below ``1e-12·λ_max`` are clipped there for ``Σ^{-1/2}``.
    """
    M = _finite_matrix(M, "M")
    m, n = M.shape
    W0 = None if W0 is None else _finite_matrix(W0, "W0", (m, n))
    Ut, St, VtT = linalg.svd(M)
    target = Svd(Ut, St, VtT.T)
    if Sigma is None:
        return Problem(
            M=M,
            W0=W0,
            target=target,
            whitened=target,
            sigma_inv_half=None,
            objective=Objective(C=M, Mt=M),
        )
    Sigma = _finite_matrix(Sigma, "Sigma", (n, n))
    if not np.allclose(Sigma, Sigma.T, rtol=1e-6, atol=1e-8 * float(jnp.abs(Sigma).max())):
        raise ValueError("Sigma: not symmetric; pass a covariance matrix such as XᵀX/N")
    lam, Q = linalg.eigh(Sigma)
    if float(lam.min()) < -1e-8 * float(lam.max()):
        raise ValueError(f"Sigma: negative eigenvalue {float(lam.min()):.3g}; it must be PSD")
    lam = jnp.maximum(lam, 1e-12 * lam.max())
    half, inv_half = (Q * jnp.sqrt(lam)) @ Q.T, (Q / jnp.sqrt(lam)) @ Q.T
    Mt = M @ half
    U, S, Vt = linalg.svd(Mt)
    return Problem(
        M=M,
        W0=W0,
        target=target,
        whitened=Svd(U, S, Vt.T),
        sigma_inv_half=inv_half,
        objective=Objective(C=M @ Sigma, Sigma=Sigma, Mt=Mt, sigma_half=half),
    )
