"""Saved runs: one init in one form at one learning rate, every seed, in
``OUT/runs/INIT@FORM@lr=LR.npz``, with the settings it depends on (``run_key``); a rerun reuses
a saved run only if they match and its arrays are whole (``load_saved``), so an interrupted study
resumes where it stopped and a damaged file is run again, never trusted by its name."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np

from .config import LoraConfig, lr_label

#: Arrays every saved run holds, with their leading seed axis (``load_saved`` checks them).
PER_SEED = ("train_loss", "test_correct", "test_ce", "curve_correct")


def run_key(cfg: LoraConfig, name: str, form: str, lr: float, bridge_target: bool) -> str:
    """The settings one run depends on (a saved run is reused only if they match)."""
    d = dataclasses.asdict(cfg)
    for f in ("inits", "forms", "lr_grid", "lr", "target_loss"):  # the report's only
        d.pop(f)
    d |= {"init": name, "form": form, "run_lr": lr, "bridge_target": bridge_target}
    if name != "eva":  # ρ only shapes EVA's ranks
        d.pop("eva_rho")
    return json.dumps(d, sort_keys=True)


def load_saved(path: Path, key: str, seeds: int) -> dict | None:
    """A saved run's arrays if its settings are ``key`` and its per-seed arrays hold ``seeds``
    seeds, else None (missing, another version, or damaged: then it is run again)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["run_key"]) != key:
                return None
            got = {k: z[k] for k in z.files if k != "run_key"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if any(k not in got or got[k].shape[:1] != (seeds,) for k in PER_SEED):
        return None
    return got


def run_name(name: str, form: str, lr: float) -> str:
    """``INIT@FORM@lr=LR``: the run's file stem and key (``config.lr_label``: never two rates
    alike)."""
    return f"{name}@{form}@lr={lr_label(lr)}"
