"""Moved to ``hrp_theory.finetune.summary`` and ``hrp_theory.finetune.report``."""

from .._moved import forward

__getattr__ = forward(__name__, ("hrp_theory.finetune.summary", "hrp_theory.finetune.report"))
