"""LoRA on the Flax BERT: adapters on selected Dense kernels, a frozen base, a trainable head.

A classifier is ``logits = mean_pool(BERT(ids, mask)) @ head.kernel + head.bias``. Each selected
kernel ``W0`` (out × in; HF Flax stores ``W0ᵀ``) gets a LoRA ``s·B Aᵀ`` with ``A`` (in, r) and
``B`` (out, r), in the core's convention (``hrp_theory.factors``); PEFT's ``lora_A.weight`` is
``Aᵀ`` and ``lora_B.weight`` is ``B``. An init that moves ``W0`` (PiSSA, OLoRA, LoRA-GA, CorDA)
keeps its offset ``−s·B₀A₀ᵀ`` as frozen factors beside the adapter (``bert.Dense``), so the base
tree is shared by every init and seed.

The default targets, ``encoder/``, are every encoder Dense kernel (query, key, value, attention
output, intermediate, output): PEFT's ``all-linear`` for this model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..models import bert, checkpoints

DEFAULT_TARGETS = "encoder/"


def select(tree: dict, pattern: str) -> list[tuple[str, jax.Array]]:
    """``(path, W0 (out, in))`` of the kernels matching ``pattern`` (``re.search``); a pattern
    that matches none raises, listing what exists (``checkpoints.kernels``)."""
    return [(p, jnp.asarray(W)) for p, W in checkpoints.kernels(tree, pattern)]


def collection(adapters: dict, offsets: dict, s) -> dict:
    """The ``"lora"`` variable collection ``bert.Dense`` reads: per kernel path ``A``, ``B``,
    ``s`` (one scale, or ``{path: scale}``) and, for an offset init, the frozen ``A0``, ``B0``."""
    flat = {}
    for path, ab in adapters.items():
        flat[f"{path}/A"], flat[f"{path}/B"] = ab.A, ab.B
        flat[f"{path}/s"] = jnp.asarray(s[path] if isinstance(s, dict) else s, ab.A.dtype)
        if path in offsets:
            flat[f"{path}/A0"], flat[f"{path}/B0"] = offsets[path].A, offsets[path].B
    return checkpoints.unflatten(flat)


def hidden(model: bert.Bert, base: dict, adapters: dict, offsets: dict, s, ids, mask):
    """Mean-pooled last hidden states ``(batch, hidden)`` of the adapted encoder."""
    variables = {"params": base, "lora": collection(adapters, offsets, s)}
    return bert.mean_pool(model.apply(variables, ids, mask), mask)


def logits(model: bert.Bert, base: dict, trainable: dict, offsets: dict, s, ids, mask):
    """Class logits; ``trainable = {"lora": {path: LoraParams}, "head": {kernel, bias}}``."""
    h = hidden(model, base, trainable["lora"], offsets, s, ids, mask)
    return h @ trainable["head"]["kernel"] + trainable["head"]["bias"]
