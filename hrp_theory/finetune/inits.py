"""LoRA inits of a real model on its task objective, through the core's init functions.

Per kernel ``W0`` (out × in), an init sees what it would see in the synthetic model, with the
task's cross-entropy in place of the regression loss; only these per-kernel inputs differ, never
the formulas (``hrp_theory.inits.INIT_FNS``, the peers' in ``hrp_theory.peers``):

* ``C = −∇_W L_task(W0)``, the negative full-weight gradient at the base model, averaged over the
  seed's first ``grad_batches`` batches with the seed's head (``lora-ga``, ``lora-one``);
* the kernel's input statistics over the first ``sigma_examples`` training examples
  (``bert.input_statistics``): the centred covariance for ``eva`` (PEFT's PCA of the inputs),
  CorDA's covariance for ``corda`` (PEFT's ``calib_cov_distribution``), ``E[x xᵀ]`` for
  ``aligned-ft-sigma`` and the bridge's whitening;
* ``W0`` itself (``pissa``, ``olora``, ``corda``);
* the task's full-fine-tune ``ΔW`` (``hrp-sim finetune``) for the oracles: ``aligned-ft`` is the
  core's ``aligned`` on ``M = ΔW``, ``aligned-ft-sigma`` its ``aligned-sigma`` with Σ;
* random factors drawn per kernel from ``fold_in(seed key, crc32(path))`` with the core's
  ``inits.draw`` (``kaiming``, ``gaussian``, and HRP's ``A_p``, whose first r columns are the
  ``kaiming`` draw: the inits are paired seed by seed).

EVA's ranks follow PEFT (``get_eva_state_dict``): every layer offers its top ``round(ρ·r)``
components' explained-variance ratios, the ``r × layers`` largest of all layers win, and layers
that share an input (query, key, value) compete with the same ratios; a layer left with rank 0
gets no adapter. Ties are broken by kernel order. The LoRA scale of a layer of rank ``k`` is
PEFT's after ``adjust_scaling_factors``: ``α·k/r`` over ``k`` (or ``√k``).

HRP trains its rank-p preheat on the task loss jointly over all kernels (``finetune.study``);
then per kernel the core's jitted ``preheat.thin_svd_of_product`` of ``(B_p, A_p)`` gives
``A = c·V̂_r``, ``B = 0``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import inits
from ..factors import LoraParams
from ..losses import Objective
from ..models import bert
from ..preheat import thin_svd_of_product
from ..problems import Problem, problem_from_matrices
from .config import LoraConfig
from .data import Setup

NEEDS_GRADIENT = ("lora-ga", "lora-one")
#: Inits that read the kernels' input statistics (one activation pass per study).
NEEDS_INPUTS = ("eva", "corda", "aligned-ft-sigma")
#: Inits whose factors do not depend on the seed (computed once a kernel, shared by the seeds).
SEED_FREE = ("pissa", "olora", "eva", "corda", "aligned-ft", "aligned-ft-sigma")
ORACLE_OF = {"aligned-ft": "aligned", "aligned-ft-sigma": "aligned-sigma"}
BASE = "kaiming"  # HRP's A_p and the direction inits' column norm follow PEFT's default


class Inputs(NamedTuple):
    """What the data-aware inits and the bridge read, per kernel path (host, float64)."""

    stats: dict  # {path: bert.InputStatistics}
    eva_ranks: dict  # {path: rank}
    deltas: dict | None  # {path: ΔW (out, in)} of the task's full fine-tune, or None


def gaussian_std(n: int) -> float:
    """``gaussian``'s entry std on a kernel of ``n`` inputs: Kaiming's variance, ``1/√(3n)`` (the
    core's default)."""
    return 1.0 / (3.0 * n) ** 0.5


def kernel_key(seed_key: jax.Array, path: str) -> jax.Array:
    """The key of one kernel's random draws within a seed (keyed by its path)."""
    return inits.family_key(seed_key, path)


def scale_of(cfg: LoraConfig, rank: int) -> float:
    """The LoRA scale of a layer of ``rank`` (PEFT's EVA ``adjust_scaling_factors``: ``α`` grows
    with the rank, ``α·rank/r``; ``cfg.r`` gives ``cfg.scale(cfg.r)``)."""
    return cfg.alpha * rank / cfg.r / (rank if cfg.scaling == "alpha/r" else rank**0.5)


# ---------------------------------------------------------------------------------------------
# the inputs


def study_inputs(setup: Setup, cfg: LoraConfig, deltas: dict | None, progress: bool) -> Inputs:
    """The kernels' input statistics over the first ``sigma_examples`` training examples, EVA's
    ranks, and the full fine-tune's ``ΔW`` (or None)."""
    idx = setup.task.train[: cfg.sigma_examples]
    ids, mask = np.asarray(setup.ids)[idx], np.asarray(setup.mask)[idx]
    batches = [(ids[i : i + 64], mask[i : i + 64]) for i in range(0, len(idx), 64)]
    stats = bert.input_statistics(setup.model, setup.base, batches, progress=progress)
    stats = {p: stats[p] for p, _ in setup.kernels}
    return Inputs(stats=stats, eva_ranks=eva_ranks(stats, cfg.r, cfg.eva_rho), deltas=deltas)


def eva_ranks(stats: dict, r: int, rho: float) -> dict:
    """PEFT's EVA rank redistribution (module docstring) from each kernel's centred covariance."""
    cap = round(r * rho)
    # kernels that share an input (query, key, value) share its statistics
    groups = bert.input_groups({p: st.second for p, st in stats.items()})
    ratios = {}
    for paths in groups:
        lam = np.linalg.eigvalsh(stats[paths[0]].covariance)[::-1]
        lam = np.clip(lam, 0.0, None)
        ratios[paths[0]] = lam[:cap] / max(lam.sum(), 1e-300)
    hook = {p: paths[0] for paths in groups for p in paths}
    order = list(stats)
    offers = [(-v, order.index(p), p) for p in order for v in ratios[hook[p]]]
    counts = dict.fromkeys(order, 0)
    for _, _, p in sorted(offers)[: r * len(order)]:
        counts[p] += 1
    for paths in groups:  # PEFT: the hook layer of a group gets the group's top rank
        best = max(paths, key=lambda p: counts[p])
        counts[paths[0]], counts[best] = counts[best], counts[paths[0]]
    return counts


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


# ---------------------------------------------------------------------------------------------
# the inits


def _problem(W0, C=None, Sigma=None) -> Problem:
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


@functools.partial(jax.jit, static_argnames=("name", "st"))
def _seeds_init(name: str, W0, C, keys, st: inits.InitStatic, hy: inits.InitHyper):
    """Init ``name`` of one kernel for every seed: ``(LoraParams, moved)`` stacked on seeds."""

    def one(key, C):
        problem = _problem(W0, C)
        draws = inits.draw(key, problem, st, hy, inits.families_needed((name,), BASE))
        params, dW0 = inits.initialize(name, problem, st, hy, draws)
        return params, dW0 is not None

    return jax.vmap(one, in_axes=(0, None if C is None else 0))(keys, C)


def _seed_free(name: str, W0, inputs: Inputs | None, path: str, st, hy):
    """``(LoraParams, moved)`` of an init that no seed changes, once for the kernel, computed in
    float64 and rounded to ``W0``'s dtype: CorDA's ``W0Σ̃`` and ``Σ̃⁻¹`` lose up to 1 % of the
    product to float32 rounding on MiniLM (``tests/test_peft_inits.py``), and a float64 start is
    the same on every machine. Eager: the oracles' problem is built from concrete ΔW and Σ."""
    core = ORACLE_OF.get(name, name)
    with jax.enable_x64(True):
        f64 = lambda x: jnp.asarray(np.asarray(x, np.float64))
        W = f64(W0)
        Sigma = None
        if name in ORACLE_OF:
            assert inputs is not None and inputs.deltas is not None
            if name == "aligned-ft-sigma":
                S = inputs.stats[path].second
                Sigma = f64(S / np.linalg.eigvalsh(S)[-1])
            problem = problem_from_matrices(f64(inputs.deltas[path]), W, Sigma)
        else:
            if name in ("eva", "corda"):
                assert inputs is not None
                st_path = inputs.stats[path]
                Sigma = f64(st_path.covariance if name == "eva" else st_path.corda)
            problem = _problem(W, Sigma=Sigma)
        hy64 = inits.InitHyper(*(f64(x) for x in hy))
        params, dW0 = inits.initialize(core, problem, st, hy64, inits.Draws({}, {}))
        params = jax.tree.map(lambda x: np.asarray(x, W0.dtype), params)
    return jax.tree.map(jnp.asarray, params), dW0 is not None


def initialize(
    name: str,
    kernels,
    keys,
    st: inits.InitStatic,
    hy: inits.InitHyper,
    cfg: LoraConfig,
    grads: dict | None = None,
    inputs: Inputs | None = None,
) -> tuple[dict, dict, dict]:
    """``(adapters, offsets, scales)`` of init ``name`` on every kernel, stacked on seeds.

    Args:
      kernels: ``[(path, W0 (out, in))]``; keys: ``(S,)`` seed keys.
      grads: ``{path: (S, out, in)}`` full-weight task gradients at ``W0`` (lora-ga, lora-one).
      inputs: the study's ``Inputs`` (eva, corda and the oracles).

    Returns:
      ``{path: LoraParams (S, ·, rank)}``; for an init that moves ``W0``, the frozen offset
      factors ``{path: LoraParams}`` (the same arrays: ``W0 ← W0 − s·B₀A₀ᵀ``), else ``{}``; and
      each adapted kernel's LoRA scale. EVA leaves out the kernels its redistribution gives rank 0.
    """
    if name == "hrp":
        raise ValueError("initialize: hrp comes from a preheat; use from_preheat")
    adapters, offsets, scales = {}, {}, {}
    S = keys.shape[0]
    for path, W0 in kernels:
        rank = st.r if name != "eva" else inputs.eva_ranks[path]  # type: ignore[union-attr]
        if rank == 0:
            continue
        khy = hy._replace(std=jnp.asarray(gaussian_std(W0.shape[1]), W0.dtype))
        kst = st if rank == st.r else dataclasses.replace(st, r=rank)
        if name in SEED_FREE:
            one, moved = _seed_free(name, W0, inputs, path, kst, khy)
            params = jax.tree.map(lambda x: jnp.broadcast_to(x, (S, *x.shape)), one)
        else:
            C = None if name not in NEEDS_GRADIENT else -grads[path]  # type: ignore[index]
            kkeys = jax.vmap(lambda k: kernel_key(k, path))(keys)
            params, moved_s = _seeds_init(name, W0, C, kkeys, kst, khy)
            moved = bool(jnp.all(moved_s))
        adapters[path] = params
        scales[path] = scale_of(cfg, rank)
        if moved:
            offsets[path] = params
    return adapters, offsets, scales


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
        draws = inits.draw(key, _problem(W0), st, hy, (BASE,))
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
