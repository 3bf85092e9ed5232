"""LoRA initialisations in the synthetic model (docs/theory.md §7).

Every init returns ``(LoraParams, dW0)``: the factors, and the change of the frozen weight
(``None`` when ``W0`` is kept). Inits that offset ``W0`` (PiSSA, OLoRA, LoRA-GA, CorDA) set
``dW0 = −s·B₀A₀ᵀ`` so the model's output is unchanged at step 0.

==============  ==========================================================================
``kaiming``     PEFT's default: ``A ~ U(−1/√n, 1/√n)``, ``B = 0``
``gaussian``    ``A ~ N(0, std²)`` (``std`` default ``1/√(3n)``, Kaiming's variance), ``B = 0``
``aligned``     oracle: ``A = c·V_r(M)``, ``B = 0``
``aligned-sigma``  Σ-aware oracle: ``A = c·orth(Σ^{-1/2} V_r(MΣ^{1/2}))`` (= ``aligned`` if Σ = I)
``hrp``         preheat-then-SVD (``preheat.py``): ``A = c·V̂_r``, ``B = 0``
``hrp-sigma``   Σ-aware HRP (docs/theory.md §6): SVD of ``B_pA_pᵀΣ^{1/2}``,
                ``A = c·orth(Σ^{-1/2}V̂_r)``
``hrp-2s``      two-sided HRP (``preheat.py``, docs/theory.md §5.5): ``A = c·V_r(QᵀC)``,
                ``Q = orth(B_p)``
``pissa``       ``B = U_r(W0)S_r^{1/2}/√s``, ``A = V_r(W0)S_r^{1/2}/√s``, ``W0 ← W0 − [W0]_r``
``olora``       ``W0 = QR``: ``B = Q[:, :r]``, ``A = R[:r]ᵀ``, ``W0 ← W0 − s·BAᵀ``
``lora-ga``     LoRA-GA's reference code: SVD of the full gradient ``G = −C``, ``A = V_{1:r}``,
                ``B = U_{r+1:2r}``, both times ``m^{1/4}/√γ`` (γ = 16, its "stable" scale),
                ``W0 ← W0 − s·BAᵀ``
``lora-one``    LoRA-One's reference code: ``B = U_r(S_r/S_1)^{1/2}/√γ``,
                ``A = V_r(S_r/S_1)^{1/2}/√γ`` from the SVD of ``C = −∇L(W0)`` (γ = 128, its
                "stable" scale), ``W0`` kept, so ``s·BAᵀ = s·[C]_r/(γ·σ₁(C))``
``eva``         PEFT's EVA: ``A`` = the top-r principal components of the layer's inputs (the
                eigenvectors of their covariance ``Σ``; for real activations the *centred*
                covariance), unit-norm columns, ``B = 0`` (ranks across layers: ``finetune``)
``corda``       PEFT's CorDA (instruction-previewed mode): ``W0Σ̃ = U S Vᵀ`` with ``Σ̃ = Σ + δI``,
                ``B = U_r(S_r/s)^{1/2}``, ``A = Σ̃⁻¹V_r(S_r/s)^{1/2}``, ``W0 ← W0 − s·BAᵀ``; δ is
                PEFT's: 1 % of Σ's mean eigenvalue, doubled until ``‖Σ̃Σ̃⁻¹ − I‖_F < 0.05``
==============  ==========================================================================

``c`` is the expected column norm of the random init the direction replaces (``1/√3`` for
Kaiming). The peer inits (``peers``) follow their reference code. With ``freeze-b`` the
direction inits put ``c·U_r`` on ``B`` and start from ``A = 0``.
Pairing: a seed's draws are keyed by family name and drawn column by column (``draw``), so an
init's draw depends only on the root seed, the seed index and its own settings — never on p when
it does not use p, nor on which other inits run. They are nested: ``hrp``'s ``A_p`` has the random
init's ``A`` as its first r columns, so ``p = r`` reproduces the random init's subspace on every
path.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from . import linalg, peers
from .factors import LoraParams, direction_side
from .losses import Objective, shift_target
from .preheat import preheat_then_svd
from .problems import Problem
from .validation import names, one_of

RANDOM_INITS = ("kaiming", "gaussian")
INITS = (
    "kaiming",
    "gaussian",
    "aligned",
    "aligned-sigma",
    "hrp",
    "hrp-sigma",
    "hrp-2s",
    "pissa",
    "olora",
    "lora-ga",
    "lora-one",
    "eva",
    "corda",
)
PREHEATED = ("hrp", "hrp-sigma", "hrp-2s")
NEEDS_W0 = ("pissa", "olora", "corda")
#: Inits that move W0 (the adapter then fits M − dW0).
OFFSET_INITS = ("pissa", "olora", "lora-ga", "corda")


def reference_init(inits) -> str:
    """The init paired differences are taken against: the first random one, else the first."""
    return next((i for i in inits if i in RANDOM_INITS), inits[0])


def check_inits(inits, r: int, k: int) -> tuple[str, ...]:
    """Known names, each once; LoRA-GA's ``2r ≤ min(m, n)``."""
    inits = names(inits, "inits") if inits else ()
    if not inits:
        raise ValueError("inits: empty; name at least one of " + ", ".join(INITS))
    for name in inits:
        one_of(name, "inits", INITS, "init")
    if "lora-ga" in inits and 2 * r > k:
        raise ValueError(
            f"inits: lora-ga uses singular vectors r+1..2r, so 2r = {2 * r} must be "
            f"<= min(m, n) = {k}; lower r or drop lora-ga"
        )
    return inits


