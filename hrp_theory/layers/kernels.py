"""The per-layer study's problems: every selected kernel of a real model as the theory's regression.

For a kernel ``W0`` (out × in) with input activations ``x`` and a fine-tuning change ``ΔW``::

    L(D) = ½ E‖(ΔW − D) x‖² = ½‖(ΔW − D) Σ^{1/2}‖²,      Σ = E[x xᵀ] over real tokens,

exactly the synthetic model with ``M = ΔW``. ``load_layers`` reads the kernels, their ``ΔW``
(the full fine-tune's, another checkpoint's, or a synthetic one) and ``Σ``; ``layer_problem`` puts
a layer in the theory's units: ``Σ`` divided by ``λ_max(Σ)`` and ``ΔW`` and ``W0`` by
``σ₁(ΔW Σ^{1/2})`` (directions and relative losses are unchanged; learning rates then mean what
they mean in the synthetic runs).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..models import bert, checkpoints, text
from ..problems import Problem, haar_orthogonal, problem_from_matrices
from ..runtime import x64
from ..seeds import root_key
from ..spectra import spectrum_values
from . import full_finetune
from .config import RealConfig


@dataclasses.dataclass
class LayerData:
    """One kernel's raw matrices: ``W0`` and ``dW`` (out, in), ``Sigma`` (in, in) or None."""

    path: str
    W0: np.ndarray
    dW: np.ndarray
    Sigma: np.ndarray | None


# ---------------------------------------------------------------------------------------------
# inputs: kernels, deltas, covariances


def _base_path(cfg: RealConfig) -> Path:
    return Path(cfg.checkpoint) if cfg.checkpoint is not None else checkpoints.minilm_path()


def _delta_path(cfg: RealConfig) -> Path:
    if cfg.delta != "finetuned":
        return Path(cfg.delta)
    d = full_finetune.default_dir()
    if not (d / checkpoints.MSGPACK).exists():
        raise ValueError(
            f"delta: no fine-tuned checkpoint at {str(d)!r}; make it with "
            "`hrp-sim finetune` (about 3 minutes on 2 CPU cores), or pass "
            "--delta PATH (a fine-tuned checkpoint) or --delta synthetic:power:1"
        )
    return d


def _synthetic_deltas(kernels, spectrum: str, seed: int):
    out = []
    for i, (path, W0) in enumerate(kernels):
        m, n = W0.shape
        k = min(m, n)
        try:
            s = spectrum_values(spectrum, k, field="delta")
        except ValueError as e:
            raise ValueError(f"{e} (layer {path!r} is {m}×{n})") from None
        key = jax.random.fold_in(root_key(seed), 10_000 + i)
        ku, kv = jax.random.split(key)
        U = np.asarray(haar_orthogonal(ku, m, jnp.float64 if x64() else None))
        V = np.asarray(haar_orthogonal(kv, n, U.dtype))
        out.append((path, (U[:, :k] * s) @ V[:, :k].T))
    return out


def covariances(cfg: RealConfig, tree: dict, paths: list[str], progress: bool = True):
    """``({path: E[x xᵀ]}, tokens)`` from the base model's activations on polarity sentences
    (a fixed shuffle of the training split, until ``tokens`` real tokens)."""
    base = _base_path(cfg)
    model = bert.Bert(bert.BertConfig.from_dict(checkpoints.read_config(base)))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), bert.encoder_params(tree, model))
    need = cfg.tokens
    assert need is not None  # load_layers fills it in
    texts, _ = text.load_polarity(cfg.data)
    train_idx, _ = text.split(len(texts), seed=cfg.seed)
    order = np.random.default_rng(cfg.seed).permutation(train_idx)
    tok = bert.tokenizer(checkpoints.model_folder(base))
    chosen, count = [], 0
    for i in order:
        chosen.append(texts[i])
        count += sum(tok.encode(texts[i]).attention_mask)
        if count >= need:
            break
    if count < need:
        raise ValueError(
            f"tokens: the text has only {count} tokens, fewer than the {need} asked "
            "for; lower --tokens"
        )
    moments, tokens = bert.input_second_moments(
        model, params, bert.batches(tok, chosen), progress=progress
    )
    missing = [q for q in paths if q not in moments]
    if missing:
        raise ValueError(
            f"layers: no activations for {missing[:3]} (not used by the encoder's "
            "forward pass, e.g. the pooler); narrow --layers"
        )
    return {q: moments[q] for q in paths}, tokens


