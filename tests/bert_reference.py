"""An independent NumPy float64 BERT forward pass on the torch-layout (safetensors) weights.

Written from the BERT definition, not from ``hrp_theory.models.bert``: weights keep the torch
layout ``(out, in)`` and torch names, so the Flax model's renaming and transposes are checked too.
"""

from __future__ import annotations

import math

import numpy as np


def _gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def forward(weights: dict, config: dict, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Last hidden states ``(batch, seq, hidden)`` in float64."""
    W = {
        k: np.asarray(v, np.float64)
        for k, v in weights.items()
        if np.issubdtype(v.dtype, np.floating)
    }
    eps = config["layer_norm_eps"]
    heads = config["num_attention_heads"]
    lin = lambda x, name: x @ W[name + ".weight"].T + W[name + ".bias"]
    seq = ids.shape[1]
    h = (
        W["embeddings.word_embeddings.weight"][ids]
        + W["embeddings.position_embeddings.weight"][np.arange(seq)][None]
        + W["embeddings.token_type_embeddings.weight"][0][None, None]
    )
    h = _layer_norm(h, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)
    bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e30)
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        b, t, d = h.shape
        hd = d // heads

        def split(x):
            return x.reshape(b, t, heads, hd).transpose(0, 2, 1, 3)

        q, k, v = (split(lin(h, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        ctx = (s / s.sum(-1, keepdims=True)) @ v
        ctx = ctx.transpose(0, 2, 1, 3).reshape(b, t, d)
        h = _layer_norm(
            lin(ctx, p + "attention.output.dense") + h,
            W[p + "attention.output.LayerNorm.weight"],
            W[p + "attention.output.LayerNorm.bias"],
            eps,
        )
        f = lin(_gelu(lin(h, p + "intermediate.dense")), p + "output.dense")
        h = _layer_norm(
            f + h, W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"], eps
        )
    return h