def random_factor(key: jax.Array, dim: int, cols: int, dist: str, std, dtype) -> jax.Array:
    """``cols`` random columns of length ``dim``: Kaiming-uniform ``U(−1/√dim, 1/√dim)`` (PEFT's
    ``kaiming_uniform_(a=√5)``) or Gaussian ``N(0, std²)``.

    Column ``j`` is drawn from ``fold_in(key, j)`` alone, so the first ``r`` columns of a draw
    of ``p ≥ r`` columns are the draw of ``r`` columns: a random init and HRP's ``A_p`` are
    nested, and neither depends on how many columns the other asks for."""
    if dist == "kaiming":
        bound = 1.0 / jnp.sqrt(jnp.asarray(dim, dtype))
        column = lambda k: jax.random.uniform(k, (dim,), dtype, -bound, bound)
    else:
        column = lambda k: std * jax.random.normal(k, (dim,), dtype)
    keys = jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(cols))
    return jax.vmap(column, out_axes=1)(keys)


def column_norm(dist: str, dim: int, std):
    """Expected column norm ``√(dim·Var)`` of a random factor (``1/√3`` for Kaiming)."""
    return jnp.sqrt(1.0 / 3.0) if dist == "kaiming" else std * jnp.sqrt(dim)


@dataclasses.dataclass(frozen=True)
class InitStatic:
    """Shape- and branch-defining settings of the inits (static under jit)."""

    r: int
    form: str
    base: str = "kaiming"
    p: int = 16
    preheat_form: str = "classic"
    preheat_steps: int | str = 20
    preheat_optimizer: str = "gd"
    dims: tuple[int, int] | None = None  # the full (m, n) of a reduced-basis problem
    rank: int = 0  # the target's rank k in a reduced basis

    def full_dims(self, problem: Problem) -> tuple[int, int]:
        """``(m, n)`` of the layer: the problem's own shape, or the full one it reduces."""
        if self.dims is not None:
            return self.dims
        m, n = problem.M.shape
        return m, n


class InitHyper(NamedTuple):
    """Traced numbers of the inits."""

    s: jax.Array  # main LoRA scale
    s_p: jax.Array  # preheat LoRA scale
    std: jax.Array  # Gaussian entry std
    lr: jax.Array  # main learning rate (LoRA-One's step)
    lr_p: jax.Array  # preheat learning rate
    momentum: jax.Array
    weight_decay: jax.Array


class Draws(NamedTuple):
    """A seed's random factors per random family: ``A[fam]`` (n, max(r, p)), ``B[fam]`` (m, r)."""

    A: dict
    B: dict


def family_key(key: jax.Array, family: str) -> jax.Array:
    """The key of one random family's draws: ``fold_in(key, crc32(family))``. Keyed by name, so a
    family's draw does not depend on which other families or inits run, or in which order."""
    return jax.random.fold_in(key, zlib.crc32(family.encode()) & 0x7FFFFFFF)


def reduced_factor(key: jax.Array, dim: int, k: int, cols: int, dist: str, std, dtype) -> jax.Array:
    """The reduced-basis draw of a ``dim × cols`` random factor (docs/theory.md §2.1): its first k
    rows as they are, and the cols×cols ``R`` of the QR of the other ``dim − k`` rows, drawn
    directly by the Bartlett decomposition (``R_jj = std·χ_{dim−k−j}``, ``R_ij ~ N(0, std²)``
    above the diagonal, 0 below). Exact for Gaussian entries; a Kaiming-uniform factor is drawn as
    the Gaussian of the same variance (inexact, and ``reduced_obstacles`` says so). Column j comes
    from ``fold_in(key, j)`` alone, so draws stay nested in ``cols``."""
    if dist == "kaiming":
        std = 1.0 / jnp.sqrt(3.0 * jnp.asarray(dim, dtype))
    rows = jnp.arange(cols)

    def column(j):
        kh, ku, kc = jax.random.split(jax.random.fold_in(key, j), 3)
        head = std * jax.random.normal(kh, (k,), dtype)
        upper = jnp.where(rows < j, std * jax.random.normal(ku, (cols,), dtype), 0.0)
        chi = std * jnp.sqrt(2.0 * jax.random.gamma(kc, (dim - k - j) / 2.0, (), dtype))
        return jnp.concatenate([head, jnp.where(rows == j, chi, upper)])

    return jax.vmap(column, out_axes=1)(jnp.arange(cols))


