"""Closed forms and bounds of docs/theory.md §0 and §3–§6, as functions of (σ, m, n, r, p, Σ, t).

Values are residual energies ``R = ‖(M − BAᵀ)Σ^{1/2}‖²_F`` (twice the loss), as in
docs/theory.md §8.
``sigma`` is the vector of singular values of ``M`` (zeros allowed); ``F = Σσᵢ²``,
``E_r = Σ_{i≤r}σᵢ²``, ``T_r = Σ_{i>r}σᵢ²``. Host-side NumPy/SciPy in float64, except the few
matrix-valued closed forms (``freeze_a_flow``, ``classic_linear_phase``), which are JAX so they
can be vmapped next to the simulation.

Where an expectation has no closed form it is computed by an *independent* Monte Carlo (its own
RNG, NumPy) and returned with its standard error: ``freeze_a_expected_curve`` (the
``E tr e^{−2tAᵀA}`` term, over Wishart draws). ``hrp_residual_draws`` samples the law of
``R_HRP(p)`` itself (matrix-variate Beta draws), at any ``n`` and ``p``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from scipy import integrate, optimize, stats

from . import linalg


def energies(sigma, r: int) -> tuple[float, float, float]:
    """``(F, E_r, T_r)``: total, top-r and tail energy of the spectrum."""
    s2 = np.asarray(sigma, np.float64) ** 2
    return float(s2.sum()), float(s2[:r].sum()), float(s2[r:].sum())


# --- §3: asymmetric LoRA, A frozen random --------------------------------------------------------


def freeze_a_mean(sigma, n: int, r: int) -> float:
    """``E R_∞ = (1 − r/n) F`` for A with i.i.d. symmetric entries (§3.2). Mirror (B frozen):
    pass ``m`` as ``n``."""
    F, _, _ = energies(sigma, r)
    return (1 - r / n) * F


def freeze_a_variance(sigma, n: int, r: int) -> float:
    """``Var R_∞ = 2r(n−r)/(n(n−1)(n+2)) · (Σσ⁴ − F²/n)`` for Gaussian A (§3.3)."""
    s2 = np.asarray(sigma, np.float64) ** 2
    return 2 * r * (n - r) / (n * (n - 1) * (n + 2)) * float((s2**2).sum() - s2.sum() ** 2 / n)


def trace_exp_wishart(
    n: int, r: int, std: float, t, draws: int = 100_000, seed: int = 0, eta: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo estimate of ``E tr exp(−2t AᵀA)`` (or ``E tr (I − ηAᵀA)^{2t}`` for GD with step
    ``eta``, ``t`` then a step count) for ``A`` (n×r) with i.i.d. ``N(0, std²)`` entries.

    Computed from ``draws`` independent Wishart eigenvalue draws (NumPy, ``seed``); returns
    ``(mean, se)`` arrays over ``t``.
    """
    rng = np.random.default_rng(seed)
    t = np.atleast_1d(np.asarray(t, np.float64))
    total, total2, done = np.zeros(t.size), np.zeros(t.size), 0
    while done < draws:
        k = min(20_000, draws - done)
        A = std * rng.standard_normal((k, n, r))
        lam = np.linalg.eigvalsh(np.einsum("kni,knj->kij", A, A))  # (k, r)
        if eta is None:
            val = np.exp(-2 * t[None, :, None] * lam[:, None, :]).sum(-1)
        else:
            val = ((1 - eta * lam[:, None, :]) ** (2 * t[None, :, None])).sum(-1)
        total += val.sum(0)
        total2 += (val**2).sum(0)
        done += k
    mean = total / draws
    se = np.sqrt(np.maximum(total2 / draws - mean**2, 0) / (draws - 1))
    return mean, se


