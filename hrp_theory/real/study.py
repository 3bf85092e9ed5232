"""The per-layer study: the theory's regression problem on every selected kernel of a real model.

For a kernel ``W0`` (out × in) with input activations ``x`` and a fine-tuning change ``ΔW``::

    L(D) = ½ E‖(ΔW − D) x‖² = ½‖(ΔW − D) Σ^{1/2}‖²,      Σ = E[x xᵀ] over real tokens,

exactly the synthetic model with ``M = ΔW``. Each layer is put in the theory's units: ``Σ`` is
divided by ``λ_max(Σ)`` and ``ΔW`` and ``W0`` by ``σ₁(ΔW Σ^{1/2})`` (directions and relative
losses are unchanged; learning rates then mean what they mean in the synthetic runs). Losses are
reported relative to ``L(0)``, the loss of the unchanged model.

Every init comes from ``hrp_theory.inits`` (HRP through THE ``preheat.preheat_then_svd``), the
runs from ``dynamics.train``; layers of equal shape are stacked and mapped inside one jitted call
(``lax.map``; vmapped on GPU), seeds through ``seeds.map_seeds``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..devices import vmap_batch
from ..dynamics import make_optimizer, record_interval, train
from ..inits import InitHyper, InitStatic, draw, start
from ..losses import population_loss
from ..metrics import direction_metrics
from ..preheat import converged_freeze_a
from ..problems import Problem, haar_orthogonal, problem_from_matrices
from ..runtime import x64
from ..seeds import map_seeds, root_key
from ..spectra import spectrum_values
from ..stats import diverged, summarize
from . import bert, checkpoints, finetune, text
from .config import FORMS, RealConfig


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
    d = finetune.default_dir()
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
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), bert.encoder_params(tree))
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
            for k, v in finetune.read_summary(checkpoints.model_folder(dp)).items()
            if k in ("held_out_accuracy", "config")
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


# ---------------------------------------------------------------------------------------------
# the jitted measurement


@dataclasses.dataclass(frozen=True)
class _Static:
    inits: tuple[str, ...]
    r: int
    p: int
    steps: int
    preheat_steps: int
    optimizer: str
    layer_batch: int


def _raw_view(problem: Problem) -> Problem:
    """The problem as seen against the raw ``ΔW`` (no whitening): metrics then measure
    ``col(A)`` against ``ΔW``'s own top-r right singular vectors."""
    return problem._replace(
        whitened=problem.target, objective=problem.objective._replace(sigma_half=None)
    )


def measure(problem: Problem, key: jax.Array, st: _Static, hy: InitHyper) -> dict:
    """Every init on one layer for one seed: directions, losses after K steps, freeze-A limit.

    Losses are relative to ``L(0)``. ``start_loss`` is the init's loss at step 0 (1 unless the
    init moves the product, as LoRA-One does) and each trained form records its loss along the
    run (``…_curve``), for the divergence rule (``stats.diverged``)."""
    ist = InitStatic(
        r=st.r,
        form="classic",
        base="kaiming",
        p=st.p,
        preheat_form="classic",
        preheat_steps=st.preheat_steps,
        preheat_optimizer=st.optimizer,
    )
    draws = draw(key, problem, ist, hy, ("kaiming",))
    opt = make_optimizer(st.optimizer, hy.lr, hy.momentum, hy.weight_decay)
    Mt = problem.objective.Mt
    assert Mt is not None  # a population problem (problem_from_matrices)
    L0 = 0.5 * jnp.sum(Mt**2)  # the unchanged model's loss
    raw = _raw_view(problem)
    out: dict[str, Any] = {
        "L0": L0,
        "optimal_loss": 0.5 * jnp.sum(problem.whitened.S[st.r :] ** 2) / L0,
    }
    every = record_interval(st.steps, 20)
    for name in st.inits:
        params, obj = start(name, problem, ist, hy, draws)
        d_raw = direction_metrics(params, raw, st.r, "classic")
        d_w = direction_metrics(params, problem, st.r, "classic")
        rec = {
            "captured_energy": d_raw["captured_energy"],
            "angles_deg": d_raw["angles_deg"],
            "captured_energy_whitened": d_w["captured_energy"],
            "angles_whitened_deg": d_w["angles_deg"],
            "start_loss": population_loss(params, obj, hy.s) / L0,
        }
        for form in FORMS:
            curve = (
                train(
                    params, obj, hy.s, form=form, opt=opt, steps=st.steps, record_every=every
                ).curves["loss"]
                / L0
            )
            rec[f"loss_{form}"], rec[f"loss_{form}_curve"] = curve[-1], curve
        limit = params._replace(B=converged_freeze_a(params.A, obj, hy.s))
        rec["loss_freeze-a_limit"] = population_loss(limit, obj, hy.s) / L0
        out[name] = rec
    return out


