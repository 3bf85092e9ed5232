"""A minimal Flax (linen) BERT encoder that reads the Hugging Face Flax parameter tree as is.

Post-LayerNorm BERT: embeddings (word + position + token type 0, LayerNorm) and ``L`` layers of::

    h ← LN(h + Wo·attn(Wq h, Wk h, Wv h)),      h ← LN(h + W2·gelu(W1 h))

with exact (erf) GELU. Every Dense layer *sows its input* into the ``"inputs"`` collection under
its own parameter path, so one forward pass yields the activations ``x`` each kernel ``W`` sees
(``y = W x + b``): the inputs of the per-layer regression problems.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .checkpoints import CheckpointError, flatten


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face ``config.json`` the encoder needs."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_dict(cls, d: dict) -> BertConfig:
        if d.get("model_type", "bert") != "bert":
            raise CheckpointError(
                f"config: model_type {d.get('model_type')!r}; only BERT is supported"
            )
        if d.get("hidden_act", "gelu") != "gelu":
            raise CheckpointError(
                f"config: hidden_act {d.get('hidden_act')!r}; only exact gelu is supported"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k, v in kw.items():
            want = float if k == "layer_norm_eps" else int
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            if not ok or (want is int and int(v) != v) or not v > 0:
                raise CheckpointError(
                    f"config: {k} = {v!r} must be a positive {want.__name__}; the model's "
                    "config.json is damaged"
                )
            kw[k] = want(v)
        cfg = cls(**kw)
        if cfg.hidden_size % cfg.num_attention_heads:
            raise CheckpointError(
                f"config: hidden_size {cfg.hidden_size} is not a multiple of "
                f"num_attention_heads {cfg.num_attention_heads}; the config.json is damaged"
            )
        return cfg


def check_length(cfg: BertConfig, tokens: int, field: str) -> int:
    """``tokens`` fits the model's position table, else ``ValueError`` naming ``field``."""
    if tokens > cfg.max_position_embeddings:
        raise ValueError(
            f"{field}: {tokens} tokens is more than the model's {cfg.max_position_embeddings} "
            f"positions; use --{field.replace('_', '-')} {cfg.max_position_embeddings} or less"
        )
    return tokens


class Dense(nn.Module):
    """``y = x @ kernel + bias`` (kernel ``(in, out)``, HF Flax layout) that sows ``x``.

    With a LoRA adapter in the ``"lora"`` collection under its path (``finetune.adapters``):
    ``y += s·(x A) Bᵀ − s·(x A₀) B₀ᵀ``, where ``A`` (in, r) and ``B`` (out, r) are trained and the
    optional frozen ``A₀, B₀`` carry an init's offset of ``W0`` (``W0 ← W0 − s·B₀A₀ᵀ``) without
    copying the base. The two terms are summed before they are added, so an offset init's output
    at step 0 is the base model's.

    The low-rank products run on the tokens flattened to one axis: then the gradients of ``A`` and
    ``B`` are plain ``(tokens, ·)ᵀ (tokens, ·)`` matmuls. On the ``(batch, seq, ·)`` layout XLA's
    CPU backend transposed the wide activation gradient first, and that copy took over a third of
    a LoRA step (``benchmarks/lora_seeds.py``: 0.46 → 0.29 s a seed-step on 2 cores)."""

    features: int

    @nn.compact
    def __call__(self, x):
        self.sow("inputs", "x", x)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        y = x @ kernel + bias
        if self.has_variable("lora", "A"):
            flat = x.reshape(-1, x.shape[-1])
            low = lambda a, b: (
                (flat @ self.get_variable("lora", a)) @ self.get_variable("lora", b).T
            )
            update = low("A", "B")
            if self.has_variable("lora", "A0"):
                update = update - low("A0", "B0")
            y = y + self.get_variable("lora", "s") * update.reshape(y.shape)
        return y


class SelfAttention(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, h, bias):
        c = self.cfg
        heads, d = c.num_attention_heads, c.hidden_size // c.num_attention_heads
        split = lambda t: t.reshape(t.shape[:2] + (heads, d))
        q, k, v = (split(Dense(c.hidden_size, name=n)(h)) for n in ("query", "key", "value"))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.asarray(d, h.dtype)) + bias
        ctx = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v)
        return ctx.reshape(h.shape)


class AddNorm(nn.Module):
    """``LN(residual + dense(x))`` (HF's ``…output`` blocks)."""

    cfg: BertConfig

    @nn.compact
    def __call__(self, x, residual):
        y = Dense(self.cfg.hidden_size, name="dense")(x)
        return nn.LayerNorm(epsilon=self.cfg.layer_norm_eps, name="LayerNorm")(y + residual)