def load_layers(cfg: RealConfig, progress: bool = True) -> tuple[list[LayerData], dict]:
    """The selected kernels with their ``ΔW`` and ``Σ`` (validated), and facts about them."""
    tree = checkpoints.load(_base_path(cfg))
    ks = checkpoints.kernels(tree, cfg.layers)
    for path, W in ks:
        k = min(W.shape)
        if cfg.p > k:
            raise ValueError(
                f"p: preheat rank {cfg.p} exceeds min(out, in) = {k} of layer "
                f"{path!r} {W.shape}; lower --p or narrow --layers"
            )
        if "lora-ga" in cfg.inits and 2 * cfg.r > k:
            raise ValueError(f"r: lora-ga needs 2r <= {k} on layer {path!r}")
    info: dict = {"checkpoint": str(_base_path(cfg))}
    if cfg.synthetic_spectrum is not None:
        ds = _synthetic_deltas(ks, cfg.synthetic_spectrum, cfg.seed)
        info["delta"] = cfg.delta
    else:
        dp = _delta_path(cfg)
        ds = checkpoints.deltas(tree, checkpoints.load(dp), cfg.layers)
        info["delta"] = str(dp)
        info["finetune"] = {
            k: v
            for k, v in full_finetune.read_summary(checkpoints.model_folder(dp)).items()
            if k in ("test_accuracy", "test_examples", "config")
        }
    for path, dW in ds:
        if not np.any(dW):
            raise ValueError(
                f"delta: ΔW of layer {path!r} is zero; the fine-tuned checkpoint "
                "equals the base there"
            )
    sig = {}
    if cfg.sigma == "real":
        need = 4 * max(W.shape[1] for _, W in ks)
        if cfg.tokens is not None and cfg.tokens < need:
            raise ValueError(
                f"tokens: {cfg.tokens} < 4·d = {need}, too few to estimate a "
                f"{need // 4}-dim covariance; use --tokens {need} or more"
            )
        cfg = dataclasses.replace(cfg, tokens=cfg.tokens or need)
        sig, info["tokens"] = covariances(cfg, tree, [p for p, _ in ks], progress)
    layers = [
        LayerData(path, W0.astype(np.float64), dW, sig.get(path))
        for (path, W0), (_, dW) in zip(ks, ds)
    ]
    return layers, info


# ---------------------------------------------------------------------------------------------
# problems


def layer_problem(layer: LayerData) -> tuple[Problem, dict]:
    """The layer's regression problem in theory units (module docstring) and its facts."""
    Sigma = layer.Sigma
    dW = layer.dW
    s_dw = np.linalg.svd(dW, compute_uv=False)
    facts = {
        "delta_relative_norm": float(np.linalg.norm(dW) / np.linalg.norm(layer.W0)),
        "delta_top8_energy": float((s_dw[:8] ** 2).sum() / (s_dw**2).sum()),
    }
    scale = s_dw[0]  # σ₁(ΔW Σ^{1/2}), so the problem is built once, already in theory units
    if Sigma is not None:
        lam, Q = np.linalg.eigh(Sigma)
        facts["sigma_condition"] = float(lam[-1] / max(lam[0], 1e-300))
        q = np.clip(lam, 0, None) / np.clip(lam, 0, None).sum()
        q = q[q > 0]
        facts["sigma_effective_rank"] = float(np.exp(-np.sum(q * np.log(q))))  # entropy rank
        Sigma, lam = Sigma / lam[-1], lam / lam[-1]
        half = (Q * np.sqrt(np.maximum(lam, 1e-12))) @ Q.T  # problem_from_matrices' clip
        scale = np.linalg.norm(dW @ half, 2)
    problem = problem_from_matrices(dW / scale, layer.W0 / scale, Sigma)
    return problem, facts
