"""Result files that survive: atomic writes, run ids, output checks before the run, a lock per
output folder. JSON and npz only (no pickle anywhere).

* Every file is written to a unique temporary name beside it, flushed, then renamed over the
  target: a reader sees the old file or the new one, never half of one. Files follow the umask.
* ``check_output_dir`` / ``check_output_file`` fail *before* the computation, with the fix, when
  an output cannot be written.
* ``OutputFolder`` takes an exclusive lock on the folder (``fcntl.flock`` on
  ``.hrp-sim.lock``), so a second run into a busy folder is refused instead of mixing files; a
  folder it created and left empty is removed again.
* ``summary.json`` and ``per_seed.npz`` carry the same ``run_id``; ``load_run`` refuses a pair
  from two different runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

LOCK = ".hrp-sim.lock"


def new_run_id() -> str:
    return uuid.uuid4().hex


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _can_write_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (a real probe: permissions, read-only or
    immutable file systems; the probe file is removed at once)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_output_dir(path, field: str = "out") -> Path:
    """``path`` can be used as an output folder: it is a writable folder, or it does not exist
    and its nearest existing parent is a writable folder. Creates nothing."""
    if not str(path).strip():
        raise ValueError(f"{field}: empty; give a folder path such as hrp-results/run")
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{field}: {str(path)!r} is a file; give a folder path")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise ValueError(
            f"{field}: {str(base)!r} is a file, so {str(path)!r} cannot be created; "
            "choose another folder"
        )
    if not _can_write_in(base):
        raise ValueError(
            f"{field}: no permission to write in {str(base)!r}; choose a folder you "
            "can write to (e.g. under your home directory)"
        )
    return path


def check_output_file(path, field: str = "json") -> Path:
    """``path`` can be written: its folder exists and is writable, and it is not a folder (nor a
    read-only file). Creates nothing."""
    if not str(path).strip():
        raise ValueError(f"{field}: empty; give a file path such as results.json")
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(
            f"{field}: {str(path)!r} is a folder; give a file path such as "
            f"{str(path / 'results.json')!r}"
        )
    if not path.parent.is_dir():
        raise ValueError(
            f"{field}: folder {str(path.parent)!r} does not exist; create it "
            f"(mkdir -p {path.parent}) or choose another path"
        )
    if not _can_write_in(path.parent):
        raise ValueError(
            f"{field}: no permission to write in {str(path.parent)!r}; choose another path"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(
            f"{field}: {str(path)!r} is read-only; choose another path or make it writable"
        )
    return path


class OutputFolder:
    """An output folder held exclusively for one run (a context manager).

    Entering creates the folder if needed and locks it (``.hrp-sim.lock``); a folder another
    process holds raises ``ValueError`` (exit 2 in the CLI). Leaving removes the lock file and
    releases the lock, and removes the folder again if this run created it and wrote nothing
    there. A run that finds the lock file replaced while it waited takes the new one, so removing
    it never lets two runs hold one folder."""

    def __init__(self, path, field: str = "out"):
        self.path = check_output_dir(path, field)
        self.field = field
        self._fd = None
        self._created = []

    def __enter__(self) -> OutputFolder:
        import fcntl

        missing = []
        p = self.path.absolute()
        while not p.exists():
            missing.append(p)
            p = p.parent
        self.path.mkdir(parents=True, exist_ok=True)
        self._created = missing
        lock = self.path / LOCK
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise ValueError(
                    f"{self.field}: {str(self.path)!r} is in use by another hrp-sim run "
                    f"(pid {holder}); wait for it to finish or choose another folder"
                ) from None
            try:  # the file we locked is still the folder's lock file (not removed meanwhile)
                if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._fd is not None:
            (self.path / LOCK).unlink(missing_ok=True)  # while still held
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._created and not any(self.path.iterdir()):
            for p in self._created:  # deepest first
                try:
                    p.rmdir()
                except OSError:
                    break


def _atomic(path, write) -> Path:
    """Write ``path`` through ``write(file)`` to a unique temporary name, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def jsonable(x) -> Any:
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
    """Write ``obj`` as JSON atomically; NaN becomes null, ±inf a string."""
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False)
    return _atomic(Path(path), lambda f: f.write(text.encode()))


def write_text(path, text: str) -> Path:
    """Write a text file atomically."""
    return _atomic(Path(path), lambda f: f.write(text.encode()))


def write_npz(path, arrays: dict) -> Path:
    """Write flat ``{name: array}`` as an npz atomically (load with ``allow_pickle=False``)."""
    return _atomic(Path(path), lambda f: np.savez_compressed(f, **arrays))


def write_png(path, fig, dpi: int = 120) -> Path:
    """Save a matplotlib figure as a PNG atomically."""
    return _atomic(Path(path), lambda f: fig.savefig(f, format="png", dpi=dpi))


def load_run(folder) -> tuple[dict, dict]:
    """``(summary, per_seed)`` of a ``compare`` output folder, refusing a ``summary.json`` and a
    ``per_seed.npz`` that do not come from the same run (their ``run_id`` differs)."""
    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    with np.load(folder / "per_seed.npz", allow_pickle=False) as z:
        per_seed = {k: z[k] for k in z.files}
    ids = summary.get("run_id"), str(per_seed.pop("run_id", None))
    if ids[0] is None or ids[0] != ids[1]:
        raise ValueError(
            f"run_id: {folder}/summary.json (run {ids[0]}) and per_seed.npz (run "
            f"{ids[1]}) come from different runs; rerun to write a matching pair"
        )
    return summary, per_seed


def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    """Versions, backend, dtype and git commit of the run."""
    import jax
    import optax

    from ._version import __version__
    from .runtime import x64

    return {
        "hrp_theory": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "dtype": "float64" if x64() else "float32",
        "git_commit": git_commit(),
    }
