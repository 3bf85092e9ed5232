"""Saved runs: one init in one form at one learning rate, every seed, in
``OUT/runs/INIT@FORM@lr=LR.npz``, with the settings it depends on (``run_key``); a rerun reuses
a saved run only if they match and its arrays are whole (``load_saved``), so an interrupted study
resumes where it stopped and a damaged file is run again, never trusted by its name. Seed 0's
trained adapter and head (``--export-peft``, 1.3 MB on MiniLM) go beside it, in
``INIT@FORM@lr=LR.adapter.npz``: the run's measurements stay small enough to publish."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np

from ..results import write_npz
from .config import LoraConfig, lr_label

#: Arrays every saved run holds, with their leading seed axis (``load_saved`` checks them).
PER_SEED = ("train_loss", "test_correct", "test_ce", "curve_correct")
#: The prefix of the arrays of seed 0's trained adapter and head, saved in ``adapter_path``.
ADAPTER = "seed0|"


def run_key(cfg: LoraConfig, name: str, form: str, lr: float, bridge_target: bool) -> str:
    """The settings one run depends on (a saved run is reused only if they match)."""
    d = dataclasses.asdict(cfg)
    for f in ("inits", "forms", "lr_grid", "lr", "target_loss"):  # the report's only
        d.pop(f)
    d |= {"init": name, "form": form, "run_lr": lr, "bridge_target": bridge_target}
    if name != "eva":  # ρ only shapes EVA's ranks
        d.pop("eva_rho")
    return json.dumps(d, sort_keys=True)


def adapter_path(path: Path) -> Path:
    """Where seed 0's adapter of the run saved at ``path`` goes (``RUN.adapter.npz``)."""
    return path.with_name(path.name.removesuffix(".npz") + ".adapter.npz")


def save(path: Path, arrays: dict, key: str) -> Path:
    """Save a run's arrays under its settings ``key``: seed 0's adapter first (``adapter_path``),
    then the measurements at ``path`` (each atomically), so a run on disk has its adapter."""
    tag = {"run_key": np.asarray(key)}
    adapter = {k: v for k, v in arrays.items() if k.startswith(ADAPTER)}
    if adapter:
        write_npz(adapter_path(path), adapter | tag)
    return write_npz(path, {k: v for k, v in arrays.items() if not k.startswith(ADAPTER)} | tag)


def _read(path: Path, key: str) -> dict | None:
    """The arrays saved at ``path`` if their settings are ``key``, else None (missing, another
    version, or damaged)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["run_key"]) != key:
                return None
            return {k: z[k] for k in z.files if k != "run_key"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def load_saved(path: Path, key: str, seeds: int) -> dict | None:
    """A saved run's arrays if its settings are ``key`` and its per-seed arrays hold ``seeds``
    seeds, else None (missing, another version, or damaged: then it is run again); with seed 0's
    adapter when its file is there and matches (a published run may come without it)."""
    got = _read(path, key)
    if got is None or any(k not in got or got[k].shape[:1] != (seeds,) for k in PER_SEED):
        return None
    return got | (_read(adapter_path(path), key) or {})


def run_name(name: str, form: str, lr: float) -> str:
    """``INIT@FORM@lr=LR``: the run's file stem and key (``config.lr_label``: never two rates
    alike)."""
    return f"{name}@{form}@lr={lr_label(lr)}"
