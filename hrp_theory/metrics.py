"""Metrics of where a LoRA run starts and ends.

Directions are measured in whitened coordinates, where the Σ-aware optimum lives: for the
input side, ``col(Σ^{1/2}A)`` against the top-r right singular vectors ``Ṽ_r`` of ``MΣ^{1/2}``;
for ``freeze-b`` runs, ``col(B)`` against ``Ũ_r``. With ``Σ = I`` these are ``col(A)`` and
``V_r(M)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import linalg
from .factors import LoraParams, direction_side
from .problems import Problem


def orth(X: jax.Array) -> jax.Array:
    """Orthonormal basis of ``col(X)`` (thin QR)."""
    return linalg.orth(X)


def principal_angles(Q1: jax.Array, Q2: jax.Array) -> jax.Array:
    """Principal angles in degrees (ascending) between the spans of orthonormal ``Q1``, ``Q2``."""
    cos = linalg.singular_values(Q1.T @ Q2)
    return jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))  # cos descending


def direction_metrics(params: LoraParams, problem: Problem, r: int, form: str) -> dict:
    """Principal angles (degrees) and captured energy of the direction factor.

    Captured energy ``‖[M̃]_r P‖² / ‖[M̃]_r‖² ∈ [0, 1]``: the share of the best rank-r part of the
    whitened target ``M̃ = MΣ^{1/2}`` that the direction's span ``P`` captures.
    """
    w = problem.whitened
    S = w.S[:r]
    if direction_side(form) == "A":
        X = params.A
        sh = problem.objective.sigma_half
        X = X if sh is None else sh @ X
        ref = w.V[:, :r]
    else:
        X, ref = params.B, w.U[:, :r]
    Q = orth(X)
    proj = ref.T @ Q  # (r, r)
    captured = jnp.sum((S[:, None] * proj) ** 2) / jnp.sum(S**2)
    return {"angles_deg": principal_angles(ref, Q), "captured_energy": captured}


def time_to_excess(excess_curve: np.ndarray, steps_axis: np.ndarray, eps: float) -> np.ndarray:
    """First recorded step with excess loss ≤ ``eps`` per row (``inf`` if never reached)."""
    excess_curve = np.asarray(excess_curve)
    hit = excess_curve <= eps
    first = np.argmax(hit, axis=-1)
    return np.where(hit.any(axis=-1), np.asarray(steps_axis)[first], np.inf)
