"""Moved to ``hrp_theory.layers.config`` and ``hrp_theory.finetune.config``."""

from .._moved import forward

__getattr__ = forward(__name__, ("hrp_theory.layers.config", "hrp_theory.finetune.config"))
