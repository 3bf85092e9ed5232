"""The peer inits' formulas, each as its reference code computes it (docs/theory.md §7).

``tests/test_peft_inits.py`` checks them on MiniLM against PEFT's own inits (PiSSA, OLoRA, EVA,
CorDA, LoRA-GA) and the authors' recipes, on the same weights and token batches:

* **PiSSA, OLoRA** (PEFT ``tuners/lora/layer.py``: ``pissa_init``, ``olora_init``): the factors
  and the residual ``W0 − s·BAᵀ`` are deterministic in ``W0``.
* **LoRA-GA**: the authors' code (``Outsider565/LoRA-GA``, ``peft/src/peft/tuners/lora/layer.py``
  L218–L245, ``reproduce/conf/init/gradient.yaml``: direction ``ArB2r``, scale ``stable``,
  γ = 16): ``A = V_{1:r}``, ``B = U_{r+1:2r}`` of the gradient's SVD, both times ``m^{1/4}/√γ``.
  PEFT 0.21's ``lora_ga_init`` also multiplies ``B`` by ``diag(S_{r+1:2r})``; the authors' code,
  followed here, does not (the test measures the difference).
* **LoRA-One**: the authors' code (``YuanheZ/LoRA-One``, ``run_exp.py`` L163–L199 and
  ``conf/init/gradient.yaml``: direction ``LoRA-One``, scale ``stable``, γ = 128):
  ``B = U_r√S_r/√S_1/√γ``, ``A = V_r√S_r/√S_1/√γ`` from the SVD of ``−∇L``, ``W0`` kept.
* **EVA** (PEFT ``tuners/lora/eva.py``): the top principal components of the layer's inputs,
  unit-norm, ``B = 0``. The rank redistribution across layers (``rho``) lives with the real
  study (``finetune.inits``); a synthetic problem is one layer.
* **CorDA** (PEFT ``tuners/lora/corda.py``, ``collect_eigens_for_layer``; instruction-previewed
  mode): the SVD of ``W0Σ̃`` with PEFT's damping, ``A`` mapped back by ``Σ̃⁻¹``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from . import linalg
from .factors import LoraParams, direction_side
from .losses import DiagonalC
from .problems import Problem

#: CorDA's damping of Σ (PEFT, ``tuners/lora/corda.py``): this share of Σ's mean eigenvalue,
#: doubled until the inverse is accurate to ``CORDA_INV_TOL`` (Frobenius norm of ΣΣ⁻¹ − I).
CORDA_DAMPING = 0.01
CORDA_INV_TOL = 0.05
#: The "stable" scale's γ of each reference code: LoRA-GA's default, LoRA-One's gradient.yaml.
LORA_GA_GAMMA = 16.0
LORA_ONE_GAMMA = 128.0


def offset(params: LoraParams, s):
    return params, -s * params.B @ params.A.T


def pissa(problem, st, hy, draws):
    U, S, Vt = linalg.svd(problem.W0)
    root = jnp.sqrt(S[: st.r] / hy.s)
    return offset(LoraParams(B=U[:, : st.r] * root, A=Vt[: st.r].T * root), hy.s)


def olora(problem, st, hy, draws):
    Q, R = linalg.qr(problem.W0)
    return offset(LoraParams(B=Q[:, : st.r], A=R[: st.r].T), hy.s)


def full_gradient_svd(problem: Problem):
    """SVD of ``C = −∇_W L(W0)``, the negative full fine-tuning gradient at ``W0``."""
    C = problem.objective.C
    if isinstance(C, DiagonalC):  # spectral fast path: C is its own SVD (σ descending)
        return problem.target
    U, S, Vt = linalg.svd(C)
    return U, S, Vt.T


def lora_ga(problem, st, hy, draws):
    U, _, V = full_gradient_svd(problem)
    m = problem.M.shape[0]
    scale = m**0.25 / jnp.sqrt(LORA_GA_GAMMA)
    # G = −C has the same singular vectors as C up to a sign of U, which the offset makes moot.
    return offset(LoraParams(B=-U[:, st.r : 2 * st.r] * scale, A=V[:, : st.r] * scale), hy.s)


def lora_one(problem, st, hy, draws):
    U, S, V = full_gradient_svd(problem)
    root = jnp.sqrt(S[: st.r] / S[0] / LORA_ONE_GAMMA)
    return LoraParams(B=U[:, : st.r] * root, A=V[:, : st.r] * root), None


def eva(problem, st, hy, draws):
    n = problem.M.shape[1]
    Sigma = problem.objective.Sigma
    if Sigma is None:  # Σ = I: every basis is an eigenbasis; LAPACK's is the coordinate one
        V = jnp.eye(n, st.r, dtype=problem.M.dtype)
    else:
        V = linalg.eigh(Sigma)[1][:, ::-1][:, : st.r]
    m = problem.M.shape[0]
    zero = jnp.zeros((m, st.r), V.dtype)
    if direction_side(st.form) == "A":  # unit-norm components, as PEFT's EVA
        return LoraParams(B=zero, A=V), None
    # freeze-b: EVA has no output side; coordinates stand in, at unit norm
    return LoraParams(B=jnp.eye(m, st.r, dtype=V.dtype), A=jnp.zeros_like(V)), None


def corda_damped(Sigma: jax.Array) -> tuple[jax.Array, jax.Array]:
    """PEFT's damped ``(Σ̃, Σ̃⁻¹)``: ``Σ̃ = Σ + δI`` with ``δ = 1 %`` of Σ's mean eigenvalue,
    doubled until ``‖Σ̃Σ̃⁻¹ − I‖_F < 0.05`` (at most 40 doublings)."""
    n = Sigma.shape[0]
    eye = jnp.eye(n, dtype=Sigma.dtype)
    mean = jnp.trace(Sigma) / n

    def damped(d):
        fixed = Sigma + d * mean * eye
        inv = linalg.solve(fixed, eye)
        return fixed, inv, jnp.linalg.norm(fixed @ inv - eye)

    def cond(c):
        d, k = c
        return (damped(d)[2] >= CORDA_INV_TOL) & (k < 40)

    d, _ = jax.lax.while_loop(cond, lambda c: (2 * c[0], c[1] + 1), (CORDA_DAMPING, 0))
    fixed, inv, _ = damped(d)
    return fixed, inv


def corda(problem, st, hy, draws):
    Sigma = problem.objective.Sigma
    n = problem.M.shape[1]
    if Sigma is None:
        Sigma = jnp.eye(n, dtype=problem.M.dtype)
    fixed, inv = corda_damped(Sigma)
    U, S, Vt = linalg.svd(problem.W0 @ fixed)
    root = jnp.sqrt(S[: st.r] / hy.s)
    A = inv.T @ Vt[: st.r].T * root  # PEFT: lora_A = √S_r · (Vtᵀ C̃⁻¹)ᵀ rows
    return offset(LoraParams(B=U[:, : st.r] * root, A=A), hy.s)
