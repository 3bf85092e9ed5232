"""LoRA parameters, forms and scaling.

``ΔW = s·B Aᵀ`` with ``B ∈ R^{m×r}`` (output side) and ``A ∈ R^{n×r}`` (input side, PEFT's
``lora_A.weight`` is ``Aᵀ``). Forms:

* ``classic``  — both factors trained;
* ``freeze-a`` — ``A`` frozen, ``B`` trained (asymmetric LoRA, THEORY §3);
* ``freeze-b`` — ``B`` frozen, ``A`` trained (the mirror). Random and direction inits then put
  the direction on ``B`` and start from ``A = 0``.

Scaling ``s = α/r`` (``alpha/r``, PEFT) or ``α/√r`` (``alpha/sqrt-r``, rsLoRA); ``alpha=None``
means ``α = r`` resp. ``α = √r``, i.e. ``s = 1``, so THEORY's formulas apply unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax

FORMS = ("classic", "freeze-a", "freeze-b")
SCALINGS = ("alpha/r", "alpha/sqrt-r")


class LoraParams(NamedTuple):
    """LoRA factors: ``B`` (m, r) and ``A`` (n, r); the update is ``s·B Aᵀ``."""

    B: jax.Array
    A: jax.Array


def check_form(form: str, field: str = "lora") -> str:
    if form not in FORMS:
        raise ValueError(f"{field}: unknown LoRA form {form!r}; use one of {', '.join(FORMS)}")
    return form


def trains(form: str) -> tuple[bool, bool]:
    """``(train_B, train_A)`` for a form."""
    check_form(form)
    return form != "freeze-b", form != "freeze-a"


def direction_side(form: str) -> str:
    """Which factor carries the initial direction (the other starts at 0): 'A' or 'B'."""
    return "B" if form == "freeze-b" else "A"


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    """Rank, form and scaling of the main LoRA run."""

    r: int = 4
    form: str = "classic"
    alpha: float | None = None
    scaling: str = "alpha/r"

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"r: {self.r!r} must be a positive integer")
        check_form(self.form)
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling: {self.scaling!r}; use one of {', '.join(SCALINGS)}")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha: {self.alpha} must be a positive number")

    def scale(self, rank: int | None = None) -> float:
        """``s`` for a LoRA of ``rank`` (default ``r``) under this spec's α and scaling."""
        rank = self.r if rank is None else rank
        if self.alpha is None:
            return 1.0
        return self.alpha / (rank if self.scaling == "alpha/r" else math.sqrt(rank))