def freeze_a_expected_curve(
    sigma,
    n: int,
    r: int,
    std: float,
    t,
    draws: int = 100_000,
    seed: int = 0,
    eta: float | None = None,
):
    """``E R(t) = (1 − r/n)F + (F/n)·E tr e^{−2tAᵀA}`` for Gaussian A of entry std ``std`` (§3.4).

    The trace term is the Wishart Monte Carlo of ``trace_exp_wishart`` (GD: pass ``eta``, ``t`` =
    steps). Returns ``(mean, se)``; the SE is that of the independent trace estimate.
    """
    F, _, _ = energies(sigma, r)
    tr, se = trace_exp_wishart(n, r, std, t, draws, seed, eta)
    return (1 - r / n) * F + F / n * tr, F / n * se


def freeze_a_flow(A, C, Sigma, t):
    """Closed-form freeze-A gradient flow from ``B = 0`` (s = 1): ``B(t) = C A G⁻¹(I − e^{−tG})``
    with ``G = AᵀΣA`` (§3.1). JAX; ``Sigma=None`` means ``Σ = I``."""
    SA = A if Sigma is None else Sigma @ A
    lam, Q = linalg.eigh(A.T @ SA)
    return C @ A @ (Q * (-jnp.expm1(-t * lam) / lam)) @ Q.T


# --- §4: aligned ("wise") init -------------------------------------------------------------------


def aligned_curve(sigma, r: int, s2: float, t):
    """Freeze-A with ``A = s·V_r``: ``R(t) = T_r + e^{−2s²t} E_r`` (§4)."""
    _, E, T = energies(sigma, r)
    return T + np.exp(-2 * s2 * np.asarray(t, np.float64)) * E


def aligned_gd_curve(sigma, r: int, s2: float, eta: float, k):
    """The GD version: ``R_k = T_r + (1 − η s²)^{2k} E_r``."""
    _, E, T = energies(sigma, r)
    return T + (1 - eta * s2) ** (2 * np.asarray(k, np.float64)) * E


# --- §5: HRP -------------------------------------------------------------------------------------


def theorem_c_bounds(sigma, n: int, r: int, p: int) -> tuple[float, float]:
    """Theorem C (§5.2), Haar ``A_p``, converged freeze-A preheat:
    ``max(T_r, (1−p/n)F) ≤ E R_HRP(p) ≤ (1−p/n)E_r + (1 − r(n−p)/(n(n−r)))T_r``."""
    if not r <= p <= n:
        raise ValueError(f"p: {p} must satisfy r = {r} <= p <= n = {n}")
    F, E, T = energies(sigma, r)
    lower = max(T, (1 - p / n) * F)
    upper = (1 - p / n) * E + (1 - r * (n - p) / (n * (n - r))) * T if n > r else T
    return lower, upper


def theorem_c_gain(sigma, n: int, r: int, p: int) -> float:
    """Guaranteed improvement over random: ``R_rand − E R_HRP ≥ ((p−r)/n)(E_r − r·T_r/(n−r))``."""
    _, E, T = energies(sigma, r)
    return (p - r) / n * (E - r * T / (n - r))


def wishart_draws(rng, draws: int, k: int, dof: int) -> np.ndarray:
    """``draws`` k×k Wishart matrices ``ZᵀZ``, ``Z`` (dof×k) standard Gaussian, by Bartlett's
    decomposition ``L Lᵀ`` (``L_ii² ~ χ²(dof − i)``, ``L_ij ~ N(0, 1)`` below the diagonal):
    ``O(k²)`` numbers a draw, whatever ``dof``."""
    if dof < k:
        raise ValueError(f"dof: {dof} must be at least k = {k} for a Bartlett draw")
    L = np.tril(rng.standard_normal((draws, k, k)), -1)
    i = np.arange(k)
    L[:, i, i] = np.sqrt(rng.chisquare(dof - i, size=(draws, k)))
    return L @ np.swapaxes(L, -1, -2)


