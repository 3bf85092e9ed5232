"""Saved runs: one init at one learning rate, every seed, in ``OUT/runs/INIT@lr=LR.npz``, with
the settings it depends on (``run_key``); a rerun reuses a saved run only if they match, so an
interrupted study resumes where it stopped."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from .config import LoraConfig, lr_label


def run_key(cfg: LoraConfig, name: str, lr: float, bridge_target: bool) -> str:
    """The settings one run depends on (a saved run is reused only if they match)."""
    d = dataclasses.asdict(cfg)
    for f in ("inits", "lr_grid", "lr", "target_loss"):  # target_loss: the report's only
        d.pop(f)
    d |= {"init": name, "run_lr": lr, "bridge_target": bridge_target}
    return json.dumps(d, sort_keys=True)


def load_saved(path: Path, key: str) -> dict | None:
    """A saved run's arrays if its settings are ``key``, else None."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["run_key"]) != key:
                return None
            return {k: z[k] for k in z.files if k != "run_key"}
    except (OSError, ValueError, KeyError):
        return None  # unreadable or from another version: run it again


def run_name(name: str, lr: float) -> str:
    """``INIT@lr=LR``: the run's file stem and key (``config.lr_label``: never two rates alike)."""
    return f"{name}@lr={lr_label(lr)}"