class Attention(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, h, bias):
        return AddNorm(self.cfg, name="output")(SelfAttention(self.cfg, name="self")(h, bias), h)


class Intermediate(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, h):
        return nn.gelu(Dense(self.cfg.intermediate_size, name="dense")(h), approximate=False)


class Layer(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, h, bias):
        h = Attention(self.cfg, name="attention")(h, bias)
        return AddNorm(self.cfg, name="output")(Intermediate(self.cfg, name="intermediate")(h), h)


class Stack(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, h, bias):
        for i in range(self.cfg.num_hidden_layers):
            h = Layer(self.cfg, name=str(i))(h, bias)
        return h


class Encoder(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, h, bias):
        return Stack(self.cfg, name="layer")(h, bias)


class Embeddings(nn.Module):
    cfg: BertConfig

    @nn.compact
    def __call__(self, ids):
        c = self.cfg
        pos = jnp.arange(ids.shape[1])[None, :]
        h = (
            nn.Embed(c.vocab_size, c.hidden_size, name="word_embeddings")(ids)
            + nn.Embed(c.max_position_embeddings, c.hidden_size, name="position_embeddings")(pos)
            + nn.Embed(c.type_vocab_size, c.hidden_size, name="token_type_embeddings")(
                jnp.zeros_like(ids)
            )
        )
        return nn.LayerNorm(epsilon=c.layer_norm_eps, name="LayerNorm")(h)


class Bert(nn.Module):
    """``(ids, mask) -> last hidden states (batch, seq, hidden)``; mask is 1 on real tokens."""

    cfg: BertConfig

    @nn.compact
    def __call__(self, ids, mask):
        bias = jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min / 2)
        h = Embeddings(self.cfg, name="embeddings")(ids)
        return Encoder(self.cfg, name="encoder")(h, bias.astype(h.dtype))


ENCODER_KEYS = ("embeddings", "encoder")


def encoder_params(tree: dict, model: Bert | None = None) -> dict:
    """The part of a checkpoint tree the encoder reads (drops ``pooler`` and any head). With
    ``model``, every array the encoder needs must be there with the shape its config implies
    (``CheckpointError`` naming the first that is missing or misshapen, before any compute)."""
    missing = [k for k in ENCODER_KEYS if k not in tree or not isinstance(tree[k], dict)]
    if missing:
        raise CheckpointError(
            f"checkpoint: no {'/'.join(missing)} subtree; it is not a BERT "
            f"checkpoint in Hugging Face Flax naming (top keys: {sorted(tree)})"
        )
    params = {k: tree[k] for k in ENCODER_KEYS}
    if model is not None:
        ids = jnp.zeros((1, 2), jnp.int32)
        want = flatten(jax.eval_shape(lambda: model.init(jax.random.key(0), ids, ids))["params"])
        have = flatten(params)
        for path, spec in want.items():
            got = have.get(path)
            if got is None:
                raise CheckpointError(f"checkpoint: {path!r} is missing; the checkpoint is damaged")
            if tuple(np.shape(got)) != tuple(spec.shape):
                raise CheckpointError(
                    f"checkpoint: {path!r} has shape {tuple(np.shape(got))}, but the config "
                    f"implies {tuple(spec.shape)}; the checkpoint and its config.json disagree"
                )
    return params


def mean_pool(hidden, mask):
    """Mean of the hidden states over real tokens (sentence-transformers' pooling)."""
    m = mask[..., None].astype(hidden.dtype)
    return (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1.0)


def embed(model: Bert, params: dict, ids, mask):
    """all-MiniLM-L6-v2 sentence embeddings: mean pooling, then L2 normalisation."""
    e = mean_pool(model.apply({"params": params}, ids, mask), mask)
    return e / jnp.linalg.norm(e, axis=-1, keepdims=True)


@jax.jit
def _batch_statistics(inputs: dict, mask):
    """Per sown input, over the real tokens of a batch: ``Σ_t x_t x_tᵀ``, ``Σ_t x_t`` and CorDA's
    ``Σ_b X_bᵀX_b / max(X_b)²`` (each example's tokens scaled by its largest entry, as PEFT's
    ``calib_cov_distribution`` hook does on batches of one)."""
    m = mask.astype(jnp.float32)
    out = {}
    for path, (x,) in inputs.items():
        xm = x * m[..., None]
        top = jnp.max(jnp.where(m[..., None] > 0, x, -jnp.inf), axis=(1, 2))
        scaled = xm / jnp.abs(top)[:, None, None]
        X = xm.reshape(-1, x.shape[-1])
        out[path] = (
            X.T @ X,
            X.sum(0),
            jnp.einsum("btd,bte->de", scaled, scaled),
        )
    return out


