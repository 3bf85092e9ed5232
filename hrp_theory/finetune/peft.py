"""PEFT interop: a trained adapter as a PEFT LoRA adapter for transformers' ``BertModel``.

PEFT's ``lora_A.weight`` is ``Aᵀ`` (r, in) and ``lora_B.weight`` is ``B`` (out, r), in the core's
convention ``ΔW = s·B Aᵀ`` (``hrp_theory.factors``). An init that moves ``W0`` (PiSSA, OLoRA,
LoRA-GA, CorDA) cannot be carried by a PEFT adapter and is not exported.
"""

from __future__ import annotations

from pathlib import Path

from ..factors import LoraParams
from ..models import checkpoints
from .config import LoraConfig

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
    name, so the pooler's ``dense`` is not caught). A module whose rank differs from ``r`` (EVA's
    redistribution) gets PEFT's ``rank_pattern`` and ``alpha_pattern`` entries, its α scaled as
    PEFT's EVA does (``α·rank/r``). ``peft.PeftModel.from_pretrained`` loads it; the head, if
    given, goes to ``head.safetensors`` (``kernel`` (hidden, classes), ``bias``). Both files are
    written atomically. Returns the paths."""
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
    ranks = {peft_module(p): int(np.asarray(ab.A).shape[-1]) for p, ab in adapters.items()}
    config = {
        "peft_type": "LORA",
        "base_model_name_or_path": base_model,
        "r": r,
        "lora_alpha": alpha,
        "rank_pattern": {m: k for m, k in ranks.items() if k != r},
        "alpha_pattern": {m: alpha * k / r for m, k in ranks.items() if k != r},
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


def seed0_adapter(run: dict, name: str) -> tuple[dict, dict]:
    """Seed 0's trained ``({path: LoraParams}, head)`` of a run (``--export-peft``)."""
    if "moves_w0" not in run:
        raise ValueError(
            f"export_peft: the saved run of {name} predates adapter export; delete its file "
            "under OUT/runs/ and rerun to export it"
        )
    if bool(run["moves_w0"]):
        raise ValueError(
            f"export_peft: {name} moves W0 (W0 ← W0 − s·B₀A₀ᵀ), which a PEFT LoRA adapter cannot "
            "carry; export an init that keeps W0 (kaiming, gaussian, eva, lora-one, hrp, "
            "aligned-ft) or drop --export-peft"
        )
    paths = sorted({k.split("|")[1] for k in run if k.startswith("seed0|") and k.endswith("|A")})
    if not paths:
        raise ValueError(
            f"export_peft: seed 0's adapter of {name} is not saved (its OUT/runs/RUN.adapter.npz "
            "is missing: a published run is kept without it); delete the run's file under "
            "OUT/runs/ and rerun to export it"
        )
    adapters = {p: LoraParams(B=run[f"seed0|{p}|B"], A=run[f"seed0|{p}|A"]) for p in paths}
    head = {f: run[f"seed0|head|{f}"] for f in ("kernel", "bias")}
    return adapters, head


def export_study(study: dict, cfg: LoraConfig, folder) -> dict:
    """Seed 0's trained adapter of every run whose init keeps ``W0``, as PEFT adapters in
    ``folder/RUN/``; returns ``{"peft RUN": folder or why not}``."""
    base = str(Path(cfg.checkpoint) if cfg.checkpoint else checkpoints.minilm_path())
    out = {}
    for run, arrays in study["runs"].items():
        name = run.split("@")[0]
        if bool(arrays.get("moves_w0", False)):
            out[f"peft {run}"] = (
                "not exported: the init moves W0, which a PEFT adapter cannot carry"
            )
            continue
        adapters, head = seed0_adapter(arrays, name)
        written = export_peft(
            Path(folder) / run,
            adapters,
            r=cfg.r,
            alpha=cfg.alpha,
            scaling=cfg.scaling,
            base_model=base,
            head=head,
        )
        out[f"peft {run}"] = str(Path(written["weights"]).parent)
    return out