def _layers_seed(key: jax.Array, st: _Static, args) -> dict:
    problems, hy = args
    return jax.lax.map(lambda pr: measure(pr, key, st, hy), problems, batch_size=st.layer_batch)


def _stack(problems: list[Problem]) -> Problem:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *problems)


# ---------------------------------------------------------------------------------------------
# the study


def run_study(cfg: RealConfig, progress: bool = True, log=print) -> dict:
    """Load, build and measure every layer; returns the report (JSON contract of ``hrp-sim
    real``) with per-seed arrays under ``"per_seed"`` (dropped when saving the JSON)."""
    t0 = time.perf_counter()
    layers, info = load_layers(cfg, progress)
    t_load = time.perf_counter() - t0
    built = [layer_problem(L) for L in layers]
    dtype = built[0][0].M.dtype
    f = lambda x: jnp.asarray(x, dtype)
    groups: dict[tuple, list[int]] = {}
    for i, L in enumerate(layers):
        groups.setdefault(L.W0.shape, []).append(i)
    per_layer: list = [None] * len(layers)
    interrupted = False
    t1 = time.perf_counter()
    for shape, idx in groups.items():
        n = shape[1]
        hy = InitHyper(
            s=f(1.0),
            s_p=f(1.0),
            std=f(1 / math.sqrt(3 * n)),
            lr=f(cfg.lr),
            lr_p=f(cfg.lr),
            momentum=f(0.0),
            weight_decay=f(0.0),
        )
        st = _Static(
            inits=cfg.inits,
            r=cfg.r,
            p=cfg.p,
            steps=cfg.steps,
            preheat_steps=cfg.preheat_steps,
            optimizer=cfg.optimizer,
            layer_batch=vmap_batch(None, len(idx)),
        )
        res = map_seeds(
            _layers_seed,
            st,
            (_stack([built[i][0] for i in idx]), hy),
            seeds=cfg.seeds,
            seed=cfg.seed,
            chunk_size=1,
            progress=progress,
            desc=f"layers {shape[0]}×{shape[1]} (×{len(idx)})",
        )
        interrupted |= res.interrupted
        for j, i in enumerate(idx):
            per_layer[i] = jax.tree.map(lambda a: np.asarray(a)[:, j], res.out)
        if res.interrupted:
            break
    t_run = time.perf_counter() - t1
    report = {
        "config": dataclasses.asdict(cfg) | {"inits": list(cfg.inits)},
        "inputs": info,
        "units": "losses relative to L(0) = ½‖ΔW Σ^{1/2}‖²; captured energy of ΔW's "
        "top-r part in [0, 1]; angles in degrees",
        "layers": [],
        "timings_s": {"load": t_load, "run": t_run},
        "interrupted": interrupted,
    }
    per_seed = {}
    for L, (_, facts), out in zip(layers, built, per_layer):
        if out is None:
            continue
        entry = {
            "path": L.path,
            "shape": list(L.W0.shape),
            "optimal_loss": float(np.mean(out["optimal_loss"])),
            "facts": facts,
            "inits": {},
        }
        for name in cfg.inits:
            o = out[name]
            entry["inits"][name] = {
                "captured_energy": _ms(o["captured_energy"]),
                "loss": _ms(o["loss_classic"], diverged(o["loss_classic_curve"])),
                "loss_freeze_a": _ms(o["loss_freeze-a"], diverged(o["loss_freeze-a_curve"])),
                "loss_freeze_a_limit": _ms(
                    o["loss_freeze-a_limit"], diverged(o["loss_freeze-a_limit"], o["start_loss"])
                ),
                "captured_energy_whitened": _ms(o["captured_energy_whitened"]),
                "principal_angles_deg": np.nanmean(o["angles_deg"], axis=0).tolist(),
                "principal_angles_whitened_deg": np.nanmean(
                    o["angles_whitened_deg"], axis=0
                ).tolist(),
            }
        report["layers"].append(entry)
        per_seed[L.path] = out
    report["per_seed"] = per_seed
    return report


def _ms(x, bad=None) -> dict:
    """Mean, SE and counts of a per-seed metric; seeds flagged ``bad`` (diverged, by the rule of
    ``stats.diverged``) are left out and counted."""
    x = np.asarray(x, np.float64)
    if bad is not None:
        x = np.where(bad, np.nan, x)
    s = summarize(x)
    return {"mean": s["mean"], "se": s["se"], "n": s["n"], "diverged": s["n_nonfinite"]}