def draw(key: jax.Array, problem: Problem, st: InitStatic, hy: InitHyper, families) -> Draws:
    """The random factors of ``families`` for one seed (see ``random_factor``, ``family_key``;
    in a reduced basis, ``reduced_factor`` for the side that carries the direction)."""
    m, n = problem.M.shape
    dtype = problem.M.dtype
    cols = max(st.r, st.p)
    A, B = {}, {}
    for fam in families:
        k = family_key(key, fam)
        kA, kB = jax.random.fold_in(k, 0), jax.random.fold_in(k, 1)
        if st.dims is None:
            A[fam] = random_factor(kA, n, cols, fam, hy.std, dtype)
            B[fam] = random_factor(kB, m, st.r, fam, hy.std, dtype)
        elif direction_side(st.form) == "A":
            A[fam] = reduced_factor(kA, st.dims[1], st.rank, cols, fam, hy.std, dtype)
            B[fam] = jnp.zeros((m, st.r), dtype)  # never used: B starts at 0
        else:
            A[fam] = jnp.zeros((n, cols), dtype)
            B[fam] = reduced_factor(kB, st.dims[0], st.rank, st.r, fam, hy.std, dtype)
    return Draws(A, B)


def families_needed(inits, base: str) -> tuple[str, ...]:
    need = {name for name in inits if name in RANDOM_INITS}
    if any(name not in RANDOM_INITS for name in inits):
        need.add(base)
    return tuple(sorted(need))


def _directional(U_dir, V_dir, problem: Problem, st: InitStatic, hy: InitHyper):
    m, n = problem.M.shape
    full_m, full_n = st.full_dims(problem)
    zA, zB = jnp.zeros((n, st.r), U_dir.dtype), jnp.zeros((m, st.r), U_dir.dtype)
    if direction_side(st.form) == "A":
        return LoraParams(B=zB, A=column_norm(st.base, full_n, hy.std) * V_dir), None
    return LoraParams(B=column_norm(st.base, full_m, hy.std) * U_dir, A=zA), None


def _random(fam):
    def init(problem, st, hy, draws):
        m, n = problem.M.shape
        dtype = problem.M.dtype
        if direction_side(st.form) == "A":
            return LoraParams(B=jnp.zeros((m, st.r), dtype), A=draws.A[fam][:, : st.r]), None
        return LoraParams(B=draws.B[fam], A=jnp.zeros((n, st.r), dtype)), None

    return init


def _aligned(problem, st, hy, draws):
    t = problem.target
    return _directional(t.U[:, : st.r], t.V[:, : st.r], problem, st, hy)


def _unwhiten(problem: Problem, V: jax.Array) -> jax.Array:
    """``orth(Σ^{-1/2} V)``: a whitened-coordinate direction as a raw input-side direction."""
    if problem.sigma_inv_half is None:
        return V
    return linalg.orth(problem.sigma_inv_half @ V)


def _aligned_sigma(problem, st, hy, draws):
    w = problem.whitened
    return _directional(w.U[:, : st.r], _unwhiten(problem, w.V[:, : st.r]), problem, st, hy)


def _hrp(two_sided: bool = False, sigma_aware: bool = False):
    def init(problem, st, hy, draws):
        pre = preheat_then_svd(
            draws.A[st.base][:, : st.p],
            problem.objective,
            hy.s_p,
            hy.lr_p,
            r=st.r,
            form=st.preheat_form,
            steps=st.preheat_steps,
            optimizer=st.preheat_optimizer,
            momentum=hy.momentum,
            weight_decay=hy.weight_decay,
            two_sided=two_sided,
            sigma_aware=sigma_aware,
        )
        V = _unwhiten(problem, pre.V) if sigma_aware else pre.V
        return _directional(pre.U, V, problem, st, hy)

    return init


INIT_FNS: dict[str, Callable] = {
    "kaiming": _random("kaiming"),
    "gaussian": _random("gaussian"),
    "aligned": _aligned,
    "aligned-sigma": _aligned_sigma,
    "hrp": _hrp(),
    "hrp-sigma": _hrp(sigma_aware=True),
    "hrp-2s": _hrp(two_sided=True),
    "pissa": peers.pissa,
    "olora": peers.olora,
    "lora-ga": peers.lora_ga,
    "lora-one": peers.lora_one,
    "eva": peers.eva,
    "corda": peers.corda,
}


def initialize(name: str, problem: Problem, st: InitStatic, hy: InitHyper, draws: Draws):
    """``(LoraParams, dW0 | None)`` of init ``name`` for one problem."""
    return INIT_FNS[name](problem, st, hy, draws)


def start(
    name: str, problem: Problem, st: InitStatic, hy: InitHyper, draws: Draws
) -> tuple[LoraParams, Objective]:
    """Init ``name``'s factors and the objective its run trains on (an init that moves ``W0`` by
    ``dW0`` leaves the adapter the target ``M − dW0``). The synthetic experiment and the
    real-layer study both start every run here."""
    params, dW0 = initialize(name, problem, st, hy, draws)
    return params, problem.objective if dW0 is None else shift_target(problem.objective, dW0)
