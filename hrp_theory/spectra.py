"""Spectra and input covariances, given as strings (the CLI's ``--spectrum`` and ``--sigma``).

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

import numpy as np

from .validation import positive_number

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
