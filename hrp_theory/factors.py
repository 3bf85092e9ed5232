"""LoRA's factors, forms and scaling: ``ΔW = s·B Aᵀ`` in the synthetic model.

``ΔW = s·B Aᵀ`` with ``B ∈ R^{m×r}`` (output side) and ``A ∈ R^{n×r}`` (input side, PEFT's
``lora_A.weight`` is ``Aᵀ``). Forms:

* ``classic``  — both factors trained;
* ``freeze-a`` — ``A`` frozen, ``B`` trained (asymmetric LoRA, docs/theory.md §3);
* ``freeze-b`` — ``B`` frozen, ``A`` trained (the mirror). Random and direction inits then put
  the direction on ``B`` and start from ``A = 0``.

Scaling ``s = α/r`` (``alpha/r``, PEFT) or ``α/√r`` (``alpha/sqrt-r``, rsLoRA); ``alpha=None``
means ``α = r`` resp. ``α = √r``, i.e. ``s = 1``, so the theory's formulas apply unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax

from ._fields import traced
from .validation import one_of, optional_positive_number, positive_int

FORMS = ("classic", "freeze-a", "freeze-b")
SCALINGS = ("alpha/r", "alpha/sqrt-r")


class LoraParams(NamedTuple):
    """LoRA factors: ``B`` (m, r) and ``A`` (n, r); the update is ``s·B Aᵀ``."""

    B: jax.Array
    A: jax.Array


def check_form(form: str, field: str = "lora") -> str:
    return one_of(form, field, FORMS, "LoRA form")


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
    alpha: float | None = traced(None)
    scaling: str = traced("alpha/r")

    def __post_init__(self):
        positive_int(self.r, "r")
        check_form(self.form)
        one_of(self.scaling, "scaling", SCALINGS, "scaling")
        optional_positive_number(self.alpha, "alpha")

    def scale(self, rank: int | None = None) -> float:
        """``s`` for a LoRA of ``rank`` (default ``r``) under this spec's α and scaling."""
        rank = self.r if rank is None else rank
        if self.alpha is None:
            return 1.0
        return self.alpha / (rank if self.scaling == "alpha/r" else math.sqrt(rank))
