"""LoRA on the Flax BERT: adapters on selected Dense kernels, a frozen base, a trainable head.

A classifier is ``logits = mean_pool(BERT(ids, mask)) @ head.kernel + head.bias``. Each selected
kernel ``W0`` (out × in; HF Flax stores ``W0ᵀ``) gets a LoRA ``s·B Aᵀ`` with ``A`` (in, r) and
``B`` (out, r), in the core's convention (``hrp_theory.lora``); PEFT's ``lora_A.weight`` is
``Aᵀ`` and ``lora_B.weight`` is ``B``. An init that moves ``W0`` (PiSSA, OLoRA, LoRA-GA, CorDA)
keeps its offset ``−s·B₀A₀ᵀ`` as frozen factors beside the adapter (``bert.Dense``), so the base
tree is shared by every init and seed.

The default targets, ``encoder/``, are every encoder Dense kernel (query, key, value, attention
output, intermediate, output): PEFT's ``all-linear`` for this model.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp

from . import bert, checkpoints

DEFAULT_TARGETS = "encoder/"


def select(tree: dict, pattern: str) -> list[tuple[str, jax.Array]]:
    """``(path, W0 (out, in))`` of the kernels matching ``pattern`` (``re.search``); a pattern
    that matches none raises, listing what exists (``checkpoints.kernels``)."""
    return [(p, jnp.asarray(W)) for p, W in checkpoints.kernels(tree, pattern)]


def collection(adapters: dict, offsets: dict, s) -> dict:
    """The ``"lora"`` variable collection ``bert.Dense`` reads: per kernel path ``A``, ``B``,
    ``s`` and, for an offset init, the frozen ``A0``, ``B0``."""
    flat = {}
    for path, ab in adapters.items():
        flat[f"{path}/A"], flat[f"{path}/B"] = ab.A, ab.B
        flat[f"{path}/s"] = jnp.asarray(s, ab.A.dtype)
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


# ---------------------------------------------------------------------------------------------
# PEFT interop

PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"


def peft_module(path: str) -> str:
    """``encoder/layer/0/attention/self/query`` → ``encoder.layer.0.attention.self.query``, the
    module's name in transformers' ``BertModel``."""
    return path.replace("/", ".")


def torch_bert(checkpoint):
    """transformers' ``BertModel`` (PyTorch, no pooler) of ``checkpoint``'s installed model
    folder, read from disk only (needs the ``peft`` extra): the base a PEFT adapter loads onto."""
    from transformers import BertModel

    folder = str(checkpoints.model_folder(checkpoint))  # a local folder: never the hub
    return BertModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False)


def export_peft(
    folder, adapters: dict, *, r: int, alpha: float, scaling: str, base_model: str, head=None
) -> dict:
    """Write one seed's adapter as a PEFT LoRA adapter for transformers' ``BertModel``:
    ``adapter_model.safetensors`` (``…<module>.lora_A.weight`` = ``Aᵀ`` (r, in),
    ``…lora_B.weight`` = ``B`` (out, r)) and ``adapter_config.json`` (the modules listed by full
    name, so the pooler's ``dense`` is not caught). ``peft.PeftModel.from_pretrained`` loads it;
    the head, if given, goes to ``head.safetensors`` (``kernel`` (hidden, classes), ``bias``).
    Both files are written atomically. Returns the paths."""
    import json

    import numpy as np
    from safetensors.numpy import save

    from ..results import _atomic

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for path, ab in adapters.items():
        key = f"base_model.model.{peft_module(path)}"
        tensors[f"{key}.lora_A.weight"] = np.ascontiguousarray(np.asarray(ab.A, np.float32).T)
        tensors[f"{key}.lora_B.weight"] = np.ascontiguousarray(np.asarray(ab.B, np.float32))
    config = {
        "peft_type": "LORA",
        "base_model_name_or_path": base_model,
        "r": r,
        "lora_alpha": alpha,
        "use_rslora": scaling == "alpha/sqrt-r",
        "target_modules": sorted(peft_module(p) for p in adapters),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "task_type": None,
        "inference_mode": True,
    }
    paths = {
        "weights": _atomic(out / PEFT_WEIGHTS, lambda f: f.write(save(tensors))),
        "config": _atomic(
            out / PEFT_CONFIG, lambda f: f.write(json.dumps(config, indent=2).encode())
        ),
    }
    if head is not None:
        h = {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in head.items()}
        paths["head"] = _atomic(out / "head.safetensors", lambda f: f.write(save(h)))
    return {k: str(v) for k, v in paths.items()}
