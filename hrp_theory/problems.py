"""Synthetic low-rank regression problems ``W_target = W0 + M``.

Convention (docs/theory.md §2): a layer is ``y = W x`` with ``W ∈ R^{m×n}``; the LoRA update is
``s·B Aᵀ`` with ``B ∈ R^{m×r}`` (output side) and ``A ∈ R^{n×r}`` (input side). With input
covariance ``Σ`` the population loss is ``L = ½‖(M − s·B Aᵀ) Σ^{1/2}‖²_F``.

Spectra are given as strings (the CLI's ``--spectrum``):

========================  =====================================================
``power:α``               ``σ_i = i^{-α}``
``exp:τ``                 ``σ_i = exp(−(i−1)/τ)``
``rank:k``                ``k`` values equal to 1, the rest 0
``spike:k`` / ``spike:k:h``  ``k`` values equal to 1, the remaining ``rank − k`` equal to ``h``
                          (default 0.1)
``flat``                  all ``rank`` values equal to 1
``values:v1,v2,…``        the listed values, taken literally (sorted, descending)
``gap:k:g``               docs/theory.md §5.4's eigengap spectrum: ``1, 0.9, …, 1 − 0.1(k−1)``, then
                          ``(σ_k − g)·0.85^j``: the gap ``σ_k − σ_{k+1}`` is ``g``
                          (``gap:4:0.1`` is ``(1, .9, .8, .7, .6·.85^j)``)
========================  =====================================================

``rank`` (default ``min(m, n)``) is the number of nonzero values; families are scaled so that
``σ₁ = 1``, then everything is multiplied by ``scale``.

Input covariances (``--sigma``): ``identity``, or ``power:β[:basis]`` with eigenvalues
``λ_i ∝ i^{-β}`` normalised to mean 1, in a ``random`` (Haar) eigenbasis, an ``adversarial`` one
(the smallest eigenvalues on ``M``'s top right singular vectors, docs/theory.md §6) or an
``aligned`` one (the largest eigenvalues there).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import linalg
from ._fields import traced
from .losses import DiagonalC, Objective
from .validation import (
    MAX_DIM,
    in_interval,
    non_negative,
    optional_positive_int,
    positive_int,
    positive_number,
)

SPECTRUM_FAMILIES = ("power", "exp", "rank", "spike", "flat", "values", "gap")
SIGMA_BASES = ("random", "adversarial", "aligned")


def _number(text: str, field: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a number; {what}") from None
    if not math.isfinite(value):
        raise ValueError(f"{field}: {text!r} is not finite; {what}")
    return value


def _count(text: str, field: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not an integer; {what}") from None
    return value


def spectrum_values(
    spectrum: str, k: int, rank: int | None = None, scale: float = 1.0, field: str = "spectrum"
) -> np.ndarray:
    """Singular values of ``M`` for a spectrum string, padded with zeros to length ``k``.

    Args:
      spectrum: a spectrum string (module docstring).
      k: ``min(m, n)``, the length of the returned vector.
      rank: number of nonzero values (default ``k``; ``rank:``/``values:`` fix it themselves).
      scale: multiplies every value.
      field: the name used in error messages.

    Returns:
      A float64 array ``σ`` of shape ``(k,)``, non-increasing and non-negative.
    """
    if not isinstance(spectrum, str) or not spectrum:
        raise ValueError(
            f"{field}: empty; use one of {', '.join(SPECTRUM_FAMILIES)} (e.g. 'power:1')"
        )
    family, _, arg = spectrum.partition(":")
    if family not in SPECTRUM_FAMILIES:
        raise ValueError(
            f"{field}: unknown family {family!r} in {spectrum!r}; "
            f"use one of {', '.join(SPECTRUM_FAMILIES)} (e.g. 'power:1')"
        )
    if rank is not None and (
        isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 1 <= rank <= k
    ):
        raise ValueError(f"rank: {rank!r} must be an integer between 1 and min(m, n) = {k}")
    positive_number(scale, "w0_scale" if field == "w0_spectrum" else "scale")
    nonzero = k if rank is None else rank
    i = np.arange(1, nonzero + 1, dtype=np.float64)
    if family == "values":
        parts = [p for p in arg.split(",")]
        if not arg or any(not p.strip() for p in parts):
            raise ValueError(f"{field}: malformed list in {spectrum!r}; write values:1,0.5,0.25")
        vals = np.array([_number(p, field, "write values:1,0.5,0.25") for p in parts])
        if np.any(vals < 0) or not np.any(vals > 0):
            raise ValueError(
                f"{field}: values must be >= 0 with at least one > 0, got {spectrum!r}"
            )
        if len(vals) > k:
            raise ValueError(f"{field}: {len(vals)} values but min(m, n) = {k}; list at most {k}")
        if rank is not None and rank != len(vals):
            raise ValueError(
                f"rank: {rank} conflicts with the {len(vals)} listed values; "
                "drop --rank or list that many values"
            )
        sig = np.sort(vals)[::-1]
    elif family in ("power", "exp"):
        if not arg:
            raise ValueError(f"{field}: {family} needs a parameter, e.g. '{family}:1'")
        x = _number(arg, field, f"write e.g. '{family}:1'")
        if family == "power":
            if x < 0:
                raise ValueError(f"{field}: power exponent must be >= 0, got {x}")
            sig = i ** (-x)
        else:
            if x <= 0:
                raise ValueError(f"{field}: exp scale τ must be > 0, got {x}")
            sig = np.exp(-(i - 1) / x)
    elif family == "gap":
        head, _, g = arg.partition(":")
        if not head or not g:
            raise ValueError(f"{field}: gap needs a count and a gap, e.g. 'gap:4:0.1'")
        kk = _count(head, field, "write e.g. 'gap:4:0.1'")
        g = _number(g, field, "write e.g. 'gap:4:0.1'")
        if not (1 <= kk <= min(10, nonzero - 1)):
            raise ValueError(
                f"{field}: gap count {kk} must be between 1 and "
                f"{min(10, nonzero - 1)} (the head steps down by 0.1 from 1)"
            )
        top = 1 - 0.1 * (kk - 1)
        if not (0 < g < top):
            raise ValueError(f"{field}: gap {g} must lie in (0, {top:g}) so σ_{kk + 1} > 0")
        sig = np.where(i <= kk, 1 - 0.1 * (i - 1), (top - g) * 0.85 ** (i - kk - 1))
    elif family in ("rank", "spike"):
        head, _, level = arg.partition(":")
        if not head:
            raise ValueError(f"{field}: {family} needs a count, e.g. '{family}:4'")
        kk = _count(head, field, f"write e.g. '{family}:4'")
        if family == "rank":
            if level:
                raise ValueError(f"{field}: rank takes one count, e.g. 'rank:4'")
            if rank is not None and rank != kk:
                raise ValueError(f"rank: {rank} conflicts with {spectrum!r}; drop --rank")
            nonzero = kk
        if not (1 <= kk <= min(nonzero, k)):
            raise ValueError(f"{field}: count {kk} must be between 1 and {min(nonzero, k)}")
        h = (
            0.1
            if family == "spike" and not level
            else (_number(level, field, "write e.g. 'spike:4:0.1'") if level else 0.0)
        )
        if not 0 <= h <= 1:
            raise ValueError(f"{field}: spike bulk level must lie in [0, 1], got {h}")
        sig = np.where(np.arange(nonzero) < kk, 1.0, h)
    else:  # flat
        if arg:
            raise ValueError(f"{field}: 'flat' takes no parameter; set the count with --rank")
        sig = np.ones(nonzero)
    out = np.zeros(k)
    out[: len(sig)] = sig
    return out * scale


@dataclasses.dataclass(frozen=True)
class SigmaSpec:
    """Parsed input-covariance string: eigenvalue exponent ``beta`` and eigenbasis."""

    beta: float | None  # None: identity
    basis: str = "random"

    @property
    def identity(self) -> bool:
        return self.beta is None


def parse_sigma(text: str) -> SigmaSpec:
    """Parse ``identity`` or ``power:β[:random|adversarial|aligned]``."""
    if text in ("identity", "I", "eye"):
        return SigmaSpec(None)
    family, _, rest = text.partition(":")
    if family != "power" or not rest:
        raise ValueError(
            f"sigma: {text!r} not understood; use 'identity' or "
            "'power:BETA[:random|adversarial|aligned]' (e.g. 'power:1:random')"
        )
    b, _, basis = rest.partition(":")
    beta = _number(b, "sigma", "write e.g. 'power:1'")
    if beta < 0:
        raise ValueError(f"sigma: exponent must be >= 0, got {beta}")
    basis = basis or "random"
    if basis not in SIGMA_BASES:
        raise ValueError(
            f"sigma: unknown eigenbasis {basis!r}; use one of {', '.join(SIGMA_BASES)}"
        )
    return SigmaSpec(beta, basis)


def sigma_structure(text: str) -> str:
    """The compile-time part of a ``sigma`` string: identity or not, and the eigenbasis (the
    exponent β is traced)."""
    parsed = parse_sigma(text)
    return "identity" if parsed.identity else f"power:0:{parsed.basis}"


def sigma_eigenvalues(spec: SigmaSpec, n: int) -> np.ndarray:
    """Eigenvalues ``λ_i ∝ i^{-β}`` (descending), normalised so that ``mean(λ) = 1``."""
    if spec.beta is None:
        return np.ones(n)
    lam = np.arange(1, n + 1, dtype=np.float64) ** (-spec.beta)
    return lam * (n / lam.sum())


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
        spectrum_values(self.spectrum, self.k, self.rank, self.scale)
        spectrum_values(self.w0_spectrum, self.k, None, self.w0_scale, field="w0_spectrum")
        in_interval(self.w0_align, "w0_align", 0.0, 1.0)
        parse_sigma(self.sigma)
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
