"""Which basis a config's seeds run in: dense, spectral (M = diag(σ)) or reduced (k + p
coordinates whatever the width), and why a faster one would be impossible or inexact
(docs/theory.md §2.1).

``resolve_basis`` picks, for ``basis="auto"``, the first of reduced, spectral, dense that is
exact in distribution; ``spectral_obstacles`` and ``reduced_obstacles`` name the reasons, which
``ExperimentConfig`` turns into an error (impossible) or a warning (inexact) when a basis is
forced.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .inits import OFFSET_INITS, families_needed
from .problems import Basis, ProblemSpec
from .spectra import spectrum_values


class ExperimentConfig(Protocol):
    """What a basis decision reads of a config (``config.ExperimentConfig`` has it): typed
    structurally, so this module, which the config imports, does not import the config."""

    @property
    def problem(self) -> ProblemSpec: ...
    @property
    def lora(self) -> Any: ...
    @property
    def train(self) -> Any: ...
    @property
    def hrp(self) -> Any: ...
    @property
    def inits(self) -> tuple[str, ...]: ...
    @property
    def base(self) -> str: ...
    @property
    def basis(self) -> str: ...
    @property
    def preheats(self) -> bool: ...
    @property
    def preheat_rank(self) -> int: ...


BASES = ("auto", "dense", "spectral", "reduced")
#: Optimizers whose update commutes with rotations of the factors (Adam's per-coordinate
#: scaling does not).
EQUIVARIANT_OPTIMIZERS = ("gd", "sgd", "flow")


def spectral_obstacles(config: ExperimentConfig) -> tuple[list[str], list[str]]:
    """Why the spectral fast path would be impossible (first list) or inexact (second list).

    It is exact for whitened population problems, GD / heavy-ball SGD / gradient flow, and
    rotation-invariant random factors (Gaussian): then a seed's run in the basis of ``M`` is its
    dense run with the init rotated, and a rotated Gaussian is a Gaussian."""
    p = config.problem
    impossible, inexact = [], []
    if not p.whitened:
        impossible.append("Σ ≠ I (the loss then depends on M's singular vectors)")
    if p.n_samples is not None:
        impossible.append("finite-sample mode (the data are not diagonal in M's basis)")
    off = [i for i in config.inits if i in OFFSET_INITS]
    if off:
        impossible.append(f"{', '.join(off)} move W0 by a dense matrix")
    if "eva" in config.inits:
        impossible.append("eva follows Σ's eigenbasis, which M's singular basis would rotate")
    fams = [f for f in families_needed(config.inits, config.base) if f != "gaussian"]
    if fams:
        inexact.append(
            f"{', '.join(fams)} factors are not rotation-invariant (use --base "
            "gaussian and the gaussian init)"
        )
    opts = {config.train.optimizer}
    if config.preheats:
        opts.add(config.hrp.optimizer or config.train.optimizer)
    opts -= set(EQUIVARIANT_OPTIMIZERS)
    if opts:
        inexact.append(f"{', '.join(sorted(opts))} is not rotation-equivariant")
    return impossible, inexact


def target_rank(spec: ProblemSpec) -> int:
    """k: the number of nonzero singular values of the spec's target."""
    return int(np.count_nonzero(spectrum_values(spec.spectrum, spec.k, spec.rank, spec.scale)))


def _reduced_layout(config: ExperimentConfig) -> tuple[int, int, int, str]:
    """``(k, P, width, side)``: the target's rank, the random factor's columns (r, or p for the
    preheat), the width of the side that carries the direction, and that side."""
    p = config.problem
    cols = max(config.lora.r, config.preheat_rank if config.preheats else config.lora.r)
    side = "B" if config.lora.form == "freeze-b" else "A"
    return target_rank(p), cols, p.m if side == "B" else p.n, side


def reduced_obstacles(config: ExperimentConfig) -> tuple[list[str], list[str]]:
    """Why the reduced basis would be impossible (first list) or inexact (second list): the
    spectral basis's conditions, plus a target of rank k ≥ r with ``k + P`` below the width of
    the direction's side (P = r, or p when an init preheats)."""
    impossible, inexact = spectral_obstacles(config)
    k, cols, width, side = _reduced_layout(config)
    r = config.lora.r
    if k < r:
        impossible.append(f"the target's rank k = {k} is below r = {r}")
    if k + cols >= width:
        impossible.append(
            f"k + {'p' if cols > r else 'r'} = {k + cols} is not below "
            f"{'m' if side == 'B' else 'n'} = {width} (nothing to reduce)"
        )
    if side == "B" and config.preheats:
        impossible.append("the preheated inits with freeze-b LoRA")
    return impossible, inexact


def resolve_basis(config: ExperimentConfig) -> Basis:
    """The basis a config's seeds run in (``auto``: reduced, else spectral, else dense, the
    first that is exact in distribution)."""
    kind = config.basis
    if kind == "auto":
        kind = (
            "reduced"
            if not any(reduced_obstacles(config))
            else "spectral"
            if not any(spectral_obstacles(config))
            else "dense"
        )
    if kind != "reduced":
        return Basis(kind)
    k, cols, _, side = _reduced_layout(config)
    rows, width = (k + cols, k) if side == "B" else (k, k + cols)
    return Basis("reduced", k, rows, width)
