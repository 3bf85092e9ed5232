"""``hrp-sim convert``: a checkpoint in any format as Flax ``flax_model.msgpack`` and an orbax
folder, checked to reload bit-exactly, with nothing lost silently: a tensor that cannot be
carried, a NaN weight or the source's own folder as the target is refused before anything is
written; the index buffers the model rebuilds (``checkpoints.INDEX_BUFFERS``) are dropped and
named."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .checkpoints import (
    MODEL_FILES,
    MSGPACK,
    ORBAX,
    CheckpointError,
    dropped_buffers,
    flatten,
    load,
    model_folder,
    resolve,
    save_msgpack,
    save_orbax,
)


def convert(src, out) -> dict:
    """Write ``src``'s checkpoint as ``out/flax_model.msgpack`` and ``out/orbax/`` (plus its
    config and tokenizer), and check both reload bit-exactly. Returns a summary."""
    fmt, p = resolve(src)
    out = Path(out)
    folder = model_folder(p)
    if out.resolve() == folder.resolve() or out.resolve() == p.resolve():
        raise CheckpointError(
            f"out: {str(out)!r} is the source checkpoint's own folder; converting there would "
            "overwrite the source; choose another --out"
        )
    tree = load(p)
    bad = {k: v for k, v in flatten(tree).items() if not np.issubdtype(v.dtype, np.number)}
    if bad:
        k, v = next(iter(bad.items()))
        raise CheckpointError(
            f"checkpoint: entry {k!r} holds {v.dtype} values, not numbers; nothing written"
        )
    nonfinite = {
        k: int((~np.isfinite(v)).sum())
        for k, v in flatten(tree).items()
        if np.issubdtype(v.dtype, np.inexact) and not np.all(np.isfinite(v))
    }
    if nonfinite:
        shown = ", ".join(f"{k} ({n})" for k, n in list(nonfinite.items())[:5])
        raise CheckpointError(
            f"checkpoint: {len(nonfinite)} tensor(s) hold NaN/inf entries: {shown}; the "
            "checkpoint is damaged; nothing written"
        )
    dropped = []
    if fmt == "safetensors":
        from safetensors import safe_open

        with safe_open(str(p), "numpy") as f:
            dropped = dropped_buffers(f.keys())
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (folder / name).exists():
            shutil.copyfile(folder / name, out / name)
    save_msgpack(out / MSGPACK, tree)
    save_orbax(out / ORBAX, tree)
    ref = flatten(tree)
    checks = {}
    for kind, loaded in (("msgpack", load(out / MSGPACK)), ("orbax", load(out / ORBAX))):
        got = flatten(loaded)
        same = got.keys() == ref.keys() and all(
            got[k].dtype == ref[k].dtype and np.array_equal(got[k], ref[k]) for k in ref
        )
        if not same:
            raise CheckpointError(f"convert: the {kind} round trip is not bit-exact")
        checks[kind] = True
    n_params = int(sum(v.size for v in ref.values()))
    return {
        "source": str(p),
        "format": fmt,
        "out": str(out),
        "tensors": len(ref),
        "parameters": n_params,
        "bit_exact": checks,
        "kernels": len([k for k in ref if k.endswith("/kernel")]),
        "dropped": dropped,
    }
