"""The bridge to the theory: captured energy at init, per kernel, of a target direction.

The share of a rank-r target's energy that ``col(A₀)`` captures (``metrics.direction_metrics``'s
definition), raw and whitened by the kernel's input covariance ``Σ^{1/2}`` (as ``hrp-sim real``
does). The targets: each run's own final update ``s·(B Aᵀ − B₀A₀ᵀ)``, and, when ``hrp-sim
finetune`` has run for the task, the full fine-tune's ``ΔW``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..layers import full_finetune
from ..models import bert, checkpoints
from ..preheat import thin_svd_of_product
from .config import LoraConfig
from .data import Setup


@jax.jit
def _captured(S_r, V_r, X):
    """``‖S_r ⊙ V_rᵀ orth(X)‖² / ‖S_r‖²``: the share of a rank-r target's energy that ``col(X)``
    captures (``metrics.direction_metrics``'s definition)."""
    from ..linalg import orth

    proj = V_r.T @ orth(X)
    return jnp.sum((S_r[:, None] * proj) ** 2) / jnp.sum(S_r**2)


def whitenings(moments: dict) -> dict:
    """``Σ^{1/2}`` per kernel (eigenvalues below 1e-12·λ_max clipped). Kernels that read the
    same input (query, key and value) share one decomposition."""
    out = {}
    for paths in bert.input_groups(moments):
        lam, Q = np.linalg.eigh(moments[paths[0]])
        lam = np.maximum(lam / lam.max(), 1e-12)
        half = jnp.asarray((Q * np.sqrt(lam)) @ Q.T, jnp.float32)
        out |= dict.fromkeys(paths, half)
    return {p: out[p] for p in moments}


def _top_r(B, A, r, half):
    """Top-r ``(S, V)`` of ``B Aᵀ Σ^{1/2}`` (``half`` None: raw) from its factors."""
    A = A if half is None else half @ A
    _, S, V = thin_svd_of_product(B, A, r)
    return S, V


_top_r_jit = jax.jit(_top_r, static_argnums=2)


def captured_lora(
    paths: list, init: dict, final: dict, offsets: dict, r: int, halves: dict
) -> np.ndarray:
    """``(S, kernels, 2)`` raw and whitened captured energy, by each seed's init subspace
    ``col(A₀)``, of the seed's own final update ``s·(B Aᵀ − B₀A₀ᵀ)``; 0 on a kernel without an
    adapter (EVA's rank 0)."""

    def measure(path):
        a0, fin = init[path], final[path]
        B = fin.B if path not in offsets else jnp.concatenate([fin.B, -offsets[path].B], -1)
        A = fin.A if path not in offsets else jnp.concatenate([fin.A, offsets[path].A], -1)
        per = []
        for half in (None, halves[path]):
            h = half if half is not None else jnp.eye(A.shape[-2], dtype=A.dtype)
            k = min(r, A.shape[-1])
            Sv, V = jax.vmap(lambda b, a: _top_r_jit(b, a, k, h))(B, A)
            per.append(jax.vmap(lambda s, v, a: _captured(s, v, h @ a))(Sv, V, a0.A))
        return jnp.stack(per, -1)

    return _per_kernel(paths, init, measure)


def _per_kernel(paths: list, init: dict, measure) -> np.ndarray:
    """``(S, kernels, 2)``: ``measure(path)`` on each kernel with an adapter, 0 elsewhere."""
    S = next(iter(init.values())).A.shape[0]
    out = [measure(p) if p in init else jnp.zeros((S, 2)) for p in paths]
    return np.asarray(jnp.stack(out, 1), np.float64)


def target_directions(deltas: dict, r: int, halves: dict) -> dict:
    """Per kernel, raw and whitened top-r ``(S_r, V_r)`` of the full fine-tune's ``ΔW``."""
    out = {}
    for path, dW in deltas.items():
        dW = np.asarray(dW, np.float64)
        pair = []
        for half in (None, np.asarray(halves[path], np.float64)):
            M = dW if half is None else dW @ half
            _, S, Vt = np.linalg.svd(M, full_matrices=False)
            pair.append((jnp.asarray(S[:r], jnp.float32), jnp.asarray(Vt[:r].T, jnp.float32)))
        out[path] = pair
    return out


def captured_target(paths: list, init: dict, targets: dict, halves: dict) -> np.ndarray:
    """``(S, kernels, 2)`` raw and whitened captured energy of the full fine-tune's ``ΔW`` by
    each seed's init subspace ``col(A₀)``; 0 on a kernel without an adapter."""

    def measure(path):
        per = []
        for (S_r, V_r), half in zip(targets[path], (None, halves[path])):
            A = init[path].A
            X = A if half is None else jnp.einsum("ij,sjr->sir", half, A)
            per.append(jax.vmap(lambda x: _captured(S_r, V_r, x))(X))
        return jnp.stack(per, -1)

    return _per_kernel(paths, init, measure)


def full_finetune_folder(cfg: LoraConfig) -> Path | None:
    """``hrp-sim finetune --task TASK``'s folder for this study (the default base), if it ran."""
    folder = full_finetune.default_dir(cfg.task)
    if cfg.checkpoint is not None or not (folder / checkpoints.MSGPACK).exists():
        return None
    return folder


def full_finetune_reference(cfg: LoraConfig) -> dict | None:
    """The full fine-tune's figures (``finetune.json``), the study's reference row: every weight
    trained on the task's training split, evaluated on the same test split as the study (one
    seed; its per-example correctness is kept for a bootstrap interval over test examples)."""
    folder = full_finetune_folder(cfg)
    got = full_finetune.read_summary(folder) if folder is not None else {}
    if "test_accuracy" not in got:
        return None
    c = got["config"]
    return {
        "test_accuracy": got["test_accuracy"],
        "test_examples": got["test_examples"],
        "test_correct": got.get("test_correct"),
        "train_examples": got["train_examples"],
        "steps": c["steps"],
        "batch_size": c["batch_size"],
        "max_tokens": c["max_length"],
        "lr": c["lr"],
        "seeds": 1,
        "command": f"hrp-sim finetune --task {cfg.task}",
    }


def full_finetune_deltas(setup: Setup, cfg: LoraConfig) -> dict | None:
    """``{path: ΔW}`` of ``hrp-sim finetune --task TASK``'s checkpoint of the installed MiniLM
    (None if absent)."""
    folder = full_finetune_folder(cfg)
    if folder is None:
        return None
    tuned = checkpoints.load(folder / checkpoints.MSGPACK)
    base = jax.tree.map(np.asarray, setup.base)
    return dict(checkpoints.deltas(base, bert.encoder_params(tuned), cfg.targets))