class InputStatistics(NamedTuple):
    """A kernel input's statistics over real tokens: ``second`` ``E[x xᵀ]``, ``mean`` ``E[x]``,
    ``corda`` (CorDA's covariance: the mean over examples of ``X_bᵀX_b/max(X_b)²``), and the
    token and example counts."""

    second: np.ndarray
    mean: np.ndarray
    corda: np.ndarray
    tokens: int
    examples: int

    @property
    def covariance(self) -> np.ndarray:
        """The centred covariance ``E[x xᵀ] − E[x]E[x]ᵀ`` (what EVA's PCA diagonalises)."""
        return self.second - np.outer(self.mean, self.mean)


def input_statistics(model: Bert, params: dict, batches, progress: bool = True) -> dict:
    """``{kernel path: InputStatistics}`` of every Dense layer's input over the real tokens of
    ``batches`` (``(ids, mask)`` int arrays), float64 on the host. Query, key and value share one
    input and thus the same statistics."""
    from tqdm.auto import tqdm

    fwd = jax.jit(
        lambda p, ids, mask: model.apply({"params": p}, ids, mask, mutable=["inputs"])[1]["inputs"]
    )
    sums: dict = {}
    tokens = examples = 0
    for ids, mask in tqdm(list(batches), desc="activations", unit="batch", disable=not progress):
        sown = flatten(fwd(params, ids, mask))
        got = jax.device_get(_batch_statistics({k[: -len("/x")]: v for k, v in sown.items()}, mask))
        for path, parts in got.items():
            old = sums.get(path, (0.0, 0.0, 0.0))
            sums[path] = tuple(o + np.asarray(v, np.float64) for o, v in zip(old, parts))
        tokens += int(np.asarray(mask).sum())
        examples += int((np.asarray(mask).sum(1) > 0).sum())
    if tokens == 0:
        raise ValueError("activations: no tokens; give some text")
    return {
        p: InputStatistics(xx / tokens, x / tokens, c / examples, tokens, examples)
        for p, (xx, x, c) in sums.items()
    }


def input_groups(moments: dict) -> list[list[str]]:
    """The kernel paths of ``{path: array}`` grouped by equal arrays, in first-seen order: the
    kernels that read one input (query, key and value) have the same statistics, so a
    decomposition of them is done once a group."""
    groups: dict = {}
    for path, m in moments.items():
        key = hashlib.sha1(np.ascontiguousarray(m).tobytes()).hexdigest()
        groups.setdefault(key, []).append(path)
    return list(groups.values())


def input_second_moments(model: Bert, params: dict, batches, progress: bool = True):
    """``({kernel path: E[x xᵀ]}, tokens)`` of every Dense layer's input over the real tokens of
    ``batches`` (``input_statistics``' second moments)."""
    stats = input_statistics(model, params, batches, progress)
    tokens = next(iter(stats.values())).tokens
    return {p: st.second for p, st in stats.items()}, tokens


# ---------------------------------------------------------------------------------------------
# tokenizer


def tokenizer(folder, max_length: int = 128, pad_to_multiple_of: int = 32):
    """The model's ``tokenizer.json`` (Rust ``tokenizers``), truncating at ``max_length`` and
    padding each batch to a multiple of ``pad_to_multiple_of`` (few shapes, few compiles).

    The shipped file forces padding to 128; this resets it."""
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.exists():
        raise CheckpointError(
            f"tokenizer: {str(path)!r} does not exist; copy the model's "
            "tokenizer.json next to the checkpoint (hrp-sim convert does)"
        )
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_padding(pad_id=0, pad_token="[PAD]", pad_to_multiple_of=pad_to_multiple_of)
    tok.enable_truncation(max_length=max_length)
    return tok


def encode(tok, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, mask)`` int32 arrays of a batch of texts."""
    enc = tok.encode_batch(list(texts))
    ids = np.array([e.ids for e in enc], np.int32)
    mask = np.array([e.attention_mask for e in enc], np.int32)
    return ids, mask


def batches(tok, texts: list[str], batch_size: int = 32):
    """``(ids, mask)`` batches of ``texts`` in order."""
    for i in range(0, len(texts), batch_size):
        yield encode(tok, texts[i : i + batch_size])
