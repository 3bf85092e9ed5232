"""Atomic, provenance-stamped result files (JSON and npz; no pickle anywhere)."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def check_writable(path: str | os.PathLike, field: str = "json") -> Path:
    """Fail early, with the fix, if ``path``'s folder does not exist or ``path`` is a folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{field}: {str(path)!r} is a folder; give a file path such as "
                         f"{str(path / 'results.json')!r}")
    if not path.parent.is_dir():
        raise ValueError(f"{field}: folder {str(path.parent)!r} does not exist; create it "
                         f"(mkdir -p {path.parent}) or choose another path")
    return path


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def jsonable(x):
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, float) and not np.isfinite(x):
        return None if np.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def write_json(path, obj) -> Path:
    """Write ``obj`` as JSON atomically (temp file + rename); NaN becomes null, ±inf a string."""
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False)
    return _atomic(Path(path), lambda f: f.write(text.encode()))


def write_text(path, text: str) -> Path:
    """Write a text file atomically (temp file + rename)."""
    return _atomic(Path(path), lambda f: f.write(text.encode()))


def write_npz(path, arrays: dict) -> Path:
    """Write flat ``{name: array}`` as an npz atomically (load with ``allow_pickle=False``)."""
    return _atomic(Path(path), lambda f: np.savez_compressed(f, **arrays))


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    """Versions, backend, dtype and git commit of the run."""
    import jax
    import optax

    from . import __version__

    return {"hrp_theory": __version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "jax": jax.__version__, "optax": optax.__version__,
            "numpy": np.__version__, "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "dtype": "float64" if jax.config.jax_enable_x64 else "float32",
            "git_commit": git_commit()}
