"""LoRA inits of a real model on its task objective, through the core's init functions.

Per kernel ``W0`` (out × in), an init sees what it would see in the synthetic model, with the
task's cross-entropy in place of the regression loss:

* ``C = −∇_W L_task(W0)``, the negative full-weight gradient of the task loss at the base model
  (``lora-ga``, ``lora-one``; averaged over the seed's first few batches, with the seed's head);
* ``Σ = E[x xᵀ]``, the second moment of the kernel's inputs over training tokens (``eva``,
  ``corda``);
* ``W0`` itself (``pissa``, ``olora``, ``corda``);
* random factors drawn per kernel from ``fold_in(seed key, crc32(path))`` with the core's
  ``inits.draw`` (``kaiming``, ``gaussian``, and HRP's ``A_p``, whose first r columns are the
  ``kaiming`` draw: the inits are paired seed by seed).

Every formula is the core's (``hrp_theory.inits.INIT_FNS``), evaluated on a ``Problem`` that
carries these matrices. HRP is the exception only in where its preheat runs: the rank-p LoRA is
trained on the task loss jointly over all kernels (``finetune.study``); then per kernel the core's
jitted ``preheat.thin_svd_of_product`` of ``(B_p, A_p)`` gives ``A = c·V̂_r``, ``B = 0``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .. import inits
from ..factors import LoraParams
from ..losses import Objective
from ..models import bert
from ..preheat import thin_svd_of_product
from ..problems import Problem
from .config import LoraConfig
from .data import Setup

NEEDS_GRADIENT = ("lora-ga", "lora-one")
NEEDS_SIGMA = ("eva", "corda")
BASE = "kaiming"  # HRP's A_p and the direction inits' column norm follow PEFT's default


def _problem(W0, C, Sigma) -> Problem:
    """A core ``Problem`` carrying one kernel's matrices (no known target: ``M`` is ``W0``, used
    for its shape only)."""
    C = jnp.zeros_like(W0) if C is None else C
    return Problem(
        M=W0,
        W0=W0,
        target=None,  # type: ignore[arg-type]  # only the oracle inits read it
        whitened=None,  # type: ignore[arg-type]
        sigma_inv_half=None,
        objective=Objective(C=C, Sigma=Sigma),
    )


def gaussian_std(n: int) -> float:
    """``gaussian``'s entry std on a kernel of ``n`` inputs: Kaiming's variance, ``1/√(3n)`` (the
    core's default)."""
    return 1.0 / (3.0 * n) ** 0.5


def kernel_key(seed_key: jax.Array, path: str) -> jax.Array:
    """The key of one kernel's random draws within a seed (keyed by its path)."""
    return inits.family_key(seed_key, path)


@functools.partial(jax.jit, static_argnames=("name", "st"))
def _seeds_init(name: str, W0, C, Sigma, keys, st: inits.InitStatic, hy: inits.InitHyper):
    """Init ``name`` of one kernel for every seed: ``(LoraParams, offset?)`` stacked on seeds."""

    def one(key, C):
        problem = _problem(W0, C, Sigma)
        draws = inits.draw(key, problem, st, hy, inits.families_needed((name,), BASE))
        params, dW0 = inits.initialize(name, problem, st, hy, draws)
        return params, dW0 is not None

    C_axis = None if C is None else 0
    params, moved = jax.vmap(one, in_axes=(0, C_axis))(keys, C)
    return params, moved


def initialize(
    name: str,
    kernels,
    keys,
    st: inits.InitStatic,
    hy: inits.InitHyper,
    grads: dict | None = None,
    moments: dict | None = None,
) -> tuple[dict, dict]:
    """``(adapters, offsets)`` of init ``name`` on every kernel, stacked on seeds.

    Args:
      kernels: ``[(path, W0 (out, in))]``; keys: ``(S,)`` seed keys.
      grads: ``{path: (S, out, in)}`` full-weight task gradients at ``W0`` (lora-ga, lora-one).
      moments: ``{path: (in, in)}`` input second moments (eva, corda).

    Returns:
      ``{path: LoraParams (S, ·, r)}`` and, for an init that moves ``W0``, the frozen offset
      factors ``{path: LoraParams}`` (the same arrays: ``W0 ← W0 − s·B₀A₀ᵀ``), else ``{}``.
    """
    if name == "hrp":
        raise ValueError("initialize: hrp comes from a preheat; use from_preheat")
    adapters, offsets = {}, {}
    for path, W0 in kernels:
        C = None if name not in NEEDS_GRADIENT else -grads[path]  # type: ignore[index]
        Sigma = None if name not in NEEDS_SIGMA else moments[path]  # type: ignore[index]
        kkeys = jax.vmap(lambda k: kernel_key(k, path))(keys)
        khy = hy._replace(std=jnp.asarray(gaussian_std(W0.shape[1]), W0.dtype))
        params, moved = _seeds_init(name, W0, C, Sigma, kkeys, st, khy)
        adapters[path] = params
        if bool(jnp.all(moved)):
            offsets[path] = params
    return adapters, offsets


def preheat_start(kernels, keys, st: inits.InitStatic, hy: inits.InitHyper) -> dict:
    """HRP's rank-p starting adapters ``(B_p = 0, A_p)``, stacked on seeds: per kernel the
    kaiming draw's first p columns (its first r are the ``kaiming`` init's ``A``)."""
    out = {}
    for path, W0 in kernels:
        kkeys = jax.vmap(lambda k: kernel_key(k, path))(keys)
        out[path] = _draw_ap(W0, kkeys, st, hy)
    return out


@functools.partial(jax.jit, static_argnames=("st",))
def _draw_ap(W0, keys, st: inits.InitStatic, hy: inits.InitHyper) -> LoraParams:
    def one(key):
        draws = inits.draw(key, _problem(W0, None, None), st, hy, (BASE,))
        A_p = draws.A[BASE][:, : st.p]
        return LoraParams(B=jnp.zeros((W0.shape[0], st.p), W0.dtype), A=A_p)

    return jax.vmap(one)(keys)


@functools.partial(jax.jit, static_argnames=("r",))
def _directions(B_p, A_p, r: int, c):
    return jax.vmap(lambda B, A: c * thin_svd_of_product(B, A, r)[2])(B_p, A_p)


def from_preheat(preheated: dict, r: int, std) -> dict:
    """HRP's adapters from the preheated rank-p ones: per kernel the core's thin SVD of
    ``B_p A_pᵀ``, ``A = c·V̂_r`` (``c``: Kaiming's expected column norm), ``B = 0``."""
    out = {}
    for path, pre in preheated.items():
        n = pre.A.shape[-2]
        A = _directions(pre.B, pre.A, r, inits.column_norm(BASE, n, std))
        out[path] = LoraParams(B=jnp.zeros(pre.B.shape[:-1] + (r,), A.dtype), A=A)
    return out


# ---------------------------------------------------------------------------------------------
# the inputs of the data-aware inits, and the settings every init of a study shares


def second_moments(setup: Setup, cfg: LoraConfig, progress: bool) -> dict:
    """``E[x xᵀ]`` of each target kernel's inputs over the first ``sigma_examples`` training
    examples (float64 on the host)."""
    idx = setup.task.train[: cfg.sigma_examples]
    ids, mask = np.asarray(setup.ids)[idx], np.asarray(setup.mask)[idx]
    batches = [(ids[i : i + 64], mask[i : i + 64]) for i in range(0, len(idx), 64)]
    moments, _ = bert.input_second_moments(setup.model, setup.base, batches, progress=progress)
    return {p: moments[p] for p, _ in setup.kernels}


def full_gradients(setup: Setup, cfg: LoraConfig, prog, hd: dict, order) -> dict:
    """``{path: (S, out, in)}``: each seed's full-weight gradient of the task loss at ``W0``
    (with the seed's head), averaged over its first ``grad_batches`` batches."""
    kernels = {p: W.T for p, W in setup.kernels}  # HF layout (in, out)
    per_seed = []
    for i in range(cfg.seeds):
        head = jax.tree.map(lambda x: x[i], hd)
        per_seed.append(
            prog.grads(kernels, head, setup.base, jnp.asarray(order[i, : cfg.grad_batches]))
        )
    return {p: jnp.stack([g[p] for g in per_seed]) for p, _ in setup.kernels}


def init_static(cfg: LoraConfig) -> inits.InitStatic:
    return inits.InitStatic(r=cfg.r, form="classic", base=BASE, p=cfg.preheat_rank)


def init_hyper(cfg: LoraConfig, lr: float) -> inits.InitHyper:
    f = lambda v: jnp.asarray(v, jnp.float32)
    return inits.InitHyper(
        s=f(cfg.scale(cfg.r)),
        s_p=f(cfg.scale(cfg.preheat_rank)),
        std=f(0.0),  # set per kernel width (gaussian_std)
        lr=f(lr),
        lr_p=f(lr),
        momentum=f(0.0),
        weight_decay=f(cfg.weight_decay),
    )