def hrp_residual_draws(
    sigma, n: int, r: int, p: int, draws: int = 10_000, seed: int = 0
) -> np.ndarray:
    """Independent draws of ``R_HRP(p)``: converged freeze-A preheat of rank p from a Gaussian
    ``A_p`` (n×p), then the rank-r freeze-A run from its top-r directions, to convergence
    (§5.1–§5.2). ``p = r`` is the random Gaussian init's ``R_∞``.

    Exact and width-free: with ``M = diag(σ₁…σ_k)`` (k nonzero σ), ``R_HRP = F − Σ_{i≤r}
    λ_i(D P_kk D)``, ``D = diag(σ)``, ``P_kk`` the k×k corner of the projector on ``col(A_p)``,
    whose law is ``S^{-1/2} G₁ S^{-1/2}``, ``S = G₁ + G₂``, ``G₁ ~ W_k(p)``, ``G₂ ~ W_k(n − p)``
    independent (the corner of a uniformly random p-dimensional projector). ``O(k³)`` a draw,
    NumPy, its own RNG (``seed``)."""
    s = np.asarray(sigma, np.float64)
    s = s[s > 0]
    k = s.size
    if not r <= p <= n or k > n:
        raise ValueError(f"p: need r = {r} <= p = {p} <= n = {n} and at most n nonzero σ")
    rng = np.random.default_rng(seed)
    F = float((s**2).sum())
    out = np.empty(draws)
    for lo in range(0, draws, 20_000):
        d = min(20_000, draws - lo)
        G1 = wishart_draws(rng, d, k, p) if p >= k else _low_rank_wishart(rng, d, k, p)
        G2 = wishart_draws(rng, d, k, n - p) if n - p >= k else _low_rank_wishart(rng, d, k, n - p)
        w, Q = np.linalg.eigh(G1 + G2)
        S_inv_half = (Q / np.sqrt(w)[:, None, :]) @ np.swapaxes(Q, -1, -2)
        P = S_inv_half @ G1 @ S_inv_half
        lam = np.linalg.eigvalsh(s[:, None] * P * s[None, :])  # ascending
        out[lo : lo + d] = F - lam[:, -r:].sum(-1)
    return out


def _low_rank_wishart(rng, draws: int, k: int, dof: int) -> np.ndarray:
    """``ZᵀZ`` for ``Z`` (dof×k) with ``dof < k``: drawn directly (rank ``dof``)."""
    Z = rng.standard_normal((draws, dof, k))
    return np.swapaxes(Z, -1, -2) @ Z


def rank1_law(n: int, p: int):
    """Rank-1 M with σ = 1: ``R_HRP(p) ~ Beta((n−p)/2, p/2)`` (p = r: the random-A law), §5.2."""
    return stats.beta((n - p) / 2, p / 2)


def classic_linear_phase(U, S, V, A0, t):
    """Linearised classic flow from ``B = 0`` (§5.4), with ``M = U diag(S) Vᵀ`` (thin):
    ``B = U sinh(tS) VᵀA₀``, ``A = V cosh(tS) VᵀA₀ + (I − VVᵀ)A₀``. JAX."""
    VA = V.T @ A0
    B = U @ (jnp.sinh(t * S)[:, None] * VA)
    A = V @ (jnp.cosh(t * S)[:, None] * VA) + A0 - V @ VA
    return B, A


def hmt_bound(sigma, r: int, p: int) -> float:
    """Halko–Martinsson–Tropp (fixed-rank form): ``E‖M − [P_Y M]_r‖² ≤ (1 + r/(p−r−1)) T_r``,
    ``Y = MΩ`` with ``Ω`` n×p Gaussian, ``p ≥ r + 2`` (§5.5)."""
    if p < r + 2:
        raise ValueError(f"p: HMT needs p >= r + 2 = {r + 2}, got {p}")
    return (1 + r / (p - r - 1)) * energies(sigma, r)[2]


def saturation_time(sigma1: float, a0_norm2: float) -> float:
    """End of the linear phase of a classic preheat: ``τ_sat ≈ ln(σ₁/‖A₀‖²)/(2σ₁)`` (§5.4)."""
    return math.log(sigma1 / a0_norm2) / (2 * sigma1)


# --- §5.6: classic LoRA, aligned init: scalar ODEs -----------------------------------------------


def aligned_classic_time(x, sigma: float, eps: float):
    """Time for one direction of classic LoRA from ``A = εv, B = 0`` to reach ``x = b·a``
    (docs/theory.md §5.6): ``t(x) = [ln((σx+β²+ρ√(x²+β²))/(σ−x)) − ln((β²+ρβ)/σ)]/(2ρ)``,
    ``β = ε²/2``, ``ρ = √(σ²+β²)``."""
    x = np.asarray(x, np.float64)
    beta = eps**2 / 2
    rho = math.sqrt(sigma**2 + beta**2)
    num = np.log((sigma * x + beta**2 + rho * np.sqrt(x**2 + beta**2)) / (sigma - x))
    return (num - math.log((beta**2 + rho * beta) / sigma)) / (2 * rho)


def aligned_classic_x(t, sigma: float, eps: float) -> np.ndarray:
    """Inverse of ``aligned_classic_time``: ``x(t)`` in ``[0, σ)`` (Brent's method, float64)."""

    def solve(ti):
        if ti <= 0:
            return 0.0
        hi = sigma * (1 - 1e-15)
        if aligned_classic_time(hi, sigma, eps) <= ti:
            return hi
        return optimize.brentq(
            lambda x: aligned_classic_time(x, sigma, eps) - ti,
            0.0,
            hi,
            xtol=1e-300,
            rtol=4 * np.finfo(float).eps,
            maxiter=500,
        )

    return np.array([solve(ti) for ti in np.atleast_1d(np.asarray(t, np.float64))])


def aligned_classic_loss(sigma, r: int, eps: float, t) -> np.ndarray:
    """Loss ``½Σ_{i≤r}(σᵢ − xᵢ(t))² + ½T_r`` of classic LoRA from ``A = εV_r``, ``B = 0``
    (Σ = I)."""
    sigma = np.asarray(sigma, np.float64)
    _, _, T = energies(sigma, r)
    gaps = [(s - aligned_classic_x(t, s, eps)) ** 2 for s in sigma[:r]]
    return 0.5 * (np.sum(gaps, axis=0) + T)


def half_time(sigma: float, eps: float) -> float:
    """``t_{1/2} ≈ ln(4σ/ε²)/(2σ)``: when ``x`` reaches ``σ/2`` (small ε)."""
    return math.log(4 * sigma / eps**2) / (2 * sigma)


# --- §6: anisotropic inputs ----------------------------------------------------------------------


def sigma_aware_optimum(M, Sigma, r: int):
    """Best frozen ``A`` and its residual under input covariance Σ (§6):
    ``A* = Σ^{-1/2}Ṽ_r`` (Ṽ: right singular vectors of ``M̃ = MΣ^{1/2}``),
    ``R̃_opt = Σ_{i>r} σᵢ(M̃)²``. NumPy float64; returns ``(A*, R̃_opt)``."""
    lam, Q = np.linalg.eigh(np.asarray(Sigma, np.float64))
    half, inv_half = (Q * np.sqrt(lam)) @ Q.T, (Q / np.sqrt(lam)) @ Q.T
    _, s, Vt = np.linalg.svd(np.asarray(M, np.float64) @ half)
    return inv_half @ Vt[:r].T, float((s[r:] ** 2).sum())


def anisotropic_rank1_weights(lams) -> np.ndarray:
    """``E[P_{Σ^{1/2}a}]`` for Gaussian ``a`` (r = 1) is ``diag(w)`` in Σ's eigenbasis, with
    ``wᵢ = ∫₀^∞ λᵢ (1+2λᵢs)^{-1} Πⱼ(1+2λⱼs)^{-1/2} ds`` (§6). Numerical quadrature."""
    lams = np.asarray(lams, np.float64)

    def w(i):
        f = lambda s: lams[i] / (1 + 2 * lams[i] * s) * np.prod((1 + 2 * lams * s) ** -0.5)
        return integrate.quad(f, 0, np.inf, epsabs=1e-13, epsrel=1e-11, limit=500)[0]

    return np.array([w(i) for i in range(lams.size)])
